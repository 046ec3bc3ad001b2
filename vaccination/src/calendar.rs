//! Legal age and interval arithmetic for vaccination rules.
//!
//! Japanese law counts ages and periods so that a person reaches age N at the end of the day
//! before the Nth birthday (年齢計算ニ関スル法律, 民法 143条), which makes the day before the
//! birthday both the last day "under N" and the first day "N or older". A month-based period
//! whose corresponding day does not exist ends on the last day of that month.

use time::{Date, Duration, Month};

/// `date` plus `months` calendar months on the same day of the month, or `None` when that day
/// does not exist in the target month (e.g. 31 January + 1 month).
fn same_day_months_later(date: Date, months: u32) -> Option<Date> {
    let (year, month) = add_months(date, months);
    Date::from_calendar_date(year, month, date.day()).ok()
}

fn add_months(date: Date, months: u32) -> (i32, Month) {
    let zero_based = u8::from(date.month()) as i64 - 1 + i64::from(months);
    let year = date.year() + (zero_based / 12) as i32;
    let month = Month::try_from((zero_based % 12) as u8 + 1).unwrap_or(Month::January);
    (year, month)
}

fn last_day_of(year: i32, month: Month) -> Date {
    Date::from_calendar_date(year, month, month.length(year)).unwrap_or(Date::MIN)
}

/// The day a child born on `birth` reaches "生後M月" (M months of age): the day before the same
/// day of the month M months later, or that month's last day when the day does not exist.
/// Born 4/1 → 生後2月 on 5/31.
pub fn months_of_age_reached(birth: Date, months: u32) -> Date {
    match same_day_months_later(birth, months) {
        Some(anniversary) => anniversary - Duration::days(1),
        None => {
            let (year, month) = add_months(birth, months);
            last_day_of(year, month)
        }
    }
}

/// The day a person born on `birth` reaches age `years` (「N歳に達した日」): the day before the
/// birthday; for a 29 February birth in a common year, 28 February.
/// Born 2020-04-01 → 1 year on 2021-03-31.
pub fn age_reached(birth: Date, years: u32) -> Date {
    months_of_age_reached(birth, years * 12)
}

/// The age in whole years on `on` under the same rule.
pub fn age_on(birth: Date, on: Date) -> u32 {
    let mut years = 0;
    while age_reached(birth, years + 1) <= on {
        years += 1;
    }
    years
}

/// The first day the next dose may be given after "`days`日以上の間隔": day `days + 1` after
/// the dose. 27日以上 after 4/1 → 4/29.
pub fn after_days(dose: Date, days: u32) -> Date {
    dose + Duration::days(i64::from(days) + 1)
}

/// The first day the next dose may be given after "`months`か月以上の間隔" (MHLW reading): the
/// same day of the month `months` later; when that day does not exist, the day after that
/// month's end. 4/1 + 3か月 → 7/1; 11/30 + 3か月 → 3/1.
pub fn after_months(dose: Date, months: u32) -> Date {
    match same_day_months_later(dose, months) {
        Some(anniversary) => anniversary,
        None => {
            let (year, month) = add_months(dose, months);
            last_day_of(year, month) + Duration::days(1)
        }
    }
}

/// An inclusive range of days, e.g. an eligibility window 「生後2月から生後60月に至るまで」.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub first: Date,
    pub last: Date,
}

impl Window {
    /// 「生後`from`月から`to`月に至るまで」: from the day `from` months of age are reached through
    /// the day `to` months of age are reached (「に至るまで」 includes the day before the
    /// anniversary, which is that day).
    pub fn months_of_age(birth: Date, from: u32, to: u32) -> Window {
        Window {
            first: months_of_age_reached(birth, from),
            last: months_of_age_reached(birth, to),
        }
    }

    pub fn contains(&self, day: Date) -> bool {
        self.first <= day && day <= self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn ages_are_reached_the_day_before_the_birthday() {
        for (birth, years, reached) in [
            (date!(2020 - 04 - 01), 1, date!(2021 - 03 - 31)),
            (date!(2020 - 04 - 02), 1, date!(2021 - 04 - 01)),
            (date!(2020 - 01 - 01), 1, date!(2020 - 12 - 31)),
            // 29 February births reach their age on 28 February in common years.
            (date!(2020 - 02 - 29), 1, date!(2021 - 02 - 28)),
            (date!(2020 - 02 - 29), 4, date!(2024 - 02 - 28)),
            (date!(2016 - 03 - 01), 13, date!(2029 - 02 - 28)),
        ] {
            assert_eq!(age_reached(birth, years), reached, "{birth} + {years}");
        }
    }

    #[test]
    fn the_day_before_the_birthday_is_the_first_day_of_the_new_age() {
        let birth = date!(2020 - 04 - 01);
        assert_eq!(age_on(birth, date!(2021 - 03 - 30)), 0);
        assert_eq!(age_on(birth, date!(2021 - 03 - 31)), 1);
        assert_eq!(age_on(birth, date!(2021 - 04 - 01)), 1);
    }

    #[test]
    fn months_of_age() {
        assert_eq!(
            months_of_age_reached(date!(2024 - 04 - 01), 2),
            date!(2024 - 05 - 31)
        );
        assert_eq!(
            months_of_age_reached(date!(2024 - 04 - 15), 2),
            date!(2024 - 06 - 14)
        );
        // No 31 February: the month's last day.
        assert_eq!(
            months_of_age_reached(date!(2023 - 12 - 31), 2),
            date!(2024 - 02 - 29)
        );
        assert_eq!(
            months_of_age_reached(date!(2022 - 12 - 31), 2),
            date!(2023 - 02 - 28)
        );
        let window = Window::months_of_age(date!(2024 - 04 - 01), 2, 60);
        assert!(!window.contains(date!(2024 - 05 - 30)));
        assert!(window.contains(date!(2024 - 05 - 31)));
        assert!(window.contains(date!(2029 - 03 - 31)));
        assert!(!window.contains(date!(2029 - 04 - 01)));
    }

    #[test]
    fn day_intervals_count_from_the_day_after_the_dose() {
        assert_eq!(after_days(date!(2024 - 04 - 01), 6), date!(2024 - 04 - 08));
        assert_eq!(after_days(date!(2024 - 04 - 01), 20), date!(2024 - 04 - 22));
        assert_eq!(after_days(date!(2024 - 04 - 01), 27), date!(2024 - 04 - 29));
        // Day 27 is too early, day 28 is allowed.
        assert!(date!(2024 - 04 - 28) < after_days(date!(2024 - 04 - 01), 27));
    }

    #[test]
    fn month_intervals_follow_the_mhlw_reading() {
        assert_eq!(
            after_months(date!(2024 - 04 - 01), 3),
            date!(2024 - 07 - 01)
        );
        assert_eq!(
            after_months(date!(2023 - 11 - 30), 3),
            date!(2024 - 03 - 01)
        );
        assert_eq!(
            after_months(date!(2024 - 08 - 30), 6),
            date!(2025 - 03 - 01)
        );
        assert_eq!(
            after_months(date!(2024 - 01 - 31), 1),
            date!(2024 - 03 - 01)
        );
        assert_eq!(
            after_months(date!(2024 - 12 - 15), 1),
            date!(2025 - 01 - 15)
        );
    }
}
