//! Logs (tracing) and metrics (Prometheus text format), set up once per process.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchboard_runtime::{Address, OutboxStats, StatsSnapshot};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Starts logging to stderr. The level comes from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The process's metrics recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (several servers in one test process):
            // then metrics go there and this handle renders nothing of them.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("switchboard_connections_open", "WebSocket connections open now");
    describe_counter!("switchboard_frames_in_total", "Data frames received from clients");
    describe_counter!("switchboard_frames_out_total", "Data frames written to clients");
    describe_counter!("switchboard_http_requests_total", "HTTP requests by route and status");
    describe_counter!(
        "switchboard_slow_consumer_closes_total",
        "Sockets closed because their outbound queue was full"
    );
    describe_histogram!(
        "switchboard_storage_commit_seconds",
        "Time of one storage commit (including fsync)"
    );
    describe_histogram!(
        "switchboard_storage_commit_batch_size",
        "Events' write sets per storage commit"
    );
    describe_gauge!("switchboard_objects_live", "Objects with an instance in memory");
    describe_gauge!(
        "switchboard_heap_allocated_bytes",
        "Bytes the program has allocated and not freed (jemalloc)"
    );
    describe_gauge!(
        "switchboard_heap_resident_bytes",
        "Bytes of the heap resident in memory (jemalloc)"
    );
    describe_gauge!(
        "switchboard_objects_hibernated",
        "Objects with open sockets and no instance in memory"
    );
    describe_gauge!("switchboard_object_sockets", "Sockets accepted by objects");
    describe_counter!(
        "switchboard_object_wakes_total",
        "Object instances started (first use or wake)"
    );
    describe_counter!(
        "switchboard_object_hibernations_total",
        "Object instances dropped after being idle"
    );
    describe_counter!(
        "switchboard_object_evictions_total",
        "Object instances restarted after a failed commit"
    );
    describe_counter!(
        "switchboard_auto_responses_total",
        "Frames answered by auto-response without waking an object"
    );
    describe_counter!("switchboard_alarms_fired_total", "Alarms delivered");
    describe_gauge!(
        "switchboard_object_outbox_depth",
        "Effects waiting to run, per object with any (a device's scans for the sink)"
    );
    describe_gauge!(
        "switchboard_object_outbox_oldest_age_seconds",
        "Age of an object's oldest waiting effect"
    );
    describe_counter!("switchboard_storage_commits_total", "Storage commits");
    describe_counter!(
        "switchboard_storage_commit_failures_total",
        "Storage commits that failed"
    );
}

/// Publishes jemalloc's view of the heap, when jemalloc is the process's allocator (the
/// `switchboard` binary); elsewhere the figures would describe an unused allocator, so none
/// are published.
pub fn record_heap() {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return;
    }
    if let (Ok(allocated), Ok(resident)) = (stats::allocated::read(), stats::resident::read())
        && allocated > 0
    {
        metrics::gauge!("switchboard_heap_allocated_bytes").set(allocated as f64);
        metrics::gauge!("switchboard_heap_resident_bytes").set(resident as f64);
    }
}

/// Publishes each object's waiting effects (`class`, `object` labels), just before a scrape
/// renders them. An object whose outbox drained since the last scrape is published once more,
/// at zero, so that no stale depth stays behind.
pub fn record_outboxes(outboxes: Vec<(Address, OutboxStats)>) {
    static SHOWN: Mutex<BTreeSet<Address>> = Mutex::new(BTreeSet::new());
    let mut shown = SHOWN.lock().expect("metrics set poisoned");
    let now: BTreeSet<Address> = outboxes.iter().map(|(a, _)| a.clone()).collect();
    let drained: Vec<(Address, OutboxStats)> = shown
        .difference(&now)
        .map(|a| (a.clone(), OutboxStats::default()))
        .collect();
    for (address, stats) in outboxes.into_iter().chain(drained) {
        let labels = [
            ("class", address.class.to_string()),
            ("object", address.name.to_string()),
        ];
        metrics::gauge!("switchboard_object_outbox_depth", &labels).set(stats.depth as f64);
        metrics::gauge!("switchboard_object_outbox_oldest_age_seconds", &labels)
            .set(stats.oldest_age_ms as f64 / 1000.0);
    }
    *shown = now;
}

/// Publishes a runtime's counters as metrics, just before a scrape renders them.
pub fn record_runtime(stats: &StatsSnapshot) {
    metrics::gauge!("switchboard_objects_live").set(stats.live_objects as f64);
    metrics::gauge!("switchboard_objects_hibernated").set(stats.hibernated_objects as f64);
    metrics::gauge!("switchboard_object_sockets").set(stats.sockets as f64);
    metrics::counter!("switchboard_object_wakes_total").absolute(stats.wakes);
    metrics::counter!("switchboard_object_hibernations_total").absolute(stats.hibernations);
    metrics::counter!("switchboard_object_evictions_total").absolute(stats.evictions);
    metrics::counter!("switchboard_auto_responses_total").absolute(stats.auto_responses);
    metrics::counter!("switchboard_alarms_fired_total").absolute(stats.alarms_fired);
    metrics::counter!("switchboard_storage_commits_total").absolute(stats.commits);
    metrics::counter!("switchboard_storage_commit_failures_total").absolute(stats.commit_failures);
    metrics::counter!("switchboard_hook_failures_total").absolute(stats.hook_failures);
    metrics::gauge!("switchboard_outbox_depth").set(stats.outbox_depth as f64);
    metrics::gauge!("switchboard_outbox_oldest_age_seconds").set(stats.outbox_oldest_age_ms as f64 / 1000.0);
    metrics::counter!("switchboard_effects_succeeded_total").absolute(stats.effects_succeeded);
    metrics::counter!("switchboard_effect_attempts_failed_total").absolute(stats.effect_attempts_failed);
    metrics::gauge!("switchboard_topics").set(stats.topics as f64);
}
