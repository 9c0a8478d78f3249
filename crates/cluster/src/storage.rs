//! Objects' storage in the cluster: one JetStream KV entry per object, written by
//! compare-and-swap on its revision, so a node that lost an object can no longer write it.
//!
//! An entry holds all of an object's keys and its alarm. Every commit of an object rewrites its
//! entry with the revision this node last wrote or read; a node that takes an object first
//! rewrites the entry it found (the *fence*), which moves the revision on, so any later write
//! of the previous owner fails and that owner's instance restarts from storage — somewhere
//! else, since it no longer holds the lease. An alarm index (a second bucket) lets every node
//! know every alarm. The runtime's own records (topic histories, the outbox) belong to the
//! node and stay in its local SQLite file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_runtime::Address;
use switchboard_runtime::storage::sqlite::SqliteBackend;
use switchboard_runtime::storage::{
    Backend, BackendFuture, ListOptions, ObjectWrites, RUNTIME_CLASS, StorageError, WriteOp,
};

use crate::keys::{address_key, key_address};

/// Everything one object stores.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ObjectState {
    pub(crate) keys: BTreeMap<String, Vec<u8>>,
    pub(crate) alarm: Option<i64>,
}

impl ObjectState {
    /// `[count u32][key len u32, key, value len u32, value]… [alarm flag u8][alarm i64]`, little endian.
    fn encode(&self) -> Bytes {
        let size: usize = self.keys.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let mut out = Vec::with_capacity(4 + size + 9);
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for (key, value) in &self.keys {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out.push(u8::from(self.alarm.is_some()));
        out.extend_from_slice(&self.alarm.unwrap_or(0).to_le_bytes());
        out.into()
    }

    fn decode(bytes: &[u8]) -> Option<ObjectState> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        let mut state = ObjectState::default();
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
        for _ in 0..count {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let key = String::from_utf8(take(len)?.to_vec()).ok()?;
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            state.keys.insert(key, take(len)?.to_vec());
        }
        let has_alarm = take(1)?[0] == 1;
        let alarm = i64::from_le_bytes(take(8)?.try_into().ok()?);
        state.alarm = has_alarm.then_some(alarm);
        Some(state)
    }

    fn apply(&mut self, op: &WriteOp) {
        match op {
            WriteOp::Put(key, value) => {
                self.keys.insert(key.clone(), value.clone());
            }
            WriteOp::Delete(key) => {
                self.keys.remove(key);
            }
            WriteOp::DeleteAll => *self = ObjectState::default(),
            WriteOp::SetAlarm(at) => self.alarm = *at,
        }
    }

    fn list(&self, options: &ListOptions) -> Vec<(String, Vec<u8>)> {
        let lower = match (&options.prefix, &options.start) {
            (Some(p), Some(s)) => Bound::Included(p.max(s).clone()),
            (Some(p), None) => Bound::Included(p.clone()),
            (None, Some(s)) => Bound::Included(s.clone()),
            (None, None) => Bound::Unbounded,
        };
        let selected = self
            .keys
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| options.prefix.as_deref().is_none_or(|p| k.starts_with(p)))
            .filter(|(k, _)| options.contains(k));
        let limit = options.limit.unwrap_or(usize::MAX);
        let pairs = |(k, v): (&String, &Vec<u8>)| (k.clone(), v.clone());
        if options.reverse {
            selected
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .take(limit)
                .map(pairs)
                .collect()
        } else {
            selected.take(limit).map(pairs).collect()
        }
    }
}

/// An object's state as this node last wrote or read it, with the entry's revision.
struct Known {
    revision: u64,
    state: Arc<ObjectState>,
}

/// The cluster's storage backend (see the module docs); clones share everything.
#[derive(Clone)]
pub struct ClusterBackend {
    objects: kv::Store,
    alarms: kv::Store,
    local: SqliteBackend,
    known: Arc<Mutex<HashMap<Address, Known>>>,
}

fn nats_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(format!("JetStream: {e}"))
}

impl ClusterBackend {
    pub(crate) fn new(objects: kv::Store, alarms: kv::Store, local: SqliteBackend) -> Arc<Self> {
        Arc::new(ClusterBackend {
            objects,
            alarms,
            local,
            known: Arc::default(),
        })
    }

    fn known(&self, address: &Address) -> Option<(u64, Arc<ObjectState>)> {
        let known = self.known.lock().expect("object cache poisoned");
        known.get(address).map(|k| (k.revision, k.state.clone()))
    }

    fn remember(&self, address: &Address, revision: u64, state: Arc<ObjectState>) {
        let mut known = self.known.lock().expect("object cache poisoned");
        known.insert(address.clone(), Known { revision, state });
    }

    /// Forgets what this node knew of an object it no longer owns.
    pub(crate) fn forget(&self, address: &Address) {
        self.known.lock().expect("object cache poisoned").remove(address);
    }

    /// The object's entry and revision as stored now (revision 0: never written).
    async fn read(&self, address: &Address) -> Result<(u64, Arc<ObjectState>), StorageError> {
        let key = address_key(address);
        let entry = self.objects.entry(key.clone()).await.map_err(nats_err)?;
        Ok(match entry {
            Some(e) if e.operation == Operation::Put => {
                let state = ObjectState::decode(&e.value).ok_or_else(|| StorageError::Decode {
                    key,
                    message: "not an object entry".into(),
                })?;
                (e.revision, Arc::new(state))
            }
            Some(e) => (e.revision, Arc::default()),
            None => (0, Arc::default()),
        })
    }

    async fn load(&self, address: &Address) -> Result<Arc<ObjectState>, StorageError> {
        if let Some((_, state)) = self.known(address) {
            return Ok(state);
        }
        let (revision, state) = self.read(address).await?;
        self.remember(address, revision, state.clone());
        Ok(state)
    }

    /// Makes this node the only writer of an object it just took: rewrites the entry it finds,
    /// so a write of the previous owner, prepared against the old revision, fails. Returns the
    /// object's alarm.
    pub(crate) async fn fence(&self, address: &Address) -> Result<Option<i64>, StorageError> {
        let key = address_key(address);
        for _ in 0..8 {
            let (revision, state) = self.read(address).await?;
            match self.objects.update(&key, state.encode(), revision).await {
                Ok(revision) => {
                    let alarm = state.alarm;
                    self.remember(address, revision, state);
                    return Ok(alarm);
                }
                // The previous owner's last write landed between the read and the fence.
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(nats_err(e)),
            }
        }
        Err(StorageError::Backend(format!(
            "{address} keeps changing: another node still writes it"
        )))
    }

    /// Writes one object's ops; on success the entry's new revision and state are known here.
    async fn write(&self, address: Address, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        let (revision, before) = match self.known(&address) {
            Some(known) => known,
            None => self.read(&address).await?,
        };
        let mut after = (*before).clone();
        ops.iter().for_each(|op| after.apply(op));
        let key = address_key(&address);
        match self.objects.update(&key, after.encode(), revision).await {
            Ok(revision) => {
                let alarm_changed = before.alarm != after.alarm;
                let alarm = after.alarm;
                self.remember(&address, revision, Arc::new(after));
                if alarm_changed {
                    // The index only tells other nodes where to look; the entry is the truth.
                    let indexed = match alarm {
                        Some(at) => self
                            .alarms
                            .put(&key, at.to_string().into())
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        None => self.alarms.delete(&key).await.map_err(|e| e.to_string()),
                    };
                    if let Err(e) = indexed {
                        tracing::warn!(%address, error = %e, "the alarm index could not be updated");
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.forget(&address);
                if e.kind() == UpdateErrorKind::WrongLastRevision {
                    Err(StorageError::Backend(format!(
                        "{address} was written by another node: this node no longer owns it"
                    )))
                } else {
                    Err(nats_err(e))
                }
            }
        }
    }
}

fn is_local(address: &Address) -> bool {
    &*address.class == RUNTIME_CLASS
}

impl Backend for ClusterBackend {
    fn get(&self, address: &Address, key: &str) -> BackendFuture<Option<Vec<u8>>> {
        if is_local(address) {
            return self.local.get(address, key);
        }
        let this = self.clone();
        let (address, key) = (address.clone(), key.to_string());
        Box::pin(async move { Ok(this.load(&address).await?.keys.get(&key).cloned()) })
    }

    fn list(&self, address: &Address, options: &ListOptions) -> BackendFuture<Vec<(String, Vec<u8>)>> {
        if is_local(address) {
            return self.local.list(address, options);
        }
        let this = self.clone();
        let (address, options) = (address.clone(), options.clone());
        Box::pin(async move { Ok(this.load(&address).await?.list(&options)) })
    }

    fn commit(&self, batch: Vec<ObjectWrites>) -> BackendFuture<()> {
        let (local, shared): (Vec<_>, Vec<_>) = batch.into_iter().partition(|w| is_local(&w.address));
        // One write per object, its ops in the order the batch has them.
        let mut by_object: Vec<(Address, Vec<WriteOp>)> = Vec::new();
        let mut index: HashMap<Address, usize> = HashMap::new();
        for w in shared {
            match index.get(&w.address) {
                Some(&i) => by_object[i].1.extend(w.ops),
                None => {
                    index.insert(w.address.clone(), by_object.len());
                    by_object.push((w.address, w.ops));
                }
            }
        }
        let this = self.clone();
        Box::pin(async move {
            let writes = by_object.into_iter().map(|(address, ops)| this.write(address, ops));
            // Published together, acknowledged by the stream's quorum each.
            let results = futures_util::future::join_all(writes).await;
            let local = if local.is_empty() {
                Ok(())
            } else {
                this.local.commit(local).await
            };
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
            local
        })
    }

    fn alarms(&self) -> BackendFuture<Vec<(Address, i64)>> {
        let this = self.clone();
        Box::pin(async move {
            let mut alarms = this.local.alarms().await?;
            let mut keys = this.alarms.keys().await.map_err(nats_err)?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                names.push(key.map_err(nats_err)?);
            }
            for key in names {
                let (Some(address), Some(value)) = (key_address(&key), this.alarms.get(&key).await.map_err(nats_err)?)
                else {
                    continue;
                };
                if let Some(at) = std::str::from_utf8(&value).ok().and_then(|v| v.parse().ok()) {
                    alarms.push((address, at));
                }
            }
            Ok(alarms)
        })
    }
}
