//! The delivery state machine: pending (or scheduled, not before a due day) → in-flight →
//! delivered | retry-wait | dead, plus refusal at delivery time (a consent withdrawn while
//! queued), supersession (a newer version of the record replaces one still waiting) and the
//! operator's replay and discard.
//! Transitions are pure functions of the state, the event and the retry policy.

use time::OffsetDateTime;

use crate::RoutingError;
use crate::retry::{Failure, RetryDecision, RetryPolicy, decide};

/// Where a delivery is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Queued, due now.
    Pending,
    /// Queued, but not to be delivered before `not_before` (a claim batch waits for its due day).
    Scheduled { not_before: OffsetDateTime },
    /// An attempt started at `since` and has not reported back.
    InFlight { since: OffsetDateTime },
    /// Waiting for its next attempt.
    RetryWait { until: OffsetDateTime },
    /// The recipient accepted it.
    Delivered { at: OffsetDateTime },
    /// In the dead-letter queue; an operator may replay or discard it.
    Dead { reason: String, at: OffsetDateTime },
    /// Refused at delivery time (e.g. the consent was withdrawn); never replayed.
    Refused { reason: String, at: OffsetDateTime },
    /// Discarded by an operator from the dead-letter queue.
    Discarded { at: OffsetDateTime },
    /// Cancelled while still waiting, because a newer version of the record (`by`, e.g.
    /// `Claim/b1/_history/2`) replaces it: the recipient gets only the newer one.
    Superseded { by: String, at: OffsetDateTime },
}

impl DeliveryStatus {
    /// The state's name, as stored and shown to operators.
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Scheduled { .. } => "scheduled",
            DeliveryStatus::InFlight { .. } => "in-flight",
            DeliveryStatus::RetryWait { .. } => "retry-wait",
            DeliveryStatus::Delivered { .. } => "delivered",
            DeliveryStatus::Dead { .. } => "dead",
            DeliveryStatus::Refused { .. } => "refused",
            DeliveryStatus::Discarded { .. } => "discarded",
            DeliveryStatus::Superseded { .. } => "superseded",
        }
    }
}

/// A delivery's state: its status, the attempts made so far and the last failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    pub status: DeliveryStatus,
    /// Attempts started since the delivery was queued or last replayed.
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl Default for DeliveryState {
    fn default() -> Self {
        Self::new()
    }
}

impl DeliveryState {
    /// A newly queued delivery.
    pub fn new() -> Self {
        Self {
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
        }
    }

    /// A newly queued delivery that must not start before `not_before`.
    pub fn scheduled(not_before: OffsetDateTime) -> Self {
        Self {
            status: DeliveryStatus::Scheduled { not_before },
            ..Self::new()
        }
    }

    /// Whether a worker may start an attempt at `now`.
    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        match self.status {
            DeliveryStatus::Pending => true,
            DeliveryStatus::Scheduled { not_before: until }
            | DeliveryStatus::RetryWait { until } => until <= now,
            _ => false,
        }
    }

    /// Whether nothing further happens without an operator (delivered, dead, refused,
    /// discarded, superseded).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Delivered { .. }
                | DeliveryStatus::Dead { .. }
                | DeliveryStatus::Refused { .. }
                | DeliveryStatus::Discarded { .. }
                | DeliveryStatus::Superseded { .. }
        )
    }

    /// Whether it has not started yet and may be superseded: pending, scheduled or waiting for
    /// a retry. An attempt in flight is left to finish.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Pending
                | DeliveryStatus::Scheduled { .. }
                | DeliveryStatus::RetryWait { .. }
        )
    }
}

/// What happens to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// A worker starts an attempt (after re-checking consent).
    Start { now: OffsetDateTime },
    /// The recipient accepted the attempt.
    Succeeded { now: OffsetDateTime },
    /// The attempt failed; `random` feeds the backoff jitter.
    Failed {
        now: OffsetDateTime,
        failure: Failure,
        random: u64,
    },
    /// An in-flight attempt never reported back (the worker stopped). Counted as a transient
    /// failure, so a message that crashes the worker is dead-lettered after `max_attempts`.
    Abandoned { now: OffsetDateTime, random: u64 },
    /// The consent re-check at delivery time denied it.
    Refused { now: OffsetDateTime, reason: String },
    /// Operator: put a dead delivery back in the queue with a fresh attempt count.
    Replay,
    /// Operator: drop a dead delivery.
    Discard { now: OffsetDateTime },
    /// A newer version of the record (`by`) replaces a delivery still waiting.
    Supersede { now: OffsetDateTime, by: String },
}

impl DeliveryEvent {
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryEvent::Start { .. } => "start",
            DeliveryEvent::Succeeded { .. } => "succeeded",
            DeliveryEvent::Failed { .. } => "failed",
            DeliveryEvent::Abandoned { .. } => "abandoned",
            DeliveryEvent::Refused { .. } => "refused",
            DeliveryEvent::Replay => "replay",
            DeliveryEvent::Discard { .. } => "discard",
            DeliveryEvent::Supersede { .. } => "supersede",
        }
    }
}

/// The state after `event`, or why the event is not allowed in this state.
pub fn transition(
    state: &DeliveryState,
    event: DeliveryEvent,
    policy: &RetryPolicy,
) -> Result<DeliveryState, RoutingError> {
    let invalid = |event: &DeliveryEvent| RoutingError::Transition {
        from: state.status.code(),
        event: event.code(),
    };
    let next = |status| DeliveryState {
        status,
        attempts: state.attempts,
        last_error: state.last_error.clone(),
    };
    match (&state.status, event) {
        (DeliveryStatus::Pending, DeliveryEvent::Start { now }) => Ok(DeliveryState {
            status: DeliveryStatus::InFlight { since: now },
            attempts: state.attempts.saturating_add(1),
            last_error: state.last_error.clone(),
        }),
        (
            DeliveryStatus::Scheduled { not_before: until } | DeliveryStatus::RetryWait { until },
            DeliveryEvent::Start { now },
        ) => {
            if now < *until {
                return Err(RoutingError::NotDue { until: *until });
            }
            Ok(DeliveryState {
                status: DeliveryStatus::InFlight { since: now },
                attempts: state.attempts.saturating_add(1),
                last_error: state.last_error.clone(),
            })
        }
        (DeliveryStatus::InFlight { .. }, DeliveryEvent::Succeeded { now }) => {
            Ok(next(DeliveryStatus::Delivered { at: now }))
        }
        (
            DeliveryStatus::InFlight { .. },
            DeliveryEvent::Failed {
                now,
                failure,
                random,
            },
        ) => Ok(after_failure(state, now, &failure, random, policy)),
        (DeliveryStatus::InFlight { since }, DeliveryEvent::Abandoned { now, random }) => {
            let failure = Failure::Transient {
                reason: format!("the attempt started at {since} never reported back"),
                retry_after: None,
            };
            Ok(after_failure(state, now, &failure, random, policy))
        }
        (
            DeliveryStatus::Pending
            | DeliveryStatus::Scheduled { .. }
            | DeliveryStatus::InFlight { .. }
            | DeliveryStatus::RetryWait { .. },
            DeliveryEvent::Refused { now, reason },
        ) => Ok(next(DeliveryStatus::Refused { reason, at: now })),
        (DeliveryStatus::Dead { .. }, DeliveryEvent::Replay) => Ok(DeliveryState {
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: state.last_error.clone(),
        }),
        (DeliveryStatus::Dead { .. }, DeliveryEvent::Discard { now }) => {
            Ok(next(DeliveryStatus::Discarded { at: now }))
        }
        (
            DeliveryStatus::Pending
            | DeliveryStatus::Scheduled { .. }
            | DeliveryStatus::RetryWait { .. },
            DeliveryEvent::Supersede { now, by },
        ) => Ok(next(DeliveryStatus::Superseded { by, at: now })),
        (_, event) => Err(invalid(&event)),
    }
}

fn after_failure(
    state: &DeliveryState,
    now: OffsetDateTime,
    failure: &Failure,
    random: u64,
    policy: &RetryPolicy,
) -> DeliveryState {
    let status = match decide(policy, state.attempts, failure, random) {
        RetryDecision::RetryAfter(delay) => DeliveryStatus::RetryWait { until: now + delay },
        RetryDecision::DeadLetter(reason) => DeliveryStatus::Dead {
            reason: reason.to_string(),
            at: now,
        },
    };
    DeliveryState {
        status,
        attempts: state.attempts,
        last_error: Some(failure.reason().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(3600),
        max_attempts: 3,
    };
    const T0: OffsetDateTime = datetime!(2025-06-01 09:00 +09:00);

    fn at(minutes: i64) -> OffsetDateTime {
        T0 + time::Duration::minutes(minutes)
    }

    fn down(random: u64) -> DeliveryEvent {
        DeliveryEvent::Failed {
            now: at(0),
            failure: Failure::Transient {
                reason: "connection refused".to_owned(),
                retry_after: None,
            },
            random,
        }
    }

    fn run(events: Vec<DeliveryEvent>) -> Result<DeliveryState, RoutingError> {
        events
            .into_iter()
            .try_fold(DeliveryState::new(), |s, e| transition(&s, e, &POLICY))
    }

    #[test]
    fn happy_path_delivers_on_the_first_attempt() {
        let state = run(vec![
            DeliveryEvent::Start { now: at(0) },
            DeliveryEvent::Succeeded { now: at(1) },
        ])
        .expect("valid");
        assert_eq!(state.status, DeliveryStatus::Delivered { at: at(1) });
        assert_eq!(state.attempts, 1);
        assert!(state.is_final());
    }

    #[test]
    fn a_recipient_down_then_back_is_retried_and_delivered_once() {
        // Attempt 1 fails: ceiling 60 s, jitter 30 000 ms → wait until T0 + 30 s.
        let s = run(vec![DeliveryEvent::Start { now: at(0) }, down(30_000)]).expect("valid");
        let until = T0 + Duration::from_secs(30);
        assert_eq!(s.status, DeliveryStatus::RetryWait { until });
        assert_eq!(s.last_error.as_deref(), Some("connection refused"));
        assert!(!s.is_due(at(0)));
        assert!(s.is_due(until));
        // Starting early is refused…
        let early = transition(&s, DeliveryEvent::Start { now: at(0) }, &POLICY);
        assert!(matches!(early, Err(RoutingError::NotDue { until: u }) if u == until));
        // …on time, attempt 2 succeeds.
        let s = transition(&s, DeliveryEvent::Start { now: at(1) }, &POLICY).expect("due");
        assert_eq!(s.attempts, 2);
        let s = transition(&s, DeliveryEvent::Succeeded { now: at(2) }, &POLICY).expect("ok");
        assert_eq!(s.status, DeliveryStatus::Delivered { at: at(2) });
        // A duplicate success report is rejected rather than delivered twice.
        let again = transition(&s, DeliveryEvent::Succeeded { now: at(3) }, &POLICY);
        assert!(matches!(
            again,
            Err(RoutingError::Transition {
                from: "delivered",
                event: "succeeded"
            })
        ));
    }

    #[test]
    fn exhausted_attempts_dead_letter_and_replay_resets_the_count() {
        let mut events = Vec::new();
        for minute in [0, 10, 20] {
            events.push(DeliveryEvent::Start { now: at(minute) });
            events.push(down(0));
        }
        let dead = run(events).expect("valid");
        assert_eq!(
            dead.status,
            DeliveryStatus::Dead {
                reason: "gave up after 3 attempts; last failure: connection refused".to_owned(),
                at: at(0)
            }
        );
        assert!(dead.is_final());
        let replayed = transition(&dead, DeliveryEvent::Replay, &POLICY).expect("replay");
        assert_eq!(replayed.status, DeliveryStatus::Pending);
        assert_eq!(replayed.attempts, 0);
        let discarded =
            transition(&dead, DeliveryEvent::Discard { now: at(30) }, &POLICY).expect("discard");
        assert_eq!(discarded.status, DeliveryStatus::Discarded { at: at(30) });
    }

    #[test]
    fn an_abandoned_attempt_counts_so_a_poison_message_ends_dead() {
        let mut events = Vec::new();
        for minute in [0, 10, 20] {
            events.push(DeliveryEvent::Start { now: at(minute) });
            events.push(DeliveryEvent::Abandoned {
                now: at(minute + 5),
                random: 0,
            });
        }
        let state = run(events).expect("valid");
        assert_eq!(state.status.code(), "dead");
        assert_eq!(state.attempts, 3);
        assert!(
            state
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("never reported back")),
            "{state:?}"
        );
    }

    #[test]
    fn a_permanent_failure_is_dead_at_once() {
        let state = run(vec![
            DeliveryEvent::Start { now: at(0) },
            DeliveryEvent::Failed {
                now: at(1),
                failure: Failure::Permanent {
                    reason: "HTTP 404 unknown endpoint".to_owned(),
                },
                random: 0,
            },
        ])
        .expect("valid");
        assert_eq!(
            state.status,
            DeliveryStatus::Dead {
                reason: "permanent failure: HTTP 404 unknown endpoint".to_owned(),
                at: at(1)
            }
        );
    }

    #[test]
    fn a_refusal_while_queued_is_final_and_cannot_be_replayed() {
        for prefix in [
            vec![],
            vec![DeliveryEvent::Start { now: at(0) }],
            vec![DeliveryEvent::Start { now: at(0) }, down(0)],
        ] {
            let before = run(prefix).expect("valid");
            let refused = transition(
                &before,
                DeliveryEvent::Refused {
                    now: at(5),
                    reason: "consent withdrawn".to_owned(),
                },
                &POLICY,
            )
            .expect("refusable");
            assert_eq!(refused.status.code(), "refused", "{before:?}");
            assert!(!refused.is_due(at(100)));
            assert!(transition(&refused, DeliveryEvent::Replay, &POLICY).is_err());
            assert!(transition(&refused, DeliveryEvent::Start { now: at(100) }, &POLICY).is_err());
        }
    }

    #[test]
    fn a_scheduled_delivery_does_not_start_before_its_day() {
        let due = at(60 * 24);
        let scheduled = DeliveryState::scheduled(due);
        assert_eq!(scheduled.status.code(), "scheduled");
        assert!(!scheduled.is_due(at(0)));
        assert!(!scheduled.is_due(due - time::Duration::seconds(1)));
        assert!(scheduled.is_due(due));
        let early = transition(&scheduled, DeliveryEvent::Start { now: at(0) }, &POLICY);
        assert!(matches!(early, Err(RoutingError::NotDue { until }) if until == due));
        let started =
            transition(&scheduled, DeliveryEvent::Start { now: due }, &POLICY).expect("due");
        assert_eq!(started.status, DeliveryStatus::InFlight { since: due });
        assert_eq!(started.attempts, 1);
        let refused = transition(
            &scheduled,
            DeliveryEvent::Refused {
                now: at(0),
                reason: "consent withdrawn".to_owned(),
            },
            &POLICY,
        )
        .expect("refusable while waiting");
        assert_eq!(refused.status.code(), "refused");
        assert!(transition(&scheduled, DeliveryEvent::Succeeded { now: due }, &POLICY).is_err());
    }

    #[test]
    fn a_waiting_delivery_is_superseded_and_a_started_one_is_not() {
        let by = || "Claim/b1/_history/2".to_owned();
        let supersede = |state: &DeliveryState| {
            transition(
                state,
                DeliveryEvent::Supersede {
                    now: at(5),
                    by: by(),
                },
                &POLICY,
            )
        };
        let retry_wait = run(vec![DeliveryEvent::Start { now: at(0) }, down(1)]).expect("valid");
        assert_eq!(retry_wait.status.code(), "retry-wait");
        for waiting in [
            DeliveryState::new(),
            DeliveryState::scheduled(at(100)),
            retry_wait,
        ] {
            assert!(waiting.is_waiting());
            let superseded = supersede(&waiting).expect("a waiting delivery is superseded");
            assert_eq!(
                superseded.status,
                DeliveryStatus::Superseded {
                    by: by(),
                    at: at(5)
                }
            );
            assert_eq!(superseded.status.code(), "superseded");
            assert!(superseded.is_final() && !superseded.is_waiting());
            assert!(!superseded.is_due(at(1000)));
        }
        let in_flight = run(vec![DeliveryEvent::Start { now: at(0) }]).expect("valid");
        let delivered = run(vec![
            DeliveryEvent::Start { now: at(0) },
            DeliveryEvent::Succeeded { now: at(1) },
        ])
        .expect("valid");
        for started in [in_flight, delivered] {
            assert!(!started.is_waiting());
            assert!(matches!(
                supersede(&started),
                Err(RoutingError::Transition {
                    event: "supersede",
                    ..
                })
            ));
        }
    }

    #[test]
    fn events_out_of_order_are_rejected() {
        let pending = DeliveryState::new();
        let cases = [
            (
                DeliveryEvent::Succeeded { now: at(0) },
                "pending",
                "succeeded",
            ),
            (down(0), "pending", "failed"),
            (DeliveryEvent::Replay, "pending", "replay"),
            (DeliveryEvent::Discard { now: at(0) }, "pending", "discard"),
            (
                DeliveryEvent::Abandoned {
                    now: at(0),
                    random: 0,
                },
                "pending",
                "abandoned",
            ),
        ];
        for (event, from, name) in cases {
            let err = transition(&pending, event, &POLICY).expect_err(name);
            assert!(
                matches!(err, RoutingError::Transition { from: f, event: e } if f == from && e == name),
                "{err}"
            );
        }
        let in_flight = run(vec![DeliveryEvent::Start { now: at(0) }]).expect("valid");
        assert!(transition(&in_flight, DeliveryEvent::Start { now: at(1) }, &POLICY).is_err());
    }
}
