//! Reading Consent resources: the encoding Musubi enforces, and a clear error for everything it
//! would not enforce faithfully.

mod support;

use consent::{
    ActorMatch, ActorRole, ClassMatch, ConsentError, ConsentRecord, ConsentStatus, Grantor,
    Identifier, ProvisionType, RecipientKind, SharingLevel,
};
use fhir::validate::IssueType;
use serde_json::{Value, json};
use support::*;
use time::macros::datetime;

fn full_consent() -> Value {
    consent(
        "c-full",
        "2025-04-01T09:00:00+09:00",
        "active",
        json!({
            "type": "permit",
            "period": {"start": "2025-04-01", "end": "2026-03-31"},
            "actor": [to_client(APP), to_municipality(CHIYODA), to_kind("medical-association"), from_custodian("phr-vendor-a")],
            "purpose": purposes(&["PATRQT", "COC"]),
            "class": classes(&["vaccinations", "checkups"]),
            "modifierExtension": identity_only(),
            "provision": [
                {"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "QuestionnaireResponse"}]},
                {"type": "deny", "data": [{"meaning": "instance", "reference": {"reference": "https://musubi.example.org/fhir/Immunization/imm-1/_history/2"}}]}
            ]
        }),
    )
}

#[test]
fn every_element_of_the_encoding_is_read() {
    let r = parse(&full_consent());
    assert_eq!(r.id, "c-full");
    assert_eq!(r.reference(), "Consent/c-full/_history/1");
    assert_eq!(r.status, ConsentStatus::Active);
    assert_eq!(r.patient.as_str(), CHILD);
    assert_eq!(r.grantor, Grantor::Guardian(GUARDIAN.to_owned()));
    assert_eq!(r.date_time, datetime!(2025-04-01 09:00 +9));
    let p = &r.provision;
    assert_eq!(p.decision, Some(ProvisionType::Permit));
    let period = p.period.expect("period");
    assert_eq!(period.start, Some(datetime!(2025-04-01 00:00 +9)));
    assert_eq!(period.end, Some(datetime!(2026-04-01 00:00 +9)));
    let actors: Vec<(ActorRole, ActorMatch)> = p
        .actors
        .iter()
        .map(|a| (a.role, a.matches.clone()))
        .collect();
    assert_eq!(
        actors,
        vec![
            (ActorRole::Recipient, ActorMatch::Client(APP.to_owned())),
            (
                ActorRole::Recipient,
                ActorMatch::Organization(Identifier::municipality(CHIYODA))
            ),
            (
                ActorRole::Recipient,
                ActorMatch::Kind(RecipientKind::MedicalAssociation)
            ),
            (
                ActorRole::Custodian,
                ActorMatch::Client("phr-vendor-a".to_owned())
            ),
        ]
    );
    let purposes: Vec<&str> = p.purposes.iter().map(|x| x.as_str()).collect();
    assert_eq!(purposes, ["PATRQT", "COC"]);
    let classes: Vec<String> = p
        .classes
        .iter()
        .map(|c| match c {
            ClassMatch::DataClass(d) => d.as_str().to_owned(),
            ClassMatch::ResourceType(t) => format!("type:{t}"),
        })
        .collect();
    assert_eq!(classes, ["vaccinations", "checkups"]);
    assert_eq!(p.sharing_level, Some(SharingLevel::IdentityOnly));
    assert_eq!(p.provisions.len(), 2);
    assert_eq!(p.provisions[0].path, "Consent.provision.provision[0]");
    assert_eq!(
        p.provisions[0].classes,
        [ClassMatch::ResourceType("QuestionnaireResponse".to_owned())]
    );
    assert_eq!(p.provisions[1].data, ["Immunization/imm-1"]);
    assert!(r.in_force(datetime!(2025-04-01 00:00 +9)));
    assert!(!r.in_force(datetime!(2026-04-01 00:00 +9)));
}

#[test]
fn grantors() {
    // The guardian named only in verification (a consent recorded by the clinic).
    let mut verified = consent("c-v", "2025-04-01", "active", json!({"type": "permit"}));
    verified["performer"] = json!([{"reference": "Organization/sato-kodomo-clinic"}]);
    verified["verification"] = json!([{"verified": true, "verifiedWith": {"reference": GUARDIAN}, "verificationDate": "2025-04-01"}]);
    assert_eq!(
        parse(&verified).grantor,
        Grantor::Guardian(GUARDIAN.to_owned())
    );
    // A date-only dateTime is taken at JST midnight.
    assert_eq!(parse(&verified).date_time, datetime!(2025-04-01 00:00 +9));

    // An adult (or an older child) for themself.
    let mut own = consent("c-own", "2025-04-01", "active", json!({"type": "permit"}));
    own["performer"] = json!([{"reference": CHILD}]);
    assert_eq!(parse(&own).grantor, Grantor::Patient);
}

#[test]
fn guardian_must_be_related_to_the_patient() {
    let record = parse(&full_consent());
    let mother = json!({"resourceType": "RelatedPerson", "id": "guardian-sato-yumi",
        "patient": {"reference": CHILD},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
        "name": [{"text": "佐藤 由美"}]});
    assert_eq!(record.check_guardian(&mother), Ok(()));
    let mut stranger = mother.clone();
    stranger["patient"] = json!({"reference": "Patient/child-suzuki-ren"});
    assert!(record.check_guardian(&stranger).is_err());
    let mut other_person = mother;
    other_person["id"] = json!("someone-else");
    assert!(record.check_guardian(&other_person).is_err());
}

#[test]
fn refused_consents_say_where_and_why() {
    let ok = full_consent();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = ok.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "not a consent",
            json!({"resourceType": "Patient", "id": "x"}),
            "Consent",
            "not a Consent",
        ),
        (
            "no id",
            edit(&|c| {
                c.as_object_mut().map(|o| o.remove("id"));
            }),
            "Consent.id",
            "audit",
        ),
        (
            "bad status",
            edit(&|c| c["status"] = json!("revoked")),
            "Consent.status",
            "'revoked'",
        ),
        (
            "treatment scope",
            edit(&|c| c["scope"]["coding"][0]["code"] = json!("treatment")),
            "Consent.scope",
            "patient-privacy",
        ),
        (
            "no patient",
            edit(&|c| {
                c.as_object_mut().map(|o| o.remove("patient"));
            }),
            "Consent.patient",
            "missing",
        ),
        (
            "group patient",
            edit(&|c| c["patient"]["reference"] = json!("Group/g1")),
            "Consent.patient",
            "Patient/{id}",
        ),
        (
            "no dateTime",
            edit(&|c| {
                c.as_object_mut().map(|o| o.remove("dateTime"));
            }),
            "Consent.dateTime",
            "most-recent-wins",
        ),
        (
            "dateTime without zone",
            edit(&|c| c["dateTime"] = json!("2025-04-01T09:00:00")),
            "Consent.dateTime",
            "zone",
        ),
        (
            "no grantor",
            edit(&|c| c["performer"] = json!([{"reference": "Organization/x"}])),
            "Consent.performer",
            "guardian",
        ),
        (
            "other patient consents",
            edit(&|c| c["performer"] = json!([{"reference": "Patient/someone"}])),
            "Consent.performer[0]",
            "not the consent's patient",
        ),
        (
            "no provision",
            edit(&|c| {
                c.as_object_mut().map(|o| o.remove("provision"));
            }),
            "Consent.provision",
            "missing",
        ),
        (
            "nested without type",
            edit(&|c| c["provision"]["provision"][0] = json!({"class": classes(&["vitals"])})),
            "Consent.provision.provision[0].type",
            "permit or deny",
        ),
        (
            "bad type",
            edit(&|c| c["provision"]["type"] = json!("allow")),
            "Consent.provision.type",
            "'allow'",
        ),
        (
            "reversed period",
            edit(&|c| {
                c["provision"]["period"] = json!({"start": "2025-05-01", "end": "2025-04-01"})
            }),
            "Consent.provision.period",
            "ends before",
        ),
        (
            "author role",
            edit(&|c| c["provision"]["actor"][0]["role"]["coding"][0]["code"] = json!("AUT")),
            "Consent.provision.actor[0]",
            "IRCP",
        ),
        (
            "unknown kind",
            edit(&|c| {
                c["provision"]["actor"][2]["reference"]["identifier"]["value"] = json!("hospital")
            }),
            "Consent.provision.actor[2]",
            "'hospital'",
        ),
        (
            "patient actor",
            edit(&|c| c["provision"]["actor"][0]["reference"] = json!({"reference": "Patient/x"})),
            "Consent.provision.actor[0]",
            "not an Organization",
        ),
        (
            "local purpose system",
            edit(&|c| c["provision"]["purpose"][0]["system"] = json!("urn:local")),
            "Consent.provision.purpose[0]",
            "v3-ActReason",
        ),
        (
            "unknown data class",
            edit(&|c| c["provision"]["class"][0]["code"] = json!("genomics")),
            "Consent.provision.class[0]",
            "'genomics'",
        ),
        (
            "loinc class",
            edit(&|c| c["provision"]["class"][0]["system"] = json!("http://loinc.org")),
            "Consent.provision.class[0]",
            "data-class",
        ),
        (
            "related data",
            edit(&|c| c["provision"]["provision"][1]["data"][0]["meaning"] = json!("related")),
            "Consent.provision.provision[1].data[0]",
            "instance",
        ),
        (
            "action",
            edit(&|c| c["provision"]["action"] = json!([{"text": "access"}])),
            "Consent.provision.action",
            "not enforced",
        ),
        (
            "security label",
            edit(&|c| c["provision"]["provision"][0]["securityLabel"] = json!([{"code": "R"}])),
            "Consent.provision.provision[0].securityLabel",
            "not enforced",
        ),
        (
            "dataPeriod",
            edit(&|c| c["provision"]["dataPeriod"] = json!({"start": "2024-01-01"})),
            "Consent.provision.dataPeriod",
            "not enforced",
        ),
        (
            "unknown modifier",
            edit(&|c| {
                c["provision"]["modifierExtension"] =
                    json!([{"url": "urn:x", "valueBoolean": true}])
            }),
            "Consent.provision.modifierExtension",
            "unknown modifier",
        ),
        (
            "bad level",
            edit(&|c| c["provision"]["modifierExtension"][0]["valueCode"] = json!("summary")),
            "Consent.provision.modifierExtension",
            "'summary'",
        ),
        (
            "level on deny",
            edit(&|c| c["provision"]["provision"][0]["modifierExtension"] = identity_only()),
            "Consent.provision.provision[0].modifierExtension",
            "permit",
        ),
    ];
    for (name, resource, expression, needle) in cases {
        let err = ConsentRecord::parse(policy(), &resource).expect_err(name);
        let ConsentError::Consent {
            expression: got,
            problem,
            ..
        } = &err
        else {
            panic!("{name}: {err:?}");
        };
        assert_eq!(got, expression, "{name}: {err}");
        assert!(
            problem.contains(needle),
            "{name}: '{problem}' should mention {needle}"
        );
        let issue = err.to_issue();
        assert_eq!(issue.expression, expression);
        assert_eq!(issue.code, IssueType::Invalid);
    }
}
