//! Switchboard nodes as one cluster on NATS JetStream: object ownership by lease, calls and
//! socket traffic forwarded to the owner, topic publications fanned out by subject interest, and
//! objects' storage replicated by JetStream.
//!
//! - **Leases.** A KV bucket holds one key per object a node runs, its value the node's id.
//!   A node takes a free object with create-if-absent, renews its leases by compare-and-swap on
//!   their revisions, and the bucket's TTL lets a dead node's leases lapse. Taking an object
//!   fences its storage ([`storage`]), so a node that lost a lease cannot commit.
//! - **Forwarding.** Each node answers requests on `<prefix>.node.<id>`; what crosses is the
//!   runtime's [`NodeMessage`], in JSON. A node that gets a call for an object it does not hold
//!   takes it if it is free, or passes the call on to the holder.
//! - **Topics.** A node with subscribers of a topic subscribes to its subject; a publication is
//!   published once per topic and delivered by every node with subscribers, once.
//! - **Alarms.** Every node keeps every alarm (from an index bucket) and fires one only if it
//!   owns the object when it comes due; the others look again later.

pub mod storage;

mod keys;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::{HeaderMap, RequestErrorKind};
use futures_util::StreamExt;
use switchboard_runtime::cluster::{Answer, Cluster, LocalNode, Location, NodeMessage};
use switchboard_runtime::storage::Durability;
use switchboard_runtime::storage::sqlite::SqliteBackend;
use switchboard_runtime::topic::Prepared;
use switchboard_runtime::{Address, CallError, SocketId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use storage::ClusterBackend;

use keys::{address_key, key_address, topic_token, valid_node_id};

/// How a node joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222` (several: comma-separated).
    pub url: String,
    /// This node's name: letters, digits, `-` and `_`. Unique in the cluster; keep it across
    /// restarts, since the node's own records (topic histories, the outbox) are filed under it.
    pub node_id: String,
    /// How long a lease lasts unrenewed: the time a dead node's objects wait before another
    /// node takes them.
    pub lease_ttl: Duration,
    /// Copies JetStream keeps of the objects' data (1, 3 or 5; 3 in production).
    pub replicas: usize,
    /// How long a node waits for another's answer.
    pub request_timeout: Duration,
    /// Prefix of the cluster's buckets and subjects: clusters with different prefixes share a
    /// NATS server without meeting.
    pub prefix: String,
    /// The node's own SQLite file, for its runtime records.
    pub local_db: PathBuf,
    /// The local file's durability.
    pub durability: Durability,
}

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("node id {0:?} is not valid: use 1–64 letters, digits, `-` or `_`")]
    NodeId(String),
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("JetStream bucket {bucket}: {message} (is JetStream enabled on the NATS server?)")]
    Bucket { bucket: String, message: String },
    #[error("cannot open the node's local storage: {0}")]
    Local(String),
    #[error("NATS: {0}")]
    Nats(String),
}

/// Most hops a forwarded message makes before it is refused (ownership in flux).
const MAX_HOPS: u32 = 3;
/// Header counting a message's hops.
const HOPS: &str = "Sb-Hops";
/// Header naming the sending node.
const FROM: &str = "Sb-From";
/// Header with the sender's deadline (Unix ms): a request that arrives later is not run, since
/// its sender already answered its own caller that it timed out.
const DEADLINE: &str = "Sb-Deadline";
/// Headers of a publication: the node it started on and its id there.
const ORIGIN: &str = "Sb-Origin";
const PUBLICATION: &str = "Sb-Publication";
/// Remote publications remembered per node, to deliver one that came by two topics once.
const RECENT_PUBLICATIONS: usize = 4096;

/// A node of a NATS cluster (see the crate docs).
pub struct NatsCluster {
    this: Weak<NatsCluster>,
    config: ClusterConfig,
    client: async_nats::Client,
    tag: u32,
    nodes: kv::Store,
    leases: kv::Store,
    alarms: kv::Store,
    backend: Arc<ClusterBackend>,
    local: OnceLock<LocalNode>,
    /// Leases this node holds, with their revisions.
    held: Mutex<HashMap<Address, u64>>,
    /// Holders of other objects, as the lease bucket last said, and when. An entry older than
    /// a lease's life is not trusted: the holder may have died without a word.
    holders: Mutex<HashMap<Address, (String, Instant)>>,
    /// Socket tag → node id, for every node.
    tags: Mutex<HashMap<u32, String>>,
    /// Nodes that had no subscriber on NATS when last asked, and when.
    gone: Mutex<HashMap<String, Instant>>,
    /// One subscription task per topic this node has subscribers of.
    topics: Mutex<HashMap<String, JoinHandle<()>>>,
    recent: Mutex<(HashSet<String>, VecDeque<String>)>,
    publications: AtomicU64,
    /// Messages sent without a reply, in order.
    outgoing: mpsc::UnboundedSender<(String, HeaderMap, bytes::Bytes)>,
    /// One take of a free object at a time on this node.
    taking: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

async fn bucket(
    js: &async_nats::jetstream::Context,
    name: String,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, JoinError> {
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        history: 1,
        max_age,
        num_replicas: replicas,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| JoinError::Bucket {
        bucket: name.clone(),
        message: e.to_string(),
    })
}

impl NatsCluster {
    /// Connects to NATS, opens (creating if needed) the cluster's buckets and registers this
    /// node. The runtime built with the returned cluster and backend completes the join.
    pub async fn connect(config: ClusterConfig) -> Result<(Arc<NatsCluster>, Arc<ClusterBackend>), JoinError> {
        if !valid_node_id(&config.node_id) {
            return Err(JoinError::NodeId(config.node_id));
        }
        let connect_err = |message: String| JoinError::Connect {
            url: config.url.clone(),
            message,
        };
        let servers = config
            .url
            .split(',')
            .map(|s| s.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| connect_err(e.to_string()))?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("switchboard {}", config.node_id))
            .request_timeout(Some(config.request_timeout))
            .connect(servers)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let js = async_nats::jetstream::new(client.clone());
        let p = &config.prefix;
        let nodes = bucket(&js, format!("{p}_nodes"), config.lease_ttl, config.replicas).await?;
        let leases = bucket(&js, format!("{p}_leases"), config.lease_ttl, config.replicas).await?;
        let objects = bucket(&js, format!("{p}_objects"), Duration::ZERO, config.replicas).await?;
        let alarms = bucket(&js, format!("{p}_alarms"), Duration::ZERO, config.replicas).await?;
        let local =
            SqliteBackend::open(&config.local_db, config.durability).map_err(|e| JoinError::Local(e.to_string()))?;
        let backend = ClusterBackend::new(objects, alarms.clone(), local);
        // A socket tag of its own: 24 bits, taken like a lease and renewed with the node's.
        let tag = loop {
            let mut r = [0u8; 4];
            getrandom::fill(&mut r).map_err(|e| JoinError::Nats(e.to_string()))?;
            let tag = (u32::from_le_bytes(r) & 0xFF_FFFF).max(1);
            match nodes.create(tag_key(tag), config.node_id.clone().into()).await {
                Ok(_) => break tag,
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(JoinError::Nats(e.to_string())),
            }
        };
        let (outgoing, queue) = mpsc::unbounded_channel();
        let cluster = Arc::new_cyclic(|this| NatsCluster {
            this: this.clone(),
            config,
            client,
            tag,
            nodes,
            leases,
            alarms,
            backend: backend.clone(),
            local: OnceLock::new(),
            held: Mutex::default(),
            holders: Mutex::default(),
            tags: Mutex::default(),
            gone: Mutex::default(),
            topics: Mutex::default(),
            recent: Mutex::default(),
            publications: AtomicU64::new(0),
            outgoing,
            taking: tokio::sync::Mutex::new(()),
            tasks: Mutex::default(),
        });
        let client = cluster.client.clone();
        cluster.spawn(send_in_order(client, queue));
        Ok((cluster, backend))
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.lock().expect("tasks poisoned").push(tokio::spawn(task));
    }

    fn subject(&self, node: &str) -> String {
        format!("{}.node.{node}", self.config.prefix)
    }

    fn local(&self) -> Option<&LocalNode> {
        self.local.get()
    }

    /// Leaves the cluster after the runtime shut down: gives up every lease at once (so other
    /// nodes take the objects without waiting for the TTL) and the socket tag.
    pub async fn leave(&self) {
        // Bounded: with NATS gone, what was not given up lapses at its TTL anyway.
        if tokio::time::timeout(self.config.request_timeout, self.give_up_all())
            .await
            .is_err()
        {
            tracing::warn!("NATS did not answer while leaving; the leases left lapse at their TTL");
        }
    }

    async fn give_up_all(&self) {
        for task in self.tasks.lock().expect("tasks poisoned").drain(..) {
            task.abort();
        }
        for (_, task) in self.topics.lock().expect("topics poisoned").drain() {
            task.abort();
        }
        let held: Vec<_> = self.held.lock().expect("leases poisoned").drain().collect();
        let releases = held.iter().map(|(address, revision)| {
            self.leases
                .delete_expect_revision(address_key(address), Some(*revision))
        });
        for (result, (address, _)) in futures_util::future::join_all(releases).await.into_iter().zip(&held) {
            if let Err(e) = result {
                tracing::warn!(%address, error = %e, "a lease could not be given up; it lapses at its TTL");
            }
        }
        let _ = self.nodes.delete(tag_key(self.tag)).await;
        let _ = self.client.flush().await;
        tracing::info!(node = %self.config.node_id, released = held.len(), "left the cluster");
    }

    /// Takes `address` here if nobody holds it; otherwise says who does.
    async fn take(&self, address: &Address) -> Result<Option<String>, CallError> {
        let _one_at_a_time = self.taking.lock().await;
        if self.held.lock().expect("leases poisoned").contains_key(address) {
            return Ok(None);
        }
        let key = address_key(address);
        let me = &self.config.node_id;
        let unreachable = |e: &dyn std::fmt::Display| CallError::Unreachable(format!("lease of {address}: {e}"));
        for _ in 0..4 {
            let revision = match self.leases.create(&key, me.clone().into()).await {
                Ok(revision) => revision,
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    let entry = self.leases.entry(key.clone()).await.map_err(|e| unreachable(&e))?;
                    match entry {
                        Some(e) if e.operation == Operation::Put => {
                            let holder = String::from_utf8_lossy(&e.value).into_owned();
                            if holder != *me && !self.is_gone(&holder) {
                                let seen = (holder.clone(), Instant::now());
                                self.holders
                                    .lock()
                                    .expect("holders poisoned")
                                    .insert(address.clone(), seen);
                                return Ok(Some(holder));
                            }
                            // Ours from before a restart under the same id, or held by a node
                            // NATS knows no subscriber for (gone): take it now rather than when
                            // it lapses. Safe even if that node lives on: the fence below stops
                            // its writes.
                            match self.leases.update(&key, me.clone().into(), e.revision).await {
                                Ok(revision) => {
                                    if holder != *me {
                                        tracing::info!(%address, from = %holder, "took the object of a node that is gone");
                                    }
                                    revision
                                }
                                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                                Err(e) => return Err(unreachable(&e)),
                            }
                        }
                        // Released or lapsed meanwhile.
                        _ => continue,
                    }
                }
                Err(e) => return Err(unreachable(&e)),
            };
            let alarm = match self.backend.fence(address).await {
                Ok(alarm) => alarm,
                Err(e) => {
                    let _ = self.leases.delete_expect_revision(&key, Some(revision)).await;
                    return Err(unreachable(&e));
                }
            };
            self.held
                .lock()
                .expect("leases poisoned")
                .insert(address.clone(), revision);
            self.holders.lock().expect("holders poisoned").remove(address);
            if let (Some(at), Some(local)) = (alarm, self.local()) {
                local.alarm_changed(address, Some(at));
            }
            tracing::debug!(%address, "took the object");
            return Ok(None);
        }
        Err(CallError::Unreachable(format!(
            "the lease of {address} keeps changing hands"
        )))
    }

    /// The holder of another node's object, as last seen within a lease's life.
    fn known_holder(&self, address: &Address) -> Option<String> {
        let holders = self.holders.lock().expect("holders poisoned");
        let (holder, seen) = holders.get(address)?;
        (seen.elapsed() < self.config.lease_ttl).then(|| holder.clone())
    }

    /// Whether `node` was found without a subscriber recently (within a lease's life).
    fn is_gone(&self, node: &str) -> bool {
        let gone = self.gone.lock().expect("gone nodes poisoned");
        gone.get(node).is_some_and(|at| at.elapsed() < self.config.lease_ttl)
    }

    /// This node lost `address`: it stops running it.
    fn lost(&self, address: &Address) {
        if self.held.lock().expect("leases poisoned").remove(address).is_none() {
            return;
        }
        tracing::warn!(%address, "lost the lease of an object; it runs elsewhere now");
        self.backend.forget(address);
        if let Some(local) = self.local() {
            local.disowned(address);
        }
    }

    /// Renews every lease, a third of the TTL apart. A node that cannot renew for a whole TTL
    /// gives up all its objects: others may have taken them meanwhile.
    async fn renew_leases(self: Arc<Self>) {
        let every = self.config.lease_ttl / 3;
        let mut last_renewed = Instant::now();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if last_renewed.elapsed() >= self.config.lease_ttl {
                // Paused, or cut off from NATS, for longer than a lease lives.
                let held: Vec<Address> = self.held.lock().expect("leases poisoned").keys().cloned().collect();
                held.iter().for_each(|address| self.lost(address));
            }
            let _ = self
                .nodes
                .put(tag_key(self.tag), self.config.node_id.clone().into())
                .await;
            let held: Vec<(Address, u64)> = self
                .held
                .lock()
                .expect("leases poisoned")
                .iter()
                .map(|(a, r)| (a.clone(), *r))
                .collect();
            let me = &self.config.node_id;
            let renewals = held
                .iter()
                .map(|(address, revision)| self.leases.update(address_key(address), me.clone().into(), *revision));
            let results = futures_util::future::join_all(renewals).await;
            let mut failed = false;
            for ((address, old), result) in held.iter().zip(results) {
                match result {
                    Ok(revision) => {
                        let mut held = self.held.lock().expect("leases poisoned");
                        if let Some(r) = held.get_mut(address).filter(|r| **r == *old) {
                            *r = revision;
                        }
                    }
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => self.lost(address),
                    Err(e) => {
                        failed = true;
                        tracing::warn!(%address, error = %e, "a lease could not be renewed");
                    }
                }
            }
            if !failed {
                last_renewed = Instant::now();
            }
        }
    }

    /// Keeps `holders` current, and tells this node when another took one of its objects (a
    /// lease it let lapse).
    async fn watch_leases(self: Arc<Self>) {
        let Ok(mut watch) = self.leases.watch_all().await else {
            tracing::error!("cannot watch the lease bucket");
            return;
        };
        while let Some(Ok(entry)) = watch.next().await {
            let Some(address) = key_address(&entry.key) else {
                continue;
            };
            let mut holders = self.holders.lock().expect("holders poisoned");
            match entry.operation {
                Operation::Put => {
                    let holder = String::from_utf8_lossy(&entry.value).into_owned();
                    if holder == self.config.node_id {
                        holders.remove(&address);
                    } else {
                        holders.insert(address.clone(), (holder, Instant::now()));
                        drop(holders);
                        self.lost(&address);
                    }
                }
                Operation::Delete | Operation::Purge => {
                    holders.remove(&address);
                }
            }
        }
    }

    async fn watch_tags(self: Arc<Self>) {
        let Ok(mut watch) = self.nodes.watch_all().await else {
            tracing::error!("cannot watch the node bucket");
            return;
        };
        while let Some(Ok(entry)) = watch.next().await {
            let Some(tag) = entry
                .key
                .strip_prefix("tag-")
                .and_then(|t| u32::from_str_radix(t, 16).ok())
            else {
                continue;
            };
            let mut tags = self.tags.lock().expect("tags poisoned");
            match entry.operation {
                Operation::Put => tags.insert(tag, String::from_utf8_lossy(&entry.value).into_owned()),
                Operation::Delete | Operation::Purge => tags.remove(&tag),
            };
        }
    }

    async fn watch_alarms(self: Arc<Self>) {
        let Ok(mut watch) = self.alarms.watch_all().await else {
            tracing::error!("cannot watch the alarm index");
            return;
        };
        while let Some(Ok(entry)) = watch.next().await {
            let (Some(address), Some(local)) = (key_address(&entry.key), self.local()) else {
                continue;
            };
            let at = match entry.operation {
                Operation::Put => std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse().ok()),
                Operation::Delete | Operation::Purge => None,
            };
            // This node's own objects keep the schedule their writes set.
            if !self.held.lock().expect("leases poisoned").contains_key(&address) {
                local.alarm_changed(&address, at);
            }
        }
    }

    /// Answers what other nodes send this one.
    async fn serve(self: Arc<Self>, local: LocalNode) {
        let mut inbox = match self.client.subscribe(self.subject(&self.config.node_id)).await {
            Ok(inbox) => inbox,
            Err(e) => {
                tracing::error!(error = %e, "cannot receive from other nodes");
                return;
            }
        };
        while let Some(message) = inbox.next().await {
            let node_message: NodeMessage = match serde_json::from_slice(&message.payload) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "a message from another node could not be read");
                    continue;
                }
            };
            let header = |name: &str| -> Option<u64> { message.headers.as_ref()?.get(name)?.as_str().parse().ok() };
            let hops = header(HOPS).unwrap_or(0) as u32;
            if let Some(deadline) = header(DEADLINE)
                && unix_ms() > deadline
            {
                tracing::warn!("a request from another node arrived after its deadline and was not run");
                continue;
            }
            if let (NodeMessage::Connect { socket, .. }, Some(from), 0) =
                (&node_message, message.headers.as_ref().and_then(|h| h.get(FROM)), hops)
            {
                // The socket's node may have joined after the tag watch last spoke.
                let mut tags = self.tags.lock().expect("tags poisoned");
                tags.insert(socket.node_tag(), from.as_str().to_string());
            }
            let needs_owner = match &node_message {
                NodeMessage::Call { class, name, .. }
                | NodeMessage::Tell { class, name, .. }
                | NodeMessage::Connect { class, name, .. } => Some(Address::new(class, name)),
                _ => None,
            };
            let held = needs_owner
                .as_ref()
                .is_none_or(|a| self.held.lock().expect("leases poisoned").contains_key(a));
            let answer: Answer = if held {
                // Handled in arrival order: frames for sockets keep theirs.
                local.handle(node_message)
            } else {
                let (this, local, address) = (self.clone(), local.clone(), needs_owner.expect("checked"));
                Box::pin(async move {
                    match this.take(&address).await? {
                        None => local.handle(node_message).await,
                        Some(_) if hops >= MAX_HOPS => Err(CallError::Unreachable(format!(
                            "{address} is changing owners; try again"
                        ))),
                        Some(holder) => this.request_hops(&holder, node_message, hops + 1).await,
                    }
                })
            };
            let client = self.client.clone();
            tokio::spawn(async move {
                let result = answer.await;
                if let Some(reply) = message.reply {
                    let payload = serde_json::to_vec(&result).unwrap_or_default();
                    let _ = client.publish(reply, payload.into()).await;
                }
            });
        }
    }

    fn request_hops(&self, node: &str, message: NodeMessage, hops: u32) -> Answer {
        let payload = match serde_json::to_vec(&message) {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(CallError::Unreachable(e.to_string())))),
        };
        let mut headers = HeaderMap::new();
        headers.insert(HOPS, hops.to_string().as_str());
        headers.insert(FROM, self.config.node_id.as_str());
        let deadline = unix_ms() + self.config.request_timeout.as_millis() as u64;
        headers.insert(DEADLINE, deadline.to_string().as_str());
        let (client, subject, node) = (self.client.clone(), self.subject(node), node.to_string());
        let this = self.this.clone();
        Box::pin(async move {
            match client.request_with_headers(subject, headers, payload.into()).await {
                Ok(reply) => serde_json::from_slice::<Result<String, CallError>>(&reply.payload)
                    .map_err(|e| CallError::Unreachable(format!("node {node} answered something unreadable: {e}")))?,
                Err(e) => {
                    if matches!(e.kind(), RequestErrorKind::NoResponders | RequestErrorKind::TimedOut)
                        && let Some(this) = this.upgrade()
                    {
                        // Gone or stuck: ask the lease bucket next time instead of this node.
                        this.holders
                            .lock()
                            .expect("holders poisoned")
                            .retain(|_, (h, _)| *h != node);
                        if e.kind() == RequestErrorKind::NoResponders {
                            this.gone
                                .lock()
                                .expect("gone nodes poisoned")
                                .insert(node.clone(), Instant::now());
                        }
                    }
                    Err(match e.kind() {
                        RequestErrorKind::TimedOut => CallError::TimedOut(format!("node {node}")),
                        _ => CallError::Unreachable(format!("node {node}: {e}")),
                    })
                }
            }
        })
    }

    /// Receives every publication numbered in a history, whether this node has subscribers of
    /// its topics or not.
    async fn receive_histories(self: Arc<Self>, local: LocalNode) {
        let subject = format!("{}.history", self.config.prefix);
        let mut subscription = match self.client.subscribe(subject).await {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot receive the cluster's history publications"),
        };
        while let Some(message) = subscription.next().await {
            self.received_publication(&local, message);
        }
    }

    /// Delivers a publication another node sent, once.
    fn received_publication(&self, local: &LocalNode, message: async_nats::Message) {
        let headers = message.headers.as_ref();
        let header = |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        if header(ORIGIN) == Some(self.config.node_id.as_str()) {
            return;
        }
        if let Some(id) = header(PUBLICATION) {
            let mut recent = self.recent.lock().expect("recent publications poisoned");
            if !recent.0.insert(id.to_string()) {
                return;
            }
            recent.1.push_back(id.to_string());
            if recent.1.len() > RECENT_PUBLICATIONS
                && let Some(old) = recent.1.pop_front()
            {
                recent.0.remove(&old);
            }
        }
        match serde_json::from_slice::<Prepared>(&message.payload) {
            Ok(prepared) => drop(local.handle(NodeMessage::Publish(prepared))),
            Err(e) => tracing::warn!(error = %e, "a publication from another node could not be read"),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn tag_key(tag: u32) -> String {
    format!("tag-{tag:06x}")
}

/// Publishes queued messages one after another, so their order is the order they were sent in.
async fn send_in_order(
    client: async_nats::Client,
    mut queue: mpsc::UnboundedReceiver<(String, HeaderMap, bytes::Bytes)>,
) {
    while let Some((subject, headers, payload)) = queue.recv().await {
        if let Err(e) = client.publish_with_headers(subject, headers, payload).await {
            tracing::warn!(error = %e, "a message to other nodes was lost");
        }
    }
}

impl Cluster for NatsCluster {
    fn node_id(&self) -> &str {
        &self.config.node_id
    }

    fn socket_tag(&self) -> u32 {
        self.tag
    }

    fn join(&self, node: LocalNode) {
        let _ = self.local.set(node.clone());
        let Some(this) = self.this.upgrade() else {
            return;
        };
        self.spawn(this.clone().receive_histories(node.clone()));
        self.spawn(this.clone().serve(node));
        self.spawn(this.clone().renew_leases());
        self.spawn(this.clone().watch_leases());
        self.spawn(this.clone().watch_tags());
        self.spawn(this.watch_alarms());
    }

    fn locate(&self, address: &Address) -> Location {
        if self.held.lock().expect("leases poisoned").contains_key(address) {
            return Box::pin(std::future::ready(Ok(None)));
        }
        if let Some(holder) = self.known_holder(address) {
            return Box::pin(std::future::ready(Ok(Some(holder))));
        }
        let (this, address) = (self.this.upgrade(), address.clone());
        Box::pin(async move {
            match this {
                Some(this) => this.take(&address).await,
                None => Err(CallError::ShuttingDown),
            }
        })
    }

    fn released(&self, address: &Address) {
        let Some(revision) = self.held.lock().expect("leases poisoned").remove(address) else {
            return;
        };
        self.backend.forget(address);
        let (leases, key) = (self.leases.clone(), address_key(address));
        // If this node takes the object again meanwhile, the revision moved and this does nothing.
        tokio::spawn(async move {
            let _ = leases.delete_expect_revision(key, Some(revision)).await;
        });
    }

    fn holder(&self, address: &Address) -> Option<String> {
        if self.held.lock().expect("leases poisoned").contains_key(address) {
            return Some(self.config.node_id.clone());
        }
        self.known_holder(address)
    }

    fn node_of_socket(&self, socket: SocketId) -> Option<String> {
        let tag = socket.node_tag();
        if tag == self.tag {
            return None;
        }
        self.tags.lock().expect("tags poisoned").get(&tag).cloned()
    }

    fn request(&self, node: &str, message: NodeMessage) -> Answer {
        self.request_hops(node, message, 0)
    }

    fn send(&self, node: &str, message: NodeMessage) {
        match serde_json::to_vec(&message) {
            Ok(payload) => {
                let _ = self
                    .outgoing
                    .send((self.subject(node), HeaderMap::new(), payload.into()));
            }
            Err(e) => tracing::error!(error = %e, "a message to another node could not be encoded"),
        }
    }

    fn publish(&self, prepared: &Prepared) {
        let payload: bytes::Bytes = match serde_json::to_vec(prepared) {
            Ok(p) => p.into(),
            Err(e) => return tracing::error!(error = %e, "a publication could not be encoded"),
        };
        let id = format!(
            "{}-{}",
            self.config.node_id,
            self.publications.fetch_add(1, Ordering::Relaxed)
        );
        let headers = || {
            let mut headers = HeaderMap::new();
            headers.insert(ORIGIN, self.config.node_id.as_str());
            headers.insert(PUBLICATION, id.as_str());
            headers
        };
        if prepared.has_history() {
            // Every node keeps a copy of every history, so a client recovers on any node.
            let subject = format!("{}.history", self.config.prefix);
            let _ = self.outgoing.send((subject, headers(), payload));
            return;
        }
        let mut sent = HashSet::new();
        for topic in prepared.topics() {
            let token = topic_token(topic);
            if !sent.insert(token.clone()) {
                continue;
            }
            let subject = format!("{}.topic.{token}", self.config.prefix);
            let _ = self.outgoing.send((subject, headers(), payload.clone()));
        }
    }

    fn interest(&self, topic: &str, interested: bool) {
        let mut topics = self.topics.lock().expect("topics poisoned");
        if !interested {
            if let Some(task) = topics.remove(topic) {
                task.abort();
            }
            return;
        }
        let (Some(this), Some(local)) = (self.this.upgrade(), self.local().cloned()) else {
            return;
        };
        let subject = format!("{}.topic.{}", self.config.prefix, topic_token(topic));
        let task = tokio::spawn(async move {
            let mut subscription = match this.client.subscribe(subject).await {
                Ok(s) => s,
                Err(e) => return tracing::error!(error = %e, "cannot subscribe to a topic's publications"),
            };
            while let Some(message) = subscription.next().await {
                this.received_publication(&local, message);
            }
        });
        if let Some(old) = topics.insert(topic.to_string(), task) {
            old.abort();
        }
    }
}
