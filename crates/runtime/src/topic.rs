//! Topics: named groups of sockets that a publish reaches once each, whatever object owns them.
//!
//! A socket subscribes to topics independently of the object that accepted it, so a socket can
//! be in many rooms and its subscriptions outlive its owner's hibernation. The hub is sharded
//! by topic name, so publishes to different topics do not contend on one lock.
//!
//! Topics whose name matches a pattern with [`TopicOptions::history`] keep a durable, capped log:
//! each publication gets the next *offset* within the topic's *epoch*, is stored in the same
//! commit as the writes of the event that published it, and is kept in memory for recovery. A
//! client that resubscribes with the last `(offset, epoch)` it saw gets what it missed, in order,
//! before anything new — or learns plainly that it cannot (the epoch changed, or the history no
//! longer reaches back that far). Offsets are numbered under the lock that orders commits, and
//! publications are released in commit order, so every subscriber sees offsets ascending.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::socket::{Delivery, Frame, SocketConn, SocketId};
use crate::storage::WriteOp;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

const SHARDS: usize = 32;

/// Separates a topic's name from the rest of a history key; topic names never contain it.
const SEP: char = '\u{1}';

/// How long a topic's history is, and how old its entries may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    pub max_entries: usize,
    pub max_age: Duration,
}

/// Builds the frame announcing that someone joined or left a topic with presence.
pub type PresenceFrames = Arc<dyn Fn(&PresenceChange<'_>) -> Frame + Send + Sync>;

/// Options of the topics whose names match a pattern (see [`RuntimeBuilder::topics`](crate::RuntimeBuilder::topics)).
#[derive(Clone, Default)]
pub struct TopicOptions {
    /// Keep a durable history for recovery. Default: none.
    pub history: Option<HistoryLimits>,
    /// Track who is subscribed, and publish this frame to the topic on every join and leave
    /// (it counts as a publication: it gets an offset in a topic with history). Default: off.
    pub presence: Option<PresenceFrames>,
}

/// A join or a leave in a topic with presence.
#[derive(Debug)]
pub struct PresenceChange<'a> {
    pub topic: &'a str,
    pub socket: SocketId,
    pub user: Option<&'a str>,
    pub joined: bool,
}

/// Who is subscribed to a topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Presence {
    pub count: usize,
    /// Distinct user ids of the subscribers that have one, sorted.
    pub users: Vec<String>,
}

/// Where a subscriber stands in a topic's history: the last offset it received, in an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// The offset and epoch a publication got in one topic with history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub topic: Arc<str>,
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// What a resubscription could recover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// True when every publication after the given position was sent (`missed` of them);
    /// false when recovery was asked for and is impossible: the client should reload its state.
    /// True with `missed == 0` for a subscription that asked for no recovery.
    pub recovered: bool,
    pub missed: usize,
    /// The topic's position now, if it keeps history.
    pub position: Option<Position>,
}

type Render = Arc<dyn Fn(Option<&Stamp>) -> Frame + Send + Sync>;

/// Makes the frame that answers a subscription, from its outcome; it is queued before the
/// frames recovery sends.
pub type ReplyFrame = Box<dyn FnOnce(&Recovery) -> Option<Frame> + Send>;

/// A message to the subscribers of one or more topics. A socket subscribed to several of them
/// gets it once.
#[derive(Clone)]
pub struct Publication {
    pub(crate) topics: Vec<Arc<str>>,
    render: Render,
    pub(crate) delivery: Delivery,
    pub(crate) except: Option<SocketId>,
    /// The publication as data, when it was made with [`Publication::json_stamped`]: what lets
    /// another node (the one that numbers a cluster's histories) render it.
    pub(crate) spec: Option<Arc<JsonPublication>>,
}

/// Names of the fields a JSON event gets from its [`Stamp`] in a topic with history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampFields {
    pub topic: String,
    pub offset: String,
    pub epoch: String,
}

/// A publication of a JSON object as data: the object, and where its stamp goes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JsonPublication {
    pub(crate) topics: Vec<Arc<str>>,
    pub(crate) event: serde_json::Map<String, serde_json::Value>,
    pub(crate) fields: StampFields,
    pub(crate) delivery: Delivery,
    pub(crate) except: Option<SocketId>,
}

impl JsonPublication {
    /// The frame for one topic: the object, with the stamp's fields appended when there is one.
    fn render(&self, stamp: Option<&Stamp>) -> Frame {
        let mut event = self.event.clone();
        if let Some(stamp) = stamp {
            event.insert(self.fields.topic.clone(), (*stamp.topic).into());
            event.insert(self.fields.offset.clone(), stamp.offset.into());
            event.insert(self.fields.epoch.clone(), (*stamp.epoch).into());
        }
        Frame::text(serde_json::Value::Object(event).to_string())
    }

    pub(crate) fn into_publication(self) -> Publication {
        let spec = Arc::new(self);
        let render = spec.clone();
        Publication {
            topics: spec.topics.clone(),
            render: Arc::new(move |stamp| render.render(stamp)),
            delivery: spec.delivery.clone(),
            except: spec.except,
            spec: Some(spec),
        }
    }
}

impl Publication {
    /// The same frame for every topic.
    pub fn new<T: AsRef<str>>(topics: &[T], frame: Frame) -> Self {
        Self::stamped(topics, move |_| frame.clone())
    }

    /// A frame per topic, made from the publication's [`Stamp`] in that topic (`None` in a topic
    /// without history): for protocols whose events carry their offset. Called once per topic,
    /// never per socket.
    pub fn stamped<T: AsRef<str>>(
        topics: &[T],
        render: impl Fn(Option<&Stamp>) -> Frame + Send + Sync + 'static,
    ) -> Self {
        Publication {
            topics: topics.iter().map(|t| Arc::from(t.as_ref())).collect(),
            render: Arc::new(render),
            delivery: Delivery::Reliable,
            except: None,
            spec: None,
        }
    }

    /// A JSON object, with the stamp's fields (`fields`) appended in topics with history. The
    /// same frames as a [`Publication::stamped`] that does this, but kept as data, so in a
    /// cluster the node that numbers histories can render it: prefer it for topics with history.
    pub fn json_stamped<T: AsRef<str>>(
        topics: &[T],
        event: serde_json::Map<String, serde_json::Value>,
        fields: StampFields,
    ) -> Self {
        JsonPublication {
            topics: topics.iter().map(|t| Arc::from(t.as_ref())).collect(),
            event,
            fields,
            delivery: Delivery::Reliable,
            except: None,
        }
        .into_publication()
    }

    /// How the frame is delivered to a socket whose queue is full. Default: reliable.
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        if let Some(spec) = &mut self.spec {
            Arc::make_mut(spec).delivery = delivery.clone();
        }
        self.delivery = delivery;
        self
    }

    /// Skips one socket (the sender of a chat line, say).
    pub fn except(mut self, socket: SocketId) -> Self {
        if let Some(spec) = &mut self.spec {
            Arc::make_mut(spec).except = Some(socket);
        }
        self.except = Some(socket);
        self
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| &**t)
    }
}

/// A publication with its frame made for each topic, ready to deliver (here or on another node).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prepared {
    pub(crate) frames: Vec<PreparedTopic>,
    pub(crate) delivery: Delivery,
    pub(crate) except: Option<SocketId>,
}

impl Prepared {
    /// The topics this publication goes to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.frames.iter().map(|t| &*t.topic)
    }

    /// Whether it was numbered in a topic's history (every node keeps a copy of those).
    pub fn has_history(&self) -> bool {
        self.frames.iter().any(|t| t.offset.is_some())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PreparedTopic {
    pub(crate) topic: Arc<str>,
    pub(crate) offset: Option<u64>,
    /// The epoch of `offset` (topics with history).
    #[serde(default)]
    pub(crate) epoch: Option<Arc<str>>,
    pub(crate) frame: Frame,
}

/// Why a topic operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic names are 1 to {MAX_TOPIC_LEN} bytes without control characters")]
    InvalidName,
    #[error("no such socket is open on this node")]
    UnknownSocket,
}

/// Checks a topic name.
pub fn valid_topic(name: &str) -> Result<(), TopicError> {
    if name.is_empty() || name.len() > MAX_TOPIC_LEN || name.chars().any(char::is_control) {
        return Err(TopicError::InvalidName);
    }
    Ok(())
}

struct Subscriber {
    conn: Arc<SocketConn>,
    user: Option<Arc<str>>,
    /// Whether a live frame of the topic was queued for the socket since it joined: until
    /// one was, a recovery asked for later can still come in order.
    heard: bool,
}

struct Entry {
    offset: u64,
    at_ms: i64,
    frame: Frame,
}

struct History {
    epoch: Arc<str>,
    /// The offset the next publication gets.
    next: u64,
    /// The offset after the last publication delivered (and recorded) here.
    recorded_next: u64,
    /// Delivered entries, oldest first.
    entries: VecDeque<Entry>,
    limits: HistoryLimits,
}

impl History {
    fn trim(&mut self, now_ms: i64) {
        let oldest = now_ms - self.limits.max_age.as_millis() as i64;
        while self
            .entries
            .front()
            .is_some_and(|e| e.at_ms < oldest || self.entries.len() > self.limits.max_entries)
        {
            self.entries.pop_front();
        }
    }

    /// The entries after `since`, if the history still holds all of them.
    fn after(&self, since: &Position) -> Option<impl Iterator<Item = &Entry>> {
        if *self.epoch != since.epoch || since.offset >= self.next {
            return None;
        }
        let first_kept = self.entries.front().map_or(self.next, |e| e.offset);
        (since.offset + 1 >= first_kept).then(|| self.entries.iter().filter(move |e| e.offset > since.offset))
    }

    fn position(&self) -> Option<Position> {
        self.next.checked_sub(1).map(|offset| Position {
            offset,
            epoch: self.epoch.to_string(),
        })
    }
}

#[derive(Default)]
struct Topic {
    subscribers: Vec<Subscriber>,
    history: Option<History>,
}

/// One shard of the hub: the topics whose names hash to it.
type Shard = Mutex<HashMap<Arc<str>, Topic>>;

/// The topics of one runtime.
pub(crate) struct Hub {
    shards: Box<[Shard]>,
    hasher: RandomState,
    rules: Vec<(String, TopicOptions)>,
}

impl Hub {
    pub(crate) fn new(rules: Vec<(String, TopicOptions)>) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            rules,
        }
    }

    fn shard(&self, topic: &str) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Topic>> {
        let i = self.hasher.hash_one(topic) as usize % SHARDS;
        self.shards[i].lock().expect("topic shard poisoned")
    }

    /// The options of the first pattern `topic` matches (`prefix*` or an exact name).
    pub(crate) fn options(&self, topic: &str) -> Option<&TopicOptions> {
        self.rules
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => pattern == topic,
            })
            .map(|(_, o)| o)
    }

    fn new_history(&self, topic: &str) -> Option<History> {
        let limits = self.options(topic)?.history?;
        Some(History {
            epoch: new_epoch(),
            next: 0,
            recorded_next: 0,
            entries: VecDeque::new(),
            limits,
        })
    }

    /// Makes the publication's frame for each topic and, for topics with history, numbers it and
    /// returns the writes that store it. Must run under the store's submit lock (see module docs).
    pub(crate) fn prepare(&self, publication: &Publication, now_ms: i64) -> (Prepared, Vec<WriteOp>) {
        let mut ops = Vec::new();
        let mut plain: Option<Frame> = None;
        let mut frames = Vec::with_capacity(publication.topics.len());
        for topic in &publication.topics {
            let stamp = self.options(topic).and_then(|o| o.history).map(|_| {
                let mut shard = self.shard(topic);
                let entry = shard.entry(topic.clone()).or_default();
                if entry.history.is_none() {
                    entry.history = self.new_history(topic);
                }
                let history = entry.history.as_mut().expect("made above");
                let stamp = Stamp {
                    topic: topic.clone(),
                    offset: history.next,
                    epoch: history.epoch.clone(),
                };
                history.next += 1;
                let meta = Meta {
                    epoch: history.epoch.to_string(),
                    next: history.next,
                };
                ops.push(WriteOp::Put(
                    meta_key(topic),
                    serde_json::to_vec(&meta).expect("plain struct"),
                ));
                if let Some(old) = stamp.offset.checked_sub(history.limits.max_entries as u64) {
                    ops.push(WriteOp::Delete(entry_key(topic, old)));
                }
                stamp
            });
            let frame = match &stamp {
                Some(s) => {
                    let frame = (publication.render)(Some(s));
                    ops.push(WriteOp::Put(entry_key(topic, s.offset), encode_entry(now_ms, &frame)));
                    frame
                }
                None => plain.get_or_insert_with(|| (publication.render)(None)).clone(),
            };
            frames.push(PreparedTopic {
                topic: topic.clone(),
                offset: stamp.as_ref().map(|s| s.offset),
                epoch: stamp.map(|s| s.epoch),
                frame,
            });
        }
        let prepared = Prepared {
            frames,
            delivery: publication.delivery.clone(),
            except: publication.except,
        };
        (prepared, ops)
    }

    /// Sends a prepared publication to this node's subscribers and records it in the topics'
    /// histories; returns how many sockets it was queued for. A publication another node
    /// numbered (`remote`) is recorded as a copy of that node's history — under its epoch,
    /// starting over after a hole — so a client can recover from this node too.
    pub(crate) fn deliver(&self, prepared: &Prepared, now_ms: i64, remote: bool) -> usize {
        let several = prepared.frames.len() > 1;
        let mut reached: HashSet<SocketId> = HashSet::new();
        let mut delivered = 0;
        for PreparedTopic {
            topic,
            offset,
            epoch,
            frame,
        } in &prepared.frames
        {
            let mut shard = self.shard(topic);
            if remote && let (Some(offset), Some(epoch)) = (offset, epoch) {
                let entry = shard.entry(topic.clone()).or_default();
                if entry.history.is_none() {
                    entry.history = self.new_history(topic);
                }
                if let Some(history) = entry.history.as_mut() {
                    if history.epoch != *epoch {
                        history.epoch = epoch.clone();
                        history.entries.clear();
                    } else if *offset != history.recorded_next {
                        // A publication this node never got: what it holds no longer runs
                        // unbroken to this one.
                        history.entries.clear();
                    }
                    history.next = history.next.max(offset + 1);
                }
            }
            let Some(entry) = shard.get_mut(topic) else { continue };
            if let (Some(offset), Some(history)) = (offset, entry.history.as_mut()) {
                history.entries.push_back(Entry {
                    offset: *offset,
                    at_ms: now_ms,
                    frame: frame.clone(),
                });
                history.recorded_next = offset + 1;
                history.trim(now_ms);
            }
            for sub in &mut entry.subscribers {
                let id = sub.conn.id();
                if prepared.except == Some(id) || (several && !reached.insert(id)) {
                    continue;
                }
                sub.heard = true;
                if sub.conn.send_with(frame.clone(), &prepared.delivery).is_ok() {
                    delivered += 1;
                }
            }
        }
        delivered
    }

    /// Starts a new epoch in every history this node keeps, numbering on from where it stands:
    /// for a node that has just begun numbering a cluster's histories, which may have missed
    /// the last publications of the node that numbered them before.
    pub(crate) fn new_epochs(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().expect("topic shard poisoned");
            for history in shard.values_mut().filter_map(|t| t.history.as_mut()) {
                history.epoch = new_epoch();
                history.next = history.next.max(history.recorded_next);
                history.recorded_next = history.next;
                history.entries.clear();
            }
        }
    }

    /// Whether any of `topics` keeps a history.
    pub(crate) fn has_history<'a>(&self, mut topics: impl Iterator<Item = &'a str>) -> bool {
        topics.any(|t| self.options(t).is_some_and(|o| o.history.is_some()))
    }

    /// Subscribes a socket. With `since`, first queues `reply` (made from the outcome), then
    /// what the socket missed, then adds it: nothing published meanwhile can slip between.
    /// A socket already subscribed can still recover (a client resubscribing to a room it was
    /// put in when it connected), but only while no live frame of the topic was queued for it
    /// since it joined: after one, older ones could no longer come in order, and the outcome is
    /// `recovered: false`. Returns the outcome and whether the socket was newly added.
    pub(crate) fn subscribe(
        &self,
        conn: &Arc<SocketConn>,
        topic: &Arc<str>,
        user: Option<Arc<str>>,
        since: Option<&Position>,
        reply: Option<ReplyFrame>,
        now_ms: i64,
    ) -> (Recovery, bool) {
        let mut shard = self.shard(topic);
        let entry = shard.entry(topic.clone()).or_default();
        if let Some(history) = entry.history.as_mut() {
            history.trim(now_ms);
        }
        let mut missed: Vec<Frame> = Vec::new();
        let joined = entry
            .subscribers
            .iter()
            .find(|s| s.conn.id() == conn.id())
            .map(|s| s.heard);
        let recovered = match (since, entry.history.as_ref()) {
            (None, _) => true,
            (Some(_), Some(_)) if joined == Some(true) => false,
            (Some(since), Some(history)) => match history.after(since) {
                Some(entries) => {
                    missed.extend(entries.map(|e| e.frame.clone()));
                    true
                }
                None => false,
            },
            (Some(_), None) => false,
        };
        let recovery = Recovery {
            recovered,
            missed: missed.len(),
            position: entry.history.as_ref().and_then(History::position),
        };
        if let Some(frame) = reply.and_then(|r| r(&recovery)) {
            let _ = conn.send(frame);
        }
        for frame in missed {
            let _ = conn.send(frame);
        }
        let added = joined.is_none();
        if added {
            entry.subscribers.push(Subscriber {
                conn: conn.clone(),
                user,
                heard: false,
            });
        }
        (recovery, added)
    }

    /// Removes a socket from a topic; returns its user id (outer `None`: it was not subscribed).
    pub(crate) fn unsubscribe(&self, id: SocketId, topic: &str) -> Option<Option<Arc<str>>> {
        let mut shard = self.shard(topic);
        let entry = shard.get_mut(topic)?;
        let at = entry.subscribers.iter().position(|s| s.conn.id() == id)?;
        let sub = entry.subscribers.swap_remove(at);
        if entry.subscribers.is_empty() && entry.history.is_none() {
            shard.remove(topic);
        }
        Some(sub.user)
    }

    pub(crate) fn subscriber_count(&self, topic: &str) -> usize {
        self.shard(topic).get(topic).map_or(0, |t| t.subscribers.len())
    }

    pub(crate) fn presence(&self, topic: &str) -> Presence {
        let shard = self.shard(topic);
        let Some(entry) = shard.get(topic) else {
            return Presence::default();
        };
        let mut users: Vec<String> = entry
            .subscribers
            .iter()
            .filter_map(|s| s.user.as_deref().map(str::to_string))
            .collect();
        users.sort();
        users.dedup();
        Presence {
            count: entry.subscribers.len(),
            users,
        }
    }

    /// The topic's history position and length, if it keeps one.
    pub(crate) fn history(&self, topic: &str) -> Option<(Position, usize)> {
        let shard = self.shard(topic);
        let history = shard.get(topic)?.history.as_ref()?;
        Some((history.position()?, history.entries.len()))
    }

    /// Topics with subscribers or history: (name, subscribers).
    pub(crate) fn topics(&self) -> Vec<(String, usize)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().expect("topic shard poisoned");
            all.extend(shard.iter().map(|(k, t)| (k.to_string(), t.subscribers.len())));
        }
        all.sort();
        all
    }

    /// Loads stored histories (the rows of the history address), dropping entries past their
    /// limits. Returns the writes that delete what was dropped.
    pub(crate) fn load(&self, rows: Vec<(String, Vec<u8>)>, now_ms: i64) -> Vec<WriteOp> {
        let mut stale = Vec::new();
        for (key, value) in rows {
            let Some((topic, rest)) = key.split_once(SEP) else {
                continue;
            };
            let mut shard = self.shard(topic);
            let entry = shard.entry(Arc::from(topic)).or_default();
            if entry.history.is_none() {
                match self.new_history(topic) {
                    Some(h) => entry.history = Some(h),
                    None => {
                        // No pattern keeps history for this topic any more.
                        stale.push(WriteOp::Delete(key.clone()));
                        continue;
                    }
                }
            }
            let history = entry.history.as_mut().expect("made above");
            if rest == "~" {
                if let Ok(meta) = serde_json::from_slice::<Meta>(&value) {
                    history.epoch = meta.epoch.into();
                    history.next = meta.next;
                    history.recorded_next = meta.next;
                }
            } else if let (Ok(offset), Some((at_ms, frame))) = (rest.parse::<u64>(), decode_entry(&value)) {
                // Rows come in key order: offsets ascending.
                history.entries.push_back(Entry { offset, at_ms, frame });
            }
        }
        for shard in self.shards.iter() {
            let mut shard = shard.lock().expect("topic shard poisoned");
            for (topic, entry) in shard.iter_mut() {
                let Some(history) = entry.history.as_mut() else {
                    continue;
                };
                let before: Vec<u64> = history.entries.iter().map(|e| e.offset).collect();
                history.trim(now_ms);
                let kept = history.entries.front().map_or(u64::MAX, |e| e.offset);
                stale.extend(
                    before
                        .into_iter()
                        .filter(|o| *o < kept)
                        .map(|o| WriteOp::Delete(entry_key(topic, o))),
                );
            }
        }
        stale
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    epoch: String,
    next: u64,
}

fn entry_key(topic: &str, offset: u64) -> String {
    format!("{topic}{SEP}{offset:020}")
}

fn meta_key(topic: &str) -> String {
    format!("{topic}{SEP}~")
}

fn encode_entry(at_ms: i64, frame: &Frame) -> Vec<u8> {
    let (kind, bytes): (u8, &[u8]) = match frame {
        Frame::Text(t) => (0, t.as_bytes()),
        Frame::Binary(b) => (1, b),
    };
    let mut out = Vec::with_capacity(9 + bytes.len());
    out.extend_from_slice(&at_ms.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(bytes);
    out
}

fn decode_entry(value: &[u8]) -> Option<(i64, Frame)> {
    let at = i64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let payload = Bytes::copy_from_slice(value.get(9..)?);
    let frame = match value.get(8)? {
        0 => Frame::Text(payload.try_into().ok()?),
        1 => Frame::Binary(payload),
        _ => return None,
    };
    Some((at, frame))
}

/// A fresh epoch: 12 random hex digits.
fn new_epoch() -> Arc<str> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::QueueLimits;

    fn hub() -> Hub {
        let history = TopicOptions {
            history: Some(HistoryLimits {
                max_entries: 3,
                max_age: Duration::from_secs(60),
            }),
            presence: None,
        };
        Hub::new(vec![("h:*".into(), history)])
    }

    fn socket(n: u64) -> Arc<SocketConn> {
        Arc::new(SocketConn::new(SocketId::new(1, n), QueueLimits::default()))
    }

    fn publish(hub: &Hub, topics: &[&str], text: &str) -> usize {
        let (prepared, _) = hub.prepare(&Publication::new(topics, Frame::text(text)), 0);
        hub.deliver(&prepared, 0, false)
    }

    async fn drained(conn: &SocketConn) -> Vec<String> {
        let batch = conn.next_batch().await;
        batch.frames.iter().map(|f| f.as_text().unwrap().to_string()).collect()
    }

    /// A copy of another node's history: recovery from it works while it runs unbroken; a
    /// publication this node never got (a hole) or another epoch starts the copy over.
    #[tokio::test]
    async fn copies_of_remote_histories() {
        let (numbering, copy) = (hub(), hub());
        let remote = |text: &str| {
            let (prepared, _) = numbering.prepare(&Publication::new(&["h:1"], Frame::text(text)), 0);
            prepared
        };
        let (a, b, c, d) = (remote("a"), remote("b"), remote("c"), remote("d"));
        for p in [&a, &b] {
            copy.deliver(p, 0, true);
        }
        let (position, _) = numbering.history("h:1").unwrap();
        let at = |offset| Position {
            offset,
            epoch: position.epoch.clone(),
        };
        let topic: Arc<str> = "h:1".into();
        let sockets = std::sync::atomic::AtomicU64::new(10);
        let recover = |since: Position| {
            let fresh = socket(sockets.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            copy.subscribe(&fresh, &topic, None, Some(&since), None, 0).0
        };
        assert!(recover(at(0)).recovered && recover(at(0)).missed == 1);
        copy.deliver(&d, 0, true); // `c` never came
        assert!(!recover(at(1)).recovered, "a hole is not recovered over");
        assert!(recover(at(2)).recovered, "after the hole the copy serves again");
        drop(c);
        numbering.new_epochs();
        copy.deliver(&remote("e"), 0, true);
        let (moved, len) = copy.history("h:1").unwrap();
        assert_ne!(moved.epoch, position.epoch, "a new epoch replaces the copy");
        assert_eq!((moved.offset, len), (4, 1));
    }

    /// A JSON publication renders its stamp into the event, as data another node can render.
    #[test]
    fn json_publications_carry_their_stamp() {
        let hub = hub();
        let mut event = serde_json::Map::new();
        event.insert("type".into(), "t".into());
        let fields = StampFields {
            topic: "room".into(),
            offset: "offset".into(),
            epoch: "epoch".into(),
        };
        let publication = Publication::json_stamped(&["h:1", "plain"], event, fields);
        let spec = serde_json::to_string(publication.spec.as_deref().unwrap()).unwrap();
        let again: JsonPublication = serde_json::from_str(&spec).unwrap();
        let (prepared, _) = hub.prepare(&again.into_publication(), 0);
        let epoch = hub.history("h:1").unwrap().0.epoch;
        let texts: Vec<&str> = prepared.frames.iter().map(|f| f.frame.as_text().unwrap()).collect();
        assert_eq!(
            texts,
            [
                format!(r#"{{"type":"t","room":"h:1","offset":0,"epoch":"{epoch}"}}"#).as_str(),
                r#"{"type":"t"}"#
            ]
        );
    }

    /// A socket in two of a publication's topics gets it once.
    #[tokio::test]
    async fn once_per_socket() {
        let hub = hub();
        let a = socket(1);
        for t in ["x", "y"] {
            hub.subscribe(&a, &Arc::from(t), None, None, None, 0);
        }
        assert_eq!(publish(&hub, &["x", "y"], "m"), 1);
        assert_eq!(drained(&a).await, ["m"]);
    }

    /// Recovery sends exactly what was missed, after the reply; an old position or another
    /// epoch is refused.
    #[tokio::test]
    async fn recovery() {
        let hub = hub();
        let topic: Arc<str> = "h:1".into();
        let first = socket(1);
        hub.subscribe(&first, &topic, None, None, None, 0);
        for m in ["a", "b", "c", "d", "e"] {
            publish(&hub, &["h:1"], m);
        }
        let (position, len) = hub.history("h:1").unwrap();
        assert_eq!((position.offset, len), (4, 3));
        let again = socket(2);
        let since = Position {
            offset: 2,
            epoch: position.epoch.clone(),
        };
        let reply: ReplyFrame = Box::new(|r: &Recovery| Some(Frame::text(format!("r{}", r.missed))));
        let (rec, _) = hub.subscribe(&again, &topic, None, Some(&since), Some(reply), 0);
        assert!(rec.recovered);
        assert_eq!(drained(&again).await, ["r2", "d", "e"]);
        let too_old = Position {
            offset: 0,
            ..since.clone()
        };
        assert!(
            !hub.subscribe(&socket(3), &topic, None, Some(&too_old), None, 0)
                .0
                .recovered
        );
        let other_epoch = Position {
            offset: 2,
            epoch: "nope".into(),
        };
        assert!(
            !hub.subscribe(&socket(4), &topic, None, Some(&other_epoch), None, 0)
                .0
                .recovered
        );
        let up_to_date = Position { offset: 4, ..since };
        let (rec, _) = hub.subscribe(&socket(5), &topic, None, Some(&up_to_date), None, 0);
        assert_eq!((rec.recovered, rec.missed), (true, 0));
    }

    proptest::proptest! {
        /// A stored entry decodes to the time and frame it was encoded from; any bytes decode
        /// to an entry or nothing, never a panic.
        #[test]
        fn entries_round_trip(at in proptest::prelude::any::<i64>(), text in ".{0,64}", binary in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32)) {
            for frame in [Frame::text(text.clone()), Frame::Binary(binary.clone().into())] {
                proptest::prop_assert_eq!(decode_entry(&encode_entry(at, &frame)), Some((at, frame)));
            }
            let _ = decode_entry(&junk);
        }
    }

    /// Stored rows load back into the same epoch and offsets.
    #[test]
    fn history_rows_round_trip() {
        let hub = hub();
        let mut rows = std::collections::BTreeMap::new();
        for m in ["a", "b"] {
            let (prepared, ops) = hub.prepare(&Publication::new(&["h:1"], Frame::text(m)), 0);
            hub.deliver(&prepared, 0, false);
            for op in ops {
                match op {
                    WriteOp::Put(k, v) => {
                        rows.insert(k, v);
                    }
                    WriteOp::Delete(k) => {
                        rows.remove(&k);
                    }
                    _ => {}
                }
            }
        }
        let loaded = Hub::new(hub.rules.clone());
        assert!(loaded.load(rows.into_iter().collect(), 0).is_empty());
        assert_eq!(loaded.history("h:1"), hub.history("h:1"));
    }
}
