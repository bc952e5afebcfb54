//! Gas and throughput of anchoring rule decisions, against the seed's design of one
//! transaction per decision, on anvil with 5 s blocks (like the seed's private chain).
//!
//!     contracts/setup.sh && cargo bench -p wardseal-contracts --bench anchoring
//!
//! Environment: `WARDSEAL_BENCH_DECISIONS` (default 1000), `WARDSEAL_BENCH_BLOCK_TIME`
//! (seconds, default 5). Prints numbers; asserts nothing about speed.

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::time::Instant;

use alloy::primitives::B256;
use sha2::{Digest, Sha256};
use wardseal_contracts::{
    Anchor, CheckInput, EmbeddedChain, Ledger, Range, Role, RpcBackend, RuleBook, TypeRule,
    WideDecimal,
};
use wardseal_testkit::anvil::{Anvil, AnvilOptions, dev_signer};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// RFC 9162 Merkle tree hash of the leaves' data.
fn merkle_root(leaves: &[Vec<u8>]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => Sha256::new()
            .chain_update([0u8])
            .chain_update(&leaves[0])
            .finalize()
            .into(),
        n => {
            let k = n.next_power_of_two() / 2;
            let (l, r) = (merkle_root(&leaves[..k]), merkle_root(&leaves[k..]));
            Sha256::new()
                .chain_update([1u8])
                .chain_update(l)
                .chain_update(r)
                .finalize()
                .into()
        }
    }
}

fn readings(n: usize) -> Vec<CheckInput> {
    (0..n)
        .map(|i| CheckInput {
            group: 3,
            data_type: 1,
            unit: "/min".into(),
            components: vec![WideDecimal::new(40 + (i % 150) as i128, 0)],
            per_minute: 1,
            patient: None,
        })
        .collect()
}

async fn setup<B: wardseal_contracts::Backend>(ledger: &Ledger<B>) {
    ledger.create_rule(7).await.unwrap();
    let range = Range::new(WideDecimal::new(30, 0), WideDecimal::new(220, 0)).unwrap();
    ledger
        .set_type_rule(7, &TypeRule::new(1, "/min", vec![range], 0).unwrap())
        .await
        .unwrap();
    ledger.set_group_rule(3, 7).await.unwrap();
    ledger
        .grant_role(Role::Anchorer, ledger.account())
        .await
        .unwrap();
}

/// Decides natively, builds the Merkle root of the decision log, anchors it once.
async fn anchored<B: wardseal_contracts::Backend>(
    ledger: &Ledger<B>,
    book: &RuleBook,
    inputs: &[CheckInput],
    tag: u8,
) -> (f64, u64) {
    let start = Instant::now();
    let leaves: Vec<Vec<u8>> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let d = book.check(input);
            format!("{i}:{:?}:{}", d.verdict(), input.components[0]).into_bytes()
        })
        .collect();
    let root = merkle_root(&leaves);
    let mut root = B256::from(root);
    root.0[0] ^= tag;
    let outcome = ledger
        .anchor(&Anchor {
            log_id: B256::repeat_byte(tag),
            root,
            count: inputs.len() as u64,
            first_time: 1,
            last_time: 2,
        })
        .await
        .unwrap();
    (start.elapsed().as_secs_f64(), outcome.gas_used)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and then this
    // minutes-long run is skipped.
    if !std::env::args().any(|a| a == "--bench") {
        println!("anchoring: run with `cargo bench -p wardseal-contracts --bench anchoring`");
        return;
    }
    let n = env_u64("WARDSEAL_BENCH_DECISIONS", 1000) as usize;
    let block_time = env_u64("WARDSEAL_BENCH_BLOCK_TIME", 5);
    let inputs = readings(n);
    println!("machine: {}", machine());

    // --- anvil with 5 s blocks ---
    let node = Anvil::start(AnvilOptions {
        block_time: Some(block_time),
        ..AnvilOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let backend = RpcBackend::connect(&node.url(), dev_signer(0).unwrap()).unwrap();
    println!("anvil --block-time {block_time}: deploying (one block per step)...");
    let ledger = Ledger::deploy(backend).await.unwrap();
    setup(&ledger).await;
    let mut book = RuleBook::new();
    for e in ledger
        .events(0, ledger.head().await.unwrap())
        .await
        .unwrap()
    {
        book.apply(&e.event);
    }

    let first_block = ledger.head().await.unwrap();
    let start = Instant::now();
    let outcomes = ledger.check_transactions(&inputs).await.unwrap();
    let per_tx_secs = start.elapsed().as_secs_f64();
    let per_tx_gas: u64 = outcomes.iter().map(|o| o.gas_used).sum();
    let blocks = outcomes.iter().map(|o| o.block).max().unwrap() - first_block;

    let (anchor_secs, anchor_gas) = anchored(&ledger, &book, &inputs, 1).await;

    println!();
    println!("{n} decisions, anvil, {block_time} s blocks, 30M gas block limit:");
    println!(
        "  one tx per decision (seed): total gas {per_tx_gas}, {:.0} gas/decision, {:.1} s over {blocks} blocks, {:.1} decisions/s",
        per_tx_gas as f64 / n as f64,
        per_tx_secs,
        n as f64 / per_tx_secs
    );
    println!(
        "  one anchor for all:         total gas {anchor_gas}, {:.1} gas/decision, {:.1} s (one block), {:.1} decisions/s",
        anchor_gas as f64 / n as f64,
        anchor_secs,
        n as f64 / anchor_secs
    );
    println!(
        "  capacity of a 30M-gas block: {} per-decision txs ({:.0} decisions/s at {block_time} s blocks); {} anchors",
        30_000_000 / (per_tx_gas / n as u64).max(1),
        30_000_000.0 / (per_tx_gas as f64 / n as f64) / block_time as f64,
        30_000_000 / anchor_gas.max(1)
    );
    // Machine-readable figures for scripts/bench-report (`BENCH <name> <value> <unit>`).
    println!(
        "BENCH gas_per_decision_check_tx {:.1} gas",
        per_tx_gas as f64 / n as f64
    );
    println!(
        "BENCH gas_per_decision_anchor {:.1} gas",
        anchor_gas as f64 / n as f64
    );
    println!("BENCH check_tx_total_gas {per_tx_gas} gas");
    println!("BENCH anchor_total_gas {anchor_gas} gas");
    println!("BENCH check_tx_wall_s {per_tx_secs:.3} s");
    println!("BENCH check_tx_blocks {blocks} blocks");
    println!(
        "BENCH check_tx_decisions_per_s {:.1} decisions/s",
        n as f64 / per_tx_secs
    );
    println!("BENCH anchor_wall_s {anchor_secs:.3} s");
    println!(
        "BENCH block_capacity_check_txs {} transactions",
        30_000_000 / (per_tx_gas / n as u64).max(1)
    );
    drop(node);

    // --- native evaluation and the embedded chain ---
    let dir = tempfile::tempdir().unwrap();
    let chain = EmbeddedChain::open(dir.path()).unwrap();
    let embedded = Ledger::deploy(chain.backend(dev_signer(0).unwrap().address()))
        .await
        .unwrap();
    setup(&embedded).await;
    let many = readings(1_000_000);
    let start = Instant::now();
    let allowed = many.iter().filter(|i| book.check(i).is_allowed()).count();
    let native_secs = start.elapsed().as_secs_f64();
    println!();
    println!(
        "native evaluator: {} decisions in {:.3} s = {:.0} decisions/s ({allowed} allowed)",
        many.len(),
        native_secs,
        many.len() as f64 / native_secs
    );
    println!(
        "BENCH native_decisions_per_s {:.0} decisions/s",
        many.len() as f64 / native_secs
    );
    let start = Instant::now();
    for input in &inputs {
        embedded.check(input).await.unwrap();
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "embedded chain: {n} contract check() calls in {s:.3} s = {:.0}/s",
        n as f64 / s
    );
    println!(
        "BENCH embedded_check_calls_per_s {:.1} calls/s",
        n as f64 / s
    );
    let start = Instant::now();
    let anchors = 200u8;
    let mut gas = 0;
    for tag in 0..anchors {
        gas = anchored(&embedded, &book, &inputs, tag).await.1;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "embedded chain: {anchors} anchors of {n} decisions (each fsynced) in {s:.3} s = {:.1} anchors/s = {:.0} anchored decisions/s, {gas} gas each",
        f64::from(anchors) / s,
        f64::from(anchors) * n as f64 / s
    );
    println!(
        "BENCH embedded_anchors_per_s {:.1} anchors/s",
        f64::from(anchors) / s
    );
    println!("BENCH embedded_anchor_gas {gas} gas");
}
