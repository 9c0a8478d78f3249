//! The seed systems as Switchboard apps: object classes with their routes and settings.
//!
//! Every app attaches through the one [`App`] seam and reaches the server only through the
//! [`Host`] — the same way a user's own app does (`examples/`). Apps use nothing of the runtime
//! but its public API.

pub mod counter;
pub mod device;
pub mod display;
pub mod host;
pub mod http;
pub mod kiosk;
pub mod rooms;

pub use host::{
    Adopted, App, AttachedApp, ConfigValueError, Connector, Host, HostApi, Lifetime, PeerAddr, RateLimit,
    SocketOptions, TokenError, attach,
};

/// The built-in apps, with their default settings.
pub fn builtin() -> Vec<Box<dyn AttachedApp>> {
    vec![
        attach(counter::Counters),
        attach(display::Displays),
        attach(rooms::Rooms::default()),
        attach(device::Devices),
        attach(kiosk::Kiosks::new()),
    ]
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
