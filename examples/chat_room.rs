//! A chat room as your own durable object class, served by an embedded Switchboard through the
//! same App seam as the built-in apps.
//!
//! Run it with `cargo run --example chat_room`, then talk in two terminals:
//! `switchboard connect "ws://127.0.0.1:8788/chat/lobby?name=ada"` and
//! `switchboard connect "ws://127.0.0.1:8788/chat/lobby?name=bob"`.
//! Every line one of them types reaches both (a topic per room, with history: each message
//! carries its `offset` and `epoch`, and a client that reconnects with `&since=OFFSET&epoch=E`
//! gets what it missed); a newcomer first gets the last messages; every room tells a directory
//! object how busy it is (`GET /chat` lists the rooms);
//! with `SWITCHBOARD_CHAT_WEBHOOK_URL` set, every message is also POSTed there as a durable
//! effect, retried until the backend answers 2xx; a room nobody speaks in for a day forgets
//! itself (an alarm).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchboard_apps::{App, AttachedApp, Host, attach};

use switchboard_runtime::{
    AutoResponse, CappedLog, ConnectInfo, Context, Effect, EffectDone, Frame, HistoryLimits, HookResult, HttpRequest,
    ListOptions, NewSocket, Object, Position, Publication, RequestMatch, RuntimeBuilder, SocketRef, Subscription,
    TopicOptions, json_frame,
};

/// Messages a newcomer receives on joining.
const BACKLOG: usize = 20;
/// A room with no message for this long deletes its history.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// The chat app: its settings are configuration keys like the server's own.
pub struct Chat;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Where every message is POSTed as `{"room","from","text","at"}`. Default: none.
    pub chat_webhook_url: Option<String>,
}

impl App for Chat {
    const NAME: &'static str = "chat";
    type Config = ChatConfig;

    fn register(&self, config: &ChatConfig, builder: RuntimeBuilder) -> RuntimeBuilder {
        let history = TopicOptions {
            history: Some(HistoryLimits {
                max_entries: 1000,
                max_age: Duration::from_millis(FORGET_AFTER_MS as u64),
            }),
            presence: None,
        };
        builder
            .class::<ChatRoom>()
            .class::<Directory>()
            .topics("chat:*", history)
            .setting(config.clone())
    }

    fn routes(&self, _config: &ChatConfig) -> Router<Host> {
        Router::new()
            .route("/chat", get(rooms))
            .route("/chat/{room}", get(join))
    }
}

/// One chat room per name.
pub struct ChatRoom {
    log: CappedLog,
}

/// A stored message, as sent to every member.
#[derive(Clone, Serialize, Deserialize)]
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

fn topic(room: &str) -> String {
    format!("chat:{room}")
}

impl Object for ChatRoom {
    const CLASS: &'static str = "chat_room";
    /// Rooms take no calls: only sockets.
    type Request = ();
    type Reply = ();

    /// Keep-alive pings are answered without waking the room.
    fn auto_response() -> Option<AutoResponse> {
        Some(AutoResponse::new(RequestMatch::Exact("ping".into()), "pong"))
    }

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        Ok(ChatRoom {
            log: CappedLog::open(ctx.storage(), "m:", BACKLOG).await?,
        })
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let name = socket
            .info
            .params
            .get("name")
            .cloned()
            .unwrap_or_else(|| "anonymous".into());
        let since = match (socket.info.params.get("since"), socket.info.params.get("epoch")) {
            (Some(offset), Some(epoch)) => Some(Position {
                offset: offset.parse()?,
                epoch: epoch.clone(),
            }),
            _ => None,
        };
        let socket = ctx.accept(socket, &[])?;
        ctx.set_attachment(&socket, &Member { name: name.clone() })?;
        let mut subscription = Subscription {
            user: Some(name),
            ..Default::default()
        };
        if since.is_some() {
            // A reconnecting client: what it missed, or word that it must reload.
            subscription.since = since;
            subscription.reply = Some(Box::new(|r| {
                let reply = serde_json::json!({"type": "recovery", "recovered": r.recovered, "missed": r.missed});
                Some(json_frame(&reply))
            }));
        } else {
            for (_, said) in self.log.all::<Said>(ctx.storage()).await? {
                ctx.send_json(&socket, &said);
            }
        }
        ctx.subscribe(socket.id(), &topic(ctx.name()), subscription)?;
        Ok(())
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) -> HookResult {
        let Some(text) = frame.as_text() else { return Ok(()) };
        let from = ctx
            .attachment::<Member>(&socket)
            .map_or_else(|| "anonymous".into(), |m| m.name);
        let said = Said {
            from,
            text: text.to_string(),
            at: ctx.now_ms(),
        };
        self.log.append(ctx.storage(), &said)?;
        // Everyone in the room sees it once it is stored, the speaker included.
        let room = ctx.name().to_string();
        let published = said.clone();
        ctx.publish(Publication::stamped(&[topic(&room)], move |stamp| {
            let mut frame = serde_json::to_value(&published).expect("plain struct");
            if let Some(stamp) = stamp {
                frame["offset"] = stamp.offset.into();
                frame["epoch"] = stamp.epoch.to_string().into();
            }
            json_frame(&frame)
        }))?;
        ctx.tell::<Directory>("all", Some(Spoke { room: room.clone() }));
        if let Some(url) = ctx.setting::<ChatConfig>().and_then(|c| c.chat_webhook_url.clone()) {
            let body = serde_json::json!({"room": room, "from": said.from, "text": said.text, "at": said.at});
            ctx.enqueue(Effect::Http(HttpRequest::post_json(&url, &body)));
        }
        ctx.set_alarm(said.at + FORGET_AFTER_MS);
        Ok(())
    }

    async fn on_effect(&mut self, ctx: &mut Context, done: EffectDone) -> HookResult {
        let delivered: u64 = ctx.storage().get("webhooks_delivered").await?.unwrap_or(0);
        ctx.storage().put("webhooks_delivered", &(delivered + 1))?;
        tracing::debug!(key = done.key, status = done.response.status, "webhook delivered");
        Ok(())
    }

    async fn on_alarm(&mut self, ctx: &mut Context) -> HookResult {
        ctx.storage().delete_all();
        self.log.reset();
        Ok(())
    }
}

/// Which rooms have spoken, and how much: one object every room tells.
pub struct Directory {
    rooms: BTreeMap<String, u64>,
}

/// A room's message to the directory.
#[derive(Serialize, Deserialize)]
pub struct Spoke {
    room: String,
}

impl Object for Directory {
    const CLASS: &'static str = "chat_directory";
    /// `Some` from a room that spoke (answered with nothing); `None` to read the counts.
    type Request = Option<Spoke>;
    type Reply = BTreeMap<String, u64>;

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        // One key per room, so that a message costs one small write however many rooms there are.
        let rooms: Vec<(String, u64)> = ctx.storage().list(ListOptions::prefix("room:")).await?;
        Ok(Directory {
            rooms: rooms
                .into_iter()
                .map(|(key, count)| (key["room:".len()..].to_string(), count))
                .collect(),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: Option<Spoke>) -> HookResult<Self::Reply> {
        match request {
            Some(Spoke { room }) => {
                let count = self.rooms.entry(room.clone()).or_default();
                *count += 1;
                ctx.storage().put(&format!("room:{room}"), count)?;
                Ok(BTreeMap::new())
            }
            None => Ok(self.rooms.clone()),
        }
    }
}

/// The chat app, to serve beside the built-in ones.
pub fn apps() -> Vec<Box<dyn AttachedApp>> {
    vec![attach(Chat)]
}

async fn join(
    State(host): State<Host>,
    Path(room): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let stub = host.runtime().object::<ChatRoom>(&room);
    let info = ConnectInfo {
        params,
        ..Default::default()
    };
    host.connect(req, stub, info, Default::default())
}

async fn rooms(State(host): State<Host>) -> Result<Json<BTreeMap<String, u64>>, switchboard_apps::http::ApiError> {
    Ok(Json(host.runtime().object::<Directory>("all").call(None).await?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use switchboard_server::config::{Config, Sources};
    let served = || {
        let mut all = switchboard_apps::builtin();
        all.extend(apps());
        all
    };
    // The server's own configuration (SWITCHBOARD_* variables), with the chat's keys known.
    let mut config = Config::load_for(&Sources::from_process(None, Vec::new()), &served())?;
    if std::env::var_os("SWITCHBOARD_LISTEN").is_none() {
        config.listen = "127.0.0.1:8788".parse()?;
    }
    if std::env::var_os("SWITCHBOARD_DATA_DIR").is_none() {
        config.data_dir = "./chat-data".into();
    }
    switchboard_server::telemetry::init_logging(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = switchboard_server::Serving {
        apps: served(),
        cluster: None,
    };
    let server = switchboard_server::start_with(config, listener, shutdown.clone(), serving).await?;
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    server.wait().await
}
