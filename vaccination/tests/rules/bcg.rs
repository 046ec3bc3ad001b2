//! BCG: one dose before 1歳, standard 生後5月–8月 (specs digest §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

// Born 2024-04-01: 生後5月 reached 2024-08-31, 生後8月 2024-11-30, 1歳 2025-03-31.
const BIRTH: time::Date = date!(2024 - 04 - 01);

#[test]
fn schedule_status_moves_with_the_day() {
    let person = child(BIRTH);
    for (as_of, status, case) in [
        (
            date!(2024 - 09 - 01),
            DoseStatus::Due,
            "within the standard period",
        ),
        (
            date!(2024 - 11 - 30),
            DoseStatus::Due,
            "生後8月 reached: last standard day",
        ),
        (
            date!(2024 - 12 - 01),
            DoseStatus::Overdue,
            "after the standard period",
        ),
        (
            date!(2025 - 03 - 31),
            DoseStatus::Overdue,
            "1歳 reached: last funded day",
        ),
        (
            date!(2025 - 04 - 01),
            DoseStatus::NotEligible,
            "the first birthday",
        ),
    ] {
        let plan = schedule(&person, &[], as_of);
        assert_eq!(statuses(&plan, "bcg"), [status], "{case}");
    }
    let item = items(&schedule(&person, &[], date!(2024 - 09 - 01)), "bcg")[0].clone();
    assert_eq!(item.recommended_from, Some(date!(2024 - 08 - 31)));
    assert_eq!(item.recommended_to, Some(date!(2024 - 11 - 30)));
    assert_eq!(item.latest, Some(date!(2025 - 03 - 31)));
    assert_eq!(item.rule_id, "bcg/standard/1回/1");
    let done = schedule(
        &person,
        &[dose("bcg", date!(2024 - 09 - 02))],
        date!(2025 - 06 - 01),
    );
    assert_eq!(statuses(&done, "bcg"), [DoseStatus::Complete]);
}

#[test]
fn one_dose_only() {
    let person = child(BIRTH);
    let history = [dose("bcg", date!(2024 - 09 - 02))];
    assert_kinds(
        &check(&person, &history, &dose("bcg", date!(2024 - 12 - 01))),
        &[DoseNumber],
        "2nd BCG",
    );
    assert_kinds(
        &check(&person, &[], &dose("bcg", date!(2025 - 04 - 01))),
        &[Age],
        "on the birthday",
    );
}
