//! 麻しん風しん (MR): 1期 by months of age, 2期 by school-year cohort (specs digest §4.1, §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

#[test]
fn first_period_edges() {
    // Born 2023-04-01: 生後12月 reached 2024-03-31, 生後24月 2025-03-31.
    let person = child(date!(2023 - 04 - 01));
    for (day, expected, case) in [
        (date!(2024 - 03 - 30), vec![Age], "the day before 生後12月"),
        (
            date!(2024 - 03 - 31),
            vec![],
            "生後12月 reached, the day before the birthday",
        ),
        (date!(2025 - 03 - 31), vec![], "生後24月 reached"),
        (date!(2025 - 04 - 01), vec![Age], "the 2nd birthday"),
    ] {
        assert_kinds(&check(&person, &[], &dose("mr", day)), &expected, case);
    }
}

#[test]
fn leap_day_birthdays_reach_their_months_on_28_february() {
    // Born 2020-02-29: 生後12月 → 2021-02-29 does not exist → the month's last day, 2021-02-28;
    // 生後24月 → 2022-02-28.
    let person = child(date!(2020 - 02 - 29));
    assert_kinds(
        &check(&person, &[], &dose("mr", date!(2021 - 02 - 27))),
        &[Age],
        "before 12か月",
    );
    assert_kinds(
        &check(&person, &[], &dose("mr", date!(2021 - 02 - 28))),
        &[],
        "12か月 on 2/28",
    );
    assert_kinds(
        &check(&person, &[], &dose("mr", date!(2022 - 02 - 28))),
        &[],
        "24か月 on 2/28",
    );
    assert_kinds(
        &check(&person, &[], &dose("mr", date!(2022 - 03 - 01))),
        &[Age],
        "after 24か月",
    );
}

#[test]
fn second_period_is_the_school_year_before_elementary_school() {
    // The digest's cohort 2008-04-02 … 2009-04-01 shares one school year: both reach 6 in
    // fiscal 2014 (2014-04-01 and 2015-03-31), so 2期 runs 2014-04-01 … 2015-03-31 for both.
    for birth in [date!(2008 - 04 - 02), date!(2009 - 04 - 01)] {
        let one = [dose("mr", birth.replace_year(birth.year() + 1).unwrap())];
        let person = child(birth);
        assert_kinds(
            &check(&person, &one, &dose("mr", date!(2014 - 04 - 01))),
            &[],
            "first day",
        );
        assert_kinds(
            &check(&person, &one, &dose("mr", date!(2015 - 03 - 31))),
            &[],
            "last day",
        );
        assert_kinds(
            &check(&person, &one, &dose("mr", date!(2015 - 04 - 01))),
            &[Age],
            "after",
        );
    }
    // Born 2018-04-01 belongs to the earlier school year (6 reached 2024-03-31): 2023-04-01 … 2024-03-31.
    let april_first = child(date!(2018 - 04 - 01));
    let one = [dose("mr", date!(2019 - 04 - 01))];
    assert_kinds(
        &check(&april_first, &one, &dose("mr", date!(2024 - 03 - 31))),
        &[],
        "last day, 4/1 birth",
    );
    let late = check(&april_first, &one, &dose("mr", date!(2024 - 04 - 01)));
    assert_kinds(&late, &[Age], "the next school year");
    assert_message(&late, Age, "2024-03-31", "names the last day");
    // Born 2018-04-02: 2024-04-01 … 2025-03-31.
    let april_second = child(date!(2018 - 04 - 02));
    let one = [dose("mr", date!(2019 - 04 - 02))];
    assert_kinds(
        &check(&april_second, &one, &dose("mr", date!(2024 - 03 - 31))),
        &[Age],
        "too early",
    );
    assert_kinds(
        &check(&april_second, &one, &dose("mr", date!(2024 - 04 - 01))),
        &[],
        "first day",
    );
}

#[test]
fn a_missed_first_period_does_not_block_the_second() {
    let person = child(date!(2018 - 04 - 02));
    // No 1期 dose; a dose in the 2期 year counts as 2期.
    assert_kinds(
        &check(&person, &[], &dose("mr", date!(2024 - 05 - 01))),
        &[],
        "2期 without 1期",
    );
    let plan = schedule(
        &person,
        &[dose("mr", date!(2024 - 05 - 01))],
        date!(2024 - 06 - 01),
    );
    assert_eq!(
        statuses(&plan, "mr"),
        [DoseStatus::NotEligible, DoseStatus::Complete]
    );
    // Between the periods (age 3): the 1期 period ended on 2020-04-01 (生後24月 for a 4/2 birth).
    let between = check(&person, &[], &dose("mr", date!(2021 - 06 - 01)));
    assert_kinds(&between, &[Age], "between the periods");
    assert_message(&between, Age, "2020-04-01", "names the end of 1期");
    // As of age 3 without doses: 1期 passed, 2期 upcoming from 2024-04-01.
    let plan = schedule(&person, &[], date!(2021 - 06 - 01));
    assert_eq!(
        statuses(&plan, "mr"),
        [DoseStatus::NotEligible, DoseStatus::Upcoming]
    );
    assert_eq!(items(&plan, "mr")[1].earliest, Some(date!(2024 - 04 - 01)));
    assert_eq!(items(&plan, "mr")[1].latest, Some(date!(2025 - 03 - 31)));
}
