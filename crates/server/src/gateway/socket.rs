//! Drives one WebSocket: one reader loop, one writer task, one teardown.
//!
//! The writer drains the socket's [`SocketConn`] queue in batches (feed all, flush once). The
//! reader hands each data frame to a [`SocketHandler`]. Whichever half ends first, the other is
//! given a moment to send its close frame and then stopped, and the handler hears about the
//! close exactly once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, StreamExt};
use switchboard_apps::{RateLimit, SocketOptions};
use switchboard_runtime::{CloseReason, Frame, Runtime, SocketConn};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::upgrade::ServerSocket;

/// How long the writer may take to send a close after the connection ended on its own.
const WRITER_GRACE: Duration = Duration::from_secs(1);

/// Close codes of the wire contract.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    /// A close frame that carried no code.
    pub const NO_STATUS: u16 = 1005;
    /// No close frame at all: the connection just ended.
    pub const ABNORMAL: u16 = 1006;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const RESTARTING: u16 = 1012;
    pub const LIFETIME_OVER: u16 = 4002;
}

/// What a socket does with the frames it receives.
pub trait SocketHandler: Send + 'static {
    /// A text or binary frame arrived. The next frame is read only after this returns.
    fn on_frame(&mut self, conn: &Arc<SocketConn>, frame: Frame) -> impl Future<Output = ()> + Send;
    /// The socket is gone, with the close code the peer sent (1005 if its close frame had
    /// none); if the peer sent none, the one the server closed with (a shutdown's 1012, a
    /// lifetime's 4002); 1006 if neither side closed.
    fn on_close(self, conn: &Arc<SocketConn>, code: u16, reason: String) -> impl Future<Output = ()> + Send;
}

/// An upgraded WebSocket with its queue and settings, waiting for a handler.
pub struct Connection {
    ws: ServerSocket,
    /// The runtime's handle on this socket.
    pub conn: Arc<SocketConn>,
    runtime: Runtime,
    shutdown: CancellationToken,
    close_timeout: Duration,
    tracker: TaskTracker,
    options: SocketOptions,
    heartbeat: Option<Heartbeat>,
    address_rate: Option<Box<AddressRate>>,
}

impl Connection {
    pub(crate) fn new(
        ws: ServerSocket,
        conn: Arc<SocketConn>,
        gateway: &super::Gateway,
        options: SocketOptions,
        peer: Option<std::net::IpAddr>,
    ) -> Self {
        Connection {
            ws,
            conn,
            runtime: gateway.runtime.clone(),
            shutdown: gateway.shutdown.clone(),
            close_timeout: gateway.config.close_timeout,
            tracker: gateway.sockets.clone(),
            heartbeat: Heartbeat::new(
                options.ping_interval.unwrap_or(gateway.config.ping_interval),
                gateway.config.ping_timeout,
            ),
            address_rate: match (&gateway.ip_rates, peer) {
                (Some(rates), Some(ip)) => Some(Box::new(AddressRate {
                    rates: rates.clone(),
                    ip,
                    reply: options.rate_limit.as_ref().and_then(|r| r.reply.clone()),
                    excess: 0,
                })),
                _ => None,
            },
            options,
        }
    }

    /// Runs the socket with `handler` until it closes, on a reader task and a writer task of
    /// its own, and returns at once. The tasks that upgraded and connected the socket end here:
    /// an idle socket costs only the two small loops, not the setup that preceded them.
    pub fn run<H: SocketHandler>(self, handler: H) {
        let (sink, stream) = self.ws.split();
        let writer = tokio::spawn(Writer::new(sink, self.conn.clone()));
        let limits = Limits::new(&self.options);
        let reader = read_loop(
            stream,
            writer,
            self.conn,
            handler,
            self.shutdown,
            self.close_timeout,
            Guards {
                limits,
                heartbeat: self.heartbeat,
                address_rate: self.address_rate,
            },
            self.runtime,
        );
        self.tracker.spawn(reader);
    }
}

/// The server's check that a quiet peer is still there: after `interval` with nothing from it, a
/// ping; after `timeout` more with nothing, the socket is closed. A peer stuck inside a frame
/// cannot answer either, so this also bounds how long a half-sent frame holds its buffer.
#[derive(Clone, Copy)]
struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    next: Instant,
    /// A ping is out and unanswered.
    awaiting: bool,
}

impl Heartbeat {
    /// `None` when `interval` is zero: no pings.
    fn new(interval: Duration, timeout: Duration) -> Option<Self> {
        (!interval.is_zero()).then(|| Heartbeat {
            interval,
            timeout,
            next: Instant::now() + interval,
            awaiting: false,
        })
    }

    /// Something came from the peer.
    fn heard(&mut self) {
        self.next = Instant::now() + self.interval;
        self.awaiting = false;
    }

    /// Its deadline came: ping, or close a peer that did not answer the last one.
    fn due(&mut self, conn: &SocketConn) {
        if self.next > Instant::now() {
            return;
        }
        if self.awaiting {
            conn.close(close::GOING_AWAY, "no answer to ping");
        } else {
            conn.ping();
            self.awaiting = true;
            self.next = Instant::now() + self.timeout;
        }
    }
}

/// What watches one socket besides its frames: the route's limits and the heartbeat.
struct Guards {
    limits: Option<Box<Limits>>,
    heartbeat: Option<Heartbeat>,
    address_rate: Option<Box<AddressRate>>,
}

/// The socket's share of its client address's rate (`ip_rate_per_second`), answered like the
/// route's own rate limit.
struct AddressRate {
    rates: Arc<super::limits::IpRates>,
    ip: std::net::IpAddr,
    /// The route's rate-limit reply, if it has one.
    reply: Option<Frame>,
    /// Frames refused in a row.
    excess: u32,
}

impl AddressRate {
    fn frame_in(&mut self) -> Admit {
        if self.rates.take(self.ip) {
            self.excess = 0;
            return Admit::Pass;
        }
        self.excess += 1;
        if self.excess >= self.rates.burst().max(1) {
            Admit::Close
        } else {
            Admit::Refuse(self.reply.clone())
        }
    }
}

impl Guards {
    fn next_deadline(&self) -> Option<Instant> {
        let limits = self.limits.as_ref().and_then(|l| l.next_deadline());
        let heartbeat = self.heartbeat.map(|h| h.next);
        limits.into_iter().chain(heartbeat).min()
    }
}

/// A route's limits on one socket, as deadlines and a token bucket.
struct Limits {
    idle: Option<(Duration, Instant)>,
    /// The lifetime's warning (sent once) and end.
    warning: Option<(Instant, Frame)>,
    end: Option<Instant>,
    rate: Option<Bucket>,
}

/// A token bucket: `tokens` refill at the limit's rate up to its burst.
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
    excess: u32,
}

/// What to do with a frame under the rate limit.
enum Admit {
    Pass,
    Refuse(Option<Frame>),
    Close,
}

impl Limits {
    /// The limits `options` set; `None` when they set none (most routes), so that a socket
    /// without limits carries none of their room.
    fn new(options: &SocketOptions) -> Option<Box<Self>> {
        if options.idle_timeout.is_none() && options.lifetime.is_none() && options.rate_limit.is_none() {
            return None;
        }
        let now = Instant::now();
        Some(Box::new(Limits {
            idle: options.idle_timeout.map(|d| (d, now + d)),
            warning: options.lifetime.as_ref().and_then(|l| {
                l.warning
                    .clone()
                    .map(|(before, frame)| (now + l.after.saturating_sub(before), frame))
            }),
            end: options.lifetime.as_ref().map(|l| now + l.after),
            rate: options.rate_limit.clone().map(|limit| Bucket {
                tokens: f64::from(limit.burst.max(1)),
                limit,
                at: now,
                excess: 0,
            }),
        }))
    }

    /// A deadline came: closes the socket or sends the lifetime's warning.
    fn due(&mut self, conn: &SocketConn) {
        let now = Instant::now();
        if self.end.is_some_and(|at| at <= now) {
            conn.close(close::LIFETIME_OVER, "connection lifetime over");
            self.end = None;
        } else if self.idle.is_some_and(|(_, at)| at <= now) {
            conn.close(close::GOING_AWAY, "idle timeout");
            self.idle = None;
        } else if self.warning.as_ref().is_some_and(|(at, _)| *at <= now) {
            let (_, frame) = self.warning.take().expect("checked");
            let _ = conn.send(frame);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.idle.map(|(_, at)| at),
            self.warning.as_ref().map(|(at, _)| *at),
            self.end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn frame_in(&mut self) -> Admit {
        let now = Instant::now();
        if let Some((d, at)) = self.idle.as_mut() {
            *at = now + *d;
        }
        let Some(bucket) = self.rate.as_mut() else {
            return Admit::Pass;
        };
        let burst = f64::from(bucket.limit.burst.max(1));
        bucket.tokens = (bucket.tokens + (now - bucket.at).as_secs_f64() * bucket.limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.excess = 0;
            return Admit::Pass;
        }
        bucket.excess += 1;
        if bucket.excess >= bucket.limit.close_after.max(1) {
            Admit::Close
        } else {
            Admit::Refuse(bucket.limit.reply.clone())
        }
    }
}

/// Reads `ws` until it closes. On `shutdown` the socket is closed with 1012. Once a close is
/// asked for, by either side of the server, the connection is dropped if the close handshake
/// has not finished within `close_timeout` — a peer that stopped reading cannot hold it open.
#[allow(clippy::too_many_arguments)]
async fn read_loop<H: SocketHandler>(
    mut stream: SplitStream<ServerSocket>,
    mut writer: JoinHandle<()>,
    conn: Arc<SocketConn>,
    mut handler: H,
    shutdown: CancellationToken,
    close_timeout: Duration,
    mut guards: Guards,
    runtime: Runtime,
) {
    // Not held: a handle is two words of every idle socket's state, and is needed twice.
    metrics::gauge!("switchboard_connections_open").increment(1.0);
    let frames_in = metrics::counter!("switchboard_frames_in_total");
    let mut peer_close: Option<(u16, String)> = None;
    let mut writer_done = false;
    let mut close_deadline: Option<tokio::time::Instant> = None;
    // Made once, not per frame: each registers a waker when first polled.
    let server_stopping = shutdown.cancelled();
    let close_asked = conn.closing();
    tokio::pin!(server_stopping, close_asked);
    let mut restart_sent = false;
    loop {
        // One timer: the close handshake's deadline once a close is under way, else the
        // route's next limit.
        let wake_at = close_deadline.or_else(|| guards.next_deadline());
        let deadline = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next() => {
                if let (Some(Ok(_)), Some(heartbeat)) = (&msg, guards.heartbeat.as_mut()) {
                    heartbeat.heard();
                }
                let frame = match msg {
                    Some(Ok(Message::Text(text))) => Frame::Text(text),
                    Some(Ok(Message::Binary(data))) => Frame::Binary(data),
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite answers the close itself; keep reading until the stream ends.
                        peer_close = Some(frame.map_or((close::NO_STATUS, String::new()), |f| (u16::from(f.code), f.reason.to_string())));
                        continue;
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // Answered by tungstenite: for the object, a pong is an auto-response.
                        conn.set_last_auto_response_ms(runtime.now_ms().max(0) as u64);
                        continue;
                    }
                    Some(Ok(_)) => continue, // Pong, raw frames.
                    Some(Err(e)) => {
                        use tokio_tungstenite::tungstenite::Error;
                        match &e {
                            Error::Capacity(_) => conn.close(close::TOO_BIG, "message too big"),
                            Error::Utf8(_) => conn.close(close::INVALID_DATA, "invalid UTF-8"),
                            Error::Protocol(_) => conn.close(close::PROTOCOL_ERROR, "protocol error"),
                            _ => {}
                        }
                        tracing::debug!(socket = %conn.id(), error = %e, "socket read ended");
                        break;
                    }
                    None => break,
                };
                frames_in.increment(1);
                let admit = match guards.address_rate.as_mut().map_or(Admit::Pass, |a| a.frame_in()) {
                    Admit::Pass => guards.limits.as_mut().map_or(Admit::Pass, |l| l.frame_in()),
                    refused => refused,
                };
                match admit {
                    // The handler's futures are boxed so that this long-lived task does not
                    // carry room for them between frames (a task is as big as its largest state).
                    Admit::Pass => Box::pin(handler.on_frame(&conn, frame)).await,
                    Admit::Refuse(reply) => {
                        if let Some(reply) = reply {
                            let _ = conn.send(reply);
                        }
                    }
                    Admit::Close => conn.close(close::POLICY, "rate limit exceeded"),
                }
            },
            _ = &mut server_stopping, if !restart_sent => {
                // The first close asked for wins: a socket already closing keeps its reason.
                restart_sent = true;
                conn.close(close::RESTARTING, "server restarting");
            }
            _ = &mut close_asked, if close_deadline.is_none() => {
                close_deadline = Some(tokio::time::Instant::now() + close_timeout);
            }
            _ = &mut writer, if !writer_done => {
                // Our close frame is out (or the connection broke): wait a while for the peer's.
                writer_done = true;
                close_deadline.get_or_insert(tokio::time::Instant::now() + close_timeout);
            }
            _ = deadline => {
                if close_deadline.is_some() {
                    tracing::debug!(socket = %conn.id(), "close handshake timed out; dropping the connection");
                    break;
                }
                if let Some(limits) = guards.limits.as_mut() {
                    limits.due(&conn);
                }
                if let Some(heartbeat) = guards.heartbeat.as_mut() {
                    heartbeat.due(&conn);
                }
            }
        }
    }
    let server_close = conn.close_reason().map(|r| (r.code, r.reason));
    if !writer_done {
        let timed_out = close_deadline.is_some_and(|at| tokio::time::Instant::now() >= at);
        if !timed_out {
            conn.close(close::NORMAL, "");
        }
        if timed_out || tokio::time::timeout(WRITER_GRACE, &mut writer).await.is_err() {
            writer.abort();
        }
    }
    let (code, reason) = peer_close.or(server_close).unwrap_or((close::ABNORMAL, String::new()));
    Box::pin(handler.on_close(&conn, code, reason)).await;
    runtime.socket_ended(conn.id());
    metrics::gauge!("switchboard_connections_open").decrement(1.0);
}

/// The writer task: drains the socket's queue in batches (feed every frame, flush once), and
/// ends after sending the close frame or when the connection breaks.
///
/// A hand-written future rather than an `async fn`: every idle socket keeps one for its whole
/// life, and the compiler's state for the loop (a `feed` future per await point, the batch and
/// its iterator side by side) took 424 bytes and made the task a 640-byte allocation. This keeps
/// only a pointer to the batch being written, and its task takes 256.
struct Writer {
    sink: SplitSink<ServerSocket, Message>,
    conn: Arc<SocketConn>,
    frames_out: metrics::Counter,
    /// The batch being written; `None` while waiting for one.
    batch: Option<Box<Written>>,
}

/// What is left of a batch: boxed, so a waiting writer carries only a pointer.
struct Written {
    ping: bool,
    frames: std::collections::vec_deque::IntoIter<Frame>,
    count: u64,
    close: Option<CloseReason>,
    /// Every frame (and the close, if any) is fed: flush, then wait for the next batch or end.
    fed: bool,
}

impl Writer {
    fn new(sink: SplitSink<ServerSocket, Message>, conn: Arc<SocketConn>) -> Self {
        Writer {
            sink,
            conn,
            frames_out: metrics::counter!("switchboard_frames_out_total"),
            batch: None,
        }
    }

    /// Feeds `msg` once the sink has room; `Err` when the connection broke.
    fn feed(
        sink: &mut SplitSink<ServerSocket, Message>,
        cx: &mut Context<'_>,
        msg: impl FnOnce() -> Message,
    ) -> Poll<Result<(), ()>> {
        match ready!(Pin::new(&mut *sink).poll_ready(cx)) {
            Ok(()) => Poll::Ready(Pin::new(sink).start_send(msg()).map_err(|_| ())),
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

impl Future for Writer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let batch = match &mut this.batch {
                Some(batch) => batch,
                None => {
                    let next = ready!(this.conn.poll_next_batch(cx));
                    let count = next.frames.len() as u64;
                    this.batch.insert(Box::new(Written {
                        ping: next.ping,
                        frames: next.frames.into_iter(),
                        count,
                        close: next.close,
                        fed: false,
                    }))
                }
            };
            if !batch.fed {
                if batch.ping {
                    if ready!(Self::feed(&mut this.sink, cx, || Message::Ping(Default::default()))).is_err() {
                        return Poll::Ready(());
                    }
                    batch.ping = false;
                }
                while batch.frames.len() > 0 {
                    let frames = &mut batch.frames;
                    let msg = || match frames.next().expect("not empty") {
                        Frame::Text(t) => Message::Text(t),
                        Frame::Binary(b) => Message::Binary(b),
                    };
                    if ready!(Self::feed(&mut this.sink, cx, msg)).is_err() {
                        return Poll::Ready(());
                    }
                }
                this.frames_out.increment(std::mem::take(&mut batch.count));
                if let Some(reason) = &batch.close {
                    let close = || {
                        Message::Close(Some(CloseFrame {
                            code: CloseCode::from(reason.code),
                            reason: reason.reason.clone().into(),
                        }))
                    };
                    if ready!(Self::feed(&mut this.sink, cx, close)).is_err() {
                        return Poll::Ready(());
                    }
                }
                batch.fed = true;
            }
            let flushed = ready!(Pin::new(&mut this.sink).poll_flush(cx));
            if batch.close.is_some() || flushed.is_err() {
                return Poll::Ready(());
            }
            this.batch = None;
        }
    }
}
