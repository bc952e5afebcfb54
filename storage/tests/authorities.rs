//! Authorities (seed 2's layer 2) against a real storage server over mutual TLS: a
//! laboratory registered on chain reads a patient's records and records a visit only with
//! the patient's on-chain grant; unknown, deactivated and revoked authorities are refused
//! with their own codes; every decision is in the anchored access log. On SQLite and
//! PostgreSQL, on the embedded chain and on anvil.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "scenario helpers outside #[test] functions fail the test by panicking"
)]

mod common;

use common::{LedgerKind, World, batch, heart_rate};
use hyper::StatusCode;
use wardseal_core::identity::{AuthorityKind, Identity, SubjectId};
use wardseal_testkit::{CertificateFiles, Postgres};

const MINUTE: i64 = 60_000_000;
const T0: i64 = 1_800_000_000_000_000;
const OBSERVATIONS: &str = "/v1/patients/patient-1/observations?type=heart_rate";
const VISITS: &str = "/v1/patients/patient-1/visits";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(&common::sqlite_url(dir.path(), "storage.db")).await;
    scenario(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_embedded() {
    let cluster = Postgres::start().unwrap();
    let world = World::new(cluster.url()).await;
    scenario(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_anvil() {
    let cluster = Postgres::start().unwrap();
    let world = World::with_ledger(cluster.url(), LedgerKind::Anvil).await;
    scenario(&world).await;
}

async fn authority(world: &World, subject: &str, kind: AuthorityKind) -> CertificateFiles {
    world
        .pki
        .issue(Identity::authority(SubjectId::new(subject).unwrap(), kind))
        .await
        .unwrap()
}

/// GET as `who`; the status and the refusal code (empty when allowed).
async fn read(world: &World, who: &CertificateFiles, path: &str) -> (StatusCode, String) {
    let (status, body) = world.request(who, "GET", path, None).await.unwrap();
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    (status, code)
}

async fn visit(
    world: &World,
    who: &CertificateFiles,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    world
        .request(
            who,
            "POST",
            "/v1/visits",
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap()
}

/// The organisations patient-1's account has granted access, as storage's replica sees them.
/// The organisations the patient has granted, as the chain replica says; checked against
/// the FHIR Consent mirror the patient's own card reads.
async fn grants(world: &World) -> Vec<String> {
    let on_chain: Vec<String> = world
        .storage
        .chain
        .authority_grants(world.patient_account.0.0)
        .await
        .unwrap()
        .into_iter()
        .map(|organisation| organisation.id)
        .collect();
    let (status, bundle) = world
        .request(
            &world.patient,
            "GET",
            "/fhir/Consent?patient=patient-1",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let mirrored: Vec<String> = bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|entry| {
            entry["resource"]["identifier"][0]["system"] == "urn:wardseal:authority-grant"
        })
        .map(|entry| {
            let actor = &entry["resource"]["provision"]["actor"][0]["reference"];
            assert_eq!(actor["type"], "Organization");
            actor["identifier"]["value"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(mirrored, on_chain, "the Consent mirror follows the chain");
    on_chain
}

fn visit_body(patient: &str) -> serde_json::Value {
    serde_json::json!({
        "patient": patient,
        "class": "VR",
        "start": "2026-12-08T09:30:00Z",
        "end": "2026-12-08T09:45:00Z",
        "reason": "results review"
    })
}

async fn scenario(world: &World) {
    // Readings to read: five heart rates of patient-1.
    let patient = world.patient.clone();
    let readings = (0..5)
        .map(|i| heart_rate(1, "72", T0 + i * MINUTE, u64::try_from(i).unwrap()))
        .collect::<Vec<_>>();
    let (status, body) = world
        .submit(&batch("patient-1", None, &readings, &patient, &patient.key))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let lab = authority(world, "lab-7-frontdesk", AuthorityKind::Laboratory).await;
    let ledger = &world.ledger;

    // Not in the registry yet.
    assert_eq!(
        read(world, &lab, OBSERVATIONS).await,
        (StatusCode::FORBIDDEN, "authority_unknown".into())
    );
    ledger
        .register_authority("lab-7", AuthorityKind::Laboratory)
        .await
        .unwrap();
    ledger
        .bind_authority_subject("lab-7-frontdesk", "lab-7")
        .await
        .unwrap();
    // Registered, bound, active: still no consent from the patient.
    assert_eq!(
        read(world, &lab, OBSERVATIONS).await,
        (StatusCode::FORBIDDEN, "no_consent".into())
    );
    let (status, body) = visit(world, &lab, visit_body("patient-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "no_consent");
    assert!(
        world
            .storage
            .store
            .visits("patient-1")
            .await
            .unwrap()
            .is_empty()
    );

    // The registrar cannot consent for the patient: its grant is its own account's.
    ledger.grant_authority_access("lab-7").await.unwrap();
    assert_eq!(
        read(world, &lab, OBSERVATIONS).await,
        (StatusCode::FORBIDDEN, "no_consent".into())
    );

    // The patient grants: the laboratory reads and records a visit.
    world
        .patient_ledger
        .grant_authority_access("lab-7")
        .await
        .unwrap();
    assert_eq!(grants(world).await, ["lab-7"]);
    let (status, bundle) = world
        .request(&lab, "GET", OBSERVATIONS, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["total"], 5);
    let (status, recorded) = visit(world, &lab, visit_body("patient-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{recorded}");
    assert_eq!(recorded["visit"], 1);
    assert_eq!(recorded["organisation"], "lab-7");
    assert_eq!(recorded["subject"], "lab-7-frontdesk");
    assert_eq!(recorded["kind"], "laboratory");
    assert_eq!(recorded["class"], "VR");
    assert_eq!(
        recorded["ended_at"].as_i64().unwrap() - recorded["started_at"].as_i64().unwrap(),
        15 * MINUTE
    );
    // Bad input is refused with a clear error and stores nothing.
    let mut bad = visit_body("patient-1");
    bad["class"] = "IMP".into();
    let (status, body) = visit(world, &lab, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("AMB, VR"),
        "{body}"
    );
    let (status, _) = world
        .request(&lab, "POST", "/v1/visits", Some(b"{not json".to_vec()))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The visit is listed to the laboratory, the patient, and no other patient.
    let (status, visits) = world.request(&lab, "GET", VISITS, None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{visits}");
    assert_eq!(visits.as_array().unwrap().len(), 1);
    assert_eq!(visits[0]["reason"], "results review");
    let (status, visits) = world
        .request(&world.patient, "GET", VISITS, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{visits}");
    assert_eq!(visits.as_array().unwrap().len(), 1);
    let stranger = world
        .pki
        .issue(Identity::patient(SubjectId::new("patient-9").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        read(world, &stranger, VISITS).await.0,
        StatusCode::FORBIDDEN
    );

    // A second (renewed) certificate of the same organisation keeps the patient's consent.
    let renewed = authority(world, "lab-7-2027", AuthorityKind::Laboratory).await;
    assert_eq!(
        read(world, &renewed, OBSERVATIONS).await,
        (StatusCode::FORBIDDEN, "authority_unknown".into())
    );
    ledger
        .bind_authority_subject("lab-7-2027", "lab-7")
        .await
        .unwrap();
    assert_eq!(read(world, &renewed, OBSERVATIONS).await.0, StatusCode::OK);

    // Deactivated: refused, reads and visits alike; reactivated: allowed again.
    ledger.set_authority_active("lab-7", false).await.unwrap();
    assert_eq!(
        read(world, &lab, OBSERVATIONS).await,
        (StatusCode::FORBIDDEN, "authority_inactive".into())
    );
    let (status, body) = visit(world, &lab, visit_body("patient-1")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("authority_inactive"))
    );
    ledger.set_authority_active("lab-7", true).await.unwrap();
    assert_eq!(read(world, &lab, OBSERVATIONS).await.0, StatusCode::OK);

    // The patient revokes: it counts from the very next read.
    world
        .patient_ledger
        .revoke_authority_access("lab-7")
        .await
        .unwrap();
    assert_eq!(
        read(world, &lab, OBSERVATIONS).await,
        (StatusCode::FORBIDDEN, "no_consent".into())
    );
    assert_eq!(
        read(world, &renewed, VISITS).await,
        (StatusCode::FORBIDDEN, "no_consent".into())
    );
    let (status, body) = visit(world, &lab, visit_body("patient-1")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("no_consent"))
    );
    assert!(grants(world).await.is_empty());
    assert_eq!(
        world.storage.store.visits("patient-1").await.unwrap().len(),
        1
    );

    // A patient storage knows no account for cannot have consented.
    world
        .storage
        .store
        .admit(
            &SubjectId::new("patient-2").unwrap(),
            common::WARD,
            "14",
            "A",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        read(world, &lab, "/v1/patients/patient-2/observations").await,
        (StatusCode::FORBIDDEN, "patient_account_unknown".into())
    );

    // Roles: staff may not record a visit; an authority may not use admin routes.
    let nurse = world
        .pki
        .issue(Identity::staff(SubjectId::new("nurse-1").unwrap()))
        .await
        .unwrap();
    let (status, body) = visit(world, &nurse, visit_body("patient-1")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_role"))
    );
    assert_eq!(
        read(world, &lab, "/v1/admin/rejections").await,
        (StatusCode::FORBIDDEN, "wrong_role".into())
    );

    // Every decision is in the patient's access log, in order, with its code.
    let (status, log) = world
        .request(&world.patient, "GET", "/v1/access-log", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{log}");
    let decisions: Vec<(String, bool, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["role"] == "authority")
        .map(|entry| {
            (
                entry["who"].as_str().unwrap().to_owned(),
                entry["allowed"].as_bool().unwrap(),
                entry["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("lab-7-frontdesk", false, "authority_unknown"),
        ("lab-7-frontdesk", false, "no_consent"),
        ("lab-7-frontdesk", false, "no_consent"),
        ("lab-7-frontdesk", false, "no_consent"),
        ("lab-7-frontdesk", true, "consent"),
        ("lab-7-frontdesk", true, "consent"),
        ("lab-7-frontdesk", true, "consent"),
        ("lab-7-2027", false, "authority_unknown"),
        ("lab-7-2027", true, "consent"),
        ("lab-7-frontdesk", false, "authority_inactive"),
        ("lab-7-frontdesk", false, "authority_inactive"),
        ("lab-7-frontdesk", true, "consent"),
        ("lab-7-frontdesk", false, "no_consent"),
        ("lab-7-2027", false, "no_consent"),
        ("lab-7-frontdesk", false, "no_consent"),
    ]
    .map(|(who, allowed, reason)| (who.to_owned(), allowed, reason.to_owned()));
    assert_eq!(decisions, expected);

    // And the log is anchored on chain.
    let (root, count) = wardseal_storage::access::anchor(&world.storage)
        .await
        .unwrap()
        .unwrap();
    assert!(count >= u64::try_from(expected.len()).unwrap());
    assert!(
        world
            .storage
            .chain
            .anchored(*root.as_bytes())
            .await
            .unwrap()
    );

    fhir(world, &lab).await;
}

/// The visits in the FHIR API: `Encounter/visit-<n>` for the laboratory and the patient,
/// and fhir-kit-client creating one as the laboratory (schema-validated, in node).
async fn fhir(world: &World, lab: &CertificateFiles) {
    world
        .patient_ledger
        .grant_authority_access("lab-7")
        .await
        .unwrap();
    let (status, encounter) = world
        .request(lab, "GET", "/fhir/Encounter/visit-1", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{encounter}");
    assert_eq!(encounter["resourceType"], "Encounter");
    assert_eq!(encounter["status"], "finished");
    assert_eq!(encounter["class"]["code"], "VR");
    assert_eq!(encounter["subject"]["reference"], "Patient/patient-1");
    assert_eq!(encounter["serviceProvider"]["identifier"]["value"], "lab-7");
    assert_eq!(encounter["reasonCode"][0]["text"], "results review");
    let (status, bundle) = world
        .request(&world.patient, "GET", "/fhir/Encounter", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let ids: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"visit-1"), "{bundle}");
    assert!(ids.iter().any(|id| id.starts_with("adm-")), "{bundle}");
    let (status, body) = world
        .request(lab, "GET", "/fhir/Encounter/visit-99", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir-js");
    assert!(
        dir.join("node_modules/fhir-kit-client").is_dir(),
        "the FHIR client test's npm packages are missing: run `npm ci` in {} (node is needed)",
        dir.display()
    );
    let base = format!("https://127.0.0.1:{}/fhir", world.address.port());
    let (ca, lab) = (world.pki.ca_bundle().to_owned(), lab.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(dir.join("authority.mjs"))
            .env("FHIR_BASE", &base)
            .env("FHIR_CA", &ca)
            .env("FHIR_CERT", &lab.certificate)
            .env("FHIR_KEY", &lab.key)
            .env("FHIR_PATIENT", "patient-1")
            .env("FHIR_STRANGER", "patient-2")
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|error| panic!("node is needed for the FHIR client test: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the FHIR client test failed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["created"], "visit-2", "{report}");
    assert_eq!(report["visits"], 2, "{report}");
    assert_eq!(
        report["validated"],
        serde_json::json!([
            "Bundle",
            "CapabilityStatement",
            "Encounter",
            "OperationOutcome"
        ]),
        "{report}"
    );
    let stored = world.storage.store.visit(2).await.unwrap().unwrap();
    assert_eq!(
        (stored.class.as_str(), stored.organisation.as_str()),
        ("AMB", "lab-7")
    );
}
