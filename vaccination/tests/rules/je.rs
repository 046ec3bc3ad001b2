//! 日本脳炎: 1期 (初回 2 + 追加 1), 2期, and the 特例 for the 1995–2007 cohort (specs digest §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

// Born 2018-04-02: 生後6月 reached 2018-10-01; 生後90月 (7歳6か月) reached 2025-10-01;
// 9歳 reached 2027-04-01; 13歳 reached 2031-04-01.
const BIRTH: time::Date = date!(2018 - 04 - 02);

#[test]
fn first_period_intervals() {
    let person = child(BIRTH);
    assert_kinds(
        &check(&person, &[], &dose("je", date!(2018 - 09 - 30))),
        &[Age],
        "before 生後6月",
    );
    assert_kinds(
        &check(&person, &[], &dose("je", date!(2018 - 10 - 01))),
        &[],
        "生後6月 reached",
    );
    let first = [dose("je", date!(2021 - 05 - 01))];
    // 6日以上 → 5/1 + 7 = 5/8.
    assert_kinds(
        &check(&person, &first, &dose("je", date!(2021 - 05 - 07))),
        &[Interval],
        "day 6",
    );
    assert_kinds(
        &check(&person, &first, &dose("je", date!(2021 - 05 - 08))),
        &[],
        "day 7",
    );
    // 追加: 6か月以上 after 5/8 → 11/8.
    let two = [
        dose("je", date!(2021 - 05 - 01)),
        dose("je", date!(2021 - 05 - 08)),
    ];
    assert_kinds(
        &check(&person, &two, &dose("je", date!(2021 - 11 - 07))),
        &[Interval],
        "a day short of 6か月",
    );
    assert_kinds(
        &check(&person, &two, &dose("je", date!(2021 - 11 - 08))),
        &[],
        "6か月",
    );
}

#[test]
fn second_period_is_9_to_under_13() {
    let person = child(BIRTH);
    let three = [
        dose("je", date!(2021 - 05 - 01)),
        dose("je", date!(2021 - 05 - 08)),
        dose("je", date!(2022 - 05 - 08)),
    ];
    let early = check(&person, &three, &dose("je", date!(2027 - 03 - 31)));
    assert_kinds(&early, &[Age], "the day before 9歳 is reached");
    assert_message(&early, Age, "no earlier than 2027-04-01", "names the day");
    assert_kinds(
        &check(&person, &three, &dose("je", date!(2027 - 04 - 01))),
        &[],
        "9歳 reached",
    );
    assert_kinds(
        &check(&person, &three, &dose("je", date!(2031 - 04 - 01))),
        &[],
        "13歳 reached: still 13歳未満",
    );
    assert_kinds(
        &check(&person, &three, &dose("je", date!(2031 - 04 - 02))),
        &[Age],
        "the 13th birthday",
    );
}

#[test]
fn a_missed_booster_is_skipped_for_the_second_period() {
    let person = child(BIRTH);
    let two = [
        dose("je", date!(2021 - 05 - 01)),
        dose("je", date!(2021 - 05 - 08)),
    ];
    assert_kinds(
        &check(&person, &two, &dose("je", date!(2027 - 05 - 01))),
        &[],
        "2期 after missing 1期追加",
    );
    let plan = schedule(&person, &two, date!(2026 - 01 - 01));
    assert_eq!(
        statuses(&plan, "je"),
        [
            DoseStatus::Complete,
            DoseStatus::Complete,
            DoseStatus::NotEligible,
            DoseStatus::Upcoming
        ]
    );
}

#[test]
fn the_1995_2007_cohort_may_catch_up_until_20() {
    // Born 2005-06-01 (inside 1995-04-02 … 2007-04-01): 20歳 reached 2025-05-31.
    let person = child(date!(2005 - 06 - 01));
    assert_kinds(
        &check(&person, &[], &dose("je", date!(2025 - 05 - 31))),
        &[],
        "20歳 reached: 20歳未満 still",
    );
    assert_kinds(
        &check(&person, &[], &dose("je", date!(2025 - 06 - 01))),
        &[Age],
        "the 20th birthday",
    );
    // Born 2007-04-02 (outside): 生後90月 reached 2014-10-01, so a 1期 dose at 7歳9か月 is too late.
    let person = child(date!(2007 - 04 - 02));
    assert_kinds(
        &check(&person, &[], &dose("je", date!(2015 - 01 - 01))),
        &[Age],
        "not in the 特例 cohort",
    );
}
