//! Golden files for identity-only redaction and pseudonymised research export, and the linkage
//! rules (a pseudonym only under a research consent, one consent per PHR vendor).
//!
//! Set `MUSUBI_BLESS=1` to rewrite the files after an intended change, then review the diff.

mod support;

use std::path::PathBuf;

use consent::{
    LinkageRequest, Party, ProjectId, PseudonymKey, ReasonCode, issue_pseudonym, pseudonymise,
    redact_identity_only,
};
use serde_json::{Value, json};
use support::*;
use time::macros::datetime;

fn check_golden(name: &str, got: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = serde_json::to_string_pretty(got).expect("serialise") + "\n";
    if std::env::var_os("MUSUBI_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with MUSUBI_BLESS=1 to create)",
            path.display()
        )
    });
    assert_eq!(text, want, "{name} differs from its golden file");
}

/// A 予診票 answered by the mother before the 5種混合 dose.
fn prevaccination_response() -> Value {
    json!({
        "resourceType": "QuestionnaireResponse",
        "id": "qr-2025-04-15",
        "meta": {"versionId": "1", "profile": ["https://musubi.example.org/fhir/StructureDefinition/Musubi_PrevaccinationResponse"]},
        "questionnaire": "https://musubi.example.org/fhir/Questionnaire/prevaccination-child",
        "status": "completed",
        "subject": {"reference": CHILD, "display": "佐藤 花"},
        "authored": "2025-04-14T21:10:00+09:00",
        "author": {"reference": GUARDIAN},
        "source": {"reference": GUARDIAN},
        "item": [
            {"linkId": "header", "item": [
                {"linkId": "name", "answer": [{"valueString": "佐藤 花"}]},
                {"linkId": "name-kana", "answer": [{"valueString": "サトウ ハナ"}]},
                {"linkId": "sex", "answer": [{"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}}]},
                {"linkId": "birth-date", "answer": [{"valueDate": "2024-05-10"}]},
                {"linkId": "address", "answer": [{"valueString": "東京都千代田区九段南1-2-1"}]},
                {"linkId": "phone", "answer": [{"valueString": "090-1234-5678"}]},
                {"linkId": "guardian-name", "answer": [{"valueString": "佐藤 由美"}]},
                {"linkId": "body-temperature", "answer": [{"valueDecimal": 36.8}]}
            ]},
            {"linkId": "questions", "item": [
                {"linkId": "q3-unwell-today", "answer": [{"valueBoolean": false}]},
                {"linkId": "q10-allergy", "answer": [{"valueBoolean": true,
                    "item": [{"linkId": "q10-detail", "answer": [{"valueString": "卵"}]}]}]}
            ]},
            {"linkId": "consent", "item": [
                {"linkId": "guardian-consent", "answer": [{"valueBoolean": true}]},
                {"linkId": "guardian-signature", "answer": [{"valueString": "佐藤 由美"}]}
            ]}
        ]
    })
}

#[test]
fn identity_only_redaction() {
    let policy = policy();
    for (name, resource) in [
        ("identity-only-patient.json", patient_resource()),
        ("identity-only-encounter.json", consultation()),
        (
            "identity-only-questionnaire-response.json",
            prevaccination_response(),
        ),
    ] {
        let redacted = redact_identity_only(policy, &resource).expect("redacts");
        check_golden(name, &redacted);
    }
    // No clinical text survives, whatever the golden files say.
    let text = redact_identity_only(policy, &consultation())
        .expect("redacts")
        .to_string();
    for clinical in [
        "夜泣き",
        "授乳",
        "育児相談",
        "needs-care",
        "serviceProvider",
    ] {
        assert!(!text.contains(clinical), "{clinical} leaked");
    }
    assert!(redact_identity_only(policy, &json!([1])).is_err());
    assert!(redact_identity_only(policy, &json!({"id": "x"})).is_err());
}

const TEST_KEY: &[u8; 32] = b"musubi-test-key-not-for-use-0001";

fn linkage_consent(actors: Vec<Value>) -> Value {
    consent(
        "c-study",
        "2025-04-01T09:00:00+09:00",
        "active",
        json!({
            "type": "permit",
            "actor": actors,
            "purpose": purposes(&["HRESCH"]),
            "class": classes(&["vaccinations", "demographics", "prevaccination"])
        }),
    )
}

#[test]
fn pseudonymised_export() {
    let policy = policy();
    let key = PseudonymKey::new(TEST_KEY).expect("key");
    let project = ProjectId::new("ndb-phr-2025").expect("id");
    let hresch = purpose("HRESCH");
    let patient = child();
    let records = [parse(&linkage_consent(vec![to_project("ndb-phr-2025")]))];
    let linkage = issue_pseudonym(
        policy,
        &key,
        &LinkageRequest {
            project: &project,
            purpose: &hresch,
            patient: &patient,
            person: "06139999:はけんけん:12345:01",
            source_vendor: None,
        },
        &records,
        datetime!(2025-06-01 12:00 +9),
    );
    assert_eq!(linkage.decision.reason, ReasonCode::ConsentPermit);
    assert_eq!(
        linkage.decision.consents_used,
        ["Consent/c-study/_history/1"]
    );
    let pseudonym = linkage.pseudonym.expect("pseudonym issued");
    // Known answer, computed independently:
    // HMAC-SHA256(key, len‖"musubi-pseudonym-v1"‖len‖project‖len‖"HRESCH"‖len‖person), lengths u32 BE.
    assert_eq!(
        pseudonym.as_str(),
        include_str!("golden/pseudonym.txt").trim()
    );

    for (name, resource) in [
        ("pseudonymised-patient.json", patient_resource()),
        (
            "pseudonymised-immunization.json",
            immunization("imm-1", "routine"),
        ),
        (
            "pseudonymised-questionnaire-response.json",
            prevaccination_response(),
        ),
    ] {
        let exported = pseudonymise(policy, &resource, &pseudonym).expect("exports");
        check_golden(name, &exported);
        let text = exported.to_string();
        for identifier in [
            "佐藤",
            "サトウ",
            "00012345",
            "九段南",
            "102-8688",
            "03-3264-2111",
            "090-1234-5678",
            "2024-05-10",
            "child-sato-hana",
            "IMM-2025",
            "guardian-sato-yumi",
        ] {
            assert!(!text.contains(identifier), "{name}: {identifier} leaked");
        }
    }
    let guardian = json!({"resourceType": "RelatedPerson", "id": "guardian-sato-yumi", "patient": {"reference": CHILD}});
    assert!(pseudonymise(policy, &guardian, &pseudonym).is_err());
}

/// (name, project, PHR vendor the data comes from, consents, expected refusal reason)
type LinkageCase<'a> = (
    &'static str,
    &'a ProjectId,
    Option<&'a Party>,
    &'a [consent::ConsentRecord],
    ReasonCode,
);

#[test]
fn pseudonyms_need_a_research_consent_per_project_and_vendor() {
    let policy = policy();
    let key = PseudonymKey::new(TEST_KEY).expect("key");
    let hresch = purpose("HRESCH");
    let patient = child();
    let ndb = ProjectId::new("ndb-phr-2025").expect("id");
    let other = ProjectId::new("city-eval-2025").expect("id");
    let vendor = app(APP);
    let other_vendor = app(OTHER_APP);
    let now = datetime!(2025-06-01 12:00 +9);
    let person = "06139999:はけんけん:12345:01";
    let plain = [parse(&linkage_consent(vec![
        to_project("ndb-phr-2025"),
        to_project("city-eval-2025"),
    ]))];
    let per_vendor = [parse(&linkage_consent(vec![
        to_project("ndb-phr-2025"),
        from_custodian(APP),
    ]))];
    let mut revoked_value = linkage_consent(vec![to_project("ndb-phr-2025")]);
    revoked_value["status"] = json!("inactive");
    let revoked = [parse(&revoked_value)];
    let denied = [parse(&consent(
        "c-no",
        "2025-04-01T09:00:00+09:00",
        "active",
        json!({"type": "deny", "purpose": purposes(&["HRESCH"])}),
    ))];

    let ask = |project: &ProjectId, vendor: Option<&Party>, consents: &[consent::ConsentRecord]| {
        issue_pseudonym(
            policy,
            &key,
            &LinkageRequest {
                project,
                purpose: &hresch,
                patient: &patient,
                person,
                source_vendor: vendor,
            },
            consents,
            now,
        )
    };
    let a = ask(&ndb, None, &plain).pseudonym.expect("ndb");
    let b = ask(&other, None, &plain).pseudonym.expect("other project");
    assert_ne!(a, b, "a pseudonym differs per project");
    assert_eq!(ask(&ndb, None, &plain).pseudonym, Some(a.clone()), "stable");

    let cases: Vec<LinkageCase<'_>> = vec![
        (
            "no consent at all",
            &ndb,
            None,
            &[],
            ReasonCode::NoResearchConsent,
        ),
        (
            "consent for another project",
            &other,
            None,
            &per_vendor,
            ReasonCode::NoResearchConsent,
        ),
        (
            "revoked consent",
            &ndb,
            None,
            &revoked,
            ReasonCode::NoResearchConsent,
        ),
        (
            "explicit research deny",
            &ndb,
            None,
            &denied,
            ReasonCode::ConsentDeny,
        ),
        (
            "vendor data, consent names no vendor",
            &ndb,
            Some(&vendor),
            &plain,
            ReasonCode::SourceNotNamed,
        ),
        (
            "vendor data, consent names another vendor",
            &ndb,
            Some(&other_vendor),
            &per_vendor,
            ReasonCode::NoResearchConsent,
        ),
    ];
    for (name, project, vendor, consents, reason) in cases {
        let linkage = ask(project, vendor, consents);
        assert_eq!(linkage.pseudonym, None, "{name}");
        assert_eq!(
            linkage.decision.reason, reason,
            "{name}: {}",
            linkage.decision.explanation
        );
    }
    let named = ask(&ndb, Some(&vendor), &per_vendor);
    assert_eq!(
        named.pseudonym,
        Some(a),
        "the vendor-named consent issues the same pseudonym"
    );
}
