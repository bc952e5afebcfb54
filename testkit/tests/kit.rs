//! The kit's fixtures against the real components: each starts, does what its callers
//! rely on, and leaves nothing running when dropped. They fail (never skip) when a
//! component is missing, like every suite that uses them.

use std::time::Duration;

use wardseal_core::identity::{Identity, SubjectId};
use wardseal_testkit::process::Process;
use wardseal_testkit::{
    Anvil, AnvilOptions, Error, Pcscd, PostgresCluster, TestPki, free_port, wait_listening,
    wait_until,
};

/// Whether something accepts connections on loopback `port` right now.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_free_port_can_be_bound_and_nothing_listens_on_it() {
    let port = free_port().unwrap();
    assert!(!listening(port));
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn a_wait_that_runs_out_names_what_it_waited_for() {
    let error = wait_until("the moon turning blue", Duration::from_millis(120), || {
        false
    })
    .unwrap_err();
    assert!(matches!(error, Error::NotInTime { .. }), "{error:?}");
    assert!(
        error.to_string().contains("the moon turning blue"),
        "{error}"
    );
    let mut calls = 0;
    wait_until("the third call", Duration::from_secs(5), || {
        calls += 1;
        calls == 3
    })
    .unwrap();
    assert_eq!(calls, 3);
}

#[tokio::test]
async fn a_process_that_exits_early_is_reported_with_its_log_and_a_killed_one_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut early = Process::new("early", "/bin/sh", dir.path().join("early.log"))
        .args(["-c", "echo about to fail; exit 3"]);
    early.start().unwrap();
    let error = early
        .wait_listening(free_port().unwrap(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Exited { .. }), "{error:?}");
    assert!(error.to_string().contains("about to fail"), "{error}");

    let mut sleeper =
        Process::new("sleeper", "/bin/sleep", dir.path().join("sleep.log")).args(["30"]);
    sleeper.start().unwrap();
    assert!(sleeper.is_running());
    sleeper.kill9().unwrap();
    assert!(!sleeper.is_running());
    assert_eq!(sleeper.starts(), 1);
}

#[test]
fn a_cluster_serves_the_database_and_its_server_is_gone_once_dropped() {
    let cluster = PostgresCluster::start().unwrap();
    let port = cluster.port();
    assert!(cluster.url().ends_with(&format!(":{port}/wardseal")));
    let answer = wardseal_testkit::postgres::query(&cluster.url(), "SELECT 40 + 2").unwrap();
    assert_eq!(answer.trim(), "42");
    cluster
        .restart(wardseal_testkit::postgres::StopMode::Immediate)
        .unwrap();
    let answer = wardseal_testkit::postgres::query(&cluster.url(), "SELECT 1").unwrap();
    assert_eq!(answer.trim(), "1");
    drop(cluster);
    // Stopped by PID on drop, whoever the tools ran as.
    wait_until(
        "the dropped cluster's server gone",
        Duration::from_secs(30),
        || !listening(port),
    )
    .unwrap();
}

#[tokio::test]
async fn the_test_pki_issues_revokes_and_opens_again() {
    let pki = TestPki::new().await.unwrap();
    let nurse = pki
        .issue(Identity::staff(SubjectId::new("nurse-1").unwrap()))
        .await
        .unwrap();
    let der = nurse.der().unwrap();
    let (_, certificate) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        hex::encode(certificate.raw_serial()).trim_start_matches("00"),
        nurse.serial.trim_start_matches("00")
    );
    assert!(pki.ca_bundle().is_file());
    assert!(!pki.root_der().is_empty());

    pki.revoke(&nurse.serial).await.unwrap();
    let crl = std::fs::read(pki.crl()).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&crl).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).unwrap();
    assert!(
        crl.iter_revoked_certificates()
            .any(|revoked| revoked.raw_serial() == certificate.raw_serial()),
        "the revoked serial is not in the CRL"
    );

    // A CA kept in a directory is opened again (another process, the CLI) and issues
    // into the directory it is told.
    let dir = tempfile::tempdir().unwrap();
    let created = TestPki::create(dir.path()).await.unwrap();
    let root = created.root_der().to_vec();
    drop(created);
    let opened = TestPki::open(dir.path()).await.unwrap();
    assert_eq!(opened.root_der(), root);
    let storage = opened
        .issue_in(
            Identity::storage(None, None),
            &dir.path().join("certs"),
            "storage",
            "ward-9",
        )
        .await
        .unwrap();
    assert_eq!(storage.certificate, dir.path().join("certs/storage.pem"));
    assert!(storage.key.is_file());
}

#[tokio::test]
async fn anvil_answers_and_restarts_on_the_same_port() {
    let mut anvil = Anvil::start(AnvilOptions::default()).await.unwrap();
    let url = anvil.url();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    wait_listening(port, Duration::from_secs(5)).await.unwrap();
    anvil.stop().await.unwrap();
    assert!(!listening(port));
    anvil.restart().await.unwrap();
    assert_eq!(anvil.url(), url);
    assert!(listening(port));
}

#[test]
fn pcscd_shows_the_card_in_and_out_and_is_gone_once_dropped() {
    let mut pcscd = Pcscd::start().unwrap();
    pcscd.insert().unwrap();
    pcscd.remove().unwrap();
    drop(pcscd);
    // The lock is free again and no pcscd runs: the next test can take both.
    let again = Pcscd::lock().expect("no pcscd left running");
    drop(again);
}
