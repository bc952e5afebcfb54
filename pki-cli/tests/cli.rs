//! The CA's behaviour through its command line: specific errors for bad input, batches
//! that are all or nothing, concurrent issuers, renewal, the audit chain, the CRL server.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::{TestCa, assert_says, openssl_p256_csr, openssl_verify, run, text};
use wardseal_pki::ca::{Ca, InitOptions, Secrets, SubjectKey};
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::profile::Request;

#[test]
fn bad_inputs_get_specific_errors() {
    let ca = TestCa::new();
    let error = ca.fails(&[
        "issue",
        "--profile",
        "device",
        "--epc",
        "urn:epc:tag:sgtin-96:3.06141.812345.1",
        "--group",
        "1",
        "--rule",
        "1",
        "--key-out",
        "k1",
    ]);
    assert!(
        error.contains("EPC") || error.contains("company prefix"),
        "{error}"
    );
    assert!(!error.contains("panicked"), "{error}");

    let error = ca.fails(&[
        "issue",
        "--profile",
        "staff",
        "--subject-id",
        "staff-1",
        "--group",
        "3",
        "--key-out",
        "k2",
    ]);
    assert!(
        error.contains("staff") && error.contains("groupId"),
        "{error}"
    );

    let error = ca.fails(&[
        "issue",
        "--profile",
        "collector",
        "--subject-id",
        "ward-1",
        "--key-out",
        "k3",
    ]);
    assert!(error.contains("--dns or --ip"), "{error}");

    // A CSR whose signature was altered after signing.
    let csr = ca.path("tampered.csr");
    openssl_p256_csr(
        &ca.path("tampered.key"),
        &csr,
        &["-subj", "/CN=x", "-outform", "DER"],
    );
    let mut der = std::fs::read(&csr).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    std::fs::write(&csr, der).unwrap();
    let error = ca.fails(&[
        "issue",
        "--profile",
        "staff",
        "--subject-id",
        "s",
        "--csr",
        csr.to_str().unwrap(),
    ]);
    assert!(error.contains("signature does not verify"), "{error}");

    let error = ca.fails(&["revoke", "4ab0000000000000000000000000beef"]);
    assert!(
        error.contains("no certificate with serial 4ab0000000000000000000000000beef"),
        "{error}"
    );
    let error = ca.fails(&["show", "zz"]);
    assert!(error.contains("bad serial number"), "{error}");
    let error = ca.fails(&[
        "revoke",
        "--epc",
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
    ]);
    assert!(error.contains("no valid certificate for EPC"), "{error}");

    let wrong = ca.path("wrong");
    std::fs::write(&wrong, "not the passphrase at all\n").unwrap();
    let output = run(ca
        .command(&[
            "issue",
            "--profile",
            "staff",
            "--subject-id",
            "s",
            "--key-out",
            "k4",
        ])
        .arg("--passphrase-file")
        .arg(&wrong));
    let error = text(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains("wrong passphrase"), "{error}");
    // Nothing was issued and no key left behind by the failures.
    assert!(ca.list(&[]).is_empty());
    for key in ["k1", "k2", "k3", "k4"] {
        assert!(!ca.path(key).exists(), "{key} left behind");
    }

    // A second init on the same directory.
    let error = ca.fails(&["init", "--organisation", "Again"]);
    assert!(error.contains("already holds a CA"), "{error}");
}

#[test]
fn short_passphrases_and_pin_values_in_uris_are_refused() {
    let ca = TestCa::uninitialised();
    let short = ca.path("short");
    std::fs::write(&short, "hunter2\n").unwrap();
    let output = run(ca
        .command(&["init", "--organisation", "X"])
        .arg("--passphrase-file")
        .arg(&short));
    assert_says(&output.stderr, "at least 12");
    let error = ca.fails(&[
        "init",
        "--organisation",
        "X",
        "--issuing-key",
        "pkcs11:token=t;object=k?pin-value=123456",
    ]);
    assert!(
        error.contains("PIN in the URI is refused") && !error.contains("123456"),
        "{error}"
    );
}

#[tokio::test]
async fn an_expired_issuing_ca_refuses_to_issue() {
    let temp = tempfile::tempdir().unwrap();
    let passphrase = temp.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery staple").unwrap();
    let secrets = Secrets {
        passphrase: Some(SecretSource::File(passphrase)),
        pin: None,
    };
    let mut options = InitOptions::new(temp.path().join("ca"), "Old Hospital");
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(800);
    options.root_validity = (long_ago, long_ago + time::Duration::days(7300));
    options.issuing_validity = (long_ago, long_ago + time::Duration::days(365));
    let ca = Ca::init(&options, &secrets, "test").await.unwrap();
    let signing = ca.unlock(&secrets).unwrap();
    let request = Request::new(wardseal_core::identity::Identity::staff(
        "staff-1".parse().unwrap(),
    ));
    let key = SubjectKey::Generate {
        algorithm: KeyAlgorithm::EcdsaP256,
        path: temp.path().join("staff.key"),
    };
    let error = signing.issue(&request, &key, "test").await.unwrap_err();
    assert!(
        matches!(
            error,
            wardseal_pki::Error::Ca(wardseal_pki::CaError::Expired { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("not now"), "{error}");
    assert!(!temp.path().join("staff.key").exists());
    let error = signing.crl("test").await.unwrap_err();
    assert!(
        matches!(
            error,
            wardseal_pki::Error::Ca(wardseal_pki::CaError::Expired { .. })
        ),
        "{error}"
    );
}

fn write_csv(ca: &TestCa, name: &str, rows: &[String]) -> std::path::PathBuf {
    let path = ca.path(name);
    let mut text = String::from("epc,group,rule,ward\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn epc(serial: u64) -> String {
    format!("urn:epc:tag:sgtin-96:3.0614141.812345.{serial}")
}

#[test]
fn a_batch_with_bad_rows_names_their_lines_and_issues_nothing() {
    let ca = TestCa::new();
    let rows = vec![
        format!("{},3,128,ward-7", epc(1)),
        format!("{},3,128,ward-7", epc(2)),
        "urn:epc:tag:sgtin-96:3.0614141.812345.notanumber,3,128,ward-7".to_owned(),
        format!("{},3,128,ward-7", epc(1)),
        format!("{},3,x,ward-7", epc(3)),
        format!("{},3,128,ward-7", epc(4)),
    ];
    let csv = write_csv(&ca, "fleet.csv", &rows);
    let out = ca.path("fleet");
    let error = ca.fails(&[
        "batch",
        "--csv",
        csv.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(
        error.contains("3 row(s) rejected, nothing issued"),
        "{error}"
    );
    assert!(error.contains("line 4: malformed EPC"), "{error}");
    assert!(
        error.contains("line 5: duplicate EPC urn:epc:id:sgtin:0614141.812345.1 (first on line 2)"),
        "{error}"
    );
    assert!(error.contains("line 6: rule \"x\""), "{error}");
    assert!(ca.list(&[]).is_empty());
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());

    // The good rows go through once fixed; a later batch naming an issued EPC is refused whole.
    let csv = write_csv(
        &ca,
        "fixed.csv",
        &[
            format!("{},3,128,ward-7", epc(1)),
            format!("{},3,128,ward-8", epc(2)),
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&ca.ok(&[
        "--json",
        "batch",
        "--csv",
        csv.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(report["issued"], 2);
    assert_eq!(ca.list(&["--ward", "ward-8"]).len(), 1);
    let certificate = out.join("3074257BF7194E4000000002.crt");
    assert!(openssl_verify(&ca, &certificate, None).status.success());
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out.join("3074257BF7194E4000000002.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    let again = write_csv(
        &ca,
        "again.csv",
        &[
            format!("{},3,128,ward-7", epc(5)),
            format!("{},3,128,ward-7", epc(2)),
        ],
    );
    let error = ca.fails(&[
        "batch",
        "--csv",
        again.to_str().unwrap(),
        "--out-dir",
        ca.path("again").to_str().unwrap(),
    ]);
    assert!(
        error.contains(
            "line 3: EPC urn:epc:id:sgtin:0614141.812345.2 already has a valid certificate"
        ),
        "{error}"
    );
    assert_eq!(ca.list(&[]).len(), 2);
}

#[test]
fn two_processes_issuing_at_once_get_distinct_serials_and_a_sound_database() {
    let ca = TestCa::new();
    const PER_BATCH: u64 = 150;
    let mut children = Vec::new();
    for process in 0..2_u64 {
        let rows: Vec<String> = (0..PER_BATCH)
            .map(|i| format!("{},{process},1,ward-{process}", epc(process * 1000 + i)))
            .collect();
        let csv = write_csv(&ca, &format!("fleet-{process}.csv"), &rows);
        let out = ca.path(&format!("out-{process}"));
        children.push(
            ca.command(&[
                "batch",
                "--csv",
                csv.to_str().unwrap(),
                "--out-dir",
                out.to_str().unwrap(),
                "--threads",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        );
    }
    for process in 0..4_u64 {
        let key = ca.path(&format!("staff-{process}.key"));
        let subject = format!("staff-{process}");
        children.push(
            ca.command(&[
                "issue",
                "--profile",
                "staff",
                "--subject-id",
                &subject,
                "--key-out",
                key.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        );
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let records = ca.list(&[]);
    assert_eq!(records.len(), usize::try_from(2 * PER_BATCH + 4).unwrap());
    let serials: std::collections::HashSet<_> = records
        .iter()
        .map(|record| record["serial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(serials.len(), records.len(), "duplicate serials");
    let audit = ca.ok(&["audit", "verify"]);
    assert!(
        audit.contains(&format!("{} entries", 2 * PER_BATCH + 4 + 1)),
        "{audit}"
    );
}

#[test]
fn renewal_keeps_the_identity_and_records_the_link() {
    let ca = TestCa::new();
    let (old, _, _) = ca.issue(
        "collector",
        &[
            "--profile",
            "collector",
            "--subject-id",
            "ward-7",
            "--group",
            "3",
            "--dns",
            "c.ward-7.example",
            "--ward",
            "ward-7",
        ],
    );
    let new_certificate = ca.path("renewed.crt");
    let json: serde_json::Value = serde_json::from_str(&ca.ok(&[
        "--json",
        "renew",
        &old,
        "--out",
        new_certificate.to_str().unwrap(),
    ]))
    .unwrap();
    let new = json["serial"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(json["renewal_of"], old.as_str());
    let shown = ca.ok(&["show", new]);
    assert!(shown.contains(&format!("renews:     {old}")), "{shown}");
    assert!(
        shown.contains("subject id:       ward-7") && shown.contains("group:            3"),
        "{shown}"
    );
    assert!(shown.contains("DNS:c.ward-7.example"), "{shown}");
    assert!(shown.contains("ward:       ward-7"), "{shown}");
    assert!(openssl_verify(&ca, &new_certificate, None).status.success());
    let error = ca.fails(&["renew", "4ab0000000000000000000000000beef"]);
    assert!(error.contains("no certificate with serial"), "{error}");
}

#[tokio::test]
async fn the_audit_log_detects_an_edited_or_deleted_entry() {
    let ca = TestCa::new();
    for i in 0..3 {
        ca.issue_device(&format!("d{i}"), &epc(i));
    }
    let report = ca.ok(&["audit", "verify"]);
    assert!(report.contains("4 entries"), "{report}");
    let database = ca.file("ca.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
        .execute(&pool)
        .await
        .unwrap();
    let output = ca.output(&["audit", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    assert_says(&output.stdout, "entry 2 was altered");
    sqlx::query("UPDATE audit_log SET actor = 'test' WHERE id = 2")
        .execute(&pool)
        .await
        .unwrap();
    assert!(ca.output(&["audit", "verify"]).status.success());
    sqlx::query("DELETE FROM audit_log WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = ca.output(&["audit", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    assert_says(&output.stdout, "broken before entry 4");
}

#[test]
fn list_filters_and_show_decodes_the_extension_in_words() {
    let ca = TestCa::new();
    let (device, _, _) = ca.issue_device("device", "urn:epc:tag:sgtin-96:3.0614141.812345.6789");
    ca.issue("staff", &["--profile", "staff", "--subject-id", "staff-9"]);
    ca.issue(
        "short",
        &[
            "--profile",
            "staff",
            "--subject-id",
            "staff-10",
            "--days",
            "10",
        ],
    );
    assert_eq!(ca.list(&["--role", "device"]).len(), 1);
    assert_eq!(ca.list(&["--group", "3"]).len(), 1);
    assert_eq!(ca.list(&["--ward", "ward-7"]).len(), 1);
    assert_eq!(ca.list(&["--expiring-within", "30"]).len(), 1);
    ca.ok(&["revoke", &device, "--reason", "superseded"]);
    assert_eq!(ca.list(&["--status", "revoked"]).len(), 1);
    assert_eq!(ca.list(&["--status", "valid"]).len(), 2);
    let shown = ca.ok(&["show", &device]);
    for expected in [
        "role:             device",
        "device EPC:       urn:epc:id:sgtin:0614141.812345.6789",
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789 (0x3074257BF7194E4000001A85)",
        "group:            3",
        "rule:             128",
        "status:     revoked",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in\n{shown}");
    }
}

/// Fetches `path` from the server with a bounded number of attempts.
fn http_get(address: &str, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap();
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/pkix-crl"),
        "{head}"
    );
    response[split + 4..].to_vec()
}

fn crl_serials(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).unwrap();
    crl.iter_revoked_certificates()
        .map(|revoked| {
            wardseal_pki::serial::SerialNumber::from_der_content(revoked.raw_serial()).to_string()
        })
        .collect()
}

#[test]
fn crl_serve_publishes_revocations_as_they_happen() {
    let ca = TestCa::new();
    let (serial, _, _) = ca.issue_device("device", &epc(42));
    let mut server = ca
        .command(&["crl", "--serve", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("serving CRL at http://")
        .unwrap_or_else(|| {
            let _ = server.kill();
            panic!("unexpected first line {line:?}")
        });
    let (address, path) = url.split_at(url.find('/').unwrap());
    assert_eq!(path, "/crl/issuing.crl");
    assert!(address.starts_with("127.0.0.1:"));
    let before = crl_serials(&http_get(address, path));
    assert!(before.is_empty(), "{before:?}");

    ca.ok(&["revoke", &serial, "--reason", "key-compromise"]);
    // The server re-signs within a second or two of the revocation; poll a bounded number
    // of times rather than assert on timing.
    let mut seen = false;
    for _ in 0..100 {
        if crl_serials(&http_get(address, path)).contains(&serial) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(seen, "the served CRL never listed the revoked certificate");
}
