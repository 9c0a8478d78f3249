//! `Tally`, a test object class served the way a user's own class would be: through an
//! [`Extension`] with its own routes.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchboard_runtime::{
    AlarmResult, AutoResponse, ConnectInfo, Context, Frame, NewSocket, Object, RuntimeBuilder, SocketRef, StorageError,
};
use switchboard_server::Extension;
use switchboard_server::gateway::Gateway;

/// A counter with sockets, an alarm and a record of its own starts.
pub struct Tally {
    value: i64,
}

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

    async fn start(ctx: &mut Context) -> Result<Self, StorageError> {
        let starts: u64 = ctx.storage().get("starts").await?.unwrap_or(0);
        ctx.storage().put("starts", &(starts + 1))?;
        ctx.set_auto_response(Some(std::sync::Arc::new(AutoResponse::json(
            json!({"type": "ping"}),
            r#"{"type":"pong","timestamp":{{now_ms}}}"#,
        ))));
        Ok(Tally {
            value: ctx.storage().get("value").await?.unwrap_or(0),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: TallyRequest) -> Value {
        match request {
            TallyRequest::Add(n) => json!({ "value": self.add(ctx, n) }),
            TallyRequest::Get => {
                let starts: u64 = ctx.storage().get("starts").await.unwrap().unwrap_or(0);
                let fired: Option<i64> = ctx.storage().get("alarm_fired").await.unwrap();
                let last_close: Option<Value> = ctx.storage().get("last_close").await.unwrap();
                json!({ "value": self.value, "starts": starts, "alarm_fired": fired, "alarm": ctx.get_alarm(), "sockets": ctx.socket_count(), "last_close": last_close })
            }
            TallyRequest::AlarmIn(ms) => {
                let at = switchboard_proto::time::now_ms() + ms;
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
        }
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) {
        let tags: Vec<String> = socket
            .info
            .params
            .get("tags")
            .map(|t| t.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        let user = socket.info.params.get("user").cloned().unwrap_or_default();
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let socket = ctx.accept(socket, &tag_refs).unwrap();
        ctx.set_attachment(&socket, &json!({ "user": user })).unwrap();
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) {
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
    }

    async fn on_close(&mut self, ctx: &mut Context, socket: SocketRef, code: u16, _reason: String) {
        let user = ctx
            .attachment::<Value>(&socket)
            .and_then(|a| a["user"].as_str().map(String::from))
            .unwrap_or_default();
        ctx.storage()
            .put("last_close", &json!({ "user": user, "code": code }))
            .unwrap();
    }

    async fn on_alarm(&mut self, ctx: &mut Context) -> AlarmResult {
        ctx.storage().put("alarm_fired", &switchboard_proto::time::now_ms())?;
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

async fn call(gw: &Gateway, name: &str, request: TallyRequest) -> Json<Value> {
    Json(gw.runtime.object::<Tally>(name).call(request).await.unwrap())
}

/// The `Tally` class and its routes under `/tally/{name}`.
pub fn extension() -> Extension {
    let routes = Router::new()
        .route(
            "/tally/{name}",
            get(
                |State(gw): State<Gateway>, Path(name): Path<String>| async move {
                    call(&gw, &name, TallyRequest::Get).await
                },
            ),
        )
        .route(
            "/tally/{name}/add",
            post(
                |State(gw): State<Gateway>, Path(name): Path<String>| async move {
                    call(&gw, &name, TallyRequest::Add(1)).await
                },
            ),
        )
        .route(
            "/tally/{name}/alarm",
            post(
                |State(gw): State<Gateway>,
                 Path(name): Path<String>,
                 Query(q): Query<BTreeMap<String, i64>>| async move {
                    call(&gw, &name, TallyRequest::AlarmIn(q["in_ms"])).await
                },
            ),
        )
        .route(
            "/tally/{name}/burst",
            post(
                |State(gw): State<Gateway>,
                 Path(name): Path<String>,
                 Query(q): Query<BTreeMap<String, usize>>| async move {
                    call(
                        &gw,
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
        .route("/tally/{name}/ws", get(connect));
    Extension {
        classes: Box::new(|b: RuntimeBuilder| b.class::<Tally>()),
        routes,
    }
}

async fn connect(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let stub = gw.runtime.object::<Tally>(&name);
    gw.connect_object(req, stub, ConnectInfo { params, claims: None })
}
