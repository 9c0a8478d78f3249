//! The tag debounce: a uid presented again within the window after its last accepted
//! presentation is the same scan, whatever other tags came in between.
//!
//! The seed compared only with the last uid, so two tags held alternately both scanned again
//! and again; here every uid has its own window.

use std::collections::HashMap;

/// Each uid's last accepted presentation.
#[derive(Debug)]
pub struct Debounce {
    window_ms: i64,
    accepted: HashMap<String, i64>,
}

impl Debounce {
    pub fn new(window_ms: i64) -> Self {
        Debounce {
            window_ms,
            accepted: HashMap::new(),
        }
    }

    /// Whether a presentation of `uid` at `now_ms` is a new scan; if so, it opens the uid's
    /// window. A repeat inside the window does not extend it.
    pub fn accept(&mut self, uid: &str, now_ms: i64) -> bool {
        // Windows that have passed are forgotten, so the map holds only the last few seconds.
        let window = self.window_ms;
        self.accepted.retain(|_, at| now_ms - *at < window);
        if self.accepted.contains_key(uid) {
            return false;
        }
        self.accepted.insert(uid.to_string(), now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_uid_has_its_own_window() {
        let mut d = Debounce::new(3000);
        assert!(d.accept("A", 0));
        assert!(d.accept("B", 100), "another tag is not debounced by A");
        assert!(!d.accept("A", 200), "A again, between B's: still the same scan");
        assert!(!d.accept("A", 2999));
        assert!(
            d.accept("A", 3000),
            "the window counts from the accepted scan, not the repeats"
        );
        assert!(!d.accept("B", 3099));
        assert!(d.accept("B", 3100));
        assert_eq!(d.accepted.len(), 2);
        assert!(d.accept("C", 10_000));
        assert_eq!(d.accepted.len(), 1, "passed windows are forgotten");
    }
}
