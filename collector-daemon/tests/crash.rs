//! Kill -9 the collector process while devices send; restart it: every reading that got
//! a 202 is in the spool exactly once, and a device re-sending it is told `replay`.

#![expect(
    clippy::unwrap_used,
    reason = "a test helper fails the test by panicking"
)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{GROUP, Ward, heart_rate};
use wardseal_collector::client::Connection;
use wardseal_core::reading::Timestamp;

const DEVICES: u64 = 4;

fn start(config: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wardseal-collector"))
        .args(["run", "--config"])
        .arg(config)
        .env(
            "WARDSEAL_COLLECTOR__COLLECTOR__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn listening(port: u16) -> bool {
    wardseal_testkit::wait_listening(port, Duration::from_secs(30))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_kill_9_exactly_once() {
    let devices: Vec<_> = (1..=DEVICES).map(|s| (s, GROUP, true)).collect();
    let ward = Ward::build(&devices, "", 0).await;
    let port = wardseal_testkit::free_port().unwrap();
    let mut certificates = Vec::new();
    for serial in 1..=DEVICES {
        certificates.push(ward.device(serial, GROUP).await);
    }
    let config = ward.config();
    let config_path = ward.config_path.clone();
    let spool_path = config.spool.path.clone();
    let client_configs: Vec<_> = certificates.iter().map(|c| ward.client_config(c)).collect();
    // The collector process opens the embedded chain itself: release it here.
    let Ward {
        ledger, pki, dir, ..
    } = ward;
    drop(ledger);

    let mut child = start(&config_path, port);
    assert!(
        listening(port).await,
        "the collector never listened on {port}"
    );
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut senders = tokio::task::JoinSet::new();
    for config in client_configs.clone() {
        let acknowledged = Arc::clone(&acknowledged);
        senders.spawn(async move {
            let Ok(connection) = Connection::open(&common::endpoint(port), config).await else {
                return;
            };
            for sequence in 1..=5000u64 {
                let body = heart_rate("72", sequence, Timestamp::now());
                match connection
                    .send(hyper::Method::POST, "/v1/readings", body.into_bytes())
                    .await
                {
                    Ok(reply) if reply.status == 202 => {
                        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
                        let leaf = json["results"][0]["leaf"].as_str().unwrap().to_owned();
                        acknowledged.lock().unwrap().push(leaf);
                    }
                    Ok(reply) => panic!("unexpected status {}", reply.status),
                    Err(_) => return,
                }
            }
        });
    }
    // Kill once a good number of readings were acknowledged (bounded wait).
    for _ in 0..1200 {
        if acknowledged.lock().unwrap().len() >= 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    while senders.join_next().await.is_some() {}
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 1000,
        "only {} acknowledged",
        acknowledged.len()
    );

    let mut child = start(&config_path, port);
    assert!(
        listening(port).await,
        "the collector never listened on {port}"
    );
    {
        let database = rusqlite::Connection::open(&spool_path).unwrap();
        for leaf in &acknowledged {
            let bytes = hex::decode(leaf).unwrap();
            let count: i64 = database
                .query_row(
                    "SELECT COUNT(*) FROM readings WHERE leaf = ?1",
                    [&bytes],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(count, 1, "reading {leaf} is in the spool {count} times");
        }
    }
    // A device re-sending its first reading after the restart is told it is a replay.
    let connection = Connection::open(&common::endpoint(port), Arc::clone(&client_configs[0]))
        .await
        .unwrap();
    let reply = connection
        .send(
            hyper::Method::POST,
            "/v1/readings",
            heart_rate("72", 1, Timestamp::now()).into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 409);
    child.kill().unwrap();
    child.wait().unwrap();
    drop((pki, dir));
}
