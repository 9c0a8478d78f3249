//! Server configuration: one validated struct, merged from defaults, a TOML file, the
//! environment and flags.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config`), `SWITCHBOARD_*`
//! environment variables, then flags (`--listen`, `--data-dir`, `--set key=value`). Every key
//! has one name, used as-is in the file and upper-cased with the `SWITCHBOARD_` prefix in the
//! environment. Unknown keys and bad values are errors that name the key, where it came from,
//! and what is allowed. Nothing outside this module reads the environment.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard_apps::AttachedApp;

use switchboard_runtime::{Durability, QueueLimits};

/// Prefix of every environment variable Switchboard reads.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// The effective configuration of a server. Every field states its default.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to serve on. Default: `127.0.0.1:8787`.
    pub listen: SocketAddr,
    /// Storage folder, created on first start. Default: `./switchboard-data`.
    pub data_dir: PathBuf,
    /// Bearer secret of every server-side API. Default: generated on first start and kept in
    /// `<data_dir>/auth_secret`.
    pub auth_secret: Option<Secret>,
    /// HS256 secret for client tokens. Default: none.
    pub jwt_secret: Option<Secret>,
    /// Path of a PEM public key (RS256/ES256) for client tokens. Default: none.
    pub jwt_public_key: Option<PathBuf>,
    /// PEM certificate chain to serve HTTPS and `wss://` with (with `tls_key`; read again on
    /// SIGHUP). Default: none (plain HTTP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Default: none.
    pub tls_key: Option<PathBuf>,
    /// Log output: `pretty` or `json`. Default: `pretty`.
    pub log_format: LogFormat,
    /// Serve the `/ws/echo` conformance endpoint. Default: true.
    pub echo_enabled: bool,
    /// Answer `/metrics` only with `Authorization: Bearer <auth_secret>`. Default: false (a
    /// Prometheus scraper on the private network needs no secret).
    pub metrics_require_auth: bool,
    /// Largest WebSocket message accepted, in bytes. Default: 1 MiB.
    pub max_frame_bytes: usize,
    /// Largest HTTP request body accepted, in bytes. Default: 1 MiB.
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers (and so complete a WebSocket handshake).
    /// Default: 10 s.
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's whole body, from the end of its headers; a body
    /// still unfinished then is answered 408 and the connection closed. Default: 30 s.
    pub body_timeout: Duration,
    /// Connections (HTTP and WebSocket) one client address may hold open at once; one more is
    /// answered 429 and closed. Default: 1000.
    pub max_connections_per_ip: usize,
    /// HTTP requests and WebSocket frames one client address may send per second, sustained,
    /// across all its connections; over it, 429 (or the socket route's rate-limit reply, then
    /// 1008). 0: no limit — behind a reverse proxy every client has the proxy's address.
    /// Default: 0.
    pub ip_rate_per_second: u32,
    /// Requests and frames an address may send at once above that rate. 0: twice the rate.
    /// Default: 0.
    pub ip_rate_burst: u32,
    /// New objects one client address may create per minute (a counter's first write, say);
    /// over it, 429 and nothing stored. 0: no limit. Default: 0.
    pub max_new_objects_per_ip_per_minute: usize,
    /// Let WebSocket upgrades with `Origin: file://` through the origin policy. Browsers never
    /// send it (a local page's origin is `null`); the ESP32 arduinoWebSockets library does.
    /// Default: true.
    pub allow_file_origin: bool,
    /// Time shutdown waits for sockets and requests to finish before it stops waiting.
    /// Default: 5 s.
    pub shutdown_timeout: Duration,
    /// Time a socket has, once a close is asked for, to send its close frame and hear the
    /// peer's; after it the connection is dropped. Default: 5 s.
    pub close_timeout: Duration,
    /// Time with nothing from a socket's client after which the server pings it (a route may
    /// set its own); zero: never. Default: 30 s.
    pub ping_interval: Duration,
    /// Time a pinged client has to send anything back before its socket is closed (1001).
    /// Default: 10 s.
    pub ping_timeout: Duration,
    /// Bounds of each socket's outbound queue. Default: 1024 frames, 4 MiB.
    pub outbound_queue: QueueLimits,
    /// Storage durability: `full` (fsync before outputs are released) or `normal`.
    /// Default: `full`.
    pub durability: Durability,
    /// Idle time after which an object is dropped from memory. Default: 10 s.
    pub hibernate_after: Duration,
    /// How long one attempt of an effect (an HTTP request to a backend) may take before it
    /// counts as failed and is retried. Default: 10 s.
    pub effect_timeout: Duration,
    /// Browser origins allowed by CORS (`*`: any). Default: none (no cross-origin access).
    pub cors_origins: Vec<String>,
    /// NATS server(s) of a cluster to join (`nats://host:4222`, comma-separated). Default: not
    /// set — a single node, with no cluster code running.
    pub nats_url: Option<String>,
    /// This node's name in its cluster. Default: generated once and kept in the data folder.
    pub node_id: Option<String>,
    /// How long an object's lease lasts unrenewed in a cluster. Default: 6 s.
    pub lease_ttl: Duration,
    /// Copies JetStream keeps of the cluster's data (1, 3 or 5). Default: 1.
    pub cluster_replicas: usize,
    /// Prefix of the cluster's JetStream buckets and NATS subjects. Default: `switchboard`.
    pub cluster_prefix: String,
    /// The apps' settings: every key of every app's configuration section, with its effective
    /// value (its default unless configured). Each app documents its own keys.
    pub app_values: Map<String, Value>,
}

/// A secret value that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A configuration error, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unknown configuration key `{key}` ({origin}); known keys: {known}")]
    UnknownKey { key: String, origin: String, known: String },
    #[error("bad value for `{key}` ({origin}): {message}")]
    BadValue {
        key: String,
        origin: String,
        message: String,
    },
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    List,
}

/// One configuration key of the server: its name (the only place it is written), how its text
/// is read from the environment or a flag, how its value is read into the [`Config`] (with its
/// default and bounds), and how the effective configuration shows it.
struct Key {
    name: &'static str,
    kind: Kind,
    read: fn(&Reader, &'static str, &mut Config) -> Result<(), ConfigError>,
    /// The value as a TOML literal; `None`: not set. Secrets are masked.
    show: fn(&Config) -> Option<String>,
}

fn quoted(v: impl fmt::Display) -> Option<String> {
    Some(format!("{:?}", v.to_string()))
}

fn masked(s: &Option<Secret>) -> Option<String> {
    s.as_ref().map(|_| "\"********\"".to_string())
}

/// Every key of the server itself; apps bring their own (see [`AttachedApp`]).
const KEYS: &[Key] = &[
    Key {
        name: "listen",
        kind: Kind::Str,
        read: |r, k, c| {
            c.listen = r.parse(k, "127.0.0.1:8787", "an address like 127.0.0.1:8787")?;
            Ok(())
        },
        show: |c| quoted(c.listen),
    },
    Key {
        name: "data_dir",
        kind: Kind::Str,
        read: |r, k, c| {
            c.data_dir = PathBuf::from(r.string(k)?.unwrap_or("./switchboard-data".into()));
            Ok(())
        },
        show: |c| quoted(c.data_dir.display()),
    },
    Key {
        name: "auth_secret",
        kind: Kind::Str,
        read: |r, k, c| {
            c.auth_secret = r.secret(k)?;
            Ok(())
        },
        show: |c| masked(&c.auth_secret),
    },
    Key {
        name: "jwt_secret",
        kind: Kind::Str,
        read: |r, k, c| {
            c.jwt_secret = r.secret(k)?;
            Ok(())
        },
        show: |c| masked(&c.jwt_secret),
    },
    Key {
        name: "jwt_public_key",
        kind: Kind::Str,
        read: |r, k, c| {
            c.jwt_public_key = r.string(k)?.map(PathBuf::from);
            Ok(())
        },
        show: |c| c.jwt_public_key.as_ref().and_then(|p| quoted(p.display())),
    },
    Key {
        name: "tls_cert",
        kind: Kind::Str,
        read: |r, k, c| {
            c.tls_cert = r.string(k)?.map(PathBuf::from);
            Ok(())
        },
        show: |c| c.tls_cert.as_ref().and_then(|p| quoted(p.display())),
    },
    Key {
        name: "tls_key",
        kind: Kind::Str,
        read: |r, k, c| {
            c.tls_key = r.string(k)?.map(PathBuf::from);
            Ok(())
        },
        show: |c| c.tls_key.as_ref().and_then(|p| quoted(p.display())),
    },
    Key {
        name: "cors_origins",
        kind: Kind::List,
        read: |r, k, c| {
            c.cors_origins = r.list(k)?;
            Ok(())
        },
        show: |c| Some(format!("{:?}", c.cors_origins)),
    },
    Key {
        name: "log_format",
        kind: Kind::Str,
        read: |r, k, c| {
            let options = [("pretty", LogFormat::Pretty), ("json", LogFormat::Json)];
            c.log_format = r.choice(k, &options, LogFormat::Pretty)?;
            Ok(())
        },
        show: |c| {
            quoted(match c.log_format {
                LogFormat::Pretty => "pretty",
                LogFormat::Json => "json",
            })
        },
    },
    Key {
        name: "echo_enabled",
        kind: Kind::Bool,
        read: |r, k, c| {
            c.echo_enabled = r.boolean(k, true)?;
            Ok(())
        },
        show: |c| Some(c.echo_enabled.to_string()),
    },
    Key {
        name: "metrics_require_auth",
        kind: Kind::Bool,
        read: |r, k, c| {
            c.metrics_require_auth = r.boolean(k, false)?;
            Ok(())
        },
        show: |c| Some(c.metrics_require_auth.to_string()),
    },
    Key {
        name: "max_frame_bytes",
        kind: Kind::Int,
        read: |r, k, c| {
            c.max_frame_bytes = r.int(k, 1 << 20, 125, 64 << 20)? as usize;
            Ok(())
        },
        show: |c| Some(c.max_frame_bytes.to_string()),
    },
    Key {
        name: "max_body_bytes",
        kind: Kind::Int,
        read: |r, k, c| {
            c.max_body_bytes = r.int(k, 1 << 20, 1024, 64 << 20)? as usize;
            Ok(())
        },
        show: |c| Some(c.max_body_bytes.to_string()),
    },
    Key {
        name: "handshake_timeout_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.handshake_timeout = r.millis(k, 10_000)?;
            Ok(())
        },
        show: |c| Some(c.handshake_timeout.as_millis().to_string()),
    },
    Key {
        name: "body_timeout_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.body_timeout = r.millis(k, 30_000)?;
            Ok(())
        },
        show: |c| Some(c.body_timeout.as_millis().to_string()),
    },
    Key {
        name: "max_connections_per_ip",
        kind: Kind::Int,
        read: |r, k, c| {
            c.max_connections_per_ip = r.int(k, 1000, 1, 1_000_000)? as usize;
            Ok(())
        },
        show: |c| Some(c.max_connections_per_ip.to_string()),
    },
    Key {
        name: "ip_rate_per_second",
        kind: Kind::Int,
        read: |r, k, c| {
            c.ip_rate_per_second = r.int(k, 0, 0, 10_000_000)? as u32;
            Ok(())
        },
        show: |c| Some(c.ip_rate_per_second.to_string()),
    },
    Key {
        name: "ip_rate_burst",
        kind: Kind::Int,
        read: |r, k, c| {
            c.ip_rate_burst = r.int(k, 0, 0, 10_000_000)? as u32;
            Ok(())
        },
        show: |c| Some(c.ip_rate_burst.to_string()),
    },
    Key {
        name: "max_new_objects_per_ip_per_minute",
        kind: Kind::Int,
        read: |r, k, c| {
            c.max_new_objects_per_ip_per_minute = r.int(k, 0, 0, 100_000_000)? as usize;
            Ok(())
        },
        show: |c| Some(c.max_new_objects_per_ip_per_minute.to_string()),
    },
    Key {
        name: "allow_file_origin",
        kind: Kind::Bool,
        read: |r, k, c| {
            c.allow_file_origin = r.boolean(k, true)?;
            Ok(())
        },
        show: |c| Some(c.allow_file_origin.to_string()),
    },
    Key {
        name: "shutdown_timeout_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.shutdown_timeout = r.millis(k, 5_000)?;
            Ok(())
        },
        show: |c| Some(c.shutdown_timeout.as_millis().to_string()),
    },
    Key {
        name: "close_timeout_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.close_timeout = r.millis(k, 5_000)?;
            Ok(())
        },
        show: |c| Some(c.close_timeout.as_millis().to_string()),
    },
    Key {
        name: "ping_interval_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.ping_interval = Duration::from_millis(r.int(k, 30_000, 0, 24 * 3600 * 1000)? as u64);
            Ok(())
        },
        show: |c| Some(c.ping_interval.as_millis().to_string()),
    },
    Key {
        name: "ping_timeout_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.ping_timeout = r.millis(k, 10_000)?;
            Ok(())
        },
        show: |c| Some(c.ping_timeout.as_millis().to_string()),
    },
    Key {
        name: "outbound_queue_frames",
        kind: Kind::Int,
        read: |r, k, c| {
            c.outbound_queue.max_frames = r.int(k, 1024, 1, 1 << 20)? as usize;
            Ok(())
        },
        show: |c| Some(c.outbound_queue.max_frames.to_string()),
    },
    Key {
        name: "outbound_queue_bytes",
        kind: Kind::Int,
        read: |r, k, c| {
            c.outbound_queue.max_bytes = r.int(k, 4 << 20, 1024, 1 << 30)? as usize;
            Ok(())
        },
        show: |c| Some(c.outbound_queue.max_bytes.to_string()),
    },
    Key {
        name: "durability",
        kind: Kind::Str,
        read: |r, k, c| {
            let options = [("full", Durability::Full), ("normal", Durability::Normal)];
            c.durability = r.choice(k, &options, Durability::Full)?;
            Ok(())
        },
        show: |c| {
            quoted(match c.durability {
                Durability::Full => "full",
                Durability::Normal => "normal",
            })
        },
    },
    Key {
        name: "hibernate_after_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.hibernate_after = r.millis(k, 10_000)?;
            Ok(())
        },
        show: |c| Some(c.hibernate_after.as_millis().to_string()),
    },
    Key {
        name: "effect_timeout_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.effect_timeout = r.millis(k, 10_000)?;
            Ok(())
        },
        show: |c| Some(c.effect_timeout.as_millis().to_string()),
    },
    Key {
        name: "nats_url",
        kind: Kind::Str,
        read: |r, k, c| {
            c.nats_url = r.string(k)?.filter(|v| !v.trim().is_empty());
            Ok(())
        },
        show: |c| c.nats_url.as_ref().and_then(quoted),
    },
    Key {
        name: "node_id",
        kind: Kind::Str,
        read: |r, k, c| {
            c.node_id = r.string(k)?;
            if let Some(id) = &c.node_id
                && (id.is_empty()
                    || id.len() > 64
                    || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            {
                return Err(r.bad(k, "use 1–64 letters, digits, `-` or `_`".into()));
            }
            Ok(())
        },
        show: |c| c.node_id.as_ref().and_then(quoted),
    },
    Key {
        name: "lease_ttl_ms",
        kind: Kind::Int,
        read: |r, k, c| {
            c.lease_ttl = Duration::from_millis(r.int(k, 6_000, 1_000, 3_600_000)? as u64);
            Ok(())
        },
        show: |c| Some(c.lease_ttl.as_millis().to_string()),
    },
    Key {
        name: "cluster_replicas",
        kind: Kind::Int,
        read: |r, k, c| {
            c.cluster_replicas = r.int(k, 1, 1, 5)? as usize;
            Ok(())
        },
        show: |c| Some(c.cluster_replicas.to_string()),
    },
    Key {
        name: "cluster_prefix",
        kind: Kind::Str,
        read: |r, k, c| {
            c.cluster_prefix = r.string(k)?.unwrap_or_else(|| "switchboard".into());
            if c.cluster_prefix.is_empty()
                || !c
                    .cluster_prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(r.bad(k, "use letters, digits, `-` or `_`".into()));
            }
            Ok(())
        },
        show: |c| quoted(&c.cluster_prefix),
    },
];

/// The raw inputs of a configuration, before merging.
#[derive(Default, Debug)]
pub struct Sources {
    /// `--config` path, if given.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them; only `SWITCHBOARD_*` are read).
    pub env: Vec<(String, String)>,
    /// Flag values by key, in the order given; later ones win.
    pub flags: Vec<(String, String)>,
}

impl Sources {
    /// Sources from this process's environment plus the given file and flags.
    pub fn from_process(file: Option<PathBuf>, flags: Vec<(String, String)>) -> Self {
        Sources {
            file,
            env: std::env::vars().collect(),
            flags,
        }
    }
}

struct RawValue {
    value: toml::Value,
    origin: String,
}

/// The keys the apps bring, with their defaults.
struct AppKeys(Map<String, Value>);

impl AppKeys {
    fn of(apps: &[Box<dyn AttachedApp>]) -> Self {
        AppKeys(apps.iter().flat_map(|a| a.defaults()).collect())
    }

    /// How an environment or flag string for this key is read: by its default's type.
    fn kind(&self, key: &str) -> Option<Kind> {
        self.0.get(key).map(|default| match default {
            Value::Number(_) => Kind::Int,
            Value::Bool(_) => Kind::Bool,
            Value::Array(_) => Kind::List,
            _ => Kind::Str,
        })
    }
}

impl Config {
    /// Merges and validates the sources into a configuration for the built-in apps.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Config::load_for(sources, &switchboard_apps::builtin())
    }

    /// Merges and validates the sources into a configuration for `apps`.
    pub fn load_for(sources: &Sources, apps: &[Box<dyn AttachedApp>]) -> Result<Config, ConfigError> {
        let keys = AppKeys::of(apps);
        let raw = merge(sources, &keys)?;
        let config = Config::from_raw(&raw, &keys)?;
        for app in apps {
            app.check(&config.app_values).map_err(|e| ConfigError::BadValue {
                origin: raw.get(&e.key).map(|r| r.origin.clone()).unwrap_or_default(),
                key: e.key,
                message: e.message,
            })?;
        }
        Ok(config)
    }

    /// The configuration with every default and no file, environment or flag.
    pub fn defaults() -> Config {
        Config::load(&Sources::default()).expect("defaults are valid")
    }

    fn from_raw(raw: &BTreeMap<String, RawValue>, keys: &AppKeys) -> Result<Config, ConfigError> {
        let r = Reader(raw);
        let mut app_values = keys.0.clone();
        for (key, value) in raw.iter().filter(|(k, _)| keys.0.contains_key(*k)) {
            let json = serde_json::to_value(&value.value).map_err(|e| r.bad(key, e.to_string()))?;
            app_values.insert(key.clone(), json);
        }
        // Every field but `app_values` is then set by exactly one key of [`KEYS`].
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::new(),
            auth_secret: None,
            jwt_secret: None,
            jwt_public_key: None,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Pretty,
            echo_enabled: false,
            metrics_require_auth: false,
            max_frame_bytes: 0,
            max_body_bytes: 0,
            handshake_timeout: Duration::ZERO,
            body_timeout: Duration::ZERO,
            max_connections_per_ip: 0,
            ip_rate_per_second: 0,
            ip_rate_burst: 0,
            max_new_objects_per_ip_per_minute: 0,
            allow_file_origin: false,
            shutdown_timeout: Duration::ZERO,
            close_timeout: Duration::ZERO,
            ping_interval: Duration::ZERO,
            ping_timeout: Duration::ZERO,
            outbound_queue: QueueLimits::default(),
            durability: Durability::Full,
            hibernate_after: Duration::ZERO,
            effect_timeout: Duration::ZERO,
            cors_origins: Vec::new(),
            nats_url: None,
            node_id: None,
            lease_ttl: Duration::ZERO,
            cluster_replicas: 1,
            cluster_prefix: String::new(),
            app_values,
        };
        for key in KEYS {
            (key.read)(&r, key.name, &mut config)?;
        }
        Ok(config)
    }

    /// The effective configuration as TOML, secrets masked: the server's keys, then the apps'.
    pub fn to_masked_toml(&self) -> String {
        let line = |key: &str, value: Option<String>| match value {
            Some(v) => format!("{key} = {v}\n"),
            None => format!("# {key} is not set\n"),
        };
        let server = KEYS.iter().map(|k| line(k.name, (k.show)(self)));
        let apps = self.app_values.iter().map(|(k, v)| {
            let shown = (!v.is_null()).then(|| v.to_string());
            line(k, shown)
        });
        server.chain(apps).collect()
    }
}

fn known_keys(apps: &AppKeys) -> String {
    KEYS.iter()
        .map(|k| k.name)
        .chain(apps.0.keys().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ")
}

fn merge(sources: &Sources, apps: &AppKeys) -> Result<BTreeMap<String, RawValue>, ConfigError> {
    let kind_of = |key: &str| {
        KEYS.iter()
            .find(|k| k.name == key)
            .map(|k| k.kind)
            .or_else(|| apps.kind(key))
    };
    let known_keys = || known_keys(apps);
    let mut raw = BTreeMap::new();
    if let Some(path) = &sources.file {
        for (key, value) in read_file(path)? {
            if kind_of(&key).is_none() {
                return Err(ConfigError::UnknownKey {
                    key,
                    origin: format!("in {}", path.display()),
                    known: known_keys(),
                });
            }
            let origin = format!("in {}", path.display());
            raw.insert(key, RawValue { value, origin });
        }
    }
    for (name, text) in &sources.env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        let origin = format!("from environment variable {name}");
        let Some(kind) = kind_of(&key) else {
            return Err(ConfigError::UnknownKey {
                key: name.clone(),
                origin,
                known: known_keys(),
            });
        };
        let value = from_text(&key, kind, text, &origin)?;
        raw.insert(key, RawValue { value, origin });
    }
    for (key, text) in &sources.flags {
        let origin = format!("from the command line ({key})");
        let Some(kind) = kind_of(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                origin: "from --set".into(),
                known: known_keys(),
            });
        };
        let value = from_text(key, kind, text, &origin)?;
        raw.insert(key.clone(), RawValue { value, origin });
    }
    Ok(raw)
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_string(),
    })
}

/// Turns an environment or flag string into the TOML value its key expects.
fn from_text(key: &str, kind: Kind, text: &str, origin: &str) -> Result<toml::Value, ConfigError> {
    let bad = |message: String| ConfigError::BadValue {
        key: key.into(),
        origin: origin.into(),
        message,
    };
    Ok(match kind {
        Kind::Str => toml::Value::String(text.into()),
        Kind::Int => toml::Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| bad(format!("expected a whole number, got {text:?}")))?,
        ),
        Kind::Bool => toml::Value::Boolean(match text.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad(format!("expected true or false, got {text:?}"))),
        }),
        Kind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        ),
    })
}

struct Reader<'a>(&'a BTreeMap<String, RawValue>);

impl Reader<'_> {
    fn bad(&self, key: &str, message: String) -> ConfigError {
        ConfigError::BadValue {
            key: key.into(),
            origin: self.0.get(key).map(|r| r.origin.clone()).unwrap_or_default(),
            message,
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.0.get(key).map(|r| &r.value) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(key, format!("expected a string, got {other}"))),
        }
    }

    fn secret(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if s.len() < 16 => Err(self.bad(key, "a secret must be at least 16 characters long".into())),
            Some(s) => Ok(Some(Secret(s))),
        }
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: &str, expected: &str) -> Result<T, ConfigError> {
        let text = self.string(key)?.unwrap_or_else(|| default.into());
        text.parse()
            .map_err(|_| self.bad(key, format!("expected {expected}, got {text:?}")))
    }

    fn int(&self, key: &str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        let v = match self.0.get(key).map(|r| &r.value) {
            None => return Ok(default),
            Some(toml::Value::Integer(i)) => *i,
            Some(other) => {
                return Err(self.bad(key, format!("expected a whole number, got {other}")));
            }
        };
        if v < min || v > max {
            return Err(self.bad(key, format!("must be between {min} and {max}, got {v}")));
        }
        Ok(v)
    }

    fn millis(&self, key: &str, default: i64) -> Result<Duration, ConfigError> {
        let ms = self.int(key, default, 1, 24 * 3600 * 1000)?;
        Ok(Duration::from_millis(ms as u64))
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.0.get(key).map(|r| &r.value) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.bad(key, format!("expected true or false, got {other}"))),
        }
    }

    fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.0.get(key).map(|r| &r.value) {
            None => Ok(Vec::new()),
            Some(toml::Value::String(s)) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(self.bad(key, format!("expected strings, got {other}"))),
                })
                .collect(),
            Some(other) => Err(self.bad(key, format!("expected a list of strings, got {other}"))),
        }
    }

    fn choice<T: Copy>(&self, key: &str, options: &[(&str, T)], default: T) -> Result<T, ConfigError> {
        let Some(text) = self.string(key)? else {
            return Ok(default);
        };
        options
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
                self.bad(key, format!("expected one of {}, got {text:?}", names.join(", ")))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// With nothing given, the documented defaults hold.
    #[test]
    fn defaults_are_documented_values() {
        let c = Config::defaults();
        assert!(
            c.to_masked_toml().parse::<toml::Table>().is_ok(),
            "the dump is valid TOML"
        );
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.data_dir, PathBuf::from("./switchboard-data"));
        assert_eq!(c.max_frame_bytes, 1 << 20);
        assert_eq!(c.durability, Durability::Full);
        assert!(c.echo_enabled);
        assert_eq!(c.body_timeout, Duration::from_secs(30));
        assert_eq!(c.max_connections_per_ip, 1000);
        assert!(c.allow_file_origin);
    }

    /// File < environment < flags.
    #[test]
    fn precedence_is_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("switchboard.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\nmax_frame_bytes = 2000\necho_enabled = false\n",
        )
        .unwrap();
        let sources = Sources {
            file: Some(file),
            env: env(&[
                ("SWITCHBOARD_LISTEN", "127.0.0.1:2"),
                ("SWITCHBOARD_MAX_FRAME_BYTES", "3000"),
                ("PATH", "/bin"),
            ]),
            flags: vec![("listen".into(), "127.0.0.1:3".into())],
        };
        let c = Config::load(&sources).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.max_frame_bytes, 3000);
        assert!(!c.echo_enabled);
    }

    /// Errors name the key and its origin.
    #[test]
    fn bad_values_and_unknown_keys_are_named() {
        let err = Config::load(&Sources {
            env: env(&[("SWITCHBOARD_MAX_FRAME_BYTES", "lots")]),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("max_frame_bytes") && err.contains("SWITCHBOARD_MAX_FRAME_BYTES"),
            "{err}"
        );

        let err = Config::load(&Sources {
            env: env(&[("SWITCHBOARD_LISTN", "x")]),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("SWITCHBOARD_LISTN") && err.contains("known keys"), "{err}");

        let err = Config::load(&Sources {
            flags: vec![("durability".into(), "sometimes".into())],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("durability") && err.contains("full, normal"), "{err}");
    }

    proptest::proptest! {
        /// Any text for any key's kind is a value or an error naming the key; whole numbers
        /// read back as themselves.
        #[test]
        fn text_values_never_panic(text in ".{0,40}", n in proptest::prelude::any::<i64>()) {
            for kind in [Kind::Str, Kind::Int, Kind::Bool, Kind::List] {
                if let Err(ConfigError::BadValue { key, .. }) = from_text("k", kind, &text, "test") {
                    proptest::prop_assert_eq!(key, "k");
                }
            }
            proptest::prop_assert_eq!(
                from_text("k", Kind::Int, &n.to_string(), "test").unwrap(),
                toml::Value::Integer(n)
            );
        }
    }

    /// Secrets never show in debug output or the masked dump.
    #[test]
    fn secrets_are_masked() {
        let c = Config::load(&Sources {
            env: env(&[("SWITCHBOARD_AUTH_SECRET", "a-very-secret-value-123")]),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{c:?}").contains("a-very-secret"));
        assert!(!c.to_masked_toml().contains("a-very-secret"));
        assert!(c.to_masked_toml().contains("auth_secret = \"********\""));
    }
}
