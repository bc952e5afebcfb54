//! The `wardseal-collector` binary.
fn main() {}
