//! A socket as the runtime sees it: an id, a bounded outbound queue, and an ordered close.
//!
//! The gateway owns the real WebSocket; the runtime only ever touches a [`SocketConn`]. Sending
//! never waits: a frame goes into the socket's queue or, if the queue is over its frame or byte
//! bound, the socket is closed as a slow consumer (1008) and its queue dropped. One writer task
//! per socket (in the gateway) drains the queue in batches, so no broadcast ever blocks on a
//! client and memory per socket stays bounded.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::Notify;
pub use tungstenite::Utf8Bytes;

/// Process-unique socket id.
pub type SocketId = u64;

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
}

#[derive(Default)]
struct Outbound {
    frames: VecDeque<Frame>,
    bytes: usize,
    close: Option<CloseReason>,
}

/// The runtime's handle on one client socket.
pub struct SocketConn {
    id: SocketId,
    limits: QueueLimits,
    // A plain mutex: it is held only to push or swap a queue, never across an await.
    outbound: Mutex<Outbound>,
    // Wakes the socket's single writer task.
    ready: Notify,
    // Wakes whoever waits for a close to be asked for (the gateway, to bound how long it takes).
    closing: Notify,
    last_auto_response_ms: AtomicU64,
}

/// What the writer owes the client next: frames in order, then possibly a close.
pub struct Batch {
    pub frames: VecDeque<Frame>,
    pub close: Option<CloseReason>,
}

static NEXT_SOCKET_ID: AtomicU64 = AtomicU64::new(1);

impl SocketConn {
    pub fn new(limits: QueueLimits) -> Self {
        SocketConn {
            id: NEXT_SOCKET_ID.fetch_add(1, Ordering::Relaxed),
            limits,
            outbound: Mutex::new(Outbound::default()),
            ready: Notify::new(),
            closing: Notify::new(),
            last_auto_response_ms: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> SocketId {
        self.id
    }

    /// Queues a frame, or closes the socket as a slow consumer if the queue is full.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        let mut out = self.outbound.lock().expect("socket queue poisoned");
        if out.close.is_some() {
            return Err(SendError::Closing);
        }
        let bytes = out.bytes + frame.len();
        if out.frames.len() >= self.limits.max_frames || bytes > self.limits.max_bytes {
            let dropped = out.frames.len() as u64 + 1;
            out.frames = VecDeque::new();
            out.bytes = 0;
            out.close = Some(CloseReason {
                code: CLOSE_POLICY,
                reason: "slow consumer".into(),
            });
            drop(out);
            self.closing.notify_waiters();
            metrics::counter!("switchboard_slow_consumer_closes_total").increment(1);
            metrics::counter!("switchboard_outbound_frames_dropped_total").increment(dropped);
            self.ready.notify_one();
            return Err(SendError::SlowConsumer);
        }
        out.frames.push_back(frame);
        out.bytes = bytes;
        let first = out.frames.len() == 1;
        drop(out);
        // The writer drains everything each time it wakes, so only the first frame of a batch
        // needs to wake it.
        if first {
            self.ready.notify_one();
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
        drop(out);
        self.ready.notify_one();
        self.closing.notify_waiters();
    }

    /// Resolves once a close has been asked for.
    pub async fn closing(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }

    /// True once a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.outbound.lock().expect("socket queue poisoned").close.is_some()
    }

    /// Waits for the next batch to write. Called by the socket's one writer task only.
    pub async fn next_batch(&self) -> Batch {
        loop {
            let notified = self.ready.notified();
            {
                let mut out = self.outbound.lock().expect("socket queue poisoned");
                if !out.frames.is_empty() || out.close.is_some() {
                    out.bytes = 0;
                    return Batch {
                        frames: std::mem::take(&mut out.frames),
                        close: out.close.clone(),
                    };
                }
            }
            notified.await;
        }
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
        SocketConn::new(QueueLimits { max_frames, max_bytes })
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
