//! wardseal's benchmark report: BENCHMARKS.md from the benchmarks' own output. The
//! `wardseal-bench-report` binary (usually run as `scripts/bench-report`) runs the
//! workspace's benches and rewrites the document and its chart with this library.
//!
//! Every benchmark in the workspace prints, besides its human-readable report, one line
//! per headline figure on stdout:
//!
//! ```text
//! BENCH <name> <value> <unit>
//! ```
//!
//! `name` is lowercase snake_case and unique within the bench, `value` a plain decimal
//! number, `unit` one word (`s`, `ms`, `gas`, `readings/s`). The core bench is driven by
//! criterion, which keeps its estimates to itself: for it the report reads criterion's
//! `estimates.json` files (the median's point estimate) from a criterion home directory
//! made fresh for each run, and names them as the other benches would ([`Source::Criterion`]).
//!
//! [`run_component`] runs one bench several times ([`Measurement`]); [`summarize`] takes
//! medians; [`render_section`] writes the component's section of BENCHMARKS.md, which
//! sits between `<!-- generated: KEY -->` and `<!-- end generated: KEY -->` lines so that
//! [`Document::replace`] swaps only the sections that were re-run. Everything below
//! [`NOTES_MARKER`] is hand-written and kept verbatim. [`render_chart`] draws the seed
//! paper's load test beside ours as SVG, from the figures recorded in the collector's
//! section (an HTML comment `<!-- figures: name=value ... -->`), so the chart can be
//! redrawn without re-running the load test.
//!
//! ```
//! use wardseal_bench_report::{parse_bench_lines, summarize};
//!
//! let run = parse_bench_lines("merkle root\nBENCH merkle_1m_root_ms 140.2 ms\n")?;
//! let summary = summarize(&[run])?;
//! assert_eq!(summary[0].median, 140.2);
//! # Ok::<(), wardseal_bench_report::Error>(())
//! ```

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The line below which BENCHMARKS.md is hand-written; the tool keeps it verbatim.
pub const NOTES_MARKER: &str = "<!-- notes: kept by wardseal-bench-report -->";

/// Where the chart of latency against simultaneous devices is written, from the root.
pub const CHART_PATH: &str = "docs/latency-vs-devices.svg";

/// The seed paper's load test (Kul et al. 2019): seconds until all of N simultaneous
/// requests were answered, for N = 10, 100 and 1000.
pub const PAPER_LOAD: [(u32, f64); 3] = [(10, 5.72), (100, 10.81), (1000, 30.25)];

/// What went wrong while measuring or writing the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `BENCH` line that does not read `BENCH <name> <value> <unit>`.
    #[error(
        "output line {line}: {problem}; expected `BENCH <name> <value> <unit>` with a \
         snake_case name and a plain finite number, got {text:?}"
    )]
    MalformedLine {
        /// 1-based line number in the bench's stdout.
        line: usize,
        /// The line as printed.
        text: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The same figure printed twice in one run.
    #[error("figure `{name}` printed twice in one run; each BENCH name must be unique")]
    DuplicateFigure {
        /// The repeated name.
        name: String,
    },
    /// The same figure reported in two units by different runs.
    #[error("figure `{name}` is in `{first}` in one run and `{second}` in another")]
    UnitMismatch {
        /// The figure.
        name: String,
        /// The unit of the first run that reported it.
        first: String,
        /// The other unit.
        second: String,
    },
    /// A criterion estimates file that is missing or not criterion's JSON.
    #[error("criterion estimates {path}: {problem}")]
    CriterionEstimates {
        /// The estimates file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// BENCHMARKS.md has no notes marker: the tool will not overwrite hand-written text
    /// it cannot tell apart from its own.
    #[error(
        "{path} has no line `{NOTES_MARKER}`; add it above the hand-written notes so they \
         are kept, then run again"
    )]
    MissingNotesMarker {
        /// The document.
        path: PathBuf,
    },
    /// A generated section that opens and does not close (or the reverse).
    #[error(
        "generated section `{key}` is not closed: expected `<!-- end generated: {key} -->` \
         after `<!-- generated: {key} -->` and before the notes"
    )]
    UnbalancedSection {
        /// The section's key.
        key: String,
    },
    /// The bench command could not be run or did not succeed.
    #[error("bench `{component}` ({command}): {problem}")]
    BenchFailed {
        /// The component key.
        component: String,
        /// The command as run.
        command: String,
        /// Why it failed.
        problem: String,
    },
    /// Drawing the chart failed.
    #[error("drawing the latency chart: {0}")]
    Chart(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One figure a bench printed.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// snake_case name, unique within the bench.
    pub name: String,
    /// The value.
    pub value: f64,
    /// The unit, one word.
    pub unit: String,
}

/// Reads the `BENCH` lines of a bench's stdout; other lines are ignored.
///
/// A line starting with the word `BENCH` must be well-formed: a bench that means to
/// report a figure and garbles it is an error, not a figure silently left out.
pub fn parse_bench_lines(stdout: &str) -> Result<Vec<Figure>, Error> {
    let mut figures: Vec<Figure> = Vec::new();
    for (index, text) in stdout.lines().enumerate() {
        let mut words = text.split_whitespace();
        if words.next() != Some("BENCH") {
            continue;
        }
        let malformed = |problem| Error::MalformedLine {
            line: index + 1,
            text: text.to_owned(),
            problem,
        };
        let (Some(name), Some(value), Some(unit), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(malformed("not four words"));
        };
        if !is_snake_case(name) {
            return Err(malformed("the name is not lowercase snake_case"));
        }
        let value: f64 = value
            .parse()
            .map_err(|_| malformed("the value is not a number"))?;
        if !value.is_finite() {
            return Err(malformed("the value is not finite"));
        }
        if figures.iter().any(|figure| figure.name == name) {
            return Err(Error::DuplicateFigure { name: name.into() });
        }
        figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.into(),
        });
    }
    Ok(figures)
}

fn is_snake_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// One figure over several runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The figure's name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Median over the runs that reported it (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many runs reported it.
    pub count: usize,
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(middle).copied(),
        _ => Some((sorted.get(middle - 1)? + sorted.get(middle)?) / 2.0),
    }
}

/// Medians, minima and maxima per figure over runs, in the order the figures first appear.
pub fn summarize(runs: &[Vec<Figure>]) -> Result<Vec<Summary>, Error> {
    let mut order: Vec<(&str, &str)> = Vec::new();
    let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for figure in runs.iter().flatten() {
        match order.iter().find(|(name, _)| *name == figure.name) {
            Some((_, unit)) if *unit != figure.unit => {
                return Err(Error::UnitMismatch {
                    name: figure.name.clone(),
                    first: (*unit).to_owned(),
                    second: figure.unit.clone(),
                });
            }
            Some(_) => {}
            None => order.push((&figure.name, &figure.unit)),
        }
        values.entry(&figure.name).or_default().push(figure.value);
    }
    Ok(order
        .into_iter()
        .filter_map(|(name, unit)| {
            let values = values.get(name)?;
            Some(Summary {
                name: name.to_owned(),
                unit: unit.to_owned(),
                median: median(values)?,
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                count: values.len(),
            })
        })
        .collect())
}

/// A time unit for criterion estimates, which are in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Nanoseconds.
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
}

impl TimeUnit {
    fn symbol(self) -> &'static str {
        match self {
            Self::Nanoseconds => "ns",
            Self::Microseconds => "µs",
            Self::Milliseconds => "ms",
        }
    }

    fn convert_nanoseconds(self, nanoseconds: f64) -> f64 {
        match self {
            Self::Nanoseconds => nanoseconds,
            Self::Microseconds => nanoseconds / 1e3,
            Self::Milliseconds => nanoseconds / 1e6,
        }
    }
}

/// A criterion benchmark read as a figure.
#[derive(Clone, Copy, Debug)]
pub struct CriterionFigure {
    /// Criterion's id, `group/function`, which is also its directory.
    pub id: &'static str,
    /// The figure's name, as a `BENCH` line would give it.
    pub name: &'static str,
    /// The unit to report it in.
    pub unit: TimeUnit,
}

/// The median's point estimate, in nanoseconds, from criterion's `estimates.json`.
pub fn parse_criterion_estimates(json: &str) -> Result<f64, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("not JSON ({error})"))?;
    let estimate = value
        .pointer("/median/point_estimate")
        .and_then(serde_json::Value::as_f64)
        .ok_or("no number at median.point_estimate")?;
    if estimate.is_finite() && estimate >= 0.0 {
        Ok(estimate)
    } else {
        Err(format!(
            "median.point_estimate is {estimate}, not a duration"
        ))
    }
}

/// The figures of one criterion run whose output went to `home` (`CRITERION_HOME`).
pub fn criterion_figures(home: &Path, specs: &[CriterionFigure]) -> Result<Vec<Figure>, Error> {
    specs
        .iter()
        .map(|spec| {
            let path = home.join(spec.id).join("new").join("estimates.json");
            let text =
                std::fs::read_to_string(&path).map_err(|error| Error::CriterionEstimates {
                    path: path.clone(),
                    problem: format!("cannot be read ({error}); did the benchmark run?"),
                })?;
            let nanoseconds = parse_criterion_estimates(&text)
                .map_err(|problem| Error::CriterionEstimates { path, problem })?;
            Ok(Figure {
                name: spec.name.into(),
                value: spec.unit.convert_nanoseconds(nanoseconds),
                unit: spec.unit.symbol().into(),
            })
        })
        .collect()
}

/// Where a bench's figures come from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// `BENCH` lines on its stdout.
    Lines,
    /// Criterion's estimates files.
    Criterion(&'static [CriterionFigure]),
}

/// A figure the report expects from a component, with the words for its table row.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    /// The figure's name.
    pub name: &'static str,
    /// What it measures, for the table.
    pub label: &'static str,
}

/// One benchmarked component: how to run its bench and how to report it.
#[derive(Clone, Copy, Debug)]
pub struct Component {
    /// Short key for `--only` and the section markers.
    pub key: &'static str,
    /// Section heading.
    pub title: &'static str,
    /// Cargo package.
    pub package: &'static str,
    /// Bench target.
    pub bench: &'static str,
    /// Environment the bench is run with.
    pub env: &'static [(&'static str, &'static str)],
    /// A script run once before the bench (installs what it needs), from the root.
    pub setup: Option<&'static str>,
    /// Where the figures come from.
    pub source: Source,
    /// What is measured and how, one paragraph.
    pub about: &'static str,
    /// The figures the section's table lists, in order; figures a run prints beyond
    /// these are listed after them under their names.
    pub expected: &'static [Expected],
}

impl Component {
    /// The command as a person would type it.
    pub fn command(&self) -> String {
        let mut command = String::new();
        if let Some(setup) = self.setup {
            let _ = write!(command, "{setup} && ");
        }
        for (name, value) in self.env {
            let _ = write!(command, "{name}={value} ");
        }
        let _ = write!(
            command,
            "cargo bench -p {} --bench {}",
            self.package, self.bench
        );
        command
    }
}

const CORE_CRITERION: &[CriterionFigure] = &[
    criterion(
        "merkle/root_1m_leaves",
        "merkle_1m_root_ms",
        TimeUnit::Milliseconds,
    ),
    criterion(
        "merkle/tree_build_1m_leaves",
        "merkle_1m_tree_build_ms",
        TimeUnit::Milliseconds,
    ),
    criterion(
        "merkle/inclusion_proof_and_verify_1m",
        "inclusion_proof_verify_us",
        TimeUnit::Microseconds,
    ),
    criterion(
        "merkle/consistency_proof_and_verify_1m",
        "consistency_proof_verify_us",
        TimeUnit::Microseconds,
    ),
    criterion(
        "canonical/encode_vital",
        "encode_vital_ns",
        TimeUnit::Nanoseconds,
    ),
    criterion(
        "canonical/leaf_hash_vital",
        "leaf_hash_ns",
        TimeUnit::Nanoseconds,
    ),
    criterion(
        "canonical/decode_vital",
        "decode_vital_ns",
        TimeUnit::Nanoseconds,
    ),
    criterion(
        "canonical/encode_ecg_2500",
        "encode_ecg_us",
        TimeUnit::Microseconds,
    ),
    criterion(
        "canonical/leaf_hash_ecg_2500",
        "leaf_hash_ecg_us",
        TimeUnit::Microseconds,
    ),
    criterion(
        "canonical/decode_ecg_2500",
        "decode_ecg_us",
        TimeUnit::Microseconds,
    ),
    criterion(
        "canonical/json_parse_body_1000",
        "json_1000_body_us",
        TimeUnit::Microseconds,
    ),
    criterion(
        "canonical/batch_header_hash",
        "batch_header_hash_ns",
        TimeUnit::Nanoseconds,
    ),
];

const fn criterion(id: &'static str, name: &'static str, unit: TimeUnit) -> CriterionFigure {
    CriterionFigure { id, name, unit }
}

const fn expect(name: &'static str, label: &'static str) -> Expected {
    Expected { name, label }
}

/// The workspace's benches, in the order of BENCHMARKS.md.
pub const COMPONENTS: &[Component] = &[
    Component {
        key: "core",
        title: "wardseal-core: Merkle trees, canonical encoding, the JSON front door",
        package: "wardseal-core",
        bench: "core",
        env: &[],
        setup: None,
        source: Source::Criterion(CORE_CRITERION),
        about: "Criterion groups `merkle` (1,000,000-leaf RFC 9162 trees) and `canonical` \
                (a 45-byte vital-sign reading, a 10 kB ECG block of 2,500 samples, a device \
                body of 1,000 heart-rate readings). Each figure is the median point estimate \
                from criterion's `estimates.json` of that run.",
        expected: &[
            expect(
                "merkle_1m_root_ms",
                "root of 1,000,000 leaf hashes (`merkle::root`)",
            ),
            expect(
                "merkle_1m_tree_build_ms",
                "build a 1,000,000-leaf `MerkleTree` (keeps every complete subtree)",
            ),
            expect(
                "inclusion_proof_verify_us",
                "inclusion proof + verification, 1 M-leaf tree",
            ),
            expect(
                "consistency_proof_verify_us",
                "consistency proof + prefix root + verification, 1 M-leaf tree",
            ),
            expect("encode_vital_ns", "encode a vital-sign reading (45 bytes)"),
            expect(
                "leaf_hash_ns",
                "leaf hash of a vital-sign reading (encode + SHA-256)",
            ),
            expect("decode_vital_ns", "decode (strict) a vital-sign reading"),
            expect(
                "encode_ecg_us",
                "encode an ECG block of 2,500 samples (10 kB)",
            ),
            expect("leaf_hash_ecg_us", "leaf hash of the ECG block"),
            expect("decode_ecg_us", "decode (strict) the ECG block"),
            expect(
                "json_1000_body_us",
                "parse a device body of 1,000 heart-rate readings (JSON)",
            ),
            expect(
                "batch_header_hash_ns",
                "batch header canonical bytes + SHA-256",
            ),
        ],
    },
    Component {
        key: "card",
        title: "wardseal-card: signing on a token",
        package: "wardseal-card",
        bench: "pkcs11",
        env: &[],
        setup: None,
        source: Source::Lines,
        about: "ECDSA P-256 over a software SHA-256 on a SoftHSM token in a private store, \
                3 s per figure; `openssl speed -seconds 3 ecdsap256` run by the bench in \
                the same process tree, for scale.",
        expected: &[
            expect(
                "pkcs11_raw_1_thread_sig_per_s",
                "raw cryptoki loop (`C_SignInit` + `C_Sign`), 1 thread",
            ),
            expect(
                "signer_raw_1_thread_sig_per_s",
                "`Pkcs11Signer`, raw r‖s, 1 thread",
            ),
            expect(
                "signer_der_1_thread_sig_per_s",
                "`Pkcs11Signer`, DER, 1 thread",
            ),
            expect(
                "pkcs11_raw_2_threads_sig_per_s",
                "raw cryptoki loop, 2 threads, a session each",
            ),
            expect(
                "signer_raw_2_threads_sig_per_s",
                "`Pkcs11Signer`, 2 threads (session pool)",
            ),
            expect(
                "openssl_ecdsap256_sign_per_s",
                "`openssl speed ecdsap256`, sign (software)",
            ),
            expect(
                "openssl_ecdsap256_verify_per_s",
                "`openssl speed ecdsap256`, verify (software)",
            ),
        ],
    },
    Component {
        key: "pki",
        title: "wardseal-pki: certificate issuance",
        package: "wardseal-pki",
        bench: "batch",
        env: &[],
        setup: None,
        source: Source::Lines,
        about: "`wardseal-pki batch` for 10,000 devices with generated P-256 keys in one \
                SQLite transaction, against one `openssl req -x509 -CA …` process per \
                device with the same extensions (1,000 of them) in the same run. \
                Target: at least 2,000 certificates/s.",
        expected: &[
            expect(
                "certificates_per_s",
                "`wardseal-pki batch`, 10,000 devices, P-256 keys generated",
            ),
            expect(
                "openssl_per_s",
                "one `openssl req -x509 -CA …` process per device, same extensions",
            ),
            expect(
                "speedup_vs_openssl",
                "ratio, `wardseal-pki batch` over one openssl process per device",
            ),
        ],
    },
    Component {
        key: "contracts",
        title: "wardseal-contracts: anchoring vs one transaction per decision",
        package: "wardseal-contracts",
        bench: "anchoring",
        env: &[
            ("WARDSEAL_BENCH_DECISIONS", "1000"),
            ("WARDSEAL_BENCH_BLOCK_TIME", "5"),
        ],
        setup: Some("contracts/setup.sh"),
        source: Source::Lines,
        about: "1,000 rule decisions on anvil with 5 s, 30M-gas blocks (like the seed's \
                private chain): one `check` transaction per decision (the seed's design) \
                against deciding natively and anchoring the Merkle root of the decision log \
                once; then the native evaluator and the embedded chain.",
        expected: &[
            expect(
                "gas_per_decision_check_tx",
                "one `check` transaction per decision: gas per decision",
            ),
            expect(
                "gas_per_decision_anchor",
                "decided natively, one anchor for the Merkle root: gas per decision",
            ),
            expect(
                "check_tx_total_gas",
                "one transaction per decision: gas total",
            ),
            expect("anchor_total_gas", "one anchor: gas total"),
            expect("check_tx_wall_s", "one transaction per decision: wall time"),
            expect(
                "check_tx_blocks",
                "one transaction per decision: blocks used",
            ),
            expect(
                "check_tx_decisions_per_s",
                "one transaction per decision: decisions/s",
            ),
            expect("anchor_wall_s", "one anchor: wall time (until its block)"),
            expect(
                "block_capacity_check_txs",
                "per-decision transactions a 30M-gas block holds",
            ),
            expect(
                "native_decisions_per_s",
                "native evaluator (`RuleBook::check`), 1,000,000 decisions",
            ),
            expect(
                "embedded_check_calls_per_s",
                "embedded chain: contract `check` calls",
            ),
            expect(
                "embedded_anchors_per_s",
                "embedded chain: anchors, each fsynced",
            ),
            expect(
                "embedded_anchor_gas",
                "embedded chain: gas of a later anchor",
            ),
        ],
    },
    Component {
        key: "collector",
        title: "wardseal-collector: the seed paper's load test, and sustained ingest",
        package: "wardseal-collector",
        bench: "load",
        env: &[
            ("WARDSEAL_LOAD_N", "10,100,1000"),
            ("WARDSEAL_LOAD_SECONDS", "5"),
        ],
        setup: None,
        source: Source::Lines,
        about: "A whole ward on this machine driven by simulated devices over real mutual \
                TLS: N simultaneous devices each open a fresh connection and send one reading \
                (the seed paper's load test, Kul et al. 2019, beside it); sustained \
                throughput; one patient card throttled to 5 signatures/s.",
        expected: &[
            expect(
                "load_10_acknowledged_s",
                "10 devices: all acknowledged (durable)",
            ),
            expect("load_10_stored_s", "10 devices: all stored"),
            expect("load_100_acknowledged_s", "100 devices: all acknowledged"),
            expect("load_100_stored_s", "100 devices: all stored"),
            expect("load_1000_acknowledged_s", "1000 devices: all acknowledged"),
            expect("load_1000_stored_s", "1000 devices: all stored"),
            expect(
                "sustained_e2e_readings_per_s",
                "sustained, a ward of 8 patients (own card each), 16 keep-alive devices, 20 readings/request: stored end to end (target 20,000)",
            ),
            expect(
                "sustained_acknowledged_readings_per_s",
                "same ward: acknowledged (durable in the spool)",
            ),
            expect(
                "sustained_1_per_request_e2e_readings_per_s",
                "same ward, 1 reading/request: stored end to end",
            ),
            expect(
                "sustained_e2e_one_patient_readings_per_s",
                "one patient (one card, one chain), 16 keep-alive devices, 20 readings/request: stored end to end",
            ),
            expect(
                "sustained_1_per_request_e2e_one_patient_readings_per_s",
                "one patient, 1 reading/request: stored end to end",
            ),
            expect(
                "card_throttled_readings_per_s",
                "one card throttled to 5 signatures/s, 8 devices: readings stored",
            ),
            expect(
                "card_throttled_p99_ms",
                "one throttled card: sent → stored, p99",
            ),
            expect(
                "card_throttled_p50_ms",
                "one throttled card: sent → stored, p50",
            ),
        ],
    },
    Component {
        key: "storage",
        title: "wardseal-storage: verified and stored batches",
        package: "wardseal-storage",
        bench: "ingest",
        env: &[],
        setup: None,
        source: Source::Lines,
        about: "`Ingest::submit` on the JSON body (parse, patient certificate path and CRL, \
                card signature, Merkle root, chain, registry, assignment, rules, store), \
                without TLS; card signatures made before timing. PostgreSQL 15 throwaway \
                cluster at default durability; SQLite WAL with `synchronous=FULL`. Target: \
                ≥ 50,000 readings/s (PostgreSQL, 1024-reading batches).",
        expected: &[
            expect("sqlite_batch_1_readings_per_s", "SQLite, batches of 1"),
            expect("sqlite_batch_64_readings_per_s", "SQLite, batches of 64"),
            expect(
                "sqlite_batch_1024_readings_per_s",
                "SQLite, batches of 1024",
            ),
            expect(
                "sqlite_batch_1024_2_submitters_readings_per_s",
                "SQLite, batches of 1024, 2 submitters",
            ),
            expect(
                "postgres_batch_1_readings_per_s",
                "PostgreSQL, batches of 1",
            ),
            expect(
                "postgres_batch_64_readings_per_s",
                "PostgreSQL, batches of 64",
            ),
            expect(
                "postgres_batch_1024_readings_per_s",
                "PostgreSQL, batches of 1024",
            ),
            expect(
                "postgres_batch_1024_2_submitters_readings_per_s",
                "PostgreSQL, batches of 1024, 2 submitters",
            ),
        ],
    },
];

/// The machine a measurement ran on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs available (what `nproc` prints).
    pub cores: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `rustc -V`.
    pub rustc: String,
}

impl Machine {
    /// Reads this machine's description from /proc and `rustc -V`; what cannot be read
    /// is said to be unknown rather than stopping the report.
    pub fn current() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .arg("-V")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_else(|| "rustc: unknown".into());
        Self {
            cpu: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown CPU".into()),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: memory_gib(&read("/proc/meminfo")).unwrap_or(0.0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            rustc,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} CPUs, {:.1} GiB, Linux {}, {}",
            self.cpu, self.cores, self.memory_gib, self.kernel, self.rustc
        )
    }
}

/// The first `model name` in /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// `MemTotal` from /proc/meminfo text, in GiB.
pub fn memory_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// The three load averages from /proc/loadavg text, as printed there.
pub fn load_average(loadavg: &str) -> Option<String> {
    let fields: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// Everything measured for one component in one invocation of the tool.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// UTC date and time the runs started, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// The command, as a person would type it.
    pub command: String,
    /// Load average (1, 5, 15 min) before each run.
    pub load_before: Vec<String>,
    /// The figures of each run.
    pub runs: Vec<Vec<Figure>>,
}

/// What came of running one component.
#[derive(Debug)]
pub enum Outcome {
    /// Every run succeeded.
    Measured(Measurement),
    /// A run failed; the error names the bench.
    Failed {
        /// When it was tried.
        date: String,
        /// Why it failed.
        error: Error,
    },
}

/// A number as the tables show it: integers with thousands separators from 100 up,
/// three significant digits below.
pub fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        let rounded = value.round();
        let digits = format!("{:.0}", rounded.abs());
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if rounded < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value == 0.0 {
        "0".into()
    } else {
        // Three significant digits: decimals = 2 - floor(log10 |v|).
        let decimals = (2 - value.abs().log10().floor() as i32).max(0) as usize;
        format!("{value:.decimals$}")
    }
}

fn format_summary(summary: &Summary, runs: usize) -> (String, String) {
    let median = format!("{} {}", format_value(summary.median), summary.unit);
    let mut spread = if summary.count > 1 {
        format!(
            "{}–{}",
            format_value(summary.min),
            format_value(summary.max)
        )
    } else {
        "–".into()
    };
    if summary.count < runs {
        let _ = write!(spread, " ({} of {runs} runs)", summary.count);
    }
    (median, spread)
}

fn section_open(key: &str) -> String {
    format!("<!-- generated: {key} -->")
}

fn section_close(key: &str) -> String {
    format!("<!-- end generated: {key} -->")
}

/// The figures line kept in a section for the chart: `<!-- figures: a=1 b=2.5 -->`.
fn figures_comment(summaries: &[Summary]) -> String {
    let mut line = String::from("<!-- figures:");
    for summary in summaries {
        let _ = write!(line, " {}={}", summary.name, summary.median);
    }
    line.push_str(" -->");
    line
}

/// The figures recorded in a section's `<!-- figures: ... -->` line.
pub fn section_figures(section: &str) -> BTreeMap<String, f64> {
    section
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("<!-- figures:")?
                .strip_suffix("-->")
        })
        .flat_map(str::split_whitespace)
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The body of a component's section (between its markers) for a successful measurement.
pub fn render_section(component: &Component, measurement: &Measurement) -> Result<String, Error> {
    let summaries = summarize(&measurement.runs)?;
    let runs = measurement.runs.len();
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", component.title);
    let _ = writeln!(out, "{}\n", component.about);
    let _ = writeln!(
        out,
        "Measured {} by `scripts/bench-report`, {runs} run{} of `{}`; median, with the \
         range over the runs. Machine: {}. Load average (1/5/15 min) before each run: {}.\n",
        measurement.date,
        if runs == 1 { "" } else { "s" },
        measurement.command,
        measurement.machine.describe(),
        measurement.load_before.join("; "),
    );
    if component.key == "collector" {
        render_load_table(&mut out, &summaries, runs);
    }
    let _ = writeln!(out, "| measurement | median | range |\n|---|---|---|");
    for expected in component.expected {
        match summaries
            .iter()
            .find(|summary| summary.name == expected.name)
        {
            Some(summary) => {
                let (median, spread) = format_summary(summary, runs);
                let _ = writeln!(out, "| {} | {median} | {spread} |", expected.label);
            }
            None => {
                let _ = writeln!(out, "| {} | not measured | |", expected.label);
            }
        }
    }
    for summary in &summaries {
        if !component
            .expected
            .iter()
            .any(|expected| expected.name == summary.name)
        {
            let (median, spread) = format_summary(summary, runs);
            let _ = writeln!(out, "| `{}` | {median} | {spread} |", summary.name);
        }
    }
    let _ = writeln!(out, "\n{}", figures_comment(&summaries));
    Ok(out)
}

/// The load test beside the paper's figures, and the chart.
fn render_load_table(out: &mut String, summaries: &[Summary], runs: usize) {
    let cell = |name: String| {
        summaries
            .iter()
            .find(|summary| summary.name == name)
            .map_or_else(
                || "not measured".to_owned(),
                |summary| {
                    let (median, spread) = format_summary(summary, runs);
                    if spread == "–" {
                        median
                    } else {
                        format!("{median} ({spread})")
                    }
                },
            )
    };
    let _ = writeln!(
        out,
        "| simultaneous devices | wardseal: all acknowledged | wardseal: all stored | Kul et al. 2019 |\n|---|---|---|---|"
    );
    for (devices, paper) in PAPER_LOAD {
        let _ = writeln!(
            out,
            "| {devices} | {} | {} | {paper} s |",
            cell(format!("load_{devices}_acknowledged_s")),
            cell(format!("load_{devices}_stored_s")),
        );
    }
    let _ = writeln!(
        out,
        "\n![Time until all are acknowledged against simultaneous devices, wardseal and \
         Kul et al. 2019]({CHART_PATH})\n"
    );
}

/// A section body for a run that failed: the failure, then the previous figures if the
/// section had any (they stay, marked as older).
pub fn render_failure(
    component: &Component,
    date: &str,
    error: &Error,
    previous: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", component.title);
    let _ = writeln!(
        out,
        "> **Re-run of {date} failed**: {}. {}\n",
        error.to_string().replace('\n', " "),
        if previous.is_some() {
            "The figures below are from the previous successful run."
        } else {
            "No earlier figures."
        }
    );
    if let Some(previous) = previous {
        // Drop the previous heading and any earlier failure notice: one of each.
        for line in previous.lines().skip_while(|line| {
            line.starts_with("## ") || line.starts_with("> **Re-run of ") || line.is_empty()
        }) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// BENCHMARKS.md split into its parts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    /// Generated sections by key, in document order, without their marker lines.
    pub sections: Vec<(String, String)>,
    /// Everything from the notes marker (inclusive) to the end.
    pub notes: String,
}

impl Document {
    /// Splits BENCHMARKS.md text. Text outside the sections and above the notes is the
    /// generated header, which is rewritten.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let Some(notes_at) = text.find(NOTES_MARKER) else {
            return Err(Error::MissingNotesMarker { path: path.into() });
        };
        let (generated, notes) = text.split_at(notes_at);
        let mut sections = Vec::new();
        let mut current: Option<(String, String)> = None;
        for line in generated.lines() {
            let trimmed = line.trim();
            if let Some(key) = trimmed
                .strip_prefix("<!-- end generated:")
                .and_then(|rest| rest.strip_suffix("-->"))
            {
                let key = key.trim();
                match current.take() {
                    Some((open, body)) if open == key => sections.push((open, body)),
                    Some((open, _)) => return Err(Error::UnbalancedSection { key: open }),
                    None => return Err(Error::UnbalancedSection { key: key.into() }),
                }
            } else if let Some(key) = trimmed
                .strip_prefix("<!-- generated:")
                .and_then(|rest| rest.strip_suffix("-->"))
            {
                if let Some((open, _)) = current {
                    return Err(Error::UnbalancedSection { key: open });
                }
                current = Some((key.trim().to_owned(), String::new()));
            } else if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        if let Some((open, _)) = current {
            return Err(Error::UnbalancedSection { key: open });
        }
        Ok(Self {
            sections,
            notes: notes.to_owned(),
        })
    }

    /// The body of section `key`, if there is one.
    pub fn section(&self, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, body)| body.as_str())
    }

    /// Replaces (or adds) section `key`.
    pub fn replace(&mut self, key: &str, body: String) {
        match self.sections.iter_mut().find(|(name, _)| name == key) {
            Some((_, old)) => *old = body,
            None => self.sections.push((key.to_owned(), body)),
        }
    }

    /// The whole file: header, the components' sections in `components` order (then any
    /// other sections found, kept), the notes.
    pub fn render(&self, components: &[Component]) -> String {
        let mut out = String::from(HEADER);
        let mut keys: Vec<&str> = components.iter().map(|component| component.key).collect();
        for (key, _) in &self.sections {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
        for key in keys {
            let body = match self.section(key) {
                Some(body) => body.trim_end().to_owned(),
                None => {
                    let title = components
                        .iter()
                        .find(|component| component.key == key)
                        .map_or(key, |component| component.title);
                    format!("## {title}\n\nNot measured yet: `scripts/bench-report --only {key}`.")
                }
            };
            let _ = write!(
                out,
                "{}\n{body}\n{}\n\n",
                section_open(key),
                section_close(key)
            );
        }
        if self.notes.is_empty() {
            let _ = writeln!(out, "{NOTES_MARKER}");
        } else {
            out.push_str(&self.notes);
        }
        out
    }
}

/// The generated top of BENCHMARKS.md.
const HEADER: &str = "# Benchmarks

Generated by `scripts/bench-report [--runs N] [--only core,card,pki,contracts,collector,storage]`
(default: every bench, 3 runs each). It runs each bench, reads the
`BENCH <name> <value> <unit>` lines the bench prints (criterion's estimates for
wardseal-core) and rewrites the section of each component it ran; the others keep their
previous section. Each section gives the command, the machine, the date and the load
average; figures are medians over the runs, with the range. Benchmarks print numbers; no
test asserts a time. Hand-written analysis is below the notes line at the end, which the
tool keeps.

Chart: [time until all are acknowledged against simultaneous devices, ours and the seed
paper's](docs/latency-vs-devices.svg).

";

/// The load-test points of a collector section: (devices, seconds), sorted by devices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadPoints {
    /// Until all were acknowledged.
    pub acknowledged: Vec<(u32, f64)>,
    /// Until all were stored, when measured.
    pub stored: Vec<(u32, f64)>,
}

impl LoadPoints {
    /// The `load_<n>_acknowledged_s` and `load_<n>_stored_s` figures in `figures`.
    pub fn from_figures(figures: &BTreeMap<String, f64>) -> Self {
        let mut points = Self::default();
        for (name, &value) in figures {
            let Some(rest) = name.strip_prefix("load_") else {
                continue;
            };
            let (devices, series) = match rest.split_once('_') {
                Some((devices, "acknowledged_s")) => (devices, &mut points.acknowledged),
                Some((devices, "stored_s")) => (devices, &mut points.stored),
                _ => continue,
            };
            if let Ok(devices) = devices.parse::<u32>()
                && devices > 0
                && value > 0.0
            {
                series.push((devices, value));
            }
        }
        points.acknowledged.sort_by_key(|(devices, _)| *devices);
        points.stored.sort_by_key(|(devices, _)| *devices);
        points
    }
}

/// The chart of seconds until all are acknowledged (and stored, when measured) against
/// simultaneous devices, ours and the paper's, as SVG. Both axes are logarithmic: the
/// paper's 30 s and our milliseconds differ by three orders of magnitude.
pub fn render_chart(points: &LoadPoints) -> Result<String, Error> {
    use plotters::prelude::*;

    let chart_error = |error: &dyn std::fmt::Display| Error::Chart(error.to_string());
    let all_seconds = PAPER_LOAD
        .iter()
        .map(|(_, seconds)| *seconds)
        .chain(points.acknowledged.iter().map(|(_, seconds)| *seconds))
        .chain(points.stored.iter().map(|(_, seconds)| *seconds));
    let low = all_seconds.clone().fold(f64::INFINITY, f64::min);
    let high = all_seconds.fold(0.0, f64::max);
    // Whole decades around the data, so tick labels are round numbers.
    let y_low = 10f64.powf(low.log10().floor());
    let y_high = 10f64.powf(high.log10().ceil());
    let devices = PAPER_LOAD
        .iter()
        .map(|(devices, _)| *devices)
        .chain(points.acknowledged.iter().map(|(devices, _)| *devices))
        .chain(points.stored.iter().map(|(devices, _)| *devices));
    let x_low = f64::from(devices.clone().min().unwrap_or(10)) / 1.5;
    let x_high = f64::from(devices.max().unwrap_or(1000)) * 1.5;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| chart_error(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Time until all simultaneous devices are answered",
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((x_low..x_high).log_scale(), (y_low..y_high).log_scale())
            .map_err(|e| chart_error(&e))?;
        chart
            .configure_mesh()
            .x_desc("simultaneous devices (log scale)")
            .y_desc("seconds (log scale)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| axis_label(*y))
            .draw()
            .map_err(|e| chart_error(&e))?;

        let paper: Vec<(f64, f64)> = PAPER_LOAD
            .iter()
            .map(|(devices, seconds)| (f64::from(*devices), *seconds))
            .collect();
        let series = [
            ("Kul et al. 2019 (all answered)", paper, RED),
            (
                "wardseal: all acknowledged",
                to_f64(&points.acknowledged),
                BLUE,
            ),
            ("wardseal: all stored", to_f64(&points.stored), GREEN),
        ];
        for (label, data, color) in series {
            if data.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
                .map_err(|e| chart_error(&e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(PointSeries::of_element(
                    data.iter().copied(),
                    4,
                    color.filled(),
                    &|coord, size, style| Circle::new(coord, size, style),
                ))
                .map_err(|e| chart_error(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| chart_error(&e))?;
        root.present().map_err(|e| chart_error(&e))?;
    }
    Ok(svg)
}

/// A tick label: the number without trailing zeros (log ticks are powers of ten).
fn axis_label(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn to_f64(points: &[(u32, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .map(|(devices, seconds)| (f64::from(*devices), *seconds))
        .collect()
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_else(|_| "unknown date".into())
}

/// How to run the benches.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The workspace root.
    pub root: PathBuf,
    /// Runs per bench.
    pub runs: usize,
    /// A run that takes longer is stopped and the bench counted as failed.
    pub timeout: Duration,
    /// Where criterion homes go (a fresh one per run).
    pub scratch: PathBuf,
}

/// Runs `component`'s bench `options.runs` times. The first failure stops this
/// component (not the others) and is returned as [`Outcome::Failed`].
pub fn run_component(component: &Component, options: &RunOptions) -> Outcome {
    let date = now_utc();
    match measure(component, options, &date) {
        Ok(measurement) => Outcome::Measured(measurement),
        Err(error) => Outcome::Failed { date, error },
    }
}

fn measure(component: &Component, options: &RunOptions, date: &str) -> Result<Measurement, Error> {
    let failed = |problem: String| Error::BenchFailed {
        component: component.key.into(),
        command: component.command(),
        problem,
    };
    if let Some(setup) = component.setup {
        let status = Command::new(options.root.join(setup))
            .current_dir(&options.root)
            .stdout(Stdio::null())
            .status()
            .map_err(|error| failed(format!("cannot start {setup}: {error}")))?;
        if !status.success() {
            return Err(failed(format!("{setup} failed ({status})")));
        }
    }
    let mut measurement = Measurement {
        date: date.to_owned(),
        machine: Machine::current(),
        command: component.command(),
        load_before: Vec::new(),
        runs: Vec::new(),
    };
    for run in 1..=options.runs {
        measurement.load_before.push(
            load_average(&std::fs::read_to_string("/proc/loadavg").unwrap_or_default())
                .unwrap_or_else(|| "unknown".into()),
        );
        eprintln!(
            "==> {} run {run}/{}: {}",
            component.key,
            options.runs,
            component.command()
        );
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command
            .args(["bench", "-p", component.package, "--bench", component.bench])
            .current_dir(&options.root)
            .envs(component.env.iter().copied());
        let home = options
            .scratch
            .join(format!("criterion-{}-{run}", component.key));
        if let Source::Criterion(_) = component.source {
            // A fresh home, so a run that fails part-way cannot leave earlier estimates to
            // be read as its own.
            if home.exists() {
                std::fs::remove_dir_all(&home).map_err(|source| Error::Io {
                    path: home.clone(),
                    source,
                })?;
            }
            command.env("CRITERION_HOME", &home);
        }
        let stdout = run_echoing(command, options.timeout).map_err(failed)?;
        let figures = match component.source {
            Source::Lines => parse_bench_lines(&stdout),
            Source::Criterion(specs) => criterion_figures(&home, specs),
        }
        .map_err(|error| failed(format!("run {run}: {error}")))?;
        if figures.is_empty() {
            return Err(failed(format!(
                "run {run} printed no `BENCH <name> <value> <unit>` line"
            )));
        }
        measurement.runs.push(figures);
    }
    Ok(measurement)
}

/// Runs `command`, echoing its stdout to our stderr as it comes (cargo's own progress
/// goes to the inherited stderr), and returns the stdout. Stops it after `timeout`.
fn run_echoing(mut command: Command, timeout: Duration) -> Result<String, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start cargo: {error}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or("cargo's stdout was not captured")?;
    let reader = std::thread::spawn(move || {
        let mut collected = String::new();
        let stderr = std::io::stderr();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(stderr.lock(), "{line}");
            collected.push_str(&line);
            collected.push('\n');
        }
        collected
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("stopped after {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(error) => return Err(format!("waiting for cargo: {error}")),
        }
    };
    let stdout = reader
        .join()
        .map_err(|_| "the thread reading the bench's output stopped".to_owned())?;
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("exited with {status}"))
    }
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// Writes a file through a temporary sibling and a rename, so an interrupted run
/// never leaves half a BENCHMARKS.md.
pub fn write(path: &Path, contents: &str) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

#[cfg(test)]
mod tests;
