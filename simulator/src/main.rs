//! `wardseal-sim`: simulated devices, load modes and the demo.

fn main() {}
