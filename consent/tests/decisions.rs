//! Table-driven consent decisions: nesting, periods, most-recent-wins, base policies, legal
//! bases, identity-only sharing, inactive consents, wrong recipients and data classes.

mod support;

use consent::{
    Data, Outcome, Party, ReasonCode, Redaction, Request, decide, decide_without_subject,
};
use serde_json::{Value, json};
use support::*;
use time::OffsetDateTime;
use time::macros::datetime;

struct Case {
    name: &'static str,
    consents: Vec<Value>,
    recipient: Party,
    source: Option<Party>,
    purpose: &'static str,
    data: Value,
    /// Decide on the data class only, without the resource.
    class_only: Option<&'static str>,
    home: Option<&'static str>,
    now: OffsetDateTime,
    outcome: Outcome,
    reason: ReasonCode,
    consent_used: Option<&'static str>,
    provision: Option<&'static str>,
    legal_basis: Option<&'static str>,
}

fn base(name: &'static str) -> Case {
    Case {
        name,
        consents: Vec::new(),
        recipient: app(APP),
        source: Some(clinic()),
        purpose: "PATRQT",
        data: immunization("imm-1", "routine"),
        class_only: None,
        home: Some(CHIYODA),
        now: datetime!(2025-05-01 12:00 +9),
        outcome: Outcome::Deny,
        reason: ReasonCode::BasePolicyOptIn,
        consent_used: None,
        provision: None,
        legal_basis: None,
    }
}

/// The mother lets the 母子手帳 app have everything but medications.
fn app_all_but_medications(id: &str, date: &str) -> Value {
    consent(
        id,
        date,
        "active",
        json!({
            "type": "permit",
            "actor": [to_client(APP)],
            "purpose": purposes(&["PATRQT"]),
            "provision": [{"type": "deny", "class": classes(&["medications"])}]
        }),
    )
}

/// Nothing to municipalities for care coordination, except that a consultation took place.
fn municipality_identity_only_consultations() -> Value {
    consent(
        "c-muni",
        "2025-05-01T09:00:00+09:00",
        "active",
        json!({
            "type": "deny",
            "actor": [to_kind("municipality")],
            "purpose": purposes(&["COC", "PUBHLTH"]),
            "provision": [{"type": "permit", "class": classes(&["consultations"]), "modifierExtension": identity_only()}]
        }),
    )
}

/// App sharing of vaccinations for the 90 days of a 期間連携-style grant.
fn app_vaccinations_for_a_quarter() -> Value {
    consent(
        "c-quarter",
        "2025-04-01T09:00:00+09:00",
        "active",
        json!({
            "type": "permit",
            "period": {"start": "2025-04-01", "end": "2025-06-29"},
            "actor": [to_client(APP)],
            "purpose": purposes(&["PATRQT"]),
            "class": classes(&["vaccinations"])
        }),
    )
}

fn cases() -> Vec<Case> {
    vec![
        // ---- nesting ----
        Case {
            consents: vec![app_all_but_medications(
                "c-app",
                "2025-04-01T09:00:00+09:00",
            )],
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-app/_history/1"),
            provision: Some("Consent.provision"),
            ..base("permit applies where no nested exception does")
        },
        Case {
            consents: vec![app_all_but_medications(
                "c-app",
                "2025-04-01T09:00:00+09:00",
            )],
            data: medication(),
            outcome: Outcome::Deny,
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-app/_history/1"),
            provision: Some("Consent.provision.provision[0]"),
            ..base("deny nested inside permit")
        },
        Case {
            consents: vec![municipality_identity_only_consultations()],
            recipient: municipality(CHIYODA),
            purpose: "COC",
            data: consultation(),
            outcome: Outcome::Redact(Redaction::IdentityOnly),
            reason: ReasonCode::ConsentIdentityOnly,
            consent_used: Some("Consent/c-muni/_history/1"),
            provision: Some("Consent.provision.provision[0]"),
            ..base("permit (identity only) nested inside deny")
        },
        Case {
            consents: vec![municipality_identity_only_consultations()],
            recipient: municipality(CHIYODA),
            purpose: "COC",
            data: vital(),
            outcome: Outcome::Deny,
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-muni/_history/1"),
            provision: Some("Consent.provision"),
            ..base("deny root where the nested permit does not apply")
        },
        Case {
            consents: vec![consent(
                "c-both",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit",
                    "actor": [to_client(APP)],
                    "provision": [
                        {"type": "permit", "class": classes(&["vaccinations"])},
                        {"type": "deny", "purpose": purposes(&["PATRQT"])}
                    ]
                }),
            )],
            outcome: Outcome::Deny,
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-both/_history/1"),
            provision: Some("Consent.provision.provision[1]"),
            ..base("deny wins over permit among applicable siblings")
        },
        Case {
            consents: vec![consent(
                "c-deep",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit",
                    "actor": [to_client(APP)],
                    "provision": [{"type": "deny", "class": classes(&["consultations"]),
                        "provision": [{"type": "permit", "purpose": purposes(&["PATRQT"])}]}]
                }),
            )],
            data: consultation(),
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-deep/_history/1"),
            provision: Some("Consent.provision.provision[0].provision[0]"),
            ..base("an exception to an exception (three levels)")
        },
        // ---- periods ----
        Case {
            consents: vec![app_vaccinations_for_a_quarter()],
            now: datetime!(2025-03-31 23:59:59 +9),
            ..base("before the period: no consent applies")
        },
        Case {
            consents: vec![app_vaccinations_for_a_quarter()],
            now: datetime!(2025-04-01 00:00 +9),
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-quarter/_history/1"),
            provision: Some("Consent.provision"),
            ..base("first instant of the period")
        },
        Case {
            consents: vec![app_vaccinations_for_a_quarter()],
            now: datetime!(2025-06-29 23:59:59 +9),
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-quarter/_history/1"),
            provision: Some("Consent.provision"),
            ..base("a date-only end includes its whole day")
        },
        Case {
            consents: vec![app_vaccinations_for_a_quarter()],
            now: datetime!(2025-06-30 00:00 +9),
            ..base("after the period")
        },
        Case {
            consents: vec![consent(
                "c-pause",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit",
                    "actor": [to_client(APP)],
                    "provision": [{"type": "deny", "period": {"start": "2025-05-01", "end": "2025-05-07"}}]
                }),
            )],
            now: datetime!(2025-05-03 10:00 +9),
            outcome: Outcome::Deny,
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-pause/_history/1"),
            provision: Some("Consent.provision.provision[0]"),
            ..base("a nested deny with a period pauses sharing inside it")
        },
        Case {
            consents: vec![consent(
                "c-pause",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit",
                    "actor": [to_client(APP)],
                    "provision": [{"type": "deny", "period": {"start": "2025-05-01", "end": "2025-05-07"}}]
                }),
            )],
            now: datetime!(2025-05-08 00:00 +9),
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-pause/_history/1"),
            provision: Some("Consent.provision"),
            ..base("… and not after it")
        },
        // ---- most recent wins ----
        Case {
            consents: vec![
                app_all_but_medications("c-old", "2025-01-10T09:00:00+09:00"),
                consent(
                    "c-new",
                    "2025-03-01T09:00:00+09:00",
                    "active",
                    json!({"type": "deny", "actor": [to_client(APP)]}),
                ),
            ],
            outcome: Outcome::Deny,
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-new/_history/1"),
            provision: Some("Consent.provision"),
            ..base("a newer deny overrides an older permit")
        },
        Case {
            consents: vec![
                consent(
                    "c-new",
                    "2025-03-01T09:00:00+09:00",
                    "active",
                    json!({"type": "permit", "actor": [to_client(APP)]}),
                ),
                consent(
                    "c-old",
                    "2025-01-10T09:00:00+09:00",
                    "active",
                    json!({"type": "deny", "actor": [to_client(APP)]}),
                ),
            ],
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-new/_history/1"),
            provision: Some("Consent.provision"),
            ..base("a newer permit overrides an older deny, whatever the order given")
        },
        Case {
            consents: vec![
                app_all_but_medications("c-old", "2025-01-10T09:00:00+09:00"),
                consent(
                    "c-other-app",
                    "2025-03-01T09:00:00+09:00",
                    "active",
                    json!({"type": "deny", "actor": [to_client(OTHER_APP)]}),
                ),
            ],
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-old/_history/1"),
            provision: Some("Consent.provision"),
            ..base("a newer consent that does not apply leaves the older one deciding")
        },
        Case {
            consents: vec![
                consent(
                    "c-a",
                    "2025-03-01T09:00:00+09:00",
                    "active",
                    json!({"type": "permit", "actor": [to_client(APP)]}),
                ),
                consent(
                    "c-b",
                    "2025-03-01T09:00:00+09:00",
                    "active",
                    json!({"type": "deny", "actor": [to_client(APP)]}),
                ),
            ],
            outcome: Outcome::Deny,
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-b/_history/1"),
            provision: Some("Consent.provision"),
            ..base("same dateTime: deny wins")
        },
        // ---- base policies ----
        Case {
            recipient: clinic(),
            purpose: "TREAT",
            source: None,
            outcome: Outcome::Permit,
            reason: ReasonCode::BasePolicyOptOut,
            ..base("opt-out purpose without consents permits")
        },
        Case {
            ..base("opt-in purpose without consents denies")
        },
        Case {
            consents: vec![consent(
                "c-no-clinic",
                "2025-02-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "deny",
                    "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                               "reference": {"identifier": {"system": "http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no", "value": CLINIC_CODE}}}],
                    "purpose": purposes(&["TREAT"])
                }),
            )],
            recipient: clinic(),
            purpose: "TREAT",
            source: None,
            outcome: Outcome::Deny,
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-no-clinic/_history/1"),
            provision: Some("Consent.provision"),
            ..base("opt-out purpose: a deny naming the clinic (Common system variant) wins")
        },
        Case {
            consents: vec![consent(
                "c-untyped",
                "2025-02-01T09:00:00+09:00",
                "active",
                json!({
                    "actor": [to_client(APP)],
                    "provision": [{"type": "permit", "class": classes(&["vaccinations"])}]
                }),
            )],
            data: vital(),
            consent_used: Some("Consent/c-untyped/_history/1"),
            provision: Some("Consent.provision"),
            ..base("a root without type falls back on the base policy (opt-in)")
        },
        // ---- legal bases ----
        Case {
            consents: vec![consent(
                "c-no-city",
                "2025-04-20T09:00:00+09:00",
                "active",
                json!({"type": "deny", "actor": [to_kind("municipality")]}),
            )],
            recipient: municipality(CHIYODA),
            purpose: "PUBHLTH",
            outcome: Outcome::Permit,
            reason: ReasonCode::LegalBasis,
            legal_basis: Some("routine-vaccination-record-home-municipality"),
            ..base("routine vaccination to the home municipality overrides a deny")
        },
        Case {
            consents: vec![consent(
                "c-no-city",
                "2025-04-20T09:00:00+09:00",
                "active",
                json!({"type": "deny", "actor": [to_kind("municipality")]}),
            )],
            recipient: municipality(SHINJUKU),
            purpose: "PUBHLTH",
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-no-city/_history/1"),
            provision: Some("Consent.provision"),
            ..base("… but not to another municipality")
        },
        Case {
            recipient: municipality(CHIYODA),
            purpose: "PUBHLTH",
            home: None,
            ..base("… nor when the home municipality is unknown")
        },
        Case {
            recipient: municipality(CHIYODA),
            purpose: "PUBHLTH",
            data: immunization("imm-2", "voluntary"),
            ..base("a voluntary vaccination has no legal basis")
        },
        Case {
            recipient: municipality(CHIYODA),
            purpose: "PUBHLTH",
            data: consultation(),
            ..base("a consultation to the municipality needs consent")
        },
        Case {
            recipient: municipality(CHIYODA),
            purpose: "PUBHLTH",
            class_only: Some("vaccinations"),
            ..base("a class-only request cannot show the vaccination is routine")
        },
        Case {
            recipient: medical_association(),
            purpose: "HPAYMT",
            outcome: Outcome::Permit,
            reason: ReasonCode::LegalBasis,
            legal_basis: Some("routine-vaccination-claim-medical-association"),
            ..base("the clinic claims a routine vaccination through its medical association")
        },
        Case {
            recipient: municipality(SHINJUKU),
            purpose: "HPAYMT",
            source: Some(medical_association()),
            outcome: Outcome::Permit,
            reason: ReasonCode::LegalBasis,
            legal_basis: Some("routine-vaccination-claim-municipality"),
            ..base("the medical association bills the clinic's municipality (cross-municipality)")
        },
        Case {
            recipient: medical_association(),
            purpose: "HPAYMT",
            source: Some(app(APP)),
            ..base("a PHR app is no source for a claim")
        },
        // ---- identity-only ----
        Case {
            consents: vec![consent(
                "c-contact",
                "2025-05-20T15:00:00+09:00",
                "active",
                json!({
                    "type": "permit",
                    "actor": [to_municipality(CHIYODA)],
                    "purpose": purposes(&["COC"]),
                    "class": classes(&["consultations"]),
                    "modifierExtension": identity_only()
                }),
            )],
            recipient: municipality(CHIYODA),
            purpose: "COC",
            data: consultation(),
            now: datetime!(2025-05-21 09:00 +9),
            outcome: Outcome::Redact(Redaction::IdentityOnly),
            reason: ReasonCode::ConsentIdentityOnly,
            consent_used: Some("Consent/c-contact/_history/1"),
            provision: Some("Consent.provision"),
            ..base("identity-only sharing with the home municipality")
        },
        Case {
            consents: vec![consent(
                "c-contact",
                "2025-05-20T15:00:00+09:00",
                "active",
                json!({
                    "type": "permit",
                    "actor": [to_municipality(CHIYODA)],
                    "modifierExtension": identity_only(),
                    "provision": [{"type": "permit", "class": classes(&["vaccinations"]),
                        "modifierExtension": [{"url": consent::SHARING_LEVEL_EXTENSION, "valueCode": "full"}]}]
                }),
            )],
            recipient: municipality(CHIYODA),
            purpose: "COC",
            now: datetime!(2025-05-21 09:00 +9),
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-contact/_history/1"),
            provision: Some("Consent.provision.provision[0]"),
            ..base("a nested full-level permit widens an identity-only parent")
        },
        // ---- inactive / revoked ----
        Case {
            consents: vec![consent(
                "c-old",
                "2025-01-10T09:00:00+09:00",
                "inactive",
                json!({"type": "permit", "actor": [to_client(APP)]}),
            )],
            ..base("an inactive (revoked) consent is ignored")
        },
        Case {
            consents: vec![consent(
                "c-err",
                "2025-01-10T09:00:00+09:00",
                "entered-in-error",
                json!({"type": "permit", "actor": [to_client(APP)]}),
            )],
            ..base("an entered-in-error consent is ignored")
        },
        Case {
            consents: vec![consent(
                "c-draft",
                "2025-01-10T09:00:00+09:00",
                "proposed",
                json!({"type": "permit", "actor": [to_client(APP)]}),
            )],
            ..base("a proposed consent is not yet in force")
        },
        // ---- wrong recipient / wrong data class / wrong patient ----
        Case {
            consents: vec![app_all_but_medications(
                "c-app",
                "2025-04-01T09:00:00+09:00",
            )],
            recipient: app(OTHER_APP),
            ..base("another app of the same kind is not covered")
        },
        Case {
            consents: vec![consent(
                "c-city",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({"type": "permit", "actor": [to_municipality(CHIYODA)], "purpose": purposes(&["COC"])}),
            )],
            recipient: municipality(SHINJUKU),
            purpose: "COC",
            data: consultation(),
            ..base("another municipality is not covered")
        },
        Case {
            consents: vec![consent(
                "c-kind",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({"type": "permit", "actor": [to_kind("municipality")], "purpose": purposes(&["COC"])}),
            )],
            recipient: municipality(SHINJUKU),
            purpose: "COC",
            data: consultation(),
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-kind/_history/1"),
            provision: Some("Consent.provision"),
            ..base("a kind actor covers every municipality")
        },
        Case {
            consents: vec![app_vaccinations_for_a_quarter()],
            data: vital(),
            ..base("a data class the consent does not name")
        },
        Case {
            consents: vec![app_vaccinations_for_a_quarter()],
            purpose: "HRESCH",
            recipient: app(APP),
            ..base("a purpose the consent does not name")
        },
        Case {
            consents: vec![app_all_but_medications(
                "c-app",
                "2025-04-01T09:00:00+09:00",
            )],
            data: {
                let mut other = immunization("imm-9", "routine");
                other["patient"] = json!({"reference": "Patient/child-suzuki-ren"});
                other
            },
            reason: ReasonCode::PatientMismatch,
            ..base("a resource of another patient is refused")
        },
        Case {
            consents: vec![{
                let mut other = app_all_but_medications("c-sibling", "2025-04-01T09:00:00+09:00");
                other["patient"] = json!({"reference": "Patient/child-sato-sora"});
                other
            }],
            ..base("a sibling's consent does not apply")
        },
        Case {
            consents: vec![consent(
                "c-one",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit", "actor": [to_client(APP)],
                    "provision": [{"type": "deny", "data": [{"meaning": "instance", "reference": {"reference": "Immunization/imm-1"}}]}]
                }),
            )],
            reason: ReasonCode::ConsentDeny,
            consent_used: Some("Consent/c-one/_history/1"),
            provision: Some("Consent.provision.provision[0]"),
            ..base("a deny on one record instance")
        },
        Case {
            consents: vec![consent(
                "c-one",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit", "actor": [to_client(APP)],
                    "provision": [{"type": "deny", "data": [{"meaning": "instance", "reference": {"reference": "Immunization/imm-1"}}]}]
                }),
            )],
            data: immunization("imm-2", "routine"),
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-one/_history/1"),
            provision: Some("Consent.provision"),
            ..base("… leaves the other records permitted")
        },
        // ---- research: one consent per PHR vendor ----
        Case {
            consents: vec![consent(
                "c-study",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit", "actor": [to_project("ndb-phr-2025")], "purpose": purposes(&["HRESCH"])
                }),
            )],
            recipient: Party::research_project(
                &consent::ProjectId::new("ndb-phr-2025").expect("id"),
            ),
            source: Some(app(APP)),
            purpose: "HRESCH",
            reason: ReasonCode::SourceNotNamed,
            consent_used: Some("Consent/c-study/_history/1"),
            provision: Some("Consent.provision"),
            ..base("research data from a PHR vendor the consent does not name")
        },
        Case {
            consents: vec![consent(
                "c-study",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit", "actor": [to_project("ndb-phr-2025"), from_custodian(APP)], "purpose": purposes(&["HRESCH"])
                }),
            )],
            recipient: Party::research_project(
                &consent::ProjectId::new("ndb-phr-2025").expect("id"),
            ),
            source: Some(app(APP)),
            purpose: "HRESCH",
            outcome: Outcome::Permit,
            reason: ReasonCode::ConsentPermit,
            consent_used: Some("Consent/c-study/_history/1"),
            provision: Some("Consent.provision"),
            ..base("research data from the PHR vendor the consent names")
        },
        Case {
            consents: vec![consent(
                "c-study",
                "2025-04-01T09:00:00+09:00",
                "active",
                json!({
                    "type": "permit", "actor": [to_project("ndb-phr-2025"), from_custodian(APP)], "purpose": purposes(&["HRESCH"])
                }),
            )],
            recipient: Party::research_project(
                &consent::ProjectId::new("ndb-phr-2025").expect("id"),
            ),
            source: Some(app(OTHER_APP)),
            purpose: "HRESCH",
            ..base("… but not data from another vendor")
        },
        // ---- resources outside the consent model ----
        Case {
            data: json!({"resourceType": "Organization", "id": "sato-kodomo-clinic", "name": "さとうこどもクリニック"}),
            outcome: Outcome::Permit,
            reason: ReasonCode::UnprotectedResourceType,
            ..base("an Organization holds no personal data")
        },
        Case {
            data: json!({"resourceType": "AuditEvent", "id": "a1"}),
            reason: ReasonCode::UnclassifiedData,
            ..base("an unclassified resource is never disclosed")
        },
        Case {
            consents: vec![app_all_but_medications(
                "c-app",
                "2025-04-01T09:00:00+09:00",
            )],
            purpose: "HMARKT",
            reason: ReasonCode::UnknownPurpose,
            ..base("a purpose that is not configured")
        },
    ]
}

#[test]
fn decision_table() {
    let policy = policy();
    let patient = child();
    let mut failures = Vec::new();
    let all = cases();
    for case in &all {
        let records: Vec<_> = case.consents.iter().map(parse).collect();
        let purpose = purpose(case.purpose);
        let class = case
            .class_only
            .map(|c| policy.data_class(c).expect("class"));
        let data = match &class {
            Some(class) => Data::Class(class),
            None => Data::Resource(&case.data),
        };
        let request = Request {
            recipient: &case.recipient,
            source: case.source.as_ref(),
            purpose: &purpose,
            patient: &patient,
            home_municipality: case.home,
            data,
        };
        let d = decide(policy, &request, &records, case.now);
        let got = (
            d.outcome,
            d.reason,
            d.consents_used.first().map(String::as_str),
            d.provision.as_deref(),
            d.legal_basis.as_deref(),
        );
        let want = (
            case.outcome,
            case.reason,
            case.consent_used,
            case.provision,
            case.legal_basis,
        );
        if got != want {
            failures.push(format!(
                "{}:\n   got  {got:?}\n   want {want:?}\n   ({})",
                case.name, d.explanation
            ));
        }
        assert!(!d.explanation.is_empty(), "{}", case.name);
        assert!(d.consents_used.len() <= 1, "{}", case.name);
        // The same decision on the members the policy reads, without the rest of the record.
        if class.is_none() {
            let cut = members_read_only(&case.data);
            let on_cut = Request {
                data: Data::Resource(&cut),
                ..request.clone()
            };
            assert_eq!(
                decide(policy, &on_cut, &records, case.now),
                d,
                "{} (members read only)",
                case.name
            );
        }
        // Reversing the consents never changes the result.
        let mut reversed = records.clone();
        reversed.reverse();
        assert_eq!(
            decide(policy, &request, &reversed, case.now),
            d,
            "{} (reversed)",
            case.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn revocation_takes_effect_for_a_queued_delivery() {
    let policy = policy();
    let patient = child();
    let pou = purpose("PATRQT");
    let recipient = app(APP);
    let record = immunization("imm-1", "routine");
    let request = Request {
        recipient: &recipient,
        source: None,
        purpose: &pou,
        patient: &patient,
        home_municipality: Some(CHIYODA),
        data: Data::Resource(&record),
    };
    let granted = app_all_but_medications("c-app", "2025-04-01T09:00:00+09:00");
    let queued_at = decide(
        policy,
        &request,
        &[parse(&granted)],
        datetime!(2025-05-01 10:00 +9),
    );
    assert_eq!(queued_at.outcome, Outcome::Permit);

    // The guardian revokes: the gateway stores version 2 with status inactive.
    let mut revoked = granted.clone();
    revoked["status"] = json!("inactive");
    revoked["meta"]["versionId"] = json!("2");
    let delivered_at = decide(
        policy,
        &request,
        &[parse(&revoked)],
        datetime!(2025-05-01 10:05 +9),
    );
    assert_eq!(delivered_at.outcome, Outcome::Deny);
    assert_eq!(delivered_at.reason, ReasonCode::BasePolicyOptIn);
    assert_eq!(delivered_at.reason.as_str(), "base-policy-opt-in");
}

#[test]
fn reason_codes_are_stable_strings() {
    let codes = [
        (
            ReasonCode::UnprotectedResourceType,
            "unprotected-resource-type",
        ),
        (ReasonCode::UnclassifiedData, "unclassified-data"),
        (ReasonCode::UnknownPurpose, "unknown-purpose"),
        (ReasonCode::PatientMismatch, "patient-mismatch"),
        (ReasonCode::LegalBasis, "legal-basis"),
        (ReasonCode::ConsentPermit, "consent-permit"),
        (ReasonCode::ConsentIdentityOnly, "consent-identity-only"),
        (ReasonCode::ConsentDeny, "consent-deny"),
        (ReasonCode::SourceNotNamed, "source-not-named"),
        (ReasonCode::BasePolicyOptOut, "base-policy-opt-out"),
        (ReasonCode::BasePolicyOptIn, "base-policy-opt-in"),
        (ReasonCode::NoResearchConsent, "no-research-consent"),
        (ReasonCode::NoLegalBasis, "no-legal-basis"),
    ];
    for (code, text) in codes {
        assert_eq!(code.as_str(), text);
    }
}

#[test]
fn a_claim_batch_is_disclosed_only_to_the_parties_it_names() {
    const MUNICIPALITY_CODE: &str = "https://musubi.example.org/fhir/IdSystem/municipality-code";
    // 千代田区医師会 claims from 千代田区 (first leg); 千代田区 claims from 新宿区 (second leg).
    let batch = |id: &str, provider: Value, insurer: Value| {
        json!({"resourceType": "Claim", "id": id, "status": "active",
            "identifier": [{"system": "https://musubi.example.org/fhir/IdSystem/claim-batch", "value": id}],
            "patient": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "not-applicable"}]},
            "provider": provider, "insurer": insurer})
    };
    let by_code = |code: &str| json!({"type": "Organization", "identifier": {"system": MUNICIPALITY_CODE, "value": code}});
    let first_leg = batch(
        "batch-1",
        json!({"reference": "Organization/ma-chiyoda"}),
        by_code(CHIYODA),
    );
    let second_leg = batch("batch-2", by_code(CHIYODA), by_code(SHINJUKU));
    let association = |organization: Option<&str>| {
        let mut party = medical_association();
        party.organization = organization.map(str::to_owned);
        party
    };
    let hpaymt = purpose("HPAYMT");
    let decide = |recipient: &Party, claim: &Value| {
        decide_without_subject(policy(), recipient, None, &hpaymt, claim)
    };
    for (recipient, claim) in [
        (association(Some("Organization/ma-chiyoda")), &first_leg),
        (municipality(CHIYODA), &first_leg),
        (municipality(CHIYODA), &second_leg),
        (municipality(SHINJUKU), &second_leg),
    ] {
        let d = decide(&recipient, claim).expect("the claim batch basis applies");
        assert_eq!(
            decide(&recipient, &members_read_only(claim)),
            Some(d.clone()),
            "{recipient:?} {claim} (members read only)"
        );
        assert_eq!(d.outcome, Outcome::Permit, "{recipient:?} {claim}");
        assert_eq!(d.reason, ReasonCode::LegalBasis);
        assert_eq!(
            d.legal_basis.as_deref(),
            Some("routine-vaccination-claim-batch")
        );
        assert_eq!(d.data_class.as_ref().map(|c| c.as_str()), Some("claims"));
    }
    // Parties the batch does not name, other kinds and other purposes are denied outright (the
    // class is legal-basis-only), so no fallback can show a batch to them.
    let cases = [
        (
            association(Some("Organization/ma-shinjuku")),
            "HPAYMT",
            &first_leg,
        ),
        (association(None), "HPAYMT", &first_leg),
        (
            association(Some("Organization/ma-chiyoda")),
            "HPAYMT",
            &second_leg,
        ),
        (municipality(SHINJUKU), "HPAYMT", &first_leg),
        (municipality("131024"), "HPAYMT", &second_leg),
        (app(APP), "HPAYMT", &first_leg),
        (clinic(), "HPAYMT", &first_leg),
        (clinic(), "TREAT", &first_leg),
        (
            association(Some("Organization/ma-chiyoda")),
            "PUBHLTH",
            &first_leg,
        ),
    ];
    for (recipient, code, claim) in cases {
        let d = decide_without_subject(policy(), &recipient, None, &purpose(code), claim)
            .unwrap_or_else(|| panic!("{recipient:?} {code}: a batch is never left undecided"));
        assert_eq!(
            decide_without_subject(
                policy(),
                &recipient,
                None,
                &purpose(code),
                &members_read_only(claim)
            ),
            Some(d.clone()),
            "{recipient:?} {code} (members read only)"
        );
        assert_eq!(d.outcome, Outcome::Deny, "{recipient:?} {code} {claim}");
        assert_eq!(d.reason, ReasonCode::NoLegalBasis);
        assert_eq!(d.reason.as_str(), "no-legal-basis");
    }
    // A Claim that is not a batch is not classified: the caller's own rule decides.
    let other = json!({"resourceType": "Claim", "id": "other", "status": "active"});
    assert!(decide(&municipality(CHIYODA), &other).is_none());
}
