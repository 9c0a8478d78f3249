//! The alarm scheduler: every object's one alarm, in time order, fired at least once.
//!
//! Alarms are stored with the object's writes, loaded here at startup, and kept here as the
//! object sets or deletes them. A fired alarm stays recorded until the object's handler
//! succeeds (and deletes or replaces it), so a crash in between fires it again after restart.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, Weak};

use tokio::sync::Notify;

use crate::address::Address;
use crate::registry::{Inner, Runtime};

#[derive(Default)]
struct Schedule {
    /// Alarms not yet fired, by time.
    due: BTreeSet<(i64, Address)>,
    /// Every object's current alarm, fired or not.
    by_address: HashMap<Address, i64>,
}

#[derive(Default)]
pub(crate) struct Alarms {
    schedule: Mutex<Schedule>,
    changed: Notify,
}

impl Alarms {
    pub(crate) fn set(&self, address: &Address, at: Option<i64>) {
        let mut s = self.schedule.lock().expect("alarm schedule poisoned");
        if let Some(old) = s.by_address.remove(address) {
            s.due.remove(&(old, address.clone()));
        }
        if let Some(at) = at {
            s.by_address.insert(address.clone(), at);
            s.due.insert((at, address.clone()));
        }
        drop(s);
        self.changed.notify_one();
    }

    /// Moves a fired alarm to `at` if nobody set another meanwhile: for a node that looks
    /// again later at an alarm another node owns.
    pub(crate) fn set_unless_changed(&self, address: &Address, at: i64) {
        let mut s = self.schedule.lock().expect("alarm schedule poisoned");
        let Some(current) = s.by_address.get(address).copied() else {
            return;
        };
        if s.due.contains(&(current, address.clone())) {
            return;
        }
        s.by_address.insert(address.clone(), at);
        s.due.insert((at, address.clone()));
        drop(s);
        self.changed.notify_one();
    }

    pub(crate) fn get(&self, address: &Address) -> Option<i64> {
        self.schedule
            .lock()
            .expect("alarm schedule poisoned")
            .by_address
            .get(address)
            .copied()
    }

    /// Takes the alarms due at `now`; returns them and when the next one is due.
    fn take_due(&self, now: i64) -> (Vec<Address>, Option<i64>) {
        let mut s = self.schedule.lock().expect("alarm schedule poisoned");
        let mut fired = Vec::new();
        while let Some((at, _)) = s.due.first() {
            if *at > now {
                break;
            }
            let (_, address) = s.due.pop_first().expect("checked above");
            fired.push(address);
        }
        (fired, s.due.first().map(|(at, _)| *at))
    }
}

/// Fires alarms as they come due, until the runtime shuts down.
pub(crate) async fn run(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (alarms, shutdown, clock) = (strong.alarms.clone(), strong.shutdown.clone(), strong.clock);
        let rt = Runtime { inner: strong };
        let (fired, next) = alarms.take_due(clock.now_ms());
        for address in &fired {
            rt.fire_alarm(address);
        }
        drop(rt);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = alarms.changed.notified() => {}
            _ = sleep => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
