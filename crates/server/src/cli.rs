//! The `switchboard` command line: subcommands and their flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Sources};

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "A self-hosted real-time server: WebSockets and durable objects."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve HTTP and WebSocket clients until SIGINT or SIGTERM.
    Serve(ConfigArgs),
    /// Validate the configuration and print it, secrets masked.
    CheckConfig(ConfigArgs),
    /// Open a WebSocket and exchange frames: typed lines out, received frames to stdout.
    Connect(crate::connect::ConnectArgs),
    /// Load a server and measure it: fan-out, latency, memory, durable writes, wake-ups.
    Bench(switchboard_bench::BenchArgs),
    /// Mint a client token (JWT) for the rooms socket, signed with the server's key.
    Token(crate::token::TokenArgs),
    /// Simulated clients for demos and load: `simulate devices` runs RFID readers.
    Simulate(switchboard_bench::simulate::SimulateArgs),
    /// The NFC kiosk: `nfc simulate UID` presents a tag as the reader would.
    Nfc(crate::nfc::NfcArgs),
}

/// Flags that feed the configuration. Each overrides the file and the environment.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve on [env: SWITCHBOARD_LISTEN] (default 127.0.0.1:8787).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Storage folder [env: SWITCHBOARD_DATA_DIR] (default ./switchboard-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Log format: pretty or json [env: SWITCHBOARD_LOG_FORMAT].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// PEM certificate chain: serve HTTPS and wss:// [env: SWITCHBOARD_TLS_CERT]; read again
    /// on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert [env: SWITCHBOARD_TLS_KEY].
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Join a cluster through these NATS server(s) [env: SWITCHBOARD_NATS_URL]; unset: a single
    /// node.
    #[arg(long = "nats", value_name = "URL")]
    pub nats_url: Option<String>,
    /// This node's name in its cluster [env: SWITCHBOARD_NODE_ID] (default: generated once
    /// and kept in the data folder).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Any configuration key, as key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The validated configuration from these flags, the file and the process environment.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut flags = Vec::new();
        for raw in &self.set {
            let (key, value) = raw.split_once('=').ok_or_else(|| ConfigError::BadValue {
                key: raw.clone(),
                origin: "from --set".into(),
                message: "expected KEY=VALUE".into(),
            })?;
            flags.push((key.trim().to_string(), value.to_string()));
        }
        let named = [
            ("listen", &self.listen),
            ("data_dir", &self.data_dir),
            ("log_format", &self.log_format),
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("nats_url", &self.nats_url),
            ("node_id", &self.node_id),
        ];
        flags.extend(
            named
                .into_iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v))),
        );
        Config::load(&Sources::from_process(self.config.clone(), flags))
    }
}
