//! 5種混合 (DPT-IPV-Hib) and the 4種混合+Hib path (specs digest §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

// Born 2024-04-01: 生後2月 is reached on 2024-05-31 (the day before 6/1); 生後7月 on 2024-10-31;
// 生後90月 (7歳6か月) on 2031-09-30 (the day before 2031-10-01).
const BIRTH: time::Date = date!(2024 - 04 - 01);

#[test]
fn window_edges_are_exact_to_the_day() {
    let person = child(BIRTH);
    for (day, expected, case) in [
        (date!(2024 - 05 - 30), vec![Age], "the day before 生後2月"),
        (date!(2024 - 05 - 31), vec![], "生後2月 reached"),
        (
            date!(2031 - 09 - 30),
            vec![],
            "生後90月 reached: still 「に至るまで」",
        ),
        (date!(2031 - 10 - 01), vec![Age], "the day after 生後90月"),
    ] {
        assert_kinds(
            &check(&person, &[], &dose("dpt-ipv-hib", day)),
            &expected,
            case,
        );
    }
    let findings = check(&person, &[], &dose("dpt-ipv-hib", date!(2024 - 05 - 30)));
    assert_message(
        &findings,
        Age,
        "no earlier than 2024-05-31",
        "too young names the first day",
    );
    let findings = check(&person, &[], &dose("dpt-ipv-hib", date!(2031 - 10 - 01)));
    assert_message(&findings, Age, "2031-09-30", "too old names the last day");
}

#[test]
fn primary_interval_is_20_days_or_more() {
    let person = child(BIRTH);
    let first = dose("dpt-ipv-hib", date!(2024 - 06 - 03));
    // 20日以上 → from day 21: 6/3 + 21 = 6/24.
    let early = check(
        &person,
        std::slice::from_ref(&first),
        &dose("dpt-ipv-hib", date!(2024 - 06 - 23)),
    );
    assert_kinds(&early, &[Interval], "day 20");
    assert_message(
        &early,
        Interval,
        "20日以上 after dose 1 (2024-06-03)",
        "names the rule",
    );
    assert_message(
        &early,
        Interval,
        "no earlier than 2024-06-24",
        "names the day",
    );
    assert_kinds(
        &check(
            &person,
            &[first],
            &dose("dpt-ipv-hib", date!(2024 - 06 - 24)),
        ),
        &[],
        "day 21",
    );
}

#[test]
fn booster_is_6_months_after_the_third_dose() {
    let person = child(BIRTH);
    let history = [
        dose("dpt-ipv-hib", date!(2024 - 06 - 03)),
        dose("dpt-ipv-hib", date!(2024 - 06 - 24)),
        dose("dpt-ipv-hib", date!(2024 - 08 - 01)),
    ];
    // 6か月以上 after 8/1 → the same day 6 months later, 2025-02-01.
    let early = check(
        &person,
        &history,
        &dose("dpt-ipv-hib", date!(2025 - 01 - 31)),
    );
    assert_kinds(&early, &[Interval], "one day short of 6 months");
    assert_message(
        &early,
        Interval,
        "no earlier than 2025-02-01",
        "names the day",
    );
    assert_kinds(
        &check(
            &person,
            &history,
            &dose("dpt-ipv-hib", date!(2025 - 02 - 01)),
        ),
        &[],
        "6 months",
    );
    // The history order does not matter.
    let mut reversed = history.to_vec();
    reversed.reverse();
    assert_kinds(
        &check(
            &person,
            &reversed,
            &dose("dpt-ipv-hib", date!(2025 - 02 - 01)),
        ),
        &[],
        "reversed history",
    );
}

#[test]
fn dose_numbers_must_fit_the_history() {
    let person = child(BIRTH);
    let one = [dose("dpt-ipv-hib", date!(2024 - 06 - 03))];
    let claimed = check(
        &person,
        &one,
        &numbered("dpt-ipv-hib", date!(2024 - 07 - 01), 3),
    );
    assert_kinds(&claimed, &[DoseNumber], "claims dose 3 with one prior dose");
    assert_message(
        &claimed,
        DoseNumber,
        "this is dose 2",
        "says which dose it is",
    );
    assert_kinds(
        &check(
            &person,
            &one,
            &numbered("dpt-ipv-hib", date!(2024 - 07 - 01), 2),
        ),
        &[],
        "dose 2 as claimed",
    );
    let four = [
        dose("dpt-ipv-hib", date!(2024 - 06 - 03)),
        dose("dpt-ipv-hib", date!(2024 - 06 - 24)),
        dose("dpt-ipv-hib", date!(2024 - 08 - 01)),
        dose("dpt-ipv-hib", date!(2025 - 02 - 01)),
    ];
    let fifth = check(&person, &four, &dose("dpt-ipv-hib", date!(2025 - 06 - 01)));
    assert_kinds(&fifth, &[DoseNumber], "a 5th dose of a 4-dose series");
}

#[test]
fn the_candidate_itself_in_the_history_is_ignored() {
    let person = child(BIRTH);
    let mut candidate = dose("dpt-ipv-hib", date!(2024 - 06 - 24));
    candidate.id = Some("imm-2".to_owned());
    let history = [
        dose("dpt-ipv-hib", date!(2024 - 06 - 03)),
        candidate.clone(),
    ];
    assert_kinds(
        &check(&person, &history, &candidate),
        &[],
        "same id in history",
    );
}

#[test]
fn five_in_one_is_not_routine_before_2024_04_01() {
    // Born 2024-01-10: 生後2月 reached 2024-03-09, so only the effective date is wrong.
    let person = child(date!(2024 - 01 - 10));
    let findings = check(&person, &[], &dose("dpt-ipv-hib", date!(2024 - 03 - 15)));
    assert_kinds(&findings, &[NotRoutine], "before 2024-04-01");
    assert_message(
        &findings,
        NotRoutine,
        "2024-04-01",
        "names the effective date",
    );
    assert_kinds(
        &check(&person, &[], &dose("dpt-ipv-hib", date!(2024 - 04 - 01))),
        &[],
        "from 2024-04-01",
    );
}

#[test]
fn children_who_started_four_in_one_and_hib_finish_with_those() {
    // Born 2023-12-01 (生後2月 reached 2024-01-31), started 4種+Hib on 2024-02-05.
    let person = child(date!(2023 - 12 - 01));
    let history = [
        dose("dpt-ipv", date!(2024 - 02 - 05)),
        dose("hib", date!(2024 - 02 - 05)),
    ];
    let switched = check(
        &person,
        &history,
        &dose("dpt-ipv-hib", date!(2024 - 05 - 01)),
    );
    assert_kinds(&switched, &[SeriesPath], "5種 after starting 4種+Hib");
    // 4種 dose 2: 20日以上 after 2/5 → from 2/26.
    assert_kinds(
        &check(&person, &history, &dose("dpt-ipv", date!(2024 - 02 - 26))),
        &[],
        "4種 continues",
    );
    assert_kinds(
        &check(&person, &history, &dose("dpt-ipv", date!(2024 - 02 - 25))),
        &[Interval],
        "4種 day 20",
    );

    let plan = schedule(&person, &history, date!(2024 - 05 - 01));
    assert!(
        items(&plan, "dpt-ipv-hib").is_empty(),
        "no 5種 items on the 4種+Hib path"
    );
    assert_eq!(items(&plan, "dpt-ipv").len(), 4);
    assert_eq!(items(&plan, "hib").len(), 4, "Hib started at 2か月: 3 + 1");
}

#[test]
fn new_starters_get_five_in_one_from_2024_04_and_four_in_one_before() {
    // Born 2024-03-01 with no doses, as of 2024-05-10: 5種 only.
    let plan = schedule(&child(date!(2024 - 03 - 01)), &[], date!(2024 - 05 - 10));
    assert_eq!(items(&plan, "dpt-ipv-hib").len(), 4);
    assert!(items(&plan, "dpt-ipv").is_empty() && items(&plan, "hib").is_empty());
    // Born 2024-01-01 as of 2024-03-20: 5種 was not yet routine, so 4種 + Hib.
    let plan = schedule(&child(date!(2024 - 01 - 01)), &[], date!(2024 - 03 - 20));
    assert!(items(&plan, "dpt-ipv-hib").is_empty());
    assert_eq!(items(&plan, "dpt-ipv").len(), 4);
}

#[test]
fn schedule_dates_from_birth_and_history() {
    let person = child(BIRTH);
    // No doses as of 2024-06-10: dose 1 possible since 5/31, standard until 生後7月 (10/31).
    let plan = schedule(&person, &[], date!(2024 - 06 - 10));
    let five = items(&plan, "dpt-ipv-hib");
    assert_eq!(
        statuses(&plan, "dpt-ipv-hib"),
        [
            DoseStatus::Due,
            DoseStatus::Upcoming,
            DoseStatus::Upcoming,
            DoseStatus::Upcoming
        ]
    );
    assert_eq!(five[0].earliest, Some(date!(2024 - 05 - 31)));
    assert_eq!(five[0].recommended_to, Some(date!(2024 - 10 - 31)));
    assert_eq!(five[0].latest, Some(date!(2031 - 09 - 30)));
    // Dose 2 at the earliest 20日以上 after a dose 1 given today: 6/10 + 21 = 7/1.
    assert_eq!(five[1].earliest, Some(date!(2024 - 07 - 01)));
    assert_eq!(five[1].series, "1期初回");
    assert_eq!(five[3].series, "1期追加");
    // Past 生後7月 without a dose: overdue but still funded.
    let plan = schedule(&person, &[], date!(2024 - 11 - 01));
    assert_eq!(statuses(&plan, "dpt-ipv-hib")[0], DoseStatus::Overdue);

    // Doses on 6/3 and 6/24: dose 3 from 6/24 + 21 = 7/15, standard up to 56 days (6/24 + 56 = 8/19).
    let history = [
        dose("dpt-ipv-hib", date!(2024 - 06 - 03)),
        dose("dpt-ipv-hib", date!(2024 - 06 - 24)),
    ];
    let plan = schedule(&person, &history, date!(2024 - 07 - 01));
    let five = items(&plan, "dpt-ipv-hib");
    assert_eq!(five[0].status, DoseStatus::Complete);
    assert_eq!(five[1].given, Some(date!(2024 - 06 - 24)));
    assert_eq!(five[2].status, DoseStatus::Upcoming);
    assert_eq!(five[2].earliest, Some(date!(2024 - 07 - 15)));
    assert_eq!(five[2].recommended_to, Some(date!(2024 - 08 - 19)));
}
