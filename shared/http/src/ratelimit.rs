//! Token buckets for the `rc_*` limits, per key (user, IP address).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::MatrixError;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets idle this long are full again and can be forgotten.
const FORGET_AFTER_SECS: f64 = 3600.0;

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimiter {
            per_second,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long to wait for one.
    pub fn check(&self, key: &str) -> Result<(), MatrixError> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() < FORGET_AFTER_SECS);
        }
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second * 1000.0).ceil() as u64;
            Err(MatrixError::limit_exceeded(wait.max(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_refill() {
        let limiter = RateLimiter::new(1.0, 2.0);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        let refused = limiter.check("a").expect_err("third in a burst of two");
        assert_eq!(refused.errcode, "M_LIMIT_EXCEEDED");
        assert!(
            refused.extra["retry_after_ms"]
                .as_u64()
                .is_some_and(|ms| ms > 0 && ms <= 1000)
        );
        assert!(
            limiter.check("b").is_ok(),
            "other keys have their own bucket"
        );
        tokio::time::advance(std::time::Duration::from_millis(1100)).await;
        assert!(limiter.check("a").is_ok());
    }
}
