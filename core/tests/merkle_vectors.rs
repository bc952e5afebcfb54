//! Known-answer tests against the Certificate Transparency reference vectors.
//!
//! Every expected value below is copied from the reference sources named next to it:
//! - google/certificate-transparency `cpp/merkletree/merkle_tree_test.cc` (`kInputs`,
//!   `kSHA256Roots`, `kSHA256EmptyTreeHash`, `kSHA256Paths`, `kSHA256Proofs`);
//! - transparency-dev/merkle `testonly/constants.go` (`LeafInputs`, `NodeHashes`,
//!   `RootHashes`, `EmptyRootHash`), `proof/verify_test.go` (`inclusionProofs`,
//!   `consistencyProofs`, including the 6 → 7 proof) and `rfc6962/rfc6962_test.go`
//!   (leaf hash of "L123456").
//!
//! The C++ and verify_test.go tables number leaves from 1; the leaf indices below are
//! zero-based (their `leaf - 1`).

use wardseal_core::Hash;
use wardseal_core::merkle::{
    self, ConsistencyProof, InclusionProof, MerkleError, MerkleTree, empty_root,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The eight leaf inputs, hex encoded (`kInputs` / `LeafInputs()`).
const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// `EmptyRootHash()` / `kSHA256EmptyTreeHash`.
const EMPTY_ROOT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Roots of the trees of the first 1..=8 inputs (`kSHA256Roots` / `RootHashes()[1..]`).
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Hashes of every complete subtree of the 8-leaf tree, by level (`NodeHashes()`);
/// level 0 are the leaf hashes of the eight inputs.
const NODE_HASHES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// (zero-based leaf index, tree size, path) from `kSHA256Paths` / `inclusionProofs`
/// (whose 1-based leaves are 1, 6, 3, 2), plus `TestRefInclusionProof` in
/// transparency-dev/merkle `testonly/reference_test.go` for the 2-leaf cases.
const INCLUSION_PROOFS: [(u64, u64, &[&str]); 7] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        2,
        &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
    ),
    (
        1,
        2,
        &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
    ),
];

/// (old size, new size, path) from `kSHA256Proofs` and `consistencyProofs` (which adds
/// the 6 → 7 proof).
const CONSISTENCY_PROOFS: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn hashes(hex: &[&str]) -> Result<Vec<Hash>, Box<dyn std::error::Error>> {
    Ok(hex
        .iter()
        .map(|text| text.parse())
        .collect::<Result<_, _>>()?)
}

fn reference_leaf_hashes() -> Result<Vec<Hash>, Box<dyn std::error::Error>> {
    LEAF_INPUTS
        .iter()
        .map(|input| Ok(merkle::leaf_hash(&hex::decode(input)?)))
        .collect()
}

fn reference_tree() -> Result<MerkleTree, Box<dyn std::error::Error>> {
    Ok(MerkleTree::from_leaf_hashes(reference_leaf_hashes()?))
}

fn root_of_size(size: u64) -> Result<Hash, Box<dyn std::error::Error>> {
    let index = usize::try_from(size)?
        .checked_sub(1)
        .ok_or("the vectors have no root for size 0 in ROOTS")?;
    Ok(ROOTS[index].parse()?)
}

/// A copy of `hash` with one bit flipped.
fn flip(hash: &Hash) -> Hash {
    let mut flipped = *hash;
    flipped.0[0] ^= 0x08;
    flipped
}

#[test]
fn leaf_hashes_match_rfc6962_test_go() -> TestResult {
    assert_eq!(
        merkle::leaf_hash(b"L123456"),
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56".parse()?
    );
    assert_eq!(merkle::leaf_hash(b""), NODE_HASHES[0][0].parse()?);
    assert_eq!(reference_leaf_hashes()?, hashes(NODE_HASHES[0])?);
    Ok(())
}

#[test]
fn empty_tree_root_matches() -> TestResult {
    let expected: Hash = EMPTY_ROOT.parse()?;
    assert_eq!(empty_root(), expected);
    assert_eq!(merkle::root(&[]), expected);
    assert_eq!(MerkleTree::new().root(), expected);
    assert_eq!(reference_tree()?.root_at(0)?, expected);
    Ok(())
}

#[test]
fn interior_nodes_match_node_hashes() -> TestResult {
    for (level, pair) in NODE_HASHES.iter().zip(NODE_HASHES.iter().skip(1)) {
        let (below, above) = (hashes(level)?, hashes(pair)?);
        for (children, parent) in below.chunks(2).zip(&above) {
            let [left, right] = children else {
                return Err("every level of the 8-leaf tree has an even width".into());
            };
            assert_eq!(merkle::node_hash(left, right), *parent);
        }
    }
    Ok(())
}

#[test]
fn roots_of_every_prefix_match() -> TestResult {
    let leaves = reference_leaf_hashes()?;
    let built_at_once = reference_tree()?;
    let mut built_one_by_one = MerkleTree::new();
    for (size, leaf) in (1..).zip(&leaves) {
        built_one_by_one.push(*leaf);
        let expected = root_of_size(size)?;
        assert_eq!(built_one_by_one.root(), expected, "size {size}");
        assert_eq!(built_at_once.root_at(size)?, expected, "size {size}");
        assert_eq!(merkle::root(&leaves[..usize::try_from(size)?]), expected);
    }
    Ok(())
}

#[test]
fn inclusion_proofs_match_and_verify() -> TestResult {
    let tree = reference_tree()?;
    let leaves = reference_leaf_hashes()?;
    for (index, size, path) in INCLUSION_PROOFS {
        let expected = InclusionProof {
            leaf_index: index,
            tree_size: size,
            path: hashes(path)?,
        };
        assert_eq!(
            tree.inclusion_proof(index, size)?,
            expected,
            "{index} in {size}"
        );

        let leaf = leaves[usize::try_from(index)?];
        let root = root_of_size(size)?;
        expected.verify(&leaf, &root)?;

        // The alterations the reference verifier tests try (verify_test.go
        // corruptInclusionProof): none may verify.
        let mut probes = vec![
            InclusionProof {
                leaf_index: index + 1,
                ..expected.clone()
            },
            InclusionProof {
                leaf_index: index ^ 2,
                ..expected.clone()
            },
            InclusionProof {
                tree_size: size * 2,
                ..expected.clone()
            },
            InclusionProof {
                tree_size: size / 2,
                ..expected.clone()
            },
        ];
        if let Some(previous) = index.checked_sub(1) {
            probes.push(InclusionProof {
                leaf_index: previous,
                ..expected.clone()
            });
        }
        let mut trailing = expected.clone();
        trailing.path.push(root);
        probes.push(trailing);
        let mut preceding = expected.clone();
        preceding.path.insert(0, root);
        probes.push(preceding);
        for position in 0..expected.path.len() {
            let mut altered = expected.clone();
            altered.path[position] = flip(&altered.path[position]);
            probes.push(altered);
        }
        if !expected.path.is_empty() {
            let mut truncated = expected.clone();
            truncated.path.pop();
            probes.push(truncated);
        }
        for probe in &probes {
            assert!(
                probe.verify(&leaf, &root).is_err(),
                "{probe:?} must not verify"
            );
        }
        assert!(
            expected
                .verify(&merkle::leaf_hash(b"WrongLeaf"), &root)
                .is_err()
        );
        assert!(expected.verify(&leaf, &EMPTY_ROOT.parse()?).is_err());
    }
    Ok(())
}

#[test]
fn consistency_proofs_match_and_verify() -> TestResult {
    let tree = reference_tree()?;
    for (old_size, new_size, path) in CONSISTENCY_PROOFS {
        let expected = ConsistencyProof {
            old_size,
            new_size,
            path: hashes(path)?,
        };
        assert_eq!(tree.consistency_proof(old_size, new_size)?, expected);

        let (old_root, new_root) = (root_of_size(old_size)?, root_of_size(new_size)?);
        expected.verify(&old_root, &new_root)?;
        if expected.path.is_empty() {
            continue;
        }

        // The alterations of verify_test.go corruptConsistencyProof: none may verify.
        let mut probes = vec![
            ConsistencyProof {
                old_size: old_size - 1,
                ..expected.clone()
            },
            ConsistencyProof {
                old_size: old_size + 1,
                ..expected.clone()
            },
            ConsistencyProof {
                old_size: old_size ^ 2,
                ..expected.clone()
            },
            ConsistencyProof {
                new_size: new_size * 2,
                ..expected.clone()
            },
            ConsistencyProof {
                new_size: new_size / 2,
                ..expected.clone()
            },
            ConsistencyProof {
                path: Vec::new(),
                ..expected.clone()
            },
        ];
        for extra in [old_root, new_root] {
            let mut trailing = expected.clone();
            trailing.path.push(extra);
            probes.push(trailing);
            let mut preceding = expected.clone();
            preceding.path.insert(0, extra);
            probes.push(preceding);
        }
        let mut truncated = expected.clone();
        truncated.path.pop();
        probes.push(truncated);
        for position in 0..expected.path.len() {
            let mut altered = expected.clone();
            altered.path[position] = flip(&altered.path[position]);
            probes.push(altered);
        }
        for probe in &probes {
            assert!(
                probe.verify(&old_root, &new_root).is_err(),
                "{probe:?} must not verify"
            );
        }
        assert!(
            expected.verify(&new_root, &old_root).is_err(),
            "swapped roots"
        );
        assert!(expected.verify(&flip(&old_root), &new_root).is_err());
        assert!(expected.verify(&old_root, &flip(&new_root)).is_err());
    }
    Ok(())
}

#[test]
fn trivial_consistency_cases_follow_the_reference_verifier() -> TestResult {
    // verify_test.go TestVerifyConsistency: equal sizes with equal roots and an empty path
    // verify; unequal roots, a non-empty path or shrinking sizes do not. (Size 0 is refused
    // here, where the reference accepts it: an empty tree needs no proof.)
    let empty: Hash = EMPTY_ROOT.parse()?;
    let root = root_of_size(1)?;
    let same = ConsistencyProof {
        old_size: 1,
        new_size: 1,
        path: Vec::new(),
    };
    same.verify(&root, &root)?;
    assert!(same.verify(&empty, &root).is_err());
    assert!(
        ConsistencyProof {
            path: vec![empty],
            ..same.clone()
        }
        .verify(&root, &root)
        .is_err()
    );
    assert!(
        ConsistencyProof {
            old_size: 2,
            new_size: 1,
            path: Vec::new()
        }
        .verify(&root, &root)
        .is_err()
    );
    assert!(
        ConsistencyProof {
            old_size: 1,
            new_size: 2,
            path: Vec::new()
        }
        .verify(&root, &root)
        .is_err()
    );
    assert_eq!(
        ConsistencyProof {
            old_size: 0,
            new_size: 1,
            path: Vec::new()
        }
        .verify(&empty, &root),
        Err(MerkleError::EmptyOldTree { new_size: 1 })
    );
    Ok(())
}
