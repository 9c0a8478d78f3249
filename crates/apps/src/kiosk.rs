//! The NFC kiosk (PROTOCOLS.md §4): Socket.IO at `/socket.io/` for the seed's React page, a
//! durable kiosk object behind it, an NFC reader and an LED strip (mocks by default, PN532 and
//! WS281x over SPI with the `hardware` feature), and `POST /api/nfc/simulate`.

pub mod bridge;
pub mod debounce;
#[cfg(feature = "hardware")]
pub mod hardware;
pub mod led;
pub mod object;
pub mod reader;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use switchboard_proto::kiosk::{LedState, normalize_uid};
use switchboard_runtime::{ConnectInfo, QueueLimits, RuntimeBuilder, SocketConn};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::http::{ApiError, json_body};
use crate::{App, Host};
use led::{FrameLog, LedStrip};
use object::{Kiosk, KioskReply, KioskRequest};
use reader::TagReader;

/// The name of the one kiosk object a server runs.
pub const KIOSK: &str = "kiosk";
/// Frames the LED frame log keeps.
const FRAME_LOG: usize = 300;

/// The kiosk app.
pub struct Kiosks {
    io: SocketIo,
    service: SocketIoService,
    leds: Arc<LedLink>,
    frames: Arc<FrameLog>,
}

/// The Socket.IO service, answering in axum's body type.
type SocketIoService = tower::util::BoxCloneSyncService<Request, Response, std::convert::Infallible>;

impl Default for Kiosks {
    fn default() -> Self {
        Self::new()
    }
}

impl Kiosks {
    pub fn new() -> Self {
        let (service, io) = SocketIo::builder()
            .req_path("/socket.io")
            // Socket.IO's own defaults, written down: the JS server's and the client's.
            .ping_interval(Duration::from_secs(25))
            .ping_timeout(Duration::from_secs(20))
            .max_payload(1_000_000)
            // Events waiting for a client's transport; past this the client is a slow consumer.
            .max_buffer_size(1024)
            // Read in small chunks: every session holds this buffer for its whole life, and
            // clients send small events (a larger frame is still read whole).
            .ws_read_buffer_size(1024)
            .build_svc();
        let leds = Arc::new(LedLink::new());
        bridge::serve_namespace(&io, leds.clone());
        let service = ServiceExt::<Request>::map_response(service, axum_body);
        Kiosks {
            io,
            service: SocketIoService::new(service),
            leds,
            frames: Arc::new(FrameLog::new(FRAME_LOG)),
        }
    }
}

/// Settings of the kiosk app.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KioskConfig {
    /// A uid presented again this soon after its last accepted scan is the same scan.
    /// Default: 3000.
    pub kiosk_debounce_ms: u64,
    /// The NFC reader: `mock` (tags come from `POST /api/nfc/simulate`) or `pn532` (needs the
    /// `hardware` build). Default: `mock`.
    pub kiosk_reader: ReaderDriver,
    /// SPI device of the PN532. Default: `/dev/spidev0.0`.
    pub kiosk_reader_spi: String,
    /// How long one reader poll waits for a tag, in ms. Default: 200.
    pub kiosk_reader_poll_ms: u64,
    /// The LED strip: `mock` (frames readable at `GET /api/nfc/led`) or `ws281x` (needs the
    /// `hardware` build). Default: `mock`.
    pub kiosk_leds: StripDriver,
    /// SPI device whose MOSI drives the strip's data line. Default: `/dev/spidev1.0`.
    pub kiosk_leds_spi: String,
    /// LEDs on the strip. Default: 30.
    pub kiosk_led_count: usize,
    /// Most frames a second written to the strip. Default: 30.
    pub kiosk_led_fps: u32,
}

/// The NFC readers a kiosk can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderDriver {
    Mock,
    Pn532,
}

impl ReaderDriver {
    pub fn name(self) -> &'static str {
        match self {
            ReaderDriver::Mock => "mock",
            ReaderDriver::Pn532 => "pn532",
        }
    }
}

/// The LED strips a kiosk can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StripDriver {
    Mock,
    Ws281x,
}

impl Default for KioskConfig {
    fn default() -> Self {
        KioskConfig {
            kiosk_debounce_ms: 3000,
            kiosk_reader: ReaderDriver::Mock,
            kiosk_reader_spi: "/dev/spidev0.0".into(),
            kiosk_reader_poll_ms: 200,
            kiosk_leds: StripDriver::Mock,
            kiosk_leds_spi: "/dev/spidev1.0".into(),
            kiosk_led_count: 30,
            kiosk_led_fps: 30,
        }
    }
}

impl App for Kiosks {
    const NAME: &'static str = "kiosk";
    type Config = KioskConfig;

    fn register(&self, config: &KioskConfig, builder: RuntimeBuilder) -> RuntimeBuilder {
        builder.class::<Kiosk>().setting(config.clone())
    }

    fn routes(&self, _config: &KioskConfig) -> Router<Host> {
        let service = self.service.clone();
        let frames = self.frames.clone();
        Router::new()
            .route(
                "/socket.io/",
                any(move |State(host): State<Host>, req: Request| socket_io(host, service.clone(), req)),
            )
            .route("/api/nfc/simulate", post(simulate))
            .route(
                "/api/nfc/led",
                get(move |State(host): State<Host>, headers: HeaderMap| led_frames(host, frames.clone(), headers)),
            )
    }

    fn start(&self, config: &KioskConfig, host: Host, shutdown: CancellationToken) {
        let (reader, strip) = match devices(config) {
            Ok(devices) => devices,
            Err(e) => {
                tracing::error!(error = %e, "kiosk: the configured hardware cannot be used; using the mocks");
                if config.kiosk_reader != ReaderDriver::Mock {
                    // `status` shows the configured reader as not answering.
                    let stub = host.runtime().object::<Kiosk>(KIOSK);
                    tokio::spawn(async move { stub.call(KioskRequest::Reader { connected: false }).await });
                }
                (None, mock_strip(config))
            }
        };
        // With the mock reader, tags come from the simulate route: no thread to poll it.
        if let Some(reader) = reader {
            let events = reader::spawn(
                reader,
                Duration::from_millis(config.kiosk_reader_poll_ms.max(1)),
                shutdown.clone(),
            );
            tokio::spawn(present_tags(host.clone(), events));
        }
        let hardware_strip = strip.driver() != "mock";
        tokio::spawn(led::drive(
            strip,
            self.frames.clone(),
            self.leds.states.subscribe(),
            config.kiosk_led_fps,
            shutdown.clone(),
        ));
        // A real strip shows the kiosk's LED state from the start; a mock one once the kiosk is
        // first used, so a server that never serves a kiosk keeps no kiosk object awake.
        if hardware_strip {
            let (leds, host) = (self.leds.clone(), host.clone());
            tokio::spawn(async move { leds.follow(&host).await });
        }
        // Sessions end at the transport, not with a Socket.IO disconnect, so clients reconnect
        // to the server that comes back.
        let io = self.io.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            io.close().await;
        });
    }
}

/// A reader (none: the mock, fed by the simulate route) and a strip.
type Devices = (Option<Box<dyn TagReader>>, Box<dyn LedStrip>);

/// The configured reader and strip.
fn devices(config: &KioskConfig) -> Result<Devices, String> {
    let reader: Option<Box<dyn TagReader>> = match config.kiosk_reader {
        ReaderDriver::Mock => None,
        #[cfg(feature = "hardware")]
        ReaderDriver::Pn532 => Some(Box::new(
            hardware::Pn532Reader::open(&config.kiosk_reader_spi).map_err(|e| e.to_string())?,
        )),
        #[cfg(not(feature = "hardware"))]
        ReaderDriver::Pn532 => return Err("kiosk_reader = \"pn532\" needs a build with --features hardware".into()),
    };
    let strip: Box<dyn LedStrip> = match config.kiosk_leds {
        StripDriver::Mock => mock_strip(config),
        #[cfg(feature = "hardware")]
        StripDriver::Ws281x => Box::new(
            hardware::Ws281xStrip::open(&config.kiosk_leds_spi, config.kiosk_led_count).map_err(|e| e.to_string())?,
        ),
        #[cfg(not(feature = "hardware"))]
        StripDriver::Ws281x => return Err("kiosk_leds = \"ws281x\" needs a build with --features hardware".into()),
    };
    Ok((reader, strip))
}

fn mock_strip(config: &KioskConfig) -> Box<dyn LedStrip> {
    Box::new(led::MockStrip {
        leds: config.kiosk_led_count,
    })
}

/// Hands what the reader thread reads to the kiosk.
async fn present_tags(host: Host, mut events: tokio::sync::mpsc::Receiver<reader::ReaderEvent>) {
    let stub = host.runtime().object::<Kiosk>(KIOSK);
    while let Some(event) = events.recv().await {
        let request = match event {
            reader::ReaderEvent::Tag(uid) => KioskRequest::Present { uid },
            reader::ReaderEvent::Connected(connected) => KioskRequest::Reader { connected },
        };
        match stub.call(request).await {
            Ok(KioskReply::Debounced) => tracing::debug!("kiosk: a repeated tag was debounced"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "kiosk: a reader event was lost"),
        }
    }
}

/// What the LED driver shows, and its link to the kiosk: a socket of the kiosk object, like a
/// client's, that hears `status` on connect and every `led_state`.
pub struct LedLink {
    states: watch::Sender<LedState>,
    following: tokio::sync::OnceCell<()>,
}

impl LedLink {
    fn new() -> Self {
        LedLink {
            states: watch::channel(LedState::default()).0,
            following: tokio::sync::OnceCell::new(),
        }
    }

    /// Connects the LED driver to the kiosk, once; returns when it is connected, so that what
    /// a client does next reaches the strip.
    pub async fn follow(&self, host: &Host) {
        self.following
            .get_or_init(|| async {
                let runtime = host.runtime().clone();
                let conn = runtime.new_socket(QueueLimits::default());
                let info = ConnectInfo {
                    params: [("led".to_string(), String::new())].into(),
                    ..Default::default()
                };
                match runtime.object::<Kiosk>(KIOSK).connect(conn.clone(), info).await {
                    Ok(Some(object)) => {
                        let states = self.states.clone();
                        let shutdown = host.shutdown();
                        tokio::spawn(async move {
                            follow_leds(&conn, &states, shutdown).await;
                            object.closed(1001, "LED driver stopped".into()).await;
                            runtime.socket_ended(conn.id());
                        });
                    }
                    outcome => {
                        let error = outcome.err().map(|e| e.to_string());
                        tracing::error!(?error, "kiosk: the LED driver cannot follow the kiosk");
                        runtime.socket_ended(conn.id());
                    }
                }
            })
            .await;
    }
}

/// Passes the LED states the kiosk sends on to the driver, until shutdown.
async fn follow_leds(conn: &SocketConn, states: &watch::Sender<LedState>, shutdown: CancellationToken) {
    loop {
        let batch = tokio::select! {
            batch = conn.next_batch() => batch,
            _ = shutdown.cancelled() => return,
        };
        for frame in &batch.frames {
            let Some((event, payload)) = frame
                .as_text()
                .and_then(|t| serde_json::from_str::<(String, Value)>(t).ok())
            else {
                continue;
            };
            let led = match event.as_str() {
                "led_state" => serde_json::from_value::<LedState>(payload["data"].clone()).ok(),
                "status" => serde_json::from_value::<LedState>(payload["data"]["led"].clone()).ok(),
                _ => None,
            };
            if let Some(led) = led {
                states.send_replace(led);
            }
        }
        if batch.close.is_some() {
            return;
        }
    }
}

fn axum_body<B>(response: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    response.map(axum::body::Body::new)
}

/// Every Socket.IO request: the origin policy, then the Socket.IO service.
async fn socket_io(host: Host, service: SocketIoService, mut req: Request) -> Response {
    if let Err(e) = host.check_origin(req.headers()) {
        return e.into_response();
    }
    req.extensions_mut().insert(host);
    match service.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `POST /api/nfc/simulate {"uid"}`: presents a tag as the reader would.
async fn simulate(
    State(host): State<Host>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Simulate {
        uid: String,
    }
    let Simulate { uid } = json_body(body)?;
    let uid = normalize_uid(&uid).ok_or_else(|| {
        ApiError::bad_request(format!(
            "uid {uid:?} is not a tag uid: 4 to 10 bytes of hex, like 04:11:5D:22:2C:65:80"
        ))
    })?;
    let reply = host
        .runtime()
        .object::<Kiosk>(KIOSK)
        .call(KioskRequest::Present { uid })
        .await?;
    Ok(Json(match reply {
        KioskReply::Debounced => json!({"accepted": false, "reason": "debounced"}),
        _ => json!({"accepted": true}),
    }))
}

/// `GET /api/nfc/led`: how many frames the LED strip was given, and the last of them.
async fn led_frames(host: Host, frames: Arc<FrameLog>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let now = host.runtime().now_ms();
    Ok(Json(json!({
        "written": frames.written(),
        "frames": frames.view(now, 30),
    })))
}
