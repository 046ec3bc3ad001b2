//! The retry policy as pure functions: exponential backoff with full jitter (the caller supplies
//! the random value, so results are reproducible), a maximum number of attempts, and the
//! dead-letter decision with its reason.

use std::fmt;
use std::time::Duration;

/// How often and how patiently a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The backoff ceiling after the first failure; it doubles with each further failure.
    pub base_delay: Duration,
    /// The backoff ceiling never exceeds this.
    pub max_delay: Duration,
    /// Attempts in all (the first one included) before the delivery is dead-lettered.
    pub max_attempts: u32,
}

/// Why an attempt failed, as the delivering adapter classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying: a timeout, a refused connection, HTTP 408, 429 or 5xx. `retry_after` is
    /// the recipient's `Retry-After`, if any.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: HTTP 4xx other than 408/429, a rejected payload, an unknown
    /// recipient. Dead-lettered at once, so a poison message never occupies the queue.
    Permanent { reason: String },
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Transient { reason, .. } | Failure::Permanent { reason } => reason,
        }
    }
}

/// Why a delivery went to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadReason {
    /// The failure was permanent.
    Permanent { reason: String },
    /// Every allowed attempt failed; `last` is the last failure's reason.
    AttemptsExhausted { attempts: u32, last: String },
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadReason::Permanent { reason } => write!(f, "permanent failure: {reason}"),
            DeadReason::AttemptsExhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last failure: {last}")
            }
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    DeadLetter(DeadReason),
}

/// The backoff ceiling after `failures` consecutive failures (1 = after the first attempt):
/// `min(max_delay, base_delay × 2^(failures − 1))`.
pub fn backoff_ceiling(policy: &RetryPolicy, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(63);
    let factor = 1u64 << exponent;
    let base = u64::try_from(policy.base_delay.as_millis()).unwrap_or(u64::MAX);
    let max = u64::try_from(policy.max_delay.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(base.saturating_mul(factor).min(max))
}

/// Full jitter: a delay drawn uniformly from `0..=ceiling` (in milliseconds) using the caller's
/// random value, so many deliveries failing together do not retry in lock-step.
pub fn backoff(policy: &RetryPolicy, failures: u32, random: u64) -> Duration {
    let ceiling = u64::try_from(backoff_ceiling(policy, failures).as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(random % ceiling.saturating_add(1))
}

/// The decision after attempt number `attempts` (1-based) failed with `failure`. A recipient's
/// `Retry-After` is honoured as a lower bound, within `max_delay`.
pub fn decide(
    policy: &RetryPolicy,
    attempts: u32,
    failure: &Failure,
    random: u64,
) -> RetryDecision {
    match failure {
        Failure::Permanent { reason } => RetryDecision::DeadLetter(DeadReason::Permanent {
            reason: reason.clone(),
        }),
        Failure::Transient { reason, .. } if attempts >= policy.max_attempts => {
            RetryDecision::DeadLetter(DeadReason::AttemptsExhausted {
                attempts,
                last: reason.clone(),
            })
        }
        Failure::Transient { retry_after, .. } => {
            let jittered = backoff(policy, attempts, random);
            let delay = retry_after
                .map_or(jittered, |hint| jittered.max(hint))
                .min(policy.max_delay);
            RetryDecision::RetryAfter(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(300),
        max_attempts: 5,
    };

    fn transient(retry_after: Option<u64>) -> Failure {
        Failure::Transient {
            reason: "HTTP 503".to_owned(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_ceiling_doubles_and_is_capped() {
        let cases = [
            (0, 10),
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (5, 160),
            (6, 300),
            (40, 300),
            (u32::MAX, 300),
        ];
        for (failures, seconds) in cases {
            assert_eq!(
                backoff_ceiling(&POLICY, failures),
                Duration::from_secs(seconds),
                "{failures}"
            );
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling_inclusive() {
        // Ceiling after 2 failures is 20 s = 20 000 ms, so the random value is taken mod 20 001.
        let cases = [
            (0, 0),
            (1, 1),
            (20_000, 20_000),
            (20_001, 0),
            (20_002, 1),
            (u64::MAX, u64::MAX % 20_001),
        ];
        for (random, millis) in cases {
            assert_eq!(
                backoff(&POLICY, 2, random),
                Duration::from_millis(millis),
                "{random}"
            );
        }
    }

    #[test]
    fn decisions_retry_then_dead_letter_with_the_reason() {
        let cases: Vec<(u32, Failure, u64, RetryDecision)> = vec![
            (
                1,
                transient(None),
                7_000,
                RetryDecision::RetryAfter(Duration::from_millis(7_000)),
            ),
            // Retry-After is a lower bound over the jitter…
            (
                1,
                transient(Some(60)),
                7_000,
                RetryDecision::RetryAfter(Duration::from_secs(60)),
            ),
            // …but never beyond max_delay.
            (
                2,
                transient(Some(3_600)),
                0,
                RetryDecision::RetryAfter(Duration::from_secs(300)),
            ),
            (
                4,
                transient(None),
                80_000,
                RetryDecision::RetryAfter(Duration::from_millis(80_000)),
            ),
            (
                5,
                transient(None),
                0,
                RetryDecision::DeadLetter(DeadReason::AttemptsExhausted {
                    attempts: 5,
                    last: "HTTP 503".to_owned(),
                }),
            ),
            (
                1,
                Failure::Permanent {
                    reason: "HTTP 422 from recipient".to_owned(),
                },
                0,
                RetryDecision::DeadLetter(DeadReason::Permanent {
                    reason: "HTTP 422 from recipient".to_owned(),
                }),
            ),
        ];
        for (attempts, failure, random, expected) in cases {
            assert_eq!(
                decide(&POLICY, attempts, &failure, random),
                expected,
                "{attempts} {failure:?}"
            );
        }
    }

    #[test]
    fn dead_reasons_read_well() {
        assert_eq!(
            DeadReason::AttemptsExhausted {
                attempts: 5,
                last: "timeout".to_owned()
            }
            .to_string(),
            "gave up after 5 attempts; last failure: timeout"
        );
        assert_eq!(
            DeadReason::Permanent {
                reason: "HTTP 400".to_owned()
            }
            .to_string(),
            "permanent failure: HTTP 400"
        );
    }
}
