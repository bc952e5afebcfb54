//! Counters, gauges and histograms for `GET /metrics`, kept and written by
//! `prometheus-client` in the Prometheus text format (0.0.4).
//!
//! The names and labels are the ones dashboards were built on before this crate wrote
//! the text itself (`wardseal_collector_readings_accepted_total`,
//! `wardseal_collector_readings_rejected_total{reason}`, …). Two details of the written
//! text changed: histogram bucket bounds are printed as floats (`le="1.0"` where
//! `le="1"` was written), and each HELP line ends with one period.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::Rejection;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const SIZE_BOUNDS: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0];
const SECONDS_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label of a refusal counter: its machine code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    rejected: Family<ReasonLabel, Counter>,
    spool_depth: Gauge,
    /// Readings per sealed batch.
    pub batch_size: Histogram,
    /// Seconds the patient card took per signature.
    pub signing_seconds: Histogram,
    /// Seconds between a delivered batch's oldest reading arriving and its receipt.
    pub forward_lag_seconds: Gauge<f64, AtomicU64>,
    /// Seconds the oldest unanchored decision has waited.
    pub anchor_lag_seconds: Gauge<f64, AtomicU64>,
    /// Batches storage acknowledged.
    pub batches_delivered: Counter,
    /// Failed delivery attempts.
    pub forward_failures: Counter,
    /// Batches storage refused for good, moved to the quarantine (a technical alert).
    pub batches_quarantined: Counter,
    /// Readings waiting longer than the bound for an assignment valid at their
    /// measurement time (a technical alert).
    pub readings_unassigned: Gauge,
    /// CRL fetches that failed or were refused (the last good CRL stayed in force).
    pub crl_fetch_failures: Counter,
    /// 1 while a CRL in force is past its `nextUpdate`.
    pub crl_expired: Gauge,
    /// Cards present in the bedside readers and configured tokens.
    pub cards_present: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wardseal_collector");
        let accepted = Counter::default();
        registry.register(
            "readings_accepted",
            "Readings made durable and acknowledged 202",
            accepted.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        // Every code is written from the start (at 0), so a rate over a refusal that has
        // not happened yet is 0, not absent.
        for reason in Rejection::CODES {
            let _ = rejected.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "readings_rejected",
            "Readings refused, by machine code",
            rejected.clone(),
        );
        let spool_depth = Gauge::default();
        registry.register(
            "spool_depth",
            "Readings in the spool not yet acknowledged by storage",
            spool_depth.clone(),
        );
        let batch_size = Histogram::new(SIZE_BOUNDS);
        registry.register(
            "batch_size",
            "Readings per card-signed batch",
            batch_size.clone(),
        );
        let signing_seconds = Histogram::new(SECONDS_BOUNDS);
        registry.register(
            "card_signing_seconds",
            "Time the patient card took per batch signature",
            signing_seconds.clone(),
        );
        let forward_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "forward_lag_seconds",
            "Arrival of a delivered batch's oldest reading to storage's receipt",
            forward_lag_seconds.clone(),
        );
        let anchor_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "anchor_lag_seconds",
            "Age of the oldest decision not yet anchored on chain",
            anchor_lag_seconds.clone(),
        );
        let batches_delivered = Counter::default();
        registry.register(
            "batches_delivered",
            "Batches storage acknowledged",
            batches_delivered.clone(),
        );
        let forward_failures = Counter::default();
        registry.register(
            "forward_failures",
            "Failed delivery attempts (retried)",
            forward_failures.clone(),
        );
        let batches_quarantined = Counter::default();
        registry.register(
            "batches_quarantined",
            "Batches storage refused for good, kept whole in the spool's quarantine",
            batches_quarantined.clone(),
        );
        let readings_unassigned = Gauge::default();
        registry.register(
            "readings_unassigned",
            "Readings waiting past the bound for an assignment valid at their measurement time",
            readings_unassigned.clone(),
        );
        let crl_fetch_failures = Counter::default();
        registry.register(
            "crl_fetch_failures",
            "CRL fetches that failed or were refused (the last good CRL stays in force)",
            crl_fetch_failures.clone(),
        );
        let crl_expired = Gauge::default();
        registry.register(
            "crl_expired",
            "1 while a CRL in force is past its nextUpdate",
            crl_expired.clone(),
        );
        let cards_present = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "cards_present",
            "Patient cards present (bedside readers and configured tokens)",
            cards_present.clone(),
        );
        Self {
            registry,
            accepted,
            rejected,
            spool_depth,
            batch_size,
            signing_seconds,
            forward_lag_seconds,
            anchor_lag_seconds,
            batches_delivered,
            forward_failures,
            batches_quarantined,
            readings_unassigned,
            crl_fetch_failures,
            crl_expired,
            cards_present,
        }
    }
}

impl Metrics {
    /// Counts accepted readings.
    pub fn accepted(&self, count: u64) {
        self.accepted.inc_by(count);
    }

    /// Counts one refusal.
    pub fn rejected(&self, rejection: &Rejection) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: rejection.code(),
            })
            .inc();
    }

    /// Accepted readings so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.get()
    }

    /// Refusals with `code` so far.
    pub fn rejected_total(&self, code: &str) -> u64 {
        Rejection::CODES
            .iter()
            .find(|known| **known == code)
            .map_or(0, |reason| {
                self.rejected.get_or_create(&ReasonLabel { reason }).get()
            })
    }

    /// Records a delivery lag given in microseconds.
    pub fn set_forward_lag_micros(&self, micros: i64) {
        self.forward_lag_seconds.set(micros as f64 / 1e6);
    }

    /// Records the anchoring lag given in microseconds.
    pub fn set_anchor_lag_micros(&self, micros: i64) {
        self.anchor_lag_seconds.set(micros as f64 / 1e6);
    }

    /// The Prometheus text exposition (version 0.0.4, [`CONTENT_TYPE`]), with the spool
    /// depth as of now.
    pub fn render(&self, spool_depth: u64) -> String {
        self.spool_depth
            .set(i64::try_from(spool_depth).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_keeps_the_dashboard_names() {
        let metrics = Metrics::default();
        metrics.accepted(3);
        metrics.rejected(&Rejection::SpoolFull);
        metrics.batch_size.observe(7.0);
        metrics.set_forward_lag_micros(1_500_000);
        let text = metrics.render(4);
        for line in [
            "wardseal_collector_readings_accepted_total 3",
            "wardseal_collector_readings_rejected_total{reason=\"spool_full\"} 1",
            "wardseal_collector_readings_rejected_total{reason=\"replay\"} 0",
            "wardseal_collector_spool_depth 4",
            "wardseal_collector_batch_size_count 1",
            "wardseal_collector_forward_lag_seconds 1.5",
            "wardseal_collector_batches_delivered_total 0",
            "wardseal_collector_crl_expired 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert_eq!(metrics.accepted_total(), 3);
        assert_eq!(metrics.rejected_total("spool_full"), 1);
    }

    /// promtool (Debian `prometheus`) lints a scrape with every family populated. Where
    /// promtool is missing the test is skipped, except in CI (`CI` set), where it fails:
    /// `scripts/test` installs it.
    #[test]
    fn promtool_accepts_the_scrape() {
        use std::io::Write as _;
        let metrics = Metrics::default();
        metrics.accepted(12);
        metrics.rejected(&Rejection::Unavailable);
        metrics.batch_size.observe(3.0);
        metrics.signing_seconds.observe(0.07);
        metrics.set_anchor_lag_micros(2_000_000);
        metrics.batches_delivered.inc();
        metrics.cards_present.set(2);
        let text = metrics.render(9);
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if std::env::var_os("CI").is_none() => {
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(
                    stderr,
                    "skipped: promtool not runnable ({error}); apt-get install prometheus"
                );
                return;
            }
            Err(error) => {
                panic!("promtool is required in CI (apt-get install prometheus): {error}")
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
