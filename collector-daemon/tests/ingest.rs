//! Ingest over real mutual TLS: certificates from the hospital CA (wardseal-pki), rules
//! and registry on the embedded chain, the collector as it runs in production.

mod common;

use std::time::Duration;

use common::{GROUP, MAX_PER_MINUTE, Ward, code, heart_rate, post};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wardseal_collector::daemon::Daemon;
use wardseal_core::identity::Identity;
use wardseal_core::reading::Timestamp;

const OK_DEVICE: u64 = 1;
const UNREGISTERED: u64 = 2;
const DEACTIVATED: u64 = 3;
const OTHER_GROUP: u64 = 4;

async fn ward() -> Ward {
    Ward::new(
        &[
            (OK_DEVICE, GROUP, true),
            (DEACTIVATED, GROUP, false),
            (OTHER_GROUP, GROUP + 1, true),
        ],
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_check_refuses_with_its_own_status_and_code() {
    let ward = ward().await;
    let daemon = Daemon::start(&ward.config(), ward.ledger.clone(), Vec::new())
        .await
        .unwrap();
    let port = daemon.local_addr().port();
    let now = Timestamp::now;

    let device = ward.device(OK_DEVICE, GROUP).await;
    let connection = ward.connect(port, &device).await;
    let (status, body) = post(&connection, &heart_rate("72", 1, now())).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(body["results"][0]["leaf"].as_str().unwrap().len(), 64);

    // Malformed body, then a malformed reading.
    let (status, body) = post(&connection, "not json").await;
    assert_eq!((status, code(&body)), (400, "malformed_body"), "{body}");
    let (status, body) = post(&connection, r#"{"type":"heart_rate"}"#).await;
    assert_eq!((status, code(&body)), (400, "malformed_reading"), "{body}");

    // The data type, unit and range checks of the rule.
    let spo2 = format!(
        r#"{{"type":"spo2","value":97,"unit":"%","time":"{}","seq":2}}"#,
        now()
    );
    let (status, body) = post(&connection, &spo2).await;
    assert_eq!(
        (status, code(&body)),
        (403, "data_type_not_allowed"),
        "{body}"
    );
    let wrong_unit = heart_rate("72", 2, now()).replace("/min", "/s");
    let (status, body) = post(&connection, &wrong_unit).await;
    assert_eq!((status, code(&body)), (422, "wrong_unit"), "{body}");
    let (status, body) = post(&connection, &heart_rate("250", 2, now())).await;
    assert_eq!((status, code(&body)), (422, "value_out_of_range"), "{body}");

    // Skew: two hours old, then an hour ahead.
    let old = Timestamp::from_unix_micros(now().unix_micros() - 7_200_000_000).unwrap();
    let (status, body) = post(&connection, &heart_rate("72", 2, old)).await;
    assert_eq!((status, code(&body)), (422, "timestamp_skew"), "{body}");
    let ahead = Timestamp::from_unix_micros(now().unix_micros() + 3_600_000_000).unwrap();
    let (status, body) = post(&connection, &heart_rate("72", 2, ahead)).await;
    assert_eq!((status, code(&body)), (422, "timestamp_skew"), "{body}");

    // Replay: the sequence number already accepted.
    let (status, body) = post(&connection, &heart_rate("72", 1, now())).await;
    assert_eq!((status, code(&body)), (409, "replay"), "{body}");

    // Rate: MAX_PER_MINUTE heart rates a minute, counting every reading that passed the
    // earlier checks: the accepted one and the replayed one, so one more fits.
    let mut sequence = 10;
    let mut statuses = Vec::new();
    for _ in 0..MAX_PER_MINUTE + 1 {
        sequence += 1;
        let (status, body) = post(&connection, &heart_rate("72", sequence, now())).await;
        statuses.push((status, code(&body).to_owned()));
    }
    let limited = (429, "rate_exceeded".to_owned());
    assert_eq!(
        statuses,
        [
            (202, String::new()),
            limited.clone(),
            limited.clone(),
            limited
        ]
    );

    // Identity checks, each with a device certificate the registry does not vouch for.
    for (serial, group, expected) in [
        (common::epc(UNREGISTERED), GROUP, "unknown_device"),
        (common::epc(DEACTIVATED), GROUP, "inactive_device"),
        (common::epc(OTHER_GROUP), GROUP, "group_mismatch"),
    ] {
        let certificate = ward
            .pki
            .issue(Identity::device(
                serial,
                wardseal_core::identity::GroupId(group),
                wardseal_core::identity::RuleId(common::RULE),
            ))
            .await
            .unwrap();
        let connection = ward.connect(port, &certificate).await;
        let (status, body) = post(&connection, &heart_rate("72", 1, now())).await;
        assert_eq!((status, code(&body)), (403, expected), "{body}");
    }

    // A collector certificate presented by a "device".
    let connection = ward.connect(port, &ward.collector).await;
    let (status, body) = post(&connection, &heart_rate("72", 1, now())).await;
    assert_eq!((status, code(&body)), (403, "not_a_device"), "{body}");

    // Health and metrics.
    let reply = connection
        .send(hyper::Method::GET, "/metrics", Vec::new())
        .await
        .unwrap();
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(
        text.contains("wardseal_collector_readings_accepted_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("wardseal_collector_readings_rejected_total{reason=\"replay\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("wardseal_collector_spool_depth 2\n"),
        "{text}"
    );
    let reply = connection
        .send(hyper::Method::GET, "/healthz", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_array_keeps_the_good_readings() {
    let ward = ward().await;
    let daemon = Daemon::start(&ward.config(), ward.ledger.clone(), Vec::new())
        .await
        .unwrap();
    let device = ward.device(OK_DEVICE, GROUP).await;
    let connection = ward.connect(daemon.local_addr().port(), &device).await;
    let now = Timestamp::now();
    let body = format!(
        "[{},{}]",
        heart_rate("72", 5, now),
        heart_rate("999", 6, now)
    );
    let (status, json) = post(&connection, &body).await;
    assert_eq!((status, code(&json)), (422, "value_out_of_range"), "{json}");
    assert_eq!(json["results"][0]["status"], "accepted");
    assert_eq!(json["results"][1]["code"], "value_out_of_range");
    assert_eq!(daemon.spool().depth(), 1);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_cut_off_after_the_crl_refresh_even_on_an_open_connection() {
    let ward = ward().await;
    let daemon = Daemon::start(&ward.config(), ward.ledger.clone(), Vec::new())
        .await
        .unwrap();
    let port = daemon.local_addr().port();
    let device = ward.device(OK_DEVICE, GROUP).await;
    let connection = ward.connect(port, &device).await;
    let (status, _) = post(&connection, &heart_rate("72", 1, Timestamp::now())).await;
    assert_eq!(status, 202);

    ward.pki.revoke(&device.serial).await.unwrap();
    daemon.reload().unwrap();
    // The connection opened before the revocation (no new handshake) is refused.
    let (status, body) = post(&connection, &heart_rate("72", 2, Timestamp::now())).await;
    assert_eq!(
        (status, code(&body)),
        (403, "certificate_revoked"),
        "{body}"
    );
    // A new connection fails the handshake (no session resumption to skip the check).
    ward.assert_fresh_connection_refused(port, &device, 3).await;
    assert_eq!(daemon.spool().depth(), 1);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_gets_no_data_path() {
    let ward = ward().await;
    let daemon = Daemon::start(&ward.config(), ward.ledger.clone(), Vec::new())
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(daemon.local_addr())
        .await
        .unwrap();
    let body = heart_rate("72", 1, Timestamp::now());
    let request = format!(
        "POST /v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {answer:?}"
    );
    assert_eq!(daemon.spool().depth(), 0);
    assert_eq!(daemon.metrics().accepted_total(), 0);
    daemon.shutdown().await;
}
