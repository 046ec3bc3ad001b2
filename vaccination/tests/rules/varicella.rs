//! 水痘: 2 doses ≥3か月 apart between 生後12月 and 36月 (specs digest §4.2, §4.3).

use time::macros::date;
use vaccination::FindingKind::*;

use crate::common::*;

// Born 2023-04-01: 生後12月 reached 2024-03-31, 生後36月 2026-03-31.
const BIRTH: time::Date = date!(2023 - 04 - 01);

#[test]
fn three_months_is_the_same_day_three_months_later() {
    let person = child(BIRTH);
    let first = [dose("varicella", date!(2024 - 04 - 10))];
    assert_kinds(
        &check(&person, &first, &dose("varicella", date!(2024 - 07 - 09))),
        &[Interval],
        "a day short",
    );
    assert_kinds(
        &check(&person, &first, &dose("varicella", date!(2024 - 07 - 10))),
        &[],
        "3か月",
    );
    // Month end: 11/30 + 3か月 → "2/30" does not exist → the day after February's end, 3/1 (MHLW reading).
    let first = [dose("varicella", date!(2024 - 11 - 30))];
    let early = check(&person, &first, &dose("varicella", date!(2025 - 02 - 28)));
    assert_kinds(&early, &[Interval], "2/28");
    assert_message(&early, Interval, "no earlier than 2025-03-01", "names 3/1");
    assert_kinds(
        &check(&person, &first, &dose("varicella", date!(2025 - 03 - 01))),
        &[],
        "3/1",
    );
}

#[test]
fn an_earlier_voluntary_dose_counts() {
    let person = child(BIRTH);
    // A dose on 2024-02-01, before 生後12月, is not routine itself …
    assert_kinds(
        &check(&person, &[], &dose("varicella", date!(2024 - 02 - 01))),
        &[Age],
        "before 12か月",
    );
    // … but counts: the next dose is dose 2, 3か月 after 2/1 → from 5/1.
    let history = [dose("varicella", date!(2024 - 02 - 01))];
    assert_kinds(
        &check(
            &person,
            &history,
            &numbered("varicella", date!(2024 - 05 - 01), 2),
        ),
        &[],
        "dose 2",
    );
    assert_kinds(
        &check(&person, &history, &dose("varicella", date!(2024 - 04 - 30))),
        &[Interval],
        "too soon",
    );
    let plan = schedule(&person, &history, date!(2024 - 04 - 01));
    assert_eq!(
        items(&plan, "varicella")[1].earliest,
        Some(date!(2024 - 05 - 01))
    );
    assert_eq!(
        items(&plan, "varicella")[1].latest,
        Some(date!(2026 - 03 - 31))
    );
}
