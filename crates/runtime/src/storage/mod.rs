//! Storage backends: the narrow async trait every backend implements, and the shapes it trades in.
//!
//! A backend knows nothing of objects' lifecycles: it reads, and it commits a batch of many
//! objects' writes atomically. Its methods return futures, so a networked store can implement
//! it; an embedded one runs its blocking work on tokio's blocking pool.
//!
//! # The contract
//!
//! - **Atomicity.** One `commit` applies every write of every object in the batch, in order, or
//!   none of them. The runtime calls `commit` from its one writer task, one batch at a time, so a
//!   backend never sees two commits at once.
//! - **Durability.** When `commit` resolves `Ok`, the batch survives a crash of the process; with
//!   [`Durability::Full`] it also survives a crash of the machine (it was synced to disk). The
//!   runtime releases the outputs of an event only after its batch resolved `Ok`.
//! - **Visibility.** A `get` or `list` issued after a `commit` resolved sees its writes.
//! - **Order.** `list` returns keys in ascending byte order of their UTF-8 encoding (descending
//!   with `reverse`), after selecting by prefix and range and before applying `limit`.
//! - **Isolation of classes.** Class names starting with `_` are the runtime's own (topic
//!   history, the outbox, the health probe); object classes cannot use them.

/// Class name under which the runtime keeps its own records (topic histories, the outbox, the
/// health probe); object classes may not use it. A backend may keep them apart from objects'.
pub const RUNTIME_CLASS: &str = "_switchboard";

pub mod memory;
pub mod sqlite;
pub mod view;

use std::pin::Pin;

use crate::address::Address;

/// When a commit counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Synced to disk (fsync) before any output that depends on it is released.
    #[default]
    Full,
    /// Written to the OS before outputs are released: survives a crash of the process, not
    /// of the machine.
    Normal,
}

/// One write of one object.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Put(String, Vec<u8>),
    Delete(String),
    /// Deletes every key of the object (and its alarm).
    DeleteAll,
    /// Sets (`Some(ms)`) or clears the object's alarm.
    SetAlarm(Option<i64>),
}

/// The writes of one event of one object, applied in order.
#[derive(Clone, Debug)]
pub struct ObjectWrites {
    pub address: Address,
    pub ops: Vec<WriteOp>,
}

/// Which keys a `list` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only keys `>= start`.
    pub start: Option<String>,
    /// Only keys `< end`.
    pub end: Option<String>,
    /// At most this many entries.
    pub limit: Option<usize>,
    /// Descending key order.
    pub reverse: bool,
}

impl ListOptions {
    pub fn prefix(prefix: impl Into<String>) -> Self {
        ListOptions {
            prefix: Some(prefix.into()),
            ..Default::default()
        }
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// Whether `key` is in the selected range (ignores `limit`).
    pub fn contains(&self, key: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.start.as_deref().is_none_or(|s| key >= s)
            && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("value of key {key:?} cannot be decoded: {message}")]
    Decode { key: String, message: String },
    #[error("value cannot be encoded: {0}")]
    Encode(String),
    #[error("storage is closed")]
    Closed,
}

/// A future a backend returns: owned, so the runtime can await it anywhere.
pub type BackendFuture<T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'static>>;

/// A storage backend (see the module docs for its contract). Implementations:
/// [`sqlite::SqliteBackend`], [`memory::MemoryBackend`].
pub trait Backend: Send + Sync + 'static {
    fn get(&self, address: &Address, key: &str) -> BackendFuture<Option<Vec<u8>>>;
    fn list(&self, address: &Address, options: &ListOptions) -> BackendFuture<Vec<(String, Vec<u8>)>>;
    /// Applies every object's writes, all or nothing.
    fn commit(&self, batch: Vec<ObjectWrites>) -> BackendFuture<()>;
    /// Every stored alarm, for the scheduler at startup.
    fn alarms(&self) -> BackendFuture<Vec<(Address, i64)>>;
}
