//! Server-wide counters, latency percentiles, the event log and the Prometheus export.
//!
//! Latency is the server's own processing time for one client message: from the
//! frame being read to every resulting message being queued for its recipients. It
//! is kept in HDR histograms over a sliding window of one to two
//! `LATENCY_WINDOW`s (the current histogram plus the previous one).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::history::History;
use crate::api::Event;

/// Histograms rotate this often; percentiles cover the last one to two windows.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(30);
/// `messages_per_sec` averages over this many whole seconds.
const RATE_SECONDS: usize = 10;
/// The event log keeps the newest this many events.
pub const EVENT_LOG_CAPACITY: usize = 1000;

#[derive(Default)]
pub struct Counters {
    pub total_messages: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub error_count: AtomicU64,
    pub reconnect_count: AtomicU64,
    pub active_connections: AtomicU64,
    /// Of `active_connections`, those speaking the binary y-protocols.
    pub active_yjs_connections: AtomicU64,
    pub slow_consumer_disconnects: AtomicU64,
    pub rejected_updates: AtomicU64,
    pub panics_caught: AtomicU64,
}

struct Window {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    rotated_at: Instant,
    /// Latencies since the history sampler last looked (about one second).
    this_second: Histogram<u64>,
    /// Messages per whole second, newest last, with the second they belong to.
    per_second: VecDeque<(u64, u64)>,
}

/// Cheap to clone; all clones share the same figures.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    counters: Counters,
    /// `std::sync::Mutex`: held for one histogram record per message, never awaited.
    window: Mutex<Window>,
    /// `std::sync::Mutex`: pushes and copies of a bounded ring, never awaited.
    events: Mutex<VecDeque<Event>>,
    /// Second-by-second samples and room activity, kept by one sampler task.
    history: History,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 60 s with 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            inner: Arc::new(Inner {
                started: now,
                counters: Counters::default(),
                window: Mutex::new(Window {
                    current: new_histogram(),
                    previous: new_histogram(),
                    rotated_at: now,
                    this_second: new_histogram(),
                    per_second: VecDeque::with_capacity(RATE_SECONDS + 1),
                }),
                events: Mutex::new(VecDeque::with_capacity(EVENT_LOG_CAPACITY)),
                history: History::default(),
            }),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Records one processed client message and how long the server took on it.
    pub fn record_message(&self, took: Duration) {
        self.inner
            .counters
            .total_messages
            .fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let second = now.duration_since(self.inner.started).as_secs();
        let micros = (took.as_micros() as u64).clamp(1, 60_000_000);
        let Ok(mut window) = self.inner.window.lock() else {
            return;
        };
        window.rotate_if_due(now);
        window.current.saturating_record(micros);
        window.this_second.saturating_record(micros);
        match window.per_second.back_mut() {
            Some((at, count)) if *at == second => *count += 1,
            _ => {
                window.per_second.push_back((second, 1));
                while window.per_second.len() > RATE_SECONDS + 1 {
                    window.per_second.pop_front();
                }
            }
        }
    }

    pub fn record_error(&self) {
        self.inner
            .counters
            .error_count
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Messages per second over the last `RATE_SECONDS` whole seconds.
    pub fn messages_per_sec(&self) -> f64 {
        let now_second = self.uptime().as_secs();
        let Ok(window) = self.inner.window.lock() else {
            return 0.0;
        };
        let first = now_second.saturating_sub(RATE_SECONDS as u64);
        let count: u64 = window
            .per_second
            .iter()
            .filter(|(at, _)| *at >= first && *at < now_second)
            .map(|(_, count)| count)
            .sum();
        let seconds = (now_second - first).max(1) as f64;
        count as f64 / seconds
    }

    pub fn latency(&self) -> Latency {
        let Ok(mut window) = self.inner.window.lock() else {
            return Latency::default();
        };
        window.rotate_if_due(Instant::now());
        let mut merged = window.previous.clone();
        // Both histograms share bounds, so adding cannot fail.
        let _ = merged.add(&window.current);
        if merged.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            p50_ms: ms(merged.value_at_quantile(0.50)),
            p95_ms: ms(merged.value_at_quantile(0.95)),
            p99_ms: ms(merged.value_at_quantile(0.99)),
            max_ms: ms(merged.max()),
        }
    }

    /// Median and p99 of the latencies recorded since the last call (zero when
    /// there were none), for the once-a-second history sample. The quantile walks
    /// happen under the lock: tens of microseconds once a second, cheaper than
    /// allocating a fresh histogram to swap in.
    pub fn take_second_latency(&self) -> Latency {
        let Ok(mut window) = self.inner.window.lock() else {
            return Latency::default();
        };
        let second = &mut window.this_second;
        if second.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        let latency = Latency {
            p50_ms: ms(second.value_at_quantile(0.50)),
            p95_ms: ms(second.value_at_quantile(0.95)),
            p99_ms: ms(second.value_at_quantile(0.99)),
            max_ms: ms(second.max()),
        };
        second.reset();
        latency
    }

    pub fn history(&self) -> &History {
        &self.inner.history
    }

    pub fn add_event(&self, kind: &str, room_id: &str, user_id: &str, details: impl Into<String>) {
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: crate::api::timestamp_now(),
            kind: kind.to_owned(),
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
            details: details.into(),
        };
        if let Ok(mut events) = self.inner.events.lock() {
            if events.len() == EVENT_LOG_CAPACITY {
                events.pop_front();
            }
            events.push_back(event);
        }
    }

    /// The newest `limit` events of one room, oldest first.
    pub fn recent_room_events(&self, room_id: &str, limit: usize) -> Vec<Event> {
        let Ok(events) = self.inner.events.lock() else {
            return Vec::new();
        };
        let mut newest: Vec<Event> = events
            .iter()
            .rev()
            .filter(|event| event.room_id == room_id)
            .take(limit)
            .cloned()
            .collect();
        newest.reverse();
        newest
    }

    /// The newest `limit` events, oldest first (the original's order).
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        let Ok(events) = self.inner.events.lock() else {
            return Vec::new();
        };
        let skip = events.len().saturating_sub(limit);
        events.iter().skip(skip).cloned().collect()
    }
}

impl Window {
    fn rotate_if_due(&mut self, now: Instant) {
        let age = now.duration_since(self.rotated_at);
        if age < LATENCY_WINDOW {
            return;
        }
        if age >= LATENCY_WINDOW * 2 {
            // Nothing recent in either: both are stale.
            self.previous.reset();
        } else {
            std::mem::swap(&mut self.previous, &mut self.current);
        }
        self.current.reset();
        self.rotated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_recorded_latencies() {
        let metrics = Metrics::new();
        for micros in 1..=1000u64 {
            metrics.record_message(Duration::from_micros(micros));
        }
        let latency = metrics.latency();
        assert!((latency.p50_ms - 0.5).abs() < 0.01, "{latency:?}");
        assert!((latency.p99_ms - 0.99).abs() < 0.01, "{latency:?}");
        assert!((latency.max_ms - 1.0).abs() < 0.01, "{latency:?}");
        assert_eq!(
            metrics.counters().total_messages.load(Ordering::Relaxed),
            1000
        );
    }

    #[test]
    fn event_log_is_a_bounded_ring() {
        let metrics = Metrics::new();
        for index in 0..EVENT_LOG_CAPACITY + 5 {
            metrics.add_event("join", "room", "user", format!("event {index}"));
        }
        let events = metrics.recent_events(usize::MAX);
        assert_eq!(events.len(), EVENT_LOG_CAPACITY);
        assert_eq!(events[0].details, "event 5");
        assert_eq!(metrics.recent_events(2).len(), 2);
    }
}
