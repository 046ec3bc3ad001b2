//! The shipped routing rules applied to record events through a test directory.

use identifiers::MunicipalityCode;
use routing::{
    Basis, Channel, DeliveryId, Directory, Event, EventKind, OrganizationRef, PartyRole,
    PurposeOfUse, Recipient, RecipientKind, RoutingError, RoutingRules, home_municipality,
    organization_municipality, patient_id, plan,
};
use serde_json::{Value, json};

const FUNDING: &str = "https://musubi.example.org/fhir/CodeSystem/funding-source";
const MIC: &str = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";

struct TestDirectory;

fn recipient(kind: RecipientKind, id: &str, has_endpoint: bool) -> Recipient {
    Recipient {
        kind,
        id: id.to_owned(),
        has_endpoint,
    }
}

impl Directory for TestDirectory {
    fn guardian_apps_of(&self, patient_id: &str) -> Vec<Recipient> {
        match patient_id {
            "p1" => vec![
                recipient(RecipientKind::PhrApp, "app-boshi", true),
                recipient(RecipientKind::PhrApp, "app-mailbox-only", false),
                // The directory may list an app twice (two guardians); it is delivered once.
                recipient(RecipientKind::PhrApp, "app-boshi", true),
            ],
            _ => Vec::new(),
        }
    }
    fn medical_association_of(&self, clinic: &OrganizationRef) -> Option<Recipient> {
        match clinic {
            OrganizationRef::Id(id) if id == "clinic-1" => Some(recipient(
                RecipientKind::MedicalAssociation,
                "ma-chiyoda",
                true,
            )),
            OrganizationRef::Identifier { system, value }
                if system == MIC && value == "1310000001" =>
            {
                Some(recipient(
                    RecipientKind::MedicalAssociation,
                    "ma-chuo",
                    false,
                ))
            }
            _ => None,
        }
    }
    fn home_municipality_of(&self, patient_id: &str) -> Option<MunicipalityCode> {
        (patient_id == "p1").then(|| MunicipalityCode::parse("131016").expect("valid"))
    }
    fn municipality(&self, code: &MunicipalityCode) -> Option<Recipient> {
        Some(recipient(
            RecipientKind::Municipality,
            &format!("municipality-{code}"),
            false,
        ))
    }
    fn district_team_of(
        &self,
        municipality: &MunicipalityCode,
        patient_id: &str,
    ) -> Option<Recipient> {
        (patient_id == "p1").then(|| {
            recipient(
                RecipientKind::Municipality,
                &format!("district-{municipality}-east"),
                false,
            )
        })
    }
    fn organization(&self, organization: &OrganizationRef) -> Option<Recipient> {
        (organization == &OrganizationRef::Id("clinic-2".to_owned()))
            .then(|| recipient(RecipientKind::ClinicEmr, "Organization/clinic-2", true))
    }
}

fn immunization(patient: &str, funding: &str, performer: Value) -> Value {
    json!({
        "resourceType": "Immunization",
        "id": "imm-1",
        "status": "completed",
        "patient": {"reference": format!("Patient/{patient}")},
        "fundingSource": {"coding": [{"system": FUNDING, "code": funding}]},
        "performer": performer
    })
}

fn clinic_1() -> Value {
    json!([
        {"actor": {"reference": "Practitioner/dr-1"}},
        {"actor": {"reference": "Organization/clinic-1"}}
    ])
}

fn yoshinhyo(questionnaire: &str) -> Value {
    json!({
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "questionnaire": questionnaire,
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "extension": [{
            "url": "https://musubi.example.org/fhir/StructureDefinition/chosen-clinic",
            "valueReference": {"reference": "Organization/clinic-2"}
        }]
    })
}

fn observation(judgement: Option<&str>, tag: bool) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "subject": {"reference": "Patient/p1"}
    });
    if let Some(code) = judgement {
        o["valueCodeableConcept"] = json!({"coding": [{
            "system": "https://musubi.example.org/fhir/CodeSystem/checkup-judgement", "code": code}]});
    }
    if tag {
        o["meta"] = json!({"tag": [{
            "system": "https://musubi.example.org/fhir/CodeSystem/routing-flag", "code": "needs-care"}]});
    }
    o
}

/// (rule id, recipient id, channel, purpose, basis code) of each delivery, and (rule id, reason
/// fragment) of each unresolved party.
type Expected = (
    Vec<(
        &'static str,
        &'static str,
        Channel,
        PurposeOfUse,
        &'static str,
    )>,
    Vec<(&'static str, &'static str)>,
);

fn run(kind: EventKind, resource: &Value, rules: &RoutingRules) -> routing::Plan {
    let resource_type = resource["resourceType"].as_str().expect("type");
    let id = resource["id"].as_str().expect("id");
    let event = Event {
        kind,
        resource_type,
        id,
        version: "1",
        resource,
    };
    plan(rules, &event, &TestDirectory)
}

#[test]
fn shipped_rules_route_each_kind_of_record_to_its_parties() {
    use Channel::*;
    use PurposeOfUse::*;
    let rules = RoutingRules::embedded().expect("embedded rules load");
    let apps = |kind_rule: &'static str| {
        vec![
            (kind_rule, "app-boshi", FhirRestHook, Patrqt, "consent"),
            (kind_rule, "app-mailbox-only", Mailbox, Patrqt, "consent"),
        ]
    };
    let routine_all = {
        let mut v = apps("immunization-to-guardian-apps");
        v.push((
            "routine-immunization-to-medical-association",
            "ma-chiyoda",
            MonthlyBatch,
            Hpaymt,
            "legal:routine-vaccination-claim-medical-association",
        ));
        v.push((
            "routine-immunization-to-home-municipality",
            "municipality-131016",
            MunicipalFile,
            Pubhlth,
            "legal:routine-vaccination-record-home-municipality",
        ));
        v
    };
    let cases: Vec<(&str, EventKind, Value, Expected)> = vec![
        (
            "routine vaccination: apps, medical association, home municipality",
            EventKind::Created,
            immunization("p1", "routine", clinic_1()),
            (routine_all.clone(), vec![]),
        ),
        (
            "deletion of a routine vaccination reaches the same parties",
            EventKind::Deleted,
            immunization("p1", "routine", clinic_1()),
            (routine_all, vec![]),
        ),
        (
            "voluntary vaccination: the apps only",
            EventKind::Updated,
            immunization("p1", "voluntary", clinic_1()),
            (apps("immunization-to-guardian-apps"), vec![]),
        ),
        (
            "clinic named by 医療機関コード resolves to its association",
            EventKind::Created,
            immunization(
                "p2",
                "routine",
                json!([{"actor": {"identifier": {"system": MIC, "value": "1310000001"}}}]),
            ),
            (
                vec![(
                    "routine-immunization-to-medical-association",
                    "ma-chuo",
                    MonthlyBatch,
                    Hpaymt,
                    "legal:routine-vaccination-claim-medical-association",
                )],
                vec![
                    (
                        "immunization-to-guardian-apps",
                        "no app is registered for Patient/p2",
                    ),
                    (
                        "routine-immunization-to-home-municipality",
                        "Patient/p2 has no known home municipality",
                    ),
                ],
            ),
        ),
        (
            "performer without an Organization is reported, not dropped",
            EventKind::Created,
            immunization(
                "p1",
                "routine",
                json!([{"actor": {"reference": "Practitioner/dr-1"}}]),
            ),
            (
                {
                    let mut v = apps("immunization-to-guardian-apps");
                    v.push((
                        "routine-immunization-to-home-municipality",
                        "municipality-131016",
                        MunicipalFile,
                        Pubhlth,
                        "legal:routine-vaccination-record-home-municipality",
                    ));
                    v
                },
                vec![(
                    "routine-immunization-to-medical-association",
                    "no Organization reference at performer.actor",
                )],
            ),
        ),
        (
            "a 予診票 goes to the chosen clinic",
            EventKind::Created,
            yoshinhyo("https://musubi.example.org/fhir/Questionnaire/prevaccination-child|1.0.0"),
            (
                vec![(
                    "prevaccination-to-chosen-clinic",
                    "Organization/clinic-2",
                    FhirRestHook,
                    Treat,
                    "consent",
                )],
                vec![],
            ),
        ),
        (
            "another questionnaire is not a 予診票",
            EventKind::Created,
            yoshinhyo("https://example.org/Questionnaire/survey"),
            (vec![], vec![]),
        ),
        (
            "a 予診票 is not routed on deletion",
            EventKind::Deleted,
            yoshinhyo("https://musubi.example.org/fhir/Questionnaire/prevaccination-child"),
            (vec![], vec![]),
        ),
        (
            "judgement 要精査 goes to the district team",
            EventKind::Created,
            observation(Some("refer"), false),
            (
                vec![(
                    "needs-care-observation-to-district-team",
                    "district-131016-east",
                    WeeklyDigest,
                    Coc,
                    "consent",
                )],
                vec![],
            ),
        ),
        (
            "the needs-care tag goes to the district team",
            EventKind::Updated,
            observation(None, true),
            (
                vec![(
                    "needs-care-observation-to-district-team",
                    "district-131016-east",
                    WeeklyDigest,
                    Coc,
                    "consent",
                )],
                vec![],
            ),
        ),
        (
            "judgement 健 goes nowhere",
            EventKind::Created,
            observation(Some("healthy"), false),
            (vec![], vec![]),
        ),
        (
            "a Patient has no route",
            EventKind::Created,
            json!({"resourceType": "Patient", "id": "p1"}),
            (vec![], vec![]),
        ),
    ];
    for (name, kind, resource, (deliveries, unresolved)) in cases {
        let got = run(kind, &resource, rules);
        let got_deliveries: Vec<_> = got
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.rule_id.as_str(),
                    d.recipient.id.as_str(),
                    d.channel,
                    d.purpose,
                    d.basis.code(),
                )
            })
            .collect();
        let want: Vec<_> = deliveries
            .iter()
            .map(|(r, id, c, p, b)| (*r, *id, *c, *p, (*b).to_owned()))
            .collect();
        assert_eq!(got_deliveries, want, "{name}");
        assert_eq!(
            got.unresolved.len(),
            unresolved.len(),
            "{name}: {:?}",
            got.unresolved
        );
        for (u, (rule, reason)) in got.unresolved.iter().zip(unresolved) {
            assert_eq!(u.rule_id, rule, "{name}");
            assert!(u.reason.contains(reason), "{name}: {}", u.reason);
        }
        for d in &got.deliveries {
            assert_eq!(d.event, kind, "{name}");
            assert_eq!(
                d.resource_id,
                resource["id"].as_str().expect("id"),
                "{name}"
            );
        }
    }
}

#[test]
fn delivery_ids_are_stable_and_differ_by_rule_resource_version_and_recipient() {
    let rules = RoutingRules::embedded().expect("load");
    let resource = immunization("p1", "routine", clinic_1());
    let first = run(EventKind::Created, &resource, rules);
    let again = run(EventKind::Created, &resource, rules);
    assert_eq!(first, again);
    let ids: Vec<&str> = first.deliveries.iter().map(|d| d.id.as_str()).collect();
    for id in &ids {
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");

    let app = recipient(RecipientKind::PhrApp, "app-boshi", true);
    let event = |version| Event {
        kind: EventKind::Created,
        resource_type: "Immunization",
        id: "imm-1",
        version,
        resource: &resource,
    };
    let base = DeliveryId::new("r", &event("1"), &app);
    assert_eq!(base, DeliveryId::new("r", &event("1"), &app));
    assert_ne!(base, DeliveryId::new("r", &event("2"), &app));
    assert_ne!(base, DeliveryId::new("s", &event("1"), &app));
    assert_ne!(
        base,
        DeliveryId::new(
            "r",
            &event("1"),
            &recipient(RecipientKind::PhrApp, "app-other", true)
        )
    );
    // The event kind is not part of the id: the outbox keeps one row per record version.
    let updated = Event {
        kind: EventKind::Updated,
        ..event("1")
    };
    assert_eq!(base, DeliveryId::new("r", &updated, &app));
    // Length prefixes keep "ab"+"c" apart from "a"+"bc".
    let split = |rule: &str, id: &str| DeliveryId::new(rule, &Event { id, ..event("1") }, &app);
    assert_ne!(split("rab", "c"), split("ra", "bc"));
}

#[test]
fn extra_files_replace_and_disable_shipped_rules() {
    let extra = vec![(
        "local-overrides.json".to_owned(),
        json!({
            "kind": "routing-rules",
            "id": "local",
            "version": "1",
            "rules": [
                {
                    "id": "immunization-to-guardian-apps",
                    "description": "switched off here",
                    "resource_type": "Immunization",
                    "events": ["created"],
                    "party": {"role": "guardian-apps"},
                    "channel": "fhir-rest-hook",
                    "purpose": "PATRQT",
                    "basis": "consent",
                    "enabled": false
                },
                {
                    "id": "routine-immunization-to-home-municipality",
                    "description": "sent by rest-hook here",
                    "resource_type": "Immunization",
                    "events": ["created"],
                    "party": {"role": "home-municipality"},
                    "channel": "fhir-rest-hook",
                    "purpose": "PUBHLTH",
                    "basis": {"legal": "routine-vaccination-record-home-municipality"}
                }
            ]
        })
        .to_string(),
    )];
    let rules = RoutingRules::load(&extra).expect("load");
    assert_eq!(
        rules.rules().len(),
        RoutingRules::embedded().expect("load").rules().len()
    );
    let got = run(
        EventKind::Created,
        &immunization("p1", "voluntary", clinic_1()),
        &rules,
    );
    let summary: Vec<_> = got
        .deliveries
        .iter()
        .map(|d| (d.rule_id.as_str(), d.channel))
        .collect();
    // The municipality has no endpoint, so its rest-hook delivery falls back to the mailbox.
    assert_eq!(
        summary,
        vec![(
            "routine-immunization-to-home-municipality",
            Channel::Mailbox
        )]
    );
    assert_eq!(
        rules.files().last().map(|f| f.file.as_str()),
        Some("local-overrides.json")
    );
}

#[test]
fn retry_policies_come_from_the_data() {
    let rules = RoutingRules::embedded().expect("load");
    let rest = rules.retry_policy(Channel::FhirRestHook);
    assert_eq!(rest.max_attempts, 48);
    assert_eq!(rest.base_delay.as_secs(), 30);
    assert_eq!(rest.max_delay.as_secs(), 1800);
    assert_eq!(rules.retry_policy(Channel::Mailbox).max_attempts, 10);
    // Without any policy file, the fallback applies.
    let bare = RoutingRules::from_files([]).expect("empty");
    assert_eq!(bare.retry_policy(Channel::Mailbox), routing::FALLBACK_RETRY);
}

#[test]
fn malformed_data_is_rejected_with_file_and_reason() {
    let rule = |patch: Value| {
        let mut r = json!({
            "id": "r1",
            "description": "d",
            "resource_type": "Immunization",
            "events": ["created"],
            "party": {"role": "guardian-apps"},
            "channel": "mailbox",
            "purpose": "TREAT",
            "basis": "consent"
        });
        for (k, v) in patch.as_object().expect("object") {
            r[k] = v.clone();
        }
        json!({"kind": "routing-rules", "id": "f", "version": "1", "rules": [r]}).to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{".to_owned(), "EOF"),
        (json!({"id": "x"}).to_string(), "missing \"kind\""),
        (json!({"kind": "other"}).to_string(), "unknown kind \"other\""),
        (rule(json!({"purpose": "SELLING"})), "unknown variant `SELLING`"),
        (rule(json!({"channel": "fax"})), "unknown variant `fax`"),
        (rule(json!({"party": {"role": "neighbours"}})), "unknown variant `neighbours`"),
        (
            rule(json!({"party": {"role": "referenced-organization"}})),
            "needs a path",
        ),
        (
            rule(json!({"party": {"role": "home-municipality", "path": "subject"}})),
            "takes no path",
        ),
        (
            rule(json!({"party": {"role": "referenced-organization", "path": "a..b"}})),
            "is not an element name",
        ),
        (rule(json!({"events": []})), "events is empty"),
        (rule(json!({"resource_type": "immunization"})), "not a FHIR resource type"),
        (rule(json!({"basis": {"legal": ""}})), "a legal basis needs an id"),
        (rule(json!({"id": "has space"})), "letters, digits"),
        (rule(json!({"typo": 1})), "unknown field `typo`"),
        (
            rule(json!({"when": {"like": {"path": "status"}}})),
            "unknown variant `like`",
        ),
        (
            json!({"kind": "routing-rules", "id": "f", "version": "1", "rules": [
                {"id": "a", "description": "", "resource_type": "Patient", "events": ["created"],
                 "party": {"role": "guardian-apps"}, "channel": "mailbox", "purpose": "TREAT", "basis": "consent"},
                {"id": "a", "description": "", "resource_type": "Patient", "events": ["created"],
                 "party": {"role": "guardian-apps"}, "channel": "mailbox", "purpose": "TREAT", "basis": "consent"}
            ]})
            .to_string(),
            "appears twice",
        ),
        (
            json!({"kind": "retry-policies", "channels": {"pigeon": {"base_delay_seconds": 1, "max_delay_seconds": 2, "max_attempts": 1}}}).to_string(),
            "unknown channel \"pigeon\"",
        ),
        (
            json!({"kind": "retry-policies", "channels": {"mailbox": {"base_delay_seconds": 10, "max_delay_seconds": 2, "max_attempts": 1}}}).to_string(),
            "below base_delay_seconds",
        ),
        (
            json!({"kind": "retry-policies", "default": {"base_delay_seconds": 1, "max_delay_seconds": 2, "max_attempts": 0}}).to_string(),
            "at least 1",
        ),
        (
            json!({"kind": "retry-policies", "default": {"base_delay_seconds": 1.5, "max_delay_seconds": 2, "max_attempts": 1}}).to_string(),
            "invalid",
        ),
    ];
    for (text, message) in cases {
        let err = RoutingRules::from_files([("bad.json", text.as_str())]).expect_err(&text);
        let shown = err.to_string();
        assert!(shown.starts_with("bad.json: "), "{shown}");
        assert!(shown.contains(message), "{text}\n→ {shown}");
        assert!(matches!(
            err,
            RoutingError::Json { .. } | RoutingError::Invalid { .. }
        ));
    }
}

#[test]
fn home_municipality_reads_the_address_extension() {
    const EXT: &str = "https://musubi.example.org/fhir/StructureDefinition/municipality-code";
    let address = |use_: Option<&str>, code: &str| {
        let mut a = json!({"extension": [{"url": EXT, "valueCode": code}]});
        if let Some(u) = use_ {
            a["use"] = json!(u);
        }
        a
    };
    /// Ok(code) or Err(fragment of the error).
    type Want = Result<Option<&'static str>, &'static str>;
    let cases: Vec<(&str, Value, Want)> = vec![
        (
            "home address",
            json!({"address": [address(Some("home"), "131016")]}),
            Ok(Some("131016")),
        ),
        (
            "home wins over an earlier unspecified address",
            json!({"address": [address(None, "131024"), address(Some("home"), "131032")]}),
            Ok(Some("131032")),
        ),
        (
            "work and old addresses are skipped",
            json!({"address": [address(Some("work"), "131024"), address(Some("old"), "131032")]}),
            Ok(None),
        ),
        (
            "unspecified use counts",
            json!({"address": [address(Some("temp"), "131024"), address(None, "131016")]}),
            Ok(Some("131016")),
        ),
        (
            "valueString and full-width digits",
            json!({"address": [{"extension": [{"url": EXT, "valueString": "１３１０２４"}]}]}),
            Ok(Some("131024")),
        ),
        (
            "valueIdentifier with the municipality-code system",
            json!({"address": [{"extension": [{"url": EXT, "valueIdentifier": {
                "system": "https://musubi.example.org/fhir/IdSystem/municipality-code", "value": "131016"}}]}]}),
            Ok(Some("131016")),
        ),
        (
            "on the Patient itself",
            json!({"extension": [{"url": EXT, "valueCode": "131016"}]}),
            Ok(Some("131016")),
        ),
        (
            "nothing",
            json!({"address": [{"text": "東京都千代田区"}]}),
            Ok(None),
        ),
        (
            "a bad check digit is an error",
            json!({"address": [address(Some("home"), "131017")]}),
            Err("bad check digit"),
        ),
    ];
    for (name, patient, expected) in cases {
        let got = home_municipality(&patient);
        match (got, expected) {
            (Ok(code), Ok(want)) => {
                assert_eq!(code.as_ref().map(MunicipalityCode::as_str), want, "{name}");
            }
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{name}: {e}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_clinic_municipality_is_read_from_any_address_of_the_organization() {
    const EXT: &str = "https://musubi.example.org/fhir/StructureDefinition/municipality-code";
    let work = json!({"resourceType": "Organization", "address": [
        {"use": "work", "text": "東京都千代田区", "extension": [{"url": EXT, "valueCode": "131016"}]}]});
    assert_eq!(
        organization_municipality(&work)
            .expect("valid")
            .map(|c| c.to_string()),
        Some("131016".to_owned())
    );
    let own = json!({"resourceType": "Organization", "extension": [{"url": EXT, "valueString": "131024"}]});
    assert_eq!(
        organization_municipality(&own)
            .expect("valid")
            .map(|c| c.to_string()),
        Some("131024".to_owned())
    );
    let none = json!({"resourceType": "Organization", "address": [{"text": "東京都中央区"}]});
    assert_eq!(organization_municipality(&none).expect("valid"), None);
    let bad = json!({"resourceType": "Organization", "address": [{"extension": [{"url": EXT, "valueCode": "131017"}]}]});
    assert!(organization_municipality(&bad).is_err());
}

#[test]
fn patient_and_organization_references_are_read_from_the_resource() {
    let cases = [
        ("Patient", json!({"id": "p9"}), Some("p9")),
        (
            "Immunization",
            json!({"patient": {"reference": "Patient/p1"}}),
            Some("p1"),
        ),
        (
            "Observation",
            json!({"subject": {"reference": "https://h.example/fhir/Patient/p2"}}),
            Some("p2"),
        ),
        (
            "Observation",
            json!({"subject": {"reference": "Group/g1"}}),
            None,
        ),
        (
            "Observation",
            json!({"subject": {"reference": "Patient/"}}),
            None,
        ),
        ("Observation", json!({}), None),
    ];
    for (resource_type, resource, expected) in cases {
        assert_eq!(
            patient_id(resource_type, &resource).as_deref(),
            expected,
            "{resource}"
        );
    }
    let refs = [
        (
            json!({"reference": "Organization/o1"}),
            Some(OrganizationRef::Id("o1".into())),
        ),
        (
            json!({"reference": "https://h.example/fhir/Organization/o2"}),
            Some(OrganizationRef::Id("o2".into())),
        ),
        (json!({"reference": "Practitioner/d1"}), None),
        (
            json!({"identifier": {"system": MIC, "value": "1310000001"}}),
            Some(OrganizationRef::Identifier {
                system: MIC.into(),
                value: "1310000001".into(),
            }),
        ),
        (
            json!({"type": "Practitioner", "identifier": {"system": "s", "value": "v"}}),
            None,
        ),
        (json!({"display": "駅前クリニック"}), None),
    ];
    for (reference, expected) in refs {
        assert_eq!(
            OrganizationRef::from_reference(&reference),
            expected,
            "{reference}"
        );
    }
}

#[test]
fn every_shipped_rule_names_its_source_and_a_valid_basis() {
    let rules = RoutingRules::embedded().expect("load");
    assert_eq!(rules.rules().len(), 5);
    for rule in rules.rules() {
        assert!(!rule.source.is_empty(), "{}", rule.id);
        assert!(rule.enabled, "{}", rule.id);
        if rule.purpose == PurposeOfUse::Hpaymt {
            assert_eq!(rule.channel, Channel::MonthlyBatch, "{}", rule.id);
        }
        if let Basis::Legal(id) = &rule.basis {
            assert!(id.starts_with("routine-vaccination-"), "{}", rule.id);
            assert_ne!(rule.party.role, PartyRole::GuardianApps, "{}", rule.id);
        }
    }
    assert_eq!(PurposeOfUse::Hpaymt.code(), "HPAYMT");
    assert_eq!(
        PurposeOfUse::SYSTEM,
        "http://terminology.hl7.org/CodeSystem/v3-ActReason"
    );
}
