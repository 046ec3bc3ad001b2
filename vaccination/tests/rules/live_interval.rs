//! The rules between different vaccines: 27日 between injectable live vaccines from 2020-10-01;
//! before that 27日 after any live and 6日 after any inactivated vaccine (specs digest §4.2).

use time::macros::date;
use vaccination::FindingKind::*;

use crate::common::*;

#[test]
fn injectable_live_vaccines_are_27_days_apart() {
    // Born 2023-04-01: MR and varicella both possible from 2024-03-31.
    let person = child(date!(2023 - 04 - 01));
    let mr = [dose("mr", date!(2024 - 04 - 01))];
    // 27日以上 → 4/1 + 28 = 4/29.
    let early = check(&person, &mr, &dose("varicella", date!(2024 - 04 - 28)));
    assert_kinds(&early, &[LiveVaccineInterval], "day 27");
    assert_message(
        &early,
        LiveVaccineInterval,
        "27日以上 after mr on 2024-04-01",
        "names the earlier dose",
    );
    assert_message(
        &early,
        LiveVaccineInterval,
        "no earlier than 2024-04-29",
        "names the day",
    );
    assert_kinds(
        &check(&person, &mr, &dose("varicella", date!(2024 - 04 - 29))),
        &[],
        "day 28",
    );
    // Same day (同時接種) is allowed.
    assert_kinds(
        &check(&person, &mr, &dose("varicella", date!(2024 - 04 - 01))),
        &[],
        "same day",
    );
    // Inactivated or oral after live: no restriction since 2020-10-01.
    assert_kinds(
        &check(&person, &mr, &dose("pcv", date!(2024 - 04 - 02))),
        &[],
        "inactivated the next day",
    );
    // A recorded later live dose too close to a back-dated candidate is found as well.
    let later = [dose("varicella", date!(2024 - 04 - 20))];
    let back = check(&person, &later, &dose("mr", date!(2024 - 04 - 10)));
    assert_kinds(
        &back,
        &[LiveVaccineInterval],
        "recorded dose after the candidate",
    );
    assert_message(&back, LiveVaccineInterval, "2024-05-08", "4/10 + 28");
}

#[test]
fn before_october_2020_every_vaccine_waited_after_live_and_inactivated_ones() {
    // Born 2019-01-01: 生後2月 reached 2019-02-28; PCV start 2–7か月 up to 2019-07-31.
    let person = child(date!(2019 - 01 - 01));
    let hib = [dose("hib", date!(2019 - 05 - 01))];
    // 6日以上 after an inactivated vaccine → 5/1 + 7 = 5/8.
    let early = check(&person, &hib, &dose("pcv", date!(2019 - 05 - 06)));
    assert_kinds(&early, &[CrossVaccineInterval], "6日 rule");
    assert_message(
        &early,
        CrossVaccineInterval,
        "no earlier than 2019-05-08",
        "names the day",
    );
    assert_kinds(
        &check(&person, &hib, &dose("pcv", date!(2019 - 05 - 08))),
        &[],
        "day 7",
    );
    // The same pair after 2020-10-01 has no restriction (born 2020-01-01; PCV start by 2020-07-31 …
    // so use 2020-10-05/10-06 with a child born 2020-06-01: 生後2月 reached 2020-07-31).
    let person = child(date!(2020 - 06 - 01));
    let hib = [dose("hib", date!(2020 - 10 - 05))];
    assert_kinds(
        &check(&person, &hib, &dose("pcv", date!(2020 - 10 - 06))),
        &[],
        "after the change",
    );
    // BCG (live) then an inactivated vaccine before the change: 27日.
    let person = child(date!(2019 - 01 - 01));
    let bcg = [dose("bcg", date!(2019 - 06 - 01))];
    let early = check(&person, &bcg, &dose("pcv", date!(2019 - 06 - 20)));
    assert_kinds(
        &early,
        &[CrossVaccineInterval],
        "27日 after live, before the change",
    );
    assert_message(&early, CrossVaccineInterval, "2019-06-29", "6/1 + 28");
}
