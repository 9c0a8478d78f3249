//! The Switchboard server: the gateway, its configuration and telemetry, and [`start`], which
//! serves until a shutdown token is cancelled.
//!
//! The `switchboard` binary is a thin layer over this library; tests call [`start`] with a
//! listener on port 0 and their own token.

pub mod cli;
pub mod config;
pub mod connect;
pub mod gateway;
pub mod secret;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use switchboard_runtime::storage::sqlite::SqliteBackend;
use switchboard_runtime::{Runtime, RuntimeBuilder, RuntimeConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};
use crate::gateway::Gateway;

/// File name of the embedded database inside the data folder.
pub const DATABASE_FILE: &str = "switchboard.db";

/// A running server.
pub struct Server {
    /// The address it serves on.
    pub addr: SocketAddr,
    pub runtime: Runtime,
    pub auth_secret: Secret,
    serving: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Waits until the server has shut down: sockets closed, storage flushed.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.serving.await.context("server task failed")
    }
}

/// What a server serves besides the gateway's own routes: object classes and their routes.
/// The built-in apps are one; a program embedding Switchboard can bring its own.
pub struct Extension {
    /// Registers object classes.
    pub classes: Box<dyn FnOnce(RuntimeBuilder) -> RuntimeBuilder + Send>,
    /// HTTP and WebSocket routes, with the gateway as state.
    pub routes: Router<Gateway>,
}

impl Extension {
    /// No classes, no routes.
    pub fn none() -> Self {
        Extension {
            classes: Box::new(|b| b),
            routes: Router::new(),
        }
    }
}

/// Opens storage in the data folder and serves the built-in apps on `listener` until
/// `shutdown` is cancelled.
pub async fn start(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<Server> {
    start_with(config, listener, shutdown, Extension::none()).await
}

/// Like [`start`], serving `extension` as well.
pub async fn start_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    extension: Extension,
) -> anyhow::Result<Server> {
    let addr = listener.local_addr()?;
    // Before anything takes a metric handle (the storage writer takes its own at start).
    let metrics = telemetry::metrics_handle();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data folder {}", config.data_dir.display()))?;
    let (auth_secret, source) = secret::load_or_create(config.auth_secret.as_ref(), &config.data_dir)
        .with_context(|| format!("cannot read or create the auth secret in {}", config.data_dir.display()))?;
    match source {
        secret::SecretSource::Configured => tracing::info!("using the configured auth secret"),
        secret::SecretSource::File { path, generated: true } => {
            tracing::info!(path = %path.display(), "generated a new auth secret; Bearer clients read it from this file")
        }
        secret::SecretSource::File { path, generated: false } => {
            tracing::info!(path = %path.display(), "using the auth secret stored in the data folder")
        }
    }
    let db = config.data_dir.join(DATABASE_FILE);
    make_private(&config.data_dir, &db)
        .with_context(|| format!("cannot make the data folder {} private", config.data_dir.display()))?;
    let backend = SqliteBackend::open(&db, config.durability)
        .with_context(|| format!("cannot open storage at {}", db.display()))?;
    let builder = Runtime::builder(
        RuntimeConfig {
            hibernate_after: config.hibernate_after,
        },
        Arc::new(backend),
    );
    let builder = switchboard_apps::register(builder, &config.apps);
    let runtime = (extension.classes)(builder)
        .start()
        .await
        .context("cannot start the object runtime")?;
    let gateway = Gateway {
        config: Arc::new(config),
        auth_secret: auth_secret.clone(),
        runtime: runtime.clone(),
        shutdown,
        sockets: TaskTracker::new(),
        metrics,
    };
    let routes = switchboard_apps::routes::<Gateway>().merge(extension.routes);
    let router = gateway::router(gateway.clone(), routes);
    tracing::info!(%addr, "switchboard listening");
    let rt = runtime.clone();
    let serving = tokio::spawn(async move {
        gateway::serve(listener, router, gateway).await;
        rt.shutdown().await;
        tracing::info!("switchboard stopped");
    });
    Ok(Server {
        addr,
        runtime,
        auth_secret,
        serving,
    })
}

/// Makes the data folder 0700 and the database files 0600: they hold every object's state and
/// the auth secret. Also tightens what an older version or a loose umask left open to others.
fn make_private(data_dir: &Path, db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    // SQLite gives its -wal and -shm files the mode of the database file, so that file is made
    // 0600 before SQLite first opens it.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
