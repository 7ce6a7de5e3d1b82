//! The run second by second (deliveries, messages received and latency in each
//! second) and the whole-run distributions, which the HTML report plots.
//!
//! Latency samples reach the shared histograms when a client flushes (every 100 ms
//! while typing), so a second's figures are those flushed during it: a sample can
//! land one flush late, never lost or counted twice.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::stats::{new_histogram, Counters};

/// One second of the run (the last one may be shorter).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimelinePoint {
    /// End of the interval, seconds since the bench started.
    pub end_s: f64,
    /// Timed keystrokes delivered per second (those scheduled in the measured window).
    pub deliveries_per_sec: f64,
    /// Every frame the editors received, per second.
    pub messages_received_per_sec: f64,
    /// Fan-out latency of that second's deliveries; `None` when there were none.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// What the report page plots beyond the `Report` itself.
pub struct RunDetail {
    /// Every fan-out latency of the measured window, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Every connection's TCP connect plus WebSocket handshake, in microseconds.
    pub connect_us: Histogram<u64>,
    pub timeline: Vec<TimelinePoint>,
}

/// Folds the samples of each progress tick into whole seconds.
pub struct Timeline {
    epoch: Instant,
    /// Whole seconds since `epoch` of the interval being filled.
    second: u64,
    interval_start: Instant,
    received_at_start: u64,
    current: Histogram<u64>,
    points: Vec<TimelinePoint>,
}

impl Timeline {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            second: 0,
            interval_start: epoch,
            received_at_start: 0,
            current: new_histogram(),
            points: Vec::new(),
        }
    }

    /// Adds the samples flushed since the last tick; closes the second when `now`
    /// has passed it.
    pub fn record(&mut self, now: Instant, recent: &Histogram<u64>, counters: &Counters) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.current.add(recent);
        let second = now.duration_since(self.epoch).as_secs();
        if second > self.second {
            self.close(now, counters);
            self.second = second;
        }
    }

    /// The points so far plus the interval still open.
    pub fn finish(mut self, now: Instant, counters: &Counters) -> Vec<TimelinePoint> {
        if now > self.interval_start {
            self.close(now, counters);
        }
        self.points
    }

    fn close(&mut self, now: Instant, counters: &Counters) {
        let seconds = now.duration_since(self.interval_start).as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let received = Counters::get(&counters.messages_received);
        let ms = |micros: u64| micros as f64 / 1000.0;
        let percentile = |quantile: f64| {
            (!self.current.is_empty()).then(|| ms(self.current.value_at_quantile(quantile)))
        };
        self.points.push(TimelinePoint {
            end_s: now.duration_since(self.epoch).as_secs_f64(),
            deliveries_per_sec: self.current.len() as f64 / seconds,
            messages_received_per_sec: received.saturating_sub(self.received_at_start) as f64
                / seconds,
            p50_ms: percentile(0.50),
            p99_ms: percentile(0.99),
            max_ms: (!self.current.is_empty()).then(|| ms(self.current.max())),
        });
        self.current.reset();
        self.interval_start = now;
        self.received_at_start = received;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn ticks_fold_into_seconds_with_their_own_latencies() {
        let epoch = Instant::now();
        let counters = Counters::default();
        let mut timeline = Timeline::new(epoch);
        let mut samples = new_histogram();
        for micros in [1000, 2000, 3000, 4000] {
            samples.record(micros).unwrap();
        }
        timeline.record(epoch + Duration::from_millis(500), &samples, &counters);
        counters.messages_received.store(10, Ordering::Relaxed);
        timeline.record(
            epoch + Duration::from_millis(1000),
            &new_histogram(),
            &counters,
        );
        let mut slow = new_histogram();
        slow.record(50_000).unwrap();
        timeline.record(epoch + Duration::from_millis(1500), &slow, &counters);
        let points = timeline.finish(epoch + Duration::from_millis(2000), &counters);

        assert_eq!(points.len(), 2);
        assert_eq!(points[0].end_s, 1.0);
        assert_eq!(points[0].deliveries_per_sec, 4.0);
        assert_eq!(points[0].messages_received_per_sec, 10.0);
        assert!((points[0].max_ms.unwrap() - 4.0).abs() < 0.01);
        assert!((points[1].p50_ms.unwrap() - 50.0).abs() < 0.1);
        assert_eq!(points[1].messages_received_per_sec, 0.0);
    }

    #[test]
    fn a_second_without_deliveries_has_no_latency() {
        let epoch = Instant::now();
        let counters = Counters::default();
        let mut timeline = Timeline::new(epoch);
        timeline.record(epoch + Duration::from_secs(1), &new_histogram(), &counters);
        let points = timeline.finish(epoch + Duration::from_secs(1), &counters);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].p99_ms, None);
        assert_eq!(points[0].deliveries_per_sec, 0.0);
    }
}
