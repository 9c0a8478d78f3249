//! The Switchboard server: the gateway, its configuration and telemetry, and [`start`], which
//! serves until a shutdown token is cancelled.
//!
//! The `switchboard` binary is a thin layer over this library; tests call [`start`] with a
//! listener on port 0 and their own token.

pub mod cli;
pub mod config;
pub mod connect;
pub mod console;
pub mod effects;
pub mod gateway;
pub mod nfc;
pub mod secret;
pub mod telemetry;
pub mod token;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use switchboard_apps::{AttachedApp, Host};
use switchboard_cluster::{ClusterConfig, NatsCluster};
use switchboard_runtime::cluster::Cluster;
use switchboard_runtime::storage::Backend;
use switchboard_runtime::storage::sqlite::SqliteBackend;
use switchboard_runtime::{Runtime, RuntimeConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};
use crate::gateway::Gateway;
use crate::token::TokenVerifier;

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

/// What a server serves: its apps (the built-in ones by default), and the cluster it joins.
pub struct Serving {
    pub apps: Vec<Box<dyn AttachedApp>>,
    /// `None`: a single node.
    pub cluster: Option<Arc<dyn Cluster>>,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            apps: switchboard_apps::builtin(),
            cluster: None,
        }
    }
}

/// Opens storage in the data folder and serves the built-in apps on `listener` until
/// `shutdown` is cancelled.
pub async fn start(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<Server> {
    start_with(config, listener, shutdown, Serving::default()).await
}

/// Like [`start`], serving what `serving` says.
pub async fn start_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    serving: Serving,
) -> anyhow::Result<Server> {
    let Serving { mut apps, cluster } = serving;
    let addr = listener.local_addr()?;
    // Before anything takes a metric handle (the storage writer takes its own at start).
    let metrics = telemetry::metrics_handle();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data folder {}", config.data_dir.display()))?;
    let (auth_secret, source) =
        secret::load_or_create(config.auth_secret.as_ref(), &config.data_dir, secret::AUTH_SECRET_FILE)
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
    let (backend, nats): (Arc<dyn Backend>, _) = match (&config.nats_url, &cluster) {
        (Some(url), None) => {
            let (nats, backend) = join_cluster(&config, url, &db).await?;
            (backend, Some(nats))
        }
        _ => {
            let backend = SqliteBackend::open(&db, config.durability)
                .with_context(|| format!("cannot open storage at {}", db.display()))?;
            (Arc::new(backend), None)
        }
    };
    let cluster = cluster.or_else(|| nats.clone().map(|n| n as Arc<dyn Cluster>));
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(gateway::tls::Tls::load(cert, key)?)),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both tls_cert and tls_key"),
    };
    let tokens = match &config.jwt_public_key {
        Some(path) if config.jwt_secret.is_none() => TokenVerifier::public_key(path)?,
        _ => TokenVerifier::hs256(token::hs256_secret(&config)?.expose()),
    };
    let mut builder = Runtime::builder(
        RuntimeConfig {
            hibernate_after: config.hibernate_after,
            new_objects_per_origin_per_minute: (config.max_new_objects_per_ip_per_minute > 0)
                .then_some(config.max_new_objects_per_ip_per_minute),
            ..RuntimeConfig::default()
        },
        backend,
    )
    .effects(Arc::new(effects::HttpEffects::new(config.effect_timeout)));
    if let Some(cluster) = cluster {
        builder = builder.cluster(cluster);
    }
    let mut routes = Router::new();
    for app in &mut apps {
        app.configure(&config.app_values)
            .map_err(|e| anyhow::anyhow!("invalid setting `{}` of the {} app: {}", e.key, app.name(), e.message))?;
        builder = app.register(builder);
        routes = routes.merge(app.routes());
    }
    let runtime = builder.start().await.context("cannot start the object runtime")?;
    let config_ip_rate = (config.ip_rate_per_second, config.ip_rate_burst);
    let origins = Arc::new(gateway::origin::OriginPolicy::new(
        &config.cors_origins,
        config.allow_file_origin,
    ));
    let gateway = Gateway {
        origins,
        config: Arc::new(config),
        auth_secret: auth_secret.clone(),
        tokens: Arc::new(tokens),
        runtime: runtime.clone(),
        shutdown: shutdown.clone(),
        sockets: TaskTracker::new(),
        metrics,
        ip_rates: gateway::limits::IpRates::new(config_ip_rate.0, config_ip_rate.1),
        sessions: Arc::default(),
        tls: tls.is_some(),
    };
    let host = Host::new(Arc::new(gateway.clone()));
    let router = gateway::router(gateway.clone(), routes, host.clone());
    for app in &apps {
        app.start(host.clone(), shutdown.child_token());
    }
    tracing::info!(%addr, "switchboard listening");
    let rt = runtime.clone();
    let serving = tokio::spawn(async move {
        gateway::serve(listener, router, gateway, tls).await;
        rt.shutdown().await;
        if let Some(nats) = nats {
            nats.leave().await;
        }
        tracing::info!("switchboard stopped");
    });
    Ok(Server {
        addr,
        runtime,
        auth_secret,
        serving,
    })
}

/// Joins the cluster at `url`: objects' data in JetStream, this node's own records in `db`.
async fn join_cluster(config: &Config, url: &str, db: &Path) -> anyhow::Result<(Arc<NatsCluster>, Arc<dyn Backend>)> {
    let node_id = match &config.node_id {
        Some(id) => id.clone(),
        None => secret::load_or_create_node_id(&config.data_dir)
            .with_context(|| format!("cannot read or create the node id in {}", config.data_dir.display()))?,
    };
    let (nats, backend) = NatsCluster::connect(ClusterConfig {
        url: url.to_string(),
        node_id: node_id.clone(),
        lease_ttl: config.lease_ttl,
        replicas: config.cluster_replicas,
        // An owner that cannot answer within a lease's life is treated as gone.
        request_timeout: config.lease_ttl,
        prefix: config.cluster_prefix.clone(),
        local_db: db.to_owned(),
        durability: config.durability,
    })
    .await?;
    tracing::info!(node = %node_id, nats = %url, "joined the cluster");
    Ok((nats, backend))
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
