//! Calendar months (`YYYY-MM`) for month close and due dates, and `YYYY-MM-DD` days in data.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month};

/// A calendar month, e.g. `2025-06`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    year: i32,
    month: Month,
}

impl YearMonth {
    pub fn new(year: i32, month: Month) -> Self {
        Self { year, month }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid month {text:?} (want YYYY-MM)");
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u8 = month.parse().map_err(|_| bad())?;
        let month = Month::try_from(month).map_err(|_| bad())?;
        Ok(Self { year, month })
    }

    /// The month a date falls in.
    pub fn of(date: Date) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> Month {
        self.month
    }

    pub fn first_day(self) -> Date {
        Date::from_calendar_date(self.year, self.month, 1).expect("day 1 exists in every month")
    }

    pub fn last_day(self) -> Date {
        let last = time::util::days_in_month(self.month, self.year);
        Date::from_calendar_date(self.year, self.month, last).expect("the month's own last day")
    }

    pub fn contains(self, date: Date) -> bool {
        Self::of(date) == self
    }

    /// The month `n` months later.
    pub fn plus_months(self, n: u32) -> Self {
        let index = i64::from(self.year) * 12 + i64::from(u8::from(self.month)) - 1 + i64::from(n);
        let year = i32::try_from(index.div_euclid(12)).expect("years stay in range");
        let month = u8::try_from(index.rem_euclid(12) + 1).expect("1..=12");
        Self {
            year,
            month: Month::try_from(month).expect("1..=12"),
        }
    }

    /// Day `day` of this month, if it exists.
    pub fn day(self, day: u8) -> Option<Date> {
        Date::from_calendar_date(self.year, self.month, day).ok()
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

impl Serialize for YearMonth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for YearMonth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).map_err(|e| format!("invalid date {text:?} (want YYYY-MM-DD): {e}"))
}

/// Formats `YYYY-MM-DD`.
pub fn format_day(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Serde for `time::Date` as `YYYY-MM-DD` (the workspace builds `time` without serde).
pub(crate) mod day {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_day(*date))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_day(&text).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Date>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::Date;

        pub fn serialize<S: Serializer>(
            date: &Option<Date>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match date {
                Some(d) => serializer.serialize_str(&super::super::format_day(*d)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Date>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|text| super::super::parse_day(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn months_parse_add_and_bound() {
        let june = YearMonth::parse("2025-06").expect("valid");
        assert_eq!(june.first_day(), date!(2025 - 06 - 01));
        assert_eq!(june.last_day(), date!(2025 - 06 - 30));
        assert!(june.contains(date!(2025 - 06 - 30)));
        assert!(!june.contains(date!(2025 - 07 - 01)));
        let cases = [
            ("2025-06", 1, "2025-07"),
            ("2025-12", 1, "2026-01"),
            ("2025-11", 2, "2026-01"),
            ("2025-01", 0, "2025-01"),
            ("2024-12", 14, "2026-02"),
        ];
        for (from, n, to) in cases {
            let got = YearMonth::parse(from).expect(from).plus_months(n);
            assert_eq!(got.to_string(), to, "{from} + {n}");
        }
        assert_eq!(
            YearMonth::parse("2024-02").expect("valid").last_day(),
            date!(2024 - 02 - 29)
        );
        for bad in ["2025-13", "2025-00", "2025-6", "25-06", "2025/06", ""] {
            assert!(YearMonth::parse(bad).is_err(), "{bad}");
        }
    }
}
