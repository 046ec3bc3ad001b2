//! B類: 帯状疱疹 by fiscal-year ages with its transition, influenza and COVID-19 seasons,
//! 高齢者肺炎球菌 once at 65 (specs digest §4.4).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

#[test]
fn zoster_fiscal_year_ages() {
    for (birth, day, expected, case) in [
        // 65歳 reached 2025-04-01 → fiscal 2025: 2025-04-01 … 2026-03-31.
        (
            date!(1960 - 04 - 02),
            date!(2025 - 04 - 01),
            vec![],
            "65 in fiscal 2025, first day",
        ),
        (
            date!(1960 - 04 - 02),
            date!(2026 - 03 - 31),
            vec![],
            "65 in fiscal 2025, last day",
        ),
        (
            date!(1960 - 04 - 02),
            date!(2026 - 04 - 01),
            vec![Age],
            "after fiscal 2025",
        ),
        // 70歳 reached 2025-04-01 → the 70 transition cohort in fiscal 2025.
        (
            date!(1955 - 04 - 02),
            date!(2025 - 04 - 01),
            vec![],
            "70 in fiscal 2025",
        ),
        // 100歳 reached 2025-04-01 → the 100 cohort; born 1925-04-01 reaches 101 on 2026-03-31 → ≥101 in fiscal 2025.
        (
            date!(1925 - 04 - 02),
            date!(2025 - 09 - 01),
            vec![],
            "100 in fiscal 2025",
        ),
        (
            date!(1925 - 04 - 01),
            date!(2026 - 03 - 31),
            vec![],
            "≥101 in fiscal 2025",
        ),
        (
            date!(1925 - 04 - 01),
            date!(2026 - 04 - 01),
            vec![Age],
            "≥101 only in fiscal 2025",
        ),
        // 65歳 reached 2026-04-01 → fiscal 2026 (the 65 rule continues after the transition).
        (
            date!(1961 - 04 - 02),
            date!(2026 - 04 - 01),
            vec![],
            "65 in fiscal 2026",
        ),
        // Turns 75 in fiscal 2030 (75 reached 2030-04-01): after the transition, so no window.
        (
            date!(1955 - 04 - 02),
            date!(2030 - 04 - 01),
            vec![Age],
            "75 in fiscal 2030",
        ),
        // Turns 70 in fiscal 2029 (70 reached 2030-03-31): the last transition year.
        (
            date!(1960 - 04 - 01),
            date!(2030 - 03 - 31),
            vec![],
            "70 in fiscal 2029",
        ),
    ] {
        assert_kinds(
            &check(&child(birth), &[], &dose("zoster-live", day)),
            &expected,
            case,
        );
    }
    // Born 1960-04-01: 65 reached 2025-03-31 (fiscal 2024, before the start): next chance at 70 in fiscal 2029.
    let early = check(
        &child(date!(1960 - 04 - 01)),
        &[],
        &dose("zoster-live", date!(2025 - 06 - 01)),
    );
    assert_kinds(&early, &[Age], "65 in fiscal 2024");
    assert_message(&early, Age, "2029-04-01", "names the next window");
    // Not routine before 2025-04-01.
    let before = check(
        &child(date!(1955 - 04 - 02)),
        &[],
        &dose("zoster-live", date!(2025 - 03 - 01)),
    );
    assert_kinds(&before, &[NotRoutine], "before 2025-04-01");
}

#[test]
fn zoster_recombinant_two_doses_and_one_lifetime_path() {
    let person = child(date!(1960 - 04 - 02));
    let first = [dose("zoster-recombinant", date!(2025 - 05 - 01))];
    // 2か月以上 (unverified, data) → 7/1.
    assert_kinds(
        &check(
            &person,
            &first,
            &dose("zoster-recombinant", date!(2025 - 06 - 30)),
        ),
        &[Interval],
        "short",
    );
    assert_kinds(
        &check(
            &person,
            &first,
            &dose("zoster-recombinant", date!(2025 - 07 - 01)),
        ),
        &[],
        "2か月",
    );
    assert_kinds(
        &check(&person, &first, &dose("zoster-live", date!(2025 - 08 - 01))),
        &[SeriesPath],
        "switch",
    );
    // A voluntary dose before the window counts: the routine dose is the 2nd.
    let voluntary = [dose("zoster-recombinant", date!(2024 - 10 - 01))];
    assert_kinds(
        &check(
            &person,
            &voluntary,
            &numbered("zoster-recombinant", date!(2025 - 05 - 01), 2),
        ),
        &[],
        "2nd as 定期",
    );
    let plan = schedule(&person, &voluntary, date!(2025 - 05 - 01));
    assert_eq!(
        statuses(&plan, "zoster-recombinant"),
        [DoseStatus::Complete, DoseStatus::Due]
    );
}

#[test]
fn influenza_once_per_season_from_65() {
    // Born 1959-10-15: 65歳 reached 2024-10-14. Default season 10/1 … 1/31.
    let person = child(date!(1959 - 10 - 15));
    assert_kinds(
        &check(&person, &[], &dose("influenza", date!(2024 - 10 - 13))),
        &[Age],
        "the day before 65",
    );
    assert_kinds(
        &check(&person, &[], &dose("influenza", date!(2024 - 10 - 14))),
        &[],
        "65 reached",
    );
    assert_kinds(
        &check(&person, &[], &dose("influenza", date!(2025 - 01 - 31))),
        &[],
        "last day of the season",
    );
    let out = check(&person, &[], &dose("influenza", date!(2025 - 02 - 01)));
    assert_kinds(&out, &[Season], "after the season");
    assert_message(
        &out,
        Season,
        "2025-10-01 to 2026-01-31",
        "names the next season",
    );
    let once = [dose("influenza", date!(2024 - 10 - 20))];
    assert_kinds(
        &check(&person, &once, &dose("influenza", date!(2024 - 12 - 01))),
        &[Season],
        "twice in one season",
    );
    assert_kinds(
        &check(&person, &once, &dose("influenza", date!(2025 - 10 - 01))),
        &[],
        "next season",
    );
    // Schedule: given this season → complete; after the season → the next one upcoming.
    let plan = schedule(&person, &once, date!(2024 - 11 - 01));
    assert_eq!(statuses(&plan, "influenza"), [DoseStatus::Complete]);
    let plan = schedule(&person, &once, date!(2025 - 03 - 01));
    let item = items(&plan, "influenza")[0].clone();
    assert_eq!(item.status, DoseStatus::Upcoming);
    assert_eq!(
        (item.earliest, item.latest),
        (Some(date!(2025 - 10 - 01)), Some(date!(2026 - 01 - 31)))
    );
    // COVID-19 default season 10/1 … 3/31.
    assert_kinds(
        &check(&person, &[], &dose("covid-19", date!(2025 - 03 - 31))),
        &[],
        "covid last day",
    );
    assert_kinds(
        &check(&person, &[], &dose("covid-19", date!(2025 - 04 - 01))),
        &[Season],
        "covid after",
    );
}

#[test]
fn pneumococcal_once_at_65() {
    // Born 1960-05-01: 65歳 reached 2025-04-30, 66歳 reached 2026-04-30.
    let person = child(date!(1960 - 05 - 01));
    assert_kinds(
        &check(
            &person,
            &[],
            &dose("pneumococcal-ppsv23", date!(2025 - 04 - 29)),
        ),
        &[Age],
        "64",
    );
    assert_kinds(
        &check(
            &person,
            &[],
            &dose("pneumococcal-ppsv23", date!(2025 - 04 - 30)),
        ),
        &[],
        "65",
    );
    assert_kinds(
        &check(
            &person,
            &[],
            &dose("pneumococcal-ppsv23", date!(2026 - 04 - 30)),
        ),
        &[],
        "66 reached",
    );
    assert_kinds(
        &check(
            &person,
            &[],
            &dose("pneumococcal-ppsv23", date!(2026 - 05 - 01)),
        ),
        &[Age],
        "66",
    );
    let once = [dose("pneumococcal-ppsv23", date!(2020 - 01 - 01))];
    assert_kinds(
        &check(
            &person,
            &once,
            &dose("pneumococcal-ppsv23", date!(2025 - 06 - 01)),
        ),
        &[DoseNumber],
        "had one",
    );
}

#[test]
fn a_newborn_schedule_has_no_adult_vaccines_and_an_adult_has_no_childhood_ones() {
    let plan = schedule(&child(date!(2024 - 04 - 01)), &[], date!(2024 - 04 - 01));
    for code in [
        "influenza",
        "zoster-live",
        "zoster-recombinant",
        "pneumococcal-ppsv23",
        "covid-19",
    ] {
        assert!(items(&plan, code).is_empty(), "{code}");
    }
    for code in [
        "dpt-ipv-hib",
        "pcv",
        "hepb",
        "rota-1",
        "bcg",
        "mr",
        "varicella",
        "je",
        "dt",
        "hpv-9",
    ] {
        assert!(!items(&plan, code).is_empty(), "{code}");
    }
    let plan = schedule(&child(date!(1960 - 04 - 02)), &[], date!(2025 - 05 - 01));
    assert!(items(&plan, "bcg").is_empty() && items(&plan, "mr").is_empty());
    assert_eq!(
        statuses(&plan, "zoster-recombinant"),
        [DoseStatus::Due, DoseStatus::Upcoming]
    );
    assert!(
        items(&plan, "zoster-live").is_empty(),
        "one zoster path shown"
    );
}
