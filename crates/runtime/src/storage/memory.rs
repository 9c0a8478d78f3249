//! The in-memory storage backend: the twin of SQLite for tests, with failure injection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Backend, BackendFuture, ListOptions, ObjectWrites, StorageError, WriteOp};
use crate::address::Address;

#[derive(Default)]
struct Data {
    kv: HashMap<Address, BTreeMap<String, Vec<u8>>>,
    alarms: HashMap<Address, i64>,
}

/// Keeps everything in a map; `fail_commits(true)` makes every commit fail until reset.
#[derive(Default)]
pub struct MemoryBackend {
    data: Mutex<Data>,
    fail_commits: AtomicBool,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes commits fail (`true`) or succeed again (`false`).
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }
}

impl MemoryBackend {
    fn get_now(&self, address: &Address, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let data = self.data.lock().expect("memory backend poisoned");
        Ok(data.kv.get(address).and_then(|m| m.get(key)).cloned())
    }

    fn list_now(&self, address: &Address, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let data = self.data.lock().expect("memory backend poisoned");
        let Some(map) = data.kv.get(address) else {
            return Ok(Vec::new());
        };
        let selected = map.iter().filter(|(k, _)| options.contains(k));
        let limit = options.limit.unwrap_or(usize::MAX);
        let clone = |(k, v): (&String, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if options.reverse {
            selected.rev().take(limit).map(clone).collect()
        } else {
            selected.take(limit).map(clone).collect()
        })
    }

    fn commit_now(&self, batch: &[ObjectWrites]) -> Result<(), StorageError> {
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(StorageError::Backend("injected commit failure".into()));
        }
        let mut data = self.data.lock().expect("memory backend poisoned");
        for writes in batch {
            for op in &writes.ops {
                match op {
                    WriteOp::Put(k, v) => {
                        data.kv
                            .entry(writes.address.clone())
                            .or_default()
                            .insert(k.clone(), v.clone());
                    }
                    WriteOp::Delete(k) => {
                        if let Some(m) = data.kv.get_mut(&writes.address) {
                            m.remove(k);
                        }
                    }
                    WriteOp::DeleteAll => {
                        data.kv.remove(&writes.address);
                        data.alarms.remove(&writes.address);
                    }
                    WriteOp::SetAlarm(Some(at)) => {
                        data.alarms.insert(writes.address.clone(), *at);
                    }
                    WriteOp::SetAlarm(None) => {
                        data.alarms.remove(&writes.address);
                    }
                }
            }
        }
        Ok(())
    }

    fn alarms_now(&self) -> Vec<(Address, i64)> {
        let data = self.data.lock().expect("memory backend poisoned");
        data.alarms.iter().map(|(a, t)| (a.clone(), *t)).collect()
    }
}

/// Everything happens at once: the futures are ready when returned.
impl Backend for MemoryBackend {
    fn get(&self, address: &Address, key: &str) -> BackendFuture<Option<Vec<u8>>> {
        Box::pin(std::future::ready(self.get_now(address, key)))
    }

    fn list(&self, address: &Address, options: &ListOptions) -> BackendFuture<Vec<(String, Vec<u8>)>> {
        Box::pin(std::future::ready(self.list_now(address, options)))
    }

    fn commit(&self, batch: Vec<ObjectWrites>) -> BackendFuture<()> {
        Box::pin(std::future::ready(self.commit_now(&batch)))
    }

    fn alarms(&self) -> BackendFuture<Vec<(Address, i64)>> {
        Box::pin(std::future::ready(Ok(self.alarms_now())))
    }
}
