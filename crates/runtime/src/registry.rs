//! The runtime: registered classes, one slot per addressed object, and the handles callers and
//! the gateway use to reach objects.
//!
//! A *slot* is what stays of an object while it hibernates: its address, its sockets (with tags
//! and attachments), its auto-response and the ticket of its last write. Its mailbox is a queue
//! under the slot's lock, empty (and unallocated) while it sleeps; sending to a slot with no live
//! instance starts an actor. A slot is removed when it has neither an instance nor sockets.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::actor;
use crate::address::Address;
use crate::alarm::Alarms;
use crate::auto_response::AutoResponse;
use crate::object::{ConnectInfo, NewSocket, Object};
use crate::socket::{Frame, SocketConn, SocketId};
use crate::socket_set::SocketSet;
use crate::stats::{Stats, StatsSnapshot};
use crate::storage::{Backend, StorageError};
use crate::store::Store;

/// Settings of a runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Idle time after which an object's instance is dropped from memory. Default: 10 s.
    pub hibernate_after: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            hibernate_after: Duration::from_secs(10),
        }
    }
}

/// Why a call to an object failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no object class {0:?} is registered")]
    UnknownClass(&'static str),
    #[error("the object could not start: {0}")]
    Start(StorageError),
    #[error("the object's writes could not be stored; nothing was changed")]
    CommitFailed,
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, CallError>>;

/// An event for an object of class `O`.
pub(crate) enum Event<O: Object> {
    Call(O::Request, Reply<O::Reply>),
    Connect(NewSocket, Reply<bool>),
    /// A frame from one of the object's sockets (the socket itself: no lookup on the hot path).
    Message(Arc<SocketConn>, Frame, oneshot::Sender<()>),
    Close(SocketId, u16, String, oneshot::Sender<()>),
    Alarm,
}

/// The part of a slot that objects and the gateway share, whatever the class.
pub(crate) struct SlotCore {
    pub(crate) address: Address,
    pub(crate) sockets: SocketSet,
    pub(crate) auto_response: RwLock<Option<Arc<AutoResponse>>>,
    /// Ticket of the last writes of any incarnation, so a new one's outputs never overtake an
    /// old one's.
    pub(crate) last_ticket: AtomicU64,
    /// Failed deliveries of the current alarm, for backoff.
    pub(crate) alarm_failures: AtomicU32,
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

/// How the runtime reaches a class it only knows by name (alarms after a restart).
trait Class: Send + Sync + 'static {
    /// The class name, shared by every address of the class.
    fn name(&self) -> &Arc<str>;
    fn fire_alarm(&self, rt: &Runtime, name: &str);
}

struct ClassOf<O> {
    name: Arc<str>,
    _class: PhantomData<fn() -> O>,
}

impl<O: Object> Class for ClassOf<O> {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn fire_alarm(&self, rt: &Runtime, name: &str) {
        rt.deliver::<O>(name, Event::Alarm);
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
    classes: HashMap<&'static str, Arc<dyn Class>>,
    slots: Mutex<HashMap<Address, Arc<dyn AnySlot>>>,
}

/// A running set of durable objects over one storage backend. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

/// Registers classes, then starts a [`Runtime`].
pub struct RuntimeBuilder {
    config: RuntimeConfig,
    backend: Arc<dyn Backend>,
    classes: HashMap<&'static str, Arc<dyn Class>>,
    settings: Settings,
}

impl RuntimeBuilder {
    /// Registers the object class `O`.
    ///
    /// # Panics
    /// If another class with the same `CLASS` name is registered, or the name is
    /// `_switchboard` (the runtime's own).
    pub fn class<O: Object>(mut self) -> Self {
        let class = ClassOf::<O> {
            name: O::CLASS.into(),
            _class: PhantomData,
        };
        assert_ne!(
            O::CLASS,
            crate::store::RESERVED_CLASS,
            "that class name is the runtime's own"
        );
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

    /// Starts the runtime: the storage writer, and the alarm scheduler with every stored alarm.
    /// Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Runtime, StorageError> {
        let stats = Arc::new(Stats::default());
        let store = Store::start(self.backend.clone(), stats.clone());
        let backend = self.backend.clone();
        let stored = tokio::task::spawn_blocking(move || backend.alarms())
            .await
            .map_err(|e| StorageError::Backend(e.to_string()))??;
        let rt = Runtime {
            inner: Arc::new(Inner {
                config: self.config,
                settings: Arc::new(self.settings),
                store,
                alarms: Arc::new(Alarms::default()),
                stats,
                shutdown: CancellationToken::new(),
                classes: self.classes,
                slots: Mutex::new(HashMap::new()),
            }),
        };
        for (address, at) in stored {
            rt.inner.alarms.set(&address, Some(at));
        }
        tokio::spawn(crate::alarm::run(Arc::downgrade(&rt.inner)));
        Ok(rt)
    }
}

impl Runtime {
    /// A runtime over `backend`; register classes on the builder, then `start` it.
    pub fn builder(config: RuntimeConfig, backend: Arc<dyn Backend>) -> RuntimeBuilder {
        RuntimeBuilder {
            config,
            backend,
            classes: HashMap::new(),
            settings: HashMap::new(),
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
        self.inner.stats.snapshot(hibernated, sockets)
    }

    /// Whether writes are being stored: not shutting down, and the last commit succeeded.
    pub fn is_ready(&self) -> bool {
        !self.inner.shutdown.is_cancelled() && self.inner.store.is_healthy()
    }

    /// Stops every actor after its current event, commits all submitted writes, and stops the
    /// storage writer. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let store = self.inner.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }

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
                        auto_response: RwLock::new(None),
                        last_ticket: AtomicU64::new(0),
                        alarm_failures: AtomicU32::new(0),
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

    pub(crate) fn deliver<O: Object>(&self, name: &str, mut event: Event<O>) {
        if !self.inner.classes.contains_key(O::CLASS) {
            if let Event::Call(_, reply) = event {
                let _ = reply.send(Err(CallError::UnknownClass(O::CLASS)));
            }
            return;
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
        }
    }

    pub(crate) fn fire_alarm(&self, address: &Address) {
        match self.inner.classes.get(&*address.class) {
            Some(class) => class.fire_alarm(self, &address.name),
            None => tracing::warn!(%address, "alarm for an unregistered class dropped"),
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

    /// Sends a request; the reply arrives once the writes it depends on are durable.
    pub async fn call(&self, request: O::Request) -> Result<O::Reply, CallError> {
        let (tx, rx) = oneshot::channel();
        self.rt.deliver::<O>(&self.name, Event::Call(request, tx));
        rx.await.unwrap_or(Err(CallError::ShuttingDown))
    }

    /// Offers a new socket to the object. On acceptance, returns the handle through which the
    /// gateway delivers the socket's frames and its close.
    pub async fn connect(&self, conn: Arc<SocketConn>, info: ConnectInfo) -> Result<Option<ObjectSocket>, CallError> {
        let (tx, rx) = oneshot::channel();
        let socket = NewSocket {
            conn: conn.clone(),
            info,
        };
        self.rt.deliver::<O>(&self.name, Event::Connect(socket, tx));
        if !rx.await.unwrap_or(Err(CallError::ShuttingDown))? {
            return Ok(None);
        }
        let slot: Arc<dyn AnySlot> = self.rt.slot::<O>(&self.name);
        Ok(Some(ObjectSocket {
            rt: self.rt.clone(),
            slot,
            conn,
        }))
    }
}

/// The gateway's handle on an accepted socket: it delivers frames (answering auto-responses
/// itself) and the close, waking the object when needed.
pub struct ObjectSocket {
    rt: Runtime,
    slot: Arc<dyn AnySlot>,
    conn: Arc<SocketConn>,
}

impl ObjectSocket {
    /// Delivers a frame; returns once the object has handled it (or the gateway answered it).
    pub async fn frame(&self, frame: Frame) {
        if let Frame::Text(text) = &frame {
            let auto = self
                .slot
                .core()
                .auto_response
                .read()
                .expect("auto-response lock poisoned")
                .clone();
            if let Some(auto) = auto {
                let now = switchboard_proto::time::now_ms();
                if let Some(response) = auto.respond(text, now) {
                    let _ = self.conn.send(Frame::text(response));
                    self.conn.set_last_auto_response_ms(now as u64);
                    self.rt.inner.stats.auto_responses.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        self.slot.clone().message(&self.rt, self.conn.clone(), frame, tx);
        let _ = rx.await;
    }

    /// Delivers the socket's close; returns once the object has handled it.
    pub async fn closed(&self, code: u16, reason: String) {
        let (tx, rx) = oneshot::channel();
        self.slot.clone().close(&self.rt, self.conn.id(), code, reason, tx);
        let _ = rx.await;
    }
}
