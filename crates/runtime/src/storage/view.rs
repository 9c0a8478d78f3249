//! One object's view of its storage: typed get/put/delete/list/transaction.
//!
//! Writes take effect in the view at once and are submitted, as one ticket per event, when the
//! event ends; the object's next event may run while they commit. Reads see the object's own
//! writes whether or not they are durable yet. Values are JSON-encoded with serde.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ListOptions, StorageError, WriteOp};
use crate::address::Address;
use crate::store::Store;

/// Values this many keys deep are dropped from the view once all its writes are durable.
const VIEW_LIMIT: usize = 1024;

type Value = Option<Arc<[u8]>>;

/// Writes, and the values they leave, as one event or one transaction sees them.
#[derive(Default)]
struct Writes {
    /// Values known: read or written; `None` means known absent.
    view: HashMap<String, Value>,
    /// The writes, in order, not yet submitted.
    ops: Vec<WriteOp>,
}

impl Writes {
    fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = encode(value)?;
        self.view.insert(key.to_string(), Some(Arc::from(bytes.as_slice())));
        self.ops.push(WriteOp::Put(key.to_string(), bytes));
        Ok(())
    }

    fn delete(&mut self, key: &str) {
        self.view.insert(key.to_string(), None);
        self.ops.push(WriteOp::Delete(key.to_string()));
    }
}

/// The storage of one object, as its events see it.
pub struct Storage {
    address: Address,
    store: Arc<Store>,
    /// Values read or written, and this event's writes (submitted when it ends).
    writes: Writes,
    /// A `delete_all` happened whose effect the backend may not show yet: absent keys are absent.
    all_deleted: bool,
    /// Ticket of this object's last submitted writes.
    pub(crate) last_ticket: u64,
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|e| StorageError::Encode(e.to_string()))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Decode {
        key: key.into(),
        message: e.to_string(),
    })
}

impl Storage {
    pub(crate) fn new(address: Address, store: Arc<Store>, last_ticket: u64) -> Self {
        Storage {
            address,
            store,
            writes: Writes::default(),
            all_deleted: false,
            last_ticket,
        }
    }

    /// The value of `key`, or `None`.
    pub async fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, StorageError> {
        match self.get_raw(key).await? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn get_raw(&mut self, key: &str) -> Result<Value, StorageError> {
        if let Some(v) = self.writes.view.get(key) {
            return Ok(v.clone());
        }
        if self.all_deleted {
            return Ok(None);
        }
        // A new instance (after hibernation or a failed event) may read while an earlier one's
        // writes are still committing: let the backend catch up first.
        if self.store.committed() < self.last_ticket {
            self.store.wait_committed(self.last_ticket).await;
        }
        let value = self.store.backend.get(&self.address, key).await?.map(Arc::from);
        self.writes.view.insert(key.to_string(), value.clone());
        Ok(value)
    }

    /// Sets `key` to `value`.
    pub fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), StorageError> {
        self.writes.put(key, value)
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &str) {
        self.writes.delete(key);
    }

    /// Removes every key of this object, and its alarm.
    pub fn delete_all(&mut self) {
        self.writes.view.clear();
        self.all_deleted = true;
        self.writes.ops.push(WriteOp::DeleteAll);
    }

    /// Keys and values selected by `options`, in key order (descending if `reverse`).
    pub async fn list<T: DeserializeOwned>(&mut self, options: ListOptions) -> Result<Vec<(String, T)>, StorageError> {
        // Earlier events' writes may still be committing: let the backend catch up first.
        self.store.wait_committed(self.last_ticket).await;
        let pending = !self.writes.ops.is_empty();
        let query = if pending {
            ListOptions {
                limit: None,
                ..options.clone()
            }
        } else {
            options.clone()
        };
        let rows = self.store.backend.list(&self.address, &query).await?;
        let rows = if pending {
            // Overlay this event's own writes, not yet submitted.
            let mut merged: BTreeMap<String, Vec<u8>> = rows.into_iter().collect();
            for op in &self.writes.ops {
                match op {
                    WriteOp::Put(k, v) if options.contains(k) => {
                        merged.insert(k.clone(), v.clone());
                    }
                    WriteOp::Delete(k) => {
                        merged.remove(k);
                    }
                    WriteOp::DeleteAll => merged.clear(),
                    _ => {}
                }
            }
            let limit = options.limit.unwrap_or(usize::MAX);
            if options.reverse {
                merged.into_iter().rev().take(limit).collect()
            } else {
                merged.into_iter().take(limit).collect()
            }
        } else {
            rows
        };
        rows.into_iter().map(|(k, v)| decode(&k, &v).map(|t| (k, t))).collect()
    }

    /// Starts a transaction: its writes apply together on `commit`, or not at all.
    pub fn transaction(&mut self) -> Transaction<'_> {
        Transaction {
            storage: self,
            writes: Writes::default(),
        }
    }

    /// This event's writes, leaving none.
    pub(crate) fn take_ops(&mut self) -> Vec<WriteOp> {
        std::mem::take(&mut self.writes.ops)
    }

    /// Forgets everything cached, after the object's writes were lost.
    pub(crate) fn reset(&mut self) {
        self.writes = Writes::default();
        self.all_deleted = false;
    }

    /// Bounds the view's memory once the backend holds everything it knows.
    pub(crate) fn trim(&mut self) {
        if self.writes.view.len() > VIEW_LIMIT && self.store.committed() >= self.last_ticket {
            self.writes.view = HashMap::new();
            self.all_deleted = false;
        }
    }
}

/// A group of writes that apply together or not at all. Dropping it without `commit` discards
/// its writes.
pub struct Transaction<'a> {
    storage: &'a mut Storage,
    writes: Writes,
}

impl Transaction<'_> {
    /// The value of `key`, seeing this transaction's own writes.
    pub async fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, StorageError> {
        let raw = match self.writes.view.get(key) {
            Some(v) => v.clone(),
            None => self.storage.get_raw(key).await?,
        };
        raw.map(|bytes| decode(key, &bytes)).transpose()
    }

    pub fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), StorageError> {
        self.writes.put(key, value)
    }

    pub fn delete(&mut self, key: &str) {
        self.writes.delete(key);
    }

    /// Applies every write of the transaction to the object's storage.
    pub fn commit(self) {
        self.storage.writes.view.extend(self.writes.view);
        self.storage.writes.ops.extend(self.writes.ops);
    }
}
