//! Storage's Prometheus metrics (`GET /metrics`, OpenMetrics text through
//! `prometheus-client`).
//!
//! Batches stored and refused (by refusal code), how long verifying and storing a batch
//! takes, anchors made of the access log and of the batch log, and reads of patient data
//! (allowed or refused, as the access log records them) and of patients' own access logs.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A refusal code label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// A log label (`access` or `batch`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LogLabel {
    log: &'static str,
}

/// A decision label (`allowed` or `refused`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

/// Which log an anchor covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchoredLog {
    /// The access log.
    Access,
    /// The batch log.
    Batch,
}

/// The server's metrics; cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    batches_stored: Counter,
    batches_repeated: Counter,
    readings_stored: Counter,
    batches_refused: Family<CodeLabel, Counter>,
    batch_seconds: Histogram,
    anchors: Family<LogLabel, Counter>,
    data_reads: Family<DecisionLabel, Counter>,
    access_log_reads: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wardseal_storage");
        let batches_stored = Counter::default();
        registry.register(
            "batches_stored",
            "Batches verified and stored for the first time",
            batches_stored.clone(),
        );
        let batches_repeated = Counter::default();
        registry.register(
            "batches_repeated",
            "Batches delivered again after being stored (acknowledged, not stored twice)",
            batches_repeated.clone(),
        );
        let readings_stored = Counter::default();
        registry.register(
            "readings_stored",
            "Readings stored",
            readings_stored.clone(),
        );
        let batches_refused = Family::<CodeLabel, Counter>::default();
        registry.register(
            "batches_refused",
            "Batches refused, by refusal code",
            batches_refused.clone(),
        );
        // 0.5 ms to ~8 s: one reading verifies in well under a millisecond, a 1024-reading
        // batch on PostgreSQL in tens of milliseconds, and a slow ledger shows at the top.
        let batch_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        registry.register(
            "batch_verify_seconds",
            "Time to verify and store (or refuse) one delivered batch",
            batch_seconds.clone(),
        );
        let anchors = Family::<LogLabel, Counter>::default();
        registry.register(
            "anchors",
            "Merkle roots anchored on the ledger, by log",
            anchors.clone(),
        );
        let data_reads = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "data_reads",
            "Reads of patient data by staff, allowed or refused (each is in the access log)",
            data_reads.clone(),
        );
        let access_log_reads = Counter::default();
        registry.register(
            "access_log_reads",
            "Patients' reads of their own access log",
            access_log_reads.clone(),
        );
        Self {
            registry,
            batches_stored,
            batches_repeated,
            readings_stored,
            batches_refused,
            batch_seconds,
            anchors,
            data_reads,
            access_log_reads,
        }
    }

    /// A batch was verified in `took`: stored with `readings` readings (`newly` false: it
    /// was stored before).
    pub fn batch_accepted(&self, newly: bool, readings: u64, took: Duration) {
        if newly {
            self.batches_stored.inc();
            self.readings_stored.inc_by(readings);
        } else {
            self.batches_repeated.inc();
        }
        self.batch_seconds.observe(took.as_secs_f64());
    }

    /// A batch was refused with `code` after `took`.
    pub fn batch_refused(&self, code: &'static str, took: Duration) {
        self.batches_refused
            .get_or_create(&CodeLabel { code })
            .inc();
        self.batch_seconds.observe(took.as_secs_f64());
    }

    /// A root of `log` was anchored.
    pub fn anchored(&self, log: AnchoredLog) {
        let log = match log {
            AnchoredLog::Access => "access",
            AnchoredLog::Batch => "batch",
        };
        self.anchors.get_or_create(&LogLabel { log }).inc();
    }

    /// A staff member's read of patient data was allowed or refused.
    pub fn data_read(&self, allowed: bool) {
        let decision = if allowed { "allowed" } else { "refused" };
        self.data_reads
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    /// A patient read their access log.
    pub fn access_log_read(&self) {
        self.access_log_reads.inc();
    }

    /// The OpenMetrics text of every metric ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_code_and_latency_observed() {
        let metrics = Metrics::new();
        metrics.batch_accepted(true, 64, Duration::from_millis(3));
        metrics.batch_accepted(false, 64, Duration::from_millis(1));
        metrics.batch_refused("chain_gap", Duration::from_millis(2));
        metrics.batch_refused("chain_gap", Duration::from_millis(2));
        metrics.anchored(AnchoredLog::Batch);
        metrics.data_read(false);
        let text = metrics.encode();
        for line in [
            "wardseal_storage_batches_stored_total 1",
            "wardseal_storage_batches_repeated_total 1",
            "wardseal_storage_readings_stored_total 64",
            "wardseal_storage_batches_refused_total{code=\"chain_gap\"} 2",
            "wardseal_storage_batch_verify_seconds_count 4",
            "wardseal_storage_anchors_total{log=\"batch\"} 1",
            "wardseal_storage_data_reads_total{decision=\"refused\"} 1",
            "wardseal_storage_access_log_reads_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
