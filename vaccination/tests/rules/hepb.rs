//! B型肝炎: 3 doses before 1歳, 27日 and 139日 from the 1st (specs digest §4.3).

use time::macros::date;
use vaccination::FindingKind::*;

use crate::common::*;

// Born 2024-04-01: 1歳 is reached on 2025-03-31 (「1歳に至るまで」 includes it).
const BIRTH: time::Date = date!(2024 - 04 - 01);

#[test]
fn intervals_from_the_first_dose() {
    let person = child(BIRTH);
    let first = dose("hepb", date!(2024 - 06 - 01));
    // 27日以上 → 6/1 + 28 = 6/29.
    assert_kinds(
        &check(
            &person,
            std::slice::from_ref(&first),
            &dose("hepb", date!(2024 - 06 - 28)),
        ),
        &[Interval],
        "day 27",
    );
    assert_kinds(
        &check(
            &person,
            std::slice::from_ref(&first),
            &dose("hepb", date!(2024 - 06 - 29)),
        ),
        &[],
        "day 28",
    );
    // 139日以上 after the 1st → day 140: 6/1 + 29 = 6/30, 7/31 (+60), 8/31 (+91), 9/30 (+121), 10/19 (+140).
    let two = [first, dose("hepb", date!(2024 - 06 - 29))];
    let early = check(&person, &two, &dose("hepb", date!(2024 - 10 - 18)));
    assert_kinds(&early, &[Interval], "day 139");
    assert_message(
        &early,
        Interval,
        "139日以上 after dose 1 (2024-06-01)",
        "names dose 1",
    );
    assert_message(
        &early,
        Interval,
        "no earlier than 2024-10-19",
        "names the day",
    );
    assert_kinds(
        &check(&person, &two, &dose("hepb", date!(2024 - 10 - 19))),
        &[],
        "day 140",
    );
}

#[test]
fn the_window_ends_the_day_before_the_first_birthday() {
    let person = child(BIRTH);
    let two = [
        dose("hepb", date!(2024 - 06 - 01)),
        dose("hepb", date!(2024 - 06 - 29)),
    ];
    assert_kinds(
        &check(&person, &two, &dose("hepb", date!(2025 - 03 - 31))),
        &[],
        "1歳 reached, still <1歳",
    );
    let late = check(&person, &two, &dose("hepb", date!(2025 - 04 - 01)));
    assert_kinds(&late, &[Age], "the birthday");
    assert_message(&late, Age, "2025-03-31", "names the last day");
}

#[test]
fn dose_count_and_numbers() {
    let person = child(BIRTH);
    let three = [
        dose("hepb", date!(2024 - 10 - 19)),
        dose("hepb", date!(2024 - 06 - 01)),
        dose("hepb", date!(2024 - 06 - 29)),
    ];
    let fourth = check(&person, &three, &dose("hepb", date!(2024 - 12 - 01)));
    assert_kinds(&fourth, &[DoseNumber], "a 4th dose of a 3-dose series");
    assert_message(&fourth, DoseNumber, "3 doses", "says the series size");
    let one = [dose("hepb", date!(2024 - 06 - 01))];
    assert_kinds(
        &check(&person, &one, &numbered("hepb", date!(2024 - 07 - 01), 3)),
        &[DoseNumber],
        "claims 3 after 1",
    );
    // Same-day duplicate.
    assert_kinds(
        &check(&person, &one, &dose("hepb", date!(2024 - 06 - 01))),
        &[DoseNumber],
        "same day twice",
    );
}
