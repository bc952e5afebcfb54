//! Load that keeps running while faults are injected: every device of a ward sends a
//! report (the simulator's plausible readings) every interval over mutual TLS to the
//! collector, reconnecting whenever a connection broke and every few requests anyway (so
//! new TLS handshakes, with the CRL checks, keep happening); a nurse reads her patients'
//! observations from storage every second (so storage's access log grows too).
//!
//! The [`Tally`] records what a fault suite needs to prove delivery: the leaf hash of
//! every reading *sent* (computed from the body exactly as the collector does: the
//! certificate's EPC and the parsed measurement, canonical bytes, RFC 9162 leaf), and the
//! leaf hash of every reading *acknowledged* (a 202's `results[].leaf`). A request whose
//! answer never came counts as unanswered: its readings may or may not have been kept,
//! so they are sent but not acknowledged.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use tokio::sync::watch;
use wardseal_collector::client::{Connection, Endpoint};
use wardseal_core::Hash;
use wardseal_core::epc::Sgtin96;
use wardseal_core::merkle::leaf_hash;
use wardseal_core::reading::{Reading, Timestamp, json::parse_body};
use wardseal_sim::devices::SimulatedDevice;
use wardseal_sim::ward::{WardFiles, client_config};

/// How long opening a connection may take before the attempt counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong starting the load.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ward's files do not give a usable device or nurse.
    #[error("the ward's {what} is unusable: {reason}")]
    Ward {
        /// Which part.
        what: String,
        /// Why.
        reason: String,
    },
}

/// How hard the load pushes.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Each device sends one report this often.
    pub interval: Duration,
    /// A device opens a new connection after this many requests on one.
    pub reconnect_every: u32,
    /// The nurse reads observations this often (`None`: no reads).
    pub read_every: Option<Duration>,
    /// Seed of the devices' values.
    pub seed: u64,
    /// Devices (by name) the load leaves alone, for a test to use on its own (one to
    /// revoke, say, without its refusals counting against the ward).
    pub except_devices: Vec<String>,
}

impl Default for LoadOptions {
    /// Four reports a second per device (within every kind's rate rule), a new
    /// connection every 20 requests, a read a second.
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(250),
            reconnect_every: 20,
            read_every: Some(Duration::from_secs(1)),
            seed: 1,
            except_devices: Vec::new(),
        }
    }
}

/// What the load did.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The leaf hash of every reading sent.
    pub sent: HashSet<Hash>,
    /// The leaf hash of every reading acknowledged (202, `accepted`), in order.
    pub acknowledged: Vec<Hash>,
    /// Acknowledgements whose `leaf` was missing or not a hash (should stay 0).
    pub malformed_acknowledgements: u64,
    /// Readings refused, by the collector's machine code.
    pub refused: BTreeMap<String, u64>,
    /// Requests (and connection attempts) that got no answer.
    pub unanswered: u64,
    /// The first few reasons for unanswered requests.
    pub failures: Vec<String>,
    /// Observation reads answered 200.
    pub reads_ok: u64,
    /// Observation reads refused or unanswered.
    pub reads_failed: u64,
}

impl Tally {
    fn fail(&mut self, reason: String) {
        self.unanswered += 1;
        if self.failures.len() < 5 {
            self.failures.push(reason);
        }
    }

    fn record(&mut self, status: u16, body: &[u8]) {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let Some(results) = json["results"].as_array() else {
            let code = json["code"]
                .as_str()
                .map_or_else(|| format!("http_{status}"), str::to_owned);
            *self.refused.entry(code).or_default() += 1;
            return;
        };
        for result in results {
            if result["status"].as_str() == Some("accepted") {
                match result["leaf"]
                    .as_str()
                    .and_then(|hex| hex::decode(hex).ok())
                    .and_then(|bytes| Hash::from_slice(&bytes).ok())
                {
                    Some(leaf) => self.acknowledged.push(leaf),
                    None => self.malformed_acknowledgements += 1,
                }
            } else {
                let code = result["code"].as_str().unwrap_or("unknown").to_owned();
                *self.refused.entry(code).or_default() += 1;
            }
        }
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} readings sent, {} acknowledged, refused {:?}, {} unanswered (first: {:?}), reads {} ok / {} failed",
            self.sent.len(),
            self.acknowledged.len(),
            self.refused,
            self.unanswered,
            self.failures.first(),
            self.reads_ok,
            self.reads_failed
        )
    }
}

/// The leaf hashes the collector computes for the readings of `body` sent by `device`
/// (readings that do not parse have none).
pub fn leaves_of(device: &Sgtin96, body: &[u8]) -> Vec<Hash> {
    let Ok(parsed) = parse_body(body) else {
        return Vec::new();
    };
    parsed
        .into_iter()
        .filter_map(Result::ok)
        .map(|measurement| leaf_hash(&Reading::new(device.clone(), measurement).canonical_bytes()))
        .collect()
}

/// Running load; [`Load::stop`] ends it and hands over the tally.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    tally: Arc<Mutex<Tally>>,
}

impl Load {
    /// Starts every device of `files` (but `options.except_devices`) against its
    /// collector, and the nurse's reads against its storage.
    pub fn start(files: &WardFiles, options: &LoadOptions) -> Result<Self, Error> {
        let (stop, stopped) = watch::channel(false);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tasks = tokio::task::JoinSet::new();
        let collector = Endpoint {
            host: "127.0.0.1".into(),
            port: files.collector_port,
        };
        for (index, device) in files.devices.iter().enumerate() {
            if options.except_devices.contains(&device.name) {
                continue;
            }
            let ward_error = |reason: String| Error::Ward {
                what: format!("device {}", device.name),
                reason,
            };
            let epc = device.sgtin().map_err(|e| ward_error(e.to_string()))?;
            let config = client_config(&files.ca_bundle, &device.files)
                .map_err(|e| ward_error(e.to_string()))?;
            let simulated =
                SimulatedDevice::new(device.kind, options.seed.wrapping_add(index as u64));
            tasks.spawn(device_loop(
                DeviceTask {
                    endpoint: collector.clone(),
                    config,
                    epc,
                    simulated,
                    options: options.clone(),
                },
                Arc::clone(&tally),
                stopped.clone(),
            ));
        }
        if let Some(every) = options.read_every {
            let config =
                client_config(&files.ca_bundle, &files.nurse.files).map_err(|e| Error::Ward {
                    what: "nurse".into(),
                    reason: e.to_string(),
                })?;
            let storage = Endpoint {
                host: "127.0.0.1".into(),
                port: files.storage_port,
            };
            let patients = files.patients.iter().map(|p| p.id.clone()).collect();
            tasks.spawn(reader_loop(
                storage,
                config,
                patients,
                every,
                Arc::clone(&tally),
                stopped,
            ));
        }
        Ok(Self { stop, tasks, tally })
    }

    /// How many readings were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.tally.lock().map_or(0, |t| t.acknowledged.len())
    }

    /// How many requests went unanswered so far.
    pub fn unanswered(&self) -> u64 {
        self.tally.lock().map_or(0, |t| t.unanswered)
    }

    /// A copy of the tally so far.
    pub fn snapshot(&self) -> Tally {
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits until `more` readings beyond `since` were acknowledged; `false` after
    /// `timeout`.
    pub async fn wait_acknowledged(&self, since: usize, more: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.acknowledged() >= since + more {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every device (a request in flight completes or times out) and returns
    /// what the load did.
    pub async fn stop(mut self) -> Tally {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.snapshot()
    }
}

struct DeviceTask {
    endpoint: Endpoint,
    config: Arc<rustls::ClientConfig>,
    epc: Sgtin96,
    simulated: SimulatedDevice,
    options: LoadOptions,
}

async fn device_loop(
    mut task: DeviceTask,
    tally: Arc<Mutex<Tally>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = ticker(task.options.interval);
    let mut connection: Option<(Connection, u32)> = None;
    let note = |update: &dyn Fn(&mut Tally)| {
        if let Ok(mut tally) = tally.lock() {
            update(&mut tally);
        }
    };
    loop {
        if !next_tick(&mut ticks, &mut stopped).await {
            return;
        }
        let (open, used) = match connection.take() {
            // A broken connection is replaced by the client's pool on the next request.
            Some((open, used)) if used < task.options.reconnect_every => (open, used),
            _ => match tokio::time::timeout(
                OPEN_TIMEOUT,
                Connection::open(&task.endpoint, Arc::clone(&task.config)),
            )
            .await
            {
                Ok(Ok(open)) => (open, 0),
                Ok(Err(error)) => {
                    note(&|t| t.fail(format!("connect: {error}")));
                    continue;
                }
                Err(_) => {
                    note(&|t| t.fail("connect: timed out".into()));
                    continue;
                }
            },
        };
        let body = task.simulated.report(Timestamp::now());
        let leaves = leaves_of(&task.epc, body.as_bytes());
        note(&|t| t.sent.extend(leaves.iter().copied()));
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            open.send(Method::POST, "/v1/readings", body.into_bytes()),
        )
        .await
        {
            Ok(Ok(reply)) => {
                note(&|t| t.record(reply.status, &reply.body));
                connection = Some((open, used + 1));
            }
            Ok(Err(error)) => note(&|t| t.fail(format!("send: {error}"))),
            Err(_) => note(&|t| t.fail("send: timed out".into())),
        }
    }
}

async fn reader_loop(
    storage: Endpoint,
    config: Arc<rustls::ClientConfig>,
    patients: Vec<String>,
    every: Duration,
    tally: Arc<Mutex<Tally>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = ticker(every);
    let mut turn = 0usize;
    loop {
        if !next_tick(&mut ticks, &mut stopped).await {
            return;
        }
        let Some(patient) = patients.get(turn % patients.len().max(1)) else {
            return;
        };
        turn += 1;
        // Only the last few seconds: the answer stays small however long the run.
        let since = Timestamp::now().unix_micros() - 5_000_000;
        let path = format!("/v1/patients/{patient}/observations?since={since}");
        let answered = async {
            let connection = Connection::open(&storage, Arc::clone(&config)).await.ok()?;
            connection.send(Method::GET, &path, Vec::new()).await.ok()
        };
        let ok = matches!(
            tokio::time::timeout(REQUEST_TIMEOUT, answered).await,
            Ok(Some(reply)) if reply.status == 200
        );
        if let Ok(mut tally) = tally.lock() {
            if ok {
                tally.reads_ok += 1;
            } else {
                tally.reads_failed += 1;
            }
        }
    }
}

/// An interval that, when a turn runs late, waits a whole period before the next one
/// rather than bursting to catch up.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Waits for the next tick; `false` once the run is stopped.
async fn next_tick(ticks: &mut tokio::time::Interval, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stopped.changed() => {}
        _ = ticks.tick() => {}
    }
    !*stopped.borrow()
}
