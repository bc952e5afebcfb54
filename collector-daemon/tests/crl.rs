//! CRLs from the CA's `http://` distribution point, refreshed without a restart; the
//! last good CRL kept while the CA is down or answers with a CRL it did not sign; an
//! expired CRL refused or tolerated as configured.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::{GROUP, Ward, code, heart_rate, post};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wardseal_collector::daemon::Daemon;
use wardseal_core::reading::Timestamp;
use wardseal_testkit::TestPki;

/// What the loopback CRL server answers.
const UP: u8 = 0;
/// Closes every connection at once (the CA is down).
const DOWN: u8 = 1;
/// Answers a CRL signed by another CA.
const FORGED: u8 = 2;

/// Serves the CA's current `crl.pem` over HTTP/1.1 on 127.0.0.1, as
/// `wardseal-pki crl --serve` does, read afresh for every request.
async fn crl_server(
    genuine: std::path::PathBuf,
    forged: std::path::PathBuf,
    mode: Arc<AtomicU8>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mode = mode.load(Ordering::SeqCst);
            let path = if mode == FORGED { &forged } else { &genuine };
            let body = std::fs::read(path).unwrap();
            tokio::spawn(async move {
                if mode == DOWN {
                    return;
                }
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    address
}

/// Rewrites the ward's `[tls]` CRL keys.
fn set_crl_config(ward: &Ward, crls: &str, extra: &str) {
    let text = std::fs::read_to_string(&ward.config_path).unwrap();
    let text = text
        .lines()
        .map(|line| {
            if line.starts_with("crls = ") {
                format!("crls = [{crls}]\n{extra}")
            } else if line.starts_with("crl_refresh_secs") {
                "crl_refresh_secs = 1".into()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ward.config_path, text).unwrap();
}

/// Posts readings on `connection` until the answer's code is `wanted` (bounded).
async fn until_code(
    connection: &wardseal_collector::client::Connection,
    first_sequence: u64,
    wanted: &str,
) -> u64 {
    let started = Instant::now();
    let mut sequence = first_sequence;
    loop {
        let (_, body) = post(connection, &heart_rate("72", sequence, Timestamp::now())).await;
        sequence += 1;
        if code(&body) == wanted {
            return sequence;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never answered {wanted}; last answer {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    wardseal_testkit::wait_until_async(what, Duration::from_secs(20), || {
        std::future::ready(condition())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_fetched_from_the_ca_url_cuts_off_a_revoked_device_and_outlives_the_ca() {
    let ward = Ward::build(&[(1, GROUP, true), (2, GROUP, true)], "", 0).await;
    let other_ca = TestPki::new().await.unwrap();
    let mode = Arc::new(AtomicU8::new(UP));
    let address = crl_server(ward.pki.crl(), other_ca.crl(), Arc::clone(&mode)).await;
    set_crl_config(
        &ward,
        &format!("\"http://{address}/crl/issuing.crl\""),
        "crl_fetch_timeout_secs = 2",
    );
    let daemon = Daemon::start(&ward.config(), ward.ledger.clone(), Vec::new())
        .await
        .unwrap();
    let port = daemon.local_addr().port();
    let revoked = ward.device(1, GROUP).await;
    let kept = ward.device(2, GROUP).await;
    let revoked_connection = ward.connect(port, &revoked).await;
    let kept_connection = ward.connect(port, &kept).await;
    let (status, body) = post(&revoked_connection, &heart_rate("72", 1, Timestamp::now())).await;
    assert_eq!(status, 202, "{body}");

    // Revoked at the CA: refused after the next fetch, without a reload or restart.
    ward.pki.revoke(&revoked.serial).await.unwrap();
    until_code(&revoked_connection, 2, "certificate_revoked").await;
    assert_eq!(daemon.metrics().crl_fetch_failures.get(), 0);

    // The CA goes down: fetches fail, the last good CRL stays in force.
    mode.store(DOWN, Ordering::SeqCst);
    let metrics = Arc::clone(daemon.metrics());
    wait_for("a failed fetch", || metrics.crl_fetch_failures.get() >= 2).await;
    let (status, body) = post(
        &revoked_connection,
        &heart_rate("72", 100, Timestamp::now()),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (403, "certificate_revoked"),
        "{body}"
    );
    let (status, body) = post(&kept_connection, &heart_rate("72", 1, Timestamp::now())).await;
    assert_eq!(status, 202, "{body}");

    // A CRL another CA signed (which does not list the device) is refused, not used.
    mode.store(FORGED, Ordering::SeqCst);
    let before = metrics.crl_fetch_failures.get();
    wait_for("a refused CRL", || {
        metrics.crl_fetch_failures.get() >= before + 2
    })
    .await;
    let (status, body) = post(
        &revoked_connection,
        &heart_rate("72", 101, Timestamp::now()),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (403, "certificate_revoked"),
        "{body}"
    );

    // A fresh handshake with the revoked certificate fails too.
    ward.assert_fresh_connection_refused(port, &revoked, 102)
        .await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_does_not_start_without_its_url_crl() {
    let ward = Ward::build(&[(1, GROUP, true)], "", 0).await;
    // Nothing listens on port 9 (discard) on 127.0.0.1.
    set_crl_config(
        &ward,
        "\"http://127.0.0.1:9/crl\"",
        "crl_fetch_timeout_secs = 2",
    );
    let error = Daemon::start(&ward.config(), ward.ledger.clone(), Vec::new())
        .await
        .expect_err("started without the CRL it must follow");
    let message = error.to_string();
    assert!(
        message.contains("tls.crls") && message.contains("127.0.0.1:9"),
        "{message}"
    );
}

/// A CRL of the ward's issuing CA whose nextUpdate has passed, signed with openssl.
fn expired_crl(ward: &Ward) -> std::path::PathBuf {
    let ca = TestPki::ca_dir(ward.pki.dir());
    let work = ward.dir.path().join("openssl-ca");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("index.txt"), "").unwrap();
    std::fs::write(work.join("crlnumber"), "7F00\n").unwrap();
    let config = format!(
        "[ca]\ndefault_ca = issuing\n[issuing]\ndatabase = {dir}/index.txt\ncrlnumber = {dir}/crlnumber\ndefault_md = sha256\n",
        dir = work.display()
    );
    std::fs::write(work.join("openssl.cnf"), config).unwrap();
    let out = work.join("expired-crl.pem");
    let status = std::process::Command::new("openssl")
        .arg("ca")
        .arg("-gencrl")
        .arg("-config")
        .arg(work.join("openssl.cnf"))
        .arg("-cert")
        .arg(ca.join("issuing.crt"))
        .arg("-keyfile")
        .arg(ca.join("issuing.key"))
        .arg("-passin")
        .arg(format!(
            "file:{}",
            TestPki::passphrase_file(ward.pki.dir()).display()
        ))
        .args([
            "-crl_lastupdate",
            "20260101000000Z",
            "-crl_nextupdate",
            "20260102000000Z",
        ])
        .arg("-out")
        .arg(&out)
        .output()
        .expect("openssl must be installed");
    assert!(status.status.success(), "openssl ca -gencrl: {status:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_crl_refuses_every_device_or_warns_as_configured() {
    for (policy, wanted) in [("refuse", 503), ("warn", 202)] {
        let ward = Ward::build(&[(1, GROUP, true)], "", 0).await;
        let crl = expired_crl(&ward);
        set_crl_config(
            &ward,
            &format!("\"{}\"", crl.display()),
            &format!("expired_crl = \"{policy}\""),
        );
        let daemon = Daemon::start(&ward.config(), ward.ledger.clone(), Vec::new())
            .await
            .unwrap();
        let device = ward.device(1, GROUP).await;
        let connection = ward.connect(daemon.local_addr().port(), &device).await;
        let (status, body) = post(&connection, &heart_rate("72", 1, Timestamp::now())).await;
        assert_eq!(status, wanted, "{policy}: {body}");
        if policy == "refuse" {
            assert_eq!(code(&body), "crl_expired", "{body}");
            assert!(
                body["message"].as_str().unwrap_or("").contains("expired"),
                "{body}"
            );
            assert_eq!(daemon.spool().depth(), 0);
        }
        let metrics = Arc::clone(daemon.metrics());
        wait_for("the crl_expired gauge", || metrics.crl_expired.get() == 1).await;
        daemon.shutdown().await;
    }
}
