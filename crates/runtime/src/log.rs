//! A capped log in an object's storage: entries under increasing sequence numbers, the oldest
//! dropped once there are more than a cap (a counter's history, a display's lists, a chat's
//! last messages).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::storage::view::Storage;
use crate::storage::{ListOptions, StorageError};

/// One log, under the keys `{prefix}{seq:020}`.
#[derive(Clone, Debug)]
pub struct CappedLog {
    prefix: String,
    cap: usize,
    /// Sequence number of the next entry.
    next: u64,
}

impl CappedLog {
    /// Opens the log under `prefix`, keeping at most `cap` entries (at least one).
    pub async fn open(storage: &mut Storage, prefix: &str, cap: usize) -> Result<Self, StorageError> {
        let newest: Vec<(String, serde::de::IgnoredAny)> =
            storage.list(ListOptions::prefix(prefix).reverse().limit(1)).await?;
        let next = newest
            .first()
            .and_then(|(k, _)| k[prefix.len()..].parse::<u64>().ok())
            .map_or(0, |seq| seq + 1);
        Ok(CappedLog {
            prefix: prefix.to_string(),
            cap: cap.max(1),
            next,
        })
    }

    fn key(&self, seq: u64) -> String {
        format!("{}{seq:020}", self.prefix)
    }

    /// Appends an entry, dropping the one that falls off the cap; returns its sequence number.
    pub fn append<T: Serialize + ?Sized>(&mut self, storage: &mut Storage, value: &T) -> Result<u64, StorageError> {
        let seq = self.next;
        storage.put(&self.key(seq), value)?;
        self.next += 1;
        if let Some(old) = seq.checked_sub(self.cap as u64) {
            storage.delete(&self.key(old));
        }
        Ok(seq)
    }

    /// Up to `limit` entries, newest first.
    pub async fn newest<T: DeserializeOwned>(
        &self,
        storage: &mut Storage,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StorageError> {
        self.read(
            storage,
            ListOptions::prefix(&self.prefix).reverse().limit(limit.min(self.cap)),
        )
        .await
    }

    /// Every entry, oldest first.
    pub async fn all<T: DeserializeOwned>(&self, storage: &mut Storage) -> Result<Vec<(u64, T)>, StorageError> {
        let mut entries = self
            .read(storage, ListOptions::prefix(&self.prefix).reverse().limit(self.cap))
            .await?;
        entries.reverse();
        Ok(entries)
    }

    async fn read<T: DeserializeOwned>(
        &self,
        storage: &mut Storage,
        options: ListOptions,
    ) -> Result<Vec<(u64, T)>, StorageError> {
        let rows: Vec<(String, T)> = storage.list(options).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| k[self.prefix.len()..].parse().ok().map(|seq| (seq, v)))
            .collect())
    }

    /// The number of entries the log holds.
    pub fn len(&self) -> usize {
        (self.next as usize).min(self.cap)
    }

    pub fn is_empty(&self) -> bool {
        self.next == 0
    }

    /// Forgets the log's entries, for a caller that deleted them (with `delete_all`).
    pub fn reset(&mut self) {
        self.next = 0;
    }
}
