//! 小児用肺炎球菌 (PCV): start-age variants, skips, the booster rule (specs digest §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

// Born 2024-04-01: 生後2月 reached 2024-05-31, 7月 2024-10-31, 12月 2025-03-31,
// 24月 2026-03-31, 60月 2029-03-31.
const BIRTH: time::Date = date!(2024 - 04 - 01);

#[test]
fn the_start_age_decides_the_variant() {
    let person = child(BIRTH);
    for (start, doses, case) in [
        (
            date!(2024 - 10 - 31),
            4,
            "start 2–7か月 (生後7月に至るまで includes 10/31): 3 + 1",
        ),
        (date!(2024 - 11 - 01), 3, "start 7–12か月: 2 + 1"),
        (
            date!(2025 - 03 - 31),
            3,
            "start on the day 生後12月 is reached: still 2 + 1",
        ),
        (date!(2025 - 04 - 01), 2, "start 12–24か月: 2 doses ≥60日"),
        (date!(2026 - 04 - 01), 1, "start 24–60か月: 1 dose"),
    ] {
        let plan = schedule(&person, &[dose("pcv", start)], start);
        assert_eq!(items(&plan, "pcv").len(), doses, "{case}");
    }
}

#[test]
fn primary_doses_are_27_days_apart() {
    let person = child(BIRTH);
    let first = [dose("pcv", date!(2024 - 06 - 01))];
    // 27日以上 → from 6/1 + 28 = 6/29.
    let early = check(&person, &first, &dose("pcv", date!(2024 - 06 - 28)));
    assert_kinds(&early, &[Interval], "day 27");
    assert_message(
        &early,
        Interval,
        "27日以上 after dose 1 (2024-06-01)",
        "names the rule",
    );
    assert_message(
        &early,
        Interval,
        "no earlier than 2024-06-29",
        "names the day",
    );
    assert_kinds(
        &check(&person, &first, &dose("pcv", date!(2024 - 06 - 29))),
        &[],
        "day 28",
    );
}

#[test]
fn booster_needs_60_days_and_12_months_of_age() {
    let person = child(BIRTH);
    // 6/1, 6/29 (6/1 + 28), 7/27 (6/29 + 28): the 3 初回 doses.
    let primary = [
        dose("pcv", date!(2024 - 06 - 01)),
        dose("pcv", date!(2024 - 06 - 29)),
        dose("pcv", date!(2024 - 07 - 27)),
    ];
    // 60 days have long passed by March; 生後12月 is reached on 2025-03-31.
    let early = check(&person, &primary, &dose("pcv", date!(2025 - 03 - 30)));
    assert_kinds(&early, &[Age], "the day before 生後12月");
    assert_message(&early, Age, "2025-03-31", "names the day");
    assert_kinds(
        &check(&person, &primary, &dose("pcv", date!(2025 - 03 - 31))),
        &[],
        "生後12月 reached",
    );

    // 3rd dose on 2025-02-01 (before 24か月, 2nd before 12か月): 60日以上 → 2/1 + 61 = 4/3
    // (February 2025 has 28 days: 2/28 is +27, 3/31 is +58, 4/3 is +61).
    let late_third = [
        dose("pcv", date!(2024 - 06 - 01)),
        dose("pcv", date!(2024 - 06 - 29)),
        dose("pcv", date!(2025 - 02 - 01)),
    ];
    assert_kinds(
        &check(&person, &late_third, &dose("pcv", date!(2025 - 04 - 02))),
        &[Interval],
        "day 60",
    );
    assert_kinds(
        &check(&person, &late_third, &dose("pcv", date!(2025 - 04 - 03))),
        &[],
        "day 61",
    );
}

#[test]
fn second_primary_dose_after_12_months_skips_the_third() {
    let person = child(BIRTH);
    // Started 2024-10-01 (variant 2–7か月); 2nd dose on 2025-04-01, the day after 生後12月 (3/31).
    let history = [
        dose("pcv", date!(2024 - 10 - 01)),
        dose("pcv", date!(2025 - 04 - 01)),
    ];
    let plan = schedule(&person, &history, date!(2025 - 04 - 10));
    let pcv = items(&plan, "pcv");
    assert_eq!(
        statuses(&plan, "pcv"),
        [
            DoseStatus::Complete,
            DoseStatus::Complete,
            DoseStatus::NotEligible,
            DoseStatus::Upcoming
        ]
    );
    assert!(
        pcv[2]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("生後12月")),
        "{:?}",
        pcv[2].note
    );
    // Booster: 60日以上 after 4/1 → 4/1 + 61 = 6/1 (4/30 is +29, 5/31 is +60).
    assert_eq!(pcv[3].earliest, Some(date!(2025 - 06 - 01)));
    assert_eq!(pcv[3].latest, Some(date!(2029 - 03 - 31)));
    // The next dose is the booster and is fine on 6/1 as dose 3 given (position 4).
    assert_kinds(
        &check(
            &person,
            &history,
            &numbered("pcv", date!(2025 - 06 - 01), 3),
        ),
        &[],
        "booster as 3rd given",
    );
    assert_kinds(
        &check(
            &person,
            &history,
            &numbered("pcv", date!(2025 - 06 - 01), 4),
        ),
        &[],
        "booster as position 4",
    );

    // 2nd dose on the day 生後12月 is reached (3/31) is not "after": the 3rd is still due.
    let history = [
        dose("pcv", date!(2024 - 10 - 01)),
        dose("pcv", date!(2025 - 03 - 31)),
    ];
    let plan = schedule(&person, &history, date!(2025 - 04 - 10));
    assert_eq!(statuses(&plan, "pcv")[2], DoseStatus::Upcoming);
    // 27日以上 after 3/31 → 4/28.
    assert_eq!(items(&plan, "pcv")[2].earliest, Some(date!(2025 - 04 - 28)));
}

#[test]
fn primary_doses_after_24_months_are_skipped_for_the_booster() {
    let person = child(BIRTH);
    // Started 2025-01-10 (7–12か月: 初回2 + 追加); the next dose on 2026-04-01, after 生後24月 (3/31).
    let history = [dose("pcv", date!(2025 - 01 - 10))];
    assert_kinds(
        &check(&person, &history, &dose("pcv", date!(2026 - 04 - 01))),
        &[],
        "counts as the booster",
    );
    let history = [
        dose("pcv", date!(2025 - 01 - 10)),
        dose("pcv", date!(2026 - 04 - 01)),
    ];
    let plan = schedule(&person, &history, date!(2026 - 04 - 02));
    assert_eq!(
        statuses(&plan, "pcv"),
        [
            DoseStatus::Complete,
            DoseStatus::NotEligible,
            DoseStatus::Complete
        ]
    );
    // Without a dose, as of the day after 生後24月, the 2nd 初回 dose is skipped, the booster due.
    let plan = schedule(
        &person,
        &[dose("pcv", date!(2025 - 01 - 10))],
        date!(2026 - 04 - 01),
    );
    assert_eq!(
        statuses(&plan, "pcv"),
        [
            DoseStatus::Complete,
            DoseStatus::NotEligible,
            DoseStatus::Due
        ]
    );
}

#[test]
fn the_window_ends_at_60_months() {
    let person = child(BIRTH);
    assert_kinds(
        &check(&person, &[], &dose("pcv", date!(2029 - 03 - 31))),
        &[],
        "生後60月 reached",
    );
    assert_kinds(
        &check(&person, &[], &dose("pcv", date!(2029 - 04 - 01))),
        &[Age],
        "after 60 months",
    );
}
