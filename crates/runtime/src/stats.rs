//! Counters of one runtime, readable by tests directly and exported as metrics by the server.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Live counters of a runtime. All monotonic except `live_objects`.
#[derive(Default, Debug)]
pub struct Stats {
    /// Objects with an in-memory instance now.
    pub live_objects: AtomicU64,
    /// Instances created (first use, and every wake from hibernation).
    pub wakes: AtomicU64,
    /// Instances dropped from memory after being idle.
    pub hibernations: AtomicU64,
    /// Instances discarded because a commit carrying their writes failed.
    pub evictions: AtomicU64,
    /// Frames answered by an auto-response, without waking anything.
    pub auto_responses: AtomicU64,
    /// Alarms delivered.
    pub alarms_fired: AtomicU64,
    /// Storage commits (each carrying many events' writes).
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Events discarded because a hook returned an error.
    pub hook_failures: AtomicU64,
    /// Woken when an object wakes, hibernates or is evicted, a socket leaves an object, an
    /// alarm fires or an effect succeeds or fails: what a test waits on instead of polling. Not on
    /// per-frame paths.
    pub(crate) changed: Notify,
}

/// A point-in-time copy of [`Stats`], plus gauges computed on demand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub live_objects: u64,
    /// Objects whose sockets are open while their instance is not in memory.
    pub hibernated_objects: u64,
    pub sockets: u64,
    pub wakes: u64,
    pub hibernations: u64,
    pub evictions: u64,
    pub auto_responses: u64,
    pub alarms_fired: u64,
    pub commits: u64,
    pub commit_failures: u64,
    pub hook_failures: u64,
    /// Effects waiting to run, in all objects.
    pub outbox_depth: u64,
    /// Age of the oldest waiting effect.
    pub outbox_oldest_age_ms: u64,
    pub effects_succeeded: u64,
    pub effect_attempts_failed: u64,
    /// Topics with subscribers or history.
    pub topics: u64,
}

impl Stats {
    /// Counts one more of `counter` and wakes whoever waits for a change.
    pub(crate) fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn snapshot(&self, hibernated_objects: u64, sockets: u64) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            live_objects: get(&self.live_objects),
            hibernated_objects,
            sockets,
            wakes: get(&self.wakes),
            hibernations: get(&self.hibernations),
            evictions: get(&self.evictions),
            auto_responses: get(&self.auto_responses),
            alarms_fired: get(&self.alarms_fired),
            commits: get(&self.commits),
            commit_failures: get(&self.commit_failures),
            hook_failures: get(&self.hook_failures),
            ..Default::default()
        }
    }
}
