//! Request-rate limits (token buckets from `governor`): one bucket per authenticated client and
//! one per remote address. A refused request gets 429 with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::error::{ApiError, ErrorKind};

pub struct Limits {
    per_client: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limits {
    pub fn new(config: &RateLimitConfig) -> Limits {
        Limits {
            per_client: quota(config.per_client_per_second, config.per_client_burst)
                .map(RateLimiter::keyed),
            per_ip: quota(config.per_ip_per_second, config.per_ip_burst).map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_client(&self, client_id: &str) -> Result<(), ApiError> {
        match &self.per_client {
            Some(limiter) => limiter
                .check_key(&client_id.to_owned())
                .map_err(|not_until| {
                    throttled(
                        not_until.wait_time_from(self.clock.now()),
                        format!("client {client_id} exceeded its request rate"),
                    )
                }),
            None => Ok(()),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        match &self.per_ip {
            Some(limiter) => limiter.check_key(&ip).map_err(|not_until| {
                throttled(
                    not_until.wait_time_from(self.clock.now()),
                    "this address exceeded its request rate".to_owned(),
                )
            }),
            None => Ok(()),
        }
    }

    /// Drop the buckets of clients and addresses that are full again (keeps memory bounded).
    pub fn purge(&self) {
        if let Some(l) = &self.per_client {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

fn throttled(wait: std::time::Duration, message: String) -> ApiError {
    // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut error = ApiError::new(
        ErrorKind::TooManyRequests,
        format!("{message}; retry after {} s", secs.max(1)),
    );
    error.retry_after_secs = Some(secs.max(1));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_bucket_is_refused_with_a_retry_time() {
        let limits = Limits::new(&RateLimitConfig {
            per_client_per_second: 1,
            per_client_burst: 3,
            per_ip_per_second: 0,
            per_ip_burst: 0,
        });
        for _ in 0..3 {
            limits.check_client("clinic-a").expect("within the burst");
        }
        let refused = limits.check_client("clinic-a").expect_err("over the burst");
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.retry_after_secs, Some(1));
        // Buckets are per client, and a zero rate switches the address limit off.
        limits
            .check_client("clinic-b")
            .expect("another client has its own bucket");
        limits
            .check_ip("127.0.0.1".parse().unwrap())
            .expect("no address limit");
    }
}
