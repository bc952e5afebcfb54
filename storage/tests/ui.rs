//! What the ward screen stands on, over the real mutual-TLS door: the page served to
//! staff and patients only, the session it reads, proofs checked by the server step by
//! step, and the live stream carrying readings only to those who may read them. (The
//! page itself, in Chromium, is `tests/tests/ui.rs`.)

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "scenario helpers outside #[test] functions fail the test by panicking"
)]

mod common;

use std::time::Duration;

use common::{World, batch, heart_rate, request_bytes_to};
use http_body_util::BodyExt as _;
use hyper::StatusCode;
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_net::client::{Client, ClientOptions, ClientTlsSettings, Endpoint};
use wardseal_storage::proof::{self, Check, CheckOutcome};
use wardseal_testkit::CertificateFiles;

/// 2027-01-15T08:00:00Z in µs since the epoch.
const T0: i64 = 1_800_000_000_000_000;

async fn staff(world: &World, id: &str) -> CertificateFiles {
    world
        .pki
        .issue(Identity::staff(SubjectId::new(id).unwrap()))
        .await
        .unwrap()
}

/// Stores one batch of `values` (heart rates, one second apart) for patient-1; returns
/// the readings' leaf hashes (hex).
async fn store_batch(world: &mut World, values: &[&str], first_sequence: u64) -> Vec<String> {
    let readings = values
        .iter()
        .zip(0i64..)
        .map(|(value, index)| {
            heart_rate(
                1,
                value,
                T0 + index * 1_000_000 + i64::try_from(first_sequence).unwrap() * 60_000_000,
                first_sequence + u64::try_from(index).unwrap(),
            )
        })
        .collect::<Vec<_>>();
    let submission = batch(
        "patient-1",
        world.tip.as_ref(),
        &readings,
        &world.patient,
        &world.patient.key,
    );
    let (status, body) = world.submit(&submission).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    world.tip = Some(submission.header.tip());
    readings
        .iter()
        .map(|reading| wardseal_core::merkle::leaf_hash(&reading.canonical_bytes()).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_to_staff_and_patients_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(&common::sqlite_url(dir.path(), "storage.db")).await;
    let nurse = staff(&world, "nurse-1").await;
    let get = |who: &CertificateFiles, path: &str| {
        let (world, who, path) = (&world, who.clone(), path.to_owned());
        async move {
            request_bytes_to(
                world.address,
                world.pki.ca_bundle(),
                &who,
                "GET",
                &path,
                None,
            )
            .await
            .unwrap()
        }
    };

    let (status, content_type, body) = get(&nurse, "/ui/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(std::str::from_utf8(&body).unwrap().contains("app.js"));
    let (status, content_type, _) = get(&world.patient, "/ui/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/javascript; charset=utf-8");
    let (status, _, _) = get(&nurse, "/ui").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    let (status, _, _) = get(&nurse, "/ui/../v1/access-log").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, body) = get(&nurse, "/ui/session").await;
    assert_eq!(status, StatusCode::OK);
    let session: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(session["role"], "staff");
    assert_eq!(session["subject"], "nurse-1");
    assert!(
        session["vitals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|vital| vital["code"] == "heart_rate" && vital["unit"] == "/min")
    );
    let (_, _, body) = get(&world.patient, "/ui/session").await;
    let session: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (session["role"].as_str(), session["subject"].as_str()),
        (Some("patient"), Some("patient-1"))
    );

    // The collector's certificate is the ward's, not a person's.
    let (status, _, body) = get(&world.collector, "/ui/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(std::str::from_utf8(&body).unwrap().contains("wrong_role"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_checks_a_proof_step_by_step_pending_then_anchored() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(&common::sqlite_url(dir.path(), "storage.db")).await;
    let leaves = store_batch(&mut world, &["72", "74", "71"], 0).await;
    let nurse = staff(&world, "nurse-1").await;
    let other = staff(&world, "nurse-2").await;
    world.assign_staff("nurse-1", "patient-1", "nurse").await;
    let path = format!("/v1/readings/{}/verify", leaves[1]);
    let outcomes = |report: &serde_json::Value| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| {
                (
                    step["check"].as_str().unwrap().to_owned(),
                    step["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let expect = |list: [(&str, &str); 5]| {
        list.iter()
            .map(|(check, outcome)| ((*check).to_owned(), (*outcome).to_owned()))
            .collect::<Vec<_>>()
    };

    let (status, report) = world.request(&nurse, "GET", &path, None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        outcomes(&report),
        expect([
            ("certificate", "passed"),
            ("card_signature", "passed"),
            ("inclusion", "passed"),
            ("anchor_inclusion", "pending"),
            ("on_chain", "pending"),
        ])
    );
    assert_eq!(report["verified"], false);
    // A patient's first batch is number 1.
    assert_eq!(report["batch"], 1);
    assert_eq!(report["patient"], "patient-1");

    world.server.anchor_now().await.unwrap();
    let (status, report) = world.request(&nurse, "GET", &path, None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        outcomes(&report),
        expect([
            ("certificate", "passed"),
            ("card_signature", "passed"),
            ("inclusion", "passed"),
            ("anchor_inclusion", "passed"),
            ("on_chain", "passed"),
        ])
    );
    assert_eq!(report["verified"], true);
    assert!(report["block"].as_u64().is_some(), "{report}");
    // The patient checks their own reading; a nurse not responsible is refused, and
    // that is in the access log.
    let (status, _) = world
        .request(&world.patient, "GET", &path, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, body) = world.request(&other, "GET", &path, None).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "not_responsible");
    let log = world
        .storage
        .store
        .access_log(Some("patient-1"), 0)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|entry| entry.who == "nurse-2" && !entry.allowed && entry.what.contains("verify")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_proof_fails_at_its_step_and_stops_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(&common::sqlite_url(dir.path(), "storage.db")).await;
    let leaves = store_batch(&mut world, &["72", "74"], 0).await;
    world.server.anchor_now().await.unwrap();
    let leaf = wardseal_core::hash::Hash::from_slice(&hex::decode(&leaves[0]).unwrap()).unwrap();
    let ca_chain = wardseal_net::files::certificates("CA bundle", world.pki.ca_bundle())
        .unwrap()
        .iter()
        .map(|certificate| certificate.to_vec())
        .collect::<Vec<_>>();
    let document = proof::build(&world.storage.store, &leaf, &ca_chain)
        .await
        .unwrap();
    let ledger = world.storage.chain.ledger();

    let report = proof::verify_each(&document, world.pki.root_der(), ledger).await;
    assert!(report.verified, "{report:?}");

    // Another reading's bytes: the signature still holds, the inclusion does not.
    let mut tampered = document.clone();
    tampered.reading = hex::encode(heart_rate(1, "190", T0, 0).canonical_bytes());
    let report = proof::verify_each(&tampered, world.pki.root_der(), ledger).await;
    let outcome = |check: Check| {
        report
            .checks
            .iter()
            .find(|step| step.check == check)
            .map(|step| step.outcome)
    };
    assert!(!report.verified);
    assert_eq!(outcome(Check::CardSignature), Some(CheckOutcome::Passed));
    assert_eq!(outcome(Check::Inclusion), Some(CheckOutcome::Failed));
    assert_eq!(outcome(Check::AnchorInclusion), Some(CheckOutcome::NotRun));
    assert_eq!(outcome(Check::OnChain), Some(CheckOutcome::NotRun));

    // Another CA: the first step fails.
    let stranger = wardseal_testkit::TestPki::new().await.unwrap();
    let report = proof::verify_each(&document, stranger.root_der(), ledger).await;
    assert_eq!(report.checks[0].check, Check::Certificate);
    assert_eq!(report.checks[0].outcome, CheckOutcome::Failed);
    assert!(
        report.checks[1..]
            .iter()
            .all(|step| step.outcome == CheckOutcome::NotRun)
    );
}

/// One client's `GET /v1/events/stream`, read frame by frame.
struct Stream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl Stream {
    async fn open(world: &World, who: &CertificateFiles) -> Result<Self, StatusCode> {
        let config = ClientTlsSettings::new(world.pki.ca_bundle(), &who.certificate, &who.key)
            .client_config(&[b"h2", b"http/1.1"])
            .unwrap();
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: world.address.port(),
        };
        let client = Client::new(&endpoint, config, ClientOptions::default());
        let response = client.open_stream("/v1/events/stream").await.unwrap();
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        assert_eq!(
            response.headers()[hyper::header::CONTENT_TYPE],
            "text/event-stream"
        );
        Ok(Self {
            body: response.into_body(),
            buffer: String::new(),
        })
    }

    /// The next event's name and data (comments skipped), or `None` within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, serde_json::Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let name = block.lines().find_map(|line| line.strip_prefix("event: "));
                let data = block.lines().find_map(|line| line.strip_prefix("data: "));
                if let (Some(name), Some(data)) = (name, data) {
                    return Some((name.to_owned(), serde_json::from_str(data).unwrap()));
                }
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => panic!("the stream ended"),
                Ok(Some(frame)) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_carries_readings_to_those_who_may_read_them_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(&common::sqlite_url(dir.path(), "storage.db")).await;
    let nurse = staff(&world, "nurse-1").await;
    let other = staff(&world, "nurse-2").await;
    world.assign_staff("nurse-1", "patient-1", "nurse").await;
    let mut responsible = Stream::open(&world, &nurse).await.unwrap();
    let mut not_responsible = Stream::open(&world, &other).await.unwrap();
    let mut patient = Stream::open(&world, &world.patient).await.unwrap();
    // The collector is not a person: no stream.
    assert_eq!(
        Stream::open(&world, &world.collector).await.err(),
        Some(StatusCode::FORBIDDEN)
    );

    let leaves = store_batch(&mut world, &["72", "75"], 0).await;
    for stream in [&mut responsible, &mut patient] {
        for leaf in &leaves {
            let (name, observation) = stream.next(Duration::from_secs(10)).await.unwrap();
            assert_eq!(name, "observation");
            assert_eq!(observation["resourceType"], "Observation");
            assert_eq!(observation["id"].as_str(), Some(leaf.as_str()));
            assert_eq!(observation["subject"]["reference"], "Patient/patient-1");
        }
    }
    // Everything published after the batch reached the two streams above long ago.
    assert!(
        not_responsible
            .next(Duration::from_millis(500))
            .await
            .is_none(),
        "a nurse not responsible for patient-1 saw their reading"
    );
    // The first reading a stream carried for the patient is in their access log.
    let log = world
        .storage
        .store
        .access_log(Some("patient-1"), 0)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|entry| entry.who == "nurse-1" && entry.what == "live stream of readings"),
        "{log:?}"
    );
    assert!(!log.iter().any(|entry| entry.who == "nurse-2"), "{log:?}");
}
