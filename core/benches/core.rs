//! wardseal-core benchmarks. One function per group; add a group by writing its function
//! and listing it in `criterion_group!` at the bottom.
//!
//! Run one group with `cargo bench -p wardseal-core --bench core -- merkle`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wardseal_core::Hash;
use wardseal_core::merkle::{self, MerkleTree};

/// Leaves in the benchmarked trees: a large ward's readings over a long batch window.
const MERKLE_LEAVES: u64 = 1_000_000;

/// Distinct leaf hashes `leaf_hash(i as big-endian bytes)` for `i` in `0..count`.
fn merkle_leaf_hashes(count: u64) -> Vec<Hash> {
    (0..count)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect()
}

/// Group `merkle`: roots, tree building and proofs over a 1,000,000-leaf tree.
#[expect(
    clippy::unwrap_used,
    reason = "a benchmark of valid proofs must stop loudly if one fails"
)]
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

criterion_group!(benches, merkle_benches);
criterion_main!(benches);
