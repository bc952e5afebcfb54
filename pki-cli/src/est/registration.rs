//! The devices pre-registered for EST enrollment, and their bootstrap credentials.
//!
//! A registration says which identity (EPC, group, rule, ward) a device will get and how it
//! proves it is that device the first time: a one-time secret (RFC 7030 §3.2.3, HTTP Basic
//! over TLS), a manufacturer (IEEE 802.1AR IDevID) certificate whose subject serialNumber is
//! bound to the EPC here, or both.
//!
//! The secret is 128 random bits generated here and shown once; only SHA-256 over the EPC
//! and the secret is stored (a slow password hash buys nothing for a random 128-bit value).
//! It is spent by an `UPDATE … WHERE secret_used_at IS NULL` in the same write transaction
//! that records the certificate, so two enrollments racing with one secret cannot both
//! succeed, and a failed enrollment does not spend it.

use std::fmt;

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use sqlx::Row;
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, RuleId};
use zeroize::Zeroizing;

use crate::audit;
use crate::ca::{Ca, now};
use crate::error::{Error, EstError};
use crate::inventory::WriteTransaction;
use crate::serial::SerialNumber;

/// What `est register` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The device.
    pub epc: Sgtin96,
    /// Its group.
    pub group_id: GroupId,
    /// Its rule.
    pub rule_id: RuleId,
    /// Its ward, recorded in the inventory.
    pub ward: Option<String>,
    /// Generate a one-time secret.
    pub secret: bool,
    /// The subject serialNumber of its manufacturer (IDevID) certificate.
    pub manufacturer_serial: Option<String>,
}

/// A one-time enrollment secret, shown once at registration.
pub struct OneTimeSecret(Zeroizing<String>);

impl OneTimeSecret {
    fn generate() -> Self {
        let mut bytes = Zeroizing::new([0_u8; 16]);
        OsRng.fill_bytes(bytes.as_mut());
        Self(Zeroizing::new(hex::encode(bytes.as_ref())))
    }

    /// The secret, to hand to the device (HTTP Basic password).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeSecret([secret elided])")
    }
}

/// The stored hash of a device's secret.
pub(crate) fn secret_hash(epc: &str, secret: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"wardseal EST one-time secret\0");
    hasher.update(epc.as_bytes());
    hasher.update([0]);
    hasher.update(secret.as_bytes());
    hasher.finalize().to_vec()
}

/// A registration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    /// The device's EPC (tag form, with its filter).
    pub(crate) epc: Sgtin96,
    pub(crate) group_id: GroupId,
    pub(crate) rule_id: RuleId,
    pub(crate) ward: Option<String>,
}

impl Registered {
    fn from_row(ca: &Ca, row: &sqlx::sqlite::SqliteRow) -> Result<Self, Error> {
        let get = |error| ca.inventory().error("decode a registration", error);
        let epc: String = row.try_get("epc_tag").map_err(get)?;
        let group: i64 = row.try_get("group_id").map_err(get)?;
        let rule: i64 = row.try_get("rule_id").map_err(get)?;
        let damaged = || {
            ca.inventory().error(
                "decode a registration",
                std::io::Error::other("group or rule out of range"),
            )
        };
        Ok(Self {
            epc: epc.parse()?,
            group_id: GroupId(u32::try_from(group).map_err(|_| damaged())?),
            rule_id: RuleId(u32::try_from(rule).map_err(|_| damaged())?),
            ward: row.try_get("ward").map_err(get)?,
        })
    }
}

/// Registers a device; returns its one-time secret when one was asked for.
pub async fn register(
    ca: &Ca,
    registration: &Registration,
    replace: bool,
    actor: &str,
) -> Result<Option<OneTimeSecret>, Error> {
    if !registration.secret && registration.manufacturer_serial.is_none() {
        return Err(EstError::NoBootstrapCredential.into());
    }
    if let Some(ward) = &registration.ward {
        crate::profile::check_text("ward", ward, 64)?;
    }
    let uri = registration.epc.pure_identity_uri();
    let secret = registration.secret.then(OneTimeSecret::generate);
    let hash = secret
        .as_ref()
        .map(|secret| secret_hash(&uri, secret.expose()));
    let inventory = ca.inventory();
    let mut transaction = inventory.write().await?;
    let exists = sqlx::query("SELECT 1 FROM est_registrations WHERE epc = ?")
        .bind(&uri)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| inventory.error("look up a registration", error))?
        .is_some();
    if exists && !replace {
        return Err(EstError::AlreadyRegistered { epc: uri }.into());
    }
    sqlx::query("DELETE FROM est_registrations WHERE epc = ?")
        .bind(&uri)
        .execute(&mut *transaction)
        .await
        .map_err(|error| inventory.error("replace a registration", error))?;
    sqlx::query(
        "INSERT INTO est_registrations (epc, epc_tag, group_id, rule_id, ward, secret_hash, \
         manufacturer_serial, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&uri)
    .bind(registration.epc.tag_uri())
    .bind(i64::from(registration.group_id.0))
    .bind(i64::from(registration.rule_id.0))
    .bind(&registration.ward)
    .bind(hash)
    .bind(&registration.manufacturer_serial)
    .bind(now().unix_timestamp())
    .execute(&mut *transaction)
    .await
    .map_err(|error| inventory.error("record a registration", error))?;
    audit::append(
        inventory,
        &mut transaction,
        actor,
        "est-register",
        &serde_json::json!({
            "epc": uri,
            "group_id": registration.group_id.0,
            "rule_id": registration.rule_id.0,
            "ward": registration.ward,
            "one_time_secret": registration.secret,
            "manufacturer_serial": registration.manufacturer_serial,
            "replaced": exists,
        }),
    )
    .await?;
    inventory.commit(transaction).await?;
    Ok(secret)
}

/// The registration of `epc` (any form [`Sgtin96`] parses), if any.
pub(crate) async fn find_by_epc(ca: &Ca, epc: &Sgtin96) -> Result<Option<Registered>, Error> {
    let row = sqlx::query("SELECT * FROM est_registrations WHERE epc = ?")
        .bind(epc.pure_identity_uri())
        .fetch_optional(ca.inventory().pool())
        .await
        .map_err(|error| ca.inventory().error("look up a registration", error))?;
    row.map(|row| Registered::from_row(ca, &row)).transpose()
}

/// The registration bound to a manufacturer certificate's serialNumber, if any.
pub(crate) async fn find_by_manufacturer_serial(
    ca: &Ca,
    serial: &str,
) -> Result<Option<Registered>, Error> {
    let row = sqlx::query("SELECT * FROM est_registrations WHERE manufacturer_serial = ?")
        .bind(serial)
        .fetch_optional(ca.inventory().pool())
        .await
        .map_err(|error| ca.inventory().error("look up a registration", error))?;
    row.map(|row| Registered::from_row(ca, &row)).transpose()
}

/// How a device proved itself for a first enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bootstrap {
    /// A one-time secret (its hash).
    Secret(Vec<u8>),
    /// A manufacturer certificate with this subject serialNumber.
    Manufacturer(String),
}

impl Bootstrap {
    /// The name recorded in the audit log.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Secret(_) => "one-time-secret",
            Self::Manufacturer(_) => "manufacturer-certificate",
        }
    }
}

/// Spends the credential inside the enrollment's transaction and links the certificate.
/// A secret already spent (by this or a concurrent enrollment) fails with
/// [`EstError::SecretUsed`]; a wrong one with [`EstError::CredentialsRefused`].
pub(crate) async fn spend(
    ca: &Ca,
    transaction: &mut WriteTransaction,
    epc: &Sgtin96,
    bootstrap: &Bootstrap,
    serial: &SerialNumber,
) -> Result<(), Error> {
    let inventory = ca.inventory();
    let uri = epc.pure_identity_uri();
    let updated = match bootstrap {
        Bootstrap::Secret(hash) => sqlx::query(
            "UPDATE est_registrations SET secret_used_at = ?, enrolled_serial = ? \
             WHERE epc = ? AND secret_hash = ? AND secret_used_at IS NULL",
        )
        .bind(now().unix_timestamp())
        .bind(serial.to_string())
        .bind(&uri)
        .bind(hash)
        .execute(&mut **transaction)
        .await
        .map_err(|error| inventory.error("spend a one-time secret", error))?,
        Bootstrap::Manufacturer(manufacturer_serial) => sqlx::query(
            "UPDATE est_registrations SET enrolled_serial = ? \
             WHERE epc = ? AND manufacturer_serial = ?",
        )
        .bind(serial.to_string())
        .bind(&uri)
        .bind(manufacturer_serial)
        .execute(&mut **transaction)
        .await
        .map_err(|error| inventory.error("link a manufacturer certificate", error))?,
    };
    if updated.rows_affected() == 1 {
        return Ok(());
    }
    match bootstrap {
        Bootstrap::Secret(hash) => {
            let row = sqlx::query(
                "SELECT secret_hash, secret_used_at FROM est_registrations WHERE epc = ?",
            )
            .bind(&uri)
            .fetch_optional(&mut **transaction)
            .await
            .map_err(|error| inventory.error("look up a registration", error))?;
            let used = row.is_some_and(|row| {
                row.try_get::<Option<Vec<u8>>, _>("secret_hash")
                    .ok()
                    .flatten()
                    .as_ref()
                    == Some(hash)
                    && row
                        .try_get::<Option<i64>, _>("secret_used_at")
                        .ok()
                        .flatten()
                        .is_some()
            });
            if used {
                Err(EstError::SecretUsed { epc: uri }.into())
            } else {
                Err(EstError::CredentialsRefused {
                    user: epc.to_hex(),
                    reason: "wrong-secret",
                }
                .into())
            }
        }
        Bootstrap::Manufacturer(serial) => Err(EstError::ManufacturerNotRegistered {
            serial: serial.clone(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashes_bind_the_epc() {
        let one = OneTimeSecret::generate();
        let two = OneTimeSecret::generate();
        assert_ne!(one.expose(), two.expose());
        assert_eq!(one.expose().len(), 32);
        assert_ne!(
            secret_hash("urn:epc:id:sgtin:0614141.812345.1", one.expose()),
            secret_hash("urn:epc:id:sgtin:0614141.812345.2", one.expose())
        );
        assert_eq!(format!("{one:?}"), "OneTimeSecret([secret elided])");
    }
}
