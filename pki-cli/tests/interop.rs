//! What the CA produces, checked by independent implementations: openssl, webpki (as
//! rustls uses it) and pkilint.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{
    PKILINT_URN_FALSE_POSITIVE, TestCa, assert_openssl_verifies, assert_says, openssl,
    openssl_p256_csr, openssl_verify, pkilint_findings, profiles, run, text,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::{RootCertStore, client::WebPkiServerVerifier, server::WebPkiClientVerifier};
use wardseal_core::identity::{IDENTITY_EXTENSION_OID_STRING, PATIENT_DATA_SIGNING_OID};

#[test]
fn openssl_verify_crl_check_accepts_valid_and_rejects_revoked_device() {
    let ca = TestCa::new();
    let (_, good, _) = ca.issue_device("good", "urn:epc:tag:sgtin-96:3.0614141.812345.6789");
    let (bad_serial, bad, _) = ca.issue_device("bad", "urn:epc:tag:sgtin-96:3.0614141.812345.6790");
    ca.ok(&["revoke", &bad_serial, "--reason", "key-compromise"]);
    ca.ok(&["crl"]);
    let crl = ca.file("crl.pem");

    assert_openssl_verifies(&ca, &good, Some(&crl));
    let output = openssl_verify(&ca, &bad, Some(&crl));
    assert!(
        !output.status.success(),
        "openssl accepted a revoked certificate"
    );
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(said.contains("certificate revoked"), "{said}");
    // Without the CRL openssl has no way to know.
    assert!(openssl_verify(&ca, &bad, None).status.success());

    // Our own verifier agrees, with the reason, and exit codes 0 / 1.
    let output = ca.output(&["verify", good.to_str().unwrap(), "--crl"]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let output = ca.output(&["verify", bad.to_str().unwrap(), "--crl"]);
    assert_eq!(output.status.code(), Some(1));
    assert_says(&output.stdout, "key-compromise");
}

#[test]
fn openssl_x509_text_shows_the_epc_san_and_the_identity_extension() {
    let ca = TestCa::new();
    let (_, certificate, key) = ca.issue_device("device", "3074257BF7194E4000001A85");
    let output = run(Command::new(openssl())
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&certificate));
    let shown = text(&output.stdout);
    assert!(output.status.success());
    assert!(
        shown.contains("URI:urn:epc:id:sgtin:0614141.812345.6789"),
        "{shown}"
    );
    assert!(shown.contains(IDENTITY_EXTENSION_OID_STRING), "{shown}");
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(
        shown.contains("URI:http://127.0.0.1:8099/crl/issuing.crl"),
        "{shown}"
    );
    // The extension is non-critical: openssl prints "critical" after the OID otherwise.
    assert!(
        !shown.contains(&format!("{IDENTITY_EXTENSION_OID_STRING}: critical")),
        "{shown}"
    );
    // The generated key is 0600 and matches the certificate.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let from_key = run(Command::new(openssl())
        .args(["pkey", "-pubout", "-in"])
        .arg(&key));
    let from_certificate = run(Command::new(openssl())
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(&certificate));
    assert_eq!(text(&from_key.stdout), text(&from_certificate.stdout));
}

#[test]
fn openssl_verifies_an_authority_certificate_and_reads_its_kind() {
    let ca = TestCa::new();
    let (serial, certificate, _) = ca.issue(
        "authority",
        &[
            "--profile",
            "authority",
            "--subject-id",
            "pharmacy-3",
            "--authority-kind",
            "pharmacy",
        ],
    );
    assert_openssl_verifies(&ca, &certificate, None);
    let purpose = run(Command::new(openssl())
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(ca.file("root.crt"))
        .arg("-untrusted")
        .arg(ca.file("issuing.crt"))
        .arg(&certificate));
    assert!(purpose.status.success(), "{}", text(&purpose.stderr));
    let shown = text(
        &run(Command::new(openssl())
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "extendedKeyUsage",
                "-in",
            ])
            .arg(&certificate))
        .stdout,
    );
    assert!(shown.contains("CN = pharmacy-3"), "{shown}");
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    // The identity extension's value, parsed by openssl: role authority(6), the subject
    // id at [3] and the kind pharmacy(2) at [5].
    let der = ca.path("authority.der");
    run(Command::new(openssl())
        .args(["x509", "-outform", "DER", "-out"])
        .arg(&der)
        .arg("-in")
        .arg(&certificate));
    let certificate_der = std::fs::read(&der).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificate_der).unwrap();
    let extension = parsed
        .extensions()
        .iter()
        .find(|extension| extension.oid.to_id_string() == IDENTITY_EXTENSION_OID_STRING)
        .unwrap();
    let value = ca.path("identity.der");
    std::fs::write(&value, extension.value).unwrap();
    let dump = text(
        &run(Command::new(openssl())
            .args(["asn1parse", "-inform", "DER", "-i", "-in"])
            .arg(&value))
        .stdout,
    );
    let lines: Vec<&str> = dump.lines().collect();
    assert!(
        lines[2].contains("ENUMERATED") && lines[2].ends_with(":06"),
        "{dump}"
    );
    assert!(lines[3].contains("cont [ 3 ]"), "{dump}");
    assert!(lines[4].contains("cont [ 5 ]"), "{dump}");
    assert_eq!(
        &extension.value[extension.value.len() - 3..],
        [0x85, 0x01, 0x02]
    );
    // `show` names the kind.
    let shown = ca.ok(&["show", &serial]);
    assert!(shown.contains("authority kind:   pharmacy"), "{shown}");
}

#[test]
fn openssl_reads_the_encrypted_ca_key_with_the_passphrase_only() {
    let ca = TestCa::new();
    let key = ca.file("issuing.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let database = ca.file("ca.db");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&database).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let passin = format!("file:{}", ca.passphrase_file.display());
    let output = run(Command::new(openssl())
        .args(["pkey", "-noout", "-passin", &passin, "-in"])
        .arg(&key));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = run(Command::new(openssl())
        .args(["pkey", "-noout", "-passin", "pass:wrong passphrase", "-in"])
        .arg(&key));
    assert!(!output.status.success());
}

const ALGORITHMS: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
];

fn pem_certificate(path: &std::path::Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[test]
fn webpki_accepts_each_profile_for_its_extended_key_usage_only() {
    let ca = TestCa::new();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let root = pem_certificate(&ca.file("root.crt"));
    let issuing = pem_certificate(&ca.file("issuing.crt"));
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let roots = Arc::new(roots);
    let clients =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .unwrap();
    let servers =
        WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .unwrap();
    let intermediates = [issuing.clone()];

    for (name, args) in profiles() {
        let (_, path, _) = ca.issue(name, &args);
        let now = UnixTime::now();
        let certificate = pem_certificate(&path);
        let as_client = clients.verify_client_cert(&certificate, &intermediates, now);
        let server_name = match name {
            "collector" => ServerName::try_from("collector.ward-7.hospital.example").unwrap(),
            "storage" => ServerName::try_from("storage.hospital.example").unwrap(),
            _ => ServerName::try_from("anything.hospital.example").unwrap(),
        };
        let as_server =
            servers.verify_server_cert(&certificate, &intermediates, &server_name, &[], now);
        match name {
            "device" | "staff" | "admin" | "authority" => {
                as_client.unwrap_or_else(|error| panic!("{name} as client: {error}"));
                assert!(as_server.is_err(), "{name} accepted as a TLS server");
            }
            "collector" | "storage" => {
                as_client.unwrap_or_else(|error| panic!("{name} as client: {error}"));
                as_server.unwrap_or_else(|error| panic!("{name} as server: {error}"));
            }
            "patient" => {
                assert!(
                    as_client.is_err(),
                    "a patient card certificate accepted for TLS"
                );
                assert!(
                    as_server.is_err(),
                    "a patient card certificate accepted for TLS"
                );
                let end_entity = webpki::EndEntityCert::try_from(&certificate).unwrap();
                let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
                let oid: &'static [u8] = Box::leak(
                    PATIENT_DATA_SIGNING_OID
                        .as_bytes()
                        .to_vec()
                        .into_boxed_slice(),
                );
                end_entity
                    .verify_for_usage(
                        ALGORITHMS,
                        &anchors,
                        &intermediates,
                        now,
                        // `required` would also demand the EKU of the CA certificates,
                        // which (like every CA here) carry none; rustls uses
                        // `required_if_present` for serverAuth and clientAuth too.
                        webpki::KeyUsage::required_if_present(oid),
                        None,
                        None,
                    )
                    .unwrap_or_else(|error| panic!("patient for data signing: {error:?}"));
                let client_auth = end_entity.verify_for_usage(
                    ALGORITHMS,
                    &anchors,
                    &intermediates,
                    now,
                    webpki::KeyUsage::client_auth(),
                    None,
                    None,
                );
                assert!(client_auth.is_err());
                drop(client_auth);
            }
            other => panic!("unexpected profile {other}"),
        }
    }
}

#[test]
fn rustls_client_verifier_with_our_crl_refuses_a_revoked_device() {
    let ca = TestCa::new();
    let (_, good, _) = ca.issue_device("good", "urn:epc:tag:sgtin-96:3.0614141.812345.1");
    let (bad_serial, bad, _) = ca.issue_device("bad", "urn:epc:tag:sgtin-96:3.0614141.812345.2");
    ca.ok(&["revoke", &bad_serial, "--reason", "cessation-of-operation"]);
    ca.ok(&["crl"]);
    let crl = CertificateRevocationListDer::from_pem_file(ca.file("crl.pem")).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(pem_certificate(&ca.file("root.crt"))).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .with_crls([crl])
    .only_check_end_entity_revocation()
    .enforce_revocation_expiration()
    .build()
    .unwrap();
    let intermediates = [pem_certificate(&ca.file("issuing.crt"))];
    verifier
        .verify_client_cert(&pem_certificate(&good), &intermediates, UnixTime::now())
        .unwrap();
    let error = verifier
        .verify_client_cert(&pem_certificate(&bad), &intermediates, UnixTime::now())
        .unwrap_err();
    assert!(format!("{error:?}").contains("Revoked"), "{error:?}");
}

#[test]
fn pkilint_finds_no_error_or_warning_in_any_profile_the_cas_or_the_crl() {
    let ca = TestCa::new();
    for (name, args) in profiles() {
        let (serial, path, _) = ca.issue(name, &args);
        let findings = pkilint_findings("lint_pkix_cert", &["lint", "-s", "WARNING"], &path);
        let unexpected: Vec<_> = findings
            .iter()
            .filter(|finding| {
                !(name == "device" && finding.starts_with(PKILINT_URN_FALSE_POSITIVE))
            })
            .collect();
        assert!(unexpected.is_empty(), "{name}: {unexpected:#?}");
        if name == "device" {
            assert_eq!(
                findings.len(),
                1,
                "the URN false positive is gone: {findings:?}"
            );
        }
        if name == "staff" {
            ca.ok(&[
                "revoke",
                &serial,
                "--reason",
                "affiliation-changed",
                "--invalidity-date",
                "2025-01-01T00:00:00Z",
            ]);
        }
    }
    for file in ["root.crt", "issuing.crt"] {
        let findings =
            pkilint_findings("lint_pkix_cert", &["lint", "-s", "WARNING"], &ca.file(file));
        assert!(findings.is_empty(), "{file}: {findings:#?}");
    }
    ca.ok(&["crl"]);
    for profile in ["PKIX", "BR"] {
        let findings = pkilint_findings(
            "lint_crl",
            &["lint", "-t", "CRL", "-p", profile, "-s", "WARNING"],
            &ca.file("crl.pem"),
        );
        assert!(findings.is_empty(), "CRL ({profile}): {findings:#?}");
    }
}

#[test]
fn csr_from_openssl_gets_the_profile_not_what_it_asks_for() {
    let ca = TestCa::new();
    let key = ca.path("requester.key");
    let csr = ca.path("requester.csr");
    openssl_p256_csr(
        &key,
        &csr,
        &[
            "-subj",
            "/CN=I want to be a CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "subjectAltName=DNS:evil.example",
        ],
    );
    let certificate = ca.path("requester.crt");
    ca.ok(&[
        "issue",
        "--profile",
        "staff",
        "--subject-id",
        "staff-7",
        "--csr",
        csr.to_str().unwrap(),
        "--out",
        certificate.to_str().unwrap(),
    ]);
    let shown = text(
        &run(Command::new(openssl())
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&certificate))
        .stdout,
    );
    assert!(shown.contains("CA:FALSE"), "{shown}");
    assert!(!shown.contains("evil.example"), "{shown}");
    assert!(shown.contains("CN = staff-7"), "{shown}");
    assert!(openssl_verify(&ca, &certificate, None).status.success());
}
