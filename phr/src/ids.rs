//! Deterministic resource ids and the date and time forms the app shapes accept.

use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The id of a resource made from an app payload: the SHA-256 (64 hex digits, the longest id R4
/// allows) of its parts joined with U+001F. Callers pass `["phr", client id, person id, kind,
/// key…]`, so re-posting the same point or record from the same app gives the same id and the
/// store overwrites instead of duplicating.
pub fn resource_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0x1f]);
        }
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A point in time as the app wrote it: a whole day or an instant with its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Day(Date),
    Instant(OffsetDateTime),
}

/// Japan's offset, used only to order a whole day among instants.
const JST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

impl When {
    /// Sort and identity key: instants by their UTC time (so `07:00+09:00` and `07:00:00+09:00`
    /// are the same point); a day by its start in Japan.
    pub fn key(self) -> i128 {
        match self {
            When::Day(d) => PrimitiveDateTime::new(d, Time::MIDNIGHT)
                .assume_offset(JST)
                .unix_timestamp_nanos(),
            When::Instant(t) => t.unix_timestamp_nanos(),
        }
    }

    /// The text the id is made from: the day, or the UTC instant.
    pub fn id_text(self) -> String {
        match self {
            When::Day(d) => date_text(d),
            When::Instant(t) => format!("@{}", t.unix_timestamp_nanos()),
        }
    }
}

pub(crate) fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn number(text: &str, digits: usize) -> Option<u32> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// A full date `YYYY-MM-DD` that exists.
pub(crate) fn parse_date(text: &str) -> Result<Date, String> {
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a date (YYYY-MM-DD)".into());
    };
    let (Some(y), Some(m), Some(d)) = (number(y, 4), number(m, 2), number(d, 2)) else {
        return Err("not a date (YYYY-MM-DD)".into());
    };
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| format!("month {m:02} does not exist"))?;
    let year = i32::try_from(y).map_err(|_| "year out of range".to_owned())?;
    let day = u8::try_from(d).map_err(|_| format!("day {d:02} does not exist"))?;
    Date::from_calendar_date(year, month, day)
        .map_err(|_| format!("{text} does not exist (no day {d:02} in that month)"))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, each part existing.
pub(crate) fn check_partial_date(text: &str) -> Result<(), String> {
    match text.len() {
        4 => number(text, 4)
            .map(|_| ())
            .ok_or_else(|| "not a year".to_owned()),
        7 => {
            let m = text
                .get(5..)
                .and_then(|m| number(m, 2))
                .ok_or_else(|| "not a year and month (YYYY-MM)".to_owned())?;
            if (1..=12).contains(&m) && number(&text[..4], 4).is_some() {
                Ok(())
            } else {
                Err(format!("month {m:02} does not exist"))
            }
        }
        _ => parse_date(text).map(|_| ()),
    }
}

/// A date, or a date-time that must carry its zone (`Z` or `±HH:MM`).
pub(crate) fn parse_when(text: &str) -> Result<When, String> {
    let Some((day, rest)) = text.split_once('T') else {
        return parse_date(text).map(When::Day);
    };
    let date = parse_date(day)?;
    let (clock, offset) = if let Some(clock) = rest.strip_suffix('Z') {
        (clock, UtcOffset::UTC)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let zone = &rest[at + 1..];
        let (Some(h), Some(m)) = (
            zone.get(..2).and_then(|h| number(h, 2)),
            zone.get(3..).and_then(|m| number(m, 2)),
        ) else {
            return Err("the time zone must be written ±HH:MM or Z".into());
        };
        let sign: i8 = if rest.as_bytes()[at] == b'-' { -1 } else { 1 };
        let offset = i8::try_from(h)
            .ok()
            .zip(i8::try_from(m).ok())
            .filter(|(h, m)| *h <= 14 && *m < 60)
            .and_then(|(h, m)| UtcOffset::from_hms(sign * h, sign * m, 0).ok())
            .ok_or_else(|| format!("time zone {zone} does not exist"))?;
        (&rest[..at], offset)
    } else {
        return Err("a time needs its time zone (e.g. +09:00)".into());
    };
    let mut fields = clock.split(':');
    let hour = fields.next().and_then(|h| number(h, 2));
    let minute = fields.next().and_then(|m| number(m, 2));
    let (second, nanos) = match fields.next() {
        None => (Some(0), Some(0)),
        Some(s) => match s.split_once('.') {
            None => (number(s, 2), Some(0)),
            Some((s, frac)) if (1..=9).contains(&frac.len()) => (
                number(s, 2),
                number(frac, frac.len()).map(|f| f * 10u32.pow(9 - frac.len() as u32)),
            ),
            Some(_) => (None, None),
        },
    };
    let (Some(hour), Some(minute), Some(second), Some(nanos), None) =
        (hour, minute, second, nanos, fields.next())
    else {
        return Err("not a time (HH:MM or HH:MM:SS)".into());
    };
    let time = u8::try_from(hour)
        .ok()
        .zip(u8::try_from(minute).ok())
        .zip(u8::try_from(second).ok())
        .and_then(|((h, m), s)| Time::from_hms_nano(h, m, s, nanos).ok())
        .ok_or_else(|| format!("{clock} is not a time of day"))?;
    Ok(When::Instant(
        PrimitiveDateTime::new(date, time).assume_offset(offset),
    ))
}

/// The text as an R4 `dateTime`: R4 wants seconds whenever a time is given, apps may omit them
/// (`07:00+09:00` → `07:00:00+09:00`). Dates and texts with seconds stay as written.
pub(crate) fn fhir_date_time(text: &str) -> String {
    if let Some((day, rest)) = text.split_once('T') {
        let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
        let (clock, zone) = rest.split_at(zone_at);
        if clock.len() == 5 {
            return format!("{day}T{clock}:00{zone}");
        }
    }
    text.to_owned()
}

/// `meta.source` for an app: the client id percent-encoded into a URI.
pub(crate) fn client_source(client_id: &str) -> String {
    let mut out = String::from(crate::CLIENT_SOURCE_PREFIX);
    for b in client_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One JSON pointer segment (RFC 6901).
pub(crate) fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sha256_hex_and_separate_their_parts() {
        let id = resource_id(&["phr", "app", "p1", "vitals", "x"]);
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, resource_id(&["phr", "app", "p1", "vitals", "x"]));
        // Joining without a separator would make these equal.
        assert_ne!(resource_id(&["ab", "c"]), resource_id(&["a", "bc"]));
        // SHA-256("") is the well-known e3b0…b855.
        assert_eq!(
            resource_id(&[""]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn dates_and_times_are_checked() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("2026-01-01", Ok(())),
            ("2024-02-29", Ok(())),
            ("2026-02-29", Err("does not exist")),
            ("2026-13-01", Err("month 13")),
            ("2026-01-01T07:00+09:00", Ok(())),
            ("2026-01-01T07:00:00.5Z", Ok(())),
            ("2026-01-01T07:00:00", Err("time zone")),
            ("2026-01-01T24:00:00+09:00", Err("not a time of day")),
            ("2026-01-01T07:60+09:00", Err("not a time of day")),
            ("2026-01-01T07:00+25:00", Err("does not exist")),
            ("2026-01-01T7:00+09:00", Err("not a time")),
        ];
        for (text, expected) in cases {
            match (parse_when(text), expected) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
        assert_eq!(
            parse_when("2026-01-01T07:00+09:00").unwrap().key(),
            parse_when("2025-12-31T22:00:00Z").unwrap().key()
        );
        assert_eq!(
            parse_when("2026-01-01").unwrap().key(),
            parse_when("2026-01-01T00:00+09:00").unwrap().key()
        );
        for (text, ok) in [
            ("2019", true),
            ("2019-04", true),
            ("2019-00", false),
            ("2019-4", false),
            ("2019-02-30", false),
        ] {
            assert_eq!(check_partial_date(text).is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn fhir_date_times_get_their_seconds() {
        assert_eq!(
            fhir_date_time("2026-01-01T07:00+09:00"),
            "2026-01-01T07:00:00+09:00"
        );
        assert_eq!(fhir_date_time("2026-01-01T07:00Z"), "2026-01-01T07:00:00Z");
        assert_eq!(
            fhir_date_time("2026-01-01T07:00:05.5-03:00"),
            "2026-01-01T07:00:05.5-03:00"
        );
        assert_eq!(fhir_date_time("2026-01-01"), "2026-01-01");
    }

    #[test]
    fn client_ids_become_uris_and_pointers_are_escaped() {
        assert_eq!(
            client_source("boshi app/1"),
            "https://musubi.example.org/fhir/phr-client/boshi%20app%2F1"
        );
        assert_eq!(escape_pointer("a/b~c"), "a~1b~0c");
    }
}
