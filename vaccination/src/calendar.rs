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

/// The first day the next dose may be given after "`months`月半以上の間隔" (N and a half
/// months): `months` months as in [`after_months`], then half of the month in which that
/// period ends: 14, 15, 15 or 16 days for a month of 28, 29, 30 or 31 days (MHLW 予防接種基本方針部会
/// 第52回 資料5). 4/1 + 2月半 → 6/1 + 15 days → 6/16.
pub fn after_months_and_half(dose: Date, months: u32) -> Date {
    let after = after_months(dose, months);
    after + Duration::days(i64::from(half_month_days(after.year(), after.month())))
}

/// Half a month in days for the month `month` of `year`: 28 → 14, 29 → 15, 30 → 15, 31 → 16.
pub fn half_month_days(year: i32, month: Month) -> u8 {
    match month.length(year) {
        28 => 14,
        29 | 30 => 15,
        _ => 16,
    }
}

/// 「出生X週Y日後」 (the rotavirus windows): the day of birth is 0週0日 and the next day 0週1日,
/// so the day is the birth date plus 7X + Y days. Born 2024-04-01 → 6週0日後 = 2024-05-13.
pub fn weeks_after_birth(birth: Date, weeks: u32, days: u32) -> Date {
    birth + Duration::days(i64::from(weeks) * 7 + i64::from(days))
}

/// The Japanese fiscal year (年度, 1 April – 31 March) that contains `day`, named by the
/// calendar year it starts in: 2025-03-31 → 2024, 2025-04-01 → 2025.
pub fn fiscal_year(day: Date) -> i32 {
    if day.month() >= Month::April {
        day.year()
    } else {
        day.year() - 1
    }
}

/// The first day (初日, 1 April) of fiscal year `year`.
pub fn fiscal_year_first_day(year: i32) -> Date {
    Date::from_calendar_date(year, Month::April, 1).unwrap_or(Date::MIN)
}

/// The last day (末日, 31 March of the next calendar year) of fiscal year `year`.
pub fn fiscal_year_last_day(year: i32) -> Date {
    Date::from_calendar_date(year + 1, Month::March, 31).unwrap_or(Date::MAX)
}

/// The fiscal year 「N歳となる日の属する年度」: the one containing the day age `years` is reached
/// ([`age_reached`]). Born 2012-04-02 → 12 on 2024-04-01 → fiscal 2024; born 2012-04-01 → 12
/// on 2024-03-31 → fiscal 2023 (so 1 April births share the school year of the cohort before).
pub fn fiscal_year_of_age(birth: Date, years: u32) -> i32 {
    fiscal_year(age_reached(birth, years))
}

/// The last day of a period of "at most `days` days" after `dose` (e.g. a standard interval
/// 「56日まで」): the day on which `days` days have elapsed, `dose + days`.
pub fn within_days(dose: Date, days: u32) -> Date {
    dose + Duration::days(i64::from(days))
}

/// The last day of a period of "at most `months` months" after `dose`: the day on which the
/// months have elapsed, one day before [`after_months`].
pub fn within_months(dose: Date, months: u32) -> Date {
    after_months(dose, months) - Duration::days(1)
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
    #[test]
    fn half_months_use_the_length_of_the_month_they_end_in() {
        // MHLW example: 4/1 + 2月半 → 2 months elapse 5/31, June has 30 days → 15 → 6/16.
        assert_eq!(
            after_months_and_half(date!(2024 - 04 - 01), 2),
            date!(2024 - 06 - 16)
        );
        // 12/1 + 2月半: 2 months → 2/1; February 2025 has 28 days → 14 → 2/15.
        assert_eq!(
            after_months_and_half(date!(2024 - 12 - 01), 2),
            date!(2025 - 02 - 15)
        );
        // 12/1 + 2月半 in a leap year: February 2024 has 29 days → 15 → 2/16.
        assert_eq!(
            after_months_and_half(date!(2023 - 12 - 01), 2),
            date!(2024 - 02 - 16)
        );
        // 5/1 + 2月半: 7/1, July has 31 days → 16 → 7/17.
        assert_eq!(
            after_months_and_half(date!(2024 - 05 - 01), 2),
            date!(2024 - 07 - 17)
        );
    }

    #[test]
    fn weeks_after_birth_count_the_birth_day_as_zero() {
        let birth = date!(2024 - 04 - 01);
        assert_eq!(weeks_after_birth(birth, 0, 0), birth);
        assert_eq!(weeks_after_birth(birth, 0, 1), date!(2024 - 04 - 02));
        // 6週0日後 = 42 days later, the same weekday.
        assert_eq!(weeks_after_birth(birth, 6, 0), date!(2024 - 05 - 13));
        // 24週0日後 = 168 days later.
        assert_eq!(weeks_after_birth(birth, 24, 0), date!(2024 - 09 - 16));
        assert_eq!(weeks_after_birth(birth, 14, 6), date!(2024 - 07 - 14));
    }

    #[test]
    fn fiscal_years_start_on_1_april() {
        assert_eq!(fiscal_year(date!(2025 - 03 - 31)), 2024);
        assert_eq!(fiscal_year(date!(2025 - 04 - 01)), 2025);
        assert_eq!(fiscal_year_first_day(2025), date!(2025 - 04 - 01));
        assert_eq!(fiscal_year_last_day(2025), date!(2026 - 03 - 31));
        assert_eq!(fiscal_year_of_age(date!(2012 - 04 - 02), 12), 2024);
        assert_eq!(fiscal_year_of_age(date!(2012 - 04 - 01), 12), 2023);
    }

    #[test]
    fn upper_bounds_of_standard_intervals() {
        assert_eq!(
            within_days(date!(2024 - 04 - 01), 56),
            date!(2024 - 05 - 27)
        );
        assert_eq!(
            within_months(date!(2024 - 04 - 01), 18),
            date!(2025 - 09 - 30)
        );
    }
}
