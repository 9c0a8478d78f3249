//! How many new objects one origin (a client address) may create per minute: the bound that
//! keeps an unauthenticated client from filling the disk with objects of made-up names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Length of a counting window.
const WINDOW_MS: i64 = 60_000;

/// Creations per origin in the current minute.
pub(crate) struct Creations {
    per_minute: usize,
    window: Mutex<(i64, HashMap<IpAddr, usize>)>,
}

impl Creations {
    pub(crate) fn new(per_minute: usize) -> Self {
        Creations {
            per_minute,
            window: Mutex::new((i64::MIN, HashMap::new())),
        }
    }

    /// Counts one creation for `origin` at `now_ms`; false when it has had its minute's share.
    pub(crate) fn admit(&self, origin: IpAddr, now_ms: i64) -> bool {
        let mut window = self.window.lock().expect("creation window lock");
        let (started, counts) = &mut *window;
        if now_ms.saturating_sub(*started) >= WINDOW_MS {
            *started = now_ms;
            counts.clear();
        }
        let count = counts.entry(origin).or_insert(0);
        if *count >= self.per_minute {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each origin has its own share; a new minute gives a new one.
    #[test]
    fn shares_per_origin_and_minute() {
        let c = Creations::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(c.admit(a, 0) && c.admit(a, 1));
        assert!(!c.admit(a, 2));
        assert!(c.admit(b, 3));
        assert!(!c.admit(a, 59_999));
        assert!(c.admit(a, 60_000));
    }
}
