//! The gateway: HTTP and WebSocket serving, from accepted TCP connection to routed request.
//!
//! Shutdown has one shape: cancelling the server's token stops the accept loop, asks every
//! HTTP connection to finish its in-flight request, and closes every socket with 1012; then
//! the server waits (bounded by `shutdown_timeout`) for the trackers of both to drain, and
//! flushes storage.

pub mod answers;
pub mod client_io;
pub mod content_type;
pub mod echo;
pub mod limits;
pub mod object_socket;
pub mod origin;
pub mod overload;
pub mod socket;
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
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_runtime::{Runtime, SocketConn};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};
use switchboard_apps::http::ApiError;

/// What every request handler can reach.
#[derive(Clone)]
pub struct Gateway {
    pub config: Arc<Config>,
    pub auth_secret: Secret,
    pub runtime: Runtime,
    pub shutdown: CancellationToken,
    /// Every socket's task, so shutdown can wait for them.
    pub sockets: TaskTracker,
    pub metrics: PrometheusHandle,
}

impl Gateway {
    /// Upgrades `req` and runs `on_socket` with the new connection, as a task the shutdown
    /// waits for; `on_socket` ends by handing the connection to a handler with
    /// [`Connection::run`](socket::Connection::run). The one place sockets are born.
    pub fn upgrade<F, Fut>(&self, req: Request, on_socket: F) -> Response
    where
        F: FnOnce(socket::Connection) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let config = upgrade::socket_config(self.config.max_frame_bytes);
        let (limits, close_timeout) = (self.config.outbound_queue, self.config.close_timeout);
        let (shutdown, tracker) = (self.shutdown.clone(), self.sockets.clone());
        upgrade::upgrade(req, config, move |ws| {
            let conn = Arc::new(SocketConn::new(limits));
            let connection = socket::Connection::new(ws, conn, shutdown, close_timeout, tracker.clone());
            tracker.track_future(on_socket(connection))
        })
    }

    /// Upgrades `req` and drives the socket with the handler `make_handler` returns.
    pub fn upgrade_with<H, F>(&self, req: Request, make_handler: F) -> Response
    where
        H: socket::SocketHandler,
        F: FnOnce(Arc<SocketConn>) -> H + Send + 'static,
    {
        self.upgrade(req, move |connection| async move {
            let handler = make_handler(connection.conn.clone());
            connection.run(handler);
        })
    }
}

impl switchboard_apps::Host for Gateway {
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn auth_secret(&self) -> &str {
        self.auth_secret.expose()
    }

    fn connect<O: switchboard_runtime::Object>(
        &self,
        req: Request,
        stub: switchboard_runtime::Stub<O>,
        info: switchboard_runtime::ConnectInfo,
    ) -> Response {
        self.connect_object(req, stub, info)
    }
}

/// The HTTP routes of the gateway, with `extra` (the apps' routes) merged in.
pub fn router(gateway: Gateway, extra: Router<Gateway>) -> Router {
    let mut router = extra
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if gateway.config.echo_enabled {
        router = router.route("/ws/echo", get(echo_socket));
    }
    let cors = switchboard_apps::http::cors(&gateway.config.apps.cors_origins);
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(gateway.config.max_body_bytes))
        .layer(axum::middleware::from_fn(count_requests));
    // Outermost, so a preflight is answered before routing can refuse its method.
    match cors {
        Some(cors) => router.layer(cors).with_state(gateway),
        None => router.with_state(gateway),
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

async fn metrics(State(gw): State<Gateway>) -> impl IntoResponse {
    crate::telemetry::record_runtime(&gw.runtime.stats());
    crate::telemetry::record_heap();
    ([("content-type", "text/plain; version=0.0.4")], gw.metrics.render())
}

async fn echo_socket(State(gw): State<Gateway>, req: Request) -> Response {
    gw.upgrade_with(req, |_| echo::Echo)
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
pub async fn serve(listener: TcpListener, router: Router, gateway: Gateway) {
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
        .layer(axum::Extension(origin::OriginPolicy::new(
            &config.apps.cors_origins,
            config.allow_file_origin,
        )))
        .layer(axum::middleware::from_fn(answers::api_answers));
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
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        http.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(client_io::ClientIo::new(stream, slot)), service)
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
