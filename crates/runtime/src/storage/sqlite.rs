//! The embedded storage backend: SQLite in WAL mode, one table of keys per object.
//!
//! One connection writes (the runtime's one writer task is its only user); reads use a small
//! pool of other connections, which WAL lets run beside the writer. Every call runs on tokio's
//! blocking pool, since SQLite blocks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{Backend, BackendFuture, Durability, ListOptions, ObjectWrites, StorageError, WriteOp};
use crate::address::Address;

/// Most idle read connections kept open.
const READ_POOL: usize = 4;

/// The SQLite backend; cheap to clone.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Sqlite>,
}

struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn backend_err(e: rusqlite::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StorageError> {
        let writer = Connection::open(path).map_err(backend_err)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = {synchronous};
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS kv (
                     class TEXT NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                     PRIMARY KEY (class, name, key)) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS alarms (
                     class TEXT NOT NULL, name TEXT NOT NULL, at INTEGER NOT NULL,
                     PRIMARY KEY (class, name)) WITHOUT ROWID;"
            ))
            .map_err(backend_err)?;
        Ok(SqliteBackend {
            inner: Arc::new(Sqlite {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` on the blocking pool.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sqlite) -> Result<T, StorageError> + Send + 'static,
    ) -> BackendFuture<T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&inner))
                .await
                .map_err(|e| StorageError::Backend(e.to_string()))?
        })
    }
}

impl Sqlite {
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StorageError> {
        let pooled = self.readers.lock().expect("reader pool poisoned").pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(backend_err)?;
                c.busy_timeout(std::time::Duration::from_secs(5)).map_err(backend_err)?;
                c
            }
        };
        let result = f(&conn).map_err(backend_err);
        let mut pool = self.readers.lock().expect("reader pool poisoned");
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        result
    }
}

impl Backend for SqliteBackend {
    fn get(&self, address: &Address, key: &str) -> BackendFuture<Option<Vec<u8>>> {
        let (address, key) = (address.clone(), key.to_string());
        self.blocking(move |db| db.get(&address, &key))
    }

    fn list(&self, address: &Address, options: &ListOptions) -> BackendFuture<Vec<(String, Vec<u8>)>> {
        let (address, options) = (address.clone(), options.clone());
        self.blocking(move |db| db.list(&address, &options))
    }

    fn commit(&self, batch: Vec<ObjectWrites>) -> BackendFuture<()> {
        self.blocking(move |db| db.commit(&batch))
    }

    fn alarms(&self) -> BackendFuture<Vec<(Address, i64)>> {
        self.blocking(|db| db.alarms())
    }
}

impl Sqlite {
    fn get(&self, address: &Address, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT value FROM kv WHERE class = ?1 AND name = ?2 AND key = ?3")?
                .query_row(params![&*address.class, &*address.name, key], |r| r.get(0))
                .optional()
        })
    }

    fn list(&self, address: &Address, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        // The prefix and range bounds go to SQL; `contains` re-checks the prefix exactly.
        let lower = match (&options.prefix, &options.start) {
            (Some(p), Some(s)) => Some(p.max(s).clone()),
            (p, s) => p.clone().or(s.clone()),
        };
        let order = if options.reverse { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT key, value FROM kv WHERE class = ?1 AND name = ?2 AND (?3 IS NULL OR key >= ?3) \
             AND (?4 IS NULL OR key < ?4) AND (?5 IS NULL OR substr(key, 1, length(?5)) = ?5) ORDER BY key {order} LIMIT ?6"
        );
        let limit = options.limit.map_or(-1, |l| l as i64);
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    &*address.class,
                    &*address.name,
                    lower,
                    options.end,
                    options.prefix,
                    limit
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )?;
            rows.collect()
        })
    }

    fn commit(&self, batch: &[ObjectWrites]) -> Result<(), StorageError> {
        let conn = self.writer.lock().expect("writer poisoned");
        // Cached statements, not `Connection::transaction`: that parses `BEGIN` and `COMMIT`
        // anew on every commit (2 % of a display update's server CPU at 200 updates/s).
        conn.prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .map_err(backend_err)?;
        let result = Self::apply(&conn, batch)
            .and_then(|()| conn.prepare_cached("COMMIT").and_then(|mut s| s.execute([])).map(drop));
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        result.map_err(backend_err)
    }

    fn apply(conn: &Connection, batch: &[ObjectWrites]) -> rusqlite::Result<()> {
        for writes in batch {
            let (class, name) = (&*writes.address.class, &*writes.address.name);
            for op in &writes.ops {
                match op {
                    WriteOp::Put(k, v) => conn
                        .prepare_cached("INSERT OR REPLACE INTO kv (class, name, key, value) VALUES (?1, ?2, ?3, ?4)")
                        .and_then(|mut s| s.execute(params![class, name, k, v])),
                    WriteOp::Delete(k) => conn
                        .prepare_cached("DELETE FROM kv WHERE class = ?1 AND name = ?2 AND key = ?3")
                        .and_then(|mut s| s.execute(params![class, name, k])),
                    WriteOp::DeleteAll => conn
                        .prepare_cached("DELETE FROM kv WHERE class = ?1 AND name = ?2")
                        .and_then(|mut s| s.execute(params![class, name]))
                        .and_then(|_| conn.prepare_cached("DELETE FROM alarms WHERE class = ?1 AND name = ?2"))
                        .and_then(|mut s| s.execute(params![class, name])),
                    WriteOp::SetAlarm(Some(at)) => conn
                        .prepare_cached("INSERT OR REPLACE INTO alarms (class, name, at) VALUES (?1, ?2, ?3)")
                        .and_then(|mut s| s.execute(params![class, name, at])),
                    WriteOp::SetAlarm(None) => conn
                        .prepare_cached("DELETE FROM alarms WHERE class = ?1 AND name = ?2")
                        .and_then(|mut s| s.execute(params![class, name])),
                }?;
            }
        }
        Ok(())
    }

    fn alarms(&self) -> Result<Vec<(Address, i64)>, StorageError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare("SELECT class, name, at FROM alarms")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    Address::new(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?),
                    r.get(2)?,
                ))
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(name: &str, ops: Vec<WriteOp>) -> ObjectWrites {
        ObjectWrites {
            address: Address::new("t", name),
            ops,
        }
    }

    /// Range, prefix, limit and reverse select the same keys as the in-memory twin.
    #[tokio::test]
    async fn list_matches_memory_backend() {
        let dir = std::env::temp_dir().join(format!("sb-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("list.db");
        let _ = std::fs::remove_file(&path);
        let sqlite = SqliteBackend::open(&path, Durability::Normal).unwrap();
        let memory = super::super::memory::MemoryBackend::new();
        let ops = ["a", "ab", "abc", "b", "ba", "c"]
            .iter()
            .map(|k| WriteOp::Put(k.to_string(), k.as_bytes().to_vec()))
            .collect();
        let w = writes("x", ops);
        let other = writes("y", vec![WriteOp::Put("ab".into(), vec![1])]);
        for b in [&sqlite as &dyn Backend, &memory] {
            b.commit(vec![w.clone(), other.clone()]).await.unwrap();
        }
        let cases = [
            ListOptions::default(),
            ListOptions::prefix("a"),
            ListOptions::prefix("a").reverse().limit(2),
            ListOptions {
                start: Some("ab".into()),
                end: Some("ba".into()),
                ..Default::default()
            },
            ListOptions {
                prefix: Some("b".into()),
                start: Some("a".into()),
                ..Default::default()
            },
        ];
        let addr = Address::new("t", "x");
        for case in cases {
            assert_eq!(
                sqlite.list(&addr, &case).await.unwrap(),
                memory.list(&addr, &case).await.unwrap(),
                "{case:?}"
            );
        }
        assert_eq!(sqlite.list(&addr, &ListOptions::prefix("a")).await.unwrap().len(), 3);
    }
}
