//! Durable objects: named, single-threaded, stateful units with their own storage, that sleep
//! when idle and wake on demand.
//!
//! An object class implements [`Object`]; a [`Runtime`] hosts its instances, one per
//! `(class, name)`, over a storage [`Backend`](storage::Backend). Events reach an object one at a
//! time (the input gate); what an event sends leaves only once its writes are durable (the
//! output gate), and writes of many events share one commit.
//!
//! ```
//! use switchboard_runtime::{Context, Object, Runtime, RuntimeConfig, StorageError};
//! use switchboard_runtime::storage::memory::MemoryBackend;
//! use std::sync::Arc;
//!
//! /// A counter that remembers its value.
//! struct Counter { value: i64 }
//!
//! impl Object for Counter {
//!     const CLASS: &'static str = "counter";
//!     type Request = i64;   // amount to add
//!     type Reply = i64;     // the new value
//!
//!     async fn start(ctx: &mut Context) -> Result<Self, StorageError> {
//!         Ok(Counter { value: ctx.storage().get("value").await?.unwrap_or(0) })
//!     }
//!
//!     async fn on_request(&mut self, ctx: &mut Context, amount: i64) -> i64 {
//!         self.value += amount;
//!         ctx.storage().put("value", &self.value).expect("an i64 always encodes");
//!         self.value
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let runtime = Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
//!     .class::<Counter>()
//!     .start()
//!     .await
//!     .unwrap();
//! let counter = runtime.object::<Counter>("visits");
//! counter.call(2).await.unwrap();
//! assert_eq!(counter.call(3).await.unwrap(), 5);
//! runtime.shutdown().await;
//! # });
//! ```

mod actor;
mod address;
mod alarm;
mod auto_response;
mod context;
mod object;
mod registry;
mod socket;
mod socket_set;
mod stats;
pub mod storage;
mod store;

pub use address::Address;
pub use auto_response::{AutoResponse, RequestMatch};
pub use context::{Context, SocketError};
pub use object::{AlarmResult, ConnectInfo, NewSocket, Object, SocketRef};
pub use registry::{CallError, ObjectSocket, Runtime, RuntimeBuilder, RuntimeConfig, Stub};
pub use socket::{Batch, CLOSE_POLICY, CloseReason, Frame, QueueLimits, SendError, SocketConn, SocketId, Utf8Bytes};
pub use socket_set::{MAX_ATTACHMENT, MAX_TAGS};
pub use stats::StatsSnapshot;
pub use storage::view::{Storage, Transaction};
pub use storage::{Durability, ListOptions, StorageError};
