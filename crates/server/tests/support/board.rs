//! `Board`, a test app for topics: its sockets subscribe to the topics they name, and
//! `POST /publish?topics=a,b` publishes a text to them from outside any object.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchboard_apps::{App, AttachedApp, Host, attach};
use switchboard_runtime::{
    ConnectInfo, Context, Frame, HookResult, NewSocket, Object, Publication, RuntimeBuilder, Subscription,
};

/// Subscribes each socket to the topics in its `topics` parameter.
pub struct Board;

impl Object for Board {
    const CLASS: &'static str = "board";
    type Request = ();
    type Reply = ();

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Board)
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let topics = socket.info.params.get("topics").cloned().unwrap_or_default();
        let socket = ctx.accept(socket, &[])?;
        for topic in topics.split(',').filter(|t| !t.is_empty()) {
            ctx.subscribe(socket.id(), topic, Subscription::default())?;
        }
        ctx.send(&socket, Frame::text("subscribed"));
        Ok(())
    }
}

struct BoardApp;

impl App for BoardApp {
    const NAME: &'static str = "board";
    type Config = ();

    fn register(&self, _config: &(), builder: RuntimeBuilder) -> RuntimeBuilder {
        builder.class::<Board>()
    }

    fn routes(&self, _config: &()) -> Router<Host> {
        Router::new()
            .route("/board/{name}/ws", get(connect))
            .route("/publish", post(publish))
    }
}

/// The board app, to serve beside the built-in ones.
pub fn app() -> Vec<Box<dyn AttachedApp>> {
    vec![attach(BoardApp)]
}

async fn connect(
    State(host): State<Host>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let stub = host.runtime().object::<Board>(&name);
    let info = ConnectInfo {
        params,
        ..Default::default()
    };
    host.connect(req, stub, info, Default::default())
}

async fn publish(
    State(host): State<Host>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Json<Value> {
    host.require_bearer(&headers).unwrap();
    let topics: Vec<&str> = params["topics"].split(',').collect();
    let delivered = host
        .runtime()
        .publish(Publication::new(&topics, Frame::text(body)))
        .await
        .unwrap();
    Json(json!({ "delivered": delivered }))
}
