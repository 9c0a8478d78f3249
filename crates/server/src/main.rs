//! The `switchboard` binary: parse flags, set up logging, bind, and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use switchboard_server::cli::{Cli, Command};
use tokio_util::sync::CancellationToken;

/// jemalloc returns freed memory to the system (so an idle server shrinks when its objects
/// hibernate) and reports its live heap, which `/metrics` publishes.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig(args) => match args.load() {
            Ok(config) => {
                print!("{}", config.to_masked_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard: invalid configuration: {e}");
                ExitCode::from(2)
            }
        },
        Command::Connect(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            match runtime.block_on(switchboard_server::connect::run(args)) {
                Ok(ended) => ExitCode::from(ended.exit_code()),
                Err(e) => {
                    eprintln!("switchboard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            match runtime.block_on(switchboard_bench::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchboard bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token(args) => match switchboard_server::token::mint(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard token: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Simulate(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            match runtime.block_on(switchboard_bench::simulate::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchboard simulate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Nfc(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            match runtime.block_on(switchboard_server::nfc::run(args)) {
                Ok(answer) => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard nfc: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(args) => {
            let config = match args.load() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("switchboard: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            switchboard_server::telemetry::init_logging(config.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchboard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: switchboard_server::config::Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = CancellationToken::new();
    // A file-size limit (`ulimit -f`) reached must fail the write with a clear error (storage
    // answers 503 until space returns), not kill the process: catching SIGXFSZ does that.
    let _file_too_large = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))?;
    let server = switchboard_server::start(config, listener, shutdown.clone()).await?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
    server.wait().await
}
