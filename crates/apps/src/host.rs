//! The App seam: how an app — built in or a user's own — attaches to a Switchboard server, and
//! [`Host`], the only door an app has to that server.
//!
//! An app brings its object classes and topic options ([`App::register`]), its routes
//! ([`App::routes`]), its configuration section ([`App::Config`]: flat keys of the server's
//! configuration, read from the same file, `SWITCHBOARD_*` variables and `--set` flags), and an
//! optional start hook for background work ([`App::start`]). Through the [`Host`] it reaches the
//! runtime, checks the server's Bearer secret and client tokens, upgrades requests to sockets
//! with per-route options, and adopts connections born elsewhere.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchboard_runtime::{
    CallError, ConnectInfo, Frame, Object, ObjectSocket, Runtime, RuntimeBuilder, SocketConn, Stub,
};
use tokio_util::sync::CancellationToken;

use crate::http::ApiError;

/// An app: object classes, routes, a configuration section and background work.
pub trait App: Send + Sync + 'static {
    /// The app's name, in logs and configuration errors.
    const NAME: &'static str;
    /// The app's settings. Each field is a configuration key of its own, read like the server's
    /// (`counter_history_limit` in the file, `SWITCHBOARD_COUNTER_HISTORY_LIMIT`, `--set`);
    /// the field's doc states its default, which `Default` gives.
    type Config: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static;

    /// Registers the app's object classes, topic options and settings.
    fn register(&self, config: &Self::Config, builder: RuntimeBuilder) -> RuntimeBuilder;

    /// The app's HTTP and WebSocket routes.
    fn routes(&self, config: &Self::Config) -> Router<Host>;

    /// Starts background work once the server listens; it must end when `shutdown` is cancelled.
    fn start(&self, config: &Self::Config, host: Host, shutdown: CancellationToken) {
        let _ = (config, host, shutdown);
    }
}

/// A configuration value an app refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigValueError {
    pub key: String,
    pub message: String,
}

/// An app with its configuration, as the server holds it.
pub trait AttachedApp: Send + Sync {
    fn name(&self) -> &'static str;
    /// The app's configuration keys with their default values.
    fn defaults(&self) -> Map<String, Value>;
    /// Checks configured values: the keys of this app among them must be valid.
    fn check(&self, values: &Map<String, Value>) -> Result<(), ConfigValueError>;
    /// Applies configured values (over the defaults).
    fn configure(&mut self, values: &Map<String, Value>) -> Result<(), ConfigValueError>;
    fn register(&self, builder: RuntimeBuilder) -> RuntimeBuilder;
    fn routes(&self) -> Router<Host>;
    fn start(&self, host: Host, shutdown: CancellationToken);
}

struct Attached<A: App> {
    app: A,
    config: A::Config,
}

/// Prepares an app to be served.
pub fn attach<A: App>(app: A) -> Box<dyn AttachedApp> {
    Box::new(Attached {
        app,
        config: A::Config::default(),
    })
}

impl<A: App> AttachedApp for Attached<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn defaults(&self) -> Map<String, Value> {
        match serde_json::to_value(A::Config::default()) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    fn check(&self, values: &Map<String, Value>) -> Result<(), ConfigValueError> {
        self.parse(values).map(drop)
    }

    fn configure(&mut self, values: &Map<String, Value>) -> Result<(), ConfigValueError> {
        self.config = self.parse(values)?;
        Ok(())
    }

    fn register(&self, builder: RuntimeBuilder) -> RuntimeBuilder {
        self.app.register(&self.config, builder)
    }

    fn routes(&self) -> Router<Host> {
        self.app.routes(&self.config)
    }

    fn start(&self, host: Host, shutdown: CancellationToken) {
        self.app.start(&self.config, host, shutdown)
    }
}

impl<A: App> Attached<A> {
    fn parse(&self, values: &Map<String, Value>) -> Result<A::Config, ConfigValueError> {
        if !matches!(serde_json::to_value(A::Config::default()), Ok(Value::Object(_))) {
            // A configuration with no keys (`()`).
            return Ok(A::Config::default());
        }
        let mut merged = self.defaults();
        let mine: Vec<&String> = values.keys().filter(|k| merged.contains_key(*k)).collect();
        for key in &mine {
            merged.insert((*key).clone(), values[*key].clone());
        }
        match serde_json::from_value::<A::Config>(Value::Object(merged)) {
            Ok(config) => Ok(config),
            Err(e) => {
                // Name the key: the first that fails on its own.
                let key = mine
                    .iter()
                    .find(|key| {
                        let mut one = self.defaults();
                        one.insert((**key).clone(), values[**key].clone());
                        serde_json::from_value::<A::Config>(Value::Object(one)).is_err()
                    })
                    .map_or_else(|| A::NAME.to_string(), |k| (*k).clone());
                Err(ConfigValueError {
                    key,
                    message: e.to_string(),
                })
            }
        }
    }
}

/// A per-socket rate limit: a token bucket.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Frames per second, sustained.
    pub per_second: f64,
    /// Frames allowed at once above the rate.
    pub burst: u32,
    /// The frame that answers a frame over the limit (the protocol's own error), if any.
    pub reply: Option<Frame>,
    /// Frames over the limit in a row after which the socket is closed with 1008.
    pub close_after: u32,
}

/// How long a connection may live, and how it is warned before it ends (4002).
#[derive(Clone, Debug)]
pub struct Lifetime {
    pub after: Duration,
    /// A frame sent this long before the end.
    pub warning: Option<(Duration, Frame)>,
}

/// Options of the sockets a route upgrades. `None` fields take the server's configuration.
#[derive(Clone, Debug, Default)]
pub struct SocketOptions {
    /// Largest frame a client may send. Default: the server's `max_frame_bytes`.
    pub max_frame_bytes: Option<usize>,
    /// Largest message (frames of one message together). Default: the server's `max_frame_bytes`.
    pub max_message_bytes: Option<usize>,
    /// Frames per second a client may send. Default: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Default: no limit.
    pub lifetime: Option<Lifetime>,
    /// A socket with no frame from its client for this long is closed (1001). Default: none.
    pub idle_timeout: Option<Duration>,
    /// After this long with nothing from the client, the server pings it, and closes it (1001)
    /// if nothing comes within the server's `ping_timeout_ms`; zero turns pings off. Default: the
    /// server's `ping_interval_ms`.
    pub ping_interval: Option<Duration>,
    /// The subprotocol to echo when the client offers it (`Sec-WebSocket-Protocol`).
    pub subprotocol: Option<String>,
}

/// Why a client token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no client token key is configured (jwt_secret or jwt_public_key)")]
    NotConfigured,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// What makes an accepted socket's handler: given the socket, it offers it to an object.
pub type Connector = Box<
    dyn FnOnce(Arc<SocketConn>) -> Pin<Box<dyn Future<Output = Result<Option<ObjectSocket>, CallError>> + Send>> + Send,
>;

/// A connection born outside the gateway (a Socket.IO socket), adopted by the host: counted,
/// reachable by id, and closed (1012) on shutdown. Drain [`conn`](Self::conn) with
/// `next_batch` to deliver what the runtime sends it; drop this once the connection is gone.
pub struct Adopted {
    pub conn: Arc<SocketConn>,
    pub(crate) _guard: Box<dyn Send + Sync>,
}

impl Adopted {
    /// For hosts: wraps the socket and what must live as long as it.
    pub fn new(conn: Arc<SocketConn>, guard: Box<dyn Send + Sync>) -> Self {
        Adopted { conn, _guard: guard }
    }
}

/// What a server gives the apps it hosts; implemented by the gateway.
pub trait HostApi: Send + Sync + 'static {
    fn runtime(&self) -> &Runtime;
    fn auth_secret(&self) -> &str;
    /// Admits an operator: the API secret as `Authorization: Bearer`, or a signed-in session
    /// of the server's console.
    fn require_admin(&self, headers: &HeaderMap) -> Result<(), ApiError>;
    /// Verifies a client token (JWT) with the configured key; returns its claims.
    fn verify_token(&self, token: &str) -> Result<Value, TokenError>;
    /// Upgrades `req` to a WebSocket with `options` and hands it to the object `connector`
    /// offers it to.
    fn connect(&self, req: Request, options: SocketOptions, connector: Connector) -> Response;
    /// Adopts a connection of the given protocol (a label in metrics).
    fn adopt(&self, protocol: &'static str) -> Adopted;
    /// Refuses (403) a request from a browser page whose origin may not open sockets here: the
    /// policy every WebSocket upgrade passes, for connections the gateway does not upgrade.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError>;
    /// Cancelled when the server starts shutting down.
    fn shutdown(&self) -> CancellationToken;
}

/// The door an app has to the server that hosts it. Cheap to clone; the state of every app
/// route.
#[derive(Clone)]
pub struct Host(Arc<dyn HostApi>);

impl Host {
    pub fn new(api: Arc<dyn HostApi>) -> Self {
        Host(api)
    }

    pub fn runtime(&self) -> &Runtime {
        self.0.runtime()
    }

    /// Admits an operator: `Authorization: Bearer <secret>` with the server's API secret, or a
    /// signed-in session of the server's console (so its pages can drive the APIs without the
    /// key in the page).
    pub fn require_bearer(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.0.require_admin(headers)
    }

    /// Whether `token` is the server's API secret (for `?token=` on sockets).
    pub fn is_api_secret(&self, token: &str) -> bool {
        crate::http::constant_time_eq(token.as_bytes(), self.0.auth_secret().as_bytes())
    }

    /// Verifies a client token (JWT); returns its claims.
    pub fn verify_token(&self, token: &str) -> Result<Value, TokenError> {
        self.0.verify_token(token)
    }

    /// Upgrades `req` and offers the socket to the object behind `stub`. `info` gets the
    /// request's headers; a socket the object does not accept is closed with 1008.
    pub fn connect<O: Object>(
        &self,
        req: Request,
        stub: Stub<O>,
        mut info: ConnectInfo,
        options: SocketOptions,
    ) -> Response {
        info.headers = request_headers(req.headers());
        if info.peer.is_none() {
            info.peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
        }
        self.0.connect(
            req,
            options,
            Box::new(move |conn| Box::pin(async move { stub.connect(conn, info).await })),
        )
    }

    /// Adopts a connection born outside the gateway.
    pub fn adopt(&self, protocol: &'static str) -> Adopted {
        self.0.adopt(protocol)
    }

    /// Refuses (403) a request from a browser page whose origin may not open sockets here
    /// (`cors_origins`, same-origin pages, `file://`): for connections born outside the
    /// gateway, such as every request of a Socket.IO session.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.0.check_origin(headers)
    }

    /// Cancelled when the server starts shutting down.
    pub fn shutdown(&self) -> CancellationToken {
        self.0.shutdown()
    }
}

/// The peer address of a request, put in its extensions by the gateway.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// A request's headers by lower-case name (the last of a repeated one), without the WebSocket
/// key: what a [`ConnectInfo`] and an app's backend events carry.
pub fn request_headers(headers: &HeaderMap) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| *name != header::SEC_WEBSOCKET_KEY)
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect()
}
