//! A fleet of simulated devices driving a collector over mutual TLS, in three modes:
//!
//! - **steady**: every device reports at its kind's rate (times a speed-up factor) over
//!   its own keep-alive connection, for a duration;
//! - **burst** ("N simultaneous", the papers' load test): N devices each open a fresh
//!   mutual-TLS connection and send one report at the same instant; the time until the
//!   last one is acknowledged is what the papers measured;
//! - **soak**: steady for a long time, with a summary every period.
//!
//! Every request is timed; a [`Summary`] counts readings accepted and rejected by the
//! collector's machine code, transport failures, and latency percentiles.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wardseal_collector::client::{ClientOptions, Connection, Endpoint};
use wardseal_core::reading::Timestamp;

use crate::devices::SimulatedDevice;
use crate::error::Error;
use crate::kinds::DeviceKind;
use crate::ward::{DeviceFiles, client_config};

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One device of the fleet: its name, TLS identity and generator.
#[derive(Debug)]
pub struct FleetDevice {
    /// The device's name.
    pub name: String,
    /// Its TLS client configuration (its certificate, the hospital CA).
    pub config: Arc<rustls::ClientConfig>,
    /// Its readings.
    pub simulated: SimulatedDevice,
}

/// Devices and the collector they report to.
#[derive(Debug)]
pub struct Fleet {
    endpoint: Endpoint,
    devices: Vec<FleetDevice>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Reports (requests) sent.
    pub requests: u64,
    /// Readings acknowledged (202, status `accepted`).
    pub accepted: u64,
    /// Readings refused, by the collector's machine code (or `http_STATUS`).
    pub rejected: BTreeMap<String, u64>,
    /// Requests that got no answer (connection refused or reset, timeout).
    pub failed: u64,
    /// The first transport failure, to show why.
    pub first_failure: Option<String>,
    /// Every answered request's latency.
    pub latencies: Vec<Duration>,
    /// How long the run took.
    pub elapsed: Duration,
    /// The leaf hash of the last reading accepted (to fetch its proof).
    pub last_leaf: Option<String>,
}

impl Summary {
    fn record(&mut self, latency: Duration, status: u16, body: &[u8]) {
        self.requests += 1;
        self.latencies.push(latency);
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        match json["results"].as_array() {
            Some(results) => {
                for result in results {
                    match result["status"].as_str() {
                        Some("accepted") => {
                            self.accepted += 1;
                            if let Some(leaf) = result["leaf"].as_str() {
                                self.last_leaf = Some(leaf.to_owned());
                            }
                        }
                        _ => {
                            let code = result["code"].as_str().unwrap_or("unknown").to_owned();
                            *self.rejected.entry(code).or_default() += 1;
                        }
                    }
                }
            }
            None => {
                let code = json["code"]
                    .as_str()
                    .map_or_else(|| format!("http_{status}"), str::to_owned);
                *self.rejected.entry(code).or_default() += 1;
            }
        }
    }

    fn fail(&mut self, reason: String) {
        self.requests += 1;
        self.failed += 1;
        self.first_failure.get_or_insert(reason);
    }

    fn merge(&mut self, other: Summary) {
        self.requests += other.requests;
        self.accepted += other.accepted;
        for (code, count) in other.rejected {
            *self.rejected.entry(code).or_default() += count;
        }
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies.extend(other.latencies);
        if other.last_leaf.is_some() {
            self.last_leaf = other.last_leaf;
        }
    }

    /// Readings refused, all codes together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// The latency below which `percent` % of answered requests fell.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        let rank = ((percent / 100.0) * last as f64).round() as usize;
        sorted.get(rank.min(last)).copied()
    }

    /// Readings answered (accepted or refused) per second of the run.
    pub fn readings_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            (self.accepted + self.rejected_total()) as f64 / seconds
        } else {
            0.0
        }
    }

    /// The summary as an aligned text table.
    pub fn table(&self) -> String {
        let millis = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_owned(),
                |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
            )
        };
        let mut rows = vec![
            ("requests".to_owned(), self.requests.to_string()),
            ("readings accepted".to_owned(), self.accepted.to_string()),
        ];
        for (code, count) in &self.rejected {
            rows.push((format!("rejected: {code}"), count.to_string()));
        }
        rows.push(("no answer".to_owned(), self.failed.to_string()));
        rows.push(("latency p50".to_owned(), millis(self.percentile(50.0))));
        rows.push(("latency p99".to_owned(), millis(self.percentile(99.0))));
        rows.push((
            "elapsed".to_owned(),
            format!("{:.2} s", self.elapsed.as_secs_f64()),
        ));
        rows.push((
            "readings/s".to_owned(),
            format!("{:.1}", self.readings_per_second()),
        ));
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut text = String::new();
        for (name, value) in rows {
            text.push_str(&format!("  {name:<width$}  {value:>12}\n"));
        }
        if let Some(reason) = &self.first_failure {
            text.push_str(&format!("  first failure: {reason}\n"));
        }
        text
    }
}

/// Sends one body over `connection` and records the answer.
async fn send(connection: &Connection, body: String, summary: &Mutex<Summary>) -> bool {
    let started = Instant::now();
    let sent = tokio::time::timeout(
        REQUEST_TIMEOUT,
        connection.send(hyper::Method::POST, "/v1/readings", body.into_bytes()),
    )
    .await;
    let Ok(mut summary) = summary.lock() else {
        return false;
    };
    match sent {
        Ok(Ok(reply)) => {
            summary.record(started.elapsed(), reply.status, &reply.body);
            true
        }
        Ok(Err(error)) => {
            summary.fail(error.to_string());
            false
        }
        Err(_) => {
            summary.fail(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()));
            false
        }
    }
}

impl Fleet {
    /// A fleet of `devices` reporting to `endpoint`, trusting `ca_bundle`; device *i*'s
    /// values come from `seed + i`. Sequence numbers start at the current Unix time in
    /// microseconds, so a later run with the same devices continues above an earlier
    /// one's instead of being refused as a replay.
    pub fn new(
        endpoint: Endpoint,
        ca_bundle: &Path,
        devices: &[DeviceFiles],
        seed: u64,
    ) -> Result<Self, Error> {
        let start = u64::try_from(Timestamp::now().unix_micros()).unwrap_or(1);
        let mut fleet = Vec::with_capacity(devices.len());
        for (index, device) in devices.iter().enumerate() {
            let mut simulated = SimulatedDevice::new(device.kind, seed.wrapping_add(index as u64));
            simulated.set_next_sequence(start);
            fleet.push(FleetDevice {
                name: device.name.clone(),
                config: client_config(ca_bundle, &device.files)?,
                simulated,
            });
        }
        Ok(Self {
            endpoint,
            devices: fleet,
        })
    }

    /// The devices.
    pub fn devices(&self) -> &[FleetDevice] {
        &self.devices
    }

    /// The devices, to change their state (sequence numbers).
    pub fn devices_mut(&mut self) -> &mut [FleetDevice] {
        &mut self.devices
    }

    /// Every device reports at its kind's nominal rate times `speed` over its own
    /// connection for `duration`. `progress` is told of every answered request.
    pub async fn steady(
        &mut self,
        duration: Duration,
        speed: f64,
        progress: Option<indicatif::ProgressBar>,
    ) -> Summary {
        let summary = Arc::new(Mutex::new(Summary::default()));
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for device in std::mem::take(&mut self.devices) {
            let (endpoint, summary, progress) = (
                self.endpoint.clone(),
                Arc::clone(&summary),
                progress.clone(),
            );
            tasks.spawn(async move {
                let mut device = device;
                let per_minute = device
                    .simulated
                    .kind()
                    .types()
                    .first()
                    .map_or(60, |t| t.per_minute);
                let every =
                    Duration::from_secs_f64(60.0 / (f64::from(per_minute) * speed.max(0.001)));
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // The device's own pooled client: one connection, reopened on the next
                // report after it breaks (a failed connect counts as a failure).
                let client = Connection::new(
                    &endpoint,
                    Arc::clone(&device.config),
                    ClientOptions::default(),
                );
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => break,
                        _ = ticks.tick() => {}
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let body = device.simulated.report(Timestamp::now());
                    send(&client, body, &summary).await;
                    if let Some(progress) = &progress {
                        progress.inc(1);
                    }
                }
                device
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(device) = joined {
                self.devices.push(device);
            }
        }
        finish(&summary, started)
    }

    /// `count` devices (cycling through the fleet when it is smaller; a device sending
    /// several reports at once may see later ones arrive first and be refused as
    /// replays, so give the fleet at least `count` devices) each open a fresh
    /// connection and send one report, all released at the same instant once every
    /// connection is open; the summary's elapsed time runs from the release to the last
    /// answer. Connections that fail to open count as failures.
    pub async fn burst(&mut self, count: usize) -> Summary {
        let summary = Arc::new(Mutex::new(Summary::default()));
        if self.devices.is_empty() {
            return finish(&summary, Instant::now());
        }
        let mut connections = tokio::task::JoinSet::new();
        let size = self.devices.len();
        for index in 0..count {
            let device = &mut self.devices[index % size];
            let body = device.simulated.report(Timestamp::now());
            let (endpoint, config) = (self.endpoint.clone(), Arc::clone(&device.config));
            connections.spawn(async move {
                (
                    tokio::time::timeout(REQUEST_TIMEOUT, Connection::open(&endpoint, config))
                        .await,
                    body,
                )
            });
        }
        let mut ready = Vec::with_capacity(count);
        while let Some(joined) = connections.join_next().await {
            let Ok((opened, body)) = joined else { continue };
            match opened {
                Ok(Ok(connection)) => ready.push((connection, body)),
                Ok(Err(error)) => {
                    if let Ok(mut summary) = summary.lock() {
                        summary.fail(error.to_string());
                    }
                }
                Err(_) => {
                    if let Ok(mut summary) = summary.lock() {
                        summary.fail("connection not open within the timeout".into());
                    }
                }
            }
        }
        let release = Arc::new(tokio::sync::Barrier::new(ready.len() + 1));
        let mut sends = tokio::task::JoinSet::new();
        for (connection, body) in ready {
            let (release, summary) = (Arc::clone(&release), Arc::clone(&summary));
            sends.spawn(async move {
                release.wait().await;
                send(&connection, body, &summary).await;
            });
        }
        release.wait().await;
        let started = Instant::now();
        while sends.join_next().await.is_some() {}
        finish(&summary, started)
    }

    /// Steady for `duration`, calling `report` with the summary of each `period` (and of
    /// the last, shorter one); returns the whole run's summary.
    pub async fn soak(
        &mut self,
        duration: Duration,
        period: Duration,
        speed: f64,
        mut report: impl FnMut(&Summary),
    ) -> Summary {
        let started = Instant::now();
        let mut total = Summary::default();
        let period = period.max(Duration::from_secs(1));
        loop {
            let left = duration.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let round = self.steady(left.min(period), speed, None).await;
            report(&round);
            total.merge(round);
        }
        total.elapsed = started.elapsed();
        total
    }
}

fn finish(summary: &Mutex<Summary>, started: Instant) -> Summary {
    let mut summary = summary.lock().map(|s| s.clone()).unwrap_or_default();
    summary.elapsed = started.elapsed();
    summary
}

/// Loads the devices a ward directory lists, optionally only some kinds.
pub fn ward_devices(files: &crate::ward::WardFiles, kinds: &[DeviceKind]) -> Vec<DeviceFiles> {
    files
        .devices
        .iter()
        .filter(|d| kinds.is_empty() || kinds.contains(&d.kind))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_counts_by_code_and_ranks_latencies() {
        let mut summary = Summary::default();
        summary.record(
            Duration::from_millis(10),
            202,
            br#"{"results":[{"status":"accepted","leaf":"00"},{"status":"rejected","code":"replay"}]}"#,
        );
        summary.record(
            Duration::from_millis(30),
            403,
            br#"{"code":"unknown_device","message":"x"}"#,
        );
        summary.record(Duration::from_millis(20), 500, b"not json");
        summary.fail("refused".into());
        assert_eq!(summary.requests, 4);
        assert_eq!(summary.accepted, 1);
        assert_eq!(summary.rejected["replay"], 1);
        assert_eq!(summary.rejected["unknown_device"], 1);
        assert_eq!(summary.rejected["http_500"], 1);
        assert_eq!(summary.failed, 1);
        assert_eq!(summary.percentile(50.0), Some(Duration::from_millis(20)));
        assert_eq!(summary.percentile(99.0), Some(Duration::from_millis(30)));
        assert!(summary.table().contains("rejected: replay"));
    }
}
