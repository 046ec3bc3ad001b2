//! HPV: fiscal-year window, catch-up, products and the 9価 2-dose path (specs digest §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*, Sex};

use crate::common::*;

#[test]
fn routine_window_is_from_the_fiscal_year_of_12_to_that_of_16() {
    // Born 2012-04-02: 12歳 reached 2024-04-01 → fiscal 2024 → from 2024-04-01; 16歳 reached
    // 2028-04-01 → fiscal 2028 → until 2029-03-31.
    let girl = person(date!(2012 - 04 - 02), Sex::Female);
    for (day, expected, case) in [
        (date!(2024 - 03 - 31), vec![Age], "fiscal 2023"),
        (date!(2024 - 04 - 01), vec![], "first day of fiscal 2024"),
        (
            date!(2029 - 03 - 31),
            vec![],
            "last day of the fiscal year of 16",
        ),
        (date!(2029 - 04 - 01), vec![Age], "after"),
    ] {
        assert_kinds(&check(&girl, &[], &dose("hpv-9", day)), &expected, case);
    }
    // Born 2012-04-01: 12歳 reached 2024-03-31 → fiscal 2023 → from 2023-04-01 (one school year earlier).
    let girl = person(date!(2012 - 04 - 01), Sex::Female);
    assert_kinds(
        &check(&girl, &[], &dose("hpv-9", date!(2023 - 04 - 01))),
        &[],
        "4/1 birth",
    );
    // (4価: 9価 became routine only on 2023-04-01.)
    assert_kinds(
        &check(&girl, &[], &dose("hpv-4", date!(2023 - 03 - 31))),
        &[Age],
        "4/1 birth, fiscal 2022",
    );
}

#[test]
fn routine_for_females_only() {
    let boy = person(date!(2012 - 04 - 02), Sex::Male);
    let findings = check(&boy, &[], &dose("hpv-9", date!(2024 - 05 - 01)));
    assert_kinds(&findings, &[NotRoutine], "male");
    let plan = schedule(&boy, &[], date!(2024 - 05 - 01));
    assert_eq!(
        statuses(&plan, "hpv-9"),
        [DoseStatus::NotEligible, DoseStatus::NotEligible]
    );
    // Sex not recorded: shown, with a note.
    let plan = schedule(&child(date!(2012 - 04 - 02)), &[], date!(2024 - 05 - 01));
    assert!(
        items(&plan, "hpv-9")[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("females"))
    );
}

#[test]
fn catch_up_for_the_1997_2008_cohort_and_its_completion_until_2026_03_31() {
    // Born 2000-05-01 (inside 1997-04-02 … 2008-04-01); her routine window ended 2017-03-31.
    let woman = person(date!(2000 - 05 - 01), Sex::Female);
    assert_kinds(
        &check(&woman, &[], &dose("hpv-4", date!(2022 - 03 - 31))),
        &[Age],
        "before the catch-up",
    );
    assert_kinds(
        &check(&woman, &[], &dose("hpv-9", date!(2022 - 04 - 01))),
        &[NotRoutine],
        "9価 not yet routine",
    );
    assert_kinds(
        &check(&woman, &[], &dose("hpv-4", date!(2022 - 04 - 01))),
        &[],
        "catch-up start",
    );
    assert_kinds(
        &check(&woman, &[], &dose("hpv-9", date!(2025 - 03 - 31))),
        &[],
        "catch-up end",
    );
    // From 2025-04-01 only with a dose in the catch-up period.
    assert_kinds(
        &check(&woman, &[], &dose("hpv-9", date!(2025 - 04 - 01))),
        &[Age],
        "no dose in catch-up",
    );
    let one = [dose("hpv-9", date!(2024 - 12 - 01))];
    assert_kinds(
        &check(&woman, &one, &dose("hpv-9", date!(2026 - 03 - 31))),
        &[],
        "completion until 2026-03-31",
    );
    let late = check(&woman, &one, &dose("hpv-9", date!(2026 - 04 - 01)));
    assert_kinds(&late, &[Age], "after 2026-03-31");
    assert_message(&late, Age, "2026-03-31", "names the end");
    // Born 1997-04-01 is outside the cohort.
    let older = person(date!(1997 - 04 - 01), Sex::Female);
    assert_kinds(
        &check(&older, &[], &dose("hpv-4", date!(2023 - 01 - 01))),
        &[Age],
        "born before the cohort",
    );
}

#[test]
fn nine_valent_two_dose_path_when_started_before_15() {
    // Born 2009-06-01: 15歳 reached 2024-05-31; fiscal year of 16 is 2025 (16 reached 2025-05-31),
    // so the routine window runs to 2026-03-31.
    let girl = person(date!(2009 - 06 - 01), Sex::Female);
    let two_dose = [dose("hpv-9", date!(2024 - 05 - 31))];
    let plan = schedule(&girl, &two_dose, date!(2024 - 06 - 02));
    assert_eq!(
        items(&plan, "hpv-9").len(),
        2,
        "first dose on the day 15歳 is reached: 15歳未満"
    );
    // 5か月以上 after 5/31 → "10/31" exists → 2024-10-31.
    assert_eq!(
        items(&plan, "hpv-9")[1].earliest,
        Some(date!(2024 - 10 - 31))
    );
    assert_kinds(
        &check(&girl, &two_dose, &dose("hpv-9", date!(2024 - 10 - 30))),
        &[Interval],
        "short of 5か月",
    );
    assert_kinds(
        &check(&girl, &two_dose, &dose("hpv-9", date!(2024 - 10 - 31))),
        &[],
        "5か月",
    );
    let done = [
        dose("hpv-9", date!(2024 - 05 - 31)),
        dose("hpv-9", date!(2024 - 12 - 01)),
    ];
    assert_kinds(
        &check(&girl, &done, &dose("hpv-9", date!(2025 - 06 - 01))),
        &[DoseNumber],
        "3rd of 2",
    );

    let three_dose = [dose("hpv-9", date!(2024 - 06 - 01))];
    let plan = schedule(&girl, &three_dose, date!(2024 - 06 - 02));
    assert_eq!(
        items(&plan, "hpv-9").len(),
        3,
        "first dose after 15歳: 3 doses"
    );
    // 1か月 after 6/1 → 7/1; 3か月 after the 2nd.
    assert_kinds(
        &check(&girl, &three_dose, &dose("hpv-9", date!(2024 - 06 - 30))),
        &[Interval],
        "short of 1か月",
    );
    let two = [
        dose("hpv-9", date!(2024 - 06 - 01)),
        dose("hpv-9", date!(2024 - 07 - 01)),
    ];
    assert_kinds(
        &check(&girl, &two, &dose("hpv-9", date!(2024 - 09 - 30))),
        &[Interval],
        "short of 3か月",
    );
    assert_kinds(
        &check(&girl, &two, &dose("hpv-9", date!(2024 - 10 - 01))),
        &[],
        "3か月 after the 2nd",
    );
}

#[test]
fn bivalent_third_dose_needs_5_months_and_2_and_a_half_months() {
    let girl = person(date!(2012 - 04 - 02), Sex::Female);
    // 5か月 after 5/1 → 10/1; 2月半 after 6/1 → 8/1 + 16 (August has 31 days) = 8/17: 10/1 binds.
    let history = [
        dose("hpv-2", date!(2024 - 05 - 01)),
        dose("hpv-2", date!(2024 - 06 - 01)),
    ];
    let early = check(&girl, &history, &dose("hpv-2", date!(2024 - 09 - 30)));
    assert_kinds(&early, &[Interval], "short of 5か月");
    assert_message(&early, Interval, "5か月以上 after dose 1", "names dose 1");
    assert_kinds(
        &check(&girl, &history, &dose("hpv-2", date!(2024 - 10 - 01))),
        &[],
        "5か月",
    );
    // 2nd on 8/20: 2月半 → 10/20 + 16 (October has 31 days) = 11/5 binds over 10/1.
    let history = [
        dose("hpv-2", date!(2024 - 05 - 01)),
        dose("hpv-2", date!(2024 - 08 - 20)),
    ];
    let early = check(&girl, &history, &dose("hpv-2", date!(2024 - 11 - 04)));
    assert_kinds(&early, &[Interval], "short of 2月半");
    assert_message(
        &early,
        Interval,
        "2月半以上 after dose 2 (2024-08-20)",
        "names the rule",
    );
    assert_message(
        &early,
        Interval,
        "no earlier than 2024-11-05",
        "names the day",
    );
    assert_kinds(
        &check(&girl, &history, &dose("hpv-2", date!(2024 - 11 - 05))),
        &[],
        "2月半",
    );
}

#[test]
fn switching_products() {
    let girl = person(date!(2012 - 04 - 02), Sex::Female);
    // 2価 then 9価: allowed, the 2価 dose counts (3-dose path: 1か月 after 5/1 → 6/1).
    let bivalent = [dose("hpv-2", date!(2024 - 05 - 01))];
    assert_kinds(
        &check(
            &girl,
            &bivalent,
            &numbered("hpv-9", date!(2024 - 06 - 01), 2),
        ),
        &[],
        "to 9価",
    );
    let plan = schedule(
        &girl,
        &[
            dose("hpv-2", date!(2024 - 05 - 01)),
            dose("hpv-9", date!(2024 - 06 - 01)),
        ],
        date!(2024 - 06 - 02),
    );
    assert_eq!(
        statuses(&plan, "hpv-9"),
        [
            DoseStatus::Complete,
            DoseStatus::Complete,
            DoseStatus::Upcoming
        ]
    );
    assert!(items(&plan, "hpv-2").is_empty());
    // 9価 then 4価: not allowed.
    let nonavalent = [dose("hpv-9", date!(2024 - 05 - 01))];
    assert_kinds(
        &check(&girl, &nonavalent, &dose("hpv-4", date!(2024 - 07 - 01))),
        &[SeriesPath],
        "9価 to 4価",
    );
}
