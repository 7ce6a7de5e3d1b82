//! What the simulated editors measure and share while the bench runs: the send-time
//! table, counters, and latency histograms.
//!
//! Every client task keeps its own `LocalStats` and folds it into the shared state
//! every few milliseconds, so the hot path touches no shared cache line per message
//! and takes no lock per sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Histograms record microseconds: loopback deliveries take a few hundred.
const HISTOGRAM_LOWEST_US: u64 = 1;
/// Anything slower than ten minutes is recorded as ten minutes.
const HISTOGRAM_HIGHEST_US: u64 = 600_000_000;
const HISTOGRAM_SIGFIG: u8 = 3;
/// Latency histograms are split so concurrent flushes rarely meet on one lock.
const LATENCY_SHARDS: usize = 16;
/// A client folds its samples in when this many are waiting.
pub const LOCAL_SAMPLES_BEFORE_FLUSH: usize = 512;

pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy hdrhistogram's rules; this cannot fail.
    Histogram::new_with_bounds(HISTOGRAM_LOWEST_US, HISTOGRAM_HIGHEST_US, HISTOGRAM_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// When each edit was scheduled to be sent, written once by its sender and read by
/// every receiver: one slot per (sender, sequence number), no lock.
///
/// A slot holds nanoseconds since the bench's epoch plus one, so 0 means "not sent".
pub struct SendTimes {
    per_sender: Vec<Box<[AtomicU64]>>,
}

impl SendTimes {
    pub fn new(senders: usize, edits_per_sender: usize) -> Self {
        let per_sender = (0..senders)
            .map(|_| (0..edits_per_sender).map(|_| AtomicU64::new(0)).collect())
            .collect();
        Self { per_sender }
    }

    /// Records the scheduled send time of `seq`; false when the table is full.
    pub fn record(&self, sender: usize, seq: u32, scheduled_ns: u64) -> bool {
        match self
            .per_sender
            .get(sender)
            .and_then(|slots| slots.get(seq as usize))
        {
            Some(slot) => {
                slot.store(scheduled_ns + 1, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// The scheduled send time of `seq`, if its sender recorded one.
    pub fn get(&self, sender: usize, seq: u32) -> Option<u64> {
        let value = self
            .per_sender
            .get(sender)?
            .get(seq as usize)?
            .load(Ordering::Acquire);
        value.checked_sub(1)
    }

    /// How many senders the table has slots for: every client of the run.
    pub fn senders(&self) -> usize {
        self.per_sender.len()
    }

    pub fn capacity(&self) -> usize {
        self.per_sender.first().map_or(0, |slots| slots.len())
    }
}

/// Totals over the whole run; messages and bytes count every frame (the report's
/// rates take them at both edges of the measurement window), edits and
/// deliveries only those of verified rooms scheduled inside the measurement
/// window. The `light_` counters are the light rooms' update frames: owed (each
/// one sent counts once for every other editor of its room connected then),
/// received at any time, and received during the window.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub edits_in_window: AtomicU64,
    pub deliveries_in_window: AtomicU64,
    pub errors: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub reconnects: AtomicU64,
    pub open_connections: AtomicU64,
    pub greeted: AtomicU64,
    pub light_updates_owed: AtomicU64,
    pub light_updates_received: AtomicU64,
    pub light_updates_in_window: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The message and byte counters now.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            messages_sent: Self::get(&self.messages_sent),
            messages_received: Self::get(&self.messages_received),
            bytes_sent: Self::get(&self.bytes_sent),
            bytes_received: Self::get(&self.bytes_received),
        }
    }
}

/// Frames and bytes sent and received, at one moment or between two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Traffic {
    /// What was counted between `earlier` and this.
    pub fn since(self, earlier: Traffic) -> Traffic {
        Traffic {
            messages_sent: self.messages_sent.saturating_sub(earlier.messages_sent),
            messages_received: self
                .messages_received
                .saturating_sub(earlier.messages_received),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
        }
    }

    /// Messages sent, messages received, bytes sent, bytes received, each per
    /// second of `wall`.
    pub fn per_second(self, wall: std::time::Duration) -> [f64; 4] {
        let seconds = wall.as_secs_f64().max(1e-9);
        [
            self.messages_sent,
            self.messages_received,
            self.bytes_sent,
            self.bytes_received,
        ]
        .map(|count| count as f64 / seconds)
    }
}

struct LatencyShard {
    /// Every sample of the run.
    total: Histogram<u64>,
    /// Samples since the progress display last looked.
    recent: Histogram<u64>,
}

/// Latency histograms, sharded by client.
pub struct Latencies {
    shards: Box<[Mutex<LatencyShard>]>,
}

impl Default for Latencies {
    fn default() -> Self {
        let shards = (0..LATENCY_SHARDS)
            .map(|_| {
                Mutex::new(LatencyShard {
                    total: new_histogram(),
                    recent: new_histogram(),
                })
            })
            .collect();
        Self { shards }
    }
}

impl Latencies {
    fn shard(&self, client: usize) -> MutexGuard<'_, LatencyShard> {
        // A panic elsewhere cannot leave a histogram half-written in a way that
        // matters for a report; keep measuring.
        self.shards[client % self.shards.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, client: usize, samples_us: &[u64]) {
        let mut shard = self.shard(client);
        for &sample in samples_us {
            shard.total.saturating_record(sample);
            shard.recent.saturating_record(sample);
        }
    }

    /// Every sample so far.
    pub fn total(&self) -> Histogram<u64> {
        let mut merged = new_histogram();
        for index in 0..self.shards.len() {
            // Same bounds everywhere, so adding cannot fail.
            let _ = merged.add(&self.shard(index).total);
        }
        merged
    }

    /// Samples since the last call (for the live p99).
    pub fn take_recent(&self) -> Histogram<u64> {
        let mut merged = new_histogram();
        for index in 0..self.shards.len() {
            let mut shard = self.shard(index);
            let _ = merged.add(&shard.recent);
            shard.recent.reset();
        }
        merged
    }
}

/// The window whose edits count: scheduled at or after `start_ns` and before
/// `end_ns`, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    pub fn contains(&self, ns: u64) -> bool {
        ns >= self.start_ns && ns < self.end_ns
    }
}

/// Everything the client tasks share.
pub struct Shared {
    pub epoch: Instant,
    pub window: Window,
    pub send_times: SendTimes,
    pub counters: Counters,
    pub latencies: Latencies,
    /// Handshake times; one sample per connection, so one lock is plenty.
    pub connect_times: Mutex<Histogram<u64>>,
    /// Why the first failed connection attempt failed, to explain a run in which
    /// nobody connected (a refused token, a wrong path).
    pub first_connect_error: std::sync::OnceLock<String>,
}

impl Shared {
    pub fn new(epoch: Instant, window: Window, send_times: SendTimes) -> Self {
        Self {
            epoch,
            window,
            send_times,
            counters: Counters::default(),
            latencies: Latencies::default(),
            connect_times: Mutex::new(new_histogram()),
            first_connect_error: std::sync::OnceLock::new(),
        }
    }

    /// Keeps the first connection failure's reason; later ones add nothing new.
    pub fn note_connect_error(&self, reason: impl FnOnce() -> String) {
        if self.first_connect_error.get().is_none() {
            let _ = self.first_connect_error.set(reason());
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn record_connect_time(&self, micros: u64) {
        self.connect_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .saturating_record(micros.max(1));
    }

    pub fn connect_histogram(&self) -> Histogram<u64> {
        self.connect_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// One client's measurements since its last flush.
#[derive(Debug, Default)]
pub struct LocalStats {
    pub latencies_us: Vec<u64>,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub edits_in_window: u64,
    pub deliveries_in_window: u64,
    pub errors: u64,
    pub light_updates_owed: u64,
    pub light_updates_received: u64,
    pub light_updates_in_window: u64,
}

impl LocalStats {
    pub fn wants_flush(&self) -> bool {
        self.latencies_us.len() >= LOCAL_SAMPLES_BEFORE_FLUSH
    }

    /// Folds these numbers into `shared` and starts again from zero.
    pub fn flush(&mut self, shared: &Shared, client: usize) {
        if !self.latencies_us.is_empty() {
            shared.latencies.record(client, &self.latencies_us);
            self.latencies_us.clear();
        }
        let counters = &shared.counters;
        for (counter, value) in [
            (&counters.messages_sent, &mut self.messages_sent),
            (&counters.messages_received, &mut self.messages_received),
            (&counters.bytes_sent, &mut self.bytes_sent),
            (&counters.bytes_received, &mut self.bytes_received),
            (&counters.edits_in_window, &mut self.edits_in_window),
            (
                &counters.deliveries_in_window,
                &mut self.deliveries_in_window,
            ),
            (&counters.errors, &mut self.errors),
            (&counters.light_updates_owed, &mut self.light_updates_owed),
            (
                &counters.light_updates_received,
                &mut self.light_updates_received,
            ),
            (
                &counters.light_updates_in_window,
                &mut self.light_updates_in_window,
            ),
        ] {
            if *value > 0 {
                counter.fetch_add(*value, Ordering::Relaxed);
                *value = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_times_distinguish_unsent_from_time_zero() {
        let table = SendTimes::new(2, 4);
        assert_eq!(table.get(1, 2), None);
        assert!(table.record(1, 2, 0));
        assert_eq!(table.get(1, 2), Some(0));
        assert!(!table.record(1, 4, 5), "past capacity");
        assert_eq!(table.get(5, 0), None);
    }

    #[test]
    fn flushed_samples_reach_both_histograms_once() {
        let window = Window {
            start_ns: 0,
            end_ns: u64::MAX,
        };
        let shared = Shared::new(Instant::now(), window, SendTimes::new(1, 1));
        let mut local = LocalStats {
            latencies_us: vec![100, 200, 300],
            deliveries_in_window: 3,
            ..LocalStats::default()
        };
        local.flush(&shared, 5);
        local.flush(&shared, 5);
        assert_eq!(shared.latencies.total().len(), 3);
        assert_eq!(shared.latencies.take_recent().len(), 3);
        assert_eq!(shared.latencies.take_recent().len(), 0);
        assert_eq!(Counters::get(&shared.counters.deliveries_in_window), 3);
    }

    #[test]
    fn rates_are_taken_between_two_moments() {
        let counters = Counters::default();
        counters.messages_sent.fetch_add(100, Ordering::Relaxed);
        let start = counters.traffic();
        counters.messages_sent.fetch_add(40, Ordering::Relaxed);
        counters.bytes_received.fetch_add(2000, Ordering::Relaxed);
        let window = counters.traffic().since(start);
        assert_eq!(
            window,
            Traffic {
                messages_sent: 40,
                messages_received: 0,
                bytes_sent: 0,
                bytes_received: 2000,
            }
        );
        assert_eq!(
            window.per_second(std::time::Duration::from_secs(2)),
            [20.0, 0.0, 0.0, 1000.0]
        );
    }
}
