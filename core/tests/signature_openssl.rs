//! Interop: signatures made by openssl verify with wardseal's verifier, and nothing else
//! does.
//!
//! The committed fixtures come from `tests/fixtures/signatures/regenerate.sh`; the `fresh_*`
//! test runs openssl itself on new keys and a random message, so the fixtures cannot hide a
//! bug that only one key would show. openssl is required: install the Debian package
//! `openssl`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test reports failure by panicking"
)]

use std::path::Path;

use proptest::prelude::*;
mod common;
use common::Scratch;
use wardseal_core::signature::{
    SignatureAlgorithm, SignatureError, VerifyingKey, ecdsa_p256_der_to_raw, ecdsa_p256_raw_to_der,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/signatures");

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn certificate_key(name: &str) -> VerifyingKey {
    let pem = String::from_utf8(fixture(&format!("{name}.cert.pem"))).unwrap();
    VerifyingKey::from_certificate_pem(&pem).unwrap()
}

fn certificate_error(name: &str) -> SignatureError {
    let pem = String::from_utf8(fixture(&format!("{name}.cert.pem"))).unwrap();
    VerifyingKey::from_certificate_pem(&pem).unwrap_err()
}

/// The committed signatures over `message.bin`: (certificate, algorithm, signature file).
const SIGNED: [(&str, SignatureAlgorithm, &str); 5] = [
    (
        "ecdsa-p256",
        SignatureAlgorithm::EcdsaP256Sha256,
        "ecdsa-p256-sha256.sig",
    ),
    (
        "ecdsa-p256",
        SignatureAlgorithm::EcdsaP256Sha256Raw,
        "ecdsa-p256-sha256-raw.sig",
    ),
    (
        "rsa-3072",
        SignatureAlgorithm::RsaPssSha256,
        "rsa-3072-pss-sha256.sig",
    ),
    (
        "rsa-2048",
        SignatureAlgorithm::RsaPssSha256,
        "rsa-2048-pss-sha256.sig",
    ),
    (
        "dsa-2048",
        SignatureAlgorithm::DsaSha256,
        "dsa-2048-sha256.sig",
    ),
];

fn flip_bit(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut flipped = bytes.to_vec();
    flipped[index / 8] ^= 1 << (index % 8);
    flipped
}

#[test]
fn committed_fixtures_verify_with_their_algorithm() {
    let message = fixture("message.bin");
    for (certificate, algorithm, signature) in SIGNED {
        let key = certificate_key(certificate);
        assert_eq!(
            key.verify(algorithm, &message, &fixture(signature)),
            Ok(()),
            "{signature} with {certificate}"
        );
    }
}

#[test]
fn keys_are_described_by_type_and_size() {
    let described = [
        ("ecdsa-p256", "ECDSA P-256"),
        ("rsa-3072", "RSA 3072"),
        ("rsa-2048", "RSA 2048"),
        ("dsa-2048", "DSA 2048/256"),
    ];
    for (certificate, description) in described {
        assert_eq!(certificate_key(certificate).description(), description);
    }
}

#[test]
fn a_flipped_message_bit_fails() {
    let message = fixture("message.bin");
    let bits = message.len() * 8;
    for (certificate, algorithm, signature) in SIGNED {
        let key = certificate_key(certificate);
        let signature = fixture(signature);
        for bit in [0, bits / 2, bits - 1] {
            assert_eq!(
                key.verify(algorithm, &flip_bit(&message, bit), &signature),
                Err(SignatureError::SignatureInvalid),
                "{certificate} {algorithm}, message bit {bit}"
            );
        }
    }
}

#[test]
fn a_flipped_signature_bit_fails() {
    let message = fixture("message.bin");
    for (certificate, algorithm, signature) in SIGNED {
        let key = certificate_key(certificate);
        let signature = fixture(signature);
        // The last bit belongs to s (ECDSA, DSA) or the RSA representative: the encoding
        // stays well formed, so the check itself must catch it.
        let last = signature.len() * 8 - 1;
        assert_eq!(
            key.verify(algorithm, &message, &flip_bit(&signature, last)),
            Err(SignatureError::SignatureInvalid),
            "{certificate} {algorithm}"
        );
        // Other bits may break the encoding instead; either way it must not verify.
        for bit in (0..signature.len() * 8).step_by(61) {
            assert!(
                key.verify(algorithm, &message, &flip_bit(&signature, bit))
                    .is_err(),
                "{certificate} {algorithm}, signature bit {bit}"
            );
        }
    }
}

#[test]
fn the_wrong_algorithm_for_the_key_is_refused() {
    let message = fixture("message.bin");
    for (certificate, signed_with, signature) in SIGNED {
        let key = certificate_key(certificate);
        let signature = fixture(signature);
        for algorithm in SignatureAlgorithm::ALL {
            if key.supports(algorithm) {
                continue;
            }
            let error = key.verify(algorithm, &message, &signature).unwrap_err();
            assert!(
                matches!(error, SignatureError::AlgorithmKeyMismatch { algorithm: a, .. } if a == algorithm),
                "{certificate} signed with {signed_with}, asked {algorithm}: {error}"
            );
        }
    }
    // The DER and raw encodings are distinct algorithms: one's bytes are not the other's.
    let key = certificate_key("ecdsa-p256");
    assert!(
        key.verify(
            SignatureAlgorithm::EcdsaP256Sha256Raw,
            &message,
            &fixture("ecdsa-p256-sha256.sig")
        )
        .is_err()
    );
    assert_eq!(
        key.verify(
            SignatureAlgorithm::EcdsaP256Sha256,
            &message,
            &fixture("ecdsa-p256-sha256-raw.sig")
        ),
        Err(SignatureError::MalformedSignature {
            algorithm: SignatureAlgorithm::EcdsaP256Sha256
        })
    );
}

#[test]
fn the_wrong_key_fails() {
    let message = fixture("message.bin");
    let others = [
        (
            "ecdsa-p256-other",
            SignatureAlgorithm::EcdsaP256Sha256,
            "ecdsa-p256-sha256.sig",
        ),
        (
            "ecdsa-p256-other",
            SignatureAlgorithm::EcdsaP256Sha256Raw,
            "ecdsa-p256-sha256-raw.sig",
        ),
        (
            "rsa-3072-other",
            SignatureAlgorithm::RsaPssSha256,
            "rsa-3072-pss-sha256.sig",
        ),
        // Same DSA domain parameters, different key pair.
        (
            "dsa-2048-other",
            SignatureAlgorithm::DsaSha256,
            "dsa-2048-sha256.sig",
        ),
    ];
    for (certificate, algorithm, signature) in others {
        assert_eq!(
            certificate_key(certificate).verify(algorithm, &message, &fixture(signature)),
            Err(SignatureError::SignatureInvalid),
            "{signature} with {certificate}"
        );
    }
    // A key of another size cannot even take the signature.
    assert_eq!(
        certificate_key("rsa-2048").verify(
            SignatureAlgorithm::RsaPssSha256,
            &message,
            &fixture("rsa-3072-pss-sha256.sig")
        ),
        Err(SignatureError::SignatureLength {
            algorithm: SignatureAlgorithm::RsaPssSha256,
            actual: 384,
            expected: 256
        })
    );
}

#[test]
fn rsa_pss_with_another_salt_length_is_refused() {
    // openssl accepted this signature (regenerate.sh checks it with rsa_pss_saltlen:auto);
    // wardseal's rsa-pss-sha256 fixes the salt at 32 bytes.
    let key = certificate_key("rsa-3072");
    assert_eq!(
        key.verify(
            SignatureAlgorithm::RsaPssSha256,
            &fixture("message.bin"),
            &fixture("rsa-3072-pss-sha256-saltmax.sig")
        ),
        Err(SignatureError::SignatureInvalid)
    );
}

#[test]
fn ecdsa_high_s_and_low_s_both_verify_here_and_in_openssl() {
    let message = fixture("message.bin");
    let key = certificate_key("ecdsa-p256");
    let signature = p256::ecdsa::Signature::from_der(&fixture("ecdsa-p256-sha256.sig")).unwrap();
    let low = signature.normalize_s().unwrap_or(signature);
    let (r, s) = low.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert!(
        high.normalize_s().is_some(),
        "negating a low s gives a high s"
    );

    let dir = Scratch::new("high-s");
    dir.write("message.bin", &message);
    dir.write("cert.pem", &fixture("ecdsa-p256.cert.pem"));
    dir.openssl(&[
        "x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem",
    ]);
    for (name, form) in [("low", low), ("high", high)] {
        let der = form.to_der().as_bytes().to_vec();
        let raw = form.to_bytes().to_vec();
        assert_eq!(
            key.verify(SignatureAlgorithm::EcdsaP256Sha256, &message, &der),
            Ok(()),
            "{name}-S DER"
        );
        assert_eq!(
            key.verify(SignatureAlgorithm::EcdsaP256Sha256Raw, &message, &raw),
            Ok(()),
            "{name}-S raw"
        );
        let file = format!("{name}.sig");
        dir.write(&file, &der);
        dir.openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            &file,
            "message.bin",
        ]);
    }
}

#[test]
fn raw_and_der_forms_convert_into_each_other() {
    let der = fixture("ecdsa-p256-sha256.sig");
    let raw: [u8; 64] = fixture("ecdsa-p256-sha256-raw.sig").try_into().unwrap();
    // The raw fixture was cut out of the DER one by openssl asn1parse, independently.
    assert_eq!(ecdsa_p256_der_to_raw(&der), Ok(raw));
    assert_eq!(ecdsa_p256_raw_to_der(&raw), Ok(der));
}

proptest! {
    #[test]
    fn raw_der_round_trip(r in any::<[u8; 32]>(), s in any::<[u8; 32]>(), short in 0..3usize) {
        let mut raw = [0u8; 64];
        // Leading zero bytes exercise the shorter DER INTEGERs and the padding back.
        raw[short..32].copy_from_slice(&r[short..]);
        raw[32 + short..].copy_from_slice(&s[short..]);
        match ecdsa_p256_raw_to_der(&raw) {
            Ok(der) => {
                prop_assert!(der.len() <= 72);
                prop_assert_eq!(ecdsa_p256_der_to_raw(&der), Ok(raw));
            }
            // Only r or s at or above the group order (probability about 2^-32 each) fail.
            Err(error) => prop_assert_eq!(
                error,
                SignatureError::MalformedSignature {
                    algorithm: SignatureAlgorithm::EcdsaP256Sha256Raw
                }
            ),
        }
    }
}

#[test]
fn key_sizes_outside_policy_are_refused() {
    let message = fixture("message.bin");
    // RSA-2048 is the smallest accepted and verifies.
    assert_eq!(
        certificate_key("rsa-2048").verify(
            SignatureAlgorithm::RsaPssSha256,
            &message,
            &fixture("rsa-2048-pss-sha256.sig")
        ),
        Ok(())
    );
    let too_small = SignatureError::KeyTooSmall {
        bits: 1024,
        minimum: 2048,
    };
    assert_eq!(certificate_error("rsa-1024"), too_small);
    assert_eq!(
        VerifyingKey::from_spki_der(&fixture("rsa-1024.spki.der")).unwrap_err(),
        too_small
    );

    let p384 = certificate_error("ecdsa-p384");
    assert!(
        matches!(&p384, SignatureError::UnsupportedCurve { curve } if curve.contains("1.3.132.0.34")),
        "{p384}"
    );
    assert!(matches!(
        VerifyingKey::from_spki_der(&fixture("ecdsa-p384.spki.der")),
        Err(SignatureError::UnsupportedCurve { .. })
    ));

    let dsa_1024 = SignatureError::UnsupportedDsaParameters {
        p_bits: 1024,
        q_bits: 160,
    };
    assert_eq!(certificate_error("dsa-1024"), dsa_1024);
    assert_eq!(
        VerifyingKey::from_spki_der(&fixture("dsa-1024.spki.der")).unwrap_err(),
        dsa_1024
    );
}

#[test]
fn certificates_in_der_and_pem_give_the_same_key() {
    let message = fixture("message.bin");
    let dir = Scratch::new("der");
    dir.write("cert.pem", &fixture("dsa-2048.cert.pem"));
    dir.openssl(&[
        "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
    ]);
    let key = VerifyingKey::from_certificate_der(&dir.read("cert.der")).unwrap();
    assert_eq!(
        key.verify(
            SignatureAlgorithm::DsaSha256,
            &message,
            &fixture("dsa-2048-sha256.sig")
        ),
        Ok(())
    );
}

#[test]
fn spki_der_from_openssl_verifies() {
    let message = fixture("message.bin");
    let spki_keys = [
        (
            "ecdsa-p256",
            SignatureAlgorithm::EcdsaP256Sha256,
            "ecdsa-p256-sha256.sig",
        ),
        (
            "rsa-3072",
            SignatureAlgorithm::RsaPssSha256,
            "rsa-3072-pss-sha256.sig",
        ),
        (
            "dsa-2048",
            SignatureAlgorithm::DsaSha256,
            "dsa-2048-sha256.sig",
        ),
    ];
    for (name, algorithm, signature) in spki_keys {
        let key = VerifyingKey::from_spki_der(&fixture(&format!("{name}.spki.der"))).unwrap();
        assert_eq!(key.description(), certificate_key(name).description());
        assert_eq!(
            key.verify(algorithm, &message, &fixture(signature)),
            Ok(()),
            "{name}"
        );
        // A certificate is not a SubjectPublicKeyInfo.
        assert!(VerifyingKey::from_spki_der(&fixture(&format!("{name}.cert.pem"))).is_err());
    }
}

/// New keys, certificates and signatures from openssl over a random message, every run.
#[test]
fn fresh_openssl_signatures_verify() {
    let dir = Scratch::new("fresh");
    dir.openssl(&["rand", "-out", "message.bin", "317"]);
    let message = dir.read("message.bin");
    let tampered = flip_bit(&message, 1000);

    // Generates KEY from ALGORITHM_ARGS, a self-signed certificate and the SPKI, and
    // returns the keys read from both.
    let new_key = |name: &str, genpkey: &[&str]| -> [VerifyingKey; 2] {
        let key = format!("{name}.key");
        let mut args = vec!["genpkey", "-quiet", "-out", &key];
        args.extend_from_slice(genpkey);
        dir.openssl(&args);
        let cert = format!("{name}.cert.pem");
        let subject = format!("/CN=wardseal fresh {name}");
        dir.openssl(&[
            "req", "-new", "-x509", "-key", &key, "-sha256", "-days", "1", "-subj", &subject,
            "-out", &cert,
        ]);
        let spki = format!("{name}.spki.der");
        dir.openssl(&[
            "pkey", "-in", &key, "-pubout", "-outform", "DER", "-out", &spki,
        ]);
        let pem = String::from_utf8(dir.read(&cert)).unwrap();
        [
            VerifyingKey::from_certificate_pem(&pem).unwrap(),
            VerifyingKey::from_spki_der(&dir.read(&spki)).unwrap(),
        ]
    };
    let sign = |name: &str, out: &str, sigopts: &[&str]| -> Vec<u8> {
        let key = format!("{name}.key");
        let mut args = vec!["dgst", "-sha256", "-sign", &key];
        for sigopt in sigopts {
            args.extend_from_slice(&["-sigopt", sigopt]);
        }
        args.extend_from_slice(&["-out", out, "message.bin"]);
        dir.openssl(&args);
        dir.read(out)
    };
    let check = |keys: &[VerifyingKey; 2], algorithm, signature: &[u8]| {
        for key in keys {
            assert_eq!(
                key.verify(algorithm, &message, signature),
                Ok(()),
                "{key} {algorithm}"
            );
            assert_eq!(
                key.verify(algorithm, &tampered, signature),
                Err(SignatureError::SignatureInvalid),
                "{key} {algorithm} over a tampered message"
            );
        }
    };

    // ECDSA P-256: several signatures, so that both high-S and low-S ones occur.
    let ecdsa = new_key(
        "ecdsa",
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-pkeyopt",
            "ec_param_enc:named_curve",
        ],
    );
    dir.openssl(&[
        "pkey",
        "-in",
        "ecdsa.key",
        "-pubout",
        "-out",
        "ecdsa.pub.pem",
    ]);
    for round in 0..8 {
        let der = sign("ecdsa", &format!("ecdsa-{round}.sig"), &[]);
        check(&ecdsa, SignatureAlgorithm::EcdsaP256Sha256, &der);
        let raw = ecdsa_p256_der_to_raw(&der).unwrap();
        check(&ecdsa, SignatureAlgorithm::EcdsaP256Sha256Raw, &raw);
        // What the collector sends after converting PKCS#11 output must satisfy openssl.
        let converted = ecdsa_p256_raw_to_der(&raw).unwrap();
        let file = format!("ecdsa-{round}.converted.sig");
        dir.write(&file, &converted);
        dir.openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            "ecdsa.pub.pem",
            "-signature",
            &file,
            "message.bin",
        ]);
    }

    // RSA-PSS, salt 32; the largest salt is refused.
    let rsa = new_key(
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    );
    let pss = [
        "rsa_padding_mode:pss",
        "rsa_pss_saltlen:32",
        "rsa_mgf1_md:sha256",
    ];
    check(
        &rsa,
        SignatureAlgorithm::RsaPssSha256,
        &sign("rsa", "rsa.sig", &pss),
    );
    let max_salt = sign(
        "rsa",
        "rsa-saltmax.sig",
        &[
            "rsa_padding_mode:pss",
            "rsa_pss_saltlen:max",
            "rsa_mgf1_md:sha256",
        ],
    );
    assert_eq!(
        rsa[0].verify(SignatureAlgorithm::RsaPssSha256, &message, &max_salt),
        Err(SignatureError::SignatureInvalid)
    );

    // DSA 2048/256, new domain parameters.
    dir.dsa_2048_256_params("dsa.params");
    let dsa = new_key("dsa", &["-paramfile", "dsa.params"]);
    check(
        &dsa,
        SignatureAlgorithm::DsaSha256,
        &sign("dsa", "dsa.sig", &[]),
    );
}
