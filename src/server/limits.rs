//! Per-connection message rate limiting — a token bucket, plus a tally that tells
//! occasional bursts (refused, connection kept) from sustained abuse (connection
//! closed); time is passed in, so the logic is tested without sleeping — and the
//! connection caps, reserved at the upgrade and released when the connection's
//! reservation is dropped, however its task ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
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

/// Why a connection could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("server is at its limit of {0} connections; retry later")]
    Server(usize),
    #[error("room is at its limit of {0} connections; retry later")]
    Room(usize),
}

/// Open (or opening) WebSocket connections, in total and per room. A connection
/// is counted from its upgrade request until its task ends, so checking and
/// counting are one step and a burst of upgrades cannot pass the caps.
#[derive(Debug)]
pub struct ConnectionCaps {
    max_total: usize,
    max_per_room: usize,
    /// `std::sync::Mutex`: one map update per connect and per disconnect.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    rooms: HashMap<Arc<str>, usize>,
}

impl ConnectionCaps {
    pub fn new(max_total: usize, max_per_room: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_room,
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counting cannot panic midway; a poisoned map is still whole.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one place in total and in `room`, or says which cap is reached.
    pub fn reserve(self: &Arc<Self>, room: &str) -> Result<Reservation, CapError> {
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(CapError::Server(self.max_total));
        }
        let in_room = counts.rooms.get(room).copied().unwrap_or(0);
        if in_room >= self.max_per_room {
            return Err(CapError::Room(self.max_per_room));
        }
        counts.total += 1;
        let room: Arc<str> = match counts.rooms.get_key_value(room) {
            Some((key, _)) => key.clone(),
            None => Arc::from(room),
        };
        counts.rooms.insert(room.clone(), in_room + 1);
        Ok(Reservation {
            caps: self.clone(),
            room,
        })
    }

    /// Connections reserved in total.
    pub fn total(&self) -> usize {
        self.counts().total
    }
}

/// One connection's place under the caps, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    caps: Arc<ConnectionCaps>,
    room: Arc<str>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut counts = self.caps.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.rooms.get_mut(&self.room) {
            *count -= 1;
            if *count == 0 {
                counts.rooms.remove(&self.room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_hold_places_until_dropped() {
        let caps = ConnectionCaps::new(3, 2);
        let a = caps.reserve("r").unwrap();
        let b = caps.reserve("r").unwrap();
        assert_eq!(caps.reserve("r").unwrap_err(), CapError::Room(2));
        let c = caps.reserve("other").unwrap();
        assert_eq!(caps.reserve("third").unwrap_err(), CapError::Server(3));
        drop(a);
        let d = caps.reserve("r").unwrap();
        drop((b, c, d));
        assert_eq!(caps.total(), 0);
        assert!(caps.counts().rooms.is_empty());
    }

    #[test]
    fn racing_reservations_never_pass_the_caps() {
        let caps = ConnectionCaps::new(50, 10);
        let peak = Arc::new(Mutex::new(0));
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let (caps, peak) = (caps.clone(), peak.clone());
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for round in 0..2000 {
                        if let Ok(reservation) = caps.reserve(&format!("room-{}", round % 3)) {
                            held.push(reservation);
                        }
                        let total = caps.total();
                        let mut peak = peak.lock().unwrap();
                        *peak = (*peak).max(total);
                        drop(peak);
                        if (round + thread) % 3 == 0 {
                            held.clear();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(*peak.lock().unwrap() <= 30, "three rooms of at most 10");
        assert_eq!(caps.total(), 0);
    }

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
