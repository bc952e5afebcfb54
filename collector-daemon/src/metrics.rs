//! Counters and histograms, rendered in the Prometheus text format for `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::error::Rejection;

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit, to stay in integers.
    sum_micro: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if value <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Observations are non-negative sizes and durations; the cast saturates.
        let micro = (value.max(0.0) * 1e6) as u64;
        self.sum_micro.fetch_add(micro, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const SIZE_BOUNDS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0];
const SECONDS_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    accepted: AtomicU64,
    rejected: Vec<AtomicU64>,
    /// Readings per sealed batch.
    pub batch_size: Histogram,
    /// Seconds the patient card took per signature.
    pub signing_seconds: Histogram,
    /// Microseconds between a delivered batch's oldest reading arriving and its receipt.
    pub forward_lag_micros: AtomicI64,
    /// Microseconds the oldest unanchored decision has waited.
    pub anchor_lag_micros: AtomicI64,
    /// Batches storage acknowledged.
    pub batches_delivered: AtomicU64,
    /// Failed delivery attempts.
    pub forward_failures: AtomicU64,
    /// CRL fetches that failed or were refused (the last good CRL stayed in force).
    pub crl_fetch_failures: AtomicU64,
    /// 1 while a CRL in force is past its `nextUpdate`.
    pub crl_expired: AtomicU64,
    /// Cards present in the bedside readers and configured tokens.
    pub cards_present: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            rejected: Rejection::CODES.iter().map(|_| AtomicU64::new(0)).collect(),
            batch_size: Histogram::new(SIZE_BOUNDS),
            signing_seconds: Histogram::new(SECONDS_BOUNDS),
            forward_lag_micros: AtomicI64::new(0),
            anchor_lag_micros: AtomicI64::new(0),
            batches_delivered: AtomicU64::new(0),
            forward_failures: AtomicU64::new(0),
            crl_fetch_failures: AtomicU64::new(0),
            crl_expired: AtomicU64::new(0),
            cards_present: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    /// Counts accepted readings.
    pub fn accepted(&self, count: u64) {
        self.accepted.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts one refusal.
    pub fn rejected(&self, rejection: &Rejection) {
        let code = rejection.code();
        if let Some(counter) = Rejection::CODES
            .iter()
            .position(|c| *c == code)
            .and_then(|index| self.rejected.get(index))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Accepted readings so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Refusals with `code` so far.
    pub fn rejected_total(&self, code: &str) -> u64 {
        Rejection::CODES
            .iter()
            .position(|c| *c == code)
            .and_then(|index| self.rejected.get(index))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self, spool_depth: u64) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP wardseal_collector_readings_accepted_total Readings made durable and acknowledged 202.\n\
             # TYPE wardseal_collector_readings_accepted_total counter\n\
             wardseal_collector_readings_accepted_total {}",
            self.accepted_total()
        );
        let _ = writeln!(
            out,
            "# HELP wardseal_collector_readings_rejected_total Readings refused, by machine code.\n\
             # TYPE wardseal_collector_readings_rejected_total counter"
        );
        for (code, counter) in Rejection::CODES.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "wardseal_collector_readings_rejected_total{{reason=\"{code}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP wardseal_collector_spool_depth Readings in the spool not yet acknowledged by storage.\n\
             # TYPE wardseal_collector_spool_depth gauge\nwardseal_collector_spool_depth {spool_depth}"
        );
        self.batch_size.render(
            &mut out,
            "wardseal_collector_batch_size",
            "Readings per card-signed batch.",
        );
        self.signing_seconds.render(
            &mut out,
            "wardseal_collector_card_signing_seconds",
            "Time the patient card took per batch signature.",
        );
        let seconds = |micros: &AtomicI64| micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP wardseal_collector_forward_lag_seconds Arrival of a delivered batch's oldest reading to storage's receipt.\n\
             # TYPE wardseal_collector_forward_lag_seconds gauge\nwardseal_collector_forward_lag_seconds {}",
            seconds(&self.forward_lag_micros)
        );
        let _ = writeln!(
            out,
            "# HELP wardseal_collector_anchor_lag_seconds Age of the oldest decision not yet anchored on chain.\n\
             # TYPE wardseal_collector_anchor_lag_seconds gauge\nwardseal_collector_anchor_lag_seconds {}",
            seconds(&self.anchor_lag_micros)
        );
        let _ = writeln!(
            out,
            "# HELP wardseal_collector_batches_delivered_total Batches storage acknowledged.\n\
             # TYPE wardseal_collector_batches_delivered_total counter\nwardseal_collector_batches_delivered_total {}\n\
             # HELP wardseal_collector_forward_failures_total Failed delivery attempts (retried).\n\
             # TYPE wardseal_collector_forward_failures_total counter\nwardseal_collector_forward_failures_total {}",
            self.batches_delivered.load(Ordering::Relaxed),
            self.forward_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP wardseal_collector_crl_fetch_failures_total CRL fetches that failed or were refused (the last good CRL stays in force).\n\
             # TYPE wardseal_collector_crl_fetch_failures_total counter\nwardseal_collector_crl_fetch_failures_total {}\n\
             # HELP wardseal_collector_crl_expired 1 while a CRL in force is past its nextUpdate.\n\
             # TYPE wardseal_collector_crl_expired gauge\nwardseal_collector_crl_expired {}\n\
             # HELP wardseal_collector_cards_present Patient cards present (bedside readers and configured tokens).\n\
             # TYPE wardseal_collector_cards_present gauge\nwardseal_collector_cards_present {}",
            self.crl_fetch_failures.load(Ordering::Relaxed),
            self.crl_expired.load(Ordering::Relaxed),
            self.cards_present.load(Ordering::Relaxed)
        );
        out
    }
}
