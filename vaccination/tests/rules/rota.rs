//! ロタウイルス: windows in weeks after birth, birth cohort, product paths (specs digest §4.1, §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

// Born 2024-04-01 (a Monday). 出生6週0日後 = +42 days = 2024-05-13; 出生24週0日後 = +168 days =
// 2024-09-16; 出生32週0日後 = +224 days = 2024-11-11; 出生14週6日後 = +104 days = 2024-07-14.
const BIRTH: time::Date = date!(2024 - 04 - 01);

#[test]
fn windows_in_weeks() {
    let person = child(BIRTH);
    for (vaccine, day, expected, case) in [
        (
            "rota-1",
            date!(2024 - 05 - 12),
            vec![Age],
            "6週 minus a day",
        ),
        ("rota-1", date!(2024 - 05 - 13), vec![], "6週0日後"),
        ("rota-5", date!(2024 - 05 - 13), vec![], "6週0日後"),
    ] {
        assert_kinds(&check(&person, &[], &dose(vaccine, day)), &expected, case);
    }
    // Last doses: 1価 2 doses up to 24週0日後, 5価 3 doses up to 32週0日後.
    let one = [dose("rota-1", date!(2024 - 05 - 13))];
    assert_kinds(
        &check(&person, &one, &dose("rota-1", date!(2024 - 09 - 16))),
        &[],
        "24週0日後",
    );
    assert_kinds(
        &check(&person, &one, &dose("rota-1", date!(2024 - 09 - 17))),
        &[Age],
        "24週1日後",
    );
    let two = [
        dose("rota-5", date!(2024 - 05 - 13)),
        dose("rota-5", date!(2024 - 06 - 10)),
    ];
    assert_kinds(
        &check(&person, &two, &dose("rota-5", date!(2024 - 11 - 11))),
        &[],
        "32週0日後",
    );
    assert_kinds(
        &check(&person, &two, &dose("rota-5", date!(2024 - 11 - 12))),
        &[Age],
        "32週1日後",
    );
    assert_kinds(
        &check(&person, &two, &dose("rota-1", date!(2024 - 07 - 01))),
        &[SeriesPath],
        "1価 after 5価",
    );
}

#[test]
fn doses_are_27_days_apart_and_counted_per_product() {
    let person = child(BIRTH);
    let one = [dose("rota-1", date!(2024 - 05 - 13))];
    // 27日以上 → 5/13 + 28 = 6/10.
    assert_kinds(
        &check(&person, &one, &dose("rota-1", date!(2024 - 06 - 09))),
        &[Interval],
        "day 27",
    );
    assert_kinds(
        &check(&person, &one, &dose("rota-1", date!(2024 - 06 - 10))),
        &[],
        "day 28",
    );
    let two = [
        dose("rota-1", date!(2024 - 05 - 13)),
        dose("rota-1", date!(2024 - 06 - 10)),
    ];
    assert_kinds(
        &check(&person, &two, &dose("rota-1", date!(2024 - 07 - 10))),
        &[DoseNumber],
        "3rd Rotarix",
    );
}

#[test]
fn routine_only_for_children_born_from_2020_08_01_and_from_2020_10_01() {
    // Born 2020-07-31: 6週0日後 = 2020-09-11; a dose on 2020-10-05 is in the age window.
    let findings = check(
        &child(date!(2020 - 07 - 31)),
        &[],
        &dose("rota-1", date!(2020 - 10 - 05)),
    );
    assert_kinds(&findings, &[NotRoutine], "born the day before the cohort");
    assert_message(
        &findings,
        NotRoutine,
        "born on or after 2020-08-01",
        "names the cohort",
    );
    assert_kinds(
        &check(
            &child(date!(2020 - 08 - 01)),
            &[],
            &dose("rota-1", date!(2020 - 10 - 05)),
        ),
        &[],
        "first day of the cohort",
    );
    // Born 2020-08-01: 6週0日後 = 2020-09-12, but routine only from 2020-10-01.
    let findings = check(
        &child(date!(2020 - 08 - 01)),
        &[],
        &dose("rota-1", date!(2020 - 09 - 30)),
    );
    assert_kinds(
        &findings,
        &[NotRoutine],
        "before the vaccine became routine",
    );
}

#[test]
fn schedule_shows_one_product_and_the_standard_first_dose_limit() {
    let plan = schedule(&child(BIRTH), &[], date!(2024 - 05 - 20));
    assert!(
        items(&plan, "rota-5").is_empty(),
        "one product shown when none started"
    );
    let rota = items(&plan, "rota-1");
    assert_eq!(rota[0].status, DoseStatus::Due);
    assert_eq!(rota[0].earliest, Some(date!(2024 - 05 - 13)));
    assert_eq!(rota[0].recommended_to, Some(date!(2024 - 07 - 14)));
    assert_eq!(rota[1].latest, Some(date!(2024 - 09 - 16)));
    // After 出生14週6日後 the first dose is overdue, still funded.
    let plan = schedule(&child(BIRTH), &[], date!(2024 - 07 - 15));
    assert_eq!(statuses(&plan, "rota-1")[0], DoseStatus::Overdue);
    // A child who started RotaTeq sees RotaTeq.
    let plan = schedule(
        &child(BIRTH),
        &[dose("rota-5", date!(2024 - 05 - 13))],
        date!(2024 - 05 - 20),
    );
    assert!(items(&plan, "rota-1").is_empty());
    assert_eq!(items(&plan, "rota-5").len(), 3);
}
