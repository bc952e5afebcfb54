//! Software keys: encrypted PKCS#8 files that openssl reads and writes too.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use wardseal_card::{
    EcdsaEncoding, Error, KeyKind, Passphrase, SignatureAlgorithm, Signer, SoftwareSigner,
    VerifyingKey,
};
use wardseal_core::hash::Hash;
use wardseal_core::signature::SignatureError;

const PASSPHRASE: &str = "correct horse battery staple";

fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed (Debian package `openssl`)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Signs a digest, checks it with our verifier and with `openssl pkeyutl`, using the
/// public key openssl extracts from the encrypted key file (so openssl decrypts it too).
fn check_signature_with_openssl(
    dir: &Path,
    key_file: &str,
    signer: &SoftwareSigner,
    pkeyutl: &[&str],
) {
    let message = b"batch header bytes";
    let digest = Hash::sha256(message);
    let signature = signer.sign_message(message).unwrap();
    VerifyingKey::from_spki_der(signer.public_key_der())
        .unwrap()
        .verify(signer.algorithm(), message, &signature)
        .unwrap();
    openssl_ok(
        dir,
        &[
            "pkey",
            "-in",
            key_file,
            "-passin",
            &format!("pass:{PASSPHRASE}"),
            "-pubout",
            "-out",
            "pub.pem",
        ],
    );
    let ours = pkcs8::der::pem::encode_string(
        "PUBLIC KEY",
        pkcs8::LineEnding::LF,
        signer.public_key_der(),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("pub.pem")).unwrap(), ours);
    std::fs::write(dir.join("digest"), digest.as_bytes()).unwrap();
    std::fs::write(dir.join("message"), message).unwrap();
    std::fs::write(dir.join("signature"), &signature).unwrap();
    let mut args = vec![
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-sigfile",
        "signature",
    ];
    args.extend_from_slice(pkeyutl);
    let stdout = openssl_ok(dir, &args);
    assert!(
        stdout.contains("Signature Verified Successfully"),
        "{stdout}"
    );
}

#[test]
fn generated_keys_round_trip_through_0600_files_that_openssl_reads() {
    let dir = tempfile::tempdir().unwrap();
    let passphrase = Passphrase::from(PASSPHRASE);
    for (kind, file, algorithm, pkeyutl) in [
        (
            KeyKind::EcdsaP256,
            "p256.pem",
            SignatureAlgorithm::EcdsaP256Sha256,
            &["-in", "digest"][..],
        ),
        (
            KeyKind::Rsa { bits: 2048 },
            "rsa.pem",
            SignatureAlgorithm::RsaPssSha256,
            &[
                "-in",
                "digest",
                "-pkeyopt",
                "digest:sha256",
                "-pkeyopt",
                "rsa_padding_mode:pss",
                "-pkeyopt",
                "rsa_pss_saltlen:32",
            ][..],
        ),
        // Pure Ed25519 signs the message itself.
        (
            KeyKind::Ed25519,
            "ed25519.pem",
            SignatureAlgorithm::Ed25519,
            &["-rawin", "-in", "message"][..],
        ),
    ] {
        let generated = SoftwareSigner::generate(kind).unwrap();
        let path = dir.path().join(file);
        generated.save(&path, &passphrase).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        );
        // Never overwritten.
        assert!(matches!(
            generated.save(&path, &passphrase),
            Err(Error::KeyFile { .. })
        ));

        let opened = SoftwareSigner::open(&path, &passphrase).unwrap();
        assert_eq!(opened.algorithm(), algorithm);
        assert_eq!(opened.public_key_der(), generated.public_key_der());
        check_signature_with_openssl(dir.path(), file, &opened, pkeyutl);

        let error = SoftwareSigner::open(&path, &Passphrase::from("wrong")).unwrap_err();
        assert!(matches!(error, Error::KeyDecrypt { .. }), "{error:?}");
        assert!(!format!("{opened:?}").contains("BEGIN"), "{opened:?}");
    }
}

#[test]
fn dsa_2048_256_keys_from_openssl_sign_and_openssl_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ok(
        d,
        &[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:2048",
            "-pkeyopt",
            "dsa_paramgen_q_bits:256",
            "-out",
            "params.pem",
        ],
    );
    openssl_ok(
        d,
        &["genpkey", "-paramfile", "params.pem", "-out", "plain.pem"],
    );
    openssl_ok(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "plain.pem",
            "-out",
            "dsa.pem",
            "-passout",
            &format!("pass:{PASSPHRASE}"),
        ],
    );
    let signer = SoftwareSigner::open(&d.join("dsa.pem"), &Passphrase::from(PASSPHRASE)).unwrap();
    assert_eq!(signer.algorithm(), SignatureAlgorithm::DsaSha256);
    check_signature_with_openssl(d, "dsa.pem", &signer, &["-in", "digest"]);
    // And it saves in our own format, which reopens.
    signer
        .save(&d.join("again.pem"), &Passphrase::from(PASSPHRASE))
        .unwrap();
    let again = SoftwareSigner::open(&d.join("again.pem"), &Passphrase::from(PASSPHRASE)).unwrap();
    assert_eq!(again.public_key_der(), signer.public_key_der());
}

#[test]
fn raw_ecdsa_encoding_is_64_bytes_and_verifies() {
    let signer = SoftwareSigner::generate(KeyKind::EcdsaP256)
        .unwrap()
        .with_ecdsa_encoding(EcdsaEncoding::Raw);
    assert_eq!(signer.algorithm(), SignatureAlgorithm::EcdsaP256Sha256Raw);
    let digest = Hash::sha256(b"x");
    let signature = signer.sign_digest(&digest).unwrap();
    assert_eq!(signature.len(), 64);
    let public = VerifyingKey::from_spki_der(signer.public_key_der()).unwrap();
    public
        .verify_prehashed(
            SignatureAlgorithm::EcdsaP256Sha256Raw,
            digest.as_bytes(),
            &signature,
        )
        .unwrap();
    let error = public
        .verify_prehashed(
            SignatureAlgorithm::EcdsaP256Sha256Raw,
            Hash::sha256(b"y").as_bytes(),
            &signature,
        )
        .unwrap_err();
    assert_eq!(error, SignatureError::SignatureInvalid);
}

#[test]
fn a_csr_signed_through_rcgen_is_accepted_by_openssl() {
    let signer = SoftwareSigner::generate(KeyKind::EcdsaP256)
        .unwrap()
        .with_ecdsa_encoding(EcdsaEncoding::Raw);
    let key = wardseal_card::RcgenKey::new(&signer).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "device");
    let csr = params.serialize_request(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("csr.pem"), csr.pem().unwrap()).unwrap();
    openssl_ok(dir.path(), &["req", "-in", "csr.pem", "-verify", "-noout"]);
    // Ed25519 signs the to-be-signed bytes themselves, as X.509 requires (RFC 8410).
    let ed25519 = SoftwareSigner::generate(KeyKind::Ed25519).unwrap();
    let csr = params
        .serialize_request(&wardseal_card::RcgenKey::new(&ed25519).unwrap())
        .unwrap();
    std::fs::write(dir.path().join("ed25519.csr.pem"), csr.pem().unwrap()).unwrap();
    openssl_ok(
        dir.path(),
        &["req", "-in", "ed25519.csr.pem", "-verify", "-noout"],
    );
    assert!(matches!(
        ed25519.sign_digest(&Hash::sha256(b"x")),
        Err(Error::DigestUnsupported {
            algorithm: SignatureAlgorithm::Ed25519
        })
    ));
    // rcgen 0.14 cannot write RSA-PSS: refused up front, not mid-way.
    let rsa = SoftwareSigner::generate(KeyKind::Rsa { bits: 2048 }).unwrap();
    assert!(matches!(
        wardseal_card::RcgenKey::new(&rsa),
        Err(Error::UnsupportedKey(_))
    ));
}

#[test]
fn generated_dsa_keys_sign() {
    let signer = SoftwareSigner::generate(KeyKind::Dsa2048).unwrap();
    let digest = Hash::sha256(b"dsa");
    let signature = signer.sign_digest(&digest).unwrap();
    VerifyingKey::from_spki_der(signer.public_key_der())
        .unwrap()
        .verify_prehashed(SignatureAlgorithm::DsaSha256, digest.as_bytes(), &signature)
        .unwrap();
}
