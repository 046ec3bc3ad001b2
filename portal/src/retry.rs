//! The retry policy for portal requests, pure: which answers are retried, exponential backoff
//! with jitter, and `Retry-After` (RFC 9110 §10.2.3) read as seconds or an HTTP date.

use std::time::Duration;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The first backoff step; each further retry doubles it.
    pub base_delay: Duration,
    /// No backoff step is longer than this.
    pub max_delay: Duration,
    /// The longest `Retry-After` waited for inside one pull. A portal asking for longer ends the
    /// pull with `RateLimited` carrying its wish, so the scheduler can come back later instead
    /// of holding the app's request open.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 = the first retry): the exponential step
    /// `base × 2^(retry-1)` capped at `max_delay`, half of it fixed and half scaled by
    /// `jitter` in [0, 1] ("equal jitter"), so clients that failed together spread out but
    /// never retry at once.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let step = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What a status code means for the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    /// 429: wait (`Retry-After` or backoff) and retry.
    RateLimited,
    /// 401: refresh the token once, then retry.
    Unauthorised,
    /// 5xx and 408: retry with backoff.
    Transient,
    /// Any other status: not retried.
    Permanent,
}

pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        429 => StatusClass::RateLimited,
        401 => StatusClass::Unauthorised,
        408 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Permanent,
    }
}

const IMF_FIXDATE: &[BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// A `Retry-After` value: delay-seconds, or an IMF-fixdate HTTP date (a date in the past
/// means now). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = PrimitiveDateTime::parse(value, IMF_FIXDATE)
        .ok()?
        .assume_utc();
    Some((at - now).try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
        };
        let cases = [
            (1, 0.0, 50),
            (1, 1.0, 100),
            (2, 0.0, 100),
            (2, 0.5, 150),
            (3, 1.0, 400),
            (4, 1.0, 800),
            (5, 1.0, 1000),
            (40, 0.0, 500),
            (3, 7.0, 400),
            (3, -1.0, 200),
        ];
        for (retry, jitter, ms) in cases {
            assert_eq!(
                p.backoff(retry, jitter),
                Duration::from_millis(ms),
                "retry {retry} jitter {jitter}"
            );
        }
    }

    #[test]
    fn statuses() {
        let cases = [
            (200, StatusClass::Success),
            (204, StatusClass::Success),
            (400, StatusClass::Permanent),
            (401, StatusClass::Unauthorised),
            (403, StatusClass::Permanent),
            (404, StatusClass::Permanent),
            (408, StatusClass::Transient),
            (429, StatusClass::RateLimited),
            (500, StatusClass::Transient),
            (503, StatusClass::Transient),
            (302, StatusClass::Permanent),
        ];
        for (status, want) in cases {
            assert_eq!(classify(status), want, "{status}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = datetime!(2026-01-10 08:49:30 UTC);
        let cases = [
            ("3", Some(3)),
            (" 0 ", Some(0)),
            ("Sat, 10 Jan 2026 08:49:37 GMT", Some(7)),
            ("Sat, 10 Jan 2026 08:49:00 GMT", Some(0)),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_retry_after(value, now),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }
}
