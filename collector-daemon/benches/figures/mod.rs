//! What the collector's latency benches share: their settings from the environment, the
//! percentiles they report, and the `BENCH` line `scripts/bench-report` reads.

/// A numeric setting from the environment, or `default` when unset or not a number.
pub(crate) fn environment(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// One figure: for people, and for `scripts/bench-report` (`BENCH name value unit`).
pub(crate) fn bench(name: &str, value: f64, unit: &str) {
    println!("BENCH {name} {value:.1} {unit}");
}

/// The value at `fraction` (0 to 1) of an ascending list, nearest rank; NaN when empty.
pub(crate) fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
