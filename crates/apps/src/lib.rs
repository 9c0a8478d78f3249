//! The seed systems as Switchboard object classes, each with its routes.
//!
//! Apps use only the runtime's public API, and reach the gateway through [`Host`], so a
//! user's own app is built exactly the same way.

pub mod counter;
pub mod display;
pub mod http;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use switchboard_runtime::{ConnectInfo, Object, Runtime, RuntimeBuilder, Stub};

/// What apps need from the server that hosts them.
pub trait Host: Clone + Send + Sync + 'static {
    fn runtime(&self) -> &Runtime;
    /// The Bearer secret of server-side APIs.
    fn auth_secret(&self) -> &str;
    /// Upgrades `req` to a WebSocket and offers it to the object behind `stub`.
    fn connect<O: Object>(&self, req: Request, stub: Stub<O>, info: ConnectInfo) -> Response;
}

/// Settings of the built-in apps. Objects read them with `Context::setting::<Settings>()`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Entries kept in each counter's history. Default: 1000.
    pub counter_history_limit: usize,
    /// Entries kept in each display session's `transcriptions` and `displayUpdates`. Default: 100.
    pub display_list_limit: usize,
    /// Browser origins allowed by CORS (`*`: any). Default: none.
    pub cors_origins: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            counter_history_limit: 1000,
            display_list_limit: 100,
            cors_origins: Vec::new(),
        }
    }
}

/// Registers every app's object classes and settings.
pub fn register(builder: RuntimeBuilder, settings: &Settings) -> RuntimeBuilder {
    builder
        .class::<counter::Counter>()
        .class::<display::Session>()
        .setting(settings.clone())
}

/// Every app's routes. CORS (`settings.cors_origins`, see [`http::cors`]) is for the host to
/// apply around everything it serves, so that preflights reach it before any routing.
pub fn routes<H: Host>() -> Router<H> {
    Router::new().merge(counter::routes()).merge(display::routes())
}

/// Checks an object name taken from a URL or body: 1 to 256 bytes.
pub fn valid_name(kind: &str, name: &str) -> Result<(), http::ApiError> {
    if name.is_empty() || name.len() > 256 {
        return Err(http::ApiError::bad_request(format!(
            "{kind} must be 1 to 256 bytes long"
        )));
    }
    Ok(())
}
