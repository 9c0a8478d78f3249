//! The runtime: registered classes, one slot per addressed object, and the handles callers and
//! the gateway use to reach objects, sockets and topics.
//!
//! A *slot* is what stays of an object while it hibernates: its address, its sockets (with tags
//! and attachments) and the ticket of its last write. Its mailbox is a queue under the slot's
//! lock, empty (and unallocated) while it sleeps; sending to a slot with no live instance starts
//! an actor. A slot is removed when it has neither an instance nor sockets.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::actor;
use crate::address::Address;
use crate::alarm::Alarms;
use crate::auto_response::AutoResponse;
use crate::clock::Clock;
use crate::cluster::{Cluster, LocalNode, NodeMessage};
use crate::effect::{EffectDone, EffectRunner, Outbox, OutboxStats, RetryPolicy, outbox_address};
use crate::object::{ConnectInfo, NewSocket, Object};
use crate::socket::{Frame, QueueLimits, SocketConn, SocketId};
use crate::socket_index::SocketIndex;
use crate::socket_set::SocketSet;
use crate::stats::{Stats, StatsSnapshot};
use crate::storage::{Backend, ListOptions, ObjectWrites, StorageError};
use crate::store::{Health, Output, RESERVED_CLASS, Store};
use crate::topic::{
    Hub, JsonPublication, Position, Prepared, Presence, Publication, Recovery, ReplyFrame, TopicError, TopicOptions,
    valid_topic,
};

/// Settings of a runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Idle time after which an object's instance is dropped from memory. Default: 10 s.
    pub hibernate_after: Duration,
    /// Retries of failed effects. Default: from 250 ms, doubling to 60 s.
    pub effect_retry: RetryPolicy,
    /// Retries of failed alarms. Default: from 1 s, doubling to 5 min.
    pub alarm_retry: RetryPolicy,
    /// New objects one origin may create per minute (see [`Context::admit_creation`]);
    /// `None`: no limit. Default: none.
    ///
    /// [`Context::admit_creation`]: crate::Context::admit_creation
    pub new_objects_per_origin_per_minute: Option<usize>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            hibernate_after: Duration::from_secs(10),
            effect_retry: RetryPolicy::default(),
            alarm_retry: RetryPolicy {
                first: Duration::from_secs(1),
                max: Duration::from_secs(300),
            },
            new_objects_per_origin_per_minute: None,
        }
    }
}

/// Why a call to an object failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CallError {
    #[error("no object class {0:?} is registered")]
    UnknownClass(String),
    #[error("the object could not start: {0}")]
    Start(String),
    #[error("the object failed to handle the event, and its writes were discarded: {0}")]
    Failed(String),
    #[error("the object's writes could not be stored; nothing was changed")]
    CommitFailed,
    #[error("the runtime is shutting down")]
    ShuttingDown,
    #[error("the call could not cross to another node: {0}")]
    Unreachable(String),
    /// Another node did not answer in time: the call may or may not have run there.
    #[error("no answer in time from another node, so the call may or may not have taken effect: {0}")]
    TimedOut(String),
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, CallError>>;

/// An event for an object of class `O`.
pub(crate) enum Event<O: Object> {
    /// A call; no reply channel for a message sent with `tell`.
    Call(O::Request, Option<Reply<O::Reply>>),
    Connect(Box<NewSocket>, Reply<bool>),
    /// A frame from one of the object's sockets (the socket itself: no lookup on the hot path).
    Message(Arc<SocketConn>, Frame, oneshot::Sender<()>),
    Close(SocketId, u16, String, oneshot::Sender<()>),
    Alarm,
    EffectDone(Box<EffectDone>),
}

impl<O: Object> Event<O> {
    /// Tells whoever waits on this event that it will not be handled.
    pub(crate) fn fail(self, error: CallError) {
        match self {
            Event::Call(_, Some(reply)) => {
                let _ = reply.send(Err(error));
            }
            Event::Connect(_, reply) => {
                let _ = reply.send(Err(error));
            }
            Event::Message(_, _, done) | Event::Close(_, _, _, done) => {
                let _ = done.send(());
            }
            Event::Call(_, None) | Event::Alarm | Event::EffectDone(_) => {}
        }
    }
}

/// The part of a slot that objects and the gateway share, whatever the class.
pub(crate) struct SlotCore {
    pub(crate) address: Address,
    pub(crate) sockets: SocketSet,
    /// Ticket of the last writes of any incarnation, so a new one's outputs never overtake an
    /// old one's.
    pub(crate) last_ticket: AtomicU64,
    /// Failed deliveries of the current alarm, for backoff.
    pub(crate) alarm_failures: AtomicU32,
    /// Set when another node took the object: the instance here must not be used again.
    pub(crate) stale: AtomicBool,
}

pub(crate) struct Slot<O: Object> {
    pub(crate) core: Arc<SlotCore>,
    state: Mutex<SlotState<O>>,
    /// Wakes the actor when an event is queued.
    ready: Notify,
}

struct SlotState<O: Object> {
    mailbox: VecDeque<Event<O>>,
    /// An actor runs for this slot.
    live: bool,
    /// Set when the registry dropped this slot: senders must look the address up again.
    removed: bool,
}

/// The class-independent face of a slot, as the registry, the gateway and alarms see it.
pub(crate) trait AnySlot: Send + Sync + 'static {
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn core(&self) -> &Arc<SlotCore>;
    fn is_live(&self) -> bool;
    /// Removes the slot if it has neither an instance nor sockets. Called under the registry lock.
    fn remove_if_unused(&self) -> bool;
    fn message(self: Arc<Self>, rt: &Runtime, conn: Arc<SocketConn>, frame: Frame, done: oneshot::Sender<()>);
    fn close(self: Arc<Self>, rt: &Runtime, id: SocketId, code: u16, reason: String, done: oneshot::Sender<()>);
}

impl<O: Object> Slot<O> {
    /// Queues `event`, starting an actor if the object is not live. Gives the event back if
    /// this slot was removed from the registry meanwhile.
    pub(crate) fn send(self: &Arc<Self>, rt: &Runtime, event: Event<O>) -> Result<(), Event<O>> {
        let mut state = self.state.lock().expect("slot poisoned");
        if state.removed {
            return Err(event);
        }
        state.mailbox.push_back(event);
        if state.live {
            drop(state);
            self.ready.notify_one();
        } else {
            state.live = true;
            drop(state);
            tokio::spawn(actor::run(rt.clone(), self.clone()));
        }
        Ok(())
    }

    /// The next queued event, if any.
    pub(crate) fn next_event(&self) -> Option<Event<O>> {
        self.state.lock().expect("slot poisoned").mailbox.pop_front()
    }

    /// Waits until an event may have been queued.
    pub(crate) async fn event_queued(&self) {
        self.ready.notified().await;
    }

    /// Marks the object not live if no event waits; its actor then ends. True if it did.
    pub(crate) fn try_hibernate(&self) -> bool {
        let mut state = self.state.lock().expect("slot poisoned");
        if !state.mailbox.is_empty() {
            return false;
        }
        state.live = false;
        state.mailbox = VecDeque::new();
        true
    }

    /// For an actor that ends without hibernating (shutdown, or a panic in the object): the
    /// events still queued are dropped, so their callers hear it, and the next event starts a
    /// new actor.
    pub(crate) fn abandon(&self) {
        let mut state = self.state.lock().expect("slot poisoned");
        state.live = false;
        let dropped = std::mem::take(&mut state.mailbox);
        drop(state);
        drop(dropped);
    }
}

impl<O: Object> AnySlot for Slot<O> {
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn core(&self) -> &Arc<SlotCore> {
        &self.core
    }

    fn is_live(&self) -> bool {
        self.state.lock().expect("slot poisoned").live
    }

    fn remove_if_unused(&self) -> bool {
        let mut state = self.state.lock().expect("slot poisoned");
        if !state.live && self.core.sockets.is_empty() {
            state.removed = true;
        }
        state.removed
    }

    fn message(self: Arc<Self>, rt: &Runtime, conn: Arc<SocketConn>, frame: Frame, done: oneshot::Sender<()>) {
        // A slot with sockets is never removed, so the event always lands.
        let _ = self.send(rt, Event::Message(conn, frame, done));
    }

    fn close(self: Arc<Self>, rt: &Runtime, id: SocketId, code: u16, reason: String, done: oneshot::Sender<()>) {
        let _ = self.send(rt, Event::Close(id, code, reason, done));
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How the runtime reaches a class it only knows by name (alarms after a restart, effects,
/// calls from other nodes).
trait Class: Send + Sync + 'static {
    /// The class name, shared by every address of the class.
    fn name(&self) -> &Arc<str>;
    fn auto_response(&self) -> Option<&Arc<AutoResponse>>;
    fn fire_alarm(&self, rt: &Runtime, name: &str);
    fn effect_done(&self, rt: &Runtime, name: &str, done: EffectDone);
    /// A call whose request and reply are JSON: from another node.
    fn call_json(&self, rt: &Runtime, name: &str, request: &str, reply: bool) -> BoxFuture<Result<String, CallError>>;
    /// The slot of `name`, for the events of a socket of another node.
    fn slot(&self, rt: &Runtime, name: &str) -> Arc<dyn AnySlot>;
    /// Offers a socket (of another node) to the object `name`; true if it was accepted.
    fn connect(&self, rt: &Runtime, name: &str, socket: NewSocket) -> BoxFuture<Result<bool, CallError>>;
}

struct ClassOf<O> {
    name: Arc<str>,
    auto_response: Option<Arc<AutoResponse>>,
    _class: PhantomData<fn() -> O>,
}

impl<O: Object> Class for ClassOf<O> {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn auto_response(&self) -> Option<&Arc<AutoResponse>> {
        self.auto_response.as_ref()
    }

    fn fire_alarm(&self, rt: &Runtime, name: &str) {
        rt.send_event::<O>(name, Event::Alarm);
    }

    fn effect_done(&self, rt: &Runtime, name: &str, done: EffectDone) {
        rt.send_event::<O>(name, Event::EffectDone(Box::new(done)));
    }

    fn call_json(&self, rt: &Runtime, name: &str, request: &str, reply: bool) -> BoxFuture<Result<String, CallError>> {
        let request: O::Request = match serde_json::from_str(request) {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(CallError::Unreachable(e.to_string())))),
        };
        if !reply {
            rt.send_event::<O>(name, Event::Call(request, None));
            return Box::pin(std::future::ready(Ok(String::new())));
        }
        let (tx, rx) = oneshot::channel();
        rt.send_event::<O>(name, Event::Call(request, Some(tx)));
        Box::pin(async move {
            let reply = rx.await.unwrap_or(Err(CallError::ShuttingDown))?;
            serde_json::to_string(&reply).map_err(|e| CallError::Unreachable(e.to_string()))
        })
    }

    fn slot(&self, rt: &Runtime, name: &str) -> Arc<dyn AnySlot> {
        rt.slot::<O>(name)
    }

    fn connect(&self, rt: &Runtime, name: &str, socket: NewSocket) -> BoxFuture<Result<bool, CallError>> {
        let (tx, rx) = oneshot::channel();
        rt.send_event::<O>(name, Event::Connect(Box::new(socket), tx));
        Box::pin(async move { rx.await.unwrap_or(Err(CallError::ShuttingDown)) })
    }
}

/// Values registered with [`RuntimeBuilder::setting`], by type.
pub(crate) type Settings = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

pub(crate) struct Inner {
    pub(crate) config: RuntimeConfig,
    pub(crate) settings: Arc<Settings>,
    pub(crate) store: Arc<Store>,
    pub(crate) alarms: Arc<Alarms>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) clock: Clock,
    pub(crate) hub: Hub,
    pub(crate) sockets: SocketIndex,
    pub(crate) outbox: Outbox,
    pub(crate) cluster: Option<Arc<dyn Cluster>>,
    pub(crate) creations: Option<crate::creation::Creations>,
    /// In a cluster: whether this node numbers the topic histories (it held the lease when last
    /// asked).
    pub(crate) numbering: AtomicBool,
    /// In a cluster: objects' publications on their way to the numbering node, in order.
    pub(crate) routed: Option<tokio::sync::mpsc::UnboundedSender<Publication>>,
    classes: HashMap<&'static str, Arc<dyn Class>>,
    slots: Mutex<HashMap<Address, Arc<dyn AnySlot>>>,
}

/// A running set of durable objects over one storage backend. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

/// Registers classes, topic options, the effect runner and the cluster, then starts a
/// [`Runtime`].
pub struct RuntimeBuilder {
    config: RuntimeConfig,
    backend: Arc<dyn Backend>,
    classes: HashMap<&'static str, Arc<dyn Class>>,
    settings: Settings,
    topics: Vec<(String, TopicOptions)>,
    runner: Option<Arc<dyn EffectRunner>>,
    cluster: Option<Arc<dyn Cluster>>,
    clock: Option<Clock>,
}

/// The address whose lease makes a node the one that numbers a cluster's topic histories.
pub(crate) fn histories_address() -> Address {
    Address::new(RESERVED_CLASS, "histories")
}

/// Where topic histories are stored.
pub(crate) fn topics_address() -> Address {
    Address::new(RESERVED_CLASS, "topics")
}

impl RuntimeBuilder {
    /// Registers the object class `O`.
    ///
    /// # Panics
    /// If another class with the same `CLASS` name is registered, or the name starts with `_`
    /// (the runtime's own).
    pub fn class<O: Object>(mut self) -> Self {
        assert!(
            !O::CLASS.starts_with('_'),
            "class names starting with _ are the runtime's own"
        );
        let class = ClassOf::<O> {
            name: O::CLASS.into(),
            auto_response: O::auto_response().map(Arc::new),
            _class: PhantomData,
        };
        let previous = self.classes.insert(O::CLASS, Arc::new(class));
        assert!(previous.is_none(), "object class {:?} registered twice", O::CLASS);
        self
    }

    /// Makes `value` readable by every object through [`Context::setting`](crate::Context::setting)
    /// (one value per type; a later one replaces an earlier one).
    pub fn setting<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.settings.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// Options for the topics matching `pattern`: an exact name, or a prefix followed by `*`.
    /// The first registered pattern a topic matches applies.
    pub fn topics(mut self, pattern: &str, options: TopicOptions) -> Self {
        self.topics.push((pattern.to_string(), options));
        self
    }

    /// What runs the effects objects enqueue. Without one, effects wait (and are retried).
    pub fn effects(mut self, runner: Arc<dyn EffectRunner>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// Joins a cluster. Without one the runtime is a single node, with no cluster code on any path.
    pub fn cluster(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The clock to run on. Default: one that reads the system time at start.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Starts the runtime: the storage writer, stored topic histories and effects, and the alarm
    /// scheduler with every stored alarm. Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Runtime, StorageError> {
        let clock = self.clock.unwrap_or_default();
        let stats = Arc::new(Stats::default());
        let store = Store::start(self.backend.clone(), stats.clone());
        let alarms = self.backend.alarms().await?;
        let history = self.backend.list(&topics_address(), &ListOptions::default()).await?;
        let effects = self.backend.list(&outbox_address(), &ListOptions::default()).await?;
        let tag = match &self.cluster {
            Some(c) => c.socket_tag(),
            None => {
                let mut r = [0u8; 4];
                getrandom::fill(&mut r).expect("the OS has randomness");
                u32::from_le_bytes(r) & 0xFF_FFFF
            }
        };
        let (routed, to_route) = match &self.cluster {
            Some(_) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let rt = Runtime {
            inner: Arc::new(Inner {
                numbering: AtomicBool::new(false),
                routed,
                outbox: Outbox::new(self.runner, self.config.effect_retry),
                creations: self
                    .config
                    .new_objects_per_origin_per_minute
                    .map(crate::creation::Creations::new),
                config: self.config,
                settings: Arc::new(self.settings),
                store,
                alarms: Arc::new(Alarms::default()),
                stats,
                shutdown: CancellationToken::new(),
                hub: Hub::new(self.topics),
                sockets: SocketIndex::new(tag),
                cluster: self.cluster,
                clock,
                classes: self.classes,
                slots: Mutex::new(HashMap::new()),
            }),
        };
        for (address, at) in alarms {
            rt.inner.alarms.set(&address, Some(at));
        }
        let stale = rt.inner.hub.load(history, clock.now_ms());
        if !stale.is_empty() {
            let writes = ObjectWrites {
                address: topics_address(),
                ops: stale,
            };
            rt.inner.store.submit(writes, Arc::new(Health::default()))?;
        }
        rt.inner.outbox.load(&rt, effects);
        if let Some(cluster) = &rt.inner.cluster {
            cluster.join(LocalNode::new(&rt));
        }
        if let Some(mut to_route) = to_route {
            let weak = Arc::downgrade(&rt.inner);
            tokio::spawn(async move {
                while let Some(publication) = to_route.recv().await {
                    let Some(inner) = weak.upgrade() else { return };
                    if let Err(e) = (Runtime { inner }).publish(publication).await {
                        tracing::warn!(error = %e, "an object's publication was not sent");
                    }
                }
            });
        }
        tokio::spawn(crate::alarm::run(Arc::downgrade(&rt.inner)));
        Ok(rt)
    }
}

/// How a subscription is made.
#[derive(Default)]
pub struct Subscription {
    /// The subscriber's user id, for presence.
    pub user: Option<String>,
    /// Recover what was published after this position before anything new.
    pub since: Option<Position>,
    /// The frame that answers the subscription, queued before the recovered ones.
    pub reply: Option<ReplyFrame>,
}

/// What [`Runtime::object_status`] tells of an object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ObjectStatus {
    /// Its instance is in memory (not hibernated, not yet started).
    pub awake: bool,
    /// Sockets it holds, awake or hibernated.
    pub sockets: usize,
}

/// What [`Runtime::inspect`] shows of an object.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDetail {
    pub awake: bool,
    pub sockets: Vec<SocketDetail>,
    /// Its stored keys, in order (not the writes of an event still committing).
    pub keys: Vec<String>,
    /// There are more keys than were listed.
    pub more_keys: bool,
    /// When its alarm is due (ms since the epoch).
    pub alarm: Option<i64>,
    pub outbox: OutboxStats,
}

/// One socket of an object, as [`Runtime::inspect`] shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SocketDetail {
    pub id: String,
    pub tags: Vec<String>,
    pub attachment_bytes: usize,
    pub topics: Vec<String>,
}

/// Why a publish from outside an object failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("the publication's history could not be stored; nothing was sent")]
    CommitFailed,
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The node that numbers the cluster's histories could not be reached or did not answer.
    #[error("the publication could not reach the node that numbers histories: {0}")]
    Unreachable(String),
}

impl Runtime {
    /// A runtime over `backend`; register classes on the builder, then `start` it.
    pub fn builder(config: RuntimeConfig, backend: Arc<dyn Backend>) -> RuntimeBuilder {
        RuntimeBuilder {
            config,
            backend,
            classes: HashMap::new(),
            settings: HashMap::new(),
            topics: Vec::new(),
            runner: None,
            cluster: None,
            clock: None,
        }
    }

    /// A handle on the object `(O::CLASS, name)`. Creating it costs nothing; the object starts
    /// on its first event.
    pub fn object<O: Object>(&self, name: &str) -> Stub<O> {
        Stub {
            rt: self.clone(),
            name: name.into(),
            _class: PhantomData,
        }
    }

    /// Milliseconds since the epoch, from the runtime's clock (see [`Clock`]).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The node that runs `address`: `"local"` on a single node; in a cluster, the node
    /// holding it as far as this one knows (`None`: no node holds it now). Takes nothing.
    pub fn owner_of(&self, address: &Address) -> Option<String> {
        match &self.inner.cluster {
            Some(cluster) => cluster.holder(address),
            None => Some("local".into()),
        }
    }

    /// The id of this node in its cluster (`None` on a single node).
    pub fn node_id(&self) -> Option<String> {
        self.inner.cluster.as_ref().map(|c| c.node_id().to_string())
    }

    /// Whether the object at `address` is in memory here, and how many sockets it holds; `None`
    /// when no class of that name is registered.
    pub fn object_status(&self, address: &Address) -> Option<ObjectStatus> {
        self.inner.classes.get(&*address.class)?;
        let slots = self.inner.slots.lock().expect("registry poisoned");
        Some(match slots.get(address) {
            Some(slot) => ObjectStatus {
                awake: slot.is_live(),
                sockets: slot.core().sockets.len(),
            },
            None => ObjectStatus::default(),
        })
    }

    /// What an operator may see of an object, without waking it: its sockets (tags, topics,
    /// attachment size), its stored keys (the first `max_keys`, in order), its alarm and its
    /// outbox. `None` when no class of that name is registered.
    pub async fn inspect(&self, address: &Address, max_keys: usize) -> Option<Result<ObjectDetail, StorageError>> {
        let status = self.object_status(address)?;
        let sockets = {
            let slots = self.inner.slots.lock().expect("registry poisoned");
            slots.get(address).map_or_else(Vec::new, |slot| {
                let set = &slot.core().sockets;
                set.conns(None)
                    .into_iter()
                    .map(|conn| SocketDetail {
                        id: conn.id().to_string(),
                        tags: set.tags(conn.id()),
                        attachment_bytes: set.attachment(conn.id()).map_or(0, |a| a.len()),
                        topics: self.inner.sockets.topics(conn.id()),
                    })
                    .collect()
            })
        };
        let listed = self
            .inner
            .store
            .backend
            .list(address, &ListOptions::default().limit(max_keys + 1))
            .await;
        Some(listed.map(|rows| ObjectDetail {
            awake: status.awake,
            sockets,
            more_keys: rows.len() > max_keys,
            keys: rows.into_iter().take(max_keys).map(|(key, _)| key).collect(),
            alarm: self.inner.alarms.get(address),
            outbox: self.outbox(address),
        }))
    }

    /// Counters of this runtime.
    pub fn stats(&self) -> StatsSnapshot {
        let slots = self.inner.slots.lock().expect("registry poisoned");
        let mut hibernated = 0;
        let mut sockets = 0;
        for slot in slots.values() {
            let n = slot.core().sockets.len() as u64;
            sockets += n;
            if n > 0 && !slot.is_live() {
                hibernated += 1;
            }
        }
        drop(slots);
        let outbox = self.inner.outbox.totals(self.now_ms());
        let mut snapshot = self.inner.stats.snapshot(hibernated, sockets);
        snapshot.outbox_depth = outbox.depth as u64;
        snapshot.outbox_oldest_age_ms = outbox.oldest_age_ms as u64;
        snapshot.effects_succeeded = self.inner.outbox.succeeded.load(Ordering::Relaxed);
        snapshot.effect_attempts_failed = self.inner.outbox.failed_attempts.load(Ordering::Relaxed);
        snapshot.topics = self.inner.hub.topics().len() as u64;
        snapshot
    }

    /// Waits until `pred` holds for the runtime's counters, checking whenever an object wakes,
    /// hibernates or is evicted, a socket joins or leaves an object, an alarm fires or an effect
    /// succeeds.
    pub async fn wait_for_stats(&self, pred: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        loop {
            let changed = self.inner.stats.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let stats = self.stats();
            if pred(&stats) {
                return stats;
            }
            changed.await;
        }
    }

    /// Whether writes are being stored: not shutting down, and the last commit succeeded.
    pub fn is_ready(&self) -> bool {
        !self.inner.shutdown.is_cancelled() && self.inner.store.is_healthy()
    }

    /// Stops every actor after its current event, commits all submitted writes, and stops the
    /// storage writer. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.store.close().await;
    }

    /// The pending effects of one object.
    pub fn outbox(&self, address: &Address) -> OutboxStats {
        self.inner.outbox.stats(address, self.now_ms())
    }

    /// Every object with effects waiting, with its pending effects.
    pub fn outboxes(&self) -> Vec<(Address, OutboxStats)> {
        self.inner.outbox.all(self.now_ms())
    }

    // ---- sockets

    /// A new socket of this node, reachable by id until [`socket_ended`](Self::socket_ended).
    pub fn new_socket(&self, limits: QueueLimits) -> Arc<SocketConn> {
        self.inner.sockets.create(limits)
    }

    /// Forgets a socket that closed, and takes it out of every topic.
    pub fn socket_ended(&self, id: SocketId) {
        for topic in self.inner.sockets.remove(id) {
            self.left_topic(&topic, id);
        }
    }

    /// Sockets of this node.
    pub fn socket_count(&self) -> usize {
        self.inner.sockets.len()
    }

    /// Whether the socket with this id is open on this node.
    pub fn socket_is_open(&self, id: SocketId) -> bool {
        self.inner.sockets.get(id).is_some_and(|c| !c.is_closing())
    }

    /// When the gateway last auto-responded on a socket of this node (ms since the epoch; 0:
    /// never); `None` if no such socket is here.
    pub fn last_auto_response_ms(&self, id: SocketId) -> Option<u64> {
        self.inner.sockets.get(id).map(|c| c.last_auto_response_ms())
    }

    /// Queues a frame on a socket by id; false if no such socket is open here. A socket of
    /// another node is reached through the cluster (true: sent on its way).
    pub fn send_to_socket(&self, id: SocketId, frame: Frame) -> bool {
        if let Some(conn) = self.inner.sockets.get(id) {
            return conn.send(frame).is_ok();
        }
        self.socket_command(id, NodeMessage::SocketSend { socket: id, frame })
    }

    /// Closes a socket by id, after what was queued on it; false if no such socket is open.
    pub fn close_socket(&self, id: SocketId, code: u16, reason: &str) -> bool {
        if let Some(conn) = self.inner.sockets.get(id) {
            conn.close(code, reason);
            return true;
        }
        let reason = reason.to_string();
        self.socket_command(
            id,
            NodeMessage::SocketClose {
                socket: id,
                code,
                reason,
            },
        )
    }

    fn socket_command(&self, id: SocketId, message: NodeMessage) -> bool {
        match &self.inner.cluster {
            Some(cluster) if id.node_tag() != self.inner.sockets.tag() => match cluster.node_of_socket(id) {
                Some(node) => {
                    cluster.send(&node, message);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// The topics a socket of this node is subscribed to.
    pub fn socket_topics(&self, id: SocketId) -> Vec<String> {
        self.inner.sockets.topics(id)
    }

    // ---- topics

    /// Subscribes a socket of this node to a topic, now. (From inside an event, use
    /// [`Context::subscribe`](crate::Context::subscribe): it waits for the output gate.)
    pub fn subscribe(&self, id: SocketId, topic: &str, subscription: Subscription) -> Result<Recovery, TopicError> {
        valid_topic(topic)?;
        let conn = self.inner.sockets.get(id).ok_or(TopicError::UnknownSocket)?;
        Ok(self.subscribe_conn(&conn, topic, subscription))
    }

    pub(crate) fn subscribe_conn(&self, conn: &Arc<SocketConn>, topic: &str, subscription: Subscription) -> Recovery {
        let topic: Arc<str> = topic.into();
        if !self.inner.sockets.add_topic(conn.id(), &topic) {
            return Recovery {
                recovered: false,
                missed: 0,
                position: None,
            };
        }
        let user: Option<Arc<str>> = subscription.user.map(Arc::from);
        let (recovery, added) = self.inner.hub.subscribe(
            conn,
            &topic,
            user.clone(),
            subscription.since.as_ref(),
            subscription.reply,
            self.now_ms(),
        );
        if added {
            if let Some(cluster) = &self.inner.cluster
                && self.inner.hub.subscriber_count(&topic) == 1
            {
                cluster.interest(&topic, true);
            }
            self.presence_changed(&topic, conn.id(), user.as_deref(), true);
        }
        recovery
    }

    /// Takes a socket of this node out of a topic.
    pub fn unsubscribe(&self, id: SocketId, topic: &str) {
        self.inner.sockets.remove_topic(id, topic);
        self.left_topic(topic, id);
    }

    fn left_topic(&self, topic: &str, id: SocketId) {
        if let Some(user) = self.inner.hub.unsubscribe(id, topic) {
            if let Some(cluster) = &self.inner.cluster
                && self.inner.hub.subscriber_count(topic) == 0
            {
                cluster.interest(topic, false);
            }
            self.presence_changed(topic, id, user.as_deref(), false);
        }
    }

    fn presence_changed(&self, topic: &str, socket: SocketId, user: Option<&str>, joined: bool) {
        let Some(frames) = self.inner.hub.options(topic).and_then(|o| o.presence.clone()) else {
            return;
        };
        let change = crate::topic::PresenceChange {
            topic,
            socket,
            user,
            joined,
        };
        let publication = Publication::new(&[topic], frames(&change));
        let rt = self.clone();
        tokio::spawn(async move {
            let _ = rt.publish(publication).await;
        });
    }

    /// Who is subscribed to a topic, on this node.
    pub fn presence(&self, topic: &str) -> Presence {
        self.inner.hub.presence(topic)
    }

    /// A topic's history: its position now and how many entries it holds.
    pub fn topic_history(&self, topic: &str) -> Option<(Position, usize)> {
        self.inner.hub.history(topic)
    }

    /// Topics with subscribers or history on this node, with their subscriber counts.
    pub fn topics(&self) -> Vec<(String, usize)> {
        self.inner.hub.topics()
    }

    /// Publishes from outside any object: to the subscribers at once or, for topics with
    /// history, once the publication is durable. Returns how many sockets it reached on this
    /// node (other nodes are sent it, not counted).
    pub async fn publish(&self, publication: Publication) -> Result<usize, PublishError> {
        for topic in publication.topics() {
            valid_topic(topic)?;
        }
        if let Some((node, spec)) = self.history_numberer(&publication).await {
            return self.publish_at(&node, &spec).await;
        }
        let health = Arc::new(Health::default());
        let now = self.now_ms();
        let mut prepared = None;
        let ticket = self
            .inner
            .store
            .submit_with(health.clone(), || {
                let (p, ops) = self.inner.hub.prepare(&publication, now);
                prepared = Some(p);
                if ops.is_empty() {
                    Vec::new()
                } else {
                    vec![ObjectWrites {
                        address: topics_address(),
                        ops,
                    }]
                }
            })
            .map_err(|_| PublishError::ShuttingDown)?;
        let prepared = prepared.expect("set by submit_with");
        let Some(ticket) = ticket else {
            return Ok(self.deliver(&prepared));
        };
        let (tx, rx) = oneshot::channel();
        let rt = self.clone();
        let release = Output::run(move |released| {
            let _ = tx.send(released.then(|| rt.deliver(&prepared)));
        });
        self.inner.store.hold(ticket, &health, vec![release]);
        match rx.await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(PublishError::CommitFailed),
            Err(_) => Err(PublishError::ShuttingDown),
        }
    }

    /// In a cluster, one node numbers every topic history (the holder of one lease), so each
    /// history is one sequence whichever node a publication starts on. Returns that node when it
    /// is another one and the publication can be rendered there (a [`Publication::json_stamped`]);
    /// `None`: number it here.
    async fn history_numberer(&self, publication: &Publication) -> Option<(String, Arc<JsonPublication>)> {
        let cluster = self.inner.cluster.as_ref()?;
        if !self.inner.hub.has_history(publication.topics()) {
            return None;
        }
        match cluster.locate(&histories_address()).await {
            Ok(None) => {
                if !self.inner.numbering.swap(true, Ordering::AcqRel) {
                    // Histories numbered elsewhere until now may lack their last entries here:
                    // clients recovering across the change learn it plainly.
                    self.inner.hub.new_epochs();
                }
                None
            }
            Ok(Some(node)) => {
                self.inner.numbering.store(false, Ordering::Release);
                match &publication.spec {
                    Some(spec) => Some((node, spec.clone())),
                    None => {
                        tracing::warn!(
                            "a publication made from a closure is numbered where it starts, not by the cluster's numbering node"
                        );
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the node that numbers histories is unknown; numbering here");
                None
            }
        }
    }

    /// Has another node number, store and send a publication.
    async fn publish_at(&self, node: &str, spec: &JsonPublication) -> Result<usize, PublishError> {
        let cluster = self.inner.cluster.clone().expect("only in a cluster");
        let answer = cluster.request(node, NodeMessage::PublishHistory(spec.clone())).await;
        match answer {
            Ok(delivered) => Ok(delivered.parse().unwrap_or(0)),
            Err(CallError::ShuttingDown) => Err(PublishError::ShuttingDown),
            Err(e) => Err(PublishError::Unreachable(e.to_string())),
        }
    }

    /// A publication made in an object's event on a node that does not number histories: sent
    /// to the one that does, after the event's writes, in the order they were made.
    pub(crate) fn route_publication(&self, publication: Publication) {
        if let Some(routed) = &self.inner.routed {
            let _ = routed.send(publication);
        }
    }

    /// In a cluster, whether an object's publication goes to the cluster's numbering node
    /// instead of being numbered with the object's writes.
    pub(crate) fn routes(&self, publication: &Publication) -> bool {
        publication.spec.is_some()
            && !self.inner.numbering.load(Ordering::Acquire)
            && self.inner.hub.has_history(publication.topics())
    }

    /// Delivers a publication numbered here, here and to the other nodes with subscribers.
    pub(crate) fn deliver(&self, prepared: &Prepared) -> usize {
        if let Some(cluster) = &self.inner.cluster {
            cluster.publish(prepared);
        }
        self.inner.hub.deliver(prepared, self.now_ms(), false)
    }

    /// Delivers a publication another node numbered to this node's subscribers, and keeps a
    /// copy of its history entries here for clients that recover on this node.
    pub(crate) fn deliver_remote(&self, prepared: &Prepared) -> usize {
        self.inner.hub.deliver(prepared, self.now_ms(), true)
    }

    // ---- objects

    /// The slot of `(O::CLASS, name)`, created if needed. `O` must be registered.
    fn slot<O: Object>(&self, name: &str) -> Arc<Slot<O>> {
        let class = self.inner.classes[O::CLASS].name().clone();
        let address = Address {
            class,
            name: name.into(),
        };
        let mut slots = self.inner.slots.lock().expect("registry poisoned");
        let slot = slots
            .entry(address.clone())
            .or_insert_with(|| {
                Arc::new(Slot::<O> {
                    core: Arc::new(SlotCore {
                        address,
                        sockets: SocketSet::default(),
                        last_ticket: AtomicU64::new(0),
                        alarm_failures: AtomicU32::new(0),
                        stale: AtomicBool::new(false),
                    }),
                    state: Mutex::new(SlotState {
                        mailbox: VecDeque::new(),
                        live: false,
                        removed: false,
                    }),
                    ready: Notify::new(),
                })
            })
            .clone();
        slot.as_any().downcast::<Slot<O>>().expect("one class per class name")
    }

    fn send_event<O: Object>(&self, name: &str, mut event: Event<O>) {
        if !self.inner.classes.contains_key(O::CLASS) {
            return event.fail(CallError::UnknownClass(O::CLASS.into()));
        }
        if self.inner.shutdown.is_cancelled() {
            return event.fail(CallError::ShuttingDown);
        }
        loop {
            match self.slot::<O>(name).send(self, event) {
                Ok(()) => return,
                Err(back) => event = back,
            }
        }
    }

    /// Drops the slot at `address` if it has no instance and no sockets.
    pub(crate) fn remove_if_unused(&self, address: &Address) {
        let mut slots = self.inner.slots.lock().expect("registry poisoned");
        if slots.get(address).is_some_and(|s| s.remove_if_unused()) {
            slots.remove(address);
            drop(slots);
            if let Some(cluster) = &self.inner.cluster {
                cluster.released(address);
            }
        }
    }

    pub(crate) fn fire_alarm(&self, address: &Address) {
        if self.inner.cluster.is_some() {
            // Every node keeps every alarm; only the owner fires it. Others look again later,
            // in case the owner died before firing it.
            let (rt, address) = (self.clone(), address.clone());
            tokio::spawn(async move {
                match rt.owner(&address).await {
                    Ok(None) => rt.fire_owned_alarm(&address),
                    _ => {
                        let later = rt.now_ms() + rt.inner.config.alarm_retry.first.as_millis() as i64;
                        rt.inner.alarms.set_unless_changed(&address, later);
                    }
                }
            });
            return;
        }
        self.fire_owned_alarm(address);
    }

    fn fire_owned_alarm(&self, address: &Address) {
        match self.inner.classes.get(&*address.class) {
            Some(class) => class.fire_alarm(self, &address.name),
            None => tracing::warn!(%address, "alarm for an unregistered class dropped"),
        }
    }

    pub(crate) fn effect_done(&self, address: &Address, done: EffectDone) {
        match self.inner.classes.get(&*address.class) {
            Some(class) => class.effect_done(self, &address.name, done),
            None => tracing::warn!(%address, "effect of an unregistered class succeeded; nobody to tell"),
        }
    }

    /// A call from another node, request and reply in JSON.
    pub(crate) fn call_json(
        &self,
        class: &str,
        name: &str,
        request: &str,
        reply: bool,
    ) -> BoxFuture<Result<String, CallError>> {
        match self.inner.classes.get(class) {
            Some(c) => c.call_json(self, name, request, reply),
            None => Box::pin(std::future::ready(Err(CallError::UnknownClass(class.into())))),
        }
    }

    /// A socket of another node offered to an object here: a stand-in socket with the same id
    /// takes its place, and what the object sends it goes back to that node.
    pub(crate) fn connect_remote(
        &self,
        class: &str,
        name: &str,
        socket: SocketId,
        info: ConnectInfo,
    ) -> BoxFuture<Result<String, CallError>> {
        let (Some(class), Some(cluster)) = (self.inner.classes.get(class).cloned(), self.inner.cluster.clone()) else {
            return Box::pin(std::future::ready(Err(CallError::UnknownClass(class.into()))));
        };
        let Some(origin) = cluster.node_of_socket(socket) else {
            return Box::pin(std::future::ready(Err(CallError::Unreachable(format!(
                "no node holds socket {socket}"
            )))));
        };
        let conn = self.inner.sockets.insert(socket, QueueLimits::default());
        // Drains the stand-in's queue to the node that holds the real socket.
        let forwarded = conn.clone();
        tokio::spawn(async move {
            loop {
                let batch = forwarded.next_batch().await;
                for frame in batch.frames {
                    cluster.send(&origin, NodeMessage::SocketSend { socket, frame });
                }
                if let Some(close) = batch.close {
                    let (code, reason) = (close.code, close.reason);
                    cluster.send(&origin, NodeMessage::SocketClose { socket, code, reason });
                    return;
                }
            }
        });
        let (rt, name) = (self.clone(), name.to_string());
        Box::pin(async move {
            let accepted = class
                .connect(
                    &rt,
                    &name,
                    NewSocket {
                        conn: conn.clone(),
                        info,
                    },
                )
                .await;
            if !matches!(accepted, Ok(true)) {
                rt.socket_ended(socket);
                conn.close(1000, "");
            }
            accepted.map(|a| a.to_string())
        })
    }

    /// A frame of a socket of another node, for the object here that accepted it.
    pub(crate) fn remote_frame(
        &self,
        class: &str,
        name: &str,
        socket: SocketId,
        frame: Frame,
    ) -> BoxFuture<Result<String, CallError>> {
        let (Some(class), Some(conn)) = (self.inner.classes.get(class), self.inner.sockets.get(socket)) else {
            return Box::pin(std::future::ready(Ok(false.to_string())));
        };
        let (tx, rx) = oneshot::channel();
        class.slot(self, name).message(self, conn, frame, tx);
        Box::pin(async move {
            let _ = rx.await;
            Ok(true.to_string())
        })
    }

    /// That socket closed on its node.
    pub(crate) fn remote_closed(
        &self,
        class: &str,
        name: &str,
        socket: SocketId,
        code: u16,
        reason: String,
    ) -> BoxFuture<Result<String, CallError>> {
        let Some(class) = self.inner.classes.get(class) else {
            return Box::pin(std::future::ready(Ok(false.to_string())));
        };
        let (tx, rx) = oneshot::channel();
        class.slot(self, name).close(self, socket, code, reason, tx);
        let rt = self.clone();
        Box::pin(async move {
            let _ = rx.await;
            if let Some(conn) = rt.inner.sockets.get(socket) {
                // Ends the forwarder; the socket it would tell is gone already.
                conn.close(1000, "");
            }
            rt.socket_ended(socket);
            Ok(true.to_string())
        })
    }

    /// Where `address` lives: `None` here, or the node that owns it.
    async fn owner(&self, address: &Address) -> Result<Option<String>, CallError> {
        match &self.inner.cluster {
            Some(cluster) => cluster.locate(address).await,
            None => Ok(None),
        }
    }

    /// This node lost `address` to another: its memory goes (the next incarnation here starts
    /// from storage) and its sockets here reconnect, to reach the new owner.
    pub(crate) fn disowned(&self, address: &Address) {
        let slot = self
            .inner
            .slots
            .lock()
            .expect("registry poisoned")
            .get(address)
            .cloned();
        if let Some(slot) = slot {
            slot.core().stale.store(true, Ordering::Release);
            for conn in slot.core().sockets.conns(None) {
                conn.close(1012, "the object moved to another node");
            }
        }
    }
}

/// A handle on one object, for calls and for connecting sockets.
pub struct Stub<O: Object> {
    rt: Runtime,
    name: Arc<str>,
    _class: PhantomData<fn() -> O>,
}

impl<O: Object> Clone for Stub<O> {
    fn clone(&self) -> Self {
        Stub {
            rt: self.rt.clone(),
            name: self.name.clone(),
            _class: PhantomData,
        }
    }
}

impl<O: Object> Stub<O> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> Address {
        Address::new(O::CLASS, &self.name)
    }

    /// Sends a request; the reply arrives once the writes it depends on are durable. An object
    /// owned by another node is called there.
    pub async fn call(&self, request: O::Request) -> Result<O::Reply, CallError> {
        if let Some(node) = self.rt.owner(&self.address()).await? {
            let json = serde_json::to_string(&request).map_err(|e| CallError::Unreachable(e.to_string()))?;
            return match self.call_remote(&node, &json).await {
                // Never delivered (the owner just left): where it lives now may be known.
                Err(CallError::Unreachable(_)) => match self.rt.owner(&self.address()).await? {
                    Some(now) => self.call_remote(&now, &json).await,
                    None => {
                        let request = serde_json::from_str(&json).map_err(|e| CallError::Unreachable(e.to_string()))?;
                        self.call_local(request).await
                    }
                },
                answer => answer,
            };
        }
        self.call_local(request).await
    }

    async fn call_local(&self, request: O::Request) -> Result<O::Reply, CallError> {
        let (tx, rx) = oneshot::channel();
        self.rt.send_event::<O>(&self.name, Event::Call(request, Some(tx)));
        rx.await.unwrap_or(Err(CallError::ShuttingDown))
    }

    async fn call_remote(&self, node: &str, request: &str) -> Result<O::Reply, CallError> {
        let cluster = self.rt.inner.cluster.clone().expect("checked by the caller");
        let message = NodeMessage::Call {
            class: O::CLASS.into(),
            name: self.name.to_string(),
            request: request.to_string(),
        };
        let reply = cluster.request(node, message).await?;
        serde_json::from_str(&reply).map_err(|e| CallError::Unreachable(e.to_string()))
    }

    /// Sends a request without waiting for the reply (a message).
    pub fn tell(&self, request: O::Request) {
        let Some(cluster) = self.rt.inner.cluster.clone() else {
            return self.rt.send_event::<O>(&self.name, Event::Call(request, None));
        };
        let stub = self.clone();
        tokio::spawn(async move {
            match stub.rt.owner(&stub.address()).await {
                Ok(None) => stub.rt.send_event::<O>(&stub.name, Event::Call(request, None)),
                Ok(Some(node)) => match serde_json::to_string(&request) {
                    Ok(request) => cluster.send(
                        &node,
                        NodeMessage::Tell {
                            class: O::CLASS.into(),
                            name: stub.name.to_string(),
                            request,
                        },
                    ),
                    Err(e) => tracing::error!(error = %e, "a message could not be encoded; dropped"),
                },
                Err(e) => tracing::warn!(address = %stub.address(), error = %e, "a message found no owner; dropped"),
            }
        });
    }

    /// Offers a new socket to the object. On acceptance, returns the handle through which the
    /// gateway delivers the socket's frames and its close.
    pub async fn connect(&self, conn: Arc<SocketConn>, info: ConnectInfo) -> Result<Option<ObjectSocket>, CallError> {
        let class = self
            .rt
            .inner
            .classes
            .get(O::CLASS)
            .ok_or_else(|| CallError::UnknownClass(O::CLASS.into()))?;
        let auto_response = class.auto_response().cloned();
        if let Some(node) = self.rt.owner(&self.address()).await? {
            match self
                .connect_remote(node, conn.clone(), info.clone(), auto_response.clone())
                .await
            {
                // Never delivered (the owner just left): where it lives now may be known.
                Err(CallError::Unreachable(_)) => {
                    if let Some(now) = self.rt.owner(&self.address()).await? {
                        return self.connect_remote(now, conn, info, auto_response).await;
                    }
                }
                answer => return answer,
            }
        }
        let (tx, rx) = oneshot::channel();
        let socket = NewSocket {
            conn: conn.clone(),
            info,
        };
        self.rt
            .send_event::<O>(&self.name, Event::Connect(Box::new(socket), tx));
        if !rx.await.unwrap_or(Err(CallError::ShuttingDown))? {
            return Ok(None);
        }
        let slot: Arc<dyn AnySlot> = self.rt.slot::<O>(&self.name);
        Ok(Some(ObjectSocket {
            rt: self.rt.clone(),
            target: Target::Local(slot),
            conn,
            auto_response,
        }))
    }

    /// Offers the socket to the object on the node that owns it; its frames and close are
    /// forwarded there, and what the object sends comes back.
    async fn connect_remote(
        &self,
        node: String,
        conn: Arc<SocketConn>,
        info: ConnectInfo,
        auto_response: Option<Arc<AutoResponse>>,
    ) -> Result<Option<ObjectSocket>, CallError> {
        let cluster = self.rt.inner.cluster.clone().expect("checked by the caller");
        let message = NodeMessage::Connect {
            class: O::CLASS.into(),
            name: self.name.to_string(),
            socket: conn.id(),
            info,
        };
        if cluster.request(&node, message).await? != "true" {
            return Ok(None);
        }
        Ok(Some(ObjectSocket {
            rt: self.rt.clone(),
            target: Target::Remote(Box::new(RemoteObject {
                cluster,
                node,
                class: O::CLASS,
                name: self.name.clone(),
            })),
            conn,
            auto_response,
        }))
    }
}

/// Where an accepted socket's frames go.
enum Target {
    Local(Arc<dyn AnySlot>),
    /// The object lives on another node (boxed: most sockets are local, and small).
    Remote(Box<RemoteObject>),
}

struct RemoteObject {
    cluster: Arc<dyn Cluster>,
    node: String,
    class: &'static str,
    name: Arc<str>,
}

impl RemoteObject {
    /// Sends the owner one of the socket's events (made from the object's class and name) and
    /// waits until it is handled there.
    async fn forward(&self, message: impl FnOnce(String, String) -> NodeMessage) -> Result<String, CallError> {
        let message = message(self.class.to_string(), self.name.to_string());
        self.cluster.request(&self.node, message).await
    }
}

/// The gateway's handle on an accepted socket: it delivers frames (answering auto-responses
/// itself) and the close, waking the object when needed.
pub struct ObjectSocket {
    rt: Runtime,
    target: Target,
    conn: Arc<SocketConn>,
    auto_response: Option<Arc<AutoResponse>>,
}

impl ObjectSocket {
    /// Delivers a frame; returns once the object has handled it (or the gateway answered it).
    pub async fn frame(&self, frame: Frame) {
        if let (Frame::Text(text), Some(auto)) = (&frame, &self.auto_response) {
            let now = self.rt.now_ms();
            if let Some(response) = auto.respond(text, now) {
                let _ = self.conn.send(Frame::text(response));
                self.conn.set_last_auto_response_ms(now as u64);
                self.rt.inner.stats.auto_responses.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        match &self.target {
            Target::Local(slot) => {
                let (tx, rx) = oneshot::channel();
                slot.clone().message(&self.rt, self.conn.clone(), frame, tx);
                let _ = rx.await;
            }
            Target::Remote(remote) => {
                let socket = self.conn.id();
                let message = |class, name| NodeMessage::SocketFrame {
                    class,
                    name,
                    socket,
                    frame,
                };
                // Waiting for the owner keeps the socket's frames in order, one at a time.
                if let Err(e) = remote.forward(message).await {
                    // The owner is gone or no longer has the socket: the client reconnects and
                    // finds the object where it lives now.
                    tracing::warn!(socket = %self.conn.id(), error = %e, "a frame could not reach its object's node; the socket is closed");
                    self.conn.close(1012, "the object's node is unreachable");
                }
            }
        }
    }

    /// Delivers the socket's close; returns once the object has handled it.
    pub async fn closed(&self, code: u16, reason: String) {
        match &self.target {
            Target::Local(slot) => {
                let (tx, rx) = oneshot::channel();
                slot.clone().close(&self.rt, self.conn.id(), code, reason, tx);
                let _ = rx.await;
            }
            Target::Remote(remote) => {
                let socket = self.conn.id();
                let message = |class, name| NodeMessage::SocketClosed {
                    class,
                    name,
                    socket,
                    code,
                    reason,
                };
                let _ = remote.forward(message).await;
            }
        }
    }
}
