//! The CA database: the CA's settings, every certificate issued, and the audit log.
//!
//! SQLite through sqlx, schema in `migrations/`, file created 0600 (SQLite gives its WAL
//! and shared-memory files the same mode). WAL journal, `synchronous=FULL`, a 30 s busy
//! timeout, and every write in a `BEGIN IMMEDIATE` transaction: two processes issuing at
//! once queue for the write lock instead of failing on a read-to-write upgrade, and the
//! primary key on the serial makes a duplicate serial impossible (a collision of 126
//! random bits aborts that transaction rather than issuing twice).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use time::OffsetDateTime;
use wardseal_core::identity::{GroupId, Role};

use crate::crl::RevocationReason;
use crate::error::{Cause, Error, InventoryError};
use crate::key::create_private_file;
use crate::serial::SerialNumber;

/// The database file's name in the CA directory.
pub const DATABASE_FILE: &str = "ca.db";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// An open CA database.
#[derive(Debug, Clone)]
pub struct Inventory {
    pool: SqlitePool,
    path: PathBuf,
}

/// A write transaction (`BEGIN IMMEDIATE`).
pub(crate) type WriteTransaction = Transaction<'static, Sqlite>;

impl Inventory {
    /// Creates a new database (mode 0600) and applies the schema. Fails if the file exists.
    pub(crate) async fn create(path: &Path) -> Result<Self, Error> {
        drop(create_private_file(path)?);
        let inventory = Self::connect(path).await?;
        MIGRATOR
            .run(&inventory.pool)
            .await
            .map_err(|error| inventory.error("create the schema", error))?;
        Ok(inventory)
    }

    /// Opens an existing database and applies any schema migrations it lacks.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let inventory = Self::connect(path).await?;
        MIGRATOR
            .run(&inventory.pool)
            .await
            .map_err(|error| inventory.error("migrate the schema", error))?;
        Ok(inventory)
    }

    async fn connect(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|error| Error::Database {
                path: path.to_owned(),
                action: "open",
                source: Cause::new(error),
            })?;
        Ok(Self {
            pool,
            path: path.to_owned(),
        })
    }

    pub(crate) fn error(
        &self,
        action: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Database {
            path: self.path.clone(),
            action,
            source: Cause::new(error),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction, waiting for other writers.
    pub(crate) async fn write(&self) -> Result<WriteTransaction, Error> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|error| self.error("begin a write transaction", error))
    }

    pub(crate) async fn commit(&self, transaction: WriteTransaction) -> Result<(), Error> {
        transaction
            .commit()
            .await
            .map_err(|error| self.error("commit", error))
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// One certificate by serial.
    pub async fn certificate(&self, serial: &SerialNumber) -> Result<CertificateRecord, Error> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = ?")
            .bind(serial.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| self.error("read a certificate", error))?;
        match row {
            Some(row) => CertificateRecord::from_row(&row),
            None => Err(InventoryError::UnknownSerial {
                serial: serial.clone(),
            }
            .into()),
        }
    }

    /// The certificates matching `filter`, newest first.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<CertificateRecord>, Error> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM certificates WHERE 1 = 1");
        if let Some(role) = filter.role {
            query.push(" AND role = ").push_bind(role.name());
        }
        if let Some(group) = filter.group_id {
            query.push(" AND group_id = ").push_bind(i64::from(group.0));
        }
        if let Some(ward) = &filter.ward {
            query.push(" AND ward = ").push_bind(ward.clone());
        }
        if let Some(epc) = &filter.epc {
            query.push(" AND epc = ").push_bind(epc.clone());
        }
        match filter.status {
            Some(Status::Valid) => {
                query
                    .push(" AND revoked_at IS NULL AND not_after >= ")
                    .push_bind(now);
            }
            Some(Status::Revoked) => {
                query.push(" AND revoked_at IS NOT NULL");
            }
            Some(Status::Expired) => {
                query
                    .push(" AND revoked_at IS NULL AND not_after < ")
                    .push_bind(now);
            }
            None => {}
        }
        if let Some(within) = filter.expiring_within {
            let limit = now.saturating_add(i64::try_from(within.as_secs()).unwrap_or(i64::MAX));
            query
                .push(" AND revoked_at IS NULL AND not_after >= ")
                .push_bind(now)
                .push(" AND not_after <= ")
                .push_bind(limit);
        }
        query.push(" ORDER BY issued_at DESC, serial");
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.error("list certificates", error))?;
        rows.iter().map(CertificateRecord::from_row).collect()
    }

    /// The EPCs that have a valid (unrevoked, unexpired) certificate, with its serial
    /// (the newest when there are several, as during a renewal).
    pub(crate) async fn valid_epcs(
        &self,
        connection: &mut SqliteConnection,
        now: OffsetDateTime,
    ) -> Result<HashMap<String, SerialNumber>, Error> {
        let rows = sqlx::query(
            "SELECT epc, serial FROM certificates WHERE epc IS NOT NULL AND revoked_at IS NULL \
             AND not_after >= ? ORDER BY issued_at",
        )
        .bind(now.unix_timestamp())
        .fetch_all(connection)
        .await
        .map_err(|error| self.error("look up EPCs", error))?;
        let mut epcs = HashMap::with_capacity(rows.len());
        for row in &rows {
            let serial: String = column(row, "serial")?;
            epcs.insert(column(row, "epc")?, parse_serial(&serial)?);
        }
        Ok(epcs)
    }

    /// [`Inventory::valid_epcs`] outside a transaction.
    pub(crate) async fn valid_epcs_now(
        &self,
        now: OffsetDateTime,
    ) -> Result<HashMap<String, SerialNumber>, Error> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|error| self.error("open a connection", error))?;
        self.valid_epcs(&mut connection, now).await
    }

    pub(crate) async fn insert(
        &self,
        transaction: &mut WriteTransaction,
        record: &CertificateRecord,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO certificates (serial, role, common_name, epc, group_id, rule_id, \
             subject_id, ward, not_before, not_after, issued_at, der, renewal_of) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.serial.to_string())
        .bind(record.role.name())
        .bind(&record.common_name)
        .bind(&record.epc)
        .bind(record.group_id.map(i64::from))
        .bind(record.rule_id.map(i64::from))
        .bind(&record.subject_id)
        .bind(&record.ward)
        .bind(record.not_before.unix_timestamp())
        .bind(record.not_after.unix_timestamp())
        .bind(record.issued_at.unix_timestamp())
        .bind(&record.der)
        .bind(record.renewal_of.as_ref().map(ToString::to_string))
        .execute(&mut **transaction)
        .await
        .map_err(|error| self.error("record a certificate", error))?;
        Ok(())
    }

    pub(crate) async fn mark_revoked(
        &self,
        transaction: &mut WriteTransaction,
        serial: &SerialNumber,
        revocation: &Revocation,
    ) -> Result<(), Error> {
        sqlx::query(
            "UPDATE certificates SET revoked_at = ?, revocation_reason = ?, invalidity_date = ? \
             WHERE serial = ?",
        )
        .bind(revocation.revoked_at.unix_timestamp())
        .bind(revocation.reason.name())
        .bind(
            revocation
                .invalidity_date
                .map(OffsetDateTime::unix_timestamp),
        )
        .bind(serial.to_string())
        .execute(&mut **transaction)
        .await
        .map_err(|error| self.error("record a revocation", error))?;
        Ok(())
    }

    pub(crate) async fn certificate_in(
        &self,
        transaction: &mut WriteTransaction,
        serial: &SerialNumber,
    ) -> Result<CertificateRecord, Error> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = ?")
            .bind(serial.to_string())
            .fetch_optional(&mut **transaction)
            .await
            .map_err(|error| self.error("read a certificate", error))?;
        match row {
            Some(row) => CertificateRecord::from_row(&row),
            None => Err(InventoryError::UnknownSerial {
                serial: serial.clone(),
            }
            .into()),
        }
    }

    /// Revoked certificates that have not expired yet: the CRL's entries.
    pub(crate) async fn revoked_unexpired(
        &self,
        transaction: &mut WriteTransaction,
        now: OffsetDateTime,
    ) -> Result<Vec<(SerialNumber, Revocation)>, Error> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason, invalidity_date FROM certificates \
             WHERE revoked_at IS NOT NULL AND not_after >= ? ORDER BY revoked_at, serial",
        )
        .bind(now.unix_timestamp())
        .fetch_all(&mut **transaction)
        .await
        .map_err(|error| self.error("list revocations", error))?;
        rows.iter()
            .map(|row| {
                let serial: String = column(row, "serial")?;
                let revocation = Revocation::from_row(row, &serial)?
                    .ok_or_else(|| damaged(&serial, "revoked_at"))?;
                Ok((parse_serial(&serial)?, revocation))
            })
            .collect()
    }

    /// A cheap fingerprint of the revocation state: changes whenever a certificate is
    /// revoked (the CRL server re-signs when it changes).
    pub async fn revocation_state(&self) -> Result<(i64, i64), Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(revoked_at), 0) AS latest FROM certificates \
             WHERE revoked_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|error| self.error("read the revocation state", error))?;
        Ok((column(&row, "n")?, column(&row, "latest")?))
    }
}

/// Which certificates `list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this role.
    pub role: Option<Role>,
    /// Only this group.
    pub group_id: Option<GroupId>,
    /// Only this ward.
    pub ward: Option<String>,
    /// Only this EPC (pure identity URI).
    pub epc: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only valid certificates expiring within this long.
    pub expiring_within: Option<Duration>,
}

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not revoked and not expired.
    Valid,
    /// Revoked.
    Revoked,
    /// Past its validity.
    Expired,
}

impl FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "valid" => Ok(Self::Valid),
            "revoked" => Ok(Self::Revoked),
            "expired" => Ok(Self::Expired),
            _ => Err(format!(
                "unknown status {text:?}; use valid, revoked or expired"
            )),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Valid => "valid",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        })
    }
}

/// A revocation as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revocation {
    /// When the CA revoked it.
    #[serde(serialize_with = "rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// The RFC 5280 reason.
    pub reason: RevocationReason,
    /// When the key was compromised or the certificate otherwise became invalid, if known.
    #[serde(serialize_with = "rfc3339_option")]
    pub invalidity_date: Option<OffsetDateTime>,
}

impl Revocation {
    fn from_row(row: &SqliteRow, serial: &str) -> Result<Option<Self>, Error> {
        let Some(revoked_at) = column::<Option<i64>>(row, "revoked_at")? else {
            return Ok(None);
        };
        let reason: Option<String> = column(row, "revocation_reason")?;
        let reason = reason
            .as_deref()
            .unwrap_or("unspecified")
            .parse()
            .map_err(|_| damaged(serial, "revocation_reason"))?;
        let invalidity_date = column::<Option<i64>>(row, "invalidity_date")?
            .map(|seconds| timestamp(seconds, serial))
            .transpose()?;
        Ok(Some(Self {
            revoked_at: timestamp(revoked_at, serial)?,
            reason,
            invalidity_date,
        }))
    }
}

/// One certificate in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateRecord {
    /// The serial number.
    pub serial: SerialNumber,
    /// The role (profile).
    pub role: Role,
    /// The subject common name.
    pub common_name: String,
    /// The device EPC (pure identity URI), for devices.
    pub epc: Option<String>,
    /// The group id, for devices and collectors.
    pub group_id: Option<u32>,
    /// The rule id, for devices and collectors.
    pub rule_id: Option<u32>,
    /// The subject id (staff, patient, ward).
    pub subject_id: Option<String>,
    /// The ward, if recorded.
    pub ward: Option<String>,
    /// Start of validity.
    #[serde(serialize_with = "rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it was issued.
    #[serde(serialize_with = "rfc3339")]
    pub issued_at: OffsetDateTime,
    /// Its revocation, if revoked.
    pub revocation: Option<Revocation>,
    /// The certificate this one renews.
    pub renewal_of: Option<SerialNumber>,
    /// The certificate (DER).
    #[serde(skip)]
    pub der: Vec<u8>,
}

impl CertificateRecord {
    /// Where it stands at `now`.
    pub fn status(&self, now: OffsetDateTime) -> Status {
        if self.revocation.is_some() {
            Status::Revoked
        } else if self.not_after < now {
            Status::Expired
        } else {
            Status::Valid
        }
    }

    fn from_row(row: &SqliteRow) -> Result<Self, Error> {
        let serial_text: String = column(row, "serial")?;
        let serial = parse_serial(&serial_text)?;
        let role: String = column(row, "role")?;
        let id = |name: &str| -> Result<Option<u32>, Error> {
            column::<Option<i64>>(row, name)?
                .map(|value| u32::try_from(value).map_err(|_| damaged(&serial_text, name)))
                .transpose()
        };
        let renewal_of: Option<String> = column(row, "renewal_of")?;
        Ok(Self {
            role: role.parse().map_err(|_| damaged(&serial_text, "role"))?,
            common_name: column(row, "common_name")?,
            epc: column(row, "epc")?,
            group_id: id("group_id")?,
            rule_id: id("rule_id")?,
            subject_id: column(row, "subject_id")?,
            ward: column(row, "ward")?,
            not_before: timestamp(column(row, "not_before")?, &serial_text)?,
            not_after: timestamp(column(row, "not_after")?, &serial_text)?,
            issued_at: timestamp(column(row, "issued_at")?, &serial_text)?,
            revocation: Revocation::from_row(row, &serial_text)?,
            renewal_of: renewal_of.map(|text| parse_serial(&text)).transpose()?,
            der: column(row, "der")?,
            serial,
        })
    }
}

fn column<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, Error>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name).map_err(|error| Error::Database {
        path: PathBuf::from(DATABASE_FILE),
        action: "decode a row",
        source: Cause::new(error),
    })
}

fn damaged(serial: &str, column: &str) -> Error {
    InventoryError::Damaged {
        serial: serial.to_owned(),
        reason: format!("column {column} does not decode"),
    }
    .into()
}

fn parse_serial(text: &str) -> Result<SerialNumber, Error> {
    text.parse().map_err(|_| damaged(text, "serial"))
}

fn timestamp(seconds: i64, serial: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| damaged(serial, "time"))
}

/// The inventory as `wardseal-pki list` prints it: one line a certificate (serial, role,
/// status, expiry date, ward, common name), then the count.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    /// The certificates.
    pub records: &'a [CertificateRecord],
    /// The time their status is judged at.
    pub now: OffsetDateTime,
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for record in self.records {
            writeln!(
                f,
                "{}  {:<9} {:<8} {:<20}  {}  {}",
                record.serial,
                record.role,
                record.status(self.now),
                record.not_after.date(),
                record.ward.as_deref().unwrap_or("-"),
                record.common_name,
            )?;
        }
        write!(f, "{} certificate(s)", self.records.len())
    }
}

/// One certificate as `wardseal-pki show` prints it: what it says, then what the inventory
/// knows (status, revocation, ward, the certificate it renews), and the PEM if asked for.
#[derive(Debug, Clone, Copy)]
pub struct CertificateDetails<'a> {
    /// The inventory's record.
    pub record: &'a CertificateRecord,
    /// The certificate in words.
    pub description: &'a crate::describe::CertificateDescription,
    /// The time its status is judged at.
    pub now: OffsetDateTime,
    /// The certificate's PEM, to print after the rest.
    pub pem: Option<&'a str>,
}

impl fmt::Display for CertificateDetails<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = self.record;
        write!(f, "{}", self.description)?;
        writeln!(f, "status:     {}", record.status(self.now))?;
        if let Some(revocation) = &record.revocation {
            writeln!(
                f,
                "revoked:    {} ({})",
                format_time(revocation.revoked_at),
                revocation.reason
            )?;
        }
        if let Some(ward) = &record.ward {
            writeln!(f, "ward:       {ward}")?;
        }
        if let Some(old) = &record.renewal_of {
            writeln!(f, "renews:     {old}")?;
        }
        if let Some(pem) = self.pem {
            f.write_str(pem)?;
        }
        Ok(())
    }
}

/// Formats a time as RFC 3339 (UTC), for text and JSON output.
pub fn format_time(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

fn rfc3339<S: serde::Serializer>(time: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(*time))
}

fn rfc3339_option<S: serde::Serializer>(
    time: &Option<OffsetDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_str(&format_time(*time)),
        None => serializer.serialize_none(),
    }
}
