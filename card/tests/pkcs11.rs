//! PKCS#11 signing against a real SoftHSM2, checked by openssl and pkcs11-tool.
//!
//! Every test that loads the module runs in its own child process with its own token
//! store (`run_isolated_test`): one PKCS#11 context per process, as SoftHSM needs.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use secrecy::SecretString;
use wardseal_card::pkcs11::{EnrollmentRequest, Pkcs11Token, Pkcs11X509Key, TokenSelector};
use wardseal_card::{
    EcCurve, EcdsaEncoding, Error, KeySelector, PinTries, Pkcs11Config, Pkcs11Signer, SecretSource,
    SignatureAlgorithm, Signer, VerifyingKey,
};
use wardseal_core::hash::Hash;
use wardseal_softhsm::{SoftHsm, Token, TokenSpec, run_isolated_test};

/// The wardseal "patient data signing" extended key usage.
const PATIENT_DATA_SIGNING: &str =
    "1.2.840.113556.1.8000.2554.1820.48732.25317.17402.36803.3040821.308419.2";

fn pin_of(token: &Token) -> SecretSource {
    SecretSource::Value(token.user_pin().clone())
}

fn open(hsm: &SoftHsm, token: &Token) -> Pkcs11Token {
    Pkcs11Token::open(
        hsm.module_path(),
        &TokenSelector::Label(token.label().to_owned()),
        Some(&pin_of(token)),
    )
    .unwrap()
}

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed (Debian package `openssl`)")
}

fn openssl_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = openssl(dir, args);
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A throwaway CA made by openssl, which issues the patient certificate from our CSR.
fn issue_with_openssl(dir: &Path, csr_pem: &str) -> Vec<u8> {
    std::fs::write(dir.join("csr.pem"), csr_pem).unwrap();
    // openssl checks the CSR's signature, made on the token.
    openssl_ok(dir, &["req", "-in", "csr.pem", "-verify", "-noout"]);
    openssl_ok(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=wardseal test CA",
            "-days",
            "1",
        ],
    );
    std::fs::write(
        dir.join("patient.ext"),
        format!(
            "keyUsage = critical, digitalSignature, nonRepudiation\n\
             extendedKeyUsage = {PATIENT_DATA_SIGNING}\n"
        ),
    )
    .unwrap();
    openssl_ok(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "csr.pem",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x5a17c0ffee0ddba11",
            "-days",
            "1",
            "-extfile",
            "patient.ext",
            "-outform",
            "DER",
            "-out",
            "patient.der",
        ],
    );
    std::fs::read(dir.join("patient.der")).unwrap()
}

#[test]
fn enroll_then_sign_1000_digests_from_8_threads_all_verified_by_openssl() {
    run_isolated_test(
        "enroll_then_sign_1000_digests_from_8_threads_all_verified_by_openssl",
        |hsm| {
            let spec = TokenSpec::new("patient-0001");
            let token = hsm.init_token(&spec).unwrap();
            let card = open(hsm, &token);
            let dir = tempfile::tempdir().unwrap();

            // Enroll: key generated on the token, CSR signed by it, certificate written back.
            let request =
                EnrollmentRequest::new("patient signing key", &[0x9c, 0x01], "patient 0001");
            let enrollment = card.enroll(&request).unwrap();
            let certificate = issue_with_openssl(dir.path(), &enrollment.csr_pem());
            let mut signer = enrollment.signer;
            assert!(signer.certificate_der().is_none());
            card.install_certificate(&mut signer, &certificate).unwrap();
            assert_eq!(signer.certificate_der(), Some(&certificate[..]));

            // pkcs11-tool, independently, sees the three objects with our label and id.
            let listing = hsm.list_objects(&token).unwrap();
            for kind in [
                "Private Key Object; EC",
                "Public Key Object; EC",
                "Certificate Object; type = X.509 cert",
            ] {
                assert!(listing.contains(kind), "{kind} missing from\n{listing}");
            }
            assert_eq!(
                listing.matches("label:      patient signing key").count(),
                3,
                "{listing}"
            );
            assert_eq!(listing.matches("ID:         9c01").count(), 3, "{listing}");
            assert!(listing.contains("patient 0001"), "{listing}");

            // A fresh signer finds the certificate on the token by CKA_ID.
            let reopened = Pkcs11Signer::new(
                &card,
                &KeySelector::Id(vec![0x9c, 0x01]),
                EcdsaEncoding::Der,
            )
            .unwrap();
            assert_eq!(reopened.certificate_der(), Some(&certificate[..]));
            assert_eq!(reopened.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);

            // 1,000 digests from 8 threads at once through one shared signer.
            let signer = Arc::new(reopened);
            let threads: Vec<_> = (0..8)
                .map(|thread| {
                    let signer = Arc::clone(&signer);
                    std::thread::spawn(move || {
                        (0..125)
                            .map(|i| {
                                let message = format!("batch header {thread}/{i}").into_bytes();
                                let signature =
                                    signer.sign_digest(&Hash::sha256(&message)).unwrap();
                                (message, signature)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let signed: Vec<_> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            assert_eq!(signed.len(), 1000);

            // Every signature checked by openssl against the certificate read from the token.
            std::fs::write(
                dir.path().join("token-cert.der"),
                signer.certificate_der().unwrap(),
            )
            .unwrap();
            openssl_ok(
                dir.path(),
                &[
                    "x509",
                    "-inform",
                    "DER",
                    "-in",
                    "token-cert.der",
                    "-pubkey",
                    "-noout",
                    "-out",
                    "pub.pem",
                ],
            );
            let public = VerifyingKey::from_certificate_der(&certificate).unwrap();
            for (n, (message, signature)) in signed.iter().enumerate() {
                let message_file = format!("m{n}");
                let signature_file = format!("s{n}");
                std::fs::write(dir.path().join(&message_file), message).unwrap();
                std::fs::write(dir.path().join(&signature_file), signature).unwrap();
                let stdout = openssl_ok(
                    dir.path(),
                    &[
                        "dgst",
                        "-sha256",
                        "-verify",
                        "pub.pem",
                        "-signature",
                        &signature_file,
                        &message_file,
                    ],
                );
                assert_eq!(String::from_utf8_lossy(&stdout).trim(), "Verified OK");
                public
                    .verify(SignatureAlgorithm::EcdsaP256Sha256, message, signature)
                    .unwrap();
            }
            // And openssl does refuse a signature over something else.
            let output = openssl(
                dir.path(),
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    "pub.pem",
                    "-signature",
                    "s0",
                    "m1",
                ],
            );
            assert!(!output.status.success());

            // The raw r‖s encoding, for compact wire formats.
            let raw = Pkcs11Signer::new(
                &card,
                &KeySelector::Label("patient signing key".into()),
                EcdsaEncoding::Raw,
            )
            .unwrap();
            let digest = Hash::sha256(b"raw");
            let signature = raw.sign_digest(&digest).unwrap();
            assert_eq!(signature.len(), 64);
            public
                .verify_prehashed(
                    SignatureAlgorithm::EcdsaP256Sha256Raw,
                    digest.as_bytes(),
                    &signature,
                )
                .unwrap();
        },
    )
    .unwrap();
}

#[test]
fn rsa_pss_on_the_token_verified_by_openssl() {
    run_isolated_test("rsa_pss_on_the_token_verified_by_openssl", |hsm| {
        let token = hsm.init_token(&TokenSpec::new("rsa")).unwrap();
        hsm.generate_rsa(&token, 2048, "rsa key", &[0x02], false)
            .unwrap();
        let card = open(hsm, &token);
        let signer =
            Pkcs11Signer::new(&card, &KeySelector::Id(vec![0x02]), EcdsaEncoding::Der).unwrap();
        assert_eq!(signer.algorithm(), SignatureAlgorithm::RsaPssSha256);
        let dir = tempfile::tempdir().unwrap();
        let message = b"an RSA-PSS signed batch header";
        let signature = signer.sign_digest(&Hash::sha256(message)).unwrap();
        verify_rsa_pss_with_openssl(dir.path(), signer.public_key_der(), message, &signature);
    })
    .unwrap();
}

fn verify_rsa_pss_with_openssl(dir: &Path, spki: &[u8], message: &[u8], signature: &[u8]) {
    std::fs::write(dir.join("pub.der"), spki).unwrap();
    std::fs::write(dir.join("message"), message).unwrap();
    std::fs::write(dir.join("signature"), signature).unwrap();
    let stdout = openssl_ok(
        dir,
        &[
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            "pub.der",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sigopt",
            "rsa_mgf1_md:sha256",
            "-signature",
            "signature",
            "message",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), "Verified OK");
}

#[test]
fn always_authenticate_keys_reauthenticate_or_name_the_key_to_use() {
    run_isolated_test(
        "always_authenticate_keys_reauthenticate_or_name_the_key_to_use",
        |hsm| {
            let token = hsm.init_token(&TokenSpec::new("piv")).unwrap();
            hsm.generate_ec_p256_always_authenticate(&token, "PIV 9C signature", &[0x9c])
                .unwrap();
            hsm.generate_ec_p256(&token, "bedside key", &[0x01])
                .unwrap();
            hsm.generate_rsa(&token, 2048, "RSA 9C", &[0x9d], true)
                .unwrap();
            let card = open(hsm, &token);

            // EC: raw CKM_ECDSA is single-part, SoftHSM 2.6.1 has no CKM_ECDSA_SHA256: refused,
            // naming the key that asks once per session.
            let error = Pkcs11Signer::new(&card, &KeySelector::Id(vec![0x9c]), EcdsaEncoding::Der)
                .unwrap_err();
            let text = error.to_string();
            match &error {
                Error::AlwaysAuthenticate {
                    key,
                    alternatives,
                    mechanism,
                    ..
                } => {
                    assert!(key.contains("PIV 9C signature"), "{text}");
                    assert_eq!(mechanism, "CKM_ECDSA");
                    assert!(
                        alternatives.iter().any(|a| a.contains("bedside key")),
                        "{text}"
                    );
                    assert!(!alternatives.iter().any(|a| a.contains("RSA 9C")), "{text}");
                }
                other => panic!("expected AlwaysAuthenticate, got {other:?}"),
            }

            // RSA: multi-part CKM_SHA256_RSA_PKCS_PSS with a context-specific login per signature.
            let signer =
                Pkcs11Signer::new(&card, &KeySelector::Id(vec![0x9d]), EcdsaEncoding::Der).unwrap();
            assert!(signer.always_authenticate());
            let dir = tempfile::tempdir().unwrap();
            for n in 0..3 {
                let message = format!("signature {n} needs the PIN again");
                let signature = signer.sign_message(message.as_bytes()).unwrap();
                verify_rsa_pss_with_openssl(
                    dir.path(),
                    signer.public_key_der(),
                    message.as_bytes(),
                    &signature,
                );
            }
            // A bare digest cannot be signed that way (single-part mechanism).
            let error = signer.sign_digest(&Hash::sha256(b"x")).unwrap_err();
            assert!(matches!(error, Error::AlwaysAuthenticate { .. }), "{error}");
        },
    )
    .unwrap();
}

#[test]
fn wrong_pin_is_reported_with_what_the_token_says_about_tries() {
    run_isolated_test(
        "wrong_pin_is_reported_with_what_the_token_says_about_tries",
        |hsm| {
            let token = hsm.init_token(&TokenSpec::new("patient-0002")).unwrap();
            let error = Pkcs11Token::open(
                hsm.module_path(),
                &TokenSelector::Label("patient-0002".into()),
                Some(&SecretSource::Value(SecretString::from("0000"))),
            )
            .unwrap_err();
            // SoftHSM sets CKF_USER_PIN_COUNT_LOW after a failed login.
            match &error {
                Error::WrongPin { token, tries } => {
                    assert_eq!(token, "patient-0002");
                    assert_eq!(*tries, PinTries::Low);
                }
                other => panic!("expected WrongPin, got {other:?}"),
            }
            assert!(error.to_string().contains("wrong PIN"), "{error}");
            // The right PIN still works: nothing was locked by the failure.
            drop(open(hsm, &token));
        },
    )
    .unwrap();
}

#[test]
fn locked_pin_is_reported_without_trying() {
    run_isolated_test("locked_pin_is_reported_without_trying", |hsm| {
        let token = hsm.init_token(&TokenSpec::new("locked")).unwrap();
        hsm.lock_user_pin(&token).unwrap();
        let error = Pkcs11Token::open(
            hsm.module_path(),
            &TokenSelector::Label("locked".into()),
            Some(&pin_of(&token)),
        )
        .unwrap_err();
        assert!(
            matches!(&error, Error::PinLocked { token } if token == "locked"),
            "{error:?}"
        );
    })
    .unwrap();
}

#[test]
fn missing_token_lists_the_tokens_present() {
    run_isolated_test("missing_token_lists_the_tokens_present", |hsm| {
        let token = hsm.init_token(&TokenSpec::new("present")).unwrap();
        let error = Pkcs11Token::open(
            hsm.module_path(),
            &TokenSelector::Label("absent".into()),
            Some(&pin_of(&token)),
        )
        .unwrap_err();
        match &error {
            Error::TokenNotFound { present, .. } => {
                assert!(present.iter().any(|p| p.contains("present")), "{error}");
            }
            other => panic!("expected TokenNotFound, got {other:?}"),
        }
        let error = Pkcs11Token::open(
            hsm.module_path(),
            &TokenSelector::Serial("0000000000000000".into()),
            Some(&pin_of(&token)),
        )
        .unwrap_err();
        assert!(matches!(error, Error::TokenNotFound { .. }), "{error:?}");
        // By serial, the right one opens.
        let card = Pkcs11Token::open(
            hsm.module_path(),
            &TokenSelector::Serial(token.serial().into()),
            Some(&pin_of(&token)),
        )
        .unwrap();
        assert_eq!(card.label(), "present");
        // A missing key names the keys there are.
        hsm.generate_ec_p256(&token, "only key", &[0x07]).unwrap();
        let error =
            Pkcs11Signer::new(&card, &KeySelector::Id(vec![0x08]), EcdsaEncoding::Der).unwrap_err();
        match &error {
            Error::KeyNotFound { key, present, .. } => {
                assert_eq!(key, "id 08");
                assert!(present.iter().any(|p| p.contains("only key")), "{error}");
            }
            other => panic!("expected KeyNotFound, got {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn missing_module_is_reported() {
    let error = Pkcs11Token::open(
        Path::new("/nonexistent/libsofthsm2.so"),
        &TokenSelector::Label("x".into()),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::ModuleMissing { path } if path.ends_with("libsofthsm2.so")),
        "{error:?}"
    );
    assert!(error.to_string().contains("install"), "{error}");

    // A file that is not a PKCS#11 module.
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.so");
    std::fs::write(&bogus, b"not a shared object").unwrap();
    let error = Pkcs11Token::open(&bogus, &TokenSelector::Label("x".into()), None).unwrap_err();
    assert!(matches!(error, Error::ModuleLoad { .. }), "{error:?}");
}

#[test]
fn a_pkcs11_uri_selects_module_token_key_and_pin_file() {
    run_isolated_test("a_pkcs11_uri_selects_module_token_key_and_pin_file", |hsm| {
        let token = hsm.init_token(&TokenSpec::new("ward 7 patient").with_user_pin("246810")).unwrap();
        hsm.generate_ec_p256(&token, "signing key", &[0x01, 0xa0]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, "246810\n").unwrap();
        let uri = format!(
            "pkcs11:token=ward%207%20patient;serial={};id=%01%a0;type=private?module-path={}&pin-source=file:{}",
            token.serial(),
            hsm.module_path().display(),
            pin_file.display()
        );
        let config = Pkcs11Config::from_uri(&uri).unwrap();
        let signer = Pkcs11Signer::open(&config).unwrap();
        assert_eq!(signer.key().label, "signing key");
        let digest = Hash::sha256(b"uri");
        let signature = signer.sign_digest(&digest).unwrap();
        VerifyingKey::from_spki_der(signer.public_key_der())
            .unwrap()
            .verify_prehashed(SignatureAlgorithm::EcdsaP256Sha256, digest.as_bytes(), &signature)
            .unwrap();
        // The PIN never shows in Debug output.
        let debug = format!("{signer:?} {config:?}");
        assert!(!debug.contains("246810"), "{debug}");
    })
    .unwrap();
}

#[test]
fn x509_keys_on_p256_and_p384_sign_certificates_openssl_verifies() {
    run_isolated_test(
        "x509_keys_on_p256_and_p384_sign_certificates_openssl_verifies",
        |hsm| {
            let token = hsm.init_token(&TokenSpec::new("hospital-ca")).unwrap();
            hsm.generate_ec_p256(&token, "issuing-256", &[0x01])
                .unwrap();
            // wardseal-softhsm has no P-384 helper; pkcs11-tool generates it.
            let output = hsm
                .pkcs11_tool()
                .args(["--token-label", "hospital-ca", "--login", "--pin"])
                .arg(secrecy::ExposeSecret::expose_secret(token.user_pin()))
                .args(["--keypairgen", "--key-type", "EC:secp384r1", "--usage-sign"])
                .args(["--label", "issuing-384", "--id", "02"])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let opened = open(hsm, &token);
            let dir = tempfile::tempdir().unwrap();
            for (id, curve, digest_name) in [
                (0x01_u8, EcCurve::P256, "SHA256"),
                (0x02, EcCurve::P384, "SHA384"),
            ] {
                let key = Pkcs11X509Key::new(&opened, &KeySelector::Id(vec![id])).unwrap();
                assert_eq!(key.curve(), curve);
                let mut params =
                    rcgen::CertificateParams::new(vec!["ca.hospital.example".to_owned()]).unwrap();
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                let certificate = params.self_signed(&key).unwrap();
                let path = dir.path().join(format!("{curve}.pem"));
                std::fs::write(&path, certificate.pem()).unwrap();
                let text = String::from_utf8(openssl_ok(
                    dir.path(),
                    &["x509", "-in", path.to_str().unwrap(), "-noout", "-text"],
                ))
                .unwrap();
                assert!(
                    text.contains(&format!("ecdsa-with-{digest_name}")),
                    "{text}"
                );
                // openssl checks the self-signature the token made.
                openssl_ok(
                    dir.path(),
                    &[
                        "verify",
                        "-CAfile",
                        path.to_str().unwrap(),
                        path.to_str().unwrap(),
                    ],
                );
            }
            let error =
                Pkcs11X509Key::new(&opened, &KeySelector::Label("absent".into())).unwrap_err();
            assert!(matches!(error, Error::KeyNotFound { .. }), "{error}");
        },
    )
    .unwrap();
}
