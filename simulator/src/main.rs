//! `wardseal-sim`: the demo, a ward prepared in a directory, and load against a collector.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wardseal_collector::client::Endpoint;
use wardseal_sim::fleet::Fleet;
use wardseal_sim::kinds::DeviceKind;
use wardseal_sim::ward::{RunningWard, WardFiles, WardOptions, load_devices, softhsm_store};

/// Set in the demo's re-executed child, whose environment names the ward's SoftHSM store.
const CHILD_ENV: &str = "WARDSEAL_SIM_DEMO_CHILD";

#[derive(Debug, Parser)]
#[command(
    version,
    about = "wardseal's simulated devices, load modes and demo ward"
)]
struct Cli {
    /// Log lines for a person (`human`) or one JSON object per line (`json`); the level
    /// comes from `RUST_LOG` (default `info`).
    #[arg(long, global = true, env = wardseal_net::logging::FORMAT_VARIABLE, default_value = "human")]
    log_format: wardseal_net::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring up a whole ward on loopback, run the devices and the attacks, print what
    /// happened, verify a proof; exit 0 when every expectation held.
    Demo {
        /// Leave the ward up (until Ctrl-C) and print how to reach it.
        #[arg(long)]
        keep_running: bool,
        /// The ward directory (a new temporary one by default, removed at the end unless
        /// --keep-running).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write a ward to a directory (CA, certificates, cards, contracts, configs) without
    /// starting it.
    Prepare {
        /// The directory.
        #[arg(long)]
        dir: PathBuf,
        /// Patients admitted.
        #[arg(long, default_value_t = 2)]
        patients: usize,
    },
    /// Drive a running collector with simulated devices.
    Run {
        /// steady, burst or soak.
        #[arg(long, value_enum, default_value_t = Mode::Steady)]
        mode: Mode,
        /// A ward directory (its collector, CA bundle and devices).
        #[arg(long, conflicts_with_all = ["collector", "ca", "devices"])]
        ward: Option<PathBuf>,
        /// The collector's URL (https://HOST:PORT), with --ca and --devices.
        #[arg(long, requires_all = ["ca", "devices"])]
        collector: Option<String>,
        /// The hospital CA bundle (PEM).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// A directory holding devices.json (as `prepare` writes in DIR/devices).
        #[arg(long)]
        devices: Option<PathBuf>,
        /// Only devices of these kinds (comma-separated).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<DeviceKind>,
        /// Seconds to run (steady, soak).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Multiplier of the devices' nominal rates (steady, soak).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Simultaneous devices (burst).
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Seconds between soak reports.
        #[arg(long, default_value_t = 60)]
        report_every: u64,
        /// Seed of the devices' values.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Steady,
    Burst,
    Soak,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        <Self as ValueEnum>::from_str(text, true)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    wardseal_net::logging::init(cli.log_format);
    if let Command::Demo { keep_running, dir } = &cli.command {
        // SoftHSM reads SOFTHSM2_CONF when first loaded: run the demo in a child whose
        // environment names the ward's store (changing our own would not be sound).
        if std::env::var_os(CHILD_ENV).is_none() {
            let temporary = dir.is_none();
            let dir = match dir {
                Some(dir) => dir.clone(),
                None => tempfile::Builder::new()
                    .prefix("wardseal-demo-")
                    .tempdir()
                    .context("create a temporary ward directory")?
                    .keep(),
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let conf = softhsm_store(&dir)?;
            let mut child = std::process::Command::new(
                std::env::current_exe().context("find this executable")?,
            );
            child.arg("demo").arg("--dir").arg(&dir).env(CHILD_ENV, "1");
            if *keep_running {
                child.arg("--keep-running");
            }
            if let Some(conf) = &conf {
                child.env(wardseal_softhsm::CONF_ENV, conf);
            }
            let status = runtime()?.block_on(async move {
                let mut child = tokio::process::Command::from(child)
                    .spawn()
                    .context("start the demo")?;
                loop {
                    tokio::select! {
                        status = child.wait() => break status.context("wait for the demo"),
                        // A Ctrl-C at the terminal reaches the child too; an interrupt
                        // sent to this process alone is passed on, so the child always
                        // stops gracefully (std has no signal API; `kill` is POSIX).
                        _ = tokio::signal::ctrl_c() => {
                            if let Some(id) = child.id() {
                                let _ = tokio::process::Command::new("kill")
                                    .args(["-s", "INT", &id.to_string()])
                                    .status()
                                    .await;
                            }
                        }
                    }
                }
            })?;
            // A ward in a directory the user did not name is not kept.
            if temporary && !keep_running {
                let _ = std::fs::remove_dir_all(&dir);
            }
            std::process::exit(status.code().unwrap_or(1));
        }
    }
    runtime()?.block_on(run(cli))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { keep_running, dir } => {
            let dir = dir.context("the demo child needs --dir")?;
            demo(dir, keep_running).await
        }
        Command::Prepare { dir, patients } => {
            let mut options = WardOptions::new(dir);
            options.patients = patients;
            let files = WardFiles::prepare(&options).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "ward {} prepared in {}: {} patients, {} devices\n  storage:   wardseal-storage {}\n  collector: wardseal-collector {}",
                files.ward,
                files.dir.display(),
                files.patients.len(),
                files.devices.len(),
                files.storage_args().join(" "),
                files.collector_args().join(" "),
            )?;
            Ok(())
        }
        Command::Run {
            mode,
            ward,
            collector,
            ca,
            devices,
            kinds,
            seconds,
            speed,
            count,
            report_every,
            seed,
        } => {
            let (endpoint, ca, devices) = match (ward, collector, ca, devices) {
                (Some(dir), ..) => {
                    let files = WardFiles::load(&dir)?;
                    (
                        Endpoint {
                            host: "127.0.0.1".into(),
                            port: files.collector_port,
                        },
                        files.ca_bundle.clone(),
                        wardseal_sim::fleet::ward_devices(&files, &kinds),
                    )
                }
                (None, Some(url), Some(ca), Some(dir)) => {
                    let devices = load_devices(&dir)?
                        .into_iter()
                        .filter(|d| kinds.is_empty() || kinds.contains(&d.kind))
                        .collect();
                    (endpoint(&url)?, ca, devices)
                }
                _ => bail!("give --ward DIR, or --collector URL --ca FILE --devices DIR"),
            };
            if devices.is_empty() {
                bail!("no devices to run (check --kinds)");
            }
            let mut fleet = Fleet::new(endpoint, &ca, &devices, seed)?;
            let duration = Duration::from_secs(seconds);
            let summary = match mode {
                Mode::Steady => {
                    let progress = indicatif::ProgressBar::new(seconds);
                    progress.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {elapsed}/{duration} {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    let ticker = progress.clone();
                    let ticking = tokio::spawn(async move {
                        let mut every = tokio::time::interval(Duration::from_secs(1));
                        every.tick().await;
                        loop {
                            every.tick().await;
                            ticker.inc(1);
                        }
                    });
                    let summary = fleet.steady(duration, speed, None).await;
                    ticking.abort();
                    progress.finish_and_clear();
                    summary
                }
                Mode::Burst => {
                    let progress = indicatif::ProgressBar::new_spinner();
                    progress
                        .set_message(format!("{count} devices connecting, then sending at once"));
                    progress.enable_steady_tick(Duration::from_millis(100));
                    let summary = fleet.burst(count).await;
                    progress.finish_and_clear();
                    summary
                }
                Mode::Soak => {
                    let period = Duration::from_secs(report_every);
                    fleet
                        .soak(duration, period, speed, |round| {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(
                                out,
                                "{}  accepted {}  rejected {}  no answer {}  p99 {:.1} ms",
                                wardseal_core::reading::Timestamp::now(),
                                round.accepted,
                                round.rejected_total(),
                                round.failed,
                                round.percentile(99.0).unwrap_or_default().as_secs_f64() * 1e3
                            );
                        })
                        .await
                }
            };
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{mode:?} run, {} devices:\n{}",
                devices.len(),
                summary.table()
            )?;
            if summary.failed > 0 {
                bail!("{} requests got no answer", summary.failed);
            }
            Ok(())
        }
    }
}

fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    url.parse()
        .context("the collector URL must look like https://HOST:PORT")
}

async fn demo(dir: PathBuf, keep_running: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut options = WardOptions::new(&dir);
    options.kinds = DeviceKind::ALL.to_vec();
    let files = WardFiles::prepare(&options)
        .await
        .context("preparing the ward")?;
    let ward = RunningWard::start(&files)
        .await
        .context("starting storage and the collector")?;
    let mut out = std::io::stdout().lock();
    let outcome = wardseal_sim::demo::run(&ward, &mut out).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            ward.shutdown().await;
            return Err(error).context("the demo stopped");
        }
    };
    writeln!(
        out,
        "\ndemo ran in {:.1} s",
        started.elapsed().as_secs_f64()
    )?;
    if keep_running {
        writeln!(out, "{}", wardseal_sim::demo::instructions(&files))?;
        drop(out);
        let _ = tokio::signal::ctrl_c().await;
        let mut out = std::io::stdout().lock();
        writeln!(out, "stopping the ward")?;
    } else {
        drop(out);
    }
    ward.shutdown().await;
    if !outcome.failures.is_empty() {
        bail!(
            "{} expectation(s) failed:\n  {}",
            outcome.failures.len(),
            outcome.failures.join("\n  ")
        );
    }
    Ok(())
}
