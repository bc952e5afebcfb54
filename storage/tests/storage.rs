//! Ingest refusals, idempotence, access control, the access log, anchors and proofs, on
//! SQLite and on PostgreSQL (a throwaway cluster, or `DATABASE_URL`).

#![expect(
    clippy::unwrap_used,
    reason = "scenario helpers outside #[test] functions fail the test by panicking"
)]

mod common;

use common::{LedgerKind, World, batch, heart_rate};
use hyper::StatusCode;
use wardseal_core::identity::{GroupId, Identity, RuleId, SubjectId};
use wardseal_storage::ProofError;
use wardseal_storage::batch_log::batch_log_id;
use wardseal_storage::proof::{self, AnchorStatus, ProofDocument};
use wardseal_testkit::Postgres;

const MINUTE: i64 = 60_000_000;
const T0: i64 = 1_800_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.db");
    scenarios(&format!("sqlite://{}", path.display())).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the database file must be private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let cluster = Postgres::start().unwrap();
    scenarios(cluster.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_with_anvil() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite_url(dir.path(), "storage.db");
    let mut world = World::with_ledger(&url, LedgerKind::Anvil).await;
    ingest(&mut world).await;
    access(&world).await;
    follows_ledger(&mut world).await;
    let documents = batch_anchoring(&mut world).await;
    proof_cli_against_anvil(&world, &documents, dir.path());
}

async fn scenarios(url: &str) {
    let mut world = World::new(url).await;
    ingest(&mut world).await;
    access(&world).await;
    follows_ledger(&mut world).await;
    batch_anchoring(&mut world).await;
}

/// A rule change or a device deactivation on chain counts for the very next batch: the
/// replica follows the ledger's events, it is not re-read on a timer.
async fn follows_ledger(world: &mut World) {
    let patient = world.patient.clone();
    let range = |low: &str, high: &str| {
        wardseal_contracts::Range::new(
            wardseal_contracts::WideDecimal::parse(low).unwrap(),
            wardseal_contracts::WideDecimal::parse(high).unwrap(),
        )
        .unwrap()
    };
    let heart_rule = |high: &str| {
        wardseal_contracts::TypeRule::new(
            wardseal_core::reading::DataType::HeartRate.code(),
            "/min",
            vec![range("30", high)],
            0,
        )
        .unwrap()
    };
    let reading = vec![heart_rate(1, "150", T0 + 30 * MINUTE, 30)];
    let next = batch(
        "patient-1",
        world.tip.as_ref(),
        &reading,
        &patient,
        &patient.key,
    );
    // Narrowed on chain: 150 /min is refused at once.
    world
        .ledger
        .set_type_rule(common::RULE, &heart_rule("140"))
        .await
        .unwrap();
    refused(world, &next, "rule_violation").await;
    // Widened again: the same batch goes in.
    world
        .ledger
        .set_type_rule(common::RULE, &heart_rule("220"))
        .await
        .unwrap();
    let (status, body) = world.submit(&next).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    world.tip = Some(next.header.tip());

    // A device registered after the server started is known at once; deactivated, its
    // next reading is refused at once.
    world
        .ledger
        .register_device(&common::ward_device(3))
        .await
        .unwrap();
    world
        .storage
        .store
        .assign_device(&common::epc(3).pure_identity_uri(), "patient-1", 0)
        .await
        .unwrap();
    let from_new = vec![heart_rate(3, "70", T0 + 31 * MINUTE, 1)];
    let next = batch(
        "patient-1",
        world.tip.as_ref(),
        &from_new,
        &patient,
        &patient.key,
    );
    let (status, body) = world.submit(&next).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    world.tip = Some(next.header.tip());
    world
        .ledger
        .deactivate_device(common::epc(3).to_bytes())
        .await
        .unwrap();
    let again = vec![heart_rate(3, "70", T0 + 32 * MINUTE, 2)];
    refused(
        world,
        &batch(
            "patient-1",
            world.tip.as_ref(),
            &again,
            &patient,
            &patient.key,
        ),
        "device_inactive",
    )
    .await;
}

/// Fetches the proof of the reading with leaf `leaf` as the assigned nurse.
async fn fetch_proof(
    world: &World,
    nurse: &wardseal_testkit::CertificateFiles,
    leaf: &wardseal_core::hash::Hash,
) -> ProofDocument {
    let (status, proof) = world
        .request(nurse, "GET", &format!("/v1/readings/{leaf}/proof"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{proof}");
    serde_json::from_value(proof).unwrap()
}

/// Documents a test writes for the CLI: (name, document, expected exit status).
type Documents = Vec<(&'static str, ProofDocument, i32)>;

/// The batch log: a proof is pending until its batch is anchored, then carries the anchor,
/// which the chain confirms; altered anchors fail with their own errors.
async fn batch_anchoring(world: &mut World) -> Documents {
    let patient = world.patient.clone();
    let nurse = world
        .pki
        .issue(Identity::staff(SubjectId::new("nurse-1").unwrap()))
        .await
        .unwrap();
    let ledger = &world.ledger;
    let root_der = world.pki.root_der().to_vec();
    let reading = heart_rate(1, "90", T0 + 40 * MINUTE, 40);
    let leaf = wardseal_core::merkle::leaf_hash(&reading.canonical_bytes());
    let submission = batch(
        "patient-1",
        world.tip.as_ref(),
        std::slice::from_ref(&reading),
        &patient,
        &patient.key,
    );
    let (status, body) = world.submit(&submission).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    world.tip = Some(submission.header.tip());
    let (_, stored_batches) = world.storage.store.counts().await.unwrap();

    // Before anchoring: pending, and the chain check says so.
    let pending = fetch_proof(world, &nurse, &leaf).await;
    assert_eq!(pending.anchor_status, AnchorStatus::Pending);
    assert!(pending.anchor.is_none());
    let verified = proof::verify(&pending, &root_der).unwrap();
    let error = proof::check_on_chain(ledger, &verified).await.unwrap_err();
    assert_eq!(error, ProofError::NotAnchored);
    assert_eq!(error.exit_code(), 4);

    // Anchored: every stored batch in one root; nothing left for a second anchoring.
    let anchor = wardseal_storage::batch_log::anchor(&world.storage)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(anchor.first_entry, 1);
    assert_eq!(anchor.last_entry, stored_batches);
    assert!(anchor.tx_hash.is_some());
    assert!(
        wardseal_storage::batch_log::anchor(&world.storage)
            .await
            .unwrap()
            .is_none()
    );
    let document = fetch_proof(world, &nurse, &leaf).await;
    assert_eq!(document.anchor_status, AnchorStatus::Anchored);
    let claimed = document.anchor.clone().unwrap();
    assert_eq!(claimed.root, anchor.root);
    assert_eq!(claimed.count, u64::try_from(stored_batches).unwrap());
    assert_eq!(claimed.log_id.as_bytes(), &batch_log_id().0);
    let verified = proof::verify(&document, &root_der).unwrap();
    let record = proof::check_on_chain(ledger, &verified).await.unwrap();
    assert_eq!(record.anchor.root.0, *anchor.root.as_bytes());
    assert_eq!(record.block, claimed.block);

    let with_anchor = |change: &dyn Fn(&mut wardseal_storage::proof::AnchorProof)| {
        let mut altered = document.clone();
        change(altered.anchor.as_mut().unwrap());
        altered
    };
    // Altered root: the header hash is no longer under it.
    let bad_root = with_anchor(&|anchor| anchor.root = wardseal_core::hash::Hash::sha256(b"x"));
    let error = proof::verify(&bad_root, &root_der).unwrap_err();
    assert!(matches!(error, ProofError::AnchorInclusion(_)), "{error}");
    assert_eq!(error.exit_code(), 3);
    // Altered inclusion of the header hash.
    let bad_inclusion = with_anchor(&|anchor| {
        if let Some(first) = anchor.header_inclusion.path.first_mut() {
            *first = wardseal_core::hash::Hash::sha256(b"y");
        } else {
            anchor.header_inclusion.leaf_index += 1;
        }
    });
    let error = proof::verify(&bad_inclusion, &root_der).unwrap_err();
    assert!(matches!(error, ProofError::AnchorInclusion(_)), "{error}");
    // A consistent tree that was never anchored: the chain has no such root.
    let forged_tree = wardseal_core::merkle::MerkleTree::from_leaf_hashes(vec![
        wardseal_storage::batch_log::leaf(&submission.header.hash()),
        wardseal_core::hash::Hash::sha256(b"another batch"),
    ]);
    let not_on_chain = with_anchor(&|anchor| {
        anchor.root = forged_tree.root();
        anchor.count = 2;
        anchor.header_inclusion = forged_tree.inclusion_proof(0, 2).unwrap();
    });
    let verified = proof::verify(&not_on_chain, &root_der).unwrap();
    let error = proof::check_on_chain(ledger, &verified).await.unwrap_err();
    assert!(matches!(error, ProofError::NotOnChain { .. }), "{error}");
    assert_eq!(error.exit_code(), 5);
    // The right root with other times: the chain's record differs.
    let other_times = with_anchor(&|anchor| anchor.first_time += 1);
    let verified = proof::verify(&other_times, &root_der).unwrap();
    let error = proof::check_on_chain(ledger, &verified).await.unwrap_err();
    assert!(matches!(error, ProofError::AnchorMismatch(_)), "{error}");
    assert_eq!(error.exit_code(), 5);
    // Status and anchor must agree.
    let mut inconsistent = document.clone();
    inconsistent.anchor_status = AnchorStatus::Pending;
    assert!(matches!(
        proof::verify(&inconsistent, &root_der),
        Err(ProofError::Malformed(_))
    ));

    // The next batch is pending until the next anchoring, which covers it alone.
    let later = heart_rate(1, "91", T0 + 41 * MINUTE, 41);
    let later_leaf = wardseal_core::merkle::leaf_hash(&later.canonical_bytes());
    let next = batch(
        "patient-1",
        world.tip.as_ref(),
        std::slice::from_ref(&later),
        &patient,
        &patient.key,
    );
    let (status, body) = world.submit(&next).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    world.tip = Some(next.header.tip());
    let later_pending = fetch_proof(world, &nurse, &later_leaf).await;
    assert_eq!(later_pending.anchor_status, AnchorStatus::Pending);
    let second = wardseal_storage::batch_log::anchor(&world.storage)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.first_entry, second.last_entry),
        (stored_batches + 1, stored_batches + 1)
    );
    let later_document = fetch_proof(world, &nurse, &later_leaf).await;
    let verified = proof::verify(&later_document, &root_der).unwrap();
    proof::check_on_chain(ledger, &verified).await.unwrap();
    // The first proof still verifies against its own anchor.
    let verified = proof::verify(&document, &root_der).unwrap();
    proof::check_on_chain(ledger, &verified).await.unwrap();

    vec![
        ("anchored", document, 0),
        ("pending", pending, 4),
        ("bad-root", bad_root, 3),
        ("bad-inclusion", bad_inclusion, 3),
        ("not-on-chain", not_on_chain, 5),
        ("other-times", other_times, 5),
    ]
}

/// `wardseal-storage verify-proof FILE --ca ROOT --suite … --rpc URL`: each document gives
/// its exit status, the good one prints both checks.
fn proof_cli_against_anvil(world: &World, documents: &Documents, dir: &std::path::Path) {
    let suite = dir.join("suite.json");
    world.ledger.suite().save(&suite).unwrap();
    let root = dir.join("root.der");
    std::fs::write(&root, world.pki.root_der()).unwrap();
    let url = world.anvil_url().unwrap();
    for (name, document, expected) in documents {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(document).unwrap()).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wardseal-storage"))
            .arg("verify-proof")
            .arg(&file)
            .arg("--ca")
            .arg(&root)
            .arg("--suite")
            .arg(&suite)
            .args(["--rpc", &url])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(*expected),
            "{name}: {stdout}{stderr}"
        );
        if *expected == 0 {
            assert!(stdout.contains("anchored on chain in block"), "{stdout}");
        }
    }
    // --skip-chain says loudly what it did not check.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wardseal-storage"))
        .arg("verify-proof")
        .arg(dir.join("anchored.json"))
        .arg("--ca")
        .arg(&root)
        .arg("--skip-chain")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("NOT checked"));
}

/// Posts a batch that must be refused with `code`, and checks nothing was stored and the
/// refusal was recorded.
async fn refused(world: &World, submission: &wardseal_core::exchange::BatchSubmission, code: &str) {
    let before = world.reading_count().await;
    let (status, body) = world.submit(submission).await.unwrap();
    assert!(status.is_client_error(), "{code}: got {status} {body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(
        world.reading_count().await,
        before,
        "{code}: readings were stored"
    );
    let rejections = world.storage.store.rejections().await.unwrap();
    assert!(
        rejections.iter().any(|rejection| rejection.code == code),
        "{code} not recorded"
    );
}

async fn ingest(world: &mut World) {
    let patient = world.patient.clone();
    let readings = (0..5)
        .map(|i| heart_rate(1, "72", T0 + i * MINUTE, i as u64))
        .collect::<Vec<_>>();
    let first = batch("patient-1", None, &readings, &patient, &patient.key);

    // Accepted, then acknowledged again without being stored twice.
    let (status, body) = world.submit(&first).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["newly_stored"], true);
    assert_eq!(body["count"], 5);
    let (status, body) = world.submit(&first).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["newly_stored"], false);
    assert_eq!(world.reading_count().await, 5);
    world.tip = Some(first.header.tip());
    let tip = world.tip;

    let next = |readings: &[wardseal_core::reading::Reading]| {
        batch("patient-1", tip.as_ref(), readings, &patient, &patient.key)
    };
    let good = vec![heart_rate(1, "80", T0 + 10 * MINUTE, 10)];

    // Tampered reading: the signed root no longer matches.
    let mut tampered = next(&good);
    tampered.readings[0] = heart_rate(1, "81", T0 + 10 * MINUTE, 10).canonical_bytes();
    refused(world, &tampered, "root_mismatch").await;

    // Wrong signature: signed by another key.
    let stranger = world
        .pki
        .issue(Identity::patient(SubjectId::new("patient-9").unwrap()))
        .await
        .unwrap();
    let mut forged = next(&good);
    forged.signature = batch("patient-1", tip.as_ref(), &good, &patient, &stranger.key).signature;
    refused(world, &forged, "bad_signature").await;

    // A certificate of another patient for this patient's batch.
    refused(
        world,
        &batch("patient-1", tip.as_ref(), &good, &stranger, &stranger.key),
        "patient_mismatch",
    )
    .await;

    // Device not assigned to the patient (registered, but not assigned).
    refused(
        world,
        &next(&[heart_rate(2, "80", T0 + 10 * MINUTE, 1)]),
        "device_not_assigned",
    )
    .await;

    // A deactivated device (captured): assigned, registered, but no longer active.
    world
        .storage
        .store
        .assign_device(&common::epc(2).pure_identity_uri(), "patient-1", 0)
        .await
        .unwrap();
    world
        .ledger
        .deactivate_device(common::epc(2).to_bytes())
        .await
        .unwrap();
    refused(
        world,
        &next(&[heart_rate(2, "80", T0 + 10 * MINUTE, 1)]),
        "device_inactive",
    )
    .await;

    // Not a batch at all.
    let before = world.reading_count().await;
    let (status, body) = world
        .request(
            &world.collector,
            "POST",
            "/v1/batches",
            Some(b"{\"header\": 1}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "malformed_batch");
    assert_eq!(world.reading_count().await, before);

    // Rule violation: 500 /min is outside 30..220.
    refused(
        world,
        &next(&[heart_rate(1, "500", T0 + 10 * MINUTE, 10)]),
        "rule_violation",
    )
    .await;

    // Chain gap: sequence 3 while the chain is at 1.
    let skipped = batch(
        "patient-1",
        Some(&wardseal_core::batch::ChainTip {
            sequence: 2,
            hash: tip.unwrap().hash,
        }),
        &good,
        &patient,
        &patient.key,
    );
    refused(world, &skipped, "chain_gap").await;

    // Replay: another batch claiming sequence 1.
    refused(
        world,
        &batch("patient-1", None, &good, &patient, &patient.key),
        "replayed_batch",
    )
    .await;

    // Revoked patient certificate (after the CRL reload).
    world.pki.revoke(&stranger.serial).await.unwrap();
    let revoked_patient = world
        .pki
        .issue(Identity::patient(SubjectId::new("patient-1").unwrap()))
        .await
        .unwrap();
    world.pki.revoke(&revoked_patient.serial).await.unwrap();
    world.reload();
    refused(
        world,
        &batch(
            "patient-1",
            tip.as_ref(),
            &good,
            &revoked_patient,
            &revoked_patient.key,
        ),
        "patient_certificate_revoked",
    )
    .await;

    // The good batch still goes in.
    let (status, body) = world.submit(&next(&good)).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(world.reading_count().await, 6);
    world.tip = Some(next(&good).header.tip());

    // A device certificate cannot submit.
    let device = world
        .pki
        .issue(Identity::device(common::epc(1), GroupId(3), RuleId(7)))
        .await
        .unwrap();
    let body = serde_json::to_vec(&next(&good)).unwrap();
    let (status, answer) = world
        .request(&device, "POST", "/v1/batches", Some(body))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["code"], "wrong_role");

    // Collector certificate revoked: refused at the door, nothing stored.
    let rogue = world
        .pki
        .issue(Identity::collector(
            SubjectId::new(common::WARD).unwrap(),
            Some(GroupId(3)),
            Some(RuleId(7)),
            None,
        ))
        .await
        .unwrap();
    world.pki.revoke(&rogue.serial).await.unwrap();
    world.reload();
    let later = vec![heart_rate(1, "80", T0 + 20 * MINUTE, 20)];
    let body = serde_json::to_vec(&batch(
        "patient-1",
        world.tip.as_ref(),
        &later,
        &patient,
        &patient.key,
    ))
    .unwrap();
    let refused_at_door = world
        .request(&rogue, "POST", "/v1/batches", Some(body))
        .await;
    assert!(
        refused_at_door.is_err(),
        "revoked collector got {refused_at_door:?}"
    );
    assert_eq!(world.reading_count().await, 6);
}

async fn access(world: &World) {
    let staff = |name: &str| Identity::staff(SubjectId::new(name).unwrap());
    let nurse = world.pki.issue(staff("nurse-1")).await.unwrap();
    let other_nurse = world.pki.issue(staff("nurse-2")).await.unwrap();
    let lab = world.pki.issue(staff("lab-1")).await.unwrap();
    world.assign_staff("nurse-1", "patient-1", "nurse").await;
    let lab_account = alloy::primitives::Address::repeat_byte(0x1a);
    world
        .storage
        .store
        .set_staff_account(&SubjectId::new("lab-1").unwrap(), lab_account)
        .await
        .unwrap();
    let path = "/v1/patients/patient-1/observations?type=heart_rate";

    // Assigned nurse: a FHIR Bundle of the six readings.
    let (status, bundle) = world.request(&nurse, "GET", path, None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["total"], 6);
    let observation = &bundle["entry"][0]["resource"];
    assert_eq!(observation["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(observation["code"]["coding"][1]["code"], "147842");
    assert_eq!(observation["valueQuantity"]["code"], "/min");
    assert_eq!(observation["valueQuantity"]["value"], 72);
    let leaf = observation["meta"]["tag"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();

    // Another nurse: refused (and logged).
    let (status, body) = world
        .request(&other_nurse, "GET", path, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "not_responsible");

    // The lab: refused, then allowed once the patient consents on chain, refused after revocation.
    let (status, _) = world.request(&lab, "GET", path, None).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let patient_ledger = &world.patient_ledger;
    patient_ledger
        .grant_consent(world.patient_account, lab_account)
        .await
        .unwrap();
    let (status, bundle) = world.request(&lab, "GET", path, None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bundle}");
    patient_ledger
        .revoke_consent(world.patient_account, lab_account)
        .await
        .unwrap();
    let (status, _) = world.request(&lab, "GET", path, None).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A device certificate cannot read.
    let device = world
        .pki
        .issue(Identity::device(common::epc(5), GroupId(3), RuleId(7)))
        .await
        .unwrap();
    let (status, body) = world.request(&device, "GET", path, None).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "wrong_role");

    // The patient reads their own access log: every decision, allowed or not.
    let (status, log) = world
        .request(&world.patient, "GET", "/v1/access-log", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{log}");
    let entries = log.as_array().unwrap();
    let summary = entries
        .iter()
        .map(|entry| {
            (
                entry["who"].as_str().unwrap().to_owned(),
                entry["allowed"].as_bool().unwrap(),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            ("nurse-1", true),
            ("nurse-2", false),
            ("lab-1", false),
            ("lab-1", true),
            ("lab-1", false)
        ]
        .map(|(who, allowed)| (who.to_owned(), allowed))
    );
    // A staff certificate cannot read the access log.
    let (status, _) = world
        .request(&nurse, "GET", "/v1/access-log", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The access log's root is anchored on chain.
    let (root, count) = wardseal_storage::access::anchor(&world.storage)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 5);
    assert!(
        world
            .storage
            .chain
            .anchored(*root.as_bytes())
            .await
            .unwrap()
    );
    assert!(
        wardseal_storage::access::anchor(&world.storage)
            .await
            .unwrap()
            .is_none()
    );

    // Proof of one reading, checked offline against the root certificate only.
    let (status, proof) = world
        .request(&nurse, "GET", &format!("/v1/readings/{leaf}/proof"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{proof}");
    let document: wardseal_storage::proof::ProofDocument = serde_json::from_value(proof).unwrap();
    let verified = wardseal_storage::proof::verify(&document, world.pki.root_der()).unwrap();
    assert_eq!(hex::encode(verified.leaf_hash.as_bytes()), leaf);
    let mut tampered = document.clone();
    tampered.reading = heart_rate(1, "73", T0, 0)
        .canonical_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(wardseal_storage::proof::verify(&tampered, world.pki.root_der()).is_err());
    let (status, _) = world
        .request(
            &other_nurse,
            "GET",
            &format!("/v1/readings/{leaf}/proof"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Collectors fetch their ward's assignments.
    let (status, assignments) = world
        .request(
            &world.collector,
            "GET",
            "/v1/wards/ward-7/assignments",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{assignments}");
    assert_eq!(assignments["assignments"][0]["patient"], "patient-1");
    let (status, _) = world
        .request(
            &world.collector,
            "GET",
            "/v1/wards/ward-8/assignments",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Two stores on one database (two server processes): access-log entries written at once
/// from both are numbered 1..=n without a gap, a duplicate or a failed write.
async fn numbering_across_servers(url: &str) {
    let first = wardseal_storage::store::Store::open(url).await.unwrap();
    let second = wardseal_storage::store::Store::open(url).await.unwrap();
    let write = |store: wardseal_storage::store::Store, who: &'static str| async move {
        for _ in 0..40 {
            store
                .log_access(who, "staff", "patient-1", "observations", true, "assigned")
                .await
                .unwrap();
        }
        store
    };
    let (first, _second) = tokio::join!(
        tokio::spawn(write(first, "nurse-1")),
        tokio::spawn(write(second, "nurse-2"))
    );
    let entries = first.unwrap().access_log(None, 0).await.unwrap();
    let numbers = entries.iter().map(|entry| entry.entry).collect::<Vec<_>>();
    assert_eq!(numbers, (1..=80).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_servers_number_one_log() {
    let dir = tempfile::tempdir().unwrap();
    numbering_across_servers(&common::sqlite_url(dir.path(), "storage.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_servers_number_one_log() {
    let cluster = Postgres::start().unwrap();
    numbering_across_servers(cluster.url()).await;
}
