//! Parcels: one payload that carries many deliveries to one recipient (a municipal file, a
//! weekly digest). Their deterministic ids, and the ISO week (in Japan time) that a weekly
//! digest covers.

use std::fmt;

use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime, UtcOffset, Weekday};

/// Japan Standard Time (UTC+9, no daylight saving): district teams work by the Japanese
/// calendar, so a week runs Monday 00:00 to Sunday 24:00 there.
pub const JAPAN: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// The first 128 bits of the SHA-256 of length-prefixed parts, in hex: the shape of every
/// routing id, so no two different part lists give the same id.
pub(crate) fn hashed_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// The id of a municipal file: the recipient, the file's kind (`records` or `deletions`), the
/// delivery ids it carries, in any order, and the part. Gathering the same deliveries again
/// gives the same id, so a file is never stored or accepted twice. A file of deliveries that
/// were already in one (a replay) is part 2, 3, …, so the recipient never gets one file id
/// with different content.
pub fn file_id(recipient: &str, kind: &str, delivery_ids: &[&str], part: u32) -> String {
    let mut ids = delivery_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let part = part.to_string();
    let mut parts = vec!["musubi-municipal-file-v1", recipient, kind];
    // Part 1 keeps the form of ids made before parts existed.
    if part != "1" {
        parts.push("part");
        parts.push(&part);
    }
    parts.extend(ids);
    hashed_id(&parts)
}

/// The id of a recipient's weekly digest. Part 1 is the week's digest; a record queued for a
/// week whose digest was already made goes into part 2, and so on.
pub fn digest_id(recipient: &str, week: IsoWeek, part: u32) -> String {
    hashed_id(&[
        "musubi-weekly-digest-v1",
        recipient,
        &week.to_string(),
        &part.to_string(),
    ])
}

/// When a municipal-file delivery queued at `queued` is gathered into a file: at the end of
/// its window. Windows start at midnight in Japan and every `interval` after it (the last one
/// of a day ends at the next midnight), so the deliveries of one window travel in one file. A
/// zero interval gathers at once. Derived from the queue time alone, so a restart or a missed
/// round never loses or splits a window.
pub fn file_gathering_time(
    queued: OffsetDateTime,
    interval: std::time::Duration,
) -> OffsetDateTime {
    match file_window(queued, interval) {
        Some((_, end)) => end,
        None => queued,
    }
}

/// When the file window holding `now` began: every delivery queued before it is due to be
/// gathered. `None` for a zero interval (no windows).
pub fn file_window_start(
    now: OffsetDateTime,
    interval: std::time::Duration,
) -> Option<OffsetDateTime> {
    file_window(now, interval).map(|(start, _)| start)
}

/// The window (start, end) holding `instant`, or `None` for a zero interval.
fn file_window(
    instant: OffsetDateTime,
    interval: std::time::Duration,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let interval = interval.as_secs() as i64;
    if interval == 0 {
        return None;
    }
    let local = instant.to_offset(JAPAN);
    let midnight = local.date().midnight().assume_offset(JAPAN);
    let elapsed = (local - midnight).whole_seconds();
    let start = midnight + time::Duration::seconds(elapsed / interval * interval);
    let end = (start + time::Duration::seconds(interval)).min(midnight + time::Duration::DAY);
    Some((start, end))
}

/// An ISO 8601 week (`2026-W48`): weeks start on Monday, and week 1 is the week with the
/// year's first Thursday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IsoWeek {
    year: i32,
    week: u8,
}

impl IsoWeek {
    /// The week an instant falls in, by the calendar in Japan.
    pub fn of(instant: OffsetDateTime) -> IsoWeek {
        let (year, week, _) = instant.to_offset(JAPAN).date().to_iso_week_date();
        IsoWeek { year, week }
    }

    /// Reads `YYYY-Www` (e.g. `2026-W01`); the week must exist in that year.
    pub fn parse(text: &str) -> Result<IsoWeek, String> {
        let bad = || format!("{text:?} is not an ISO week of the form YYYY-Www (e.g. 2026-W48)");
        let (year, week) = text.split_once("-W").ok_or_else(bad)?;
        if year.len() != 4 || week.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let week: u8 = week.parse().map_err(|_| bad())?;
        Date::from_iso_week_date(year, week, Weekday::Monday)
            .map_err(|_| format!("{year} has no week {week:02}"))?;
        Ok(IsoWeek { year, week })
    }

    /// Monday 00:00 in Japan, when the week begins.
    pub fn start(self) -> OffsetDateTime {
        // Both were checked when the week was made.
        let monday =
            Date::from_iso_week_date(self.year, self.week, Weekday::Monday).unwrap_or(Date::MIN);
        monday.midnight().assume_offset(JAPAN)
    }

    /// The next Monday 00:00 in Japan, when the week has ended.
    pub fn end(self) -> OffsetDateTime {
        self.start() + time::Duration::weeks(1)
    }

    /// Whether the week is over at `now`.
    pub fn has_ended(self, now: OffsetDateTime) -> bool {
        now >= self.end()
    }
}

impl fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_week_runs_monday_to_sunday_in_japan_time() {
        let cases = [
            // Sunday 23:59 in Japan is still the old week; Monday 00:00 starts the next.
            (datetime!(2026-11-29 23:59:59 +09:00), "2026-W48"),
            (datetime!(2026-11-30 00:00 +09:00), "2026-W49"),
            // 15:00 UTC on Sunday is already Monday in Japan.
            (datetime!(2026-11-29 14:59:59 UTC), "2026-W48"),
            (datetime!(2026-11-29 15:00 UTC), "2026-W49"),
            // Around New Year the ISO year differs from the calendar year.
            (datetime!(2024-12-30 09:00 +09:00), "2025-W01"),
            (datetime!(2027-01-03 12:00 +09:00), "2026-W53"),
            (datetime!(2027-01-04 00:00 +09:00), "2027-W01"),
        ];
        for (instant, expected) in cases {
            assert_eq!(IsoWeek::of(instant).to_string(), expected, "{instant}");
        }
    }

    #[test]
    fn a_week_ends_at_the_next_monday_in_japan() {
        let week = IsoWeek::parse("2026-W48").unwrap();
        assert_eq!(week.start(), datetime!(2026-11-23 00:00 +09:00));
        assert_eq!(week.end(), datetime!(2026-11-30 00:00 +09:00));
        assert!(!week.has_ended(datetime!(2026-11-29 14:59:59 UTC)));
        assert!(week.has_ended(datetime!(2026-11-29 15:00 UTC)));
        assert_eq!(IsoWeek::of(week.start()), week);
        assert_eq!(IsoWeek::of(week.end() - time::Duration::SECOND), week);
    }

    #[test]
    fn only_real_weeks_parse() {
        assert_eq!(IsoWeek::parse("2026-W53").unwrap().to_string(), "2026-W53");
        for bad in [
            "2025-W53", "2026-W00", "2026-W54", "2026-48", "26-W48", "2026-W4", "",
        ] {
            assert!(IsoWeek::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_file_window_ends_on_the_interval_counted_from_midnight_in_japan() {
        let daily = std::time::Duration::from_secs(86_400);
        // 23:59 and 00:00 in Japan fall on either side of a daily boundary.
        assert_eq!(
            file_gathering_time(datetime!(2026-11-25 23:59 +09:00), daily),
            datetime!(2026-11-26 00:00 +09:00)
        );
        assert_eq!(
            file_gathering_time(datetime!(2026-11-25 15:00 UTC), daily),
            datetime!(2026-11-27 00:00 +09:00)
        );
        let hourly = std::time::Duration::from_secs(3_600);
        assert_eq!(
            file_gathering_time(datetime!(2026-11-25 10:30 +09:00), hourly),
            datetime!(2026-11-25 11:00 +09:00)
        );
        // Seven hours does not divide a day: the day's last window ends at midnight.
        let seven = std::time::Duration::from_secs(7 * 3_600);
        assert_eq!(
            file_gathering_time(datetime!(2026-11-25 22:00 +09:00), seven),
            datetime!(2026-11-26 00:00 +09:00)
        );
        assert_eq!(
            file_gathering_time(datetime!(2026-11-25 06:59 +09:00), seven),
            datetime!(2026-11-25 07:00 +09:00)
        );
        let queued = datetime!(2026-11-25 10:30:15 +09:00);
        assert_eq!(
            file_gathering_time(queued, std::time::Duration::ZERO),
            queued
        );
        // Everything queued before the current window began is due.
        assert_eq!(
            file_window_start(queued, hourly),
            Some(datetime!(2026-11-25 10:00 +09:00))
        );
        assert_eq!(
            file_window_start(queued, daily),
            Some(datetime!(2026-11-25 00:00 +09:00))
        );
        assert_eq!(file_window_start(queued, std::time::Duration::ZERO), None);
    }

    #[test]
    fn parcel_ids_depend_on_content_not_order() {
        let a = file_id("city", "records", &["d2", "d1"], 1);
        assert_eq!(a, file_id("city", "records", &["d1", "d2", "d1"], 1));
        assert_ne!(a, file_id("city", "deletions", &["d1", "d2"], 1));
        assert_ne!(a, file_id("town", "records", &["d1", "d2"], 1));
        assert_ne!(a, file_id("city", "records", &["d1", "d2"], 2));
        assert_ne!(
            file_id("city", "records", &["d1"], 2),
            file_id("city", "records", &["d1"], 3)
        );
        assert_eq!(a.len(), 32);
        let week = IsoWeek::parse("2026-W48").unwrap();
        assert_eq!(digest_id("team", week, 1), digest_id("team", week, 1));
        assert_ne!(digest_id("team", week, 1), digest_id("team", week, 2));
        assert_ne!(
            digest_id("team", week, 1),
            digest_id("team", IsoWeek::parse("2026-W49").unwrap(), 1)
        );
    }
}
