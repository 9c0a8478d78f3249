//! `Tally`, a test object class served the way a user's own class would be: an [`App`] with its
//! own routes.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_apps::{App, AttachedApp, Host, attach};
use switchboard_runtime::{
    AutoResponse, ConnectInfo, Context, Frame, HookResult, NewSocket, Object, RuntimeBuilder, SocketRef,
};

/// A counter with sockets, an alarm and a record of its own starts.
pub struct Tally {
    value: i64,
}

#[derive(Serialize, Deserialize)]
pub enum TallyRequest {
    Add(i64),
    Get,
    AlarmIn(i64),
    /// Broadcast `count` frames of `size` bytes.
    Burst {
        count: usize,
        size: usize,
    },
}

impl Object for Tally {
    const CLASS: &'static str = "tally";
    type Request = TallyRequest;
    type Reply = Value;

    fn auto_response() -> Option<AutoResponse> {
        Some(AutoResponse::json(
            json!({"type": "ping"}),
            r#"{"type":"pong","timestamp":{{now_ms}}}"#,
        ))
    }

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        let starts: u64 = ctx.storage().get("starts").await?.unwrap_or(0);
        ctx.storage().put("starts", &(starts + 1))?;
        Ok(Tally {
            value: ctx.storage().get("value").await?.unwrap_or(0),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: TallyRequest) -> HookResult<Value> {
        Ok(match request {
            TallyRequest::Add(n) => json!({ "value": self.add(ctx, n) }),
            TallyRequest::Get => {
                let starts: u64 = ctx.storage().get("starts").await.unwrap().unwrap_or(0);
                let fired: Option<i64> = ctx.storage().get("alarm_fired").await.unwrap();
                let last_close: Option<Value> = ctx.storage().get("last_close").await.unwrap();
                json!({ "value": self.value, "starts": starts, "alarm_fired": fired, "alarm": ctx.get_alarm(), "sockets": ctx.socket_count(), "last_close": last_close })
            }
            TallyRequest::AlarmIn(ms) => {
                let at = ctx.now_ms() + ms;
                ctx.set_alarm(at);
                json!({ "alarm": at })
            }
            TallyRequest::Burst { count, size } => {
                for seq in 0..count {
                    let body = format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(size));
                    ctx.broadcast(Frame::text(body));
                }
                json!({ "sent": count })
            }
        })
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let tags: Vec<String> = socket
            .info
            .params
            .get("tags")
            .map(|t| t.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        let user = socket.info.params.get("user").cloned().unwrap_or_default();
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let socket = ctx.accept(socket, &tag_refs)?;
        ctx.set_attachment(&socket, &json!({ "user": user }))?;
        Ok(())
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) -> HookResult {
        match frame.as_text() {
            Some("add") => {
                self.add(ctx, 1);
            }
            Some("whoami") => {
                let report = json!({
                    "tags": ctx.tags(&socket),
                    "attachment": ctx.attachment::<Value>(&socket),
                    "lastAutoResponse": ctx.last_auto_response_ms(&socket),
                });
                ctx.send_json(&socket, &report);
            }
            _ => ctx.send(&socket, Frame::text(r#"{"error":"unknown"}"#)),
        }
        Ok(())
    }

    async fn on_close(&mut self, ctx: &mut Context, socket: SocketRef, code: u16, _reason: String) -> HookResult {
        let user = ctx
            .attachment::<Value>(&socket)
            .and_then(|a| a["user"].as_str().map(String::from))
            .unwrap_or_default();
        ctx.storage()
            .put("last_close", &json!({ "user": user, "code": code }))?;
        Ok(())
    }

    async fn on_alarm(&mut self, ctx: &mut Context) -> HookResult {
        let now = ctx.now_ms();
        ctx.storage().put("alarm_fired", &now)?;
        Ok(())
    }
}

impl Tally {
    fn add(&mut self, ctx: &mut Context, n: i64) -> i64 {
        self.value += n;
        ctx.storage().put("value", &self.value).unwrap();
        ctx.broadcast(Frame::text(json!({ "value": self.value }).to_string()));
        self.value
    }
}

async fn call(host: &Host, name: &str, request: TallyRequest) -> Json<Value> {
    Json(host.runtime().object::<Tally>(name).call(request).await.unwrap())
}

/// The app serving `Tally`.
struct TallyApp;

impl App for TallyApp {
    const NAME: &'static str = "tally";
    type Config = ();

    fn register(&self, _config: &(), builder: RuntimeBuilder) -> RuntimeBuilder {
        builder.class::<Tally>()
    }

    fn routes(&self, _config: &()) -> Router<Host> {
        routes()
    }
}

/// The `Tally` app, to serve beside the built-in ones.
pub fn extension() -> Vec<Box<dyn AttachedApp>> {
    vec![attach(TallyApp)]
}

/// The `Tally` routes under `/tally/{name}`.
fn routes() -> Router<Host> {
    Router::new()
        .route(
            "/tally/{name}",
            get(
                |State(host): State<Host>, Path(name): Path<String>| async move {
                    call(&host, &name, TallyRequest::Get).await
                },
            ),
        )
        .route(
            "/tally/{name}/add",
            post(
                |State(host): State<Host>, Path(name): Path<String>| async move {
                    call(&host, &name, TallyRequest::Add(1)).await
                },
            ),
        )
        .route(
            "/tally/{name}/alarm",
            post(
                |State(host): State<Host>,
                 Path(name): Path<String>,
                 Query(q): Query<BTreeMap<String, i64>>| async move {
                    call(&host, &name, TallyRequest::AlarmIn(q["in_ms"])).await
                },
            ),
        )
        .route(
            "/tally/{name}/burst",
            post(
                |State(host): State<Host>,
                 Path(name): Path<String>,
                 Query(q): Query<BTreeMap<String, usize>>| async move {
                    call(
                        &host,
                        &name,
                        TallyRequest::Burst {
                            count: q["count"],
                            size: q["size"],
                        },
                    )
                    .await
                },
            ),
        )
        .route("/tally/{name}/ws", get(connect))
}

async fn connect(
    State(host): State<Host>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let stub = host.runtime().object::<Tally>(&name);
    let info = ConnectInfo {
        params,
        ..Default::default()
    };
    host.connect(req, stub, info, Default::default())
}
