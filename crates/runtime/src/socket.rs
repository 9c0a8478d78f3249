//! A socket as the runtime sees it: an id, a bounded outbound queue, and an ordered close.
//!
//! The gateway owns the real WebSocket; the runtime only ever touches a [`SocketConn`]. Sending
//! never waits: a frame goes into the socket's queue or, if the queue is over its frame or byte
//! bound, the socket is closed as a slow consumer (1008) and its queue dropped. One writer task
//! per socket (in the gateway) drains the queue in batches, so no broadcast ever blocks on a
//! client and memory per socket stays bounded.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
pub use tungstenite::Utf8Bytes;

/// A socket's id: unique across a cluster and stable for the socket's life.
///
/// The top 24 bits are the node's tag (unique per node: random on a single node, assigned by
/// the cluster otherwise), the low 40 bits count sockets on that node. Written as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SocketId(u64);

impl SocketId {
    const SEQ_BITS: u32 = 40;

    pub fn new(node_tag: u32, seq: u64) -> Self {
        SocketId((u64::from(node_tag & 0xFF_FFFF) << Self::SEQ_BITS) | (seq & ((1 << Self::SEQ_BITS) - 1)))
    }

    /// The tag of the node the socket is connected to.
    pub fn node_tag(self) -> u32 {
        (self.0 >> Self::SEQ_BITS) as u32
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for SocketId {
    type Err = ();

    /// Parses the 16 hex digits of [`Display`](fmt::Display).
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        u64::from_str_radix(s, 16).map(SocketId).map_err(|_| ())
    }
}

/// What happens to a frame sent to a socket whose queue is full.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Delivery {
    /// The socket is closed as a slow consumer (1008): it never silently misses a frame.
    #[default]
    Reliable,
    /// The frame is dropped for that socket only (LED frames, cursor positions).
    Volatile,
    /// Only the newest frame per key waits in the queue: a newer one replaces an older one
    /// not yet written (device status). Dropped, like volatile, when the queue is full.
    Latest(Arc<str>),
}

/// Close code for a socket that cannot keep up with what it is sent.
pub const CLOSE_POLICY: u16 = 1008;

/// A data frame to or from a client. Cloning shares the bytes, so a broadcast encodes once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Frame {
    /// A text frame from an owned string, without copying it.
    pub fn text(s: impl Into<String>) -> Self {
        Frame::Text(Utf8Bytes::from(s.into()))
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, if this is a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(t) => Some(t.as_str()),
            Frame::Binary(_) => None,
        }
    }
}

/// Frames cross nodes as `{"Text": "..."}` or `{"Binary": [..]}`.
#[derive(serde::Serialize, serde::Deserialize)]
enum WireFrame {
    Text(String),
    Binary(Vec<u8>),
}

impl serde::Serialize for Frame {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Frame::Text(t) => WireFrame::Text(t.to_string()),
            Frame::Binary(b) => WireFrame::Binary(b.to_vec()),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Frame {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match WireFrame::deserialize(d)? {
            WireFrame::Text(t) => Frame::text(t),
            WireFrame::Binary(b) => Frame::Binary(b.into()),
        })
    }
}

/// Why a socket closes: the code and reason sent in the close frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

/// Bounds of one socket's outbound queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Most frames waiting to be written. Default: 1024.
    pub max_frames: usize,
    /// Most payload bytes waiting to be written. Default: 4 MiB.
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_frames: 1024,
            max_bytes: 4 << 20,
        }
    }
}

/// Why a send did not enqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the socket is closing")]
    Closing,
    #[error("the socket's outbound queue is full; it was closed as a slow consumer")]
    SlowConsumer,
    #[error("the socket's outbound queue is full; the frame was dropped")]
    Dropped,
}

#[derive(Default)]
struct Outbound {
    frames: VecDeque<Frame>,
    /// Where the queued frame of each `Latest` key sits in `frames`. The writer takes the whole
    /// queue at once, so positions stay valid until then; empty (unallocated) for most sockets.
    latest: Vec<(Arc<str>, usize)>,
    bytes: usize,
    ping: bool,
    close: Option<CloseReason>,
    /// The writer waiting for work, woken by whatever gives it some. A waker under the queue's
    /// own lock rather than a `Notify`: the writer then waits without a `Notified` future in its
    /// state, which every idle socket would otherwise carry.
    writer: Option<Waker>,
    /// Whoever waits for a close to be asked for (the gateway, to bound how long it takes).
    closer: Option<Waker>,
}

/// Wakes the writer that `guard` held, after releasing the lock (the writer takes it first).
fn wake_writer(mut guard: std::sync::MutexGuard<'_, Outbound>) {
    let waker = guard.writer.take();
    drop(guard);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Wakes the writer and whoever waits for the close, after releasing the lock.
fn wake_for_close(mut guard: std::sync::MutexGuard<'_, Outbound>) {
    let (writer, closer) = (guard.writer.take(), guard.closer.take());
    drop(guard);
    for waker in [writer, closer].into_iter().flatten() {
        waker.wake();
    }
}

/// Keeps `cx`'s waker in `slot`, reusing the one there if it would wake the same task.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) => waker.clone_from(cx.waker()),
        None => *slot = Some(cx.waker().clone()),
    }
}

/// The runtime's handle on one client socket.
pub struct SocketConn {
    id: SocketId,
    limits: QueueLimits,
    // A plain mutex: it is held only to push or swap a queue, never across an await.
    outbound: Mutex<Outbound>,
    last_auto_response_ms: AtomicU64,
}

/// What the writer owes the client next: frames in order, then possibly a close.
pub struct Batch {
    /// A WebSocket ping to send first (asked for with [`SocketConn::ping`]).
    pub ping: bool,
    pub frames: VecDeque<Frame>,
    pub close: Option<CloseReason>,
}

impl SocketConn {
    /// A socket with this id; ids come from [`Runtime::new_socket`](crate::Runtime::new_socket).
    pub fn new(id: SocketId, limits: QueueLimits) -> Self {
        SocketConn {
            id,
            limits,
            outbound: Mutex::new(Outbound::default()),
            last_auto_response_ms: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> SocketId {
        self.id
    }

    /// Queues a frame, or closes the socket as a slow consumer if the queue is full.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_with(frame, &Delivery::Reliable)
    }

    /// Queues a frame with the given delivery class.
    pub fn send_with(&self, frame: Frame, delivery: &Delivery) -> Result<(), SendError> {
        let mut out = self.outbound.lock().expect("socket queue poisoned");
        if out.close.is_some() {
            return Err(SendError::Closing);
        }
        if let Delivery::Latest(key) = delivery
            && let Some(&(_, at)) = out.latest.iter().find(|(k, _)| k == key)
        {
            let bytes = out.bytes - out.frames[at].len() + frame.len();
            if bytes > self.limits.max_bytes {
                metrics::counter!("switchboard_outbound_frames_dropped_total").increment(1);
                return Err(SendError::Dropped);
            }
            out.frames[at] = frame;
            out.bytes = bytes;
            return Ok(());
        }
        let bytes = out.bytes + frame.len();
        // A frame into an empty queue is always taken, however big: a socket's first frame (a
        // large initial state) must not close it as a slow consumer.
        let full =
            !out.frames.is_empty() && (out.frames.len() >= self.limits.max_frames || bytes > self.limits.max_bytes);
        if full && *delivery != Delivery::Reliable {
            metrics::counter!("switchboard_outbound_frames_dropped_total").increment(1);
            return Err(SendError::Dropped);
        }
        if full {
            let dropped = out.frames.len() as u64 + 1;
            out.frames = VecDeque::new();
            out.latest = Vec::new();
            out.bytes = 0;
            out.close = Some(CloseReason {
                code: CLOSE_POLICY,
                reason: "slow consumer".into(),
            });
            wake_for_close(out);
            metrics::counter!("switchboard_slow_consumer_closes_total").increment(1);
            metrics::counter!("switchboard_outbound_frames_dropped_total").increment(dropped);
            return Err(SendError::SlowConsumer);
        }
        if let Delivery::Latest(key) = delivery {
            let at = out.frames.len();
            out.latest.push((key.clone(), at));
        }
        out.frames.push_back(frame);
        out.bytes = bytes;
        // The writer drains everything each time it wakes, so only the first frame of a batch
        // needs to wake it.
        if out.frames.len() == 1 {
            wake_writer(out);
        }
        Ok(())
    }

    /// Closes the socket after the frames already queued. The first close wins.
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        let mut out = self.outbound.lock().expect("socket queue poisoned");
        if out.close.is_none() {
            out.close = Some(CloseReason {
                code,
                reason: reason.into(),
            });
        }
        wake_for_close(out);
    }

    /// Asks the writer to send a WebSocket ping (the gateway's check that the peer is alive).
    pub fn ping(&self) {
        let mut out = self.outbound.lock().expect("socket queue poisoned");
        out.ping = true;
        wake_writer(out);
    }

    /// Resolves once a close has been asked for. One waiter per socket (its reader, or what
    /// watches an adopted connection): the latest caller's waker is the one kept. A waker under
    /// the queue's lock rather than a `Notify`, so a waiting reader carries no `Notified`.
    pub async fn closing(&self) {
        std::future::poll_fn(|cx| {
            let mut out = self.outbound.lock().expect("socket queue poisoned");
            if out.close.is_some() {
                return Poll::Ready(());
            }
            register(&mut out.closer, cx);
            Poll::Pending
        })
        .await
    }

    /// The close asked for, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.outbound.lock().expect("socket queue poisoned").close.clone()
    }

    /// True once a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.outbound.lock().expect("socket queue poisoned").close.is_some()
    }

    /// Waits for the next batch to write. Called by the socket's one writer task only.
    pub async fn next_batch(&self) -> Batch {
        std::future::poll_fn(|cx| self.poll_next_batch(cx)).await
    }

    /// The next batch to write, or `Pending` with `cx` woken once there is one. Only the latest
    /// caller's waker is kept: there is one writer per socket.
    pub fn poll_next_batch(&self, cx: &mut Context<'_>) -> Poll<Batch> {
        let mut out = self.outbound.lock().expect("socket queue poisoned");
        if !out.frames.is_empty() || out.close.is_some() || out.ping {
            out.bytes = 0;
            out.latest.clear();
            return Poll::Ready(Batch {
                ping: std::mem::take(&mut out.ping),
                frames: std::mem::take(&mut out.frames),
                close: out.close.clone(),
            });
        }
        register(&mut out.writer, cx);
        Poll::Pending
    }

    /// Milliseconds since the epoch of the last auto-response sent on this socket (0: never).
    pub fn last_auto_response_ms(&self) -> u64 {
        self.last_auto_response_ms.load(Ordering::Relaxed)
    }

    pub fn set_last_auto_response_ms(&self, ms: u64) {
        self.last_auto_response_ms.store(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(max_frames: usize, max_bytes: usize) -> SocketConn {
        SocketConn::new(SocketId::new(1, 1), QueueLimits { max_frames, max_bytes })
    }

    /// Volatile frames are dropped when the queue is full, and the socket stays open; a
    /// `Latest` frame replaces the queued one of its key.
    #[tokio::test]
    async fn volatile_and_latest() {
        let c = conn(2, 1000);
        let key = Delivery::Latest("status".into());
        c.send_with(Frame::text("s1"), &key).unwrap();
        c.send(Frame::text("a")).unwrap();
        c.send_with(Frame::text("s2"), &key).unwrap();
        assert_eq!(
            c.send_with(Frame::text("v"), &Delivery::Volatile),
            Err(SendError::Dropped)
        );
        assert!(!c.is_closing());
        let batch = c.next_batch().await;
        assert_eq!(batch.frames, vec![Frame::text("s2"), Frame::text("a")]);
        c.send_with(Frame::text("s3"), &key).unwrap();
        assert_eq!(c.next_batch().await.frames, vec![Frame::text("s3")]);
    }

    /// Ids print as 16 hex digits and parse back; the node tag is kept.
    #[test]
    fn socket_ids() {
        let id = SocketId::new(0xABCDEF, 42);
        assert_eq!(id.to_string(), "abcdef000000002a");
        assert_eq!(id.to_string().parse::<SocketId>(), Ok(id));
        assert_eq!(id.node_tag(), 0xABCDEF);
        assert!("xyz".parse::<SocketId>().is_err());
    }

    /// Frames come out in order, then the close that followed them.
    #[tokio::test]
    async fn frames_then_close_in_order() {
        let c = conn(10, 1000);
        c.send(Frame::text("a")).unwrap();
        c.send(Frame::text("b")).unwrap();
        c.close(1000, "bye");
        assert_eq!(c.send(Frame::text("c")), Err(SendError::Closing));
        let batch = c.next_batch().await;
        assert_eq!(
            batch.frames.into_iter().collect::<Vec<_>>(),
            vec![Frame::text("a"), Frame::text("b")]
        );
        assert_eq!(batch.close.unwrap().code, 1000);
    }

    /// A queue over its frame bound drops its frames and closes with 1008.
    #[tokio::test]
    async fn full_queue_closes_as_slow_consumer() {
        let c = conn(2, 1000);
        c.send(Frame::text("a")).unwrap();
        c.send(Frame::text("b")).unwrap();
        assert_eq!(c.send(Frame::text("c")), Err(SendError::SlowConsumer));
        let batch = c.next_batch().await;
        assert!(batch.frames.is_empty());
        assert_eq!(
            batch.close,
            Some(CloseReason {
                code: 1008,
                reason: "slow consumer".into()
            })
        );
    }

    /// A frame larger than the byte bound is taken into an empty queue (a first frame never
    /// trips the bound); the next one then does.
    #[tokio::test]
    async fn a_big_first_frame_is_taken() {
        let c = conn(10, 10);
        c.send(Frame::text("x".repeat(100))).unwrap();
        assert_eq!(c.send(Frame::text("y")), Err(SendError::SlowConsumer));
    }

    /// The byte bound counts payload bytes, and draining frees them.
    #[tokio::test]
    async fn byte_bound_is_released_by_draining() {
        let c = conn(100, 10);
        c.send(Frame::text("12345")).unwrap();
        c.send(Frame::text("12345")).unwrap();
        let batch = c.next_batch().await;
        assert_eq!(batch.frames.len(), 2);
        c.send(Frame::text("1234567890")).unwrap();
        assert_eq!(c.send(Frame::text("x")), Err(SendError::SlowConsumer));
    }
}
