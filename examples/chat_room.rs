//! A chat room as your own durable object class, served by an embedded Switchboard.
//!
//! Run it with `cargo run --example chat_room`, then talk in two terminals:
//! `switchboard connect "ws://127.0.0.1:8788/chat/lobby?name=ada"` and
//! `switchboard connect "ws://127.0.0.1:8788/chat/lobby?name=bob"`.
//! Every line one of them types reaches both; a newcomer first gets the last messages; a room
//! nobody speaks in for a day forgets itself (an alarm).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use switchboard_runtime::{
    AlarmResult, AutoResponse, ConnectInfo, Context, Frame, ListOptions, NewSocket, Object, RequestMatch,
    RuntimeBuilder, SocketRef, StorageError,
};
use switchboard_server::Extension;
use switchboard_server::gateway::Gateway;

/// `ping` → `pong`, answered without waking the room; one for all rooms.
static PING: LazyLock<Arc<AutoResponse>> =
    LazyLock::new(|| Arc::new(AutoResponse::new(RequestMatch::Exact("ping".into()), "pong")));

/// Messages a newcomer receives on joining.
const BACKLOG: usize = 20;
/// A room with no message for this long deletes its history.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// One chat room per name.
pub struct ChatRoom {
    next_seq: u64,
}

/// A stored message, as sent to every member.
#[derive(Serialize, Deserialize)]
pub struct Said {
    pub from: String,
    pub text: String,
    pub at: i64,
}

/// Who a socket is: kept in its attachment, so it survives hibernation.
#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

impl Object for ChatRoom {
    const CLASS: &'static str = "chat_room";
    /// HTTP calls: none besides sockets in this example.
    type Request = ();
    type Reply = ();

    async fn start(ctx: &mut Context) -> Result<Self, StorageError> {
        // Keep-alive pings are answered without waking the room.
        ctx.set_auto_response(Some(PING.clone()));
        Ok(ChatRoom {
            next_seq: ctx.storage().get("next_seq").await?.unwrap_or(0),
        })
    }

    async fn on_request(&mut self, _ctx: &mut Context, _request: ()) {}

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) {
        let name = socket
            .info
            .params
            .get("name")
            .cloned()
            .unwrap_or_else(|| "anonymous".into());
        let Ok(socket) = ctx.accept(socket, &[]) else { return };
        let _ = ctx.set_attachment(&socket, &Member { name });
        let backlog: Vec<(String, Said)> = match ctx
            .storage()
            .list(ListOptions::prefix("m:").reverse().limit(BACKLOG))
            .await
        {
            Ok(rows) => rows,
            Err(e) => return ctx.close(&socket, 1011, &format!("storage unavailable: {e}")),
        };
        for (_, said) in backlog.into_iter().rev() {
            ctx.send_json(&socket, &said);
        }
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) {
        let Some(text) = frame.as_text() else { return };
        let from = ctx
            .attachment::<Member>(&socket)
            .map_or_else(|| "anonymous".into(), |m| m.name);
        let said = Said {
            from,
            text: text.to_string(),
            at: switchboard_proto::time::now_ms(),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let stored = ctx
            .storage()
            .put(&format!("m:{seq:020}"), &said)
            .and_then(|()| ctx.storage().put("next_seq", &self.next_seq));
        if stored.is_err() {
            return;
        }
        if seq >= BACKLOG as u64 {
            ctx.storage().delete(&format!("m:{:020}", seq - BACKLOG as u64));
        }
        // Everyone sees it once it is stored, the speaker included.
        ctx.broadcast(Frame::text(serde_json::to_string(&said).expect("plain struct")));
        ctx.set_alarm(said.at + FORGET_AFTER_MS);
    }

    async fn on_alarm(&mut self, ctx: &mut Context) -> AlarmResult {
        ctx.storage().delete_all();
        self.next_seq = 0;
        Ok(())
    }
}

/// The chat room class and its route `GET /chat/{room}?name=…`.
pub fn extension() -> Extension {
    Extension {
        classes: Box::new(|builder: RuntimeBuilder| builder.class::<ChatRoom>()),
        routes: Router::new().route("/chat/{room}", get(join)),
    }
}

async fn join(
    State(gateway): State<Gateway>,
    Path(room): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let stub = gateway.runtime.object::<ChatRoom>(&room);
    gateway.connect_object(req, stub, ConnectInfo { params, claims: None })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = switchboard_server::config::Config::defaults();
    config.listen = "127.0.0.1:8788".parse()?;
    config.data_dir = "./chat-data".into();
    switchboard_server::telemetry::init_logging(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = switchboard_server::start_with(config, listener, shutdown.clone(), extension()).await?;
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    server.wait().await
}
