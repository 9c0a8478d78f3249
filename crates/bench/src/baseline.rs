//! `baseline-server`: the smallest broadcast server that does a display session's job on the
//! same stack as Switchboard's gateway (hyper for HTTP, tokio-tungstenite for WebSocket), so a
//! fan-out run against both shows what Switchboard's runtime costs on top of the libraries.
//!
//! It serves `GET /session/{id}/display` (an `initial_state` frame, then every update) and
//! `POST /session/{id}/update`, whose JSON body it broadcasts as
//! `{"type":"update","update":…,"timestamp":ms}`. No storage, no objects, and any Bearer token
//! is accepted. It keeps the habits that make broadcast cheap and safe: the frame is encoded
//! once and its bytes shared by every socket, each socket has a bounded queue drained by its
//! own writer task (feed a batch, flush once), and a socket whose queue is full is closed as a
//! slow consumer instead of blocking the broadcast.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Largest update body accepted.
const MAX_BODY: usize = 1 << 20;
/// Most frames one writer feeds before it flushes.
const BATCH: usize = 256;

/// Flags of `baseline-server`.
#[derive(clap::Args, Debug, Clone)]
pub struct BaselineArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// Stop after this many seconds (default: serve until SIGINT or SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Frames queued per socket before it is closed as a slow consumer (Switchboard's default).
    #[arg(long, default_value_t = 1024)]
    pub queue_frames: usize,
}

/// Serves until SIGINT, SIGTERM or `--duration`; prints `{"listening":…,"pid":…}` first.
pub async fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "{}",
        serde_json::json!({"scenario": "baseline-server", "listening": addr.to_string(), "pid": std::process::id()})
    );
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let limit = args.duration.map(Duration::from_secs_f64);
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
            _ = async { match limit { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
        }
    };
    serve(listener, args.queue_frames, stop).await;
    Ok(())
}

/// Serves on `listener` until `shutdown` completes, then closes every socket.
pub async fn serve(listener: TcpListener, queue_frames: usize, shutdown: impl Future<Output = ()>) {
    let hub = Arc::new(Hub {
        sessions: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        queue_frames: queue_frames.max(1),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(hub.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
    // Dropping every queue's sender makes each writer send its close frame and end.
    hub.sessions.lock().expect("hub lock poisoned").clear();
}

/// The sockets of every session.
struct Hub {
    sessions: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
    queue_frames: usize,
}

/// One socket as the hub sees it. The hub holds the only strong sender of its queue, so
/// removing it ends the socket's writer.
struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Message>,
    slow: Arc<AtomicBool>,
}

impl Hub {
    /// Queues `frame` to every socket of `session`; a full queue closes its socket. Queuing
    /// never waits, so holding the lock here never waits on a client.
    fn broadcast(&self, session: &str, frame: Utf8Bytes) -> usize {
        let mut sessions = self.sessions.lock().expect("hub lock poisoned");
        let Some(subscribers) = sessions.get_mut(session) else {
            return 0;
        };
        subscribers.retain(|s| match s.queue.try_send(Message::Text(frame.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.slow.store(true, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        subscribers.len()
    }

    fn leave(&self, session: &str, id: u64) {
        let mut sessions = self.sessions.lock().expect("hub lock poisoned");
        if let Some(subscribers) = sessions.get_mut(session) {
            subscribers.retain(|s| s.id != id);
            if subscribers.is_empty() {
                sessions.remove(session);
            }
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

async fn handle(hub: Arc<Hub>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return Ok(reply(
            StatusCode::OK,
            serde_json::json!({"status": "ok", "server": "baseline"}),
        ));
    }
    let route = path
        .strip_prefix("/session/")
        .and_then(|rest| rest.rsplit_once('/'))
        .filter(|(id, _)| !id.is_empty() && !id.contains('/'));
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    Ok(match (req.method().clone(), route) {
        (Method::GET, Some((id, "display"))) => upgrade(hub, id.to_string(), req),
        (Method::POST, Some(_)) if !bearer => reply(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "missing Authorization: Bearer token"}),
        ),
        (Method::POST, Some((_, "init"))) => reply(StatusCode::OK, serde_json::json!({"success": true})),
        (Method::POST, Some((id, "update"))) => {
            let id = id.to_string();
            match update_frame(req).await {
                Ok(frame) => {
                    hub.broadcast(&id, frame);
                    reply(StatusCode::OK, serde_json::json!({"success": true}))
                }
                Err(message) => reply(StatusCode::BAD_REQUEST, serde_json::json!({"error": message})),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": format!("no route for {path}")}),
        ),
    })
}

/// The update frame for the JSON object in `req`'s body, encoded once.
async fn update_frame(req: Request<Incoming>) -> Result<Utf8Bytes, String> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the body: {e}"))?
        .to_bytes();
    serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| format!("not JSON: {e}"))?;
    let text = std::str::from_utf8(&body).map_err(|_| "not UTF-8".to_string())?.trim();
    if !text.starts_with('{') {
        return Err("an update must be a JSON object".into());
    }
    let now = switchboard_proto::time::now_ms();
    Ok(Utf8Bytes::from(format!(
        r#"{{"type":"update","update":{text},"timestamp":{now}}}"#
    )))
}

/// Answers the WebSocket handshake and runs the socket once upgraded.
fn upgrade(hub: Arc<Hub>, session: String, mut req: Request<Incoming>) -> Reply {
    let wants = |name: hyper::header::HeaderName, token: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let (Some(key), true) = (key, wants(UPGRADE, "websocket") && wants(CONNECTION, "upgrade")) else {
        return reply(
            StatusCode::UPGRADE_REQUIRED,
            serde_json::json!({"error": "WebSocket only"}),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let config = WebSocketConfig::default()
                .max_message_size(Some(64 << 10))
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
            socket(hub, session, ws).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// One socket: joins its session, answers pings, and leaves when either half ends.
async fn socket(hub: Arc<Hub>, session: String, ws: Socket) {
    let (queue, outbound) = mpsc::channel(hub.queue_frames);
    // The reader answers pings through a weak sender, so the hub's is the one that counts.
    let replies = queue.downgrade();
    let slow = Arc::new(AtomicBool::new(false));
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut sessions = hub.sessions.lock().expect("hub lock poisoned");
        let now = switchboard_proto::time::now_ms();
        let hello = format!(r#"{{"type":"initial_state","state":null,"timestamp":{now}}}"#);
        let _ = queue.try_send(Message::text(hello));
        sessions.entry(session.clone()).or_default().push(Subscriber {
            id,
            queue,
            slow: slow.clone(),
        });
    }
    let (sink, mut stream) = ws.split();
    let mut writer = tokio::spawn(write_loop(sink, outbound, slow));
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) if text.as_str().contains(r#""type":"ping""#) => {
                    let now = switchboard_proto::time::now_ms();
                    if let Some(queue) = replies.upgrade() {
                        let _ = queue.try_send(Message::text(format!(r#"{{"type":"pong","timestamp":{now}}}"#)));
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut writer => break,
        }
    }
    hub.leave(&session, id);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Drains the socket's queue in batches (feed many, flush once) until the hub drops it.
async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    mut outbound: mpsc::Receiver<Message>,
    slow: Arc<AtomicBool>,
) {
    while let Some(first) = outbound.recv().await {
        if slow.load(Ordering::Relaxed) {
            break;
        }
        if sink.feed(first).await.is_err() {
            return;
        }
        for _ in 1..BATCH {
            match outbound.try_recv() {
                Ok(message) => {
                    if sink.feed(message).await.is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let (code, reason) = if slow.load(Ordering::Relaxed) {
        (CloseCode::Policy, "slow consumer")
    } else {
        (CloseCode::Normal, "")
    };
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}
