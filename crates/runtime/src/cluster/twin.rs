//! The in-memory cluster: N nodes in one process, for tests. Every message is encoded and
//! decoded on its way, so what works here crosses a real network unchanged.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use super::{Answer, Cluster, LocalNode, Location, NodeMessage};
use crate::address::Address;
use crate::registry::CallError;
use crate::socket::SocketId;
use crate::topic::Prepared;

/// The network the twin nodes share.
pub struct TwinNetwork {
    nodes: Vec<OnceLock<LocalNode>>,
    /// Topic → the nodes with subscribers of it.
    interest: Mutex<HashMap<String, HashSet<usize>>>,
}

/// One node of a [`TwinNetwork`].
pub struct TwinNode {
    net: Arc<TwinNetwork>,
    index: usize,
    id: String,
}

impl TwinNetwork {
    /// A network of `n` nodes, named `node-0` … and tagged 1 ….
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(TwinNetwork {
            nodes: (0..n).map(|_| OnceLock::new()).collect(),
            interest: Mutex::new(HashMap::new()),
        })
    }

    /// The cluster seam of node `index`, for its runtime's builder.
    pub fn node(self: &Arc<Self>, index: usize) -> Arc<TwinNode> {
        Arc::new(TwinNode {
            net: self.clone(),
            index,
            id: format!("node-{index}"),
        })
    }

    /// The index of the node that owns `address`: a hash all nodes agree on.
    pub fn owner_index(&self, address: &Address) -> usize {
        let mut h = std::hash::DefaultHasher::new();
        address.class.hash(&mut h);
        address.name.hash(&mut h);
        (h.finish() % self.nodes.len() as u64) as usize
    }

    fn deliver(&self, index: usize, message: NodeMessage) -> Answer {
        // Across the wire and back, as a real network would carry it.
        let bytes = serde_json::to_vec(&message).expect("node messages encode");
        let message: NodeMessage = serde_json::from_slice(&bytes).expect("node messages decode");
        match self.nodes.get(index).and_then(OnceLock::get) {
            Some(node) => node.handle(message),
            None => Box::pin(std::future::ready(Err(CallError::Unreachable(format!(
                "node-{index} has not joined"
            ))))),
        }
    }
}

fn index_of(node: &str) -> Option<usize> {
    node.strip_prefix("node-")?.parse().ok()
}

impl Cluster for TwinNode {
    fn node_id(&self) -> &str {
        &self.id
    }

    fn socket_tag(&self) -> u32 {
        self.index as u32 + 1
    }

    fn join(&self, node: LocalNode) {
        let _ = self.net.nodes[self.index].set(node);
    }

    fn locate(&self, address: &Address) -> Location {
        let owner = self.net.owner_index(address);
        Box::pin(std::future::ready(Ok(
            (owner != self.index).then(|| format!("node-{owner}"))
        )))
    }

    fn released(&self, _address: &Address) {
        // Ownership here is a hash, not a lease: nothing to give up.
    }

    fn holder(&self, address: &Address) -> Option<String> {
        Some(format!("node-{}", self.net.owner_index(address)))
    }

    fn node_of_socket(&self, socket: SocketId) -> Option<String> {
        let index = socket.node_tag().checked_sub(1)? as usize;
        (index != self.index && index < self.net.nodes.len()).then(|| format!("node-{index}"))
    }

    fn request(&self, node: &str, message: NodeMessage) -> Answer {
        match index_of(node) {
            Some(index) => self.net.deliver(index, message),
            None => Box::pin(std::future::ready(Err(CallError::Unreachable(format!(
                "no node {node:?}"
            ))))),
        }
    }

    fn send(&self, node: &str, message: NodeMessage) {
        let answer = self.request(node, message);
        tokio::spawn(async move {
            if let Err(e) = answer.await {
                tracing::warn!(error = %e, "a message to another node was lost");
            }
        });
    }

    fn publish(&self, prepared: &Prepared) {
        let targets: HashSet<usize> = {
            let interest = self.net.interest.lock().expect("twin interest poisoned");
            prepared
                .frames
                .iter()
                .filter_map(|t| interest.get(&*t.topic))
                .flatten()
                .copied()
                .filter(|i| *i != self.index)
                .collect()
        };
        for index in targets {
            // Other nodes deliver to their own subscribers, each once.
            drop(self.net.deliver(index, NodeMessage::Publish(prepared.clone())));
        }
    }

    fn interest(&self, topic: &str, interested: bool) {
        let mut interest = self.net.interest.lock().expect("twin interest poisoned");
        let nodes = interest.entry(topic.to_string()).or_default();
        if interested {
            nodes.insert(self.index);
        } else {
            nodes.remove(&self.index);
            if nodes.is_empty() {
                interest.remove(topic);
            }
        }
    }
}
