//! Every socket of this node by id, with the topics it is subscribed to: what lets an object,
//! an app route or the publish API reach or close a socket by id, and what a socket's end
//! unsubscribes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::socket::{QueueLimits, SocketConn, SocketId};

const SHARDS: u64 = 16;

struct Registered {
    conn: Weak<SocketConn>,
    /// Empty (unallocated) for a socket in no topic.
    topics: Vec<Arc<str>>,
}

pub(crate) struct SocketIndex {
    shards: Box<[Mutex<HashMap<SocketId, Registered>>]>,
    next: AtomicU64,
    tag: u32,
}

impl SocketIndex {
    pub(crate) fn new(tag: u32) -> Self {
        SocketIndex {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next: AtomicU64::new(1),
            tag,
        }
    }

    pub(crate) fn tag(&self) -> u32 {
        self.tag
    }

    fn shard(&self, id: SocketId) -> std::sync::MutexGuard<'_, HashMap<SocketId, Registered>> {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&id, &mut h);
        let i = std::hash::Hasher::finish(&h) % SHARDS;
        self.shards[i as usize].lock().expect("socket index poisoned")
    }

    pub(crate) fn create(&self, limits: QueueLimits) -> Arc<SocketConn> {
        let id = SocketId::new(self.tag, self.next.fetch_add(1, Ordering::Relaxed));
        self.insert(id, limits)
    }

    /// Registers a socket under an id made elsewhere: the stand-in for a socket of another node.
    pub(crate) fn insert(&self, id: SocketId, limits: QueueLimits) -> Arc<SocketConn> {
        let conn = Arc::new(SocketConn::new(id, limits));
        self.shard(id).insert(
            id,
            Registered {
                conn: Arc::downgrade(&conn),
                topics: Vec::new(),
            },
        );
        conn
    }

    pub(crate) fn get(&self, id: SocketId) -> Option<Arc<SocketConn>> {
        self.shard(id).get(&id).and_then(|r| r.conn.upgrade())
    }

    /// Forgets a socket; returns the topics it was in.
    pub(crate) fn remove(&self, id: SocketId) -> Vec<Arc<str>> {
        self.shard(id).remove(&id).map(|r| r.topics).unwrap_or_default()
    }

    /// Records a subscription; false if the socket is gone.
    pub(crate) fn add_topic(&self, id: SocketId, topic: &Arc<str>) -> bool {
        match self.shard(id).get_mut(&id) {
            Some(r) => {
                if !r.topics.contains(topic) {
                    r.topics.push(topic.clone());
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove_topic(&self, id: SocketId, topic: &str) {
        if let Some(r) = self.shard(id).get_mut(&id) {
            r.topics.retain(|t| &**t != topic);
        }
    }

    pub(crate) fn topics(&self, id: SocketId) -> Vec<String> {
        self.shard(id)
            .get(&id)
            .map(|r| r.topics.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("socket index poisoned").len())
            .sum()
    }
}
