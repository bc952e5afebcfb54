//! Benchmarks of wardseal-core.
fn main() {}
