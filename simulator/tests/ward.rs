//! A ward prepared and started by the library: a device's reading travels over mutual TLS
//! to the collector, is signed by the patient's card, stored, and read back through FHIR
//! by the nurse assigned to the patient, while the unassigned nurse and the laboratory
//! (an authority without the patient's grant) are refused.
//! Once with the patient's card on a SoftHSM token, once with a software key.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails by panicking, with the message"
)]

use std::time::{Duration, Instant};

use wardseal_core::reading::Timestamp;
use wardseal_sim::kinds::DeviceKind;
use wardseal_sim::ward::{CardBackend, RunningWard, WardFiles, WardOptions};

/// How long a reading may take to reach storage before the test gives up.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    wardseal_testkit::runtime().unwrap()
}

async fn reading_reaches_the_nurse(cards: CardBackend) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = WardOptions::new(dir.path().join("ward"));
    options.patients = 1;
    options.kinds = vec![DeviceKind::PulseOximeter, DeviceKind::Thermometer];
    options.cards = cards;
    let files = WardFiles::prepare(&options).await.unwrap();
    match cards {
        CardBackend::SoftHsm => assert!(files.softhsm_conf.is_some()),
        _ => assert!(files.softhsm_conf.is_none()),
    }
    assert_eq!(files.devices.len(), 2);
    // The files describe the ward again when read back.
    assert_eq!(WardFiles::load(&files.dir).unwrap(), files);
    // The laboratory is an authority registered and bound on chain (the embedded chain
    // opens in one process at a time: asked before the ward starts).
    {
        let ledger = wardseal_sim::ward::open_ledger(&files.ledger).unwrap();
        assert_eq!(
            ledger
                .authority_of_subject(&files.lab.id)
                .await
                .unwrap()
                .as_deref(),
            Some("lab-1")
        );
    }
    let ward = RunningWard::start(&files).await.unwrap();

    let patient = &files.patients[0].id;
    let oximeter = files
        .devices
        .iter()
        .find(|d| d.kind == DeviceKind::PulseOximeter)
        .unwrap();
    let device = ward.connect_collector(&oximeter.files).await.unwrap();
    let body = format!(
        r#"{{"type":"spo2","value":97,"unit":"%","time":"{}","seq":1}}"#,
        Timestamp::now()
    );
    let reply = device
        .send(hyper::Method::POST, "/v1/readings", body.into_bytes())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    let nurse = ward.connect_storage(&files.nurse.files).await.unwrap();
    let path = format!("/fhir/Observation?patient={patient}");
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let bundle: serde_json::Value = loop {
        let reply = nurse
            .send(hyper::Method::GET, &path, Vec::new())
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let bundle: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        if bundle["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            break bundle;
        }
        assert!(
            Instant::now() < deadline,
            "the reading never reached storage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{bundle}");
    let observation = &entries[0]["resource"];
    assert_eq!(observation["resourceType"], "Observation");
    assert_eq!(observation["valueQuantity"]["value"], 97, "{observation}");

    // The nurse who is not assigned to the patient is refused.
    let other = ward
        .connect_storage(&files.other_nurse.files)
        .await
        .unwrap();
    let reply = other
        .send(hyper::Method::GET, &path, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // The ward's patients record no account, so no grant can be theirs: the laboratory's
    // read is refused for that reason.
    let lab = ward.connect_storage(&files.lab.files).await.unwrap();
    let reply = lab
        .send(hyper::Method::GET, &path, Vec::new())
        .await
        .unwrap();
    let refusal: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(reply.status, 403, "{refusal}");
    assert_eq!(refusal["code"], "patient_account_unknown", "{refusal}");

    ward.shutdown().await;
}

#[test]
fn a_reading_reaches_the_assigned_nurse_with_a_softhsm_card() {
    wardseal_softhsm::run_isolated_test(
        "a_reading_reaches_the_assigned_nurse_with_a_softhsm_card",
        |_hsm| runtime().block_on(reading_reaches_the_nurse(CardBackend::SoftHsm)),
    )
    .unwrap();
}

#[test]
fn a_reading_reaches_the_assigned_nurse_with_a_software_card() {
    runtime().block_on(reading_reaches_the_nurse(CardBackend::Software));
}
