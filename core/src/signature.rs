//! Verifying a patient card's signature over a batch header.
//!
//! A patient's smart card signs the canonical bytes of each batch header; storage checks
//! that signature with the public key from the patient's X.509 certificate. This module
//! holds the verifier and nothing else: it never signs, and it does not decide whether a
//! certificate is trustworthy — validate the chain, validity period and revocation first,
//! then hand the certificate here to obtain its [`VerifyingKey`].
//!
//! # Algorithms
//!
//! | [`SignatureAlgorithm`] | code | name | signature bytes |
//! |---|---|---|---|
//! | [`EcdsaP256Sha256`](SignatureAlgorithm::EcdsaP256Sha256) | `0x01` | `ecdsa-p256-sha256` | DER `SEQUENCE { r, s }` (X.509, openssl) |
//! | [`EcdsaP256Sha256Raw`](SignatureAlgorithm::EcdsaP256Sha256Raw) | `0x02` | `ecdsa-p256-sha256-raw` | IEEE P1363 `r ‖ s`, 64 bytes (PKCS#11 `CKM_ECDSA`) |
//! | [`RsaPssSha256`](SignatureAlgorithm::RsaPssSha256) | `0x03` | `rsa-pss-sha256` | RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 bytes |
//! | [`DsaSha256`](SignatureAlgorithm::DsaSha256) | `0x04` | `dsa-sha256` | DER `SEQUENCE { r, s }`, FIPS 186-4 L=2048, N=256 |
//! | [`Ed25519`](SignatureAlgorithm::Ed25519) | `0x05` | `ed25519` | RFC 8032 pure Ed25519 over the message, 64 bytes `R ‖ S` |
//!
//! The ECDSA, RSA-PSS and DSA algorithms hash the message with SHA-256 once;
//! [`VerifyingKey::verify`] takes the message, [`VerifyingKey::verify_prehashed`] the
//! 32-byte digest of it, and both run the same check. Ed25519 (pure EdDSA, as in X.509,
//! TLS 1.3 and PKCS#11 `CKM_EDDSA`) signs the message itself, so it can be verified only
//! from the message: `verify_prehashed` refuses it.
//!
//! # Decisions a reviewer should know
//!
//! - **ECDSA high-S is accepted.** Unlike Bitcoin, nothing here relies on a signature being
//!   unique: the batch header, not the signature, is what storage deduplicates and chains.
//!   openssl, PKCS#11 tokens and PIV cards return high-S signatures about half the time,
//!   so rejecting them would reject valid cards.
//! - **RSA-PSS salt length is exactly 32 bytes** (the SHA-256 output length, as RFC 8017
//!   recommends and TLS 1.3 requires for `rsa_pss_rsae_sha256`). The algorithm code names
//!   one exact scheme; accepting "any salt" would make the code ambiguous and gains
//!   nothing. Signers must ask for it: openssl's default for PSS signing is the largest salt
//!   that fits (`-sigopt rsa_pss_saltlen:32` fixes that); PKCS#11 `CKM_SHA256_RSA_PKCS_PSS`
//!   takes `sLen = 32` in its parameters.
//! - **RSA moduli from 2048 to 4096 bits.** Below 2048 is refused (NIST SP 800-131A);
//!   above 4096 is refused because the cost of checking grows with the modulus and storage
//!   checks every batch (4096 is also the `rsa` crate's own limit).
//! - **DSA only with 2048-bit p and 256-bit q**, the FIPS 186-4 (L, N) pair that matches
//!   SHA-256's strength; 1024/160 is broken by today's standards, and 2048/224 or 3072/256
//!   are not what wardseal cards are issued with. Domain parameters get cheap structural
//!   checks (q divides p−1, g and y lie in the order-q subgroup); primality is not re-proven,
//!   because the key comes from a certificate the hospital CA already vouched for.
//! - **EC keys only on P-256** with a named curve; explicit curve parameters are refused.
//! - RUSTSEC-2023-0071 (the Marvin timing attack on the `rsa` crate) concerns operations
//!   with the private key; this module uses only public keys.
//!
//! # Example
//!
//! ```
//! use wardseal_core::signature::{SignatureAlgorithm, VerifyingKey};
//!
//! let certificate = include_str!("../tests/fixtures/signatures/ecdsa-p256.cert.pem");
//! let message = include_bytes!("../tests/fixtures/signatures/message.bin");
//! let signature = include_bytes!("../tests/fixtures/signatures/ecdsa-p256-sha256.sig");
//!
//! let key = VerifyingKey::from_certificate_pem(certificate)?;
//! assert_eq!(key.description(), "ECDSA P-256");
//! key.verify(SignatureAlgorithm::EcdsaP256Sha256, message, signature)?;
//! assert!(key.verify(SignatureAlgorithm::EcdsaP256Sha256, b"other bytes", signature).is_err());
//! # Ok::<(), wardseal_core::signature::SignatureError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use der::Decode;
use der::asn1::UintRef;
use dsa::pkcs8::spki::SubjectPublicKeyInfoRef;
use rsa::BigUint;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use signature::hazmat::PrehashVerifier;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519, Oid,
};
use x509_parser::prelude::{FromDer, X509Certificate, parse_x509_pem};
use x509_parser::x509::SubjectPublicKeyInfo;

/// Smallest RSA modulus accepted, in bits (NIST SP 800-131A).
const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits: bounds the work per verification.
const RSA_MAX_BITS: usize = 4096;
/// RSA-PSS salt length in bytes: the SHA-256 output length.
const RSA_PSS_SALT_LEN: usize = 32;
/// FIPS 186-4 DSA (L, N) accepted: p bits, q bits.
const DSA_P_BITS: usize = 2048;
/// See [`DSA_P_BITS`].
const DSA_Q_BITS: usize = 256;
/// Length of an IEEE P1363 P-256 signature: r and s, 32 bytes each.
const ECDSA_P256_RAW_LEN: usize = 64;
/// Length of an Ed25519 signature: R and S, 32 bytes each.
const ED25519_SIGNATURE_LEN: usize = 64;

/// A signature scheme a batch header can be signed with, including how the signature bytes
/// are encoded.
///
/// Stable on the wire as a one-byte [`code`](Self::code) and in text (JSON, logs, the
/// command line) as a [`name`](Self::as_str). Code `0x00` is reserved so that zeroed memory
/// never reads as a valid algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ECDSA on NIST P-256 over SHA-256; the signature is the X.509 / openssl DER encoding
    /// `SEQUENCE { r INTEGER, s INTEGER }`.
    EcdsaP256Sha256,
    /// ECDSA on NIST P-256 over SHA-256; the signature is the IEEE P1363 form: r and s as
    /// 32-byte big-endian integers, concatenated (64 bytes). This is what PKCS#11
    /// `CKM_ECDSA` returns.
    EcdsaP256Sha256Raw,
    /// RSASSA-PSS (RFC 8017) with SHA-256, MGF1 with SHA-256 and a 32-byte salt; the
    /// signature is as long as the modulus.
    RsaPssSha256,
    /// DSA (FIPS 186-4) with a 2048-bit p and a 256-bit q, over SHA-256; the signature is
    /// DER `SEQUENCE { r INTEGER, s INTEGER }`.
    DsaSha256,
    /// Ed25519 (RFC 8032, pure: over the message, no pre-hash); the signature is 64 bytes
    /// `R ‖ S`. Verification is strict (non-canonical S and small-order keys are refused).
    Ed25519,
}

impl SignatureAlgorithm {
    /// Every algorithm, in code order.
    pub const ALL: [Self; 5] = [
        Self::EcdsaP256Sha256,
        Self::EcdsaP256Sha256Raw,
        Self::RsaPssSha256,
        Self::DsaSha256,
        Self::Ed25519,
    ];

    /// The stable one-byte wire code.
    pub const fn code(self) -> u8 {
        match self {
            Self::EcdsaP256Sha256 => 0x01,
            Self::EcdsaP256Sha256Raw => 0x02,
            Self::RsaPssSha256 => 0x03,
            Self::DsaSha256 => 0x04,
            Self::Ed25519 => 0x05,
        }
    }

    /// The algorithm with wire code `code`.
    pub fn from_code(code: u8) -> Result<Self, SignatureError> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.code() == code)
            .ok_or(SignatureError::UnknownAlgorithmCode(code))
    }

    /// The stable name, e.g. `"ecdsa-p256-sha256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::EcdsaP256Sha256Raw => "ecdsa-p256-sha256-raw",
            Self::RsaPssSha256 => "rsa-pss-sha256",
            Self::DsaSha256 => "dsa-sha256",
            Self::Ed25519 => "ed25519",
        }
    }

    /// What a well-formed signature of this algorithm looks like, for error messages.
    const fn expected_encoding(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => {
                "a DER SEQUENCE of two INTEGERs r and s, each between 1 and the P-256 group order"
            }
            Self::EcdsaP256Sha256Raw => {
                "64 bytes r || s, each a big-endian integer between 1 and the P-256 group order"
            }
            Self::RsaPssSha256 => "a big-endian integer smaller than the RSA modulus",
            Self::DsaSha256 => {
                "a DER SEQUENCE of two INTEGERs r and s, each between 1 and the DSA subgroup order q"
            }
            Self::Ed25519 => "64 bytes R || S with S below the group order",
        }
    }

    /// Whether signatures are made over the SHA-256 digest of the message (all but
    /// Ed25519, which signs the message itself).
    pub const fn signs_sha256_digest(self) -> bool {
        !matches!(self, Self::Ed25519)
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureAlgorithm {
    type Err = SignatureError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str() == name)
            .ok_or_else(|| SignatureError::UnknownAlgorithmName(name.to_owned()))
    }
}

impl Serialize for SignatureAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SignatureAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a key could not be built or a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A wire code names no signature algorithm.
    #[error(
        "unknown signature algorithm code {0:#04x}; known codes are 0x01 (ecdsa-p256-sha256), \
         0x02 (ecdsa-p256-sha256-raw), 0x03 (rsa-pss-sha256), 0x04 (dsa-sha256) and 0x05 (ed25519)"
    )]
    UnknownAlgorithmCode(u8),
    /// A text names no signature algorithm.
    #[error(
        "unknown signature algorithm {0:?}; expected one of ecdsa-p256-sha256, \
         ecdsa-p256-sha256-raw, rsa-pss-sha256, dsa-sha256, ed25519"
    )]
    UnknownAlgorithmName(String),
    /// The certificate is not a parsable X.509 certificate (DER, or PEM with a
    /// `CERTIFICATE` label).
    #[error("the certificate cannot be read: {reason}")]
    CertificateUnparsable {
        /// What is wrong with it.
        reason: String,
    },
    /// The SubjectPublicKeyInfo or the key inside it is malformed.
    #[error("the public key cannot be read: {reason}")]
    PublicKeyUnparsable {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key is of a type this module does not verify with.
    #[error(
        "public key algorithm {algorithm} is not supported; expected an EC key on P-256, an RSA \
         key (rsaEncryption), a DSA key or an Ed25519 key"
    )]
    UnsupportedKeyType {
        /// The key's algorithm OID, with its name when known.
        algorithm: String,
    },
    /// The EC key is on a curve other than P-256.
    #[error(
        "EC key on curve {curve} is not supported; only P-256 (prime256v1, 1.2.840.10045.3.1.7) \
         keys given by a named curve are accepted"
    )]
    UnsupportedCurve {
        /// The curve's OID with its name when known, or what the parameters hold instead.
        curve: String,
    },
    /// The RSA modulus is shorter than 2048 bits (NIST SP 800-131A).
    #[error("RSA key has a {bits}-bit modulus; at least {minimum} bits are required")]
    KeyTooSmall {
        /// Bits in the key's modulus.
        bits: usize,
        /// The smallest accepted modulus.
        minimum: usize,
    },
    /// The RSA modulus is longer than 4096 bits, which would make each check costly.
    #[error("RSA key has a {bits}-bit modulus; at most {maximum} bits are accepted")]
    KeyTooLarge {
        /// Bits in the key's modulus.
        bits: usize,
        /// The largest accepted modulus.
        maximum: usize,
    },
    /// The DSA domain parameters are not the FIPS 186-4 (L, N) = (2048, 256) pair.
    #[error(
        "DSA key has {p_bits}-bit p and {q_bits}-bit q; only FIPS 186-4 L=2048, N=256 keys \
         are accepted (generate with dsa_paramgen_bits:2048 and dsa_paramgen_q_bits:256)"
    )]
    UnsupportedDsaParameters {
        /// Bits in the prime modulus p (L).
        p_bits: usize,
        /// Bits in the subgroup order q (N).
        q_bits: usize,
    },
    /// The signature algorithm cannot be used with this key.
    #[error("a {key} key cannot verify {algorithm} signatures; it verifies {supported}")]
    AlgorithmKeyMismatch {
        /// The algorithm asked for.
        algorithm: SignatureAlgorithm,
        /// The key, as [`VerifyingKey::description`] prints it.
        key: String,
        /// The algorithms the key does verify, comma-separated.
        supported: String,
    },
    /// The signature has the wrong length for the algorithm and key.
    #[error("{algorithm} signature is {actual} bytes long; this key needs {expected} bytes")]
    SignatureLength {
        /// The algorithm asked for.
        algorithm: SignatureAlgorithm,
        /// The signature's length.
        actual: usize,
        /// The length the algorithm and key require.
        expected: usize,
    },
    /// The signature bytes are not an encoding of a signature of this algorithm.
    #[error("malformed {algorithm} signature: expected {}", .algorithm.expected_encoding())]
    MalformedSignature {
        /// The algorithm asked for.
        algorithm: SignatureAlgorithm,
    },
    /// The algorithm signs the message itself, so it cannot be checked from a digest.
    #[error("{algorithm} signs the message itself; verify it from the message, not a digest")]
    PrehashUnsupported {
        /// The algorithm asked for.
        algorithm: SignatureAlgorithm,
    },
    /// The signature is well formed but does not verify: wrong key, altered message or
    /// altered signature. Deliberately says no more.
    #[error("the signature does not verify with this key over this message")]
    SignatureInvalid,
}

/// A public key that verifies batch-header signatures.
///
/// Built from the patient's certificate ([`from_certificate_der`](Self::from_certificate_der),
/// [`from_certificate_pem`](Self::from_certificate_pem)) or from a bare
/// SubjectPublicKeyInfo ([`from_spki_der`](Self::from_spki_der)). Only keys wardseal
/// accepts can be built: EC P-256, RSA 2048–4096 bits, DSA 2048/256, Ed25519.
#[derive(Clone)]
pub struct VerifyingKey {
    key: Key,
}

/// The key material, by type.
#[derive(Clone)]
enum Key {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    RsaPss {
        key: rsa::pss::VerifyingKey<Sha256>,
        bits: usize,
    },
    Dsa(dsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl VerifyingKey {
    /// The public key of a DER X.509 certificate.
    ///
    /// Only reads the certificate: it does not check its signature, validity or purpose.
    /// Bytes after the certificate are refused.
    pub fn from_certificate_der(certificate: &[u8]) -> Result<Self, SignatureError> {
        let (rest, certificate) = X509Certificate::from_der(certificate).map_err(|error| {
            SignatureError::CertificateUnparsable {
                reason: format!("not a DER X.509 certificate ({error})"),
            }
        })?;
        if !rest.is_empty() {
            return Err(SignatureError::CertificateUnparsable {
                reason: format!("{} bytes follow the DER certificate", rest.len()),
            });
        }
        Self::from_spki(certificate.public_key())
    }

    /// The public key of the first PEM block of `pem`, which must be a `CERTIFICATE`.
    ///
    /// Text before the block is ignored (as openssl does); blocks after it, such as the
    /// rest of a chain, are not read.
    pub fn from_certificate_pem(pem: &str) -> Result<Self, SignatureError> {
        let (_, block) = parse_x509_pem(pem.as_bytes()).map_err(|error| {
            SignatureError::CertificateUnparsable {
                reason: format!("no PEM block could be read ({error})"),
            }
        })?;
        if block.label != "CERTIFICATE" {
            return Err(SignatureError::CertificateUnparsable {
                reason: format!(
                    "the first PEM block is labelled {:?}, expected \"CERTIFICATE\"",
                    block.label
                ),
            });
        }
        Self::from_certificate_der(&block.contents)
    }

    /// A key from a DER SubjectPublicKeyInfo, e.g. `openssl pkey -pubout -outform DER`.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, SignatureError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki).map_err(|_| {
            SignatureError::PublicKeyUnparsable {
                reason: "not a DER SubjectPublicKeyInfo",
            }
        })?;
        if !rest.is_empty() {
            return Err(SignatureError::PublicKeyUnparsable {
                reason: "bytes follow the DER SubjectPublicKeyInfo",
            });
        }
        Self::from_spki(&spki)
    }

    fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, SignatureError> {
        if spki.subject_public_key.unused_bits != 0 {
            return Err(SignatureError::PublicKeyUnparsable {
                reason: "the subjectPublicKey BIT STRING does not hold whole bytes",
            });
        }
        let algorithm = &spki.algorithm.algorithm;
        let key = if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            ecdsa_p256_key(spki)?
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            rsa_key(&spki.subject_public_key.data)?
        } else if *algorithm == OID_KEY_TYPE_DSA {
            dsa_key(spki.raw)?
        } else if *algorithm == OID_SIG_ED25519 {
            ed25519_key(spki)?
        } else {
            return Err(SignatureError::UnsupportedKeyType {
                algorithm: describe_oid(algorithm),
            });
        };
        Ok(Self { key })
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> &'static [SignatureAlgorithm] {
        match self.key {
            Key::EcdsaP256(_) => &[
                SignatureAlgorithm::EcdsaP256Sha256,
                SignatureAlgorithm::EcdsaP256Sha256Raw,
            ],
            Key::RsaPss { .. } => &[SignatureAlgorithm::RsaPssSha256],
            Key::Dsa(_) => &[SignatureAlgorithm::DsaSha256],
            Key::Ed25519(_) => &[SignatureAlgorithm::Ed25519],
        }
    }

    /// Whether this key can verify `algorithm` signatures.
    pub fn supports(&self, algorithm: SignatureAlgorithm) -> bool {
        self.algorithms().contains(&algorithm)
    }

    /// The key type and size: `"ECDSA P-256"`, `"RSA 3072"`, `"DSA 2048/256"` or `"Ed25519"`.
    pub fn description(&self) -> String {
        match &self.key {
            Key::EcdsaP256(_) => "ECDSA P-256".to_owned(),
            Key::RsaPss { bits, .. } => format!("RSA {bits}"),
            Key::Dsa(_) => format!("DSA {DSA_P_BITS}/{DSA_Q_BITS}"),
            Key::Ed25519(_) => "Ed25519".to_owned(),
        }
    }

    /// Checks `signature` over `message` (the canonical batch-header bytes).
    ///
    /// The message is hashed with SHA-256 here; do not hash it first. Except for Ed25519,
    /// equivalent to [`verify_prehashed`](Self::verify_prehashed) with the SHA-256 digest
    /// of `message`.
    pub fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if let (Key::Ed25519(key), SignatureAlgorithm::Ed25519) = (&self.key, algorithm) {
            let signature = <[u8; ED25519_SIGNATURE_LEN]>::try_from(signature).map_err(|_| {
                SignatureError::SignatureLength {
                    algorithm,
                    actual: signature.len(),
                    expected: ED25519_SIGNATURE_LEN,
                }
            })?;
            return key
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature))
                .map_err(|_| SignatureError::SignatureInvalid);
        }
        self.verify_prehashed(algorithm, &Sha256::digest(message).into(), signature)
    }

    /// Checks `signature` over the message whose SHA-256 digest is `digest`, for callers
    /// that hold only the digest (e.g. a [`Hash`](crate::Hash) of the header).
    pub fn verify_prehashed(
        &self,
        algorithm: SignatureAlgorithm,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let malformed = || SignatureError::MalformedSignature { algorithm };
        let verified = match (&self.key, algorithm) {
            (Key::EcdsaP256(key), SignatureAlgorithm::EcdsaP256Sha256) => {
                let signature =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| malformed())?;
                key.verify_prehash(digest, &signature)
            }
            (Key::EcdsaP256(key), SignatureAlgorithm::EcdsaP256Sha256Raw) => {
                if signature.len() != ECDSA_P256_RAW_LEN {
                    return Err(SignatureError::SignatureLength {
                        algorithm,
                        actual: signature.len(),
                        expected: ECDSA_P256_RAW_LEN,
                    });
                }
                let signature =
                    p256::ecdsa::Signature::from_slice(signature).map_err(|_| malformed())?;
                key.verify_prehash(digest, &signature)
            }
            (Key::RsaPss { key, .. }, SignatureAlgorithm::RsaPssSha256) => {
                let public: &rsa::RsaPublicKey = key.as_ref();
                // RFC 8017 8.1.2 step 1: the signature is exactly k bytes, k the modulus
                // length; shortened signatures (leading zeros stripped) are not accepted.
                if signature.len() != public.size() {
                    return Err(SignatureError::SignatureLength {
                        algorithm,
                        actual: signature.len(),
                        expected: public.size(),
                    });
                }
                if BigUint::from_bytes_be(signature) >= *public.n() {
                    return Err(malformed());
                }
                let signature =
                    rsa::pss::Signature::try_from(signature).map_err(|_| malformed())?;
                key.verify_prehash(digest, &signature)
            }
            (Key::Dsa(key), SignatureAlgorithm::DsaSha256) => {
                // Parsing refuses r = 0 and s = 0; FIPS 186-4 4.7 also needs r, s < q.
                let signature = dsa::Signature::try_from(signature).map_err(|_| malformed())?;
                let q = key.components().q();
                if signature.r() >= q || signature.s() >= q {
                    return Err(malformed());
                }
                key.verify_prehash(digest, &signature)
            }
            (Key::Ed25519(_), SignatureAlgorithm::Ed25519) => {
                return Err(SignatureError::PrehashUnsupported { algorithm });
            }
            _ => {
                return Err(SignatureError::AlgorithmKeyMismatch {
                    algorithm,
                    key: self.description(),
                    supported: self
                        .algorithms()
                        .iter()
                        .map(|supported| supported.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        verified.map_err(|_| SignatureError::SignatureInvalid)
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

impl fmt::Debug for VerifyingKey {
    // The key material is public but long; the type and size is what a log reader needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifyingKey")
            .field(&self.description())
            .finish()
    }
}

/// Converts an IEEE P1363 P-256 signature (`r ‖ s`, what PKCS#11 `CKM_ECDSA` returns) to
/// the DER form X.509 and openssl use.
///
/// Refuses r or s equal to zero or not below the group order: no valid signature has them.
pub fn ecdsa_p256_raw_to_der(raw: &[u8; 64]) -> Result<Vec<u8>, SignatureError> {
    let signature = p256::ecdsa::Signature::from_slice(raw).map_err(|_| {
        SignatureError::MalformedSignature {
            algorithm: SignatureAlgorithm::EcdsaP256Sha256Raw,
        }
    })?;
    Ok(signature.to_der().as_bytes().to_vec())
}

/// Converts a DER P-256 signature to the IEEE P1363 form `r ‖ s` (32 bytes each,
/// big-endian, left-padded with zeros).
pub fn ecdsa_p256_der_to_raw(der: &[u8]) -> Result<[u8; 64], SignatureError> {
    let malformed = SignatureError::MalformedSignature {
        algorithm: SignatureAlgorithm::EcdsaP256Sha256,
    };
    let signature = p256::ecdsa::Signature::from_der(der).map_err(|_| malformed.clone())?;
    <[u8; 64]>::try_from(&signature.to_bytes()[..]).map_err(|_| malformed)
}

fn ed25519_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<Key, SignatureError> {
    // RFC 8410: the parameters are absent and the key is the 32-byte encoded point.
    if spki.algorithm.parameters.is_some() {
        return Err(SignatureError::PublicKeyUnparsable {
            reason: "Ed25519 keys take no algorithm parameters (RFC 8410)",
        });
    }
    let bytes = <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref()).map_err(|_| {
        SignatureError::PublicKeyUnparsable {
            reason: "an Ed25519 public key is 32 bytes",
        }
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map(Key::Ed25519)
        .map_err(|_| SignatureError::PublicKeyUnparsable {
            reason: "the Ed25519 public key is not a valid curve point",
        })
}

fn ecdsa_p256_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<Key, SignatureError> {
    let parameters =
        spki.algorithm
            .parameters
            .as_ref()
            .ok_or_else(|| SignatureError::UnsupportedCurve {
                curve: "(no curve parameters)".to_owned(),
            })?;
    // RFC 5480 2.1.1: a named curve is an OID; explicit parameters (a SEQUENCE) are refused.
    let curve = parameters
        .as_oid()
        .map_err(|_| SignatureError::UnsupportedCurve {
            curve: "(explicit curve parameters instead of a named curve)".to_owned(),
        })?;
    if curve != OID_EC_P256 {
        return Err(SignatureError::UnsupportedCurve {
            curve: describe_oid(&curve),
        });
    }
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data).map_err(
        |_| SignatureError::PublicKeyUnparsable {
            reason: "the EC public key is not a SEC1-encoded point on P-256",
        },
    )?;
    Ok(Key::EcdsaP256(key))
}

fn rsa_key(subject_public_key: &[u8]) -> Result<Key, SignatureError> {
    let public = rsa::pkcs1::RsaPublicKey::from_der(subject_public_key).map_err(|_| {
        SignatureError::PublicKeyUnparsable {
            reason: "the RSA public key is not a DER SEQUENCE { modulus, publicExponent }",
        }
    })?;
    let modulus = public.modulus.as_bytes();
    let bits = bit_length(modulus);
    if bits < RSA_MIN_BITS {
        return Err(SignatureError::KeyTooSmall {
            bits,
            minimum: RSA_MIN_BITS,
        });
    }
    if bits > RSA_MAX_BITS {
        return Err(SignatureError::KeyTooLarge {
            bits,
            maximum: RSA_MAX_BITS,
        });
    }
    let key = rsa::RsaPublicKey::new(
        BigUint::from_bytes_be(modulus),
        BigUint::from_bytes_be(public.public_exponent.as_bytes()),
    )
    .map_err(|_| SignatureError::PublicKeyUnparsable {
        reason: "the RSA modulus must be odd and the public exponent odd, at least 3, \
                 below 2^33 and below the modulus",
    })?;
    Ok(Key::RsaPss {
        key: rsa::pss::VerifyingKey::new_with_salt_len(key, RSA_PSS_SALT_LEN),
        bits,
    })
}

fn dsa_key(spki_der: &[u8]) -> Result<Key, SignatureError> {
    let unparsable = |reason| SignatureError::PublicKeyUnparsable { reason };
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|_| unparsable("not a DER SubjectPublicKeyInfo"))?;
    // Decoding the components costs nothing; the sizes are checked before any arithmetic
    // so that a huge p cannot make the checks below expensive.
    let components: dsa::Components = spki
        .algorithm
        .parameters_any()
        .ok()
        .and_then(|parameters| parameters.decode_as().ok())
        .ok_or_else(|| {
            unparsable("the DSA domain parameters are not a DER SEQUENCE { p, q, g }")
        })?;
    let (p, q, g) = (components.p(), components.q(), components.g());
    if (p.bits(), q.bits()) != (DSA_P_BITS, DSA_Q_BITS) {
        return Err(SignatureError::UnsupportedDsaParameters {
            p_bits: p.bits(),
            q_bits: q.bits(),
        });
    }
    let one = BigUint::from(1_u8);
    if (p - &one) % q != BigUint::from(0_u8) {
        return Err(unparsable("the DSA subgroup order q does not divide p - 1"));
    }
    if *g <= one || g >= p || g.modpow(q, p) != one {
        return Err(unparsable(
            "the DSA generator g does not generate a subgroup of order q",
        ));
    }
    let y = spki
        .subject_public_key
        .as_bytes()
        .and_then(|bytes| UintRef::from_der(bytes).ok())
        .map(|y| BigUint::from_bytes_be(y.as_bytes()))
        .ok_or_else(|| unparsable("the DSA public key y is not a DER INTEGER"))?;
    if y >= *p {
        return Err(unparsable("the DSA public key y is not below p"));
    }
    // from_components checks y >= 2 and y^q = 1 (mod p).
    let key = dsa::VerifyingKey::from_components(components, y)
        .map_err(|_| unparsable("the DSA public key y is not in the subgroup of order q"))?;
    Ok(Key::Dsa(key))
}

/// Bits in a big-endian unsigned integer without leading zero bytes.
fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|&byte| byte != 0) {
        None => 0,
        Some(first) => {
            let significant = big_endian.len() - first;
            let leading_zeros = big_endian
                .get(first)
                .map_or(0, |&byte| byte.leading_zeros() as usize);
            significant * 8 - leading_zeros
        }
    }
}

/// An OID in dotted form, with the name of the key types and curves people are likely to
/// try, so that an error says "secp384r1" rather than only "1.3.132.0.34".
fn describe_oid(oid: &Oid<'_>) -> String {
    let dotted = oid.to_id_string();
    let name = match dotted.as_str() {
        "1.3.132.0.34" => Some("secp384r1 / P-384"),
        "1.3.132.0.35" => Some("secp521r1 / P-521"),
        "1.3.132.0.10" => Some("secp256k1"),
        "1.3.36.3.3.2.8.1.1.7" => Some("brainpoolP256r1"),
        "1.2.840.113549.1.1.10" => Some("RSASSA-PSS-restricted RSA key"),
        "1.3.101.112" => Some("Ed25519"),
        "1.3.101.113" => Some("Ed448"),
        "1.3.101.110" => Some("X25519"),
        _ => None,
    };
    match name {
        Some(name) => format!("{name} ({dotted})"),
        None => dotted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MESSAGE: &[u8] = include_bytes!("../tests/fixtures/signatures/message.bin");
    const ECDSA_CERT: &str = include_str!("../tests/fixtures/signatures/ecdsa-p256.cert.pem");
    const ECDSA_SIG: &[u8] = include_bytes!("../tests/fixtures/signatures/ecdsa-p256-sha256.sig");
    const ECDSA_RAW_SIG: &[u8] =
        include_bytes!("../tests/fixtures/signatures/ecdsa-p256-sha256-raw.sig");
    const RSA_CERT: &str = include_str!("../tests/fixtures/signatures/rsa-2048.cert.pem");
    const RSA_SIG: &[u8] = include_bytes!("../tests/fixtures/signatures/rsa-2048-pss-sha256.sig");
    const DSA_CERT: &str = include_str!("../tests/fixtures/signatures/dsa-2048.cert.pem");
    const DSA_SIG: &[u8] = include_bytes!("../tests/fixtures/signatures/dsa-2048-sha256.sig");
    const ECDSA_SPKI: &[u8] = include_bytes!("../tests/fixtures/signatures/ecdsa-p256.spki.der");
    const DSA_SPKI: &[u8] = include_bytes!("../tests/fixtures/signatures/dsa-2048.spki.der");

    /// The fixture keys, parsed once: building a DSA key costs modular exponentiations,
    /// which are slow in debug builds.
    fn keys() -> [VerifyingKey; 3] {
        static KEYS: std::sync::LazyLock<[VerifyingKey; 3]> = std::sync::LazyLock::new(|| {
            [ECDSA_CERT, RSA_CERT, DSA_CERT]
                .map(|pem| VerifyingKey::from_certificate_pem(pem).unwrap())
        });
        KEYS.clone()
    }

    #[test]
    fn codes_and_names_round_trip_and_are_distinct() {
        for algorithm in SignatureAlgorithm::ALL {
            assert_eq!(
                SignatureAlgorithm::from_code(algorithm.code()),
                Ok(algorithm)
            );
            assert_eq!(algorithm.to_string().parse(), Ok(algorithm));
            let json = serde_json::to_string(&algorithm).unwrap();
            assert_eq!(json, format!("\"{}\"", algorithm.as_str()));
            assert_eq!(
                serde_json::from_str::<SignatureAlgorithm>(&json).unwrap(),
                algorithm
            );
        }
        let known: Vec<u8> = (0..=u8::MAX)
            .filter(|&code| SignatureAlgorithm::from_code(code).is_ok())
            .collect();
        assert_eq!(known, [1, 2, 3, 4, 5]);
        assert_eq!(
            SignatureAlgorithm::from_code(0),
            Err(SignatureError::UnknownAlgorithmCode(0))
        );
    }

    #[test]
    fn names_are_the_documented_ones() {
        let names = SignatureAlgorithm::ALL.map(SignatureAlgorithm::as_str);
        assert_eq!(
            names,
            [
                "ecdsa-p256-sha256",
                "ecdsa-p256-sha256-raw",
                "rsa-pss-sha256",
                "dsa-sha256",
                "ed25519"
            ]
        );
        assert_eq!(
            "ECDSA-P256-SHA256".parse::<SignatureAlgorithm>(),
            Err(SignatureError::UnknownAlgorithmName(
                "ECDSA-P256-SHA256".to_owned()
            ))
        );
        assert!(serde_json::from_str::<SignatureAlgorithm>("\"eddsa\"").is_err());
        assert!(serde_json::from_str::<SignatureAlgorithm>("1").is_err());
    }

    #[test]
    fn keys_describe_themselves() {
        let [ecdsa, rsa, dsa] = keys();
        assert_eq!(ecdsa.description(), "ECDSA P-256");
        assert_eq!(rsa.description(), "RSA 2048");
        assert_eq!(dsa.to_string(), "DSA 2048/256");
        assert_eq!(format!("{dsa:?}"), "VerifyingKey(\"DSA 2048/256\")");
        assert!(ecdsa.supports(SignatureAlgorithm::EcdsaP256Sha256Raw));
        assert!(!ecdsa.supports(SignatureAlgorithm::DsaSha256));
        assert_eq!(rsa.algorithms(), [SignatureAlgorithm::RsaPssSha256]);
    }

    #[test]
    fn prehashed_and_message_verification_agree() {
        let digest: [u8; 32] = Sha256::digest(MESSAGE).into();
        let [ecdsa, rsa, dsa] = keys();
        let cases = [
            (&ecdsa, SignatureAlgorithm::EcdsaP256Sha256, ECDSA_SIG),
            (
                &ecdsa,
                SignatureAlgorithm::EcdsaP256Sha256Raw,
                ECDSA_RAW_SIG,
            ),
            (&rsa, SignatureAlgorithm::RsaPssSha256, RSA_SIG),
            (&dsa, SignatureAlgorithm::DsaSha256, DSA_SIG),
        ];
        for (key, algorithm, signature) in cases {
            assert_eq!(key.verify(algorithm, MESSAGE, signature), Ok(()));
            assert_eq!(key.verify_prehashed(algorithm, &digest, signature), Ok(()));
            // verify() hashes once: passing the digest as the message must fail.
            assert_eq!(
                key.verify(algorithm, &digest, signature),
                Err(SignatureError::SignatureInvalid)
            );
        }
    }

    #[test]
    fn malformed_signatures_are_typed_errors() {
        let [ecdsa, rsa, dsa] = keys();
        let malformed = |algorithm| Err(SignatureError::MalformedSignature { algorithm });

        // DER with a trailing byte, a truncated DER, and an empty signature.
        let mut trailing = ECDSA_SIG.to_vec();
        trailing.push(0);
        let algorithm = SignatureAlgorithm::EcdsaP256Sha256;
        assert_eq!(
            ecdsa.verify(algorithm, MESSAGE, &trailing),
            malformed(algorithm)
        );
        let truncated = &ECDSA_SIG[..ECDSA_SIG.len() - 1];
        assert_eq!(
            ecdsa.verify(algorithm, MESSAGE, truncated),
            malformed(algorithm)
        );
        assert_eq!(ecdsa.verify(algorithm, MESSAGE, &[]), malformed(algorithm));

        // Raw: wrong length; s = 0; r = n (out of range).
        let algorithm = SignatureAlgorithm::EcdsaP256Sha256Raw;
        assert_eq!(
            ecdsa.verify(algorithm, MESSAGE, &ECDSA_RAW_SIG[1..]),
            Err(SignatureError::SignatureLength {
                algorithm,
                actual: 63,
                expected: 64
            })
        );
        let mut zero_s = [0u8; 64];
        zero_s[..32].copy_from_slice(&ECDSA_RAW_SIG[..32]);
        assert_eq!(
            ecdsa.verify(algorithm, MESSAGE, &zero_s),
            malformed(algorithm)
        );
        let order = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        let mut r_is_order = ECDSA_RAW_SIG.to_vec();
        r_is_order[..32].copy_from_slice(&order);
        assert_eq!(
            ecdsa.verify(algorithm, MESSAGE, &r_is_order),
            malformed(algorithm)
        );
        assert!(ecdsa_p256_raw_to_der(&zero_s.clone()).is_err());

        // RSA: one byte short; all 0xff (not below the modulus).
        let algorithm = SignatureAlgorithm::RsaPssSha256;
        assert_eq!(
            rsa.verify(algorithm, MESSAGE, &RSA_SIG[1..]),
            Err(SignatureError::SignatureLength {
                algorithm,
                actual: 255,
                expected: 256
            })
        );
        assert_eq!(
            rsa.verify(algorithm, MESSAGE, &[0xff; 256]),
            malformed(algorithm)
        );

        // DSA: r = q is out of range; r = 0 is refused by the parser.
        let algorithm = SignatureAlgorithm::DsaSha256;
        let Key::Dsa(dsa_key) = &dsa.key else {
            unreachable!("the DSA fixture is a DSA key")
        };
        let q = dsa_key.components().q().clone();
        let r_is_q = dsa::Signature::from_components(q, BigUint::from(1_u8)).unwrap();
        let r_is_q = signature::SignatureEncoding::to_vec(&r_is_q);
        assert_eq!(
            dsa.verify(algorithm, MESSAGE, &r_is_q),
            malformed(algorithm)
        );
        let r_is_zero = [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01];
        assert_eq!(
            dsa.verify(algorithm, MESSAGE, &r_is_zero),
            malformed(algorithm)
        );
    }

    #[test]
    fn certificate_errors_are_typed() {
        let der_error = VerifyingKey::from_certificate_der(b"not a certificate").unwrap_err();
        assert!(matches!(
            der_error,
            SignatureError::CertificateUnparsable { .. }
        ));
        let key_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let pem_error = VerifyingKey::from_certificate_pem(key_pem).unwrap_err();
        assert!(
            pem_error.to_string().contains("\"PUBLIC KEY\""),
            "{pem_error}"
        );
        let mut trailing = ECDSA_SPKI.to_vec();
        trailing.push(0);
        assert!(matches!(
            VerifyingKey::from_spki_der(&trailing),
            Err(SignatureError::PublicKeyUnparsable { .. })
        ));
    }

    #[test]
    fn bit_length_counts_from_the_first_set_bit() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0, 0x7f, 0xff]), 15);
    }

    proptest! {
        // Each case runs RSA and DSA arithmetic, slow in debug builds: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_signatures_never_panic_and_never_verify(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            for key in keys() {
                for algorithm in SignatureAlgorithm::ALL {
                    prop_assert!(key.verify(algorithm, MESSAGE, &bytes).is_err());
                }
            }
        }

        #[test]
        fn mutated_signatures_never_panic_and_never_verify(
            index in any::<prop::sample::Index>(),
            flip in 1..=u8::MAX,
        ) {
            let [ecdsa, rsa, dsa] = keys();
            let cases = [
                (&ecdsa, SignatureAlgorithm::EcdsaP256Sha256, ECDSA_SIG),
                (&ecdsa, SignatureAlgorithm::EcdsaP256Sha256Raw, ECDSA_RAW_SIG),
                (&rsa, SignatureAlgorithm::RsaPssSha256, RSA_SIG),
                (&dsa, SignatureAlgorithm::DsaSha256, DSA_SIG),
            ];
            for (key, algorithm, signature) in cases {
                let mut mutated = signature.to_vec();
                let at = index.index(mutated.len());
                mutated[at] ^= flip;
                prop_assert!(key.verify(algorithm, MESSAGE, &mutated).is_err());
            }
        }

    }

    proptest! {
        #[test]
        fn random_certificates_and_keys_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            prop_assert!(VerifyingKey::from_certificate_der(&bytes).is_err());
            prop_assert!(VerifyingKey::from_spki_der(&bytes).is_err());
            let text = String::from_utf8_lossy(&bytes);
            let _ = VerifyingKey::from_certificate_pem(&text);
            let pem = format!("-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n");
            let _ = VerifyingKey::from_certificate_pem(&pem);
        }

        #[test]
        fn mutated_keys_never_panic(
            index in any::<prop::sample::Index>(),
            flip in 1..=u8::MAX,
            cut in any::<prop::sample::Index>(),
        ) {
            for spki in [ECDSA_SPKI, DSA_SPKI] {
                let mut mutated = spki.to_vec();
                let at = index.index(mutated.len());
                mutated[at] ^= flip;
                let _ = VerifyingKey::from_spki_der(&mutated);
                let truncated = &spki[..cut.index(spki.len())];
                prop_assert!(VerifyingKey::from_spki_der(truncated).is_err());
            }
        }
    }
}
