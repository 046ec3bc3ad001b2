//! Hib (legacy, standalone): start-age variants (specs digest §4.3).

use time::macros::date;
use vaccination::FindingKind::*;

use crate::common::*;

// Born 2024-01-15: 生後2月 reached 2024-03-14; 生後7月 reached 2024-08-14 (the day before 8/15);
// 生後12月 reached 2025-01-14; 生後60月 reached 2029-01-14.
const BIRTH: time::Date = date!(2024 - 01 - 15);

#[test]
fn the_start_age_decides_the_number_of_doses() {
    let person = child(BIRTH);
    for (start, doses, case) in [
        (
            date!(2024 - 08 - 14),
            4,
            "start on the day 生後7月 is reached: 初回3 + 追加1",
        ),
        (
            date!(2024 - 08 - 15),
            3,
            "start the day after: 初回2 + 追加1",
        ),
        (
            date!(2025 - 01 - 14),
            3,
            "start on the day 生後12月 is reached",
        ),
        (date!(2025 - 01 - 15), 1, "start after 生後12月: 1 dose"),
    ] {
        let plan = schedule(&person, &[dose("hib", start)], start);
        assert_eq!(items(&plan, "hib").len(), doses, "{case}");
    }
}

#[test]
fn primary_interval_minimum_is_20_days() {
    let person = child(BIRTH);
    let first = [dose("hib", date!(2024 - 03 - 20))];
    // 20日以上 (27日 unless the doctor deems 20 necessary) → from 3/20 + 21 = 4/10.
    assert_kinds(
        &check(&person, &first, &dose("hib", date!(2024 - 04 - 09))),
        &[Interval],
        "day 20",
    );
    assert_kinds(
        &check(&person, &first, &dose("hib", date!(2024 - 04 - 10))),
        &[],
        "day 21",
    );
}

#[test]
fn a_late_start_has_one_dose() {
    let person = child(BIRTH);
    let history = [dose("hib", date!(2025 - 01 - 15))];
    assert_kinds(
        &check(&person, &history, &dose("hib", date!(2025 - 03 - 01))),
        &[DoseNumber],
        "2nd of 1",
    );
    // 生後60月 reached 2029-01-14.
    assert_kinds(
        &check(&person, &[], &dose("hib", date!(2029 - 01 - 15))),
        &[Age],
        "after 60 months",
    );
    assert_kinds(
        &check(&person, &[], &dose("hib", date!(2029 - 01 - 14))),
        &[],
        "60 months reached",
    );
}
