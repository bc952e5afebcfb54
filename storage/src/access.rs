//! Access control for patient data and the anchored access log.
//!
//! A staff member may read a patient's data when assigned to the patient (and the patient
//! is admitted), or when the patient has granted consent on chain to the account recorded
//! for the staff member (`POST /v1/admin/staff-accounts`). A patient's own card
//! certificate (role patient) reads that patient's records and no one else's. Every decision, allowed or not,
//! is written to the access log; [`anchor`] anchors the Merkle root of the entries not yet
//! anchored through the `Ledger` (the server does so periodically).

use wardseal_core::merkle;
use wardseal_net::peer::PeerIdentity;

use crate::api::Storage;
use crate::error::{AccessRefusal, Error};
use crate::metrics::AnchoredLog;

/// Allows or refuses `peer` (a staff certificate, or a patient's card certificate for
/// their own records) reading `patient`'s data, and logs it.
pub async fn authorize(
    storage: &Storage,
    peer: &PeerIdentity,
    patient: &str,
    what: &str,
) -> Result<(), Error> {
    let staff = peer
        .identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .ok_or(Error::Access(AccessRefusal::NoSubject))?;
    if peer.role() == wardseal_core::identity::Role::Patient {
        return own_record(storage, &staff, patient, what).await;
    }
    let reason = if storage.store.staff_assigned(&staff, patient).await? {
        Some("assigned")
    } else if consented(storage, &staff, patient).await? {
        Some("consent")
    } else {
        None
    };
    let role = peer.role().name();
    match reason {
        Some(reason) => {
            storage
                .store
                .log_access(&staff, role, patient, what, true, reason)
                .await?;
            storage.metrics.data_read(true);
            Ok(())
        }
        None => {
            let refusal = AccessRefusal::NotResponsible {
                staff: staff.clone(),
                patient: patient.to_owned(),
            };
            storage
                .store
                .log_access(&staff, role, patient, what, false, "not_responsible")
                .await?;
            storage.metrics.data_read(false);
            Err(refusal.into())
        }
    }
}

/// A patient's card certificate reads the records of that patient and no other.
async fn own_record(
    storage: &Storage,
    reader: &str,
    patient: &str,
    what: &str,
) -> Result<(), Error> {
    let own = reader == patient;
    let reason = if own { "own_record" } else { "not_own_record" };
    storage
        .store
        .log_access(reader, "patient", patient, what, own, reason)
        .await?;
    storage.metrics.data_read(own);
    if own {
        Ok(())
    } else {
        Err(AccessRefusal::NotOwnRecord {
            reader: reader.to_owned(),
            patient: patient.to_owned(),
        }
        .into())
    }
}

async fn consented(storage: &Storage, staff: &str, patient: &str) -> Result<bool, Error> {
    let Some(authority) = storage.store.staff_account(staff).await? else {
        return Ok(false);
    };
    let Some((_, Some(account))) = storage.store.admission(patient).await? else {
        return Ok(false);
    };
    let (Ok(authority), Ok(account)) = (
        <[u8; 20]>::try_from(authority.as_slice()),
        <[u8; 20]>::try_from(account.as_slice()),
    ) else {
        return Ok(false);
    };
    storage.chain.consent(account, authority).await
}

/// Anchors the entries not yet anchored; returns the root and count, or `None` when there
/// was nothing new.
pub async fn anchor(storage: &Storage) -> Result<Option<(wardseal_core::hash::Hash, u64)>, Error> {
    let _anchoring = storage.chain.anchoring().await;
    let first = storage.store.first_unanchored().await?;
    let entries = storage.store.access_log(None, first).await?;
    let (Some(first_entry), Some(last_entry)) = (entries.first(), entries.last()) else {
        return Ok(None);
    };
    let leaves = entries
        .iter()
        .map(crate::store::AccessEntry::leaf_hash)
        .collect::<Vec<_>>();
    let root = merkle::root(&leaves);
    let count = u64::try_from(leaves.len()).unwrap_or_default();
    storage
        .chain
        .anchor(*root.as_bytes(), count, first_entry.at, last_entry.at)
        .await?;
    storage
        .store
        .record_anchor(first_entry.entry, last_entry.entry, &root)
        .await?;
    storage.metrics.anchored(AnchoredLog::Access);
    Ok(Some((root, count)))
}
