//! FHIR date/dateTime/instant values as millisecond ranges (R4 3.1.1.5.4: a date with less
//! precision stands for the whole period it names).

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// An inclusive range in milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub low: i64,
    pub high: i64,
}

/// Parse `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or a dateTime/instant into the range it covers.
/// Values without a zone are taken as UTC (documented in docs/search.md).
pub fn parse_date_range(text: &str) -> Option<DateRange> {
    let text = text.trim();
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date_part.split('-');
    let year: i32 = parse_digits(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(m) => Some(parse_digits::<u8>(m, 2)?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(parse_digits::<u8>(d, 2)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    match (month, day, time_part) {
        (None, None, None) => {
            let low = Date::from_calendar_date(year, Month::January, 1).ok()?;
            let high = Date::from_calendar_date(year, Month::December, 31).ok()?;
            Some(DateRange {
                low: day_start(low),
                high: day_end(high),
            })
        }
        (Some(m), None, None) => {
            let month = Month::try_from(m).ok()?;
            let low = Date::from_calendar_date(year, month, 1).ok()?;
            let high = Date::from_calendar_date(year, month, month.length(year)).ok()?;
            Some(DateRange {
                low: day_start(low),
                high: day_end(high),
            })
        }
        (Some(m), Some(d), None) => {
            let date = Date::from_calendar_date(year, Month::try_from(m).ok()?, d).ok()?;
            Some(DateRange {
                low: day_start(date),
                high: day_end(date),
            })
        }
        (Some(m), Some(d), Some(t)) => {
            let date = Date::from_calendar_date(year, Month::try_from(m).ok()?, d).ok()?;
            parse_time_range(date, t)
        }
        _ => None,
    }
}

fn parse_digits<T: std::str::FromStr>(text: &str, len: usize) -> Option<T> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok())?
}

fn parse_time_range(date: Date, text: &str) -> Option<DateRange> {
    // Split the zone off: `Z`, `+09:00`, `-05:00`, or none.
    let (clock, offset) = if let Some(c) = text.strip_suffix('Z') {
        (c, UtcOffset::UTC)
    } else if let Some(pos) = text.rfind(['+', '-']) {
        let (c, zone) = text.split_at(pos);
        let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        let offset = UtcOffset::from_hms(
            sign * parse_digits::<i8>(h, 2)?,
            sign * parse_digits::<i8>(m, 2)?,
            0,
        )
        .ok()?;
        (c, offset)
    } else {
        (text, UtcOffset::UTC)
    };
    let mut fields = clock.split(':');
    let hour: u8 = parse_digits(fields.next()?, 2)?;
    let minute: u8 = parse_digits(fields.next()?, 2)?;
    let (second, millis, precision_ms) = match fields.next() {
        None => (0u8, 0u16, 60_000i64),
        Some(s) => {
            let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
            let second: u8 = parse_digits(whole, 2)?;
            if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = fraction.len().min(3);
            let millis = if digits == 0 {
                0
            } else {
                fraction[..digits].parse::<u16>().ok()? * 10u16.pow(3 - digits as u32)
            };
            let precision = if fraction.is_empty() {
                1000
            } else {
                10i64.pow(3 - digits as u32)
            };
            (second, millis, precision)
        }
    };
    if fields.next().is_some() {
        return None;
    }
    let time = Time::from_hms_milli(hour, minute, second.min(59), millis).ok()?;
    let instant = PrimitiveDateTime::new(date, time).assume_offset(offset);
    let low = (instant.unix_timestamp_nanos() / 1_000_000) as i64;
    Some(DateRange {
        low,
        high: low + precision_ms - 1,
    })
}

fn day_start(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp() * 1000
}

fn day_end(date: Date) -> i64 {
    day_start(date) + 86_400_000 - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_dates_cover_their_period() {
        let y = parse_date_range("2024").unwrap();
        let feb = parse_date_range("2024-02").unwrap();
        let leap = parse_date_range("2024-02-29").unwrap();
        assert!(y.low <= feb.low && feb.high <= y.high);
        assert_eq!(feb.high, leap.high, "2024-02 ends with the leap day");
        assert!(parse_date_range("2023-02-29").is_none());
        assert!(parse_date_range("2024-13").is_none());
        assert!(parse_date_range("20240101").is_none());
    }

    #[test]
    fn zones_shift_instants() {
        let jst = parse_date_range("2024-06-03T09:00:00+09:00").unwrap();
        let utc = parse_date_range("2024-06-03T00:00:00Z").unwrap();
        assert_eq!(jst, utc);
        let minute = parse_date_range("2024-06-03T00:00Z").unwrap();
        assert_eq!(minute.high - minute.low, 59_999);
        let millis = parse_date_range("2024-06-03T00:00:00.123Z").unwrap();
        assert_eq!(millis.low, millis.high);
    }
}
