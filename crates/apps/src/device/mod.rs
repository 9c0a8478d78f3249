//! The RFID device gateway (PROTOCOLS.md §1): one object per ESP32 reader, durable scans with
//! a repeat window, a tag registry, config pushed from a dashboard, and an outbox that hands
//! every accepted scan to the application's backend.
//!
//! Three classes: [`Device`] (one per `deviceId`: its socket, scans, config and outbox),
//! [`Directory`] (every device ever seen, and the dashboard sockets) and [`Tags`] (tag → user,
//! and tags waiting to be registered). A device reaches the other two with `call` only to read
//! a tag's user and to be listed once; everything else it reports with `tell`, so no two
//! objects ever wait on each other.

mod directory;
mod object;
mod routes;

use serde::{Deserialize, Serialize};
use switchboard_runtime::RuntimeBuilder;

pub use directory::{Directory, DirectoryRequest, Summary, Tags, TagsReply, TagsRequest};
pub use object::{Device, DeviceReply, DeviceRequest, ScanOutcome};

use crate::{App, Host};

/// The topic the dashboard sockets listen to: scans, status changes, pending registrations.
pub const DASHBOARD_TOPIC: &str = "devices";
/// The name of the one [`Directory`] and the one [`Tags`] object.
pub const SINGLETON: &str = "all";

/// The device gateway app (PROTOCOLS.md §1).
pub struct Devices;

/// Settings of the device gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// The application backend that receives every accepted scan, POSTed as
    /// `{"scan","user"}` with `Idempotency-Key: <scan id>` through the durable outbox.
    /// Default: none.
    pub scan_sink_url: Option<String>,
    /// Whether a device must present the key registered for it (`PUT /api/devices/{id}`).
    /// Default: false.
    pub device_keys: bool,
    /// Least time between two accepted scans of one device (the repeat window), in ms.
    /// Default: 1000.
    pub scan_interval_ms: u64,
    /// A device with no frame for this long (heartbeats and pings count) is offline, and its
    /// socket is closed, in ms. Default: 90000.
    pub heartbeat_timeout_ms: u64,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            scan_sink_url: None,
            device_keys: false,
            scan_interval_ms: 1000,
            heartbeat_timeout_ms: 90_000,
        }
    }
}

impl DeviceConfig {
    fn heartbeat_timeout_ms(&self) -> i64 {
        self.heartbeat_timeout_ms.max(1) as i64
    }
}

impl App for Devices {
    const NAME: &'static str = "devices";
    type Config = DeviceConfig;

    fn register(&self, config: &DeviceConfig, builder: RuntimeBuilder) -> RuntimeBuilder {
        builder
            .class::<Device>()
            .class::<Directory>()
            .class::<Tags>()
            .setting(config.clone())
    }

    fn routes(&self, config: &DeviceConfig) -> axum::Router<Host> {
        routes::router(config.clone())
    }
}
