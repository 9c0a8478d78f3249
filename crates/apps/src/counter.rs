//! Live counters (PROTOCOLS.md §3): one object per counter name, HTTP RPC and a socket that
//! receives every stored change.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_proto::counter::{Args, HistoryEntry, Metadata, Mutation, Op, SocketRequest, Update, counter_id};
use switchboard_proto::time::iso_from_ms;
use switchboard_runtime::{
    AutoResponse, CappedLog, ConnectInfo, Context, Frame, HookResult, NewSocket, Object, RuntimeBuilder, SocketRef,
};

use crate::http::{ApiError, Refusal, json_body};
use crate::{App, Host, PeerAddr, RateLimit, SocketOptions, valid_name};

/// Storage key of the counter's value and metadata.
const STATE: &str = "state";
/// Prefix of history entries, followed by a zero-padded sequence number.
const HISTORY: &str = "h:";
/// Most history entries one `getHistory` returns.
const MAX_HISTORY_LIMIT: u32 = 1000;

/// The live counters app (PROTOCOLS.md §3).
pub struct Counters;

/// Settings of the counters app.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CounterConfig {
    /// Entries kept in each counter's history. Default: 1000.
    pub counter_history_limit: usize,
    /// Operations per second one counter socket may send, sustained (twice as many at once);
    /// over it, an error reply per frame, then close 1008. 0: no limit. Default: 100.
    pub counter_socket_rate_per_second: u32,
}

impl Default for CounterConfig {
    fn default() -> Self {
        CounterConfig {
            counter_history_limit: 1000,
            counter_socket_rate_per_second: 100,
        }
    }
}

impl App for Counters {
    const NAME: &'static str = "counters";
    type Config = CounterConfig;

    fn register(&self, config: &CounterConfig, builder: RuntimeBuilder) -> RuntimeBuilder {
        builder.class::<Counter>().setting(config.clone())
    }

    fn routes(&self, config: &CounterConfig) -> Router<Host> {
        let options = socket_options(config);
        Router::new().route("/rpc/{method}", post(rpc)).route(
            "/ws/counter/{name}",
            get(move |host, name, req| socket(host, name, req, options.clone())),
        )
    }
}

/// What is stored under [`STATE`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    value: i64,
    created_at: i64,
    updated_at: i64,
    operation_count: u64,
}

/// One counter.
pub struct Counter {
    name: String,
    /// `None` until the first mutation: reading a counter does not create it.
    stored: Option<Stored>,
    history: CappedLog,
    first_seen: i64,
}

/// An operation on a counter.
#[derive(Serialize, Deserialize)]
pub struct CounterRequest {
    pub op: Op,
    pub args: Args,
    /// The client's address: a mutation that creates the counter counts against its share of
    /// new objects.
    pub origin: Option<std::net::IpAddr>,
}

/// What an operation returns.
#[derive(Serialize, Deserialize)]
pub enum Outcome {
    Mutated(Mutation),
    Value(i64),
    Metadata(Metadata),
    History(Vec<HistoryEntry>),
}

impl Object for Counter {
    const CLASS: &'static str = "counter";
    type Request = CounterRequest;
    type Reply = Result<Outcome, Refusal>;

    /// `{"type":"ping"}` → `{"type":"pong","timestamp":ISO}`, without waking the counter.
    fn auto_response() -> Option<AutoResponse> {
        Some(AutoResponse::json(
            json!({"type": "ping"}),
            r#"{"type":"pong","timestamp":"{{now_iso}}"}"#,
        ))
    }

    /// A socket to a counter that does not exist yet keeps its client's address, so that an
    /// operation creating the counter over the socket counts against that client's share.
    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let peer = socket.info.peer;
        let socket = ctx.accept(socket, &[])?;
        if let (None, Some(peer)) = (&self.stored, peer) {
            ctx.set_attachment(&socket, &peer.ip())?;
        }
        Ok(())
    }

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        let limit = ctx.setting::<CounterConfig>().map_or(1000, |c| c.counter_history_limit);
        Ok(Counter {
            name: ctx.name().to_string(),
            stored: ctx.storage().get(STATE).await?,
            history: CappedLog::open(ctx.storage(), HISTORY, limit).await?,
            first_seen: ctx.now_ms(),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: CounterRequest) -> HookResult<Self::Reply> {
        self.apply(ctx, request.op, &request.args, request.origin).await
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) -> HookResult {
        let reply = match frame.as_text().map(serde_json::from_str::<SocketRequest>) {
            None => json!({"type": "error", "message": "frames must be JSON text"}),
            Some(Err(e)) => json!({"type": "error", "message": format!("invalid message: {e}")}),
            Some(Ok(request)) => match Op::from_name(&request.kind) {
                None => json!({
                    "type": "error", "id": request.id,
                    "message": format!("unknown type {:?}; expected ping or one of: {}", request.kind, Op::list()),
                }),
                Some(op) => match self.apply(ctx, op, &request.args, self.creator(ctx, &socket)).await? {
                    Ok(outcome) => {
                        let mut result = json!({"type": "result", "id": request.id});
                        let fields = match outcome {
                            Outcome::Mutated(m) => serde_json::to_value(m).expect("wire types serialize"),
                            Outcome::Value(value) => json!({ "value": value }),
                            Outcome::Metadata(m) => json!({ "metadata": m }),
                            Outcome::History(h) => json!({ "history": h }),
                        };
                        if let (Some(into), Value::Object(from)) = (result.as_object_mut(), fields) {
                            into.extend(from);
                        }
                        result
                    }
                    Err(e) => json!({"type": "error", "id": request.id, "message": e.to_string()}),
                },
            },
        };
        ctx.send_json(&socket, &reply);
        Ok(())
    }
}

impl Counter {
    /// The address a socket's operation counts against if it creates the counter (only a
    /// counter that does not exist yet reads it: the socket's attachment).
    fn creator(&self, ctx: &Context, socket: &SocketRef) -> Option<std::net::IpAddr> {
        self.stored.is_none().then(|| ctx.attachment(socket)).flatten()
    }

    fn value(&self) -> i64 {
        self.stored.as_ref().map_or(0, |s| s.value)
    }

    fn metadata(&self) -> Metadata {
        let (value, created, updated, count) = match &self.stored {
            Some(s) => (s.value, s.created_at, s.updated_at, s.operation_count),
            None => (0, self.first_seen, self.first_seen, 0),
        };
        Metadata {
            id: counter_id(&self.name),
            name: self.name.clone(),
            value,
            created_at: iso_from_ms(created),
            updated_at: iso_from_ms(updated),
            operation_count: count,
        }
    }

    /// Applies an operation: `Err` when a hook error (storage) discards the event, `Ok(Err)`
    /// when the operation is refused and nothing changed.
    async fn apply(
        &mut self,
        ctx: &mut Context,
        op: Op,
        args: &Args,
        origin: Option<std::net::IpAddr>,
    ) -> HookResult<Result<Outcome, Refusal>> {
        let previous = self.value();
        let (value, amount) = match op {
            Op::GetValue => return Ok(Ok(Outcome::Value(previous))),
            Op::GetMetadata => return Ok(Ok(Outcome::Metadata(self.metadata()))),
            Op::GetHistory => return self.history(ctx, args.limit).await,
            Op::Increment | Op::Decrement => {
                let amount = args.amount.unwrap_or(1);
                let value = if op == Op::Increment {
                    previous.checked_add(amount)
                } else {
                    previous.checked_sub(amount)
                };
                let Some(value) = value else {
                    return Ok(Err(Refusal::BadRequest(format!(
                        "{} by {amount} would overflow the 64-bit value {previous}; nothing was changed",
                        op.name()
                    ))));
                };
                (value, Some(amount))
            }
            Op::SetValue => match args.value {
                Some(value) => (value, None),
                None => {
                    return Ok(Err(Refusal::BadRequest(
                        "setValue needs an integer field `value`".into(),
                    )));
                }
            },
            Op::Reset => (0, None),
        };
        if self.stored.is_none()
            && let Some(origin) = origin
            && !ctx.admit_creation(origin)
        {
            return Ok(Err(Refusal::TooMany(format!(
                "{origin} has created too many objects in the last minute; counter {:?} was not created",
                self.name
            ))));
        }
        let now = ctx.now_ms();
        let mut stored = self.stored.clone().unwrap_or(Stored {
            value: 0,
            created_at: self.first_seen,
            updated_at: now,
            operation_count: 0,
        });
        stored.value = value;
        stored.updated_at = now;
        stored.operation_count += 1;
        let entry = HistoryEntry {
            op: op.name().into(),
            amount,
            value,
            previous_value: previous,
            timestamp: iso_from_ms(now),
        };
        let storage = ctx.storage();
        storage.put(STATE, &stored)?;
        self.history.append(storage, &entry)?;
        self.stored = Some(stored);
        let mutation = Mutation {
            value,
            previous_value: previous,
            metadata: self.metadata(),
        };
        let update = Update {
            kind: op.name().into(),
            value,
            previous_value: previous,
            metadata: mutation.metadata.clone(),
            timestamp: entry.timestamp,
        };
        ctx.broadcast(Frame::text(
            serde_json::to_string(&update).expect("wire types serialize"),
        ));
        Ok(Ok(Outcome::Mutated(mutation)))
    }

    async fn history(&self, ctx: &mut Context, limit: Option<u32>) -> HookResult<Result<Outcome, Refusal>> {
        let limit = limit.unwrap_or(50);
        if limit == 0 || limit > MAX_HISTORY_LIMIT {
            return Ok(Err(Refusal::BadRequest(format!(
                "limit must be between 1 and {MAX_HISTORY_LIMIT}"
            ))));
        }
        let entries: Vec<(u64, HistoryEntry)> = self.history.newest(ctx.storage(), limit as usize).await?;
        Ok(Ok(Outcome::History(entries.into_iter().map(|(_, e)| e).collect())))
    }
}

async fn rpc(
    State(host): State<Host>,
    Path(method): Path<String>,
    peer: Option<axum::Extension<PeerAddr>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let op = method.strip_prefix("counter.").and_then(Op::from_name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown operation {method:?}; operations: counter.{{{}}}", Op::list()),
        )
    })?;
    let args: Args = json_body(body)?;
    let name = args
        .name
        .clone()
        .ok_or_else(|| ApiError::bad_request("missing field `name`"))?;
    valid_name("name", &name)?;
    let outcome = host
        .runtime()
        .object::<Counter>(&name)
        .call(CounterRequest {
            op,
            args,
            origin: peer.map(|p| p.0.0.ip()),
        })
        .await??;
    Ok(Json(match outcome {
        Outcome::Mutated(m) => serde_json::to_value(m).expect("wire types serialize"),
        Outcome::Value(value) => json!({ "value": value }),
        Outcome::Metadata(m) => serde_json::to_value(m).expect("wire types serialize"),
        Outcome::History(h) => serde_json::to_value(h).expect("wire types serialize"),
    }))
}

async fn socket(State(host): State<Host>, Path(name): Path<String>, req: Request, options: SocketOptions) -> Response {
    if let Err(e) = valid_name("counter name", &name) {
        return axum::response::IntoResponse::into_response(e);
    }
    let stub = host.runtime().object::<Counter>(&name);
    host.connect(req, stub, ConnectInfo::default(), options)
}

/// A counter socket's limits: its rate, answered in the protocol's own error shape.
fn socket_options(config: &CounterConfig) -> SocketOptions {
    let rate = config.counter_socket_rate_per_second;
    SocketOptions {
        rate_limit: (rate > 0).then(|| RateLimit {
            per_second: f64::from(rate),
            burst: rate.saturating_mul(2),
            reply: Some(Frame::text(
                json!({
                    "type": "error",
                    "message": format!("rate limit exceeded: at most {rate} operations per second on one socket; this one was dropped"),
                })
                .to_string(),
            )),
            close_after: rate.saturating_mul(2),
        }),
        ..Default::default()
    }
}
