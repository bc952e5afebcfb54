//! Batch headers signed by openssl, verified by wardseal: for each signature algorithm a
//! fresh key and certificate, a header naming that algorithm, its canonical bytes signed
//! with `openssl dgst -sha256 -sign`, and [`BatchHeader::verify_signature`] with the key
//! taken from the certificate. A header that differs in one field must not verify.
//!
//! Needs openssl; fails without it.
#![expect(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::Scratch;
use wardseal_core::Hash;
use wardseal_core::batch::{BatchHeader, BatchHeaderParts};
use wardseal_core::reading::Timestamp;
use wardseal_core::signature::{
    SignatureAlgorithm, SignatureError, VerifyingKey, ecdsa_p256_der_to_raw,
};

fn header(algorithm: SignatureAlgorithm) -> BatchHeader {
    BatchHeader::new(BatchHeaderParts {
        patient: "P-000123".parse().unwrap(),
        collector: "ward-3A".parse().unwrap(),
        sequence: 42,
        previous: Hash::sha256(b"batch 41"),
        root: Hash::sha256(b"root of batch 42"),
        count: 250,
        first_time: "2026-11-21T08:00:00Z".parse::<Timestamp>().unwrap(),
        last_time: "2026-11-21T08:00:05.5Z".parse::<Timestamp>().unwrap(),
        algorithm,
    })
    .unwrap()
}

/// How openssl signs the header file.
enum Signing<'a> {
    /// `openssl dgst -sha256 -sign` with these extra options (ECDSA, RSA-PSS, DSA).
    Sha256(&'a [&'a str]),
    /// `openssl pkeyutl -sign -rawin`: pure Ed25519 over the bytes themselves.
    Raw,
}

/// Generates a key with `keygen`, a self-signed certificate for it, signs the header's
/// canonical bytes as `signing` says, and returns (key from the certificate, signature).
fn openssl_signs(
    dir: &Scratch,
    header: &BatchHeader,
    keygen: &[&str],
    signing: Signing<'_>,
) -> (VerifyingKey, Vec<u8>) {
    dir.openssl(&[&["genpkey"], keygen, &["-out", "key.pem"]].concat());
    // Ed25519 certificates take no digest option; the others are signed with SHA-256.
    let digest: &[&str] = match signing {
        Signing::Sha256(_) => &["-sha256"],
        Signing::Raw => &[],
    };
    dir.openssl(
        &[
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "key.pem",
                "-subj",
                "/CN=P-000123",
                "-days",
                "1",
            ],
            digest,
            &["-out", "cert.pem"],
        ]
        .concat(),
    );
    dir.write("header.bin", &header.canonical_bytes());
    match signing {
        Signing::Sha256(options) => dir.openssl(
            &[
                &["dgst", "-sha256", "-sign", "key.pem"],
                options,
                &["-out", "header.sig", "header.bin"],
            ]
            .concat(),
        ),
        Signing::Raw => dir.openssl(&[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            "key.pem",
            "-in",
            "header.bin",
            "-out",
            "header.sig",
        ]),
    };
    let certificate = String::from_utf8(dir.read("cert.pem")).unwrap();
    (
        VerifyingKey::from_certificate_pem(&certificate).unwrap(),
        dir.read("header.sig"),
    )
}

fn check(header: &BatchHeader, key: &VerifyingKey, signature: &[u8]) {
    header.verify_signature(key, signature).unwrap();

    let mut parts = header.parts().clone();
    parts.count += 1;
    let altered = BatchHeader::new(parts).unwrap();
    assert_eq!(
        altered.verify_signature(key, signature),
        Err(SignatureError::SignatureInvalid)
    );

    let mut parts = header.parts().clone();
    parts.patient = "P-000124".parse().unwrap();
    let other_patient = BatchHeader::new(parts).unwrap();
    assert_eq!(
        other_patient.verify_signature(key, signature),
        Err(SignatureError::SignatureInvalid)
    );
}

const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

#[test]
fn ecdsa_p256_der_signed_header_verifies() {
    let dir = Scratch::new("batch-ecdsa");
    let header = header(SignatureAlgorithm::EcdsaP256Sha256);
    let (key, signature) = openssl_signs(&dir, &header, P256, Signing::Sha256(&[]));
    check(&header, &key, &signature);
}

#[test]
fn ecdsa_p256_raw_signed_header_verifies() {
    let dir = Scratch::new("batch-ecdsa-raw");
    let header = header(SignatureAlgorithm::EcdsaP256Sha256Raw);
    let (key, der) = openssl_signs(&dir, &header, P256, Signing::Sha256(&[]));
    let raw = ecdsa_p256_der_to_raw(&der).unwrap();
    check(&header, &key, &raw);
    // The DER form is not accepted where the header promises r‖s.
    assert!(header.verify_signature(&key, &der).is_err());
}

#[test]
fn rsa_pss_signed_header_verifies() {
    let dir = Scratch::new("batch-rsa-pss");
    let header = header(SignatureAlgorithm::RsaPssSha256);
    let (key, signature) = openssl_signs(
        &dir,
        &header,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Signing::Sha256(&[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sigopt",
            "rsa_mgf1_md:sha256",
        ]),
    );
    check(&header, &key, &signature);
}

#[test]
fn dsa_signed_header_verifies() {
    let dir = Scratch::new("batch-dsa");
    dir.dsa_2048_256_params("params.pem");
    let header = header(SignatureAlgorithm::DsaSha256);
    let (key, signature) = openssl_signs(
        &dir,
        &header,
        &["-paramfile", "params.pem"],
        Signing::Sha256(&[]),
    );
    check(&header, &key, &signature);
}

#[test]
fn ed25519_signed_header_verifies() {
    let dir = Scratch::new("batch-ed25519");
    let header = header(SignatureAlgorithm::Ed25519);
    let (key, signature) = openssl_signs(&dir, &header, &["-algorithm", "ED25519"], Signing::Raw);
    check(&header, &key, &signature);
    assert_eq!(
        key.verify_prehashed(
            SignatureAlgorithm::Ed25519,
            header.hash().as_bytes(),
            &signature
        ),
        Err(SignatureError::PrehashUnsupported {
            algorithm: SignatureAlgorithm::Ed25519
        })
    );
}

#[test]
fn a_header_signed_for_one_algorithm_is_refused_under_another() {
    let dir = Scratch::new("batch-mismatch");
    let header = header(SignatureAlgorithm::EcdsaP256Sha256);
    let (key, signature) = openssl_signs(&dir, &header, P256, Signing::Sha256(&[]));
    let mut parts = header.parts().clone();
    parts.algorithm = SignatureAlgorithm::RsaPssSha256;
    let relabelled = BatchHeader::new(parts).unwrap();
    assert!(matches!(
        relabelled.verify_signature(&key, &signature),
        Err(SignatureError::AlgorithmKeyMismatch { .. })
    ));
}
