//! `ramp`: the fan-out load with its publish rate raised step by step until deliveries fall
//! behind (some never arrive within the drain timeout) or p99 latency passes a bound. Reports
//! the highest rate that held, its latency, and a confirming step at half of it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client;
use crate::report::Report;
use crate::scenario::fanout::{Audience, LoadArgs, Phase};
use crate::scenario::merge;
use crate::target::{CommonArgs, Target};

/// Flags of `ramp`.
#[derive(clap::Args, Debug, Clone)]
pub struct RampArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Publish rate per object of the first step.
    #[arg(long, default_value_t = 10.0)]
    pub start_rate: f64,
    /// Each step's rate is the previous one's times this.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Highest rate per object tried.
    #[arg(long, default_value_t = 100_000.0)]
    pub max_rate: f64,
    /// Seconds each step publishes.
    #[arg(long, default_value_t = 3.0)]
    pub step_duration: f64,
    /// A step whose publish → deliver p99 passes this many milliseconds has failed.
    #[arg(long, default_value_t = 5.0)]
    pub p99_bound_ms: f64,
}

/// Most steps one ramp takes.
const MAX_STEPS: usize = 40;

/// Runs the ramp against every server in `--url`, one after the other.
pub async fn run(args: RampArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.start_rate > 0.0 && args.factor > 1.0 && args.step_duration > 0.0,
        "--start-rate and --step-duration must be positive and --factor above 1"
    );
    let rates = rates(args.start_rate, args.factor, args.max_rate);
    let mut plan: Vec<(f64, f64)> = rates.iter().map(|r| (*r, args.step_duration)).collect();
    plan.push((
        rates.last().copied().unwrap_or(args.start_rate) / 2.0,
        args.step_duration,
    ));
    let http = client::http();
    let targets = Target::all(&args.common, &http).await?;
    let mut results = Vec::new();
    for target in &targets {
        let audience = Audience::connect(&http, target, &args.load, &args.common.secret, &plan).await?;
        let mut steps = Vec::new();
        let mut best: Option<(f64, Phase)> = None;
        let mut stopped = format!("reached --max-rate {}", args.max_rate);
        for &rate in &rates {
            let phase = audience.phase(&http, rate, args.step_duration).await;
            let failure = judge(&phase, args.p99_bound_ms);
            steps.push(step(rate, &phase, failure.as_deref()));
            match failure {
                None => best = Some((rate, phase)),
                Some(why) => {
                    stopped = format!("at {rate}/s per object: {why}");
                    break;
                }
            }
        }
        let half = match &best {
            Some((rate, _)) => {
                // Let whatever the failed step left queued drain before the confirming step.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let phase = audience.phase(&http, rate / 2.0, args.step_duration).await;
                Some(step(rate / 2.0, &phase, judge(&phase, args.p99_bound_ms).as_deref()))
            }
            None => None,
        };
        let described = audience.describe();
        audience.close().await;
        results.push(merge(
            merge(target.describe(), described),
            json!({
                "max_sustainable_rate_per_object": best.as_ref().map(|(r, _)| r),
                "max_sustainable_deliveries_per_s": best.as_ref().map(|(_, p)| p.deliveries_per_s),
                "latency_at_max": best.as_ref().map(|(_, p)| &p.latency),
                "deliveries_per_cpu_s_at_max": best.as_ref().map(|(_, p)| p.to_json()["deliveries_per_cpu_s"].clone()),
                "stopped": stopped,
                "at_half_max": half,
                "steps": steps,
            }),
        ));
    }
    let params = merge(
        args.load.params(),
        json!({
            "start_rate": args.start_rate,
            "factor": args.factor,
            "max_rate": args.max_rate,
            "step_duration_s": args.step_duration,
            "p99_bound_ms": args.p99_bound_ms,
            "drain_timeout_s": args.load.drain_timeout,
        }),
    );
    Ok(Report::new("ramp", params, results))
}

/// The rates of the steps: `start`, `start × factor`, … up to `max`.
fn rates(start: f64, factor: f64, max: f64) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut rate = start;
    while rate <= max && rates.len() < MAX_STEPS {
        rates.push((rate * 100.0).round() / 100.0);
        rate *= factor;
    }
    rates
}

/// Why a step failed, or `None` if it held.
fn judge(phase: &Phase, p99_bound_ms: f64) -> Option<String> {
    if !phase.complete() {
        return Some(format!(
            "{} of {} deliveries missing, {} publish errors{}",
            phase.lost,
            phase.expected,
            phase.publish_errors,
            phase
                .first_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    (phase.latency.p99_ms > p99_bound_ms)
        .then(|| format!("p99 {} ms over the bound {p99_bound_ms} ms", phase.latency.p99_ms))
}

fn step(rate: f64, phase: &Phase, failure: Option<&str>) -> Value {
    let all = phase.to_json();
    json!({
        "rate_per_object": rate,
        "deliveries_per_s": phase.deliveries_per_s,
        "lost": phase.lost,
        "p50_ms": phase.latency.p50_ms,
        "p99_ms": phase.latency.p99_ms,
        "max_ms": phase.latency.max_ms,
        "server_cpu_s": phase.server_cpu_s,
        "deliveries_per_cpu_s": all["deliveries_per_cpu_s"],
        "client_cpu_s": phase.client_cpu_s,
        "held": failure.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_grow_geometrically_up_to_the_cap() {
        assert_eq!(rates(10.0, 2.0, 80.0), vec![10.0, 20.0, 40.0, 80.0]);
        assert_eq!(rates(1.0, 1.01, 1e9).len(), MAX_STEPS);
        assert!(rates(10.0, 2.0, 5.0).is_empty());
    }
}
