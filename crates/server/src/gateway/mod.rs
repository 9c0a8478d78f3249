//! The gateway: HTTP and WebSocket serving, from accepted TCP connection to routed request.
//!
//! Shutdown has one shape: cancelling the server's token stops the accept loop, asks every
//! HTTP connection to finish its in-flight request, and closes every socket with 1012; then
//! the server waits (bounded by `shutdown_timeout`) for the trackers of both to drain, and
//! flushes storage.

mod adopt;
pub mod answers;
pub mod client_io;
pub mod content_type;
mod echo;
pub mod limits;
mod object_socket;
pub mod origin;
pub mod overload;
pub mod socket;
pub mod tls;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_apps::{Adopted, Connector, Host, HostApi, SocketOptions, TokenError};
use switchboard_runtime::Runtime;
use tokio::net::TcpListener;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};
use crate::token::TokenVerifier;
use origin::OriginPolicy;
use switchboard_apps::http::ApiError;

/// What every request handler of the gateway can reach; apps see it only as a [`Host`].
#[derive(Clone)]
pub struct Gateway {
    pub(crate) config: Arc<Config>,
    pub(crate) auth_secret: Secret,
    pub(crate) tokens: Arc<TokenVerifier>,
    pub(crate) runtime: Runtime,
    pub(crate) shutdown: CancellationToken,
    /// Every socket's task (and every adopted connection), so shutdown can wait for them.
    pub(crate) sockets: TaskTracker,
    pub(crate) metrics: PrometheusHandle,
    /// Requests and frames per client address, when `ip_rate_per_second` is set.
    pub(crate) ip_rates: Option<Arc<limits::IpRates>>,
    /// Signed-in console sessions.
    pub(crate) sessions: Arc<crate::console::Sessions>,
    /// Serving HTTPS (the console's cookie is then `Secure`).
    pub(crate) tls: bool,
    /// Which pages may open sockets; also handed to every request (see [`serve`]).
    pub(crate) origins: Arc<origin::OriginPolicy>,
}

impl Gateway {
    /// The admin key as `Authorization: Bearer`, or a signed-in console session.
    pub(crate) fn require_admin(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        if self.sessions.signed_in(headers) {
            return Ok(());
        }
        switchboard_apps::http::require_bearer(headers, self.auth_secret.expose())
    }
}

impl Gateway {
    /// Upgrades `req` with `options` and runs `on_socket` with the new connection, as a task the
    /// shutdown waits for; `on_socket` ends by handing the connection to a handler with
    /// [`Connection::run`](socket::Connection::run). The one place sockets are born.
    pub(crate) fn upgrade<F, Fut>(&self, req: Request, options: SocketOptions, on_socket: F) -> Response
    where
        F: FnOnce(socket::Connection) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let max_message = options.max_message_bytes.unwrap_or(self.config.max_frame_bytes);
        let max_frame = options.max_frame_bytes.unwrap_or(self.config.max_frame_bytes);
        let config = upgrade::socket_config(max_frame, max_message);
        let protocol = upgrade::chosen_protocol(req.headers(), options.subprotocol.as_deref());
        let gateway = self.clone();
        let peer = req.extensions().get::<switchboard_apps::PeerAddr>().map(|p| p.0.ip());
        upgrade::upgrade(req, config, protocol, move |ws| {
            let conn = gateway.runtime.new_socket(gateway.config.outbound_queue);
            let connection = socket::Connection::new(ws, conn, &gateway, options, peer);
            gateway.sockets.track_future(on_socket(connection))
        })
    }
}

impl HostApi for Gateway {
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn auth_secret(&self) -> &str {
        self.auth_secret.expose()
    }

    fn require_admin(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        Gateway::require_admin(self, headers)
    }

    fn verify_token(&self, token: &str) -> Result<serde_json::Value, TokenError> {
        self.tokens.verify(token)
    }

    fn connect(&self, req: Request, options: SocketOptions, connector: Connector) -> Response {
        self.connect_object(req, options, connector)
    }

    fn adopt(&self, protocol: &'static str) -> Adopted {
        adopt::adopt(self, protocol)
    }

    fn check_origin(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        self.origins.check(headers)
    }

    fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// The HTTP routes of the gateway, with `apps` (the apps' routes, given `host`) merged in.
pub fn router(gateway: Gateway, apps: Router<Host>, host: Host) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/objects/{class}/{name}", get(object_status))
        .merge(crate::console::routes());
    if gateway.config.echo_enabled {
        router = router.route("/ws/echo", get(echo_socket));
    }
    let cors = switchboard_apps::http::cors(&gateway.config.cors_origins);
    let router = router
        .with_state(gateway.clone())
        .merge(apps.with_state(host))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(gateway.config.max_body_bytes))
        .layer(axum::middleware::from_fn(count_requests));
    // Outermost, so a preflight is answered before routing can refuse its method.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    if gw.runtime.is_ready() && !gw.shutdown.is_cancelled() {
        axum::Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage is not accepting writes").into_response()
    }
}

async fn metrics(State(gw): State<Gateway>, headers: axum::http::HeaderMap) -> Response {
    if gw.config.metrics_require_auth
        && let Err(e) = gw.require_admin(&headers)
    {
        return e.into_response();
    }
    crate::telemetry::record_runtime(&gw.runtime.stats());
    crate::telemetry::record_outboxes(gw.runtime.outboxes());
    crate::telemetry::record_heap();
    ([("content-type", "text/plain; version=0.0.4")], gw.metrics.render()).into_response()
}

/// `GET /api/objects/{class}/{name}` (API secret): where an object lives and whether it is in
/// memory. Nothing is woken or created by asking.
async fn object_status(
    State(gw): State<Gateway>,
    axum::extract::Path((class, name)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    gw.require_admin(&headers)?;
    let address = switchboard_runtime::Address::new(&class, &name);
    let status = gw
        .runtime
        .object_status(&address)
        .ok_or_else(|| ApiError::not_found(format!("no object class {class:?} is served here")))?;
    Ok(axum::Json(serde_json::json!({
        "class": class,
        "name": name,
        "owner": gw.runtime.owner_of(&address),
        "awake": status.awake,
        "sockets": status.sockets,
    })))
}

async fn echo_socket(State(gw): State<Gateway>, req: Request) -> Response {
    gw.upgrade(req, SocketOptions::default(), |connection| async move {
        connection.run(echo::Echo)
    })
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    metrics::counter!("switchboard_http_requests_total", "route" => route, "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains connections.
///
/// Before a connection reaches hyper it must fit in its address's `max_connections_per_ip`
/// (else 429 and a close); at the open-file limit the next queued client is answered 503 with a
/// reserve descriptor (see [`overload`]). Every request then passes, outermost first: the API
/// answer shape, the origin policy (read by the upgrade), the body deadline and drain, and the
/// JSON content-type rule.
pub async fn serve(listener: TcpListener, router: Router, gateway: Gateway, tls: Option<Arc<tls::Tls>>) {
    let http = TaskTracker::new();
    let shutdown = gateway.shutdown.clone();
    let config = gateway.config.clone();
    let header_timeout = config.handshake_timeout;
    let router = router
        .layer(axum::middleware::from_fn(content_type::require_json))
        .layer(axum::middleware::from_fn_with_state(
            config.body_timeout,
            limits::bound_body,
        ))
        .layer(axum::Extension(OriginPolicy::clone(&gateway.origins)));
    let router = match &gateway.ip_rates {
        Some(rates) => router.layer(axum::middleware::from_fn_with_state(rates.clone(), limits::limit_rate)),
        None => router,
    };
    let router = router.layer(axum::middleware::from_fn(answers::api_answers));
    if let Some(tls) = &tls {
        tokio::spawn(reload_on_hangup(tls.clone(), shutdown.clone()));
    }
    let per_ip = limits::PerIp::new(config.max_connections_per_ip);
    let mut reserve = overload::Reserve::open();
    let mut accept_errors = overload::AcceptErrors::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                if let Some(failures) = accept_errors.record(tokio::time::Instant::now()) {
                    tracing::warn!(error = %e, failures, "accept failed");
                }
                if overload::is_out_of_descriptors(&e) && reserve.release() {
                    // The freed descriptor lets the client at the head of the queue hear that
                    // it is refused instead of waiting for nothing (or for work it gave up on).
                    if let Ok(Ok((stream, _))) =
                        tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
                    {
                        metrics::counter!("switchboard_connections_refused_total", "reason" => "open_files")
                            .increment(1);
                        let message = "server is at its connection limit";
                        overload::refuse(stream, StatusCode::SERVICE_UNAVAILABLE, message, Duration::ZERO).await;
                    }
                } else {
                    // Back off instead of spinning on a failure that a retry will not cure at once.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                reserve.refill();
                continue;
            }
        };
        let Some(slot) = per_ip.admit(peer.ip()) else {
            metrics::counter!("switchboard_connections_refused_total", "reason" => "per_ip").increment(1);
            let message = format!(
                "too many open connections from this address (at most {})",
                config.max_connections_per_ip
            );
            http.spawn(async move {
                overload::refuse(stream, StatusCode::TOO_MANY_REQUESTS, &message, REFUSAL_LINGER).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        // Apps see the peer's address (for ConnectInfo and per-address limits).
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(switchboard_apps::PeerAddr(peer));
            tower::ServiceExt::oneshot(router.clone(), req.map(axum::body::Body::new))
        });
        let (shutdown, tls) = (shutdown.clone(), tls.clone());
        http.spawn(async move {
            let io = match tls {
                // The handshake shares the headers' deadline: a client that stalls in it is dropped.
                Some(tls) => match tokio::time::timeout(header_timeout, tls.acceptor().accept(stream)).await {
                    // Boxed: the TLS state is kilobytes, and a plain connection must not carry room for it.
                    Ok(Ok(tls_stream)) => Either::Right(Box::new(tls_stream)),
                    Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!("TLS handshake timed out"),
                },
                None => Either::Left(stream),
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(client_io::ClientIo::new(io, slot)), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "http connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    http.close();
    gateway.sockets.close();
    let drained = async {
        http.wait().await;
        gateway.sockets.wait().await;
    };
    if tokio::time::timeout(gateway.config.shutdown_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            sockets = gateway.sockets.len(),
            requests = http.len(),
            "shutdown timeout passed with connections still open"
        );
    }
}

/// Time a refused client has to finish sending before its connection is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Reads the TLS certificate and key again on every SIGHUP, until shutdown.
async fn reload_on_hangup(tls: Arc<tls::Tls>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return tracing::warn!("cannot watch SIGHUP: the TLS certificate is read only at start");
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key read again"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: the TLS files cannot be used; the previous certificate stays"),
            },
            _ = shutdown.cancelled() => return,
        }
    }
}
