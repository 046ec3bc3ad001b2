//! Municipal overrides: extra subsidised series and season dates, applied only to residents.

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*, Person, RuleSet};

const OVERRIDE: &str = r#"{
  "kind": "municipality", "municipality": "131016", "version": "test", "name": "test ward",
  "description": "test override", "source": "test",
  "seasons": {"influenza": {"from": "11-01", "to": "12-31"}},
  "add_series": [{"vaccine": "influenza", "series": {
     "id": "小児 (区独自助成)", "seasonal": true, "season": {"from": "10-01", "to": "01-31"},
     "windows": [{"id": "flu-child", "from": {"months": 6}, "to": {"fiscal_year_of_age": 15, "edge": "last"},
                  "wording": "生後6か月から中学3年生まで", "funding": "区独自助成", "source": "test"}],
     "doses": [{}]}}]
}"#;

fn rules() -> RuleSet {
    RuleSet::load(&[("municipality-131016.json".to_owned(), OVERRIDE.to_owned())]).expect("loads")
}

fn resident(birth: time::Date, municipality: Option<&str>) -> Person {
    Person {
        birth_date: birth,
        sex: None,
        municipality: municipality.map(str::to_owned),
    }
}

#[test]
fn extra_series_apply_to_residents_only() {
    let rules = rules();
    // Born 2015-06-01: 生後6月 reached 2015-11-30; 15歳 reached 2030-05-31 → fiscal 2030 → until 2031-03-31.
    let child = resident(date!(2015 - 06 - 01), Some("131016"));
    let plan = vaccination::schedule(&rules, &child, &[], date!(2024 - 10 - 15));
    let flu: Vec<_> = plan
        .items
        .iter()
        .filter(|i| i.vaccine == "influenza")
        .collect();
    assert_eq!(
        flu.len(),
        2,
        "the B類 series and the ward's children's series"
    );
    let kids = flu
        .iter()
        .find(|i| i.series.contains("小児"))
        .expect("children's series");
    assert_eq!(kids.status, DoseStatus::Due);
    assert_eq!(
        (kids.earliest, kids.latest),
        (Some(date!(2024 - 10 - 01)), Some(date!(2025 - 01 - 31)))
    );
    let candidate = vaccination::DoseRecord {
        id: None,
        vaccine: "influenza".to_owned(),
        product: None,
        date: date!(2024 - 10 - 15),
        dose_number: None,
    };
    assert!(vaccination::check_dose(&rules, &child, &[], &candidate).is_empty());
    // Elsewhere (or unknown municipality) a child's influenza dose is not funded.
    for municipality in [None, Some("141003")] {
        let other = resident(date!(2015 - 06 - 01), municipality);
        let findings = vaccination::check_dose(&rules, &other, &[], &candidate);
        assert_eq!(
            findings.iter().map(|f| f.kind).collect::<Vec<_>>(),
            [Age],
            "{municipality:?}"
        );
        let plan = vaccination::schedule(&rules, &other, &[], date!(2024 - 10 - 15));
        assert!(plan.items.iter().all(|i| i.vaccine != "influenza"));
    }
}

#[test]
fn season_dates_are_overridden_per_municipality() {
    let rules = rules();
    // Born 1955-01-01 (65+); the ward's B類 influenza season is 11/1 … 12/31.
    let senior = resident(date!(1955 - 01 - 01), Some("131016"));
    let candidate = vaccination::DoseRecord {
        id: None,
        vaccine: "influenza".to_owned(),
        product: None,
        date: date!(2024 - 10 - 15),
        dose_number: None,
    };
    let findings = vaccination::check_dose(&rules, &senior, &[], &candidate);
    assert_eq!(
        findings.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [Season]
    );
    // The default season (10/1 … 1/31) applies elsewhere.
    let elsewhere = resident(date!(1955 - 01 - 01), None);
    assert!(vaccination::check_dose(&rules, &elsewhere, &[], &candidate).is_empty());
    // The shipped example file for 131016 keeps the default dates, so residents see no change.
    let embedded = RuleSet::embedded().expect("embedded");
    assert!(vaccination::check_dose(embedded, &senior, &[], &candidate).is_empty());
}
