//! Latency recording: HDR histograms in microseconds, sharded so that thousands of subscriber
//! tasks can record at once without fighting over one lock.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram holds (60 s, in µs); larger values are recorded as this.
const MAX_US: u64 = 60_000_000;
/// Shards of a [`Recorder`]: enough that two cores rarely meet on one lock.
const SHARDS: usize = 16;

/// A new histogram of microseconds, 1 µs to 60 s, three significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static bounds are valid")
}

/// Histograms many tasks record into; each task uses the shard of its own index.
pub struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }
}

impl Recorder {
    /// Records `us` microseconds from the task numbered `task`.
    pub fn record(&self, task: usize, us: u64) {
        let mut shard = self.shards[task % SHARDS].lock().expect("histogram lock poisoned");
        shard.saturating_record(us.max(1));
    }

    /// Everything recorded so far, merged; the shards start empty again.
    pub fn take(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let mut shard = shard.lock().expect("histogram lock poisoned");
            all.add(&*shard).expect("same bounds");
            shard.reset();
        }
        all
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// How many latencies were recorded.
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_and_reset() {
        let r = Recorder::default();
        for i in 0..1000u64 {
            r.record(i as usize, i + 1);
        }
        r.record(3, u64::MAX);
        let h = r.take();
        assert_eq!(h.len(), 1001);
        let s = Summary::of(&h);
        assert!((0.49..0.51).contains(&s.p50_ms), "{s:?}");
        assert!((59_000.0..61_000.0).contains(&s.max_ms), "saturates at 60 s: {s:?}");
        assert!(r.take().is_empty());
        assert_eq!(Summary::of(&r.take()), Summary::default());
    }
}
