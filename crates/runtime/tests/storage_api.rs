//! The per-object storage API on SQLite: reads see the object's own writes at once, list
//! selects by prefix and range, transactions apply whole or not at all, and everything
//! survives a restart.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_runtime::storage::sqlite::SqliteBackend;
use switchboard_runtime::{Context, Durability, HookResult, ListOptions, Object, Runtime, RuntimeConfig};

/// Runs a scripted sequence of storage operations and reports what it saw.
struct Scratch;

#[derive(Serialize, Deserialize)]
enum Op {
    Script,
    Read,
}

impl Object for Scratch {
    const CLASS: &'static str = "scratch";
    type Request = Op;
    type Reply = serde_json::Value;

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Scratch)
    }

    async fn on_request(&mut self, ctx: &mut Context, op: Op) -> HookResult<serde_json::Value> {
        let s = ctx.storage();
        match op {
            Op::Script => {
                for (k, v) in [("a:1", 1), ("a:2", 2), ("a:3", 3), ("b:1", 10)] {
                    s.put(k, &v)?;
                }
                // Visible before the event ends, before any commit.
                let own: Option<i64> = s.get("a:2").await?;
                let listed: Vec<(String, i64)> = s.list(ListOptions::prefix("a:").reverse().limit(2)).await?;
                s.delete("a:3");
                let mut tx = s.transaction();
                tx.put("t", &"rolled back")?;
                drop(tx);
                let mut tx = s.transaction();
                tx.put("t", &"kept")?;
                let in_tx: Option<String> = tx.get("t").await?;
                tx.commit();
                Ok(serde_json::json!({ "own": own, "listed": listed, "in_tx": in_tx }))
            }
            Op::Read => {
                let all: Vec<(String, serde_json::Value)> = s.list(ListOptions::default()).await?;
                Ok(serde_json::json!(all))
            }
        }
    }
}

async fn open(path: &std::path::Path) -> Runtime {
    let backend = SqliteBackend::open(path, Durability::Full).unwrap();
    Runtime::builder(RuntimeConfig::default(), Arc::new(backend))
        .class::<Scratch>()
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn storage_semantics_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let rt = open(&db).await;
    let seen = rt.object::<Scratch>("x").call(Op::Script).await.unwrap();
    assert_eq!(seen["own"], 2);
    assert_eq!(seen["listed"], serde_json::json!([["a:3", 3], ["a:2", 2]]));
    assert_eq!(seen["in_tx"], "kept");
    rt.shutdown().await;

    let rt = open(&db).await;
    let all = rt.object::<Scratch>("x").call(Op::Read).await.unwrap();
    assert_eq!(
        all,
        serde_json::json!([["a:1", 1], ["a:2", 2], ["b:1", 10], ["t", "kept"]])
    );
    let other = rt.object::<Scratch>("y").call(Op::Read).await.unwrap();
    assert_eq!(other, serde_json::json!([]), "objects do not see each other's keys");
    rt.shutdown().await;
}
