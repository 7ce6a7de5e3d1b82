//! Per-connection message rate limiting: a token bucket, plus a tally that tells
//! occasional bursts (refused, connection kept) from sustained abuse (connection
//! closed). Time is passed in, so the logic is tested without sleeping.

use std::time::{Duration, Instant};

/// How long refusals are tallied before the tally starts again.
const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Over the rate: refuse this message, keep the connection.
    Refuse,
    /// Over the rate for long: close the connection.
    Close,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
    refused: u32,
    /// Refusals tolerated within `ABUSE_WINDOW` before closing: as many messages as
    /// the rate allows in a whole window, i.e. sending at twice the rate for 10 s.
    refused_limit: u32,
    window_started: Instant,
}

impl RateLimiter {
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        let burst = f64::from(burst.max(1));
        Self {
            per_sec,
            burst,
            tokens: burst,
            refilled_at: now,
            refused: 0,
            refused_limit: (per_sec * ABUSE_WINDOW.as_secs_f64()) as u32,
            window_started: now,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.refilled_at = now;
        if now.saturating_duration_since(self.window_started) >= ABUSE_WINDOW {
            self.window_started = now;
            self.refused = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        self.refused += 1;
        if self.refused > self.refused_limit {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 5, start);
        for _ in 0..5 {
            assert_eq!(limiter.check(start), Verdict::Accept);
        }
        assert_eq!(limiter.check(start), Verdict::Refuse);
        // 100 ms later one more token has accrued.
        assert_eq!(
            limiter.check(start + Duration::from_millis(100)),
            Verdict::Accept
        );
        assert_eq!(
            limiter.check(start + Duration::from_millis(100)),
            Verdict::Refuse
        );
    }

    #[test]
    fn sustained_abuse_closes_and_steady_use_never_does() {
        let start = Instant::now();
        let mut abuser = RateLimiter::new(10, 10, start);
        let mut verdicts = Vec::new();
        for step in 0..1000 {
            verdicts.push(abuser.check(start + Duration::from_millis(step)));
        }
        assert_eq!(verdicts.last(), Some(&Verdict::Close));

        let mut steady = RateLimiter::new(10, 10, start);
        for step in 0..1000u64 {
            let verdict = steady.check(start + Duration::from_millis(step * 100));
            assert_eq!(verdict, Verdict::Accept, "step {step}");
        }
    }
}
