//! The durable spool: a SQLite database in WAL mode with `synchronous=FULL`, written by
//! one thread that commits many readings per transaction (group commit).
//!
//! A device gets its 202 only after the transaction holding its reading *and* the
//! device's new replay high-water mark has committed, so a crash can lose neither half:
//! an acknowledged reading is on disk, and a replay of it is refused after a restart.
//! The writer thread is also where the replay check happens: it is the one place that
//! sees every reading in commit order, so two copies of a reading racing on two
//! connections cannot both pass. Rows leave the spool only when storage's
//! [`BatchReceipt`](wardseal_core::exchange::BatchReceipt) for their batch arrives.
//!
//! A full disk (or the configured `spool.max_bytes`, enforced with SQLite's
//! `max_page_count`) fails the transaction: the readings in it are refused with 507 and
//! everything committed before stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::{mpsc, oneshot};
use wardseal_core::batch::ChainTip;
use wardseal_core::exchange::DeviceAssignment;
use wardseal_core::hash::Hash;
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::{Reading, Timestamp};

use crate::decision_log::DecisionRecord;
use crate::error::{Rejection, SpoolError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    device BLOB NOT NULL,
    patient TEXT,
    leaf BLOB NOT NULL,
    canonical BLOB NOT NULL,
    time_us INTEGER NOT NULL,
    received_us INTEGER NOT NULL,
    batch INTEGER
);
CREATE INDEX IF NOT EXISTS readings_pending ON readings (patient, batch, id);
-- A sealed batch's readings, for delivery (oldest arrival) and deletion on receipt;
-- without it each lookup scans every spooled reading. Partial: readings waiting for a
-- batch are not indexed, so ingest pays nothing for it until sealing.
CREATE INDEX IF NOT EXISTS readings_batch ON readings (batch) WHERE batch IS NOT NULL;
CREATE TABLE IF NOT EXISTS high_water (
    device BLOB PRIMARY KEY,
    sequence INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    patient TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    submission TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    UNIQUE (patient, sequence)
);
CREATE TABLE IF NOT EXISTS chain_tips (
    patient TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    hash BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    time_us INTEGER NOT NULL,
    anchored INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS decisions_unanchored ON decisions (anchored, id);
-- Alerts raised here and not yet acknowledged by storage (the alert sender's outbox):
-- an alert is written before the device's 202 and deleted only on storage's answer.
CREATE TABLE IF NOT EXISTS alert_outbox (
    id BLOB PRIMARY KEY,
    alert TEXT NOT NULL,
    raised_us INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Where and how big the spool is.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The database file (created 0600 with its directory if missing).
    pub path: PathBuf,
    /// The most bytes the database may grow to; `None` for the disk's limit.
    pub max_bytes: Option<u64>,
    /// The most requests committed in one transaction.
    pub max_group: usize,
}

/// One reading that passed every check before replay, ready to be spooled.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The reading (device from the certificate, measurement from the body).
    pub reading: Reading,
    /// The patient the device measures, when an assignment is known; otherwise the
    /// reading waits unbound until one arrives.
    pub patient: Option<SubjectId>,
    /// The SHA-256 of the client certificate, for the decision log.
    pub subject: Hash,
    /// The clinical alert the reading raised, put in the alert outbox in the same
    /// transaction when the reading is accepted (not when it is a replay).
    pub alert: Option<QueuedAlert>,
}

/// What became of one spooled entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Durable; the reading's leaf hash.
    Accepted(Hash),
    /// Refused: the sequence number is not above the device's high-water mark.
    Replay {
        /// The reading's sequence number.
        sequence: u64,
        /// The mark.
        high_water: u64,
    },
}

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

enum Job {
    Append {
        entries: Vec<Entry>,
        reply: oneshot::Sender<Result<Vec<Outcome>, Rejection>>,
    },
    Decisions(Vec<Hash>),
    Run(Task),
}

/// The spool handle; cheap to clone, all clones feed one writer thread.
#[derive(Clone)]
pub struct Spool {
    jobs: mpsc::Sender<Job>,
    depth: Arc<AtomicU64>,
    path: PathBuf,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .field("depth", &self.depth())
            .finish()
    }
}

/// Opens the database with the collector's pragmas and schema.
fn open_connection(options: &SpoolOptions) -> Result<Connection, SpoolError> {
    if let Some(parent) = options.path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            SpoolError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
        })?;
    }
    create_private(&options.path);
    let connection = Connection::open(&options.path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(30))?;
    if let Some(max_bytes) = options.max_bytes {
        let page_size: i64 = connection.pragma_query_value(None, "page_size", |row| row.get(0))?;
        let pages = i64::try_from(max_bytes).unwrap_or(i64::MAX) / page_size.max(512);
        connection.pragma_update(None, "max_page_count", pages.max(16))?;
    }
    connection
        .execute_batch(SCHEMA)
        .map_err(SpoolError::from_sqlite)?;
    connection
        .execute_batch(crate::quarantine::SCHEMA)
        .map_err(SpoolError::from_sqlite)?;
    Ok(connection)
}

/// Creates the database file with mode 0600 before SQLite opens it (patient data).
fn create_private(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt as _;
    // An error here (the file exists, say) is left to SQLite's open to report.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

impl Spool {
    /// Opens (or creates) the spool and starts its writer thread.
    pub fn open(options: SpoolOptions) -> Result<Self, SpoolError> {
        let mut connection = open_connection(&options)?;
        let depth: u64 = connection
            .query_row("SELECT COUNT(*) FROM readings", [], |row| {
                row.get::<_, i64>(0)
            })?
            .try_into()
            .unwrap_or(0);
        let mut high_water = HashMap::new();
        {
            let mut statement = connection.prepare("SELECT device, sequence FROM high_water")?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (device, sequence) = row?;
                if let Ok(device) = <[u8; 12]>::try_from(device.as_slice()) {
                    high_water.insert(device, from_sql_u64(sequence));
                }
            }
        }
        let (jobs, receiver) = mpsc::channel(16_384);
        let depth = Arc::new(AtomicU64::new(depth));
        let writer_depth = Arc::clone(&depth);
        let max_group = options.max_group.max(1);
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                writer(
                    &mut connection,
                    receiver,
                    high_water,
                    &writer_depth,
                    max_group,
                );
            })
            .map_err(|e| {
                SpoolError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
            })?;
        Ok(Self {
            jobs,
            depth,
            path: options.path,
        })
    }

    /// Spools `entries` in one group-committed transaction with their high-water marks;
    /// returns each entry's outcome once durable.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<Vec<Outcome>, Rejection> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Append { entries, reply })
            .await
            .map_err(|_| Rejection::Unavailable)?;
        answer.await.map_err(|_| Rejection::Unavailable)?
    }

    /// Records decision-log leaves of refusals (committed with the next group).
    pub fn record_decisions(&self, leaves: Vec<Hash>) {
        // A full queue or a stopped writer loses only log leaves of refused readings.
        let _ = self.jobs.try_send(Job::Decisions(leaves));
    }

    /// Runs `task` on the writer's connection, between group commits.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        task: impl FnOnce(&mut Connection) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let (reply, answer) = oneshot::channel();
        let job: Task = Box::new(move |connection| {
            let _ = reply.send(task(connection));
        });
        self.jobs
            .send(Job::Run(job))
            .await
            .map_err(|_| SpoolError::Stopped)?;
        answer.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Readings in the spool (not yet acknowledged by storage).
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Lowers the depth after storage acknowledged `count` readings.
    pub(crate) fn delivered(&self, count: u64) {
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(count))
            });
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A sealed batch waiting for storage's receipt.
#[derive(Debug, Clone)]
pub(crate) struct QueuedBatch {
    /// Its row.
    pub(crate) id: i64,
    /// The submission's JSON exactly as sealed (sent to storage byte for byte).
    pub(crate) submission: String,
    /// Arrival of its oldest reading (microseconds since the epoch; 0 when unknown).
    pub(crate) oldest_received: i64,
}

/// What the batcher needs to seal a patient's next batch.
#[derive(Debug, Clone)]
pub(crate) struct SealingState {
    /// Pending readings, oldest first.
    pub(crate) pending: Vec<SpooledReading>,
    /// The patient's last sealed batch.
    pub(crate) tip: Option<ChainTip>,
    /// Sealed batches waiting for (or in) delivery.
    pub(crate) queued: u64,
}

/// A decision-log leaf not yet anchored on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnanchoredDecision {
    /// Its row (rows are anchored in id order).
    pub(crate) id: i64,
    /// The leaf hash.
    pub(crate) leaf: Hash,
    /// When it was recorded (microseconds since the epoch).
    pub(crate) time_us: i64,
}

/// The typed queries of the batcher, the forwarder and the decision log; each runs on
/// the writer's connection between group commits.
impl Spool {
    /// Patients with readings waiting for a batch.
    pub(crate) async fn patients_pending(&self) -> Result<Vec<SubjectId>, SpoolError> {
        self.run(|connection| patients_pending(connection)).await
    }

    /// `patient`'s pending readings (at most `limit`), chain tip and queued batch count.
    pub(crate) async fn sealing_state(
        &self,
        patient: &SubjectId,
        limit: usize,
    ) -> Result<SealingState, SpoolError> {
        let patient = patient.clone();
        self.run(move |connection| {
            Ok(SealingState {
                pending: pending(connection, &patient, limit)?,
                tip: chain_tip(connection, &patient)?,
                queued: batches_queued(connection, &patient)?,
            })
        })
        .await
    }

    /// Stores a sealed batch (`submission`, its JSON), moves its readings into it and
    /// advances `patient`'s chain tip to `tip`, in one transaction.
    pub(crate) async fn seal_batch(
        &self,
        patient: &SubjectId,
        tip: ChainTip,
        submission: String,
        readings: Vec<i64>,
    ) -> Result<(), SpoolError> {
        let patient = patient.clone();
        self.run(move |connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "INSERT INTO batches (patient, sequence, submission, created_us) VALUES (?1, ?2, ?3, ?4)",
                params![
                    patient.as_str(),
                    to_sql_u64(tip.sequence),
                    submission,
                    Timestamp::now().unix_micros()
                ],
            )?;
            let batch = transaction.last_insert_rowid();
            {
                let mut update =
                    transaction.prepare_cached("UPDATE readings SET batch = ?1 WHERE id = ?2")?;
                for id in &readings {
                    update.execute(params![batch, id])?;
                }
            }
            transaction.execute(
                "INSERT INTO chain_tips (patient, sequence, hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT (patient) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash",
                params![patient.as_str(), to_sql_u64(tip.sequence), tip.hash.as_bytes()],
            )?;
            transaction.commit().map_err(SpoolError::from_sqlite)?;
            Ok(())
        })
        .await
    }

    /// The patients with sealed batches waiting, oldest batch first (at most 512).
    pub(crate) async fn patients_queued(&self) -> Result<Vec<SubjectId>, SpoolError> {
        self.run(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT patient FROM batches GROUP BY patient ORDER BY MIN(id) LIMIT 512",
            )?;
            let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                let text = row?;
                let patient = SubjectId::new(text).map_err(|error| SpoolError::Corrupt {
                    row: 0,
                    reason: format!("a sealed batch names no valid patient: {error}"),
                })?;
                out.push(patient);
            }
            Ok(out)
        })
        .await
    }

    /// `patient`'s oldest sealed batch after batch `after` (its chain order is the id
    /// order: the batcher seals one patient's batches one at a time).
    pub(crate) async fn next_batch(
        &self,
        patient: &SubjectId,
        after: i64,
    ) -> Result<Option<QueuedBatch>, SpoolError> {
        let patient = patient.clone();
        self.run(move |connection| {
            // Only its submission is read, and the oldest arrival through the partial
            // index on sealed readings: a backlog of large batches is not loaded at once.
            let mut statement = connection.prepare_cached(
                "SELECT b.id, b.submission,
                        COALESCE((SELECT MIN(received_us) FROM readings r WHERE r.batch = b.id), 0)
                 FROM batches b
                 WHERE b.patient = ?1 AND b.id > ?2
                 ORDER BY b.id LIMIT 1",
            )?;
            let mut rows = statement.query_map(params![patient.as_str(), after], |row| {
                Ok(QueuedBatch {
                    id: row.get(0)?,
                    submission: row.get(1)?,
                    oldest_received: row.get(2)?,
                })
            })?;
            Ok(rows.next().transpose()?)
        })
        .await
    }

    /// Deletes an acknowledged batch and its readings (only ever called with storage's
    /// matching receipt in hand) and lowers the depth; returns how many readings left.
    pub(crate) async fn forget_batch(&self, id: i64) -> Result<u64, SpoolError> {
        let removed = self
            .run(move |connection| {
                let transaction = connection.transaction()?;
                let removed = transaction.execute("DELETE FROM readings WHERE batch = ?1", [id])?;
                transaction.execute("DELETE FROM batches WHERE id = ?1", [id])?;
                transaction.commit()?;
                Ok(removed)
            })
            .await?;
        let removed = u64::try_from(removed).unwrap_or(0);
        self.delivered(removed);
        Ok(removed)
    }

    /// Binds each unbound reading to the assignment valid at its measurement time
    /// (assignments arrived); returns how many readings were bound.
    pub(crate) async fn bind_assignments(
        &self,
        assignments: Vec<DeviceAssignment>,
    ) -> Result<usize, SpoolError> {
        self.run(move |connection| {
            let mut bound = 0;
            for assignment in &assignments {
                bound += bind(connection, assignment)?;
            }
            Ok(bound)
        })
        .await
    }

    /// Readings no assignment holds for yet (they wait), and the arrival of the oldest
    /// (µs since the epoch).
    pub(crate) async fn unbound(&self) -> Result<(u64, Option<i64>), SpoolError> {
        self.run(|connection| {
            let (count, oldest): (i64, Option<i64>) = connection.query_row(
                "SELECT COUNT(*), MIN(received_us) FROM readings WHERE patient IS NULL",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            Ok((u64::try_from(count).unwrap_or(0), oldest))
        })
        .await
    }

    /// Up to `limit` decisions not yet anchored, oldest first.
    pub(crate) async fn unanchored_decisions(
        &self,
        limit: usize,
    ) -> Result<Vec<UnanchoredDecision>, SpoolError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, leaf, time_us FROM decisions WHERE anchored = 0 ORDER BY id LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, leaf, time_us) = row?;
                let leaf = Hash::from_slice(&leaf).map_err(|_| SpoolError::Corrupt {
                    row: id,
                    reason: "decision leaf is not 32 bytes".into(),
                })?;
                out.push(UnanchoredDecision { id, leaf, time_us });
            }
            Ok(out)
        })
        .await
    }

    /// Marks the decisions with ids `first..=last` anchored.
    pub(crate) async fn mark_anchored(&self, first: i64, last: i64) -> Result<(), SpoolError> {
        self.run(move |connection| {
            connection.execute(
                "UPDATE decisions SET anchored = 1 WHERE id BETWEEN ?1 AND ?2",
                [first, last],
            )?;
            Ok(())
        })
        .await
    }

    /// When the oldest decision still waiting to be anchored was recorded
    /// (microseconds since the epoch), if any.
    pub(crate) async fn oldest_unanchored_micros(&self) -> Result<Option<i64>, SpoolError> {
        self.run(|connection| {
            Ok(connection.query_row(
                "SELECT MIN(time_us) FROM decisions WHERE anchored = 0",
                [],
                |row| row.get(0),
            )?)
        })
        .await
    }
}

/// An alert waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAlert {
    /// The alert's id.
    pub id: Hash,
    /// The alert's JSON, as sent to storage.
    pub alert: String,
}

/// The alert outbox and the spool's size.
impl Spool {
    /// Stores `alerts` (id, JSON, raised at µs) in the outbox in one transaction; an id
    /// already there is kept as it is (raising an alert twice is harmless).
    pub async fn queue_alerts(&self, alerts: Vec<(Hash, String, i64)>) -> Result<(), SpoolError> {
        self.run(move |connection| {
            let transaction = connection.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT OR IGNORE INTO alert_outbox (id, alert, raised_us) VALUES (?1, ?2, ?3)",
                )?;
                for (id, alert, raised) in &alerts {
                    insert.execute(params![id.as_bytes(), alert, raised])?;
                }
            }
            transaction.commit().map_err(SpoolError::from_sqlite)?;
            Ok(())
        })
        .await
    }

    /// Up to `limit` alerts of the outbox, oldest first.
    pub async fn queued_alerts(&self, limit: usize) -> Result<Vec<QueuedAlert>, SpoolError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, alert FROM alert_outbox ORDER BY raised_us, id LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, alert) = row?;
                let id = Hash::from_slice(&id).map_err(|_| SpoolError::Corrupt {
                    row: 0,
                    reason: "an alert id is not 32 bytes".into(),
                })?;
                out.push(QueuedAlert { id, alert });
            }
            Ok(out)
        })
        .await
    }

    /// Removes alert `id` from the outbox (storage has it).
    pub async fn forget_alert(&self, id: Hash) -> Result<(), SpoolError> {
        self.run(move |connection| {
            connection.execute("DELETE FROM alert_outbox WHERE id = ?1", [id.as_bytes()])?;
            Ok(())
        })
        .await
    }

    /// The database's size in bytes (pages in use), for the spool-filling alert.
    pub async fn size_bytes(&self) -> Result<u64, SpoolError> {
        self.run(|connection| {
            let pages: i64 = connection.pragma_query_value(None, "page_count", |row| row.get(0))?;
            let free: i64 =
                connection.pragma_query_value(None, "freelist_count", |row| row.get(0))?;
            let size: i64 = connection.pragma_query_value(None, "page_size", |row| row.get(0))?;
            Ok(u64::try_from((pages - free).max(0) * size).unwrap_or(0))
        })
        .await
    }
}

/// SQLite integers are signed; sequence numbers are stored bit for bit.
pub(crate) fn to_sql_u64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// The inverse of [`to_sql_u64`].
pub(crate) fn from_sql_u64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

fn writer(
    connection: &mut Connection,
    mut receiver: mpsc::Receiver<Job>,
    mut high_water: HashMap<[u8; 12], u64>,
    depth: &AtomicU64,
    max_group: usize,
) {
    while let Some(first) = receiver.blocking_recv() {
        let mut appends = Vec::new();
        let mut decisions = Vec::new();
        let mut tasks = Vec::new();
        let mut sort = |job: Job| match job {
            Job::Append { entries, reply } => appends.push((entries, reply)),
            Job::Decisions(leaves) => decisions.extend(leaves),
            Job::Run(task) => tasks.push(task),
        };
        sort(first);
        let mut taken = 1;
        while taken < max_group {
            match receiver.try_recv() {
                Ok(job) => sort(job),
                Err(_) => break,
            }
            taken += 1;
        }
        if !appends.is_empty() || !decisions.is_empty() {
            commit_group(connection, appends, decisions, &mut high_water, depth);
        }
        for task in tasks {
            task(connection);
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Outcome>, Rejection>>;

fn commit_group(
    connection: &mut Connection,
    appends: Vec<(Vec<Entry>, Reply)>,
    decisions: Vec<Hash>,
    high_water: &mut HashMap<[u8; 12], u64>,
    depth: &AtomicU64,
) {
    let now = Timestamp::now();
    let mut staged: HashMap<[u8; 12], u64> = HashMap::new();
    let mut outcomes: Vec<Vec<Outcome>> = Vec::with_capacity(appends.len());
    let mut accepted = 0u64;
    let result = (|| -> Result<(), SpoolError> {
        let transaction = connection.transaction()?;
        {
            let mut insert_reading = transaction.prepare_cached(
                "INSERT INTO readings (device, patient, leaf, canonical, time_us, received_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut insert_decision = transaction
                .prepare_cached("INSERT INTO decisions (leaf, time_us) VALUES (?1, ?2)")?;
            let mut insert_alert = transaction.prepare_cached(
                "INSERT OR IGNORE INTO alert_outbox (id, alert, raised_us) VALUES (?1, ?2, ?3)",
            )?;
            for leaf in &decisions {
                insert_decision.execute(params![leaf.as_bytes(), now.unix_micros()])?;
            }
            for (entries, _) in &appends {
                let mut results = Vec::with_capacity(entries.len());
                for entry in entries {
                    let device = entry.reading.device().to_bytes();
                    let sequence = entry.reading.measurement().sequence();
                    let mark = staged
                        .get(&device)
                        .or_else(|| high_water.get(&device))
                        .copied();
                    let record = DecisionRecord {
                        time: now,
                        subject: entry.subject,
                        device: Some(entry.reading.device().clone()),
                        sequence: Some(sequence),
                        outcome: "accepted",
                        reading: None,
                    };
                    if let Some(mark) = mark.filter(|&mark| sequence <= mark) {
                        let record = DecisionRecord {
                            outcome: "replay",
                            ..record
                        };
                        insert_decision
                            .execute(params![record.leaf_hash().as_bytes(), now.unix_micros()])?;
                        results.push(Outcome::Replay {
                            sequence,
                            high_water: mark,
                        });
                        continue;
                    }
                    let leaf = entry.reading.leaf_hash();
                    insert_reading.execute(params![
                        &device[..],
                        entry.patient.as_ref().map(SubjectId::as_str),
                        leaf.as_bytes(),
                        entry.reading.canonical_bytes(),
                        entry.reading.measurement().time().unix_micros(),
                        now.unix_micros(),
                    ])?;
                    let record = DecisionRecord {
                        reading: Some(leaf),
                        ..record
                    };
                    insert_decision
                        .execute(params![record.leaf_hash().as_bytes(), now.unix_micros()])?;
                    if let Some(alert) = &entry.alert {
                        insert_alert.execute(params![
                            alert.id.as_bytes(),
                            alert.alert,
                            now.unix_micros()
                        ])?;
                    }
                    staged.insert(device, sequence);
                    accepted += 1;
                    results.push(Outcome::Accepted(leaf));
                }
                outcomes.push(results);
            }
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO high_water (device, sequence) VALUES (?1, ?2)
                 ON CONFLICT (device) DO UPDATE SET sequence = excluded.sequence",
            )?;
            for (device, sequence) in &staged {
                upsert.execute(params![&device[..], to_sql_u64(*sequence)])?;
            }
        }
        transaction.commit()?;
        Ok(())
    })()
    .map_err(|error| match error {
        SpoolError::Sqlite(error) => SpoolError::from_sqlite(error),
        other => other,
    });
    match result {
        Ok(()) => {
            high_water.extend(staged);
            depth.fetch_add(accepted, Ordering::Relaxed);
            for ((_, reply), results) in appends.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(results));
            }
        }
        Err(error) => {
            let rejection = match error {
                SpoolError::Full => Rejection::SpoolFull,
                _ => Rejection::Unavailable,
            };
            if rejection == Rejection::Unavailable {
                tracing::error!(%error, "spool transaction failed");
            }
            for (_, reply) in appends {
                let _ = reply.send(Err(rejection.clone()));
            }
        }
    }
}

/// A spooled reading as the batcher reads it back.
#[derive(Debug, Clone)]
pub(crate) struct SpooledReading {
    pub(crate) id: i64,
    pub(crate) leaf: Hash,
    pub(crate) canonical: Vec<u8>,
    pub(crate) time: Timestamp,
    pub(crate) received: Timestamp,
}

/// Pending (unbatched) readings of `patient`, oldest first, at most `limit`.
fn pending(
    connection: &Connection,
    patient: &SubjectId,
    limit: usize,
) -> Result<Vec<SpooledReading>, SpoolError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, leaf, canonical, time_us, received_us FROM readings
         WHERE patient = ?1 AND batch IS NULL ORDER BY id LIMIT ?2",
    )?;
    let rows = statement.query_map(
        params![patient.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        },
    )?;
    let mut readings = Vec::new();
    for row in rows {
        let (id, leaf, canonical, time, received) = row?;
        let corrupt = |reason: &str| SpoolError::Corrupt {
            row: id,
            reason: reason.to_owned(),
        };
        let leaf = <[u8; 32]>::try_from(leaf.as_slice())
            .map(Hash::from)
            .map_err(|_| corrupt("leaf hash is not 32 bytes"))?;
        let time = Timestamp::from_unix_micros(time).map_err(|_| corrupt("time out of range"))?;
        let received =
            Timestamp::from_unix_micros(received).map_err(|_| corrupt("time out of range"))?;
        readings.push(SpooledReading {
            id,
            leaf,
            canonical,
            time,
            received,
        });
    }
    Ok(readings)
}

/// How many sealed batches of `patient` wait for (or are in) delivery.
fn batches_queued(connection: &Connection, patient: &SubjectId) -> Result<u64, SpoolError> {
    // The (patient, sequence) unique index answers this without reading the batches.
    let mut statement =
        connection.prepare_cached("SELECT COUNT(*) FROM batches WHERE patient = ?1")?;
    let count: i64 = statement.query_row([patient.as_str()], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Patients with pending readings.
fn patients_pending(connection: &Connection) -> Result<Vec<SubjectId>, SpoolError> {
    let mut statement = connection.prepare_cached(
        "SELECT DISTINCT patient FROM readings WHERE patient IS NOT NULL AND batch IS NULL",
    )?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    let mut patients = Vec::new();
    for row in rows {
        if let Ok(patient) = SubjectId::new(row?) {
            patients.push(patient);
        }
    }
    Ok(patients)
}

/// Binds the unbound readings of the assignment's device measured while it held
/// (`since` ≤ time < `until`, storage's rule) to its patient.
///
/// An assignment names the device by its pure identity (storage keeps no filter value),
/// so the readings of every filter value of that EPC are bound.
fn bind(connection: &Connection, assignment: &DeviceAssignment) -> Result<usize, SpoolError> {
    let mut statement = connection.prepare_cached(
        "UPDATE readings SET patient = ?2 WHERE device = ?1 AND patient IS NULL
         AND time_us >= ?3 AND (?4 IS NULL OR time_us < ?4)",
    )?;
    let since = assignment.since.unix_micros();
    let until = assignment.until.map(Timestamp::unix_micros);
    let mut bound = 0;
    for filter in 0..8 {
        if let Ok(tag) = assignment.device.clone().with_filter(filter) {
            bound += statement.execute(params![
                &tag.to_bytes()[..],
                assignment.patient.as_str(),
                since,
                until
            ])?;
        }
    }
    Ok(bound)
}

/// The last sealed batch of `patient`'s chain, if any.
fn chain_tip(connection: &Connection, patient: &SubjectId) -> Result<Option<ChainTip>, SpoolError> {
    let row = connection
        .query_row(
            "SELECT sequence, hash FROM chain_tips WHERE patient = ?1",
            params![patient.as_str()],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?;
    row.map(|(sequence, hash)| {
        let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| SpoolError::Corrupt {
            row: sequence,
            reason: "chain tip hash is not 32 bytes".into(),
        })?;
        Ok(ChainTip {
            sequence: from_sql_u64(sequence),
            hash: Hash::from(hash),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardseal_core::epc::Sgtin96;
    use wardseal_core::reading::json;

    fn reading(sequence: u64) -> Reading {
        let device: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
            .parse()
            .unwrap();
        let time = Timestamp::now();
        let measurement = json::parse_measurement(&format!(
            r#"{{"type":"heart_rate","value":72,"unit":"/min","time":"{time}","seq":{sequence}}}"#
        ))
        .unwrap();
        Reading::new(device, measurement)
    }

    fn entry(sequence: u64) -> Entry {
        Entry {
            reading: reading(sequence),
            patient: Some("P-1".parse().unwrap()),
            subject: Hash::ZERO,
            alert: None,
        }
    }

    fn options(dir: &Path) -> SpoolOptions {
        SpoolOptions {
            path: dir.join("spool.db"),
            max_bytes: None,
            max_group: 256,
        }
    }

    #[tokio::test]
    async fn replays_are_refused_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(options(dir.path())).unwrap();
        let outcomes = spool
            .append(vec![entry(5), entry(5), entry(4)])
            .await
            .unwrap();
        assert!(matches!(outcomes[0], Outcome::Accepted(_)));
        assert_eq!(
            outcomes[1],
            Outcome::Replay {
                sequence: 5,
                high_water: 5
            }
        );
        assert_eq!(
            outcomes[2],
            Outcome::Replay {
                sequence: 4,
                high_water: 5
            }
        );
        assert_eq!(spool.depth(), 1);
        drop(spool);
        let spool = Spool::open(options(dir.path())).unwrap();
        assert_eq!(spool.depth(), 1);
        let outcomes = spool.append(vec![entry(5), entry(6)]).await.unwrap();
        assert!(matches!(outcomes[0], Outcome::Replay { .. }));
        assert!(matches!(outcomes[1], Outcome::Accepted(_)));
        let mode = std::fs::metadata(dir.path().join("spool.db")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
            0
        );
    }

    /// Regression: storage's assignments name devices by pure identity (filter 0), the
    /// certificates' EPCs carry filter 3, and the readings never left the spool.
    #[tokio::test]
    async fn an_assignment_without_the_tag_filter_binds_the_readings() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(options(dir.path())).unwrap();
        let mut unbound = entry(1);
        unbound.patient = None;
        spool.append(vec![unbound]).await.unwrap();
        let assigned: Sgtin96 = "urn:epc:id:sgtin:0614141.812345.6789".parse().unwrap();
        assert_eq!(assigned.filter(), 0);
        let assignment = DeviceAssignment {
            device: assigned,
            patient: "P-1".parse().unwrap(),
            since: Timestamp::from_unix_micros(0).unwrap(),
            until: None,
        };
        let bound = spool
            .run(move |connection| bind(connection, &assignment))
            .await
            .unwrap();
        assert_eq!(bound, 1);
        let pending = spool.run(|connection| patients_pending(connection)).await;
        assert_eq!(pending.unwrap(), vec!["P-1".parse::<SubjectId>().unwrap()]);
    }

    /// An alert in the outbox survives a restart (a crash before storage acknowledged it)
    /// and leaves only when forgotten; raising it twice keeps one.
    #[tokio::test]
    async fn the_alert_outbox_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(options(dir.path())).unwrap();
        let id = Hash::sha256(b"alert");
        let row = (id, r#"{"alert":1}"#.to_owned(), 7);
        spool
            .queue_alerts(vec![row.clone(), row.clone()])
            .await
            .unwrap();
        drop(spool);
        let spool = Spool::open(options(dir.path())).unwrap();
        let queued = spool.queued_alerts(10).await.unwrap();
        assert_eq!(
            queued,
            vec![QueuedAlert {
                id,
                alert: row.1.clone()
            }]
        );
        spool.forget_alert(id).await.unwrap();
        assert!(spool.queued_alerts(10).await.unwrap().is_empty());
        assert!(spool.size_bytes().await.unwrap() > 0);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_with_507_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(SpoolOptions {
            max_bytes: Some(128 * 1024),
            ..options(dir.path())
        })
        .unwrap();
        let mut sequence = 0;
        let full = loop {
            sequence += 1;
            assert!(sequence < 100_000, "the spool never filled");
            match spool.append(vec![entry(sequence)]).await {
                Ok(outcomes) => assert!(matches!(outcomes[0], Outcome::Accepted(_))),
                Err(rejection) => break rejection,
            }
        };
        assert_eq!(full, Rejection::SpoolFull);
        assert_eq!(full.status(), 507);
        let accepted = sequence - 1;
        assert_eq!(spool.depth(), accepted);
        let count: i64 = spool
            .run(|c| Ok(c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(u64::try_from(count).unwrap(), accepted);
        // The refused reading did not move the high-water mark: it can be sent again later.
        let mark: i64 = spool
            .run(|c| Ok(c.query_row("SELECT sequence FROM high_water", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(from_sql_u64(mark), accepted);
    }
}
