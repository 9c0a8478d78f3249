//! The application backend as API Gateway would call it: `$connect`, `$default` and
//! `$disconnect` (and `subscribe` for rooms the rules leave to it) as Lambda proxy events.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::Record;

/// How API Gateway calls the event: `eventType` of each route key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Connect,
    Default,
    /// A route the server handles but leaves the decision to the backend (`subscribe`).
    Subscribe,
    Disconnect,
}

impl Route {
    fn key(self) -> &'static str {
        match self {
            Route::Connect => "$connect",
            Route::Default => "$default",
            Route::Subscribe => "subscribe",
            Route::Disconnect => "$disconnect",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Route::Connect => "CONNECT",
            Route::Default | Route::Subscribe => "MESSAGE",
            Route::Disconnect => "DISCONNECT",
        }
    }
}

/// What the request carried, for `$connect`.
pub struct Request<'a> {
    pub query: &'a BTreeMap<String, String>,
    pub headers: &'a BTreeMap<String, String>,
}

/// The Lambda proxy event for `route` on `connection`, at `now_ms`.
pub fn event(route: Route, connection: &Record, now_ms: i64, request: Option<Request>, body: Option<&str>) -> Value {
    let mut context = json!({
        "routeKey": route.key(),
        "eventType": route.event_type(),
        "connectionId": connection.id,
        "connectedAt": connection.connected_at,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        "authorizer": connection.claims,
    });
    let mut event = json!({"requestContext": {}});
    if let Some(request) = request {
        event["queryStringParameters"] = json!(request.query);
        event["headers"] = json!(request.headers);
    }
    if let Some(body) = body {
        event["body"] = body.into();
    }
    if route == Route::Disconnect {
        context["disconnectStatusCode"] = Value::Null;
        context["disconnectReason"] = "".into();
    }
    event["requestContext"] = context;
    event
}

/// Fills in the close of a `$disconnect` event.
pub fn with_close(mut event: Value, code: u16, reason: &str) -> Value {
    event["requestContext"]["disconnectStatusCode"] = code.into();
    event["requestContext"]["disconnectReason"] = reason.into();
    event
}

/// How the backend answered an event.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// 2xx: with the `body` of a Lambda proxy response, if it had one.
    Accepted { body: Option<String> },
    /// A non-2xx status, or the `statusCode` of a Lambda proxy response.
    Refused(u16),
    /// The backend could not be reached (503 for `$connect`).
    Unreachable(String),
    /// No answer in time (502 for `$connect`).
    TimedOut,
}

/// The backend's address and the client that calls it.
pub struct Backend {
    url: String,
    client: reqwest::Client,
}

impl Backend {
    pub fn new(url: &str, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a client without custom TLS roots builds");
        Backend {
            url: url.to_string(),
            client,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs an event once and reads the answer.
    pub async fn call(&self, event: &Value) -> Answer {
        let sent = self.client.post(&self.url).json(event).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Answer::TimedOut,
            Err(e) => return Answer::Unreachable(e.to_string()),
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) if e.is_timeout() => return Answer::TimedOut,
            Err(e) => return Answer::Unreachable(e.to_string()),
        };
        interpret(status, &text)
    }
}

/// Reads an answer: the HTTP status first, then a Lambda proxy response's `statusCode` and
/// `body` when the answer is one.
pub fn interpret(status: u16, text: &str) -> Answer {
    if !(200..300).contains(&status) {
        return Answer::Refused(status);
    }
    let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(text) else {
        return Answer::Accepted { body: None };
    };
    if let Some(code) = answer.get("statusCode").and_then(Value::as_u64)
        && !(200..300).contains(&code)
    {
        return Answer::Refused(u16::try_from(code).unwrap_or(500));
    }
    let body = match answer.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Answer::Accepted { body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(interpret(200, ""), Answer::Accepted { body: None });
        assert_eq!(interpret(403, "{}"), Answer::Refused(403));
        assert_eq!(interpret(200, r#"{"statusCode":401}"#), Answer::Refused(401));
        assert_eq!(
            interpret(200, r#"{"statusCode":200,"body":"hi"}"#),
            Answer::Accepted {
                body: Some("hi".into())
            }
        );
        assert_eq!(
            interpret(201, r#"{"body":{"a":1}}"#),
            Answer::Accepted {
                body: Some(r#"{"a":1}"#.into())
            }
        );
    }
}
