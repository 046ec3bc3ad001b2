//! The codes the engine uses are the codes the shipped CodeSystems publish (profiles/jp/terminology),
//! so a consent written with the published terminology is always understood.

use std::collections::BTreeSet;

use consent::{Policy, RecipientKind, SharingLevel};
use serde_json::Value;

fn codes(url: &str) -> BTreeSet<String> {
    let system = profiles::JP_TERMINOLOGY
        .iter()
        .map(|(_, text)| serde_json::from_str::<Value>(text).expect("terminology JSON"))
        .find(|v| v.get("url").and_then(Value::as_str) == Some(url))
        .unwrap_or_else(|| panic!("{url} is not shipped"));
    system["concept"]
        .as_array()
        .expect("concepts")
        .iter()
        .map(|c| c["code"].as_str().expect("code").to_owned())
        .collect()
}

#[test]
fn data_classes_match_the_code_system() {
    let policy = Policy::embedded().expect("embedded consent data");
    let configured: BTreeSet<String> = policy
        .data_classes()
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(configured, codes(consent::DATA_CLASS_SYSTEM));
}

#[test]
fn recipient_kinds_and_sharing_levels_match_their_code_systems() {
    let kinds: BTreeSet<String> = RecipientKind::ALL
        .iter()
        .map(|k| k.code().to_owned())
        .collect();
    assert_eq!(kinds, codes(consent::RECIPIENT_KIND_SYSTEM));
    let levels: BTreeSet<String> = [SharingLevel::Full, SharingLevel::IdentityOnly]
        .iter()
        .map(|l| l.code().to_owned())
        .collect();
    assert_eq!(levels, codes(consent::SHARING_LEVEL_SYSTEM));
}

#[test]
fn every_configured_purpose_is_a_purpose_of_use_code_with_a_source() {
    let policy = Policy::embedded().expect("embedded consent data");
    // Codes of the HL7 v3-PurposeOfUse value set that Musubi has checked; a new purpose in
    // purposes.json must be one of these (or be added here after checking it).
    let known = [
        "TREAT", "ETREAT", "COC", "PATRQT", "FAMRQT", "PWATRNY", "PUBHLTH", "HPAYMT", "HRESCH",
        "HOPERAT", "HOUTCOMS",
    ];
    for rule in policy.purposes() {
        assert!(known.contains(&rule.code.as_str()), "{}", rule.code);
        assert!(!rule.source.is_empty(), "{}", rule.code);
    }
    for basis in policy.legal_bases() {
        assert!(
            !basis.law.is_empty() && !basis.source.is_empty(),
            "{}",
            basis.id
        );
    }
}
