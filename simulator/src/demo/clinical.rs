//! The demo's clinical step: a critical reading is stored and alerted, the responsible
//! nurse acknowledges the alert, and a batch storage refuses for good is quarantined
//! while the patient's later readings keep flowing.
//!
//! The quarantine is made the way it happens on a ward: a device measures while the
//! patient's card is out of its reader (its readings are answered 202 and wait), the
//! device is deactivated in the on-chain registry before the card is back, and storage
//! refuses the batch the card then signs (`device_inactive`, for good). The device is one
//! the step enrols for itself, so the ward's own devices are untouched.

use std::future::poll_fn;
use std::io::Write;
use std::pin::Pin;
use std::time::{Duration, Instant};

use hyper::body::Body as _;
use wardseal_collector::client::Connection;
use wardseal_collector::quarantine::QuarantineAdmin;
use wardseal_contracts::Device;
use wardseal_core::alert::{AlertCode, AlertEvent, AlertState, Interpretation};
use wardseal_core::epc::Sgtin96;
use wardseal_core::hash::Hash;
use wardseal_core::identity::{GroupId, Identity, RuleId, SubjectId};
use wardseal_core::reading::Timestamp;

use super::{Outcome, json, request, write_line};
use crate::error::Error;
use crate::kinds::DeviceKind;
use crate::ward::RunningWard;

/// How long each expected event may take (a hang detector on a loaded machine).
const LIMIT: Duration = Duration::from_secs(30);

/// Runs the step, numbered `number`, recording each expectation in `outcome`.
pub(super) async fn run(
    ward: &RunningWard,
    out: &mut dyn Write,
    outcome: &mut Outcome,
    number: u32,
) -> Result<(), Error> {
    let files = ward.files();
    let Some(patient) = files.patients.first() else {
        return outcome.expect(out, false, "the ward has a patient for the clinical step");
    };
    let Some(ecg) = files
        .devices_of(&patient.id)
        .find(|device| device.kind == DeviceKind::Ecg)
    else {
        return outcome.expect(out, false, "the patient has an ECG for the clinical step");
    };
    write_line(
        out,
        &format!(
            "\n{number}. a critical reading, its alert acknowledged, and a quarantined batch of {}",
            patient.id
        ),
    )?;

    // The nurse's live alert stream is open before the reading is sent.
    let nurse = ward.connect_storage(&files.nurse.files).await?;
    let mut stream = AlertStream::open(&nurse).await?;
    let device = ward.connect_collector(&ecg.files).await?;
    let sequence = || u64::try_from(Timestamp::now().unix_micros()).unwrap_or(1);
    let reply = post(&device, "25", sequence()).await?;
    let body = json(&reply);
    let alarm = &body["results"][0]["alarm"];
    write_line(
        out,
        &format!(
            "  {} POST heart rate 25 /min: {} (alarm {} {})",
            ecg.name,
            reply.status,
            alarm["interpretation"].as_str().unwrap_or("none"),
            alarm["priority"].as_str().unwrap_or("")
        ),
    )?;
    outcome.expect(
        out,
        reply.status == 202 && alarm["interpretation"] == "LL" && alarm["priority"] == "high",
        "heart rate 25 is accepted (not refused) and flagged LL, high priority",
    )?;
    let leaf: Option<Hash> = serde_json::from_value(body["results"][0]["leaf"].clone()).ok();
    let raised = match leaf {
        Some(leaf) => {
            stream
                .until(|event| {
                    event.event == AlertState::Raised && event.alert.reading == Some(leaf)
                })
                .await?
        }
        None => None,
    };
    if let Some(event) = &raised {
        write_line(
            out,
            &format!(
                "  {}'s alert stream: {}",
                files.nurse.id, event.alert.message
            ),
        )?;
    }
    outcome.expect(
        out,
        raised.is_some(),
        "the alert reaches the responsible nurse's live stream",
    )?;
    let store = &ward.storage().store;
    let mut stored = None;
    if let Some(leaf) = &leaf {
        let deadline = Instant::now() + LIMIT;
        while stored.is_none() && Instant::now() < deadline {
            stored = wardseal_storage::alerts::interpretation(store, leaf).await?;
            if stored.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    write_line(
        out,
        &format!(
            "  storage holds the reading, card-signed, with interpretation {}",
            stored.map_or("(none yet)", Interpretation::code)
        ),
    )?;
    outcome.expect(
        out,
        stored == Some(Interpretation::LL),
        "the critical reading is stored with interpretation LL",
    )?;
    let acknowledged = match &raised {
        Some(event) => {
            let path = format!("/v1/alerts/{}/acknowledge", event.alert.id);
            let reply = request(&nurse, hyper::Method::POST, &path, Vec::new()).await?;
            let body = json(&reply);
            write_line(
                out,
                &format!(
                    "  {} POST {path}: {} ({} by {})",
                    files.nurse.id,
                    reply.status,
                    body["state"].as_str().unwrap_or("?"),
                    body["acknowledged_by"].as_str().unwrap_or("?")
                ),
            )?;
            reply.status == 200
                && body["state"] == "acknowledged"
                && body["acknowledged_by"] == files.nurse.id.as_str()
        }
        None => false,
    };
    outcome.expect(
        out,
        acknowledged,
        "the responsible nurse acknowledges the alert (who and when recorded, logged)",
    )?;

    // A device of the patient, enrolled for this step.
    let subject: SubjectId = patient.id.parse().map_err(wardseal_core::Error::from)?;
    let epc = spare_epc(&ecg.epc)?;
    let certificate = ward
        .pki()
        .issue_in(
            Identity::device(epc.clone(), GroupId(ecg.group), RuleId(ecg.group)),
            &files.dir.join("devices"),
            "clinical-step-ecg",
            &files.ward,
        )
        .await?;
    ward.ledger()
        .register_device(&Device {
            epc: epc.to_bytes(),
            group: ecg.group,
            rule_id: ecg.group,
            ward: files.ward.clone(),
            active: true,
        })
        .await?;
    store
        .assign_device(
            &epc.pure_identity_uri(),
            &patient.id,
            Timestamp::now().unix_micros() - 60_000_000,
        )
        .await?;
    let learnt = wait(|| async { Ok(ward.collector().replica().patient(&epc).is_some()) }).await?;
    outcome.expect(
        out,
        learnt,
        "the collector learns the new device's assignment",
    )?;
    let spare = ward.connect_collector(&certificate).await?;

    // The card is out: the spare device's readings are acknowledged and wait.
    let cards = ward.collector().cards();
    let Some(card) = cards.card(&subject) else {
        return outcome.expect(out, false, "the patient's card is in its reader");
    };
    cards.remove(&subject);
    let mut withheld = Vec::new();
    for _ in 0..3 {
        let reply = post(&spare, "72", sequence()).await?;
        if reply.status == 202 {
            withheld.extend(leaf_of(&reply));
        }
    }
    ward.ledger().deactivate_device(epc.to_bytes()).await?;
    cards.insert(subject.clone(), card);
    write_line(
        out,
        &format!(
            "  card out; {} readings of a new ECG answered 202; the ECG deactivated on chain; card back",
            withheld.len()
        ),
    )?;
    let spool = ward.collector().spool().path().to_owned();
    let quarantine = |spool: std::path::PathBuf| {
        QuarantineAdmin::open(&spool)
            .and_then(|admin| admin.list())
            .map_err(|error| Error::Request {
                target: "the collector's quarantine".into(),
                reason: error.to_string(),
            })
    };
    let quarantined = wait(|| {
        let spool = spool.clone();
        async move { Ok(!quarantine(spool)?.is_empty()) }
    })
    .await?;
    let listed = quarantine(spool.clone())?;
    for batch in &listed {
        write_line(
            out,
            &format!(
                "  quarantined: batch {} of {} ({} readings), storage said {} {}: gap {}",
                batch.sequence,
                batch.patient,
                batch.readings,
                batch.refusal.status,
                batch.refusal.code,
                batch.gap
            ),
        )?;
    }
    outcome.expect(
        out,
        quarantined
            && listed.len() == 1
            && listed[0].refusal.code == "device_inactive"
            && listed[0].readings == u64::try_from(withheld.len()).unwrap_or(0),
        "the refused batch is quarantined whole (device_inactive)",
    )?;

    // The patient's later readings keep flowing past it.
    let mut later = Vec::new();
    for _ in 0..3 {
        let reply = post(&device, "72", sequence()).await?;
        if reply.status == 202 {
            later.extend(leaf_of(&reply));
        }
    }
    let flowed = wait(|| async {
        let mut all = true;
        for leaf in &later {
            all &= store.reading_by_leaf(leaf).await?.is_some();
        }
        Ok(all && later.len() == 3)
    })
    .await?;
    let gaps = wardseal_storage::gap::gaps(store, &patient.id).await?;
    write_line(
        out,
        &format!(
            "  {} later readings of {} stored; storage holds {} card-signed gap record(s): {}",
            later.len(),
            patient.id,
            gaps.len(),
            gaps.iter()
                .map(|gap| format!("batch {} withheld ({})", gap.sequence, gap.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )?;
    outcome.expect(
        out,
        flowed,
        "the patient's later readings are stored past the quarantined batch",
    )?;
    outcome.expect(
        out,
        gaps.iter().any(|gap| gap.reason == "device_inactive"),
        "storage holds the declared gap",
    )?;
    let mut none_stored = true;
    for leaf in &withheld {
        none_stored &= store.reading_by_leaf(leaf).await?.is_none();
    }
    outcome.expect(
        out,
        none_stored && withheld.len() == 3,
        "nothing acknowledged is lost: the 3 withheld readings are in the quarantine, not dropped",
    )?;
    let technical = stream
        .until(|event| {
            event.alert.code == AlertCode::BatchQuarantined
                && event.alert.patient.as_ref() == Some(&subject)
        })
        .await?;
    if let Some(event) = &technical {
        write_line(
            out,
            &format!(
                "  {}'s alert stream: {}",
                files.nurse.id, event.alert.message
            ),
        )?;
    }
    outcome.expect(
        out,
        technical.is_some(),
        "the quarantine's technical alert reaches the nurse's stream",
    )
}

/// Polls `check` every 100 ms until it holds or [`LIMIT`] passes.
async fn wait<F, Fut>(mut check: F) -> Result<bool, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let deadline = Instant::now() + LIMIT;
    loop {
        if check().await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An EPC of the same company and item as `epc` (a tag URI), serial 900000.
fn spare_epc(epc: &str) -> Result<Sgtin96, Error> {
    let base = epc.rsplit_once('.').map_or(epc, |(base, _)| base);
    Ok(format!("{base}.900000")
        .parse()
        .map_err(wardseal_core::Error::from)?)
}

async fn post(
    device: &Connection,
    value: &str,
    sequence: u64,
) -> Result<wardseal_collector::client::Reply, Error> {
    let body = format!(
        r#"{{"type":"heart_rate","value":{value},"unit":"/min","time":"{}","seq":{sequence}}}"#,
        Timestamp::now()
    );
    request(
        device,
        hyper::Method::POST,
        "/v1/readings",
        body.into_bytes(),
    )
    .await
}

fn leaf_of(reply: &wardseal_collector::client::Reply) -> Option<Hash> {
    serde_json::from_value(json(reply)["results"][0]["leaf"].clone()).ok()
}

/// A staff member's live alert stream (`GET /v1/alerts/stream`), read event by event.
struct AlertStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl AlertStream {
    async fn open(connection: &Connection) -> Result<Self, Error> {
        let response = connection
            .open_stream("/v1/alerts/stream")
            .await
            .map_err(|error| Error::Request {
                target: "/v1/alerts/stream".into(),
                reason: error.to_string(),
            })?;
        Ok(Self {
            body: response.into_body(),
            buffer: String::new(),
        })
    }

    /// The next event matching `wanted` within [`LIMIT`], skipping others; `None` if
    /// none came.
    async fn until(
        &mut self,
        wanted: impl Fn(&AlertEvent) -> bool,
    ) -> Result<Option<AlertEvent>, Error> {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let event = block
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .and_then(|data| serde_json::from_str::<AlertEvent>(data).ok());
                if let Some(event) = event.filter(|event| wanted(event)) {
                    return Ok(Some(event));
                }
            }
            let frame = tokio::time::timeout_at(
                deadline,
                poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)),
            )
            .await;
            match frame {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                Ok(Some(Err(_)) | None) | Err(_) => return Ok(None),
            }
        }
    }
}
