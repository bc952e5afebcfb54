//! Alerts end to end: a device posts heart rate 25 to the collector (mutual TLS), the
//! collector raises a high-priority clinical alert at ingest and pushes it to storage,
//! which streams it (server-sent events over mutual TLS) to the nurse responsible for the
//! patient and to no one else; the batch, signed by the patient's card on SoftHSM, is
//! stored with interpretation LL; the alert escalates when nobody acknowledges it in
//! time, is acknowledged (who, when, access-log entry) and resolved by the nurse (who,
//! when, access-log entry); raising it is in the access log too. A device that falls
//! silent raises a technical alert, which resolves itself when the device is heard again.
//! Run on SQLite and on PostgreSQL.
//!
//! Every wait is a bounded poll; nothing asserts on elapsed time.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails by panicking, with the message"
)]

mod common;

use std::time::Duration;

use common::alerts::EventStream;
use common::storage::{Database, NURSE, PATIENT, card_section, enroll_card, nurse, storage_setup};
use common::{GROUP, Ward, epc, heart_rate, post};
use wardseal_collector::client::Connection;
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_core::alert::{Alert, AlertCode, AlertState, Interpretation, Priority};
use wardseal_core::hash::Hash;
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_core::reading::Timestamp;
use wardseal_storage::alerts::EscalationPolicy;
use wardseal_testkit::{eventually, free_port};

/// A hang detector, not a speed target.
const LIMIT: Duration = Duration::from_secs(300);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_critical_reading_is_alerted_to_the_responsible_nurse_only_and_escalates() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_critical_reading_is_alerted_to_the_responsible_nurse_only_and_escalates",
        |hsm| runtime().block_on(critical_run(hsm, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn a_critical_reading_is_alerted_escalated_acknowledged_and_resolved_on_postgres() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_critical_reading_is_alerted_escalated_acknowledged_and_resolved_on_postgres",
        |hsm| runtime().block_on(critical_run(hsm, Database::Postgres)),
    )
    .unwrap();
}

async fn critical_run(hsm: &wardseal_testkit::softhsm::SoftHsm, database: Database) {
    let storage_port = free_port().unwrap();
    let ward = Ward::linked(
        &[(1, GROUP, true), (2, GROUP, true)],
        "[alerts]\nsilent_after_secs = 2\ncheck_interval_ms = 100\n",
        storage_port,
    )
    .await;
    common::alerts::set_alarm_rule(&ward.ledger).await;

    let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
    std::fs::write(
        &ward.config_path,
        std::fs::read_to_string(&ward.config_path).unwrap() + &card_section(PATIENT, &uri),
    )
    .unwrap();
    let (mut setup, _cluster) =
        storage_setup(database, &ward.pki, ward.dir.path(), storage_port).await;
    setup.escalation = EscalationPolicy {
        high: Duration::from_secs(3),
        ..EscalationPolicy::default()
    };
    let storage = setup.start(ward.ledger.clone()).await;
    storage.admit(&[1, 2]).await;

    // Nurse 1 is assigned to the patient; nurse 2 is staff of the hospital, not assigned.
    let nurse_1 = nurse(&ward.pki).await;
    let nurse_2 = ward
        .pki
        .issue(Identity::staff(SubjectId::new("nurse-2").unwrap()))
        .await
        .unwrap();
    let storage_endpoint = common::endpoint(storage_port);
    let as_nurse_1 = Connection::open(&storage_endpoint, ward.client_config(&nurse_1))
        .await
        .unwrap();
    let as_nurse_2 = Connection::open(&storage_endpoint, ward.client_config(&nurse_2))
        .await
        .unwrap();
    let mut stream_1 = EventStream::open(&as_nurse_1).await;
    let mut stream_2 = EventStream::open(&as_nurse_2).await;

    let config = ward.config();
    let daemon = Daemon::start(&config, ward.ledger.clone(), open_cards(&config).unwrap())
        .await
        .unwrap();
    // The collector learns the assignment from storage before the device sends.
    let assigned = eventually(LIMIT, || async {
        daemon.replica().patient(&epc(1)).is_some()
    })
    .await;
    assert!(assigned, "the collector never learnt the assignment");

    let device_1 = ward.device(1, GROUP).await;
    let to_collector = ward.connect(daemon.local_addr().port(), &device_1).await;
    // Implausible: refused as false data.
    let (status, json) = post(&to_collector, &heart_rate("400", 1, Timestamp::now())).await;
    assert_eq!(status, 422, "{json}");
    // Critical: accepted and flagged.
    let (status, json) = post(&to_collector, &heart_rate("25", 2, Timestamp::now())).await;
    assert_eq!(status, 202, "{json}");
    assert_eq!(json["results"][0]["alarm"]["interpretation"], "LL");
    assert_eq!(json["results"][0]["alarm"]["priority"], "high");
    let leaf: Hash = serde_json::from_value(json["results"][0]["leaf"].clone()).unwrap();

    // The responsible nurse's stream carries the alert.
    let raised = stream_1
        .until(LIMIT, |event| event.alert.reading == Some(leaf))
        .await;
    assert_eq!(raised.event, AlertState::Raised);
    let alert: Alert = raised.alert;
    assert_eq!(alert.code, AlertCode::LimitCrossed);
    assert_eq!(alert.priority, Priority::High);
    assert_eq!(alert.interpretation, Some(Interpretation::LL));
    assert_eq!(alert.patient.as_ref().map(SubjectId::as_str), Some(PATIENT));
    assert_eq!(alert.value.as_deref(), Some("25"));

    // The batch arrives: the reading is stored with interpretation LL, and its re-check
    // found the same alert (one record).
    let store = &storage.storage.store;
    let interpreted = eventually(LIMIT, || async {
        wardseal_storage::alerts::interpretation(store, &leaf)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(
        interpreted,
        "the reading was never stored with its interpretation"
    );
    assert_eq!(
        wardseal_storage::alerts::interpretation(store, &leaf)
            .await
            .unwrap(),
        Some(Interpretation::LL)
    );
    let all = wardseal_storage::alerts::list(store, None, None)
        .await
        .unwrap();
    assert_eq!(
        all.iter().filter(|a| a.reading == Some(leaf)).count(),
        1,
        "{all:?}"
    );

    // Nobody acknowledges within 3 s: it escalates, and the stream says so.
    let escalated = stream_1
        .until(LIMIT, |event| {
            event.alert.id == alert.id && event.event == AlertState::Escalated
        })
        .await;
    assert!(escalated.alert.escalated_at_us.is_some());

    // Nurse 2 may neither acknowledge it nor list it.
    let path = format!("/v1/alerts/{}/acknowledge", alert.id);
    let reply = as_nurse_2
        .send(hyper::Method::POST, &path, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = as_nurse_2
        .send(hyper::Method::GET, "/v1/alerts", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let listed: Vec<Alert> = serde_json::from_slice(&reply.body).unwrap();
    assert!(listed.is_empty(), "{listed:?}");

    // Nurse 1 lists it among the escalated ones and acknowledges it.
    let reply = as_nurse_1
        .send(hyper::Method::GET, "/v1/alerts?state=escalated", Vec::new())
        .await
        .unwrap();
    let listed: Vec<Alert> = serde_json::from_slice(&reply.body).unwrap();
    assert!(listed.iter().any(|a| a.id == alert.id), "{listed:?}");
    let reply = as_nurse_1
        .send(hyper::Method::POST, &path, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let acknowledged: Alert = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(acknowledged.state, AlertState::Acknowledged);
    assert_eq!(acknowledged.acknowledged_by.as_deref(), Some(NURSE));
    assert!(acknowledged.acknowledged_at_us.is_some());
    let event = stream_1
        .until(LIMIT, |event| {
            event.alert.id == alert.id && event.event == AlertState::Acknowledged
        })
        .await;
    assert_eq!(event.alert.acknowledged_by.as_deref(), Some(NURSE));
    let log = store.access_log(Some(PATIENT), 0).await.unwrap();
    let what = format!("acknowledge alert {}", alert.id);
    assert!(
        log.iter()
            .any(|entry| entry.who == NURSE && entry.what == what && entry.allowed),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|entry| entry.who == "nurse-2" && entry.what == what && !entry.allowed),
        "{log:?}"
    );

    // Device 2 sends once, then falls silent past its 2 s: a technical alert, on the
    // responsible nurse's stream.
    let device_2 = ward.device(2, GROUP).await;
    let from_2 = ward.connect(daemon.local_addr().port(), &device_2).await;
    let (status, json) = post(&from_2, &heart_rate("72", 1, Timestamp::now())).await;
    assert_eq!(status, 202, "{json}");
    let silent_device = epc(2).pure_identity_uri();
    let silent = stream_1
        .until(LIMIT, |event| {
            event.alert.code == AlertCode::DeviceSilent
                && event.alert.device.as_deref() == Some(silent_device.as_str())
        })
        .await;
    assert_eq!(silent.event, AlertState::Raised);
    assert_eq!(
        silent.alert.kind,
        wardseal_core::alert::AlertKind::Technical
    );

    // Device 2 is heard again: the collector resolves the silence alert.
    let (status, json) = post(&from_2, &heart_rate("72", 2, Timestamp::now())).await;
    assert_eq!(status, 202, "{json}");
    let heard = stream_1
        .until(LIMIT, |event| {
            event.alert.id == silent.alert.id && event.event == AlertState::Resolved
        })
        .await;
    assert_eq!(heard.alert.state, AlertState::Resolved);
    assert_eq!(heard.alert.resolved_by.as_deref(), Some(common::WARD));
    assert!(heard.alert.resolved_at_us.is_some());

    // Nurse 2 may not resolve the clinical alert; nurse 1 resolves it, with a reason.
    let resolve = format!("/v1/alerts/{}/resolve", alert.id);
    let reply = as_nurse_2
        .send(hyper::Method::POST, &resolve, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = as_nurse_1
        .send(
            hyper::Method::POST,
            &resolve,
            br#"{"reason": "pacing started"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let resolved: Alert = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(resolved.resolved_by.as_deref(), Some(NURSE));
    // The acknowledgement stays on the record.
    assert_eq!(resolved.acknowledged_by.as_deref(), Some(NURSE));
    let event = stream_1
        .until(LIMIT, |event| {
            event.alert.id == alert.id && event.event == AlertState::Resolved
        })
        .await;
    assert_eq!(event.alert.resolved_by.as_deref(), Some(NURSE));
    // Resolving again changes nothing.
    let reply = as_nurse_1
        .send(hyper::Method::POST, &resolve, Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let again: Alert = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(again.resolved_at_us, resolved.resolved_at_us);
    // A malformed resolution is a clear 400.
    let reply = as_nurse_1
        .send(hyper::Method::POST, &resolve, b"{\"why\": 1}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // The anchored access log holds the raise (by the ward's collector), the
    // resolutions (allowed and refused) and the collector's own resolution.
    let log = store.access_log(None, 0).await.unwrap();
    let raise = format!("raise alert {} (limit_crossed, high)", alert.id);
    assert_eq!(
        log.iter()
            .filter(|entry| entry.who == common::WARD && entry.what == raise && entry.allowed)
            .count(),
        1,
        "{log:?}"
    );
    let what = format!("resolve alert {}", alert.id);
    assert!(
        log.iter()
            .any(|entry| entry.who == NURSE && entry.what == what && entry.allowed),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|entry| entry.who == "nurse-2" && entry.what == what && !entry.allowed),
        "{log:?}"
    );
    let cleared = format!("resolve alert {}", silent.alert.id);
    assert!(
        log.iter()
            .any(|entry| entry.who == common::WARD && entry.what == cleared && entry.allowed),
        "{log:?}"
    );
    let listed = wardseal_storage::alerts::list(store, None, Some(AlertState::Resolved))
        .await
        .unwrap();
    assert!(listed.iter().any(|a| a.id == alert.id), "{listed:?}");

    // Nurse 2's stream carried none of it (only heartbeats, if anything).
    assert!(
        stream_2.next(Duration::from_millis(500)).await.is_none(),
        "a nurse not responsible for the patient received an alert"
    );

    daemon.shutdown().await;
    storage.stop().await;
}
