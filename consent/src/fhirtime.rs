//! FHIR `date` / `dateTime` values as the instants they cover, for consent periods and ordering.
//!
//! A FHIR date or dateTime is a range at its precision: `2025` is the whole year, `2025-04-01` the
//! whole day. A value without a time carries no zone; Musubi takes it in Japan Standard Time
//! (+09:00), where every party it serves is.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The half-open range `[start, end)` a FHIR date or dateTime value covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Covered {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// Japan Standard Time, for values without a zone.
pub(crate) const JST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("+09:00 is a valid offset"),
};

/// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or a full dateTime with seconds and a zone.
pub(crate) fn parse(text: &str) -> Result<Covered, String> {
    if text.contains('T') {
        let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
            format!("'{text}' is not a FHIR dateTime with seconds and a zone ({e})")
        })?;
        // A dateTime with seconds is as precise as consent periods need: it covers its second.
        let end = at + time::Duration::SECOND;
        return Ok(Covered { start: at, end });
    }
    let bad = || format!("'{text}' is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)");
    let parts: Vec<&str> = text.split('-').collect();
    let number = |s: &str, len: usize| -> Result<u32, String> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let year = i32::try_from(number(parts[0], 4)?).map_err(|_| bad())?;
    let (start, end) = match parts.len() {
        1 => (date(year, 1, 1)?, date(year + 1, 1, 1)?),
        2 => {
            let month = u8::try_from(number(parts[1], 2)?).map_err(|_| bad())?;
            let start = date(year, month, 1)?;
            let next = if month == 12 {
                date(year + 1, 1, 1)?
            } else {
                date(year, month + 1, 1)?
            };
            (start, next)
        }
        3 => {
            let month = u8::try_from(number(parts[1], 2)?).map_err(|_| bad())?;
            let day = u8::try_from(number(parts[2], 2)?).map_err(|_| bad())?;
            let start = date(year, month, day)?;
            let next = start.next_day().ok_or_else(bad)?;
            (start, next)
        }
        _ => return Err(bad()),
    };
    Ok(Covered {
        start: midnight(start),
        end: midnight(end),
    })
}

fn date(year: i32, month: u8, day: u8) -> Result<Date, String> {
    let month = Month::try_from(month).map_err(|_| format!("month {month} does not exist"))?;
    Date::from_calendar_date(year, month, day)
        .map_err(|_| format!("{year:04}-{:02}-{day:02} does not exist", month as u8))
}

fn midnight(date: Date) -> OffsetDateTime {
    PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(JST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn precision_decides_the_range() {
        let cases = [
            (
                "2025",
                datetime!(2025-01-01 0:00 +9),
                datetime!(2026-01-01 0:00 +9),
            ),
            (
                "2025-12",
                datetime!(2025-12-01 0:00 +9),
                datetime!(2026-01-01 0:00 +9),
            ),
            (
                "2024-02-29",
                datetime!(2024-02-29 0:00 +9),
                datetime!(2024-03-01 0:00 +9),
            ),
            (
                "2025-04-01T10:00:00+09:00",
                datetime!(2025-04-01 10:00 +9),
                datetime!(2025-04-01 10:00:01 +9),
            ),
            (
                "2025-04-01T01:00:00.250Z",
                datetime!(2025-04-01 01:00:00.25 UTC),
                datetime!(2025-04-01 01:00:01.25 UTC),
            ),
        ];
        for (text, start, end) in cases {
            assert_eq!(parse(text), Ok(Covered { start, end }), "{text}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for text in [
            "",
            "25",
            "2025-4-01",
            "2025-02-30",
            "2025-13",
            "2025-04-01T10:00",
            "令和7年",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
