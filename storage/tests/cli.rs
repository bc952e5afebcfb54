//! The `wardseal-storage` binary: administration commands on the database, then `serve`
//! over mutual TLS with an embedded chain, driven over HTTPS, its CRL reloaded by SIGHUP,
//! stopped by PID.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::process::{Child, Command, Stdio};

use alloy::signers::local::PrivateKeySigner;
use hyper::StatusCode;
use wardseal_contracts::{EmbeddedChain, Ledger, Role as LedgerRole};
use wardseal_core::identity::{GroupId, Identity, RuleId, SubjectId};
use wardseal_testkit::{CertificateFiles, TestPki};

/// A well-known test key (never used anywhere real).
const STORAGE_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wardseal-storage"))
}

fn ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A collector certificate for ward-7 (group 3, rule 7).
async fn ward_collector(pki: &TestPki) -> CertificateFiles {
    pki.issue(Identity::collector(
        SubjectId::new("ward-7").unwrap(),
        Some(GroupId(3)),
        Some(RuleId(7)),
        None,
    ))
    .await
    .unwrap()
}

/// One request to the server at `address` as `certificate`, which must be answered.
async fn request(
    pki: &TestPki,
    address: std::net::SocketAddr,
    certificate: &CertificateFiles,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, serde_json::Value) {
    common::request_to(address, pki.ca_bundle(), certificate, method, path, body)
        .await
        .unwrap()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administer_then_serve() {
    let pki = TestPki::new().await.unwrap();
    let temp = tempfile::tempdir().unwrap();
    let database = common::sqlite_url(temp.path(), "storage.db");

    // The chain: contracts deployed by the storage account, which may anchor.
    let signer: PrivateKeySigner = STORAGE_KEY.parse().unwrap();
    let chain_dir = temp.path().join("chain");
    let suite_file = temp.path().join("suite.json");
    {
        let chain = EmbeddedChain::open(&chain_dir).unwrap();
        let ledger = Ledger::deploy(chain.backend(signer.address()))
            .await
            .unwrap();
        ledger
            .grant_role(LedgerRole::Anchorer, signer.address())
            .await
            .unwrap();
        ledger.suite().save(&suite_file).unwrap();
    }
    let key_file = temp.path().join("storage-account.key");
    std::fs::write(&key_file, STORAGE_KEY).unwrap();
    let key_mode = |mode| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    // Administration from the command line.
    let admin = |args: &[&str]| ok(binary().arg("--database").arg(&database).args(args));
    admin(&[
        "admit",
        "patient-1",
        "--ward",
        "ward-7",
        "--room",
        "12",
        "--bed",
        "B",
    ]);
    admin(&[
        "assign-device",
        "urn:epc:id:sgtin:0614141.812345.1",
        "patient-1",
    ]);
    admin(&["assign-staff", "nurse-1", "patient-1", "--duty", "nurse"]);
    let missing = binary()
        .arg("--database")
        .arg(&database)
        .args(["assign-staff", "nurse-1", "patient-404"])
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "assigning to an unknown patient succeeded"
    );

    // Serve.
    let server_certificate = pki.issue(Identity::storage(None, None)).await.unwrap();
    let port = wardseal_testkit::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let serve = || {
        let mut command = binary();
        command
            .arg("--database")
            .arg(&database)
            .arg("serve")
            .args(["--listen", &listen])
            .arg("--certificate")
            .arg(&server_certificate.certificate)
            .arg("--key")
            .arg(&server_certificate.key)
            .arg("--ca-bundle")
            .arg(pki.ca_bundle())
            .arg("--crl")
            .arg(pki.crl())
            .arg("--suite")
            .arg(&suite_file)
            .arg("--embedded")
            .arg(&chain_dir)
            .arg("--ledger-key-file")
            .arg(&key_file);
        command
    };
    // A ledger key file others may read is refused, saying what to run.
    key_mode(0o644);
    let refused = serve().output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("chmod 600 {}", key_file.display())),
        "{stderr}"
    );
    assert!(
        !stderr.contains(STORAGE_KEY),
        "the key was printed: {stderr}"
    );
    key_mode(0o600);
    // An escalation time of 0 s is refused, naming the flag.
    let refused = serve()
        .args(["--escalate-high-secs", "0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--escalate-high-secs"), "{stderr}");
    // High-priority alerts escalate after 1 s on this server.
    let child = serve()
        .args(["--escalate-high-secs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let address: std::net::SocketAddr = listen.parse().unwrap();
    wardseal_testkit::wait_listening(port, std::time::Duration::from_secs(30))
        .await
        .unwrap();

    let collector = ward_collector(&pki).await;
    let (status, body) = request(
        &pki,
        address,
        &collector,
        "GET",
        "/v1/wards/ward-7/assignments",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Assignments name devices by pure identity (the filter value is not identity), so
    // the EPC comes back with filter 0.
    assert_eq!(
        body["assignments"][0]["device"],
        "urn:epc:tag:sgtin-96:0.0614141.812345.1"
    );

    // An admin certificate admits over the API; the nurse reads (an empty Bundle).
    let admin_certificate = pki.issue(Identity::admin(None, None)).await.unwrap();
    let admission =
        serde_json::json!({"patient": "patient-2", "ward": "ward-7", "room": "1", "bed": "A"});
    let (status, body) = request(
        &pki,
        address,
        &admin_certificate,
        "POST",
        "/v1/admin/admissions",
        Some(serde_json::to_vec(&admission).unwrap()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nurse = pki
        .issue(Identity::staff(SubjectId::new("nurse-1").unwrap()))
        .await
        .unwrap();
    let (status, body) = request(
        &pki,
        address,
        &nurse,
        "GET",
        "/v1/patients/patient-1/observations",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 0);
    // The collector cannot administer.
    let (status, body) = request(
        &pki,
        address,
        &collector,
        "POST",
        "/v1/admin/discharges",
        Some(br#"{"patient": "patient-1"}"#.to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "wrong_role");

    // A high-priority technical alert the collector raises escalates after the 1 s given
    // on the command line (the escalation task looks every second).
    let alert = wardseal_core::alert::Alert::technical(
        SubjectId::new("ward-7").unwrap(),
        wardseal_core::alert::TechnicalAlert {
            code: wardseal_core::alert::AlertCode::SpoolFilling,
            subject: "spool".into(),
            since_us: wardseal_storage::store::now_micros(),
            patient: None,
            device: None,
            priority: wardseal_core::alert::Priority::High,
            message: "the spool is filling".into(),
        },
    );
    let (status, body) = request(
        &pki,
        address,
        &collector,
        "POST",
        "/v1/alerts",
        Some(serde_json::to_vec(&alert).unwrap()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut escalated = false;
    for _ in 0..200 {
        let (status, body) = request(
            &pki,
            address,
            &admin_certificate,
            "GET",
            "/v1/alerts?state=escalated",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body
            .as_array()
            .is_some_and(|alerts| alerts.iter().any(|a| a["id"] == alert.id.to_string()))
        {
            escalated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        escalated,
        "the high-priority alert did not escalate within 20 s"
    );
    // An administrator resolves it (it concerns no patient), logged.
    let (status, body) = request(
        &pki,
        address,
        &admin_certificate,
        "POST",
        &format!("/v1/alerts/{}/resolve", alert.id),
        Some(br#"{"reason": "disk replaced"}"#.to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "resolved");
    assert!(
        body["resolved_by"]
            .as_str()
            .is_some_and(|who| who.starts_with("admin certificate ")),
        "{body}"
    );

    // SIGHUP reloads the CRL: the collector revoked on disk is still served until the
    // signal (the CRL is read at start and on SIGHUP only), refused after it.
    pki.revoke(&collector.serial).await.unwrap();
    let ca_bundle = pki.ca_bundle();
    let assignments = || {
        common::request_to(
            address,
            ca_bundle,
            &collector,
            "GET",
            "/v1/wards/ward-7/assignments",
            None,
        )
    };
    let (status, body) = assignments().await.unwrap();
    assert_eq!(status, StatusCode::OK, "served before the reload: {body}");
    let pid = _server.0.id().to_string();
    ok(Command::new("kill").args(["-HUP", &pid]));
    // Bounded wait: the reload runs on the server's signal task.
    let mut refusal = None;
    for _ in 0..100 {
        match assignments().await {
            Err(error) => {
                refusal = Some(error);
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    let refusal = refusal.expect("the revoked collector was still served 5 s after SIGHUP");
    assert!(
        refusal.contains("CertificateRevoked"),
        "refused for another reason: {refusal}"
    );
    // The server kept running: another collector is still served.
    let other = ward_collector(&pki).await;
    let (status, body) = request(
        &pki,
        address,
        &other,
        "GET",
        "/v1/wards/ward-7/assignments",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
