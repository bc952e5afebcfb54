//! The `wardseal-collector` binary: argument parsing and wiring; the logic is in the
//! library.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use wardseal_collector::config::load_config;
use wardseal_collector::daemon::{self, Daemon};
use wardseal_collector::quarantine::QuarantineAdmin;
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
    /// Batches storage refused for good, kept in the spool (works with the daemon running).
    Quarantine {
        /// The configuration file (names the spool).
        #[arg(long, env = "WARDSEAL_COLLECTOR_CONFIG")]
        config: PathBuf,
        /// Who acts (recorded in the quarantine log); default: the login name.
        #[arg(long, global = true)]
        by: Option<String>,
        #[command(subcommand)]
        action: QuarantineCommand,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Lists quarantined batches (JSON, one per line).
    List,
    /// Shows one batch whole: refusal, submission, action log (JSON).
    Show {
        /// Its id (from `list`).
        id: i64,
    },
    /// Marks a batch for the running daemon to send again, after a fix.
    Resubmit {
        /// Its id.
        id: i64,
    },
    /// Resolves a batch without delivering it; its data stays in the spool.
    Resolve {
        /// Its id.
        id: i64,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
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
            Command::Quarantine { config, by, action } => quarantine(&config, by, action),
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

fn quarantine(
    path: &std::path::Path,
    by: Option<String>,
    action: QuarantineCommand,
) -> anyhow::Result<()> {
    let config = load_config(path, std::env::vars())?;
    let mut admin = QuarantineAdmin::open(&config.spool.path)
        .with_context(|| format!("cannot open the spool {}", config.spool.path.display()))?;
    let actor = by
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "admin".to_owned());
    let mut out = std::io::stdout().lock();
    match action {
        QuarantineCommand::List => {
            for batch in admin.list()? {
                writeln!(out, "{}", serde_json::to_string(&batch)?)?;
            }
        }
        QuarantineCommand::Show { id } => {
            writeln!(out, "{}", serde_json::to_string_pretty(&admin.show(id)?)?)?;
        }
        QuarantineCommand::Resubmit { id } => {
            admin.resubmit(id, &actor)?;
            writeln!(out, "batch {id} marked for resubmission by {actor}")?;
        }
        QuarantineCommand::Resolve { id, reason } => {
            admin.resolve(id, &actor, &reason)?;
            writeln!(out, "batch {id} resolved by {actor}: {reason}")?;
        }
    }
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
