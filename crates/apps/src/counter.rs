//! Live counters (PROTOCOLS.md §3): one object per counter name, HTTP RPC and a socket that
//! receives every stored change.

use std::sync::{Arc, LazyLock};

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
use switchboard_proto::time::{iso_from_ms, now_ms};
use switchboard_runtime::{AutoResponse, ConnectInfo, Context, Frame, ListOptions, Object, SocketRef, StorageError};

use crate::http::{ApiError, json_body};
use crate::{Host, Settings, valid_name};

/// Storage key of the counter's value and metadata.
const STATE: &str = "state";
/// Prefix of history entries, followed by a zero-padded sequence number.
const HISTORY: &str = "h:";
/// `{"type":"ping"}` → `{"type":"pong","timestamp":ISO}`, answered without waking the counter;
/// one for all counters.
static PING: LazyLock<Arc<AutoResponse>> = LazyLock::new(|| {
    Arc::new(AutoResponse::json(
        json!({"type": "ping"}),
        r#"{"type":"pong","timestamp":"{{now_iso}}"}"#,
    ))
});
/// Most history entries one `getHistory` returns.
const MAX_HISTORY_LIMIT: u32 = 1000;

fn history_key(seq: u64) -> String {
    format!("{HISTORY}{seq:020}")
}

/// What is stored under [`STATE`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    value: i64,
    created_at: i64,
    updated_at: i64,
    operation_count: u64,
    next_seq: u64,
}

/// One counter.
pub struct Counter {
    name: String,
    /// `None` until the first mutation: reading a counter does not create it.
    stored: Option<Stored>,
    first_seen: i64,
}

/// An operation on a counter.
pub struct CounterRequest {
    pub op: Op,
    pub args: Args,
}

impl Object for Counter {
    const CLASS: &'static str = "counter";
    type Request = CounterRequest;
    /// The HTTP reply body, or the error to answer with.
    type Reply = Result<Value, ApiError>;

    async fn start(ctx: &mut Context) -> Result<Self, StorageError> {
        ctx.set_auto_response(Some(PING.clone()));
        Ok(Counter {
            name: ctx.name().to_string(),
            stored: ctx.storage().get(STATE).await?,
            first_seen: now_ms(),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: CounterRequest) -> Self::Reply {
        Ok(match self.apply(ctx, request.op, &request.args).await? {
            Outcome::Mutated(m) => serde_json::to_value(m).expect("wire types serialize"),
            Outcome::Value(value) => json!({ "value": value }),
            Outcome::Metadata(m) => serde_json::to_value(m).expect("wire types serialize"),
            Outcome::History(h) => serde_json::to_value(h).expect("wire types serialize"),
        })
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) {
        let reply = match frame.as_text().map(serde_json::from_str::<SocketRequest>) {
            None => json!({"type": "error", "message": "frames must be JSON text"}),
            Some(Err(e)) => json!({"type": "error", "message": format!("invalid message: {e}")}),
            Some(Ok(request)) => match Op::from_name(&request.kind) {
                None => json!({
                    "type": "error", "id": request.id,
                    "message": format!("unknown type {:?}; expected ping or one of: {}", request.kind, Op::list()),
                }),
                Some(op) => match self.apply(ctx, op, &request.args).await {
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
                    Err(e) => json!({"type": "error", "id": request.id, "message": e.message}),
                },
            },
        };
        ctx.send_json(&socket, &reply);
    }
}

enum Outcome {
    Mutated(Mutation),
    Value(i64),
    Metadata(Metadata),
    History(Vec<HistoryEntry>),
}

impl Counter {
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

    async fn apply(&mut self, ctx: &mut Context, op: Op, args: &Args) -> Result<Outcome, ApiError> {
        let previous = self.value();
        let (value, amount) = match op {
            Op::GetValue => return Ok(Outcome::Value(previous)),
            Op::GetMetadata => return Ok(Outcome::Metadata(self.metadata())),
            Op::GetHistory => return self.history(ctx, args.limit).await.map(Outcome::History),
            Op::Increment | Op::Decrement => {
                let amount = args.amount.unwrap_or(1);
                let value = if op == Op::Increment {
                    previous.checked_add(amount)
                } else {
                    previous.checked_sub(amount)
                };
                let value = value.ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{} by {amount} would overflow the 64-bit value {previous}; nothing was changed",
                        op.name()
                    ))
                })?;
                (value, Some(amount))
            }
            Op::SetValue => (
                args.value
                    .ok_or_else(|| ApiError::bad_request("setValue needs an integer field `value`"))?,
                None,
            ),
            Op::Reset => (0, None),
        };
        let now = now_ms();
        let mut stored = self.stored.clone().unwrap_or(Stored {
            value: 0,
            created_at: self.first_seen,
            updated_at: now,
            operation_count: 0,
            next_seq: 0,
        });
        stored.value = value;
        stored.updated_at = now;
        stored.operation_count += 1;
        let seq = stored.next_seq;
        stored.next_seq += 1;
        let entry = HistoryEntry {
            op: op.name().into(),
            amount,
            value,
            previous_value: previous,
            timestamp: iso_from_ms(now),
        };
        let limit = ctx.setting::<Settings>().map_or(1000, |s| s.counter_history_limit) as u64;
        let storage = ctx.storage();
        storage.put(STATE, &stored)?;
        storage.put(&history_key(seq), &entry)?;
        if seq >= limit {
            storage.delete(&history_key(seq - limit));
        }
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
        Ok(Outcome::Mutated(mutation))
    }

    async fn history(&self, ctx: &mut Context, limit: Option<u32>) -> Result<Vec<HistoryEntry>, ApiError> {
        let limit = limit.unwrap_or(50);
        if limit == 0 || limit > MAX_HISTORY_LIMIT {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_HISTORY_LIMIT}"
            )));
        }
        let entries: Vec<(String, HistoryEntry)> = ctx
            .storage()
            .list(ListOptions::prefix(HISTORY).reverse().limit(limit as usize))
            .await?;
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }
}

/// `POST /rpc/counter.<op>` and `GET /ws/counter/{name}`.
pub fn routes<H: Host>() -> Router<H> {
    Router::new()
        .route("/rpc/{method}", post(rpc::<H>))
        .route("/ws/counter/{name}", get(socket::<H>))
}

async fn rpc<H: Host>(
    State(host): State<H>,
    Path(method): Path<String>,
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
    let reply = host
        .runtime()
        .object::<Counter>(&name)
        .call(CounterRequest { op, args })
        .await??;
    Ok(Json(reply))
}

async fn socket<H: Host>(State(host): State<H>, Path(name): Path<String>, req: Request) -> Response {
    if let Err(e) = valid_name("counter name", &name) {
        return axum::response::IntoResponse::into_response(e);
    }
    let stub = host.runtime().object::<Counter>(&name);
    host.connect(req, stub, ConnectInfo::default())
}
