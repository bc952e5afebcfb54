//! wardseal simulated wards and the benchmark report: `wardseal-bench-report` runs the
//! workspace's benchmarks and regenerates BENCHMARKS.md and its chart.
#![forbid(unsafe_code)]

pub mod report;
