//! The `wardseal-collector` binary: argument parsing and wiring; the logic is in the
//! library.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use wardseal_collector::config::load_config;
use wardseal_collector::daemon::{self, Daemon};
use wardseal_net::logging::LogFormat;

/// The ward collector: mTLS ingest, rule and replay checks, durable spool, card-signed
/// batches, delivery to storage.
#[derive(Parser)]
#[command(version)]
struct Arguments {
    /// Log lines for a person (`human`) or one JSON object per line (`json`); the level
    /// comes from `RUST_LOG` (default `info`).
    #[arg(long, global = true, env = wardseal_net::logging::FORMAT_VARIABLE, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the collector until SIGTERM or Ctrl-C (SIGHUP reloads certificates and CRLs).
    Run {
        /// The configuration file.
        #[arg(long, env = "WARDSEAL_COLLECTOR_CONFIG")]
        config: PathBuf,
    },
    /// Loads and checks the configuration, its TLS material and cards, then exits.
    CheckConfig {
        /// The configuration file.
        #[arg(long, env = "WARDSEAL_COLLECTOR_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    wardseal_net::logging::init(arguments.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match arguments.command {
            Command::CheckConfig { config } => check_config(&config),
            Command::Run { config } => run(&config).await,
        }
    })
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load_config(path, std::env::vars())?;
    wardseal_net::server::ServerTls::load(daemon::tls_settings(&config)?)
        .context("the TLS material does not load")?;
    daemon::storage_client(&config).context("the storage client configuration does not load")?;
    let cards = daemon::open_cards(&config).context("a configured card does not open")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "configuration OK: ward {}, listening on {}, spool {}, storage {}, {} card(s)",
        config.ward(),
        config.collector.listen,
        config.spool.path.display(),
        config.storage.url,
        cards.len()
    )?;
    Ok(())
}

async fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load_config(path, std::env::vars())?;
    let ledger = daemon::open_ledger(&config)?;
    let cards = daemon::open_cards(&config)?;
    let collector = Daemon::start(&config, ledger, cards).await?;
    tracing::info!(
        ward = %config.ward(),
        address = %collector.local_addr(),
        "wardseal-collector listening"
    );
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    loop {
        tokio::select! {
            _ = hangup.recv() => match collector.reload() {
                Ok(()) => tracing::info!("reloaded certificates and CRLs"),
                Err(error) => tracing::error!(%error, "reload failed, keeping the previous TLS configuration"),
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("draining");
    collector.shutdown().await;
    Ok(())
}
