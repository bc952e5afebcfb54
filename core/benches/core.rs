//! wardseal-core benchmarks. One function per group; add a group by writing its function
//! and listing it in `criterion_group!` at the bottom.
//!
//! Run one group with `cargo bench -p wardseal-core --bench core -- merkle`.
//! scripts/bench-report reads criterion's median estimates (`estimates.json`) of these
//! benchmarks rather than `BENCH` lines: criterion does not hand them to this code.
#![expect(
    clippy::unwrap_used,
    reason = "benchmarks of valid inputs must stop loudly if one fails"
)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wardseal_core::Hash;
use wardseal_core::batch::BatchHeader;
use wardseal_core::merkle::{self, MerkleTree};
use wardseal_core::reading::{Reading, json};

/// Leaves in the benchmarked trees: a large ward's readings over a long batch window.
const MERKLE_LEAVES: u64 = 1_000_000;

/// Distinct leaf hashes `leaf_hash(i as big-endian bytes)` for `i` in `0..count`.
fn merkle_leaf_hashes(count: u64) -> Vec<Hash> {
    (0..count)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect()
}

/// Group `merkle`: roots, tree building and proofs over a 1,000,000-leaf tree.
fn merkle_benches(c: &mut Criterion) {
    let leaves = merkle_leaf_hashes(MERKLE_LEAVES);
    let mut group = c.benchmark_group("merkle");
    group.sample_size(10);

    group.throughput(Throughput::Elements(MERKLE_LEAVES));
    group.bench_function("root_1m_leaves", |b| {
        b.iter(|| merkle::root(black_box(&leaves)))
    });
    group.bench_function("tree_build_1m_leaves", |b| {
        b.iter_batched(
            || leaves.clone(),
            |leaves| MerkleTree::from_leaf_hashes(black_box(leaves)),
            BatchSize::LargeInput,
        )
    });

    let tree = MerkleTree::from_leaf_hashes(leaves);
    let root = tree.root();
    // Proofs are per query, so they report queries per second.
    group.throughput(Throughput::Elements(1));
    group.sample_size(50);
    group.bench_function("inclusion_proof_and_verify_1m", |b| {
        let mut index = 0;
        b.iter(|| {
            // Stride through the tree so each query walks a different path.
            index = (index + 7_919) % MERKLE_LEAVES;
            let proof = tree
                .inclusion_proof(black_box(index), MERKLE_LEAVES)
                .unwrap();
            proof.verify(&tree.leaves()[index as usize], &root).unwrap();
        })
    });
    group.bench_function("consistency_proof_and_verify_1m", |b| {
        let mut old_size = 0;
        b.iter(|| {
            old_size = (old_size + 7_919) % (MERKLE_LEAVES - 1) + 1;
            let proof = tree
                .consistency_proof(black_box(old_size), MERKLE_LEAVES)
                .unwrap();
            let old_root = tree.root_at(old_size).unwrap();
            proof.verify(&old_root, &root).unwrap();
        })
    });
    group.finish();
}

/// A vital-sign reading and an ECG block (10 s at 250 Hz), as devices send them.
fn sample_readings() -> [(&'static str, Reading); 2] {
    let device: wardseal_core::epc::Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
        .parse()
        .unwrap();
    let vital = json::parse_measurement(
        r#"{"type":"body_temperature","value":36.6,"unit":"Cel","time":"2026-11-21T08:00:00.25Z","seq":1041}"#,
    )
    .unwrap();
    let samples: Vec<String> = (0..2_500)
        .map(|i| ((i * 37) % 400 - 200).to_string())
        .collect();
    let ecg = json::parse_measurement(&format!(
        r#"{{"type":"ecg","unit":"mV","time":"2026-11-21T08:00:00Z","seq":9,"samples":{{"origin":0,"period_ms":4,"factor":0.005,"data":[{}]}}}}"#,
        samples.join(",")
    ))
    .unwrap();
    [
        ("vital", Reading::new(device.clone(), vital)),
        ("ecg_2500", Reading::new(device, ecg)),
    ]
}

/// Group `canonical`: canonical encoding, decoding and leaf hashing of readings, the JSON
/// front door, and batch-header encoding.
fn canonical_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonical");
    for (name, reading) in sample_readings() {
        let bytes = reading.canonical_bytes();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| black_box(&reading).canonical_bytes())
        });
        group.bench_function(format!("leaf_hash_{name}"), |b| {
            b.iter(|| black_box(&reading).leaf_hash())
        });
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| Reading::from_canonical_bytes(black_box(&bytes)).unwrap())
        });
    }

    let one = r#"{"type":"heart_rate","value":72,"unit":"/min","time":"2026-11-21T08:00:00.250Z","seq":1041}"#;
    let body = format!("[{}]", vec![one; json::MAX_READINGS_PER_REQUEST].join(","));
    group.throughput(Throughput::Elements(json::MAX_READINGS_PER_REQUEST as u64));
    group.bench_function("json_parse_body_1000", |b| {
        b.iter(|| json::parse_body(black_box(body.as_bytes())).unwrap())
    });

    let leaves: Vec<Hash> = (0u64..1_000)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let time = "2026-11-21T08:00:00Z".parse().unwrap();
    let header = BatchHeader::for_leaves(
        "P-000123".parse().unwrap(),
        "ward-3A".parse().unwrap(),
        None,
        &leaves,
        (time, time),
        wardseal_core::signature::SignatureAlgorithm::EcdsaP256Sha256,
    )
    .unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("batch_header_hash", |b| {
        b.iter(|| black_box(&header).hash())
    });
    group.finish();
}

criterion_group!(benches, merkle_benches, canonical_benches);
criterion_main!(benches);
