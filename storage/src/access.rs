//! Access control for patient data and the anchored access log.
//!
//! A staff member may read a patient's data when assigned to the patient (and the patient
//! is admitted), or when the patient has granted consent on chain to the account recorded
//! for the staff member (`POST /v1/admin/staff-accounts`). A patient's own card
//! certificate (role patient) reads that patient's records and no one else's.
//!
//! An authority (seed 2's layer 2: a laboratory, insurer, pharmacy or other hospital,
//! [`Role::Authority`]) may read when the subject id of its certificate is bound in the
//! on-chain authority registry to an organisation that is active and that the patient's
//! own account has granted access ([`authorize_authority`]). The registry and the
//! consents are read from the chain replica, synced with the chain's head before every
//! decision, so a revocation counts from the next read after its block. Each refusal has
//! its own code ([`AuthorityRefusal::code`]).
//!
//! Every decision, allowed or not, is written to the access log; [`anchor`] anchors the
//! Merkle root of the entries not yet anchored through the `Ledger` (the server does so
//! periodically).

use wardseal_contracts::AuthorityDecision;
use wardseal_core::identity::Role;
use wardseal_core::merkle;
use wardseal_net::peer::PeerIdentity;

use crate::api::Storage;
use crate::error::{AccessRefusal, Error};
use crate::metrics::AnchoredLog;

/// Why an authority may not read a patient's records. [`AuthorityRefusal::code`] is the
/// stable code on the wire and the reason in the access log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityRefusal {
    /// No organisation in the authority registry has the certificate's subject id bound.
    #[error(
        "authority certificate {subject} is bound to no organisation in the authority registry; \
         a registrar binds it with `wardseal-ledger authority bind`"
    )]
    Unknown {
        /// The certificate's subject id.
        subject: String,
    },
    /// The certificate's organisation is deactivated in the registry.
    #[error("authority {organisation} is deactivated in the authority registry")]
    Inactive {
        /// The organisation.
        organisation: String,
    },
    /// The patient has not granted the organisation access on chain, or revoked it.
    #[error("patient {patient} has not granted authority {organisation} access on chain")]
    NoConsent {
        /// The organisation.
        organisation: String,
        /// The patient.
        patient: String,
    },
    /// Storage knows no account for the patient, so no on-chain consent can be theirs.
    #[error(
        "patient {patient} has no account recorded at storage, so no on-chain consent can \
         be found (an admin records it with the admission)"
    )]
    PatientAccountUnknown {
        /// The patient.
        patient: String,
    },
}

impl AuthorityRefusal {
    /// The stable code: `authority_unknown`, `authority_inactive`, `no_consent`,
    /// `patient_account_unknown`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "authority_unknown",
            Self::Inactive { .. } => "authority_inactive",
            Self::NoConsent { .. } => "no_consent",
            Self::PatientAccountUnknown { .. } => "patient_account_unknown",
        }
    }
}

/// Allows or refuses `peer` reading `patient`'s data, and logs it: an authority
/// certificate by [`authorize_authority`], a patient's card certificate for their own
/// records only, staff by assignment or consent to their recorded account.
pub async fn authorize(
    storage: &Storage,
    peer: &PeerIdentity,
    patient: &str,
    what: &str,
) -> Result<(), Error> {
    if peer.role() == Role::Authority {
        return authorize_authority(storage, peer, patient, what)
            .await
            .map(drop);
    }
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

/// Allows or refuses an authority certificate reading (or writing a visit into)
/// `patient`'s records, logs the decision with its code as the reason, and returns the
/// organisation the certificate acts for.
pub async fn authorize_authority(
    storage: &Storage,
    peer: &PeerIdentity,
    patient: &str,
    what: &str,
) -> Result<String, Error> {
    let subject = peer
        .identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .ok_or(Error::Access(AccessRefusal::NoSubject))?;
    let decision = match storage.store.patient_account(patient).await? {
        Some(account) => Ok(storage.chain.authority_decision(&subject, account).await?),
        None => Err(AuthorityRefusal::PatientAccountUnknown {
            patient: patient.to_owned(),
        }),
    };
    let outcome = match decision {
        Ok(AuthorityDecision::Allowed { organisation }) => Ok(organisation),
        Ok(AuthorityDecision::UnknownSubject) => Err(AuthorityRefusal::Unknown {
            subject: subject.clone(),
        }),
        Ok(AuthorityDecision::Inactive { organisation }) => {
            Err(AuthorityRefusal::Inactive { organisation })
        }
        Ok(AuthorityDecision::NoConsent { organisation }) => Err(AuthorityRefusal::NoConsent {
            organisation,
            patient: patient.to_owned(),
        }),
        Err(refusal) => Err(refusal),
    };
    let reason = match &outcome {
        Ok(_) => "consent",
        Err(refusal) => refusal.code(),
    };
    storage
        .store
        .log_access(
            &subject,
            Role::Authority.name(),
            patient,
            what,
            outcome.is_ok(),
            reason,
        )
        .await?;
    storage.metrics.data_read(outcome.is_ok());
    outcome.map_err(|refusal| Error::Access(AccessRefusal::Authority(refusal)))
}

/// Whether `patient` has granted `staff`'s recorded account consent on chain (the
/// Consent contract).
pub(crate) async fn consented(
    storage: &Storage,
    staff: &str,
    patient: &str,
) -> Result<bool, Error> {
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
