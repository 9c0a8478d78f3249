//! The load generator behind `switchboard bench`: scenarios that load a Switchboard server (or
//! this crate's baseline server) through its public wire protocols, as any client would, and
//! report what it measured.
//!
//! Each scenario shows progress on stderr and prints exactly one JSON line on stdout (or, with
//! `--format table`, a table). [`measure`] returns the same report to a caller in-process.
//! Load goes only to loopback addresses unless `--allow-remote` says otherwise.

pub mod baseline;
mod client;
mod latency;
mod probe;
mod report;
pub mod scenario;
pub mod simulate;
mod target;
mod wire;

pub use report::{Format, Report};
pub use target::CommonArgs;
pub use wire::ObjectKind;

/// `switchboard bench <scenario> [flags]`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// What to measure.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Broadcast fan-out: objects × subscribers, an open-loop publisher; deliveries, losses,
    /// publish→deliver latency, server CPU per delivery.
    Fanout(scenario::fanout::FanoutArgs),
    /// Fan-out with the publish rate raised step by step: the highest rate that holds.
    Ramp(scenario::ramp::RampArgs),
    /// Many idle sockets with periodic pings: server memory per socket, awake and hibernated.
    Idle(scenario::idle::IdleArgs),
    /// Storage-bound updates from concurrent clients: durable writes per second and latency.
    Durable(scenario::durable::DurableArgs),
    /// Hibernated objects woken by a socket message: wake-up latency against an awake object.
    Wake(scenario::wake::WakeArgs),
    /// Topics through the chat example: one room × many subscribers, or many rooms × one;
    /// deliveries, latency, server CPU per delivery, memory per subscriber.
    Topics(scenario::chat::TopicsArgs),
    /// A client that was away catches up from the room's history: time to recover the missed.
    Recovery(scenario::chat::RecoveryArgs),
    /// Durable effects: chat messages POSTed to a webhook this bench serves; effects per second.
    Effects(scenario::chat::EffectsArgs),
    /// Rooms: events POSTed to `/api/broadcast`, delivered to JWT sockets in one room or one
    /// room each; deliveries, latency, server CPU per delivery, memory per connection.
    Rooms(scenario::rooms::RoomsArgs),
    /// Publish API requests per second, closed loop, into a room with history.
    RoomsPublish(scenario::rooms::PublishArgs),
    /// A rooms client that was away resubscribes with its offset: time to recover the missed.
    RoomsRecovery(scenario::rooms::RecoveryArgs),
    /// RFID readers (PROTOCOLS.md §1): memory per connected and hibernated reader, and durable
    /// scans per second acknowledged; live counter sockets in the same run as the baseline.
    Devices(scenario::devices::DevicesArgs),
    /// The kernel's floor: one write() of a frame per socket at the fan-out's shape and rate,
    /// from a thread that does nothing else; CPU per delivery to compare fan-out rows with.
    Floor(scenario::floor::FloorArgs),
    /// The kiosk's Socket.IO sessions (websocket or polling): server memory per idle session,
    /// and scans broadcast to every session, deliveries per server CPU-second.
    Socketio(scenario::socketio::SocketIoArgs),
    /// A minimal broadcast server on the same WebSocket library, to compare fan-out against.
    BaselineServer(baseline::BaselineArgs),
}

/// Runs a scenario and prints its report on stdout (the baseline server serves until stopped).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Scenario::BaselineServer(server) = args.scenario {
        return baseline::run(server).await;
    }
    let format = match &args.scenario {
        Scenario::Fanout(a) => a.common.format,
        Scenario::Ramp(a) => a.common.format,
        Scenario::Idle(a) => a.common.format,
        Scenario::Durable(a) => a.common.format,
        Scenario::Wake(a) => a.common.format,
        Scenario::Topics(a) => a.common.format,
        Scenario::Recovery(a) => a.common.format,
        Scenario::Effects(a) => a.common.format,
        Scenario::Rooms(a) => a.rooms.common.format,
        Scenario::RoomsPublish(a) => a.rooms.common.format,
        Scenario::RoomsRecovery(a) => a.rooms.common.format,
        Scenario::Devices(a) => a.common.format,
        Scenario::Floor(a) => a.format,
        Scenario::Socketio(a) => a.common.format,
        Scenario::BaselineServer(_) => unreachable!("served above"),
    };
    let report = measure(args).await?;
    println!("{}", report.render(format));
    Ok(())
}

/// Runs a load scenario and returns its report without printing it.
pub async fn measure(args: BenchArgs) -> anyhow::Result<Report> {
    match args.scenario {
        Scenario::Fanout(a) => scenario::fanout::run(a).await,
        Scenario::Ramp(a) => scenario::ramp::run(a).await,
        Scenario::Idle(a) => scenario::idle::run(a).await,
        Scenario::Durable(a) => scenario::durable::run(a).await,
        Scenario::Wake(a) => scenario::wake::run(a).await,
        Scenario::Topics(a) => scenario::chat::topics(a).await,
        Scenario::Recovery(a) => scenario::chat::recovery(a).await,
        Scenario::Effects(a) => scenario::chat::effects(a).await,
        Scenario::Rooms(a) => scenario::rooms::fanout(a).await,
        Scenario::RoomsPublish(a) => scenario::rooms::publish_rate(a).await,
        Scenario::RoomsRecovery(a) => scenario::rooms::recovery(a).await,
        Scenario::Devices(a) => scenario::devices::run(a).await,
        Scenario::Floor(a) => scenario::floor::run(a).await,
        Scenario::Socketio(a) => scenario::socketio::run(a).await,
        Scenario::BaselineServer(_) => {
            anyhow::bail!("baseline-server is a server, not a measurement: use `run`, or `baseline::serve`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn every_scenario_parses_with_its_defaults() {
        for scenario in [
            "fanout",
            "ramp",
            "idle",
            "durable",
            "wake",
            "topics",
            "recovery",
            "effects",
            "rooms",
            "rooms-publish",
            "rooms-recovery",
            "devices",
            "socketio",
            "baseline-server",
        ] {
            Cli::try_parse_from(["bench", scenario]).unwrap_or_else(|e| panic!("{scenario}: {e}"));
        }
        let cli = Cli::try_parse_from([
            "bench",
            "fanout",
            "--url",
            "http://127.0.0.1:1",
            "--pid",
            "1",
            "--url",
            "http://127.0.0.1:2",
            "--kind",
            "counter",
            "--format",
            "table",
        ])
        .unwrap();
        let Scenario::Fanout(f) = cli.bench.scenario else {
            panic!("fanout")
        };
        assert_eq!(f.common.urls.len(), 2);
        assert_eq!((f.load.kind, f.common.format), (ObjectKind::Counter, Format::Table));
    }
}
