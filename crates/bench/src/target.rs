//! The servers under test: the flags that name them and what the bench learns about each.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::probe::Sample;
use crate::report::Format;

/// Flags every load scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Base URL of a server under test. Repeat it to run the same load against several servers
    /// in turn (e.g. Switchboard and the baseline server) and report them side by side.
    #[arg(long = "url", value_name = "URL", default_value = "http://127.0.0.1:8787")]
    pub urls: Vec<String>,
    /// PID of the server at the same position in `--url`, for its CPU seconds
    /// (/proc/PID/stat) and resident memory (/proc/PID/status).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Bearer secret of the server-side APIs (display `init` and `update`).
    #[arg(
        long,
        env = "SWITCHBOARD_AUTH_SECRET",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub secret: String,
    /// Output: one JSON line, or a table for people.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Allow servers outside 127.0.0.0/8. Off by default: this generator opens thousands of
    /// sockets, and aiming that at another machine should be a deliberate choice.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Which server answers at a URL; the baseline says so in its `/healthz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Switchboard,
    Baseline,
}

/// One server under test.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// The address its sockets connect to.
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub kind: ServerKind,
}

impl Target {
    /// Resolves every `--url` (with its `--pid`) and checks that each server answers.
    pub async fn all(common: &CommonArgs, http: &reqwest::Client) -> anyhow::Result<Vec<Target>> {
        let mut targets = Vec::new();
        for (i, url) in common.urls.iter().enumerate() {
            let target = Target::resolve(url, common.pids.get(i).copied(), common.allow_remote, http)
                .await
                .with_context(|| format!("server {url}"))?;
            targets.push(target);
        }
        Ok(targets)
    }

    pub async fn resolve(
        url: &str,
        pid: Option<u32>,
        allow_remote: bool,
        http: &reqwest::Client,
    ) -> anyhow::Result<Target> {
        let parsed = reqwest::Url::parse(url).context("not a URL")?;
        if parsed.scheme() != "http" {
            bail!("only http:// URLs are supported (the bench speaks ws:// to the same host)");
        }
        let host = parsed.host_str().context("the URL has no host")?.to_string();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .find(SocketAddr::is_ipv4)
            .context("the host has no IPv4 address")?;
        if !allow_remote && !addr.ip().is_loopback() {
            bail!("{addr} is not a loopback address; pass --allow-remote to load another machine");
        }
        if let Some(pid) = pid {
            Sample::of(Some(pid))?;
        }
        let base = format!("http://{host}:{port}");
        let health = http
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .context("GET /healthz failed: is the server running?")?;
        let body: serde_json::Value = health.json().await.unwrap_or_default();
        let kind = if body["server"] == "baseline" {
            ServerKind::Baseline
        } else {
            ServerKind::Switchboard
        };
        Ok(Target { base, addr, pid, kind })
    }

    /// `http://host:port{path}`.
    /// Every server in `--url`, all of which must be Switchboard: the baseline has no objects or
    /// storage, so for a scenario that needs them it says `why` not.
    pub async fn switchboards(common: &CommonArgs, http: &reqwest::Client, why: &str) -> anyhow::Result<Vec<Target>> {
        let targets = Target::all(common, http).await?;
        if let Some(t) = targets.iter().find(|t| t.kind != ServerKind::Switchboard) {
            anyhow::bail!("{}: the baseline server {why}", t.base);
        }
        Ok(targets)
    }

    pub fn http(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `ws://host:port{path}`.
    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The server's CPU and memory now, if its PID is known.
    pub fn sample(&self) -> Option<Sample> {
        self.pid.and_then(|pid| Sample::of(Some(pid)).ok())
    }

    /// A label for reports.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "url": self.base, "server": self.kind, "pid": self.pid })
    }
}

/// CPU seconds a process spent between two samples.
pub fn cpu_between(before: Option<Sample>, after: Option<Sample>) -> Option<f64> {
    Some(round3(after?.cpu_s - before?.cpu_s))
}

/// `x` to three decimals, for readable reports.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
