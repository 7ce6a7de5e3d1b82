//! The last 15 minutes of the server, one sample per second, for the dashboard's
//! charts (`GET /api/metrics/history`), and when each room last saw activity.
//!
//! One sampler task per server fills both (`run_sampler`); a request only copies
//! what it kept, so ten open dashboards cost ten copies, not ten samplers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::registry::Registry;
use super::room::{ActivityMark, Room};
use crate::api::MetricsSample;

/// Samples kept: 15 minutes at one per second.
pub const HISTORY_CAPACITY: usize = 900;
/// Time between samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Kept inside `Metrics`, so everything that can reach the figures can reach
/// their history.
#[derive(Default)]
pub struct History {
    /// `std::sync::Mutex`: one push a second and one copy per request, never
    /// held across an await.
    samples: Mutex<VecDeque<MetricsSample>>,
    /// `std::sync::Mutex`: rewritten once a second by the sampler, read by room
    /// listings; never held across an await.
    activity: Mutex<HashMap<String, RoomActivity>>,
}

struct RoomActivity {
    mark: ActivityMark,
    at: DateTime<Utc>,
}

impl History {
    pub fn push(&self, sample: MetricsSample) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if samples.len() == HISTORY_CAPACITY {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Samples newer than `after_ms` (all of them without it), oldest first.
    pub fn since(&self, after_ms: Option<i64>) -> Vec<MetricsSample> {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let after = after_ms.unwrap_or(i64::MIN);
        let first_new = samples.partition_point(|sample| sample.timestamp_ms <= after);
        samples.range(first_new..).cloned().collect()
    }

    /// When `room_id`'s document last changed or someone came or went, to the
    /// second the sampler noticed it (ISO-8601).
    pub fn last_activity(&self, room_id: &str) -> Option<String> {
        let activity = self
            .activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        activity
            .get(room_id)
            .map(|room| room.at.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    /// Compares each room with what was seen a second ago; forgets unloaded rooms.
    fn observe_rooms(&self, rooms: &[Room], now: DateTime<Utc>) {
        // Marks are taken before locking the map, so no room lock is ever taken
        // while holding it.
        let marks: Vec<(&str, ActivityMark)> = rooms
            .iter()
            .map(|room| (room.id(), room.activity_mark()))
            .collect();
        let mut activity = self
            .activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let loaded: HashSet<&str> = marks.iter().map(|(room_id, _)| *room_id).collect();
        activity.retain(|id, _| loaded.contains(id.as_str()));
        for (room_id, mark) in marks {
            match activity.get_mut(room_id) {
                Some(seen) if seen.mark == mark => {}
                Some(seen) => {
                    seen.mark = mark;
                    seen.at = now;
                }
                None => {
                    activity.insert(room_id.to_owned(), RoomActivity { mark, at: now });
                }
            }
        }
    }
}

/// Takes one sample per second until `shutdown`.
pub async fn run_sampler(metrics: Metrics, registry: Registry, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(SAMPLE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let counters = metrics.counters();
    let mut last_messages = counters.total_messages.load(Ordering::Relaxed);
    let mut last_deliveries = counters.messages_delivered.load(Ordering::Relaxed);
    // The first tick fires at once; it only starts the first second. Latencies
    // recorded so far belong to it (the messages counted in it are), so they are
    // kept, not discarded.
    interval.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let messages = counters.total_messages.load(Ordering::Relaxed);
        let deliveries = counters.messages_delivered.load(Ordering::Relaxed);
        let latency = metrics.take_second_latency();
        let rooms = registry.loaded_rooms();
        let now = Utc::now();
        metrics.history().observe_rooms(&rooms, now);
        metrics.history().push(MetricsSample {
            timestamp_ms: now.timestamp_millis(),
            messages: messages.saturating_sub(last_messages),
            deliveries: deliveries.saturating_sub(last_deliveries),
            p50_latency_ms: latency.p50_ms,
            p99_latency_ms: latency.p99_ms,
            connections: counters.active_connections.load(Ordering::Relaxed),
            rooms: rooms.len() as u64,
        });
        last_messages = messages;
        last_deliveries = deliveries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(timestamp_ms: i64) -> MetricsSample {
        MetricsSample {
            timestamp_ms,
            messages: 1,
            deliveries: 2,
            p50_latency_ms: 0.1,
            p99_latency_ms: 0.2,
            connections: 3,
            rooms: 1,
        }
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes_and_answers_what_is_new() {
        let history = History::default();
        for second in 0..HISTORY_CAPACITY as i64 + 10 {
            history.push(sample(second * 1000));
        }
        let all = history.since(None);
        assert_eq!(all.len(), HISTORY_CAPACITY);
        assert_eq!(all[0].timestamp_ms, 10_000);
        let newest = all[HISTORY_CAPACITY - 1].timestamp_ms;
        let new = history.since(Some(newest - 2000));
        assert_eq!(
            new.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            vec![newest - 1000, newest]
        );
        assert!(history.since(Some(newest)).is_empty());
    }
}
