//! The embedded rule files parse, and malformed files are refused with the file named.

use crate::common::rules;
use vaccination::RuleSet;

#[test]
fn embedded_rules_parse_and_name_every_vaccine_type() {
    let rules = rules();
    for code in [
        "dpt-ipv-hib",
        "dpt-ipv",
        "hib",
        "pcv",
        "hepb",
        "rota-1",
        "rota-5",
        "bcg",
        "mr",
        "varicella",
        "je",
        "dt",
        "hpv-2",
        "hpv-4",
        "hpv-9",
        "influenza",
        "pneumococcal-ppsv23",
        "covid-19",
        "zoster-live",
        "zoster-recombinant",
    ] {
        let vaccine = rules
            .vaccine(code)
            .unwrap_or_else(|| panic!("{code} missing"));
        assert_eq!(vaccine.code(), code);
        assert!(!vaccine.display().is_empty());
        assert!(!vaccine.source.is_empty(), "{code} has a source");
    }
    assert!(rules.municipality("131016").is_some_and(|m| m.example));
    assert!(rules.files().iter().all(|f| !f.version.is_empty()));
}

#[test]
fn malformed_files_are_refused_naming_the_file() {
    for (name, text, expected) in [
        ("broken.json", "{", "broken.json"),
        (
            "unknown-kind.json",
            r#"{"kind": "nonsense"}"#,
            "unknown-kind.json",
        ),
        (
            "bad-code.json",
            r#"{"kind": "municipality", "municipality": "13101", "version": "1", "name": "x", "description": "x", "source": "x"}"#,
            "not 6 digits",
        ),
        (
            "bad-age.json",
            r#"{"kind": "schedule", "id": "x", "version": "1", "description": "x", "vaccines": [{"code": "x", "display": "x",
                "class": "A", "kind": "inactivated", "kind_source": "x", "source": "x",
                "windows": [{"id": "w", "from": {"months": 2, "years": 1}, "wording": "w", "source": "s"}],
                "variants": [{"id": "v", "series": [{"id": "s", "doses": [{}]}]}]}]}"#,
            "an age is exactly one of",
        ),
        (
            "bad-ref.json",
            r#"{"kind": "schedule", "id": "x", "version": "1", "description": "x", "vaccines": [{"code": "x", "display": "x",
                "class": "A", "kind": "inactivated", "kind_source": "x", "source": "x",
                "windows": [{"id": "w", "wording": "w", "source": "s"}],
                "variants": [{"id": "v", "series": [{"id": "s", "doses": [{"min_intervals": [{"after": 3, "length": {"days": 1}}]}]}]}]}]}"#,
            "interval after dose 3",
        ),
        (
            "bad-group.json",
            r#"{"kind": "schedule", "id": "x", "version": "1", "description": "x",
                "path_groups": [{"id": "g", "alternatives": [["nope"]], "exclusive": true, "wording": "w", "source": "s"}]}"#,
            "unknown vaccine \"nope\"",
        ),
    ] {
        let error = RuleSet::load(&[(name.to_owned(), text.to_owned())])
            .expect_err(name)
            .to_string();
        assert!(error.contains(expected), "{name}: {error}");
    }
}

#[test]
fn an_extra_schedule_file_replaces_a_vaccine_by_code() {
    // A correction by data: move the BCG window end from 1歳 to 2歳 (a hypothetical change).
    let fixed = r#"{"kind": "schedule", "id": "fix", "version": "2099-01-01", "description": "test correction",
        "vaccines": [{"code": "bcg", "display": "BCG", "class": "A", "kind": "injectable_live", "kind_source": "x",
          "windows": [{"id": "bcg", "to": {"years": 2}, "wording": "2歳に至るまで", "source": "test"}],
          "variants": [{"id": "standard", "series": [{"id": "1回", "doses": [{}]}]}], "source": "test"}]}"#;
    let rules = RuleSet::load(&[("fix.json".to_owned(), fixed.to_owned())]).expect("loads");
    let birth = time::macros::date!(2024 - 04 - 01);
    let person = crate::common::child(birth);
    // Under the embedded rule 2025-04-01 is past 1歳 (reached 2025-03-31); under the fix it is not.
    let candidate = crate::common::dose("bcg", time::macros::date!(2025 - 04 - 01));
    assert!(vaccination::check_dose(&rules, &person, &[], &candidate).is_empty());
    assert!(!crate::common::check(&person, &[], &candidate).is_empty());
    assert_eq!(
        rules.vaccines().len(),
        crate::common::rules().vaccines().len()
    );
}
