//! Durable objects: named, single-threaded, stateful units with their own storage, that sleep
//! when idle and wake on demand.
//!
//! An object class implements [`Object`]; a [`Runtime`] hosts its instances, one per
//! `(class, name)`, over a storage [`Backend`](storage::Backend). Events reach an object one at a
//! time (the input gate); what an event sends leaves only once its writes are durable (the
//! output gate), and writes of many events share one commit. Sockets subscribe to
//! [topics](topic) independently of their objects; objects [message](Context::tell) each other;
//! [effects](effect) reach the outside world after a commit; a [`Cluster`](cluster::Cluster)
//! spreads objects over nodes.
//!
//! ```
//! use switchboard_runtime::{Context, HookResult, Object, Runtime, RuntimeConfig};
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
//!     async fn start(ctx: &mut Context) -> HookResult<Self> {
//!         Ok(Counter { value: ctx.storage().get("value").await?.unwrap_or(0) })
//!     }
//!
//!     async fn on_request(&mut self, ctx: &mut Context, amount: i64) -> HookResult<i64> {
//!         self.value += amount;
//!         ctx.storage().put("value", &self.value)?;
//!         Ok(self.value)
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
mod clock;
pub mod cluster;
mod context;
mod creation;
pub mod effect;
mod log;
mod object;
mod registry;
mod socket;
mod socket_index;
mod socket_set;
mod stats;
pub mod storage;
mod store;
pub mod topic;

pub use address::Address;
pub use auto_response::{AutoResponse, RequestMatch};
pub use clock::Clock;
pub use context::{Context, SocketError, json_frame};
pub use effect::{Attempt, Effect, EffectDone, EffectResponse, EffectRunner, HttpRequest, OutboxStats, RetryPolicy};
pub use log::CappedLog;
pub use object::{ConnectInfo, HookError, HookResult, Message, NewSocket, Object, SocketRef};
pub use registry::{
    CallError, ObjectDetail, ObjectSocket, ObjectStatus, PublishError, Runtime, RuntimeBuilder, RuntimeConfig,
    SocketDetail, Stub, Subscription,
};
pub use socket::{
    Batch, CLOSE_POLICY, CloseReason, Delivery, Frame, QueueLimits, SendError, SocketConn, SocketId, Utf8Bytes,
};
pub use socket_set::{MAX_ATTACHMENT, MAX_TAGS};
pub use stats::StatsSnapshot;
pub use storage::view::{Storage, Transaction};
pub use storage::{Durability, ListOptions, StorageError};
pub use topic::{
    HistoryLimits, JsonPublication, Position, Presence, PresenceChange, Publication, Recovery, ReplyFrame, Stamp,
    StampFields, TopicError, TopicOptions, valid_topic,
};
