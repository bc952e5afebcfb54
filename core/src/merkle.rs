//! RFC 9162 (Certificate Transparency v2) Merkle trees over reading leaf hashes.
//!
//! A collector groups a patient's readings into a Merkle tree and the patient's card signs
//! its root; storage recomputes the root, and anyone holding a root can check that a reading
//! is in the tree ([`InclusionProof`]) or that a later tree extends an earlier one
//! ([`ConsistencyProof`]).
//!
//! Hashing follows RFC 9162 §2.1.1 with SHA-256: a leaf is `SHA-256(0x00 ‖ bytes)`
//! ([`leaf_hash`]), an interior node `SHA-256(0x01 ‖ left ‖ right)` ([`node_hash`]) and the
//! empty tree `SHA-256("")` ([`empty_root`]). The distinct prefixes keep a leaf from being
//! passed off as an interior node. Trees are built over leaf hashes: readings compute their
//! own leaf hash, so this module never sees reading bytes.
//!
//! The tree of `n > 1` leaves splits at `k`, the largest power of two smaller than `n`:
//! `MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))`. Proof verification implements the
//! algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step by step.
//!
//! ```
//! use wardseal_core::merkle::{self, MerkleTree};
//!
//! let leaves: Vec<_> = [b"a", b"b", b"c"].iter().map(|bytes| merkle::leaf_hash(*bytes)).collect();
//! let tree = MerkleTree::from_leaf_hashes(leaves.clone());
//! assert_eq!(tree.root(), merkle::root(&leaves));
//!
//! let proof = tree.inclusion_proof(2, 3)?;
//! proof.verify(&leaves[2], &tree.root())?;
//!
//! let bigger = MerkleTree::from_leaf_hashes([leaves.as_slice(), &leaves].concat());
//! let consistency = bigger.consistency_proof(3, 6)?;
//! consistency.verify(&tree.root(), &bigger.root())?;
//! # Ok::<(), wardseal_core::merkle::MerkleError>(())
//! ```

use std::fmt;
use std::iter;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Hash;

/// Domain-separation prefix of a leaf hash (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// The leaf hash of `bytes`: `SHA-256(0x00 ‖ bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(bytes);
    Hash(hasher.finalize().into())
}

/// The interior node over two subtrees: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One 65-byte message hashed in one call: cheaper than three `update`s, and this is
    // the inner loop of every root computation.
    let mut message = [0u8; 65];
    let (prefix, children) = message.split_at_mut(1);
    let (left_half, right_half) = children.split_at_mut(32);
    prefix.copy_from_slice(&[NODE_PREFIX]);
    left_half.copy_from_slice(&left.0);
    right_half.copy_from_slice(&right.0);
    Hash::sha256(&message)
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash::sha256(&[])
}

/// The RFC 9162 root (Merkle Tree Hash) of `leaf_hashes`, computed in one pass.
///
/// Runs in `n - 1` node hashes and one buffer of `⌈n/2⌉` hashes, without recursion.
///
/// The RFC defines the root recursively, splitting at the largest power of two `k < n`.
/// Folding levels bottom-up instead — pair neighbours `(0,1), (2,3), …` and carry an odd
/// last node up unchanged — builds the same tree: the left part has `k = 2^j` leaves, a
/// multiple of every level's pair width below level `j`, so no pair ever straddles the
/// split and after `j` levels the left part is exactly `MTH(D[0:k])`. The right part starts
/// on a pair boundary, so it folds as it would on its own (into `MTH(D[k:n])`, by induction),
/// and having at most `k` leaves it is a single node by level `j`. Level `j` then holds those
/// two nodes and their pair is the root. A property test checks this against the recursion.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => empty_root(),
        [only] => *only,
        _ => {
            // The first level is read from the input, so only half the leaves are copied.
            let mut level: Vec<Hash> = leaf_hashes.chunks(2).map(fold_pair).collect();
            while level.len() > 1 {
                let width = level.len();
                // Parent `i` overwrites slot `i`, which the loop has already read
                // (children live at `2i` and `2i + 1`), so one buffer serves every level.
                for parent in 0..width / 2 {
                    level[parent] = node_hash(&level[2 * parent], &level[2 * parent + 1]);
                }
                if width % 2 == 1 {
                    level[width / 2] = level[width - 1];
                }
                level.truncate(width.div_ceil(2));
            }
            level.first().copied().unwrap_or_else(empty_root)
        }
    }
}

/// Hashes a pair of neighbours, or carries a lone last node up unchanged.
fn fold_pair(pair: &[Hash]) -> Hash {
    match pair {
        [left, right] => node_hash(left, right),
        [odd] => *odd,
        // `chunks(2)` yields one or two items; an empty chunk would mean an empty input,
        // which `root` handles before folding.
        _ => empty_root(),
    }
}

/// The largest power of two strictly smaller than `n`, for `n >= 2` (RFC 9162's `k`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2, "a tree of {n} leaves is not split");
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// Why a Merkle tree query, proof request or proof verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A leaf index is not inside the tree (indices run from 0 to tree size − 1).
    #[error(
        "leaf index {index} is outside a tree of {tree_size} leaves (valid indices are 0 to tree size - 1)"
    )]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The size of the tree the index was meant for.
        tree_size: u64,
    },
    /// A tree size larger than the number of leaves held was asked for.
    #[error("a tree of {tree_size} leaves was asked for but only {leaf_count} leaves are held")]
    TreeSizeExceedsLeafCount {
        /// The tree size asked for.
        tree_size: u64,
        /// The number of leaves the tree holds.
        leaf_count: u64,
    },
    /// A consistency proof was asked for or given from a larger tree to a smaller one.
    #[error(
        "a consistency proof goes from an old tree to a new one that extends it, but the old size {old_size} is larger than the new size {new_size}"
    )]
    OldSizeExceedsNewSize {
        /// The size of the earlier tree.
        old_size: u64,
        /// The size of the later tree.
        new_size: u64,
    },
    /// A consistency proof was asked for or given from the empty tree, which RFC 9162 does
    /// not define: the empty tree is a prefix of every tree, so there is nothing to prove.
    #[error(
        "a consistency proof needs an old tree of at least one leaf; the empty tree is a prefix of every tree (new size {new_size}) and needs no proof"
    )]
    EmptyOldTree {
        /// The size of the later tree.
        new_size: u64,
    },
    /// A proof holds fewer hashes than its leaf index and tree sizes require.
    #[error("the proof path holds {actual} hashes but these tree sizes need {expected}")]
    PathTooShort {
        /// The number of hashes the sizes (and leaf index) require.
        expected: usize,
        /// The number of hashes the proof holds.
        actual: usize,
    },
    /// A proof holds more hashes than its leaf index and tree sizes require.
    #[error("the proof path holds {actual} hashes but these tree sizes need only {expected}")]
    PathTooLong {
        /// The number of hashes the sizes (and leaf index) require.
        expected: usize,
        /// The number of hashes the proof holds.
        actual: usize,
    },
    /// An inclusion proof leads to a root other than the trusted one: the leaf is not in
    /// that tree at that index, or the proof is corrupt.
    #[error("the inclusion proof leads to root {computed} but the trusted root is {expected}")]
    RootMismatch {
        /// The root the proof and leaf hash lead to.
        computed: Hash,
        /// The trusted root the proof was checked against.
        expected: Hash,
    },
    /// A consistency proof does not lead to the trusted root of the old tree.
    #[error(
        "the consistency proof leads to old root {computed} but the trusted old root is {expected}"
    )]
    OldRootMismatch {
        /// The old root the proof leads to.
        computed: Hash,
        /// The trusted old root.
        expected: Hash,
    },
    /// A consistency proof does not lead to the trusted root of the new tree.
    #[error(
        "the consistency proof leads to new root {computed} but the trusted new root is {expected}"
    )]
    NewRootMismatch {
        /// The new root the proof leads to.
        computed: Hash,
        /// The trusted new root.
        expected: Hash,
    },
    /// Two trees of the same size have different roots, so neither extends the other.
    #[error("two trees of {tree_size} leaves have different roots, so they hold different leaves")]
    EqualSizeRootsDiffer {
        /// The size of both trees.
        tree_size: u64,
    },
}

/// Proof that a leaf hash sits at `leaf_index` in the tree of `tree_size` leaves
/// (RFC 9162 §2.1.3). The path lists sibling hashes from the leaf up to the root.
///
/// The proof binds the leaf to the root, not to `tree_size`: a leaf's path can have the
/// same shape in trees of several sizes (leaf 0 of 3 leaves and of 4, say). Take the size
/// from the same signed statement as the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Zero-based index of the leaf.
    pub leaf_index: u64,
    /// Number of leaves in the tree whose root the proof leads to.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

/// Which side a sibling joins the running hash from, in RFC 9162's proof walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    /// `HASH(0x01 ‖ sibling ‖ running)`: the sibling is the left child.
    SiblingLeft,
    /// `HASH(0x01 ‖ running ‖ sibling)`: the sibling is the right child.
    SiblingRight,
}

/// The `fn`/`sn` walk of RFC 9162 §2.1.3.2 step 4 (and §2.1.4.2 step 6), one item per path
/// element. It ends when `sn` reaches 0, so its length is the path length the sizes need.
#[derive(Debug, Clone)]
struct PathWalk {
    /// The RFC's `fn`: the index of the running node on its level.
    first: u64,
    /// The RFC's `sn`: the index of the last node on that level.
    second: u64,
}

impl Iterator for PathWalk {
    type Item = Join;

    fn next(&mut self) -> Option<Join> {
        // 4a / 6a: no path element is expected once `sn` is 0.
        if self.second == 0 {
            return None;
        }
        // 4b / 6b: the sibling is on the left when the running node is a right child, or
        // when it is the last node of its level and has no right sibling.
        let join = if self.first & 1 == 1 || self.first == self.second {
            if self.first & 1 == 0 {
                // A last node without a right sibling was carried up unchanged: skip the
                // levels it was carried through.
                while self.first & 1 == 0 && self.first != 0 {
                    self.first >>= 1;
                    self.second >>= 1;
                }
            }
            Join::SiblingLeft
        } else {
            Join::SiblingRight
        };
        // 4c / 6b (finally): one level up.
        self.first >>= 1;
        self.second >>= 1;
        Some(join)
    }
}

/// Checks a path length against the walk's, before any hashing, so that an oversized path
/// from the network costs nothing.
fn check_path_length(expected: usize, actual: usize) -> Result<(), MerkleError> {
    match actual.cmp(&expected) {
        std::cmp::Ordering::Less => Err(MerkleError::PathTooShort { expected, actual }),
        std::cmp::Ordering::Greater => Err(MerkleError::PathTooLong { expected, actual }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

impl InclusionProof {
    /// The root this proof leads to from `leaf_hash` (RFC 9162 §2.1.3.2 steps 1–4).
    ///
    /// Useful to a caller that trusts a root from somewhere else; [`Self::verify`] compares
    /// with it directly.
    pub fn root_from_leaf(&self, leaf_hash: &Hash) -> Result<Hash, MerkleError> {
        // 1. The leaf must be inside the tree.
        if self.leaf_index >= self.tree_size {
            return Err(MerkleError::IndexOutOfRange {
                index: self.leaf_index,
                tree_size: self.tree_size,
            });
        }
        // 2. fn = leaf_index, sn = tree_size - 1 (cannot underflow: tree_size > leaf_index).
        let walk = PathWalk {
            first: self.leaf_index,
            second: self.tree_size - 1,
        };
        // 4a and 5 (sn must end at 0) together require the path to be exactly as long as
        // the walk.
        check_path_length(walk.clone().count(), self.path.len())?;
        // 3. r = hash; 4b. fold the path in.
        let root = walk
            .zip(&self.path)
            .fold(*leaf_hash, |running, (join, sibling)| match join {
                Join::SiblingLeft => node_hash(sibling, &running),
                Join::SiblingRight => node_hash(&running, sibling),
            });
        Ok(root)
    }

    /// Checks that `leaf_hash` is at `leaf_index` in the tree of `tree_size` leaves whose
    /// root is `root` (RFC 9162 §2.1.3.2).
    pub fn verify(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), MerkleError> {
        // 5. r must equal root_hash.
        let computed = self.root_from_leaf(leaf_hash)?;
        if computed == *root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch {
                computed,
                expected: *root,
            })
        }
    }
}

/// Proof that the tree of `new_size` leaves extends the tree of its first `old_size` leaves
/// (RFC 9162 §2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Number of leaves in the earlier tree.
    pub old_size: u64,
    /// Number of leaves in the later tree.
    pub new_size: u64,
    /// Subtree hashes, as RFC 9162 §2.1.4.1 orders them.
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
    /// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
    ///
    /// The RFC covers `0 < old_size < new_size`. Equal sizes are accepted with an empty
    /// path when the roots are equal, as the Certificate Transparency implementations do;
    /// an empty old tree is refused ([`MerkleError::EmptyOldTree`]).
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), MerkleError> {
        let (old_size, new_size) = (self.old_size, self.new_size);
        if old_size > new_size {
            return Err(MerkleError::OldSizeExceedsNewSize { old_size, new_size });
        }
        if old_size == 0 {
            return Err(MerkleError::EmptyOldTree { new_size });
        }
        if old_size == new_size {
            check_path_length(0, self.path.len())?;
            return if old_root == new_root {
                Ok(())
            } else {
                Err(MerkleError::EqualSizeRootsDiffer {
                    tree_size: old_size,
                })
            };
        }

        // 3. fn = first - 1, sn = second - 1 (cannot underflow: 0 < first < second).
        let mut walk = PathWalk {
            first: old_size - 1,
            second: new_size - 1,
        };
        // 4. Skip the levels where the old tree's last node is a right child: the path
        // starts at the root of the old tree's last complete subtree.
        while walk.first & 1 == 1 {
            walk.first >>= 1;
            walk.second >>= 1;
        }
        // 2. When the old tree is complete its root is that subtree, and the path omits it.
        let old_root_prepended = old_size.is_power_of_two();
        // 1, 6a and 7 (sn must end at 0): the path, with the old root prepended, holds the
        // starting subtree and then exactly one hash per step of the walk.
        let expected = (1 + walk.clone().count()) - usize::from(old_root_prepended);
        check_path_length(expected, self.path.len())?;

        let mut path = iter::once(old_root)
            .filter(|_| old_root_prepended)
            .chain(&self.path);
        // 5. fr = sr = the first value (present: the length check demands at least one
        // element when the old root is not prepended).
        let start = path.next().copied().unwrap_or(*old_root);
        let (mut old_running, mut new_running) = (start, start);
        // 6. Fold the rest in: hashes left of the old tree's last subtree belong to both
        // trees, hashes right of it only to the new one.
        for (join, hash) in walk.zip(path) {
            match join {
                Join::SiblingLeft => {
                    old_running = node_hash(hash, &old_running);
                    new_running = node_hash(hash, &new_running);
                }
                Join::SiblingRight => new_running = node_hash(&new_running, hash),
            }
        }
        // 7. fr = first_hash and sr = second_hash.
        if old_running != *old_root {
            return Err(MerkleError::OldRootMismatch {
                computed: old_running,
                expected: *old_root,
            });
        }
        if new_running != *new_root {
            return Err(MerkleError::NewRootMismatch {
                computed: new_running,
                expected: *new_root,
            });
        }
        Ok(())
    }
}

/// An append-only RFC 9162 Merkle tree over leaf hashes that answers roots of any prefix
/// and inclusion and consistency proofs in `O(log n)` hashes.
///
/// Beside the leaves it keeps the hash of every complete, aligned subtree (about one more
/// hash per leaf): any prefix's root is then a fold of at most 64 of them. Appending a leaf
/// costs one node hash on average.
#[derive(Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[h][i]` is the root of leaves `i·2^h .. (i+1)·2^h`; `levels[0]` are the
    /// leaves. Only complete subtrees are stored, so level `h` holds `len >> h` hashes.
    /// Never empty: level 0 exists even in the empty tree.
    levels: Vec<Vec<Hash>>,
}

impl Default for MerkleTree {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MerkleTree {
    // A derived Debug would print every stored hash (two million for a million leaves).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleTree")
            .field("len", &self.len())
            .field("root", &self.root())
            .finish()
    }
}

impl MerkleTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self {
            levels: vec![Vec::new()],
        }
    }

    /// A tree over `leaf_hashes`, in order.
    pub fn from_leaf_hashes(leaf_hashes: Vec<Hash>) -> Self {
        let mut levels = vec![leaf_hashes];
        while let Some(below) = levels.last().filter(|level| level.len() >= 2) {
            let above = below
                .chunks_exact(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    // `chunks_exact(2)` only yields pairs.
                    _ => empty_root(),
                })
                .collect();
            levels.push(above);
        }
        Self { levels }
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut height = 0;
        let mut carried = leaf_hash;
        loop {
            let Some(level) = self.levels.get_mut(height) else {
                self.levels.push(vec![carried]);
                return;
            };
            level.push(carried);
            // The new node completes a subtree one level up when it is a right child.
            match level.as_slice() {
                [.., left, right] if level.len() % 2 == 0 => carried = node_hash(left, right),
                _ => return,
            }
            height += 1;
        }
    }

    /// The number of leaves, as a `u64` like the tree sizes in proofs.
    pub fn len(&self) -> u64 {
        self.leaves().len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves().is_empty()
    }

    /// The leaf hashes, in order.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.range_root(0, self.len())
    }

    /// The root of the tree of the first `tree_size` leaves.
    pub fn root_at(&self, tree_size: u64) -> Result<Hash, MerkleError> {
        self.check_tree_size(tree_size)?;
        Ok(self.range_root(0, tree_size))
    }

    /// The inclusion proof of leaf `leaf_index` in the tree of the first `tree_size` leaves
    /// (RFC 9162 §2.1.3.1, `PATH(m, D[n])`).
    pub fn inclusion_proof(
        &self,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, MerkleError> {
        self.check_tree_size(tree_size)?;
        if leaf_index >= tree_size {
            return Err(MerkleError::IndexOutOfRange {
                index: leaf_index,
                tree_size,
            });
        }
        // Descend from the root towards the leaf, taking the other half's root at each
        // split; the RFC lists them leaf first, so the path is reversed at the end.
        let (mut start, mut end) = (0, tree_size);
        let mut path = Vec::with_capacity(64);
        while end - start > 1 {
            let middle = start + split_point(end - start);
            if leaf_index < middle {
                path.push(self.range_root(middle, end));
                end = middle;
            } else {
                path.push(self.range_root(start, middle));
                start = middle;
            }
        }
        path.reverse();
        Ok(InclusionProof {
            leaf_index,
            tree_size,
            path,
        })
    }

    /// The consistency proof from the tree of the first `old_size` leaves to the tree of
    /// the first `new_size` leaves (RFC 9162 §2.1.4.1, `PROOF(m, D[n])`).
    ///
    /// `old_size` must be at least 1; for `old_size == new_size` the path is empty.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, MerkleError> {
        self.check_tree_size(new_size)?;
        if old_size > new_size {
            return Err(MerkleError::OldSizeExceedsNewSize { old_size, new_size });
        }
        if old_size == 0 {
            return Err(MerkleError::EmptyOldTree { new_size });
        }
        // SUBPROOF(m, D[start:end], b), unrolled: descend while the old tree's end lies
        // strictly inside the current subtree, recording the half that is not descended
        // into; `old_is_root` is the RFC's `b` (the subtree is still on the left spine,
        // whose complete subtrees the verifier already knows as the old root).
        let (mut start, mut end) = (0, new_size);
        let mut old_is_root = true;
        let mut path = Vec::with_capacity(64);
        while old_size != end {
            let middle = start + split_point(end - start);
            if old_size <= middle {
                path.push(self.range_root(middle, end));
                end = middle;
            } else {
                path.push(self.range_root(start, middle));
                start = middle;
                old_is_root = false;
            }
        }
        if !old_is_root {
            path.push(self.range_root(start, end));
        }
        path.reverse();
        Ok(ConsistencyProof {
            old_size,
            new_size,
            path,
        })
    }

    fn check_tree_size(&self, tree_size: u64) -> Result<(), MerkleError> {
        if tree_size > self.len() {
            return Err(MerkleError::TreeSizeExceedsLeafCount {
                tree_size,
                leaf_count: self.len(),
            });
        }
        Ok(())
    }

    /// `MTH(D[start:end])`, for `start <= end <= len` with `start` a multiple of a power of
    /// two at least `end - start` — true of every range the RFC's recursion visits.
    ///
    /// The range splits into complete subtrees sized by the binary digits of its length,
    /// largest first; each is stored. MTH nests them to the right (a complete left subtree,
    /// then the rest), so they are folded from the right.
    fn range_root(&self, start: u64, end: u64) -> Hash {
        let size = end - start;
        let mut boundary = end;
        let mut folded: Option<Hash> = None;
        for height in 0..u64::BITS {
            if size >> height & 1 == 0 {
                continue;
            }
            boundary -= 1 << height;
            // The subtree [boundary, boundary + 2^height) is aligned: `boundary` is `start`
            // plus the larger digits of `size`, all multiples of 2^(height+1), and `start`
            // is a multiple of a power of two above `size`.
            let subtree = self.complete_subtree(height, boundary >> height);
            folded = Some(match folded {
                None => subtree,
                Some(right) => node_hash(&subtree, &right),
            });
        }
        folded.unwrap_or_else(empty_root)
    }

    /// The stored root of the complete subtree `index` on level `height`.
    fn complete_subtree(&self, height: u32, index: u64) -> Hash {
        // In bounds: callers ask only for aligned subtrees inside `0..len`, checked against
        // the caller's tree size, and `levels[height]` holds every one of those.
        self.levels[height as usize][index as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    // Reference implementations written straight from the recursive definitions of
    // RFC 9162 §2.1.1 (MTH), §2.1.3.1 (PATH) and §2.1.4.1 (PROOF/SUBPROOF).

    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        if m < k {
            let mut path = reference_path(m, &leaves[..k]);
            path.push(reference_root(&leaves[k..]));
            path
        } else {
            let mut path = reference_path(m - k, &leaves[k..]);
            path.push(reference_root(&leaves[..k]));
            path
        }
    }

    fn reference_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![reference_root(leaves)]
            };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut proof = reference_subproof(m, &leaves[..k], b);
            proof.push(reference_root(&leaves[k..]));
            proof
        } else {
            let mut proof = reference_subproof(m - k, &leaves[k..], false);
            proof.push(reference_root(&leaves[..k]));
            proof
        }
    }

    fn flip(hash: &Hash) -> Hash {
        let mut flipped = *hash;
        flipped.0[0] ^= 0x10;
        flipped
    }

    fn leaves_strategy() -> impl Strategy<Value = Vec<Hash>> {
        proptest::collection::vec(any::<[u8; 32]>().prop_map(Hash), 1..300)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn iterative_roots_equal_the_recursive_definition(leaves in leaves_strategy(), cut in any::<Index>()) {
            let expected = reference_root(&leaves);
            prop_assert_eq!(root(&leaves), expected);

            let tree = MerkleTree::from_leaf_hashes(leaves.clone());
            prop_assert_eq!(tree.root(), expected);

            let size = cut.index(leaves.len() + 1);
            let prefix_root = reference_root(&leaves[..size]);
            prop_assert_eq!(tree.root_at(size as u64)?, prefix_root);
            prop_assert_eq!(root(&leaves[..size]), prefix_root);
        }

        #[test]
        fn pushing_leaves_builds_the_same_tree(leaves in leaves_strategy()) {
            let mut pushed = MerkleTree::new();
            for leaf in &leaves {
                pushed.push(*leaf);
            }
            prop_assert_eq!(pushed, MerkleTree::from_leaf_hashes(leaves));
        }

        #[test]
        fn every_inclusion_proof_verifies_and_alterations_fail(leaves in leaves_strategy(), pick in any::<Index>()) {
            let tree = MerkleTree::from_leaf_hashes(leaves.clone());
            let size = leaves.len() as u64;
            let tree_root = tree.root();

            let picked = pick.index(leaves.len());
            prop_assert_eq!(
                tree.inclusion_proof(picked as u64, size)?.path,
                reference_path(picked, &leaves)
            );

            for (index, leaf) in leaves.iter().enumerate() {
                let proof = tree.inclusion_proof(index as u64, size)?;
                prop_assert_eq!(proof.verify(leaf, &tree_root), Ok(()));

                prop_assert!(proof.verify(&flip(leaf), &tree_root).is_err());
                prop_assert!(proof.verify(leaf, &flip(&tree_root)).is_err());
                if size > 1 {
                    let moved = InclusionProof { leaf_index: (index as u64 + 1) % size, ..proof.clone() };
                    prop_assert!(moved.verify(leaf, &tree_root).is_err());
                }
                for position in 0..proof.path.len() {
                    let mut altered = proof.clone();
                    altered.path[position] = flip(&altered.path[position]);
                    prop_assert!(altered.verify(leaf, &tree_root).is_err());
                }
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_alterations_fail(leaves in leaves_strategy(), pick in any::<Index>()) {
            let tree = MerkleTree::from_leaf_hashes(leaves.clone());
            let new_size = leaves.len() as u64;
            let new_root = tree.root();

            let picked = pick.index(leaves.len()) + 1;
            prop_assert_eq!(
                tree.consistency_proof(picked as u64, new_size)?.path,
                reference_subproof(picked, &leaves, true)
            );

            for old_size in 1..=new_size {
                let old_root = tree.root_at(old_size)?;
                let proof = tree.consistency_proof(old_size, new_size)?;
                prop_assert_eq!(proof.verify(&old_root, &new_root), Ok(()));

                prop_assert!(proof.verify(&flip(&old_root), &new_root).is_err());
                prop_assert!(proof.verify(&old_root, &flip(&new_root)).is_err());
                for position in 0..proof.path.len() {
                    let mut altered = proof.clone();
                    altered.path[position] = flip(&altered.path[position]);
                    prop_assert!(altered.verify(&old_root, &new_root).is_err());
                }
                if old_size < new_size {
                    let shrunk = ConsistencyProof { old_size: old_size - 1, ..proof.clone() };
                    prop_assert!(shrunk.verify(&old_root, &new_root).is_err());
                    let grown = ConsistencyProof { old_size: old_size + 1, ..proof.clone() };
                    prop_assert!(grown.verify(&old_root, &new_root).is_err());
                    let swapped = proof.verify(&new_root, &old_root);
                    prop_assert!(swapped.is_err());
                }
            }
        }
    }

    fn sample_tree(size: u64) -> MerkleTree {
        MerkleTree::from_leaf_hashes((0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect())
    }

    #[test]
    fn leaf_and_node_hashes_use_distinct_prefixes() {
        let left = leaf_hash(b"left");
        let right = leaf_hash(b"right");
        let mut concatenated = left.0.to_vec();
        concatenated.extend_from_slice(&right.0);
        // A node must not be forgeable as a leaf over its children's bytes.
        assert_ne!(node_hash(&left, &right), leaf_hash(&concatenated));
        assert_ne!(node_hash(&left, &right), node_hash(&right, &left));
        assert_eq!(leaf_hash(b"abc"), Hash::sha256(b"\x00abc"));
        assert_eq!(
            node_hash(&left, &right),
            Hash::sha256(&[&[1u8][..], &left.0, &right.0].concat())
        );
    }

    #[test]
    fn empty_tree_has_the_empty_root_and_no_proofs() {
        let tree = MerkleTree::new();
        assert!(tree.is_empty());
        assert_eq!(tree.root(), Hash::sha256(b""));
        assert_eq!(root(&[]), Hash::sha256(b""));
        assert_eq!(tree.root_at(0), Ok(empty_root()));
        assert_eq!(
            tree.inclusion_proof(0, 0),
            Err(MerkleError::IndexOutOfRange {
                index: 0,
                tree_size: 0
            })
        );
    }

    #[test]
    fn proof_requests_outside_the_tree_are_refused() {
        let tree = sample_tree(5);
        assert_eq!(
            tree.root_at(6),
            Err(MerkleError::TreeSizeExceedsLeafCount {
                tree_size: 6,
                leaf_count: 5
            })
        );
        assert_eq!(
            tree.inclusion_proof(5, 5),
            Err(MerkleError::IndexOutOfRange {
                index: 5,
                tree_size: 5
            })
        );
        assert_eq!(
            tree.inclusion_proof(0, 6),
            Err(MerkleError::TreeSizeExceedsLeafCount {
                tree_size: 6,
                leaf_count: 5
            })
        );
        assert_eq!(
            tree.consistency_proof(4, 3),
            Err(MerkleError::OldSizeExceedsNewSize {
                old_size: 4,
                new_size: 3
            })
        );
        assert_eq!(
            tree.consistency_proof(0, 3),
            Err(MerkleError::EmptyOldTree { new_size: 3 })
        );
        assert_eq!(
            tree.consistency_proof(1, u64::MAX),
            Err(MerkleError::TreeSizeExceedsLeafCount {
                tree_size: u64::MAX,
                leaf_count: 5
            })
        );
    }

    #[test]
    fn inclusion_verification_reports_what_is_wrong() -> Result<(), MerkleError> {
        let tree = sample_tree(7);
        let leaf = tree.leaves()[4];
        let proof = tree.inclusion_proof(4, 7)?;
        assert_eq!(proof.path.len(), 3);

        let mut long = proof.clone();
        long.path.push(tree.root());
        assert_eq!(
            long.verify(&leaf, &tree.root()),
            Err(MerkleError::PathTooLong {
                expected: 3,
                actual: 4
            })
        );
        let mut short = proof.clone();
        short.path.pop();
        assert_eq!(
            short.verify(&leaf, &tree.root()),
            Err(MerkleError::PathTooShort {
                expected: 3,
                actual: 2
            })
        );
        let outside = InclusionProof {
            leaf_index: 7,
            ..proof.clone()
        };
        assert_eq!(
            outside.verify(&leaf, &tree.root()),
            Err(MerkleError::IndexOutOfRange {
                index: 7,
                tree_size: 7
            })
        );
        let empty = InclusionProof {
            leaf_index: 0,
            tree_size: 0,
            path: Vec::new(),
        };
        assert!(matches!(
            empty.verify(&leaf, &empty_root()),
            Err(MerkleError::IndexOutOfRange { .. })
        ));
        let wrong_leaf = leaf_hash(b"not in the tree");
        assert_eq!(
            proof.verify(&wrong_leaf, &tree.root()),
            Err(MerkleError::RootMismatch {
                computed: proof.root_from_leaf(&wrong_leaf)?,
                expected: tree.root()
            })
        );
        Ok(())
    }

    #[test]
    fn huge_sizes_do_not_overflow_or_loop() -> Result<(), String> {
        let leaf = leaf_hash(b"x");
        let mut proof = InclusionProof {
            leaf_index: u64::MAX - 1,
            tree_size: u64::MAX,
            path: Vec::new(),
        };
        let expected = match proof.verify(&leaf, &leaf) {
            Err(MerkleError::PathTooShort {
                expected,
                actual: 0,
            }) => expected,
            other => return Err(format!("an empty path must be too short, got {other:?}")),
        };
        assert!((1..=64).contains(&expected));
        proof.path = vec![leaf; expected];
        assert!(matches!(
            proof.verify(&leaf, &leaf),
            Err(MerkleError::RootMismatch { .. })
        ));

        let proof = ConsistencyProof {
            old_size: u64::MAX - 1,
            new_size: u64::MAX,
            path: vec![leaf; 1000],
        };
        assert!(matches!(
            proof.verify(&leaf, &leaf),
            Err(MerkleError::PathTooLong { actual: 1000, .. })
        ));
        Ok(())
    }

    #[test]
    fn consistency_verification_reports_what_is_wrong() -> Result<(), MerkleError> {
        let tree = sample_tree(7);
        let (old_root, new_root) = (tree.root_at(3)?, tree.root());
        let proof = tree.consistency_proof(3, 7)?;

        let empty = ConsistencyProof {
            path: Vec::new(),
            ..proof.clone()
        };
        assert!(matches!(
            empty.verify(&old_root, &new_root),
            Err(MerkleError::PathTooShort { actual: 0, .. })
        ));
        assert!(matches!(
            proof.verify(&new_root, &new_root),
            Err(MerkleError::OldRootMismatch { .. })
        ));
        assert!(matches!(
            proof.verify(&old_root, &old_root),
            Err(MerkleError::NewRootMismatch { .. })
        ));
        let backwards = ConsistencyProof {
            old_size: 7,
            new_size: 3,
            ..proof.clone()
        };
        assert_eq!(
            backwards.verify(&old_root, &new_root),
            Err(MerkleError::OldSizeExceedsNewSize {
                old_size: 7,
                new_size: 3
            })
        );
        let from_empty = ConsistencyProof {
            old_size: 0,
            ..proof.clone()
        };
        assert_eq!(
            from_empty.verify(&empty_root(), &new_root),
            Err(MerkleError::EmptyOldTree { new_size: 7 })
        );

        let same = tree.consistency_proof(7, 7)?;
        assert!(same.path.is_empty());
        assert_eq!(same.verify(&new_root, &new_root), Ok(()));
        assert_eq!(
            same.verify(&old_root, &new_root),
            Err(MerkleError::EqualSizeRootsDiffer { tree_size: 7 })
        );
        let padded = ConsistencyProof {
            path: vec![new_root],
            ..same
        };
        assert_eq!(
            padded.verify(&new_root, &new_root),
            Err(MerkleError::PathTooLong {
                expected: 0,
                actual: 1
            })
        );
        Ok(())
    }

    #[test]
    fn proofs_round_trip_through_json_with_hex_hashes() -> Result<(), Box<dyn std::error::Error>> {
        let tree = sample_tree(6);
        let inclusion = tree.inclusion_proof(2, 6)?;
        let json = serde_json::to_value(&inclusion)?;
        assert_eq!(json["leaf_index"], 2);
        assert_eq!(json["tree_size"], 6);
        assert_eq!(json["path"][0], inclusion.path[0].to_string());
        assert_eq!(serde_json::from_value::<InclusionProof>(json)?, inclusion);

        let consistency = tree.consistency_proof(3, 6)?;
        let text = serde_json::to_string(&consistency)?;
        assert_eq!(
            serde_json::from_str::<ConsistencyProof>(&text)?,
            consistency
        );

        let unknown_field = r#"{"old_size":1,"new_size":2,"path":[],"extra":true}"#;
        assert!(serde_json::from_str::<ConsistencyProof>(unknown_field).is_err());
        let bad_hash = r#"{"leaf_index":0,"tree_size":2,"path":["00"]}"#;
        assert!(serde_json::from_str::<InclusionProof>(bad_hash).is_err());
        Ok(())
    }

    #[test]
    fn debug_output_stays_short() {
        let text = format!("{:?}", sample_tree(1000));
        assert!(text.starts_with("MerkleTree { len: 1000, root: Hash("));
        assert!(text.len() < 150);
    }
}
