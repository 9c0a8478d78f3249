//! What the bench reads about the processes under test: CPU time and resident memory from
//! `/proc`, gauges and counters from a server's Prometheus `/metrics`, and the machine itself.

use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

/// CPU time and resident memory of one process at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// User plus system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

impl Sample {
    /// Samples process `pid` (`None`: this process).
    pub fn of(pid: Option<u32>) -> anyhow::Result<Sample> {
        let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
        let stat = std::fs::read_to_string(format!("{dir}/stat"))
            .map_err(|e| anyhow::anyhow!("cannot read {dir}/stat (is the --pid right?): {e}"))?;
        let status = std::fs::read_to_string(format!("{dir}/status"))?;
        Ok(Sample {
            cpu_s: cpu_ticks(&stat).ok_or_else(|| anyhow::anyhow!("unexpected {dir}/stat format"))? as f64
                / clock_ticks_per_second(),
            rss_bytes: rss_kib(&status)
                .ok_or_else(|| anyhow::anyhow!("no VmRSS in {dir}/status: has the process exited?"))?
                * 1024,
        })
    }
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from `/proc/PID/status`.
fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` (the workspace forbids unsafe code, and so the
/// libc call); 100 on every Linux this runs on if that fails.
pub(crate) fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The soft limit on open files of process `pid` (`None`: this process), from `/proc/PID/limits`.
pub fn open_files_limit(pid: Option<u32>) -> Option<u64> {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    let limits = std::fs::read_to_string(format!("{dir}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The local port range (`net.ipv4.ip_local_port_range`): how many client sockets one source
/// address can open to one server address.
pub fn local_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|n| n.parse::<u64>().ok());
            Some(it.next_back()? - it.next()? + 1)
        })
        .unwrap_or(28_232)
}

/// The sum of every series of metric `name` in a Prometheus text exposition, if present.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        // Exactly this metric: followed by labels or a space, not `name_suffix`.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Reads metric `name` from the server at `base` (`http://host:port`); `None` if the server
/// has no `/metrics` (the baseline) or no such metric.
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let response = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    metric_value(&response.text().await.ok()?, name)
}

/// How much a counter read twice grew; `None` if either read failed.
pub fn delta(before: Option<f64>, after: Option<f64>) -> Option<i64> {
    Some((after? - before?).round() as i64)
}

/// Waits until the server's `switchboard_objects_hibernated` gauge reaches `at_least`, for at
/// most `limit`. Returns the last value seen and whether it got there.
pub async fn wait_hibernated(http: &reqwest::Client, base: &str, at_least: u64, limit: Duration) -> (u64, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let now = metric(http, base, "switchboard_objects_hibernated")
            .await
            .unwrap_or(0.0) as u64;
        if now >= at_least {
            return (now, true);
        }
        if tokio::time::Instant::now() >= deadline {
            return (now, false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The machine the numbers were taken on.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "kernel": kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_name() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 99 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  2048 kB\n"), Some(2048));
    }

    #[test]
    fn this_process_samples() {
        let s = Sample::of(None).unwrap();
        assert!(s.rss_bytes > 0 && s.cpu_s >= 0.0);
        assert!(open_files_limit(None).unwrap() > 0);
        assert!(local_ports() > 0);
    }

    #[test]
    fn metrics_are_summed_over_labels_and_exact_by_name() {
        let text = "# HELP x\nswitchboard_objects_hibernated 7\nswitchboard_objects_hibernated_total 100\n\
                    reqs{route=\"/a\",status=\"200\"} 3\nreqs{route=\"/b\",status=\"200\"} 4\n";
        assert_eq!(metric_value(text, "switchboard_objects_hibernated"), Some(7.0));
        assert_eq!(metric_value(text, "reqs"), Some(7.0));
        assert_eq!(metric_value(text, "absent"), None);
    }
}
