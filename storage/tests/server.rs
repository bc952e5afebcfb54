//! The server as `Server::start` runs it: query strings decoded as forms are, `/metrics`
//! (checked by Prometheus's own `promtool`), the anchoring timer, reload and shutdown.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "scenario helpers outside #[test] functions fail the test by panicking"
)]

mod common;

use std::time::{Duration, Instant};

use common::{World, batch, heart_rate, request_bytes_to};
use hyper::StatusCode;
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_net::server::ServerTlsSettings;
use wardseal_storage::{Server, ServerConfig};

/// 2027-01-15T08:00:00Z in µs since the epoch.
const T0: i64 = 1_800_000_000_000_000;
const SECOND: i64 = 1_000_000;

/// Stores three heart-rate readings of patient-1 one second apart from T0, and assigns
/// nurse-1 to the patient. Returns the batch as submitted.
async fn three_readings(world: &World) -> wardseal_core::exchange::BatchSubmission {
    let readings = (0..3)
        .map(|index| heart_rate(1, "72", T0 + index * SECOND, index as u64))
        .collect::<Vec<_>>();
    let submission = batch(
        "patient-1",
        None,
        &readings,
        &world.patient,
        &world.patient.key,
    );
    let (status, body) = world.submit(&submission).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    world.assign_staff("nurse-1", "patient-1", "nurse").await;
    submission
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_queries_are_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(&common::sqlite_url(dir.path(), "storage.db")).await;
    three_readings(&world).await;
    let nurse = world
        .pki
        .issue(Identity::staff(SubjectId::new("nurse-1").unwrap()))
        .await
        .unwrap();
    let total = |query: &'static str| {
        let (world, nurse) = (&world, &nurse);
        async move {
            let path = format!("/v1/patients/patient-1/observations?{query}");
            let (status, bundle) = world.request(nurse, "GET", &path, None).await.unwrap();
            assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
            bundle["total"].as_u64().unwrap()
        }
    };
    // Lower-case escapes, an escaped underscore and an escaped `+`: the old decoder knew
    // only `%3A` and `%2B`, and refused this as an unknown data type `heart%5frate`.
    assert_eq!(
        total("type=heart%5frate&since=2027-01-15T08%3a00%3a01%2b00%3a00").await,
        2
    );
    // The same times unescaped, with the offset's `+` left bare (form decoding reads a
    // space; a time never holds one), and a time zone east of UTC.
    assert_eq!(
        total("type=heart_rate&since=2027-01-15T09:00:01+01:00&until=2027-01-15T08:00:01Z").await,
        1
    );
    assert_eq!(total("since=1800000002000000").await, 1);
    let (status, body) = world
        .request(
            &nurse,
            "GET",
            "/v1/patients/patient-1/observations?since=yesterday",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_ingest_refusals_reads_and_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(&common::sqlite_url(dir.path(), "storage.db")).await;
    let first = three_readings(&world).await;
    // Delivered again: acknowledged, not stored twice.
    assert_eq!(world.submit(&first).await.unwrap().0, StatusCode::OK);
    // The next batch with a reading dropped on the way: refused with count_mismatch.
    let readings = (3..5)
        .map(|index| heart_rate(1, "72", T0 + index * SECOND, index as u64))
        .collect::<Vec<_>>();
    let tip = first.header.tip();
    let mut short = batch(
        "patient-1",
        Some(&tip),
        &readings,
        &world.patient,
        &world.patient.key,
    );
    short.readings.pop();
    let (status, body) = world.submit(&short).await.unwrap();
    assert_eq!(body["code"], "count_mismatch", "{status} {body}");
    // One allowed and one refused read of patient data, and the patient's own log.
    let staff = |name: &str| Identity::staff(SubjectId::new(name).unwrap());
    let nurse = world.pki.issue(staff("nurse-1")).await.unwrap();
    let stranger = world.pki.issue(staff("nurse-2")).await.unwrap();
    let path = "/v1/patients/patient-1/observations";
    assert_eq!(
        world.request(&nurse, "GET", path, None).await.unwrap().0,
        StatusCode::OK
    );
    assert_eq!(
        world.request(&stranger, "GET", path, None).await.unwrap().0,
        StatusCode::FORBIDDEN
    );
    let patient = world.patient.clone();
    assert_eq!(
        world
            .request(&patient, "GET", "/v1/access-log", None)
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );
    let round = world.server.anchor_now().await.unwrap();
    assert_eq!(round.access_log.unwrap().1, 2);
    assert!(round.batch_log.is_some());

    let (status, content_type, body) = request_bytes_to(
        world.address,
        world.pki.ca_bundle(),
        &nurse,
        "GET",
        "/metrics",
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "wardseal_storage_batches_stored_total 1",
        "wardseal_storage_batches_repeated_total 1",
        "wardseal_storage_readings_stored_total 3",
        "wardseal_storage_batches_refused_total{code=\"count_mismatch\"} 1",
        "wardseal_storage_batch_verify_seconds_count 3",
        "wardseal_storage_data_reads_total{decision=\"allowed\"} 1",
        "wardseal_storage_data_reads_total{decision=\"refused\"} 1",
        "wardseal_storage_access_log_reads_total 1",
        "wardseal_storage_anchors_total{log=\"access\"} 1",
        "wardseal_storage_anchors_total{log=\"batch\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    promtool_accepts(&text);
}

/// Prometheus's own linter accepts the scrape (Debian `prometheus` ships `promtool`).
///
/// promtool 2.42 lints the classic text format only, where a counter's family is named
/// with its `_total` suffix; OpenMetrics (what storage serves, and Prometheus scrapes)
/// names the family without it. The counters' HELP and TYPE lines are renamed the way
/// Prometheus names the series it ingests, and everything else is linted as served.
fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let counters: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .map(str::to_owned)
        .collect();
    let classic: String = text
        .lines()
        .map(|line| {
            for family in &counters {
                for kind in ["# HELP ", "# TYPE "] {
                    let prefix = format!("{kind}{family} ");
                    if let Some(rest) = line.strip_prefix(&prefix) {
                        return format!("{kind}{family}_total {rest}\n");
                    }
                }
            }
            format!("{line}\n")
        })
        .collect();
    let text = classic.as_str();
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("promtool is needed (apt-get install prometheus): {error}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool refused the scrape: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_anchors_and_shutdown_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(&common::sqlite_url(dir.path(), "first.db")).await;
    // A second server on its own database, on the world's ledger, anchoring every 100 ms.
    let certificate = world
        .pki
        .issue(Identity::storage(None, None))
        .await
        .unwrap();
    let mut tls = ServerTlsSettings::new(
        &certificate.certificate,
        &certificate.key,
        world.pki.ca_bundle(),
    );
    tls.crls.push(world.pki.crl());
    let mut config = ServerConfig::new(
        common::sqlite_url(dir.path(), "second.db"),
        ([127, 0, 0, 1], 0).into(),
        tls,
    );
    config.anchor_interval = Some(Duration::from_millis(100));
    config.drain_timeout = Duration::from_secs(1);
    let server = Server::start(&config, world.ledger.clone()).await.unwrap();
    let store = &server.storage().store;
    store
        .log_access(
            "nurse-1",
            "staff",
            "patient-1",
            "observations",
            true,
            "assigned",
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.first_unanchored().await.unwrap() < 2 {
        assert!(
            Instant::now() < deadline,
            "the timer did not anchor the access log within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing new: the next round anchors nothing.
    let round = server.anchor_now().await.unwrap();
    assert!(round.access_log.is_none() && round.batch_log.is_none());
    // Reload re-reads the files; a broken file keeps the previous configuration.
    server.reload().unwrap();
    std::fs::write(&certificate.certificate, "not a certificate").unwrap();
    assert!(server.reload().is_err());
    let address = server.local_addr();
    assert!(tokio::net::TcpStream::connect(address).await.is_ok());
    server.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "still listening after shutdown"
    );
}
