//! The scenarios of `switchboard bench`, one module each. `fanout` holds the publish/subscribe
//! engine that `ramp` reuses step by step.

pub mod chat;
pub mod devices;
pub mod durable;
pub mod fanout;
pub mod floor;
pub mod idle;
pub mod ramp;
pub mod rooms;
pub mod socketio;
pub mod wake;

use serde_json::Value;

/// A prefix for object names that no earlier run used, so every run starts from fresh objects.
pub(crate) fn run_id(scenario: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("bench-{scenario}-{:x}-{:x}", nanos, std::process::id())
}

/// `into` with every field of `from` added (both JSON objects).
pub(crate) fn merge(mut into: Value, from: Value) -> Value {
    if let (Some(into_map), Value::Object(from_map)) = (into.as_object_mut(), from) {
        into_map.extend(from_map);
    }
    into
}

/// `n / d`, or `None` when `d` is not positive.
pub(crate) fn per(n: f64, d: Option<f64>) -> Option<f64> {
    d.filter(|d| *d > 0.0).map(|d| crate::target::round3(n / d))
}

/// A small xorshift generator for shuffling: the order only needs to look random to the server.
pub(crate) struct Shuffle(u64);

impl Shuffle {
    pub(crate) fn seeded() -> Shuffle {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Shuffle(nanos | 1)
    }

    /// A generator of its own for the `i`-th of many (readers, clients).
    pub(crate) fn seeded_with(i: u64) -> Shuffle {
        let mut s = Shuffle::seeded();
        s.0 ^= (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        s.0 |= 1;
        s
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher–Yates.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shuffle_permutes() {
        let mut v: Vec<u32> = (0..100).collect();
        Shuffle::seeded().shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn helpers() {
        assert_eq!(merge(json!({"a": 1}), json!({"b": 2})), json!({"a": 1, "b": 2}));
        assert_eq!(per(10.0, Some(4.0)), Some(2.5));
        assert_eq!(per(10.0, Some(0.0)), None);
        assert_ne!(run_id("x"), "");
    }
}
