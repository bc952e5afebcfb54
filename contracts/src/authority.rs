//! Seed 2's layer 2 on chain: the authority registry (laboratories, insurers, pharmacies,
//! other hospitals) and each patient's consent to them, as the `AuthorityRegistry`
//! contract holds them.
//!
//! A registrar ([`crate::Role::AuthorityRegistrar`]) registers an organisation with its
//! [`AuthorityKind`], binds the subject ids of the organisation's certificates to it, and
//! deactivates or reactivates it. Only the patient's own account grants or revokes an
//! organisation's access, and consent is given to the organisation, not to a certificate:
//! a renewed certificate, or another certificate bound to the same organisation, keeps it.
//!
//! [`AuthorityBook`] is the native replica storage decides reads with: it is built by
//! replaying the registry's events from the suite's deployment ([`Ledger::authority_book`],
//! or as part of [`crate::Replica::bootstrap`]) and then follows them
//! ([`AuthorityBook::apply`]), so a revocation mined in a block counts for the next read
//! after that block. [`AuthorityBook::decide`] gives one [`AuthorityDecision`] with a
//! stable code per refusal.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use wardseal_core::identity::AuthorityKind;

use crate::backend::Backend;
use crate::bindings::AuthorityRegistry;
use crate::error::Error;
use crate::ledger::{Ledger, decode_event};
use crate::model::{LedgerEvent, TxOutcome};

/// The most blocks asked for in one `eth_getLogs` while replaying (nodes cap the range).
const MAX_BLOCK_RANGE: u64 = 5_000;

/// A registered authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    /// Its id (1 to 64 bytes, as the subject ids of the identity extension).
    pub id: String,
    /// What kind of organisation it is.
    pub kind: AuthorityKind,
    /// Whether it may read (a deactivated organisation keeps its bindings and consents).
    pub active: bool,
}

/// What the registry and the patient's consent say about a read by an authority
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum AuthorityDecision {
    /// The certificate's organisation is active and has the patient's consent.
    Allowed {
        /// The organisation.
        organisation: String,
    },
    /// No organisation has the certificate's subject id bound.
    UnknownSubject,
    /// The certificate's organisation is deactivated.
    Inactive {
        /// The organisation.
        organisation: String,
    },
    /// The patient has not granted the organisation access (or revoked it).
    NoConsent {
        /// The organisation.
        organisation: String,
    },
}

impl AuthorityDecision {
    /// The stable code of the decision: `consent` when allowed, else the refusal's code
    /// (`authority_unknown`, `authority_inactive`, `no_consent`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Allowed { .. } => "consent",
            Self::UnknownSubject => "authority_unknown",
            Self::Inactive { .. } => "authority_inactive",
            Self::NoConsent { .. } => "no_consent",
        }
    }

    /// The organisation the certificate acts for, if it is bound to one.
    pub fn organisation(&self) -> Option<&str> {
        match self {
            Self::Allowed { organisation }
            | Self::Inactive { organisation }
            | Self::NoConsent { organisation } => Some(organisation),
            Self::UnknownSubject => None,
        }
    }
}

/// The registry's organisations, subject bindings and consents, as of the events applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityBook {
    organisations: BTreeMap<String, Organisation>,
    subjects: HashMap<String, String>,
    granted: HashSet<(Address, String)>,
}

impl AuthorityBook {
    /// Applies one event of the registry (other events leave the book as it is). Every
    /// change is a set or a removal, so applying an event twice is harmless.
    pub fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::OrganisationRegistered { organisation, kind } => {
                self.organisations.insert(
                    organisation.clone(),
                    Organisation {
                        id: organisation.clone(),
                        kind: *kind,
                        active: true,
                    },
                );
            }
            LedgerEvent::OrganisationActiveSet {
                organisation,
                active,
            } => {
                if let Some(entry) = self.organisations.get_mut(organisation) {
                    entry.active = *active;
                }
            }
            LedgerEvent::SubjectBound {
                subject,
                organisation,
            } => {
                self.subjects.insert(subject.clone(), organisation.clone());
            }
            LedgerEvent::SubjectUnbound { subject, .. } => {
                self.subjects.remove(subject);
            }
            LedgerEvent::AccessGranted {
                patient,
                organisation,
            } => {
                self.granted.insert((*patient, organisation.clone()));
            }
            LedgerEvent::AccessRevoked {
                patient,
                organisation,
            } => {
                self.granted.remove(&(*patient, organisation.clone()));
            }
            _ => {}
        }
    }

    /// The decision for a read of the records of the patient with account `patient` by a
    /// certificate with subject id `subject`. Checks run in this order: the subject is
    /// bound, its organisation is active, the patient granted it access.
    pub fn decide(&self, subject: &str, patient: Address) -> AuthorityDecision {
        let Some(organisation) = self.subjects.get(subject) else {
            return AuthorityDecision::UnknownSubject;
        };
        let organisation = organisation.clone();
        if !self
            .organisations
            .get(&organisation)
            .is_some_and(|entry| entry.active)
        {
            return AuthorityDecision::Inactive { organisation };
        }
        if self.granted.contains(&(patient, organisation.clone())) {
            AuthorityDecision::Allowed { organisation }
        } else {
            AuthorityDecision::NoConsent { organisation }
        }
    }

    /// The organisation `subject` acts for, if bound.
    pub fn organisation_of(&self, subject: &str) -> Option<&Organisation> {
        self.subjects
            .get(subject)
            .and_then(|id| self.organisations.get(id))
    }

    /// Organisation `id`, if registered.
    pub fn organisation(&self, id: &str) -> Option<&Organisation> {
        self.organisations.get(id)
    }

    /// Every registered organisation, by id.
    pub fn organisations(&self) -> impl Iterator<Item = &Organisation> {
        self.organisations.values()
    }

    /// The subject ids bound to organisation `id`, sorted.
    pub fn subjects_of(&self, id: &str) -> Vec<&str> {
        let mut subjects: Vec<&str> = self
            .subjects
            .iter()
            .filter(|(_, organisation)| organisation.as_str() == id)
            .map(|(subject, _)| subject.as_str())
            .collect();
        subjects.sort_unstable();
        subjects
    }

    /// Whether the patient with account `patient` granted organisation `id` access.
    pub fn granted(&self, patient: Address, id: &str) -> bool {
        self.granted.contains(&(patient, id.to_owned()))
    }

    /// The organisations the patient with account `patient` has granted access (and not
    /// revoked), by id, whether active or not: what a FHIR `Consent` mirror shows.
    pub fn grants_of(&self, patient: Address) -> Vec<&Organisation> {
        self.organisations
            .values()
            .filter(|organisation| self.granted.contains(&(patient, organisation.id.clone())))
            .collect()
    }
}

impl<B: Backend> Ledger<B> {
    /// Registers authority `organisation`, active, as a `kind` (authority registrars
    /// only; an id registers once).
    pub async fn register_authority(
        &self,
        organisation: &str,
        kind: AuthorityKind,
    ) -> Result<TxOutcome, Error> {
        let call = AuthorityRegistry::registerCall {
            organisation: organisation.to_owned(),
            kind: kind.code(),
        };
        Ok(self
            .send(self.suite().authority_registry, call)
            .await?
            .outcome)
    }

    /// Deactivates (`active` false) or reactivates authority `organisation`.
    pub async fn set_authority_active(
        &self,
        organisation: &str,
        active: bool,
    ) -> Result<TxOutcome, Error> {
        let call = AuthorityRegistry::setActiveCall {
            organisation: organisation.to_owned(),
            active,
        };
        Ok(self
            .send(self.suite().authority_registry, call)
            .await?
            .outcome)
    }

    /// Binds certificate subject id `subject` to authority `organisation`.
    pub async fn bind_authority_subject(
        &self,
        subject: &str,
        organisation: &str,
    ) -> Result<TxOutcome, Error> {
        let call = AuthorityRegistry::bindSubjectCall {
            subject: subject.to_owned(),
            organisation: organisation.to_owned(),
        };
        Ok(self
            .send(self.suite().authority_registry, call)
            .await?
            .outcome)
    }

    /// Unbinds certificate subject id `subject` from its authority.
    pub async fn unbind_authority_subject(&self, subject: &str) -> Result<TxOutcome, Error> {
        let call = AuthorityRegistry::unbindSubjectCall {
            subject: subject.to_owned(),
        };
        Ok(self
            .send(self.suite().authority_registry, call)
            .await?
            .outcome)
    }

    /// The patient (this ledger's account) allows authority `organisation` to read their
    /// records.
    pub async fn grant_authority_access(&self, organisation: &str) -> Result<TxOutcome, Error> {
        let call = AuthorityRegistry::grantCall {
            organisation: organisation.to_owned(),
        };
        Ok(self
            .send(self.suite().authority_registry, call)
            .await?
            .outcome)
    }

    /// The patient (this ledger's account) withdraws authority `organisation`'s access.
    pub async fn revoke_authority_access(&self, organisation: &str) -> Result<TxOutcome, Error> {
        let call = AuthorityRegistry::revokeCall {
            organisation: organisation.to_owned(),
        };
        Ok(self
            .send(self.suite().authority_registry, call)
            .await?
            .outcome)
    }

    /// Authority `organisation`, if registered.
    pub async fn authority(&self, organisation: &str) -> Result<Option<Organisation>, Error> {
        let answer = self
            .read(
                self.suite().authority_registry,
                AuthorityRegistry::organisationOfCall {
                    organisation: organisation.to_owned(),
                },
                "organisationOf",
            )
            .await?;
        if !answer.registered {
            return Ok(None);
        }
        let kind =
            AuthorityKind::from_code(u32::from(answer.kind)).ok_or(Error::UnexpectedAnswer {
                what: "an authority kind",
            })?;
        Ok(Some(Organisation {
            id: organisation.to_owned(),
            kind,
            active: answer.active,
        }))
    }

    /// The authority certificate subject id `subject` acts for, if bound.
    pub async fn authority_of_subject(&self, subject: &str) -> Result<Option<String>, Error> {
        let organisation = self
            .read(
                self.suite().authority_registry,
                AuthorityRegistry::subjectOrganisationCall {
                    subject: subject.to_owned(),
                },
                "subjectOrganisation",
            )
            .await?;
        Ok((!organisation.is_empty()).then_some(organisation))
    }

    /// Whether the patient with account `patient` allows authority `organisation`.
    pub async fn authority_access(
        &self,
        patient: Address,
        organisation: &str,
    ) -> Result<bool, Error> {
        self.read(
            self.suite().authority_registry,
            AuthorityRegistry::grantedCall {
                patient,
                organisation: organisation.to_owned(),
            },
            "granted",
        )
        .await
    }

    /// Every registered authority, in registration order.
    pub async fn authorities(&self) -> Result<Vec<Organisation>, Error> {
        let count = self
            .read_count(
                self.suite().authority_registry,
                AuthorityRegistry::organisationCountCall {},
                "organisationCount",
            )
            .await?;
        let mut out = Vec::new();
        for index in 0..count {
            let id = self
                .read(
                    self.suite().authority_registry,
                    AuthorityRegistry::organisationAtCall {
                        index: alloy::primitives::U256::from(index),
                    },
                    "organisationAt",
                )
                .await?;
            if let Some(organisation) = self.authority(&id).await? {
                out.push(organisation);
            }
        }
        Ok(out)
    }

    /// The registry as of block `to`: its events from the suite's deployment replayed.
    /// A suite without a registry (written before it existed) gives an empty book.
    pub async fn authority_book_until(&self, to: u64) -> Result<AuthorityBook, Error> {
        let mut book = AuthorityBook::default();
        let registry = self.suite().authority_registry;
        if registry == Address::ZERO {
            return Ok(book);
        }
        let mut from = self.suite().deployed_at;
        while from <= to {
            let end = to.min(from.saturating_add(MAX_BLOCK_RANGE - 1));
            for log in self.backend().logs(&[registry], from, end).await? {
                if let Some(event) = decode_event(&log)? {
                    book.apply(&event.event);
                }
            }
            from = end.saturating_add(1);
        }
        Ok(book)
    }

    /// The registry as of the chain's head.
    pub async fn authority_book(&self) -> Result<AuthorityBook, Error> {
        let head = self.head().await?;
        self.authority_book_until(head).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(book: &mut AuthorityBook, id: &str, subject: &str) {
        book.apply(&LedgerEvent::OrganisationRegistered {
            organisation: id.into(),
            kind: AuthorityKind::Laboratory,
        });
        book.apply(&LedgerEvent::SubjectBound {
            subject: subject.into(),
            organisation: id.into(),
        });
    }

    #[test]
    fn decisions_follow_binding_activity_and_consent_in_that_order() {
        let patient = Address::repeat_byte(7);
        let mut book = AuthorityBook::default();
        assert_eq!(
            book.decide("lab-a-1", patient),
            AuthorityDecision::UnknownSubject
        );
        registered(&mut book, "lab-a", "lab-a-1");
        assert_eq!(book.decide("lab-a-1", patient).code(), "no_consent");
        book.apply(&LedgerEvent::AccessGranted {
            patient,
            organisation: "lab-a".into(),
        });
        assert_eq!(
            book.decide("lab-a-1", patient),
            AuthorityDecision::Allowed {
                organisation: "lab-a".into()
            }
        );
        // Another patient's consent is theirs alone.
        assert_eq!(
            book.decide("lab-a-1", Address::repeat_byte(8)).code(),
            "no_consent"
        );
        // A second certificate of the same organisation keeps the consent.
        book.apply(&LedgerEvent::SubjectBound {
            subject: "lab-a-2".into(),
            organisation: "lab-a".into(),
        });
        assert_eq!(book.decide("lab-a-2", patient).code(), "consent");
        assert_eq!(book.subjects_of("lab-a"), ["lab-a-1", "lab-a-2"]);
        let ids: Vec<&str> = book
            .grants_of(patient)
            .iter()
            .map(|o| o.id.as_str())
            .collect();
        assert_eq!(ids, ["lab-a"]);
        assert!(book.grants_of(Address::repeat_byte(8)).is_empty());
        book.apply(&LedgerEvent::OrganisationActiveSet {
            organisation: "lab-a".into(),
            active: false,
        });
        assert_eq!(book.decide("lab-a-1", patient).code(), "authority_inactive");
        book.apply(&LedgerEvent::OrganisationActiveSet {
            organisation: "lab-a".into(),
            active: true,
        });
        let revoked = LedgerEvent::AccessRevoked {
            patient,
            organisation: "lab-a".into(),
        };
        book.apply(&revoked);
        book.apply(&revoked);
        assert_eq!(book.decide("lab-a-1", patient).code(), "no_consent");
        assert!(book.grants_of(patient).is_empty());
        book.apply(&LedgerEvent::SubjectUnbound {
            subject: "lab-a-1".into(),
            organisation: "lab-a".into(),
        });
        assert_eq!(book.decide("lab-a-1", patient).code(), "authority_unknown");
    }
}
