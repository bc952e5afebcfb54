//! `wardseal-bench-report`: runs the workspace's benches and regenerates BENCHMARKS.md and
//! docs/latency-vs-devices.svg. Usually run as `scripts/bench-report`.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use wardseal_bench_report::{
    self as report, CHART_PATH, COMPONENTS, Document, LoadPoints, Outcome, RunOptions,
};

/// Runs the benches, takes medians over several runs and rewrites the sections of
/// BENCHMARKS.md for the components it ran; the other sections and the notes are kept.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Runs per bench; figures are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Components to run, comma-separated (core, card, pki, contracts, collector,
    /// storage); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The document to rewrite, relative to the workspace root.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// A run taking longer than this many minutes is stopped and counted as failed.
    #[arg(long, default_value_t = 60)]
    timeout_minutes: u64,
    /// Do not run anything: redraw the chart and rewrite the header from the document.
    #[arg(long)]
    render_only: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The binary lives in bench-report/; the workspace root is its parent.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench-report crate has no parent directory")?
        .to_owned();
    for key in &args.only {
        if !COMPONENTS.iter().any(|component| component.key == key) {
            let known: Vec<&str> = COMPONENTS.iter().map(|component| component.key).collect();
            bail!("--only: no component `{key}`; known: {}", known.join(", "));
        }
    }
    let out = root.join(&args.out);
    let mut document = if out.exists() {
        Document::parse(&report::read(&out)?, &out)?
    } else {
        Document::default()
    };

    let scratch = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("bench-report");
    let options = RunOptions {
        root: root.clone(),
        runs: usize::from(args.runs),
        timeout: Duration::from_secs(args.timeout_minutes * 60),
        scratch,
    };
    let mut failures = Vec::new();
    let selected = COMPONENTS.iter().filter(|component| {
        args.only.is_empty() || args.only.iter().any(|key| key == component.key)
    });
    for component in selected.filter(|_| !args.render_only) {
        let body = match report::run_component(component, &options) {
            Outcome::Measured(measurement) => report::render_section(component, &measurement)?,
            Outcome::Failed { date, error } => {
                let body = report::render_failure(
                    component,
                    &date,
                    &error,
                    document.section(component.key),
                );
                failures.push(error);
                body
            }
        };
        document.replace(component.key, body);
    }

    report::write(&out, &document.render(COMPONENTS))?;
    let points = LoadPoints::from_figures(&report::section_figures(
        document.section("collector").unwrap_or_default(),
    ));
    report::write(&root.join(CHART_PATH), &report::render_chart(&points)?)?;

    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "wrote {} and {CHART_PATH}", out.display())?;
    for failure in &failures {
        writeln!(stderr, "error: {failure}")?;
    }
    if !failures.is_empty() {
        bail!("{} bench(es) failed; their sections say so", failures.len());
    }
    Ok(())
}
