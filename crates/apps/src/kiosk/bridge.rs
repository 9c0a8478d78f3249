//! Socket.IO clients of the kiosk: each is adopted by the host (counted, closed on shutdown)
//! and offered to the kiosk object as one of its sockets. What a client emits reaches the
//! object in the order it was sent; what the object sends is emitted to the client.
//!
//! socketioxide runs each event handler as a task of its own, which would let two events of
//! one client overtake each other. The handlers here are plain closures that only queue the
//! event (they run in arrival order, before the task is spawned), and one task per client,
//! the pump, delivers the queue to the object one event at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{Event, HttpExtension, SocketRef, TryData};
use socketioxide::socket::DisconnectReason;
use switchboard_proto::kiosk::{WireError, codes, event_json};
use switchboard_runtime::{ConnectInfo, Frame, SocketConn};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::object::{Inbound, Kiosk};
use super::{KIOSK, LedLink};
use crate::{Host, PeerAddr};

/// Events of one client waiting for the object; more at once is abuse, answered with an error.
const INBOUND_QUEUE: usize = 256;
/// Close code the host uses when the server stops (the app closes every session then).
const RESTARTING: u16 = 1012;

/// Registers the kiosk's namespace on `io`. Each request must carry the [`Host`] as an
/// extension (the route puts it there).
pub fn serve_namespace(io: &SocketIo, leds: Arc<LedLink>) {
    io.ns(
        "/",
        move |socket: SocketRef, HttpExtension(host): HttpExtension<Host>| {
            let (events, queue) = mpsc::channel(INBOUND_QUEUE);
            let gone = CancellationToken::new();
            // The socket comes as an argument: captured, it would keep itself alive through its
            // own handler.
            let on_event = move |socket: SocketRef, Event(event): Event, TryData(payload): TryData<Value>| {
                // An event emitted without an argument cannot be read as a value: it is `null`,
                // as for events that take no data (binary data arrives as an array of numbers,
                // which the kiosk refuses like any payload that is not an envelope).
                let inbound = Inbound {
                    event,
                    payload: payload.unwrap_or(Value::Null),
                };
                if events.try_send(inbound).is_err() {
                    let error = WireError::new(codes::INVALID_PAYLOAD, "too many events at once; this one was dropped");
                    emit(&socket, &event_json("error", switchboard_proto::time::now_ms(), &error));
                }
                std::future::ready(())
            };
            socket.on_fallback(on_event);
            let disconnected = gone.clone();
            socket.on_disconnect(move |reason: DisconnectReason| {
                tracing::debug!(?reason, "kiosk: Socket.IO client left");
                disconnected.cancel();
                std::future::ready(())
            });
            tokio::spawn(pump(host, leds.clone(), socket, queue, gone));
            std::future::ready(())
        },
    );
}

/// Adopts the client, offers it to the kiosk, and delivers its events until it leaves.
async fn pump(
    host: Host,
    leds: Arc<LedLink>,
    socket: SocketRef,
    mut queue: mpsc::Receiver<Inbound>,
    gone: CancellationToken,
) {
    // The kiosk is in use: the LED strip follows it from now on.
    leds.follow(&host).await;
    let adopted = host.adopt("socket.io");
    let conn = adopted.conn.clone();
    let parts = socket.req_parts();
    let info = ConnectInfo {
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        peer: parts.extensions.get::<PeerAddr>().map(|p| p.0),
        params: BTreeMap::new(),
        claims: None,
    };
    let object = match host.runtime().object::<Kiosk>(KIOSK).connect(conn.clone(), info).await {
        Ok(Some(object)) => object,
        outcome => {
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "kiosk: a Socket.IO client could not reach the kiosk");
            }
            let _ = socket.disconnect();
            return;
        }
    };
    let writer = tokio::spawn(write(conn.clone(), socket));
    let deliver = |inbound: Inbound| {
        let text = serde_json::to_string(&inbound).expect("events serialize");
        object.frame(Frame::text(text))
    };
    loop {
        tokio::select! {
            biased;
            inbound = queue.recv() => match inbound {
                Some(inbound) => deliver(inbound).await,
                None => break,
            },
            _ = gone.cancelled() => {
                // What the client sent before it left still counts.
                while let Ok(inbound) = queue.try_recv() {
                    deliver(inbound).await;
                }
                break;
            }
        }
    }
    object.closed(1001, "Socket.IO client left".into()).await;
    conn.close(1001, "Socket.IO client left");
    let _ = writer.await;
    drop(adopted);
}

/// Emits what the kiosk sends this client, until its connection closes.
async fn write(conn: Arc<SocketConn>, socket: SocketRef) {
    loop {
        let batch = conn.next_batch().await;
        for frame in &batch.frames {
            if let Some(text) = frame.as_text()
                && !emit(&socket, text)
            {
                // Its Socket.IO buffer is full: a slow consumer, closed rather than left behind.
                let _ = socket.clone().disconnect();
                return;
            }
        }
        if let Some(close) = batch.close {
            // On shutdown the app closes every session's transport, so that clients reconnect;
            // a Socket.IO disconnect would tell them not to.
            if close.code != RESTARTING {
                let _ = socket.disconnect();
            }
            return;
        }
    }
}

/// Emits an event array `[event, payload]` made by the kiosk. False if the client cannot take it.
fn emit(socket: &SocketRef, text: &str) -> bool {
    let Ok((event, payload)) = serde_json::from_str::<(String, Value)>(text) else {
        tracing::error!("kiosk: an outgoing frame is not an event array");
        return true;
    };
    match socket.emit(&event, &payload) {
        Ok(()) => true,
        Err(socketioxide::SendError::Socket(socketioxide::SocketError::Closed)) => true,
        Err(e) => {
            tracing::debug!(error = %e, "kiosk: cannot emit to a Socket.IO client");
            false
        }
    }
}
