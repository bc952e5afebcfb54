//! The authority registry (seed 2's layer 2) on the embedded chain and on anvil: only
//! registrars register, bind and deactivate organisations; only the patient grants and
//! revokes, per organisation; the replica built from events decides as the contract's
//! state says.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failure is a failing test"
)]

mod common;

use common::{address, signer};
use wardseal_contracts::{
    AuthorityDecision, Backend, ContractError, Error, EventFollower, Ledger, LedgerEvent,
    Organisation, Replica, Role,
};
use wardseal_core::identity::AuthorityKind;

fn contract_error<T: std::fmt::Debug>(result: Result<T, Error>) -> ContractError {
    match result {
        Err(Error::Contract(error)) => error,
        other => panic!("expected a contract error, got {other:?}"),
    }
}

async fn registrar_registers_binds_and_deactivates<B: Backend + Clone>(admin: &Ledger<B>) {
    let other = admin.with_signer(signer(1));
    // Not an authority registrar: refused with AccessControl's error.
    assert!(matches!(
        contract_error(
            other
                .register_authority("lab-a", AuthorityKind::Laboratory)
                .await
        ),
        ContractError::Unauthorized { .. }
    ));
    admin
        .register_authority("lab-a", AuthorityKind::Laboratory)
        .await
        .unwrap();
    assert_eq!(
        contract_error(
            admin
                .register_authority("lab-a", AuthorityKind::Insurer)
                .await
        ),
        ContractError::AuthorityAlreadyRegistered("lab-a".into())
    );
    assert_eq!(
        contract_error(admin.register_authority("", AuthorityKind::Pharmacy).await),
        ContractError::InvalidAuthorityId
    );
    assert_eq!(
        contract_error(
            admin
                .register_authority(&"x".repeat(65), AuthorityKind::Pharmacy)
                .await
        ),
        ContractError::InvalidAuthorityId
    );
    assert_eq!(
        contract_error(admin.bind_authority_subject("lab-b-1", "lab-b").await),
        ContractError::UnknownAuthority("lab-b".into())
    );
    admin
        .bind_authority_subject("lab-a-frontdesk", "lab-a")
        .await
        .unwrap();
    assert!(matches!(
        contract_error(other.bind_authority_subject("lab-a-2", "lab-a").await),
        ContractError::Unauthorized { .. }
    ));
    admin
        .register_authority("insurer-z", AuthorityKind::Insurer)
        .await
        .unwrap();
    assert_eq!(
        contract_error(
            admin
                .bind_authority_subject("lab-a-frontdesk", "insurer-z")
                .await
        ),
        ContractError::SubjectAlreadyBound {
            subject: "lab-a-frontdesk".into(),
            organisation: "lab-a".into()
        }
    );
    assert_eq!(
        admin
            .authority_of_subject("lab-a-frontdesk")
            .await
            .unwrap()
            .as_deref(),
        Some("lab-a")
    );
    assert_eq!(admin.authority_of_subject("nobody").await.unwrap(), None);
    assert_eq!(
        contract_error(admin.unbind_authority_subject("nobody").await),
        ContractError::UnknownAuthoritySubject("nobody".into())
    );

    admin.set_authority_active("lab-a", false).await.unwrap();
    assert_eq!(
        contract_error(admin.set_authority_active("lab-a", false).await),
        ContractError::AuthorityActiveAlready {
            organisation: "lab-a".into(),
            active: false
        }
    );
    assert!(matches!(
        contract_error(other.set_authority_active("lab-a", true).await),
        ContractError::Unauthorized { .. }
    ));
    assert_eq!(
        admin.authority("lab-a").await.unwrap(),
        Some(Organisation {
            id: "lab-a".into(),
            kind: AuthorityKind::Laboratory,
            active: false
        })
    );
    assert_eq!(admin.authority("lab-zz").await.unwrap(), None);
    let all = admin.authorities().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["lab-a", "insurer-z"]);

    // A registrar role of its own: the device registrar's does not count here.
    admin
        .grant_role(Role::AuthorityRegistrar, address(1))
        .await
        .unwrap();
    assert!(
        admin
            .has_role(Role::AuthorityRegistrar, address(1))
            .await
            .unwrap()
    );
    assert!(!admin.has_role(Role::Registrar, address(1)).await.unwrap());
    other.set_authority_active("lab-a", true).await.unwrap();
}

async fn only_the_patient_grants_and_revokes_per_organisation<B: Backend + Clone>(
    admin: &Ledger<B>,
) {
    let patient = address(2);
    let patient_ledger = admin.with_signer(signer(2));
    admin
        .register_authority("pharmacy-3", AuthorityKind::Pharmacy)
        .await
        .unwrap();
    admin
        .bind_authority_subject("pharmacy-3-2026", "pharmacy-3")
        .await
        .unwrap();
    assert_eq!(
        contract_error(patient_ledger.grant_authority_access("unknown-org").await),
        ContractError::UnknownAuthority("unknown-org".into())
    );
    patient_ledger
        .grant_authority_access("pharmacy-3")
        .await
        .unwrap();
    assert!(admin.authority_access(patient, "pharmacy-3").await.unwrap());
    assert!(
        !admin
            .authority_access(address(3), "pharmacy-3")
            .await
            .unwrap()
    );
    assert_eq!(
        contract_error(patient_ledger.grant_authority_access("pharmacy-3").await),
        ContractError::AuthorityAccessAlreadyGranted {
            patient,
            organisation: "pharmacy-3".into()
        }
    );
    // The admin (a registrar) cannot revoke for the patient: a revoke from another
    // account is that account's own consent, which it never gave.
    assert_eq!(
        contract_error(admin.revoke_authority_access("pharmacy-3").await),
        ContractError::AuthorityAccessNotGranted {
            patient: address(0),
            organisation: "pharmacy-3".into()
        }
    );
    assert!(admin.authority_access(patient, "pharmacy-3").await.unwrap());

    // A renewed certificate with a new subject, bound to the same organisation, keeps the
    // consent; the old subject, unbound, loses it.
    admin
        .bind_authority_subject("pharmacy-3-2027", "pharmacy-3")
        .await
        .unwrap();
    admin
        .unbind_authority_subject("pharmacy-3-2026")
        .await
        .unwrap();
    let book = admin.authority_book().await.unwrap();
    assert_eq!(
        book.decide("pharmacy-3-2027", patient),
        AuthorityDecision::Allowed {
            organisation: "pharmacy-3".into()
        }
    );
    assert_eq!(
        book.decide("pharmacy-3-2026", patient),
        AuthorityDecision::UnknownSubject
    );
    assert_eq!(
        book.decide("pharmacy-3-2027", address(3)).code(),
        "no_consent"
    );

    patient_ledger
        .revoke_authority_access("pharmacy-3")
        .await
        .unwrap();
    assert!(!admin.authority_access(patient, "pharmacy-3").await.unwrap());
    assert_eq!(
        admin
            .authority_book()
            .await
            .unwrap()
            .decide("pharmacy-3-2027", patient)
            .code(),
        "no_consent"
    );
}

/// A replica bootstrapped before the changes and following events agrees with one built
/// afterwards from the chain, and the events arrive decoded.
async fn replica_follows_the_registry<B: Backend + Clone>(admin: &Ledger<B>) {
    let patient = address(2);
    let patient_ledger = admin.with_signer(signer(2));
    admin
        .register_authority("hospital-north", AuthorityKind::Hospital)
        .await
        .unwrap();
    let (mut replica, mut follower): (Replica, EventFollower<B>) =
        Replica::bootstrap(admin).await.unwrap();
    assert_eq!(
        replica
            .authorities()
            .organisation("hospital-north")
            .map(|o| o.kind),
        Some(AuthorityKind::Hospital)
    );
    admin
        .bind_authority_subject("north-records", "hospital-north")
        .await
        .unwrap();
    patient_ledger
        .grant_authority_access("hospital-north")
        .await
        .unwrap();
    let events = follower.poll().await.unwrap();
    for event in &events {
        replica.apply(&event.event);
    }
    assert!(events.iter().any(|e| e.event
        == LedgerEvent::AccessGranted {
            patient,
            organisation: "hospital-north".into()
        }));
    assert_eq!(
        replica
            .authorities()
            .decide("north-records", patient)
            .code(),
        "consent"
    );
    admin
        .set_authority_active("hospital-north", false)
        .await
        .unwrap();
    for event in follower.poll().await.unwrap() {
        replica.apply(&event.event);
    }
    assert_eq!(
        replica.authorities().decide("north-records", patient),
        AuthorityDecision::Inactive {
            organisation: "hospital-north".into()
        }
    );
    assert_eq!(
        replica.authorities(),
        &admin.authority_book().await.unwrap(),
        "followed and rebuilt replicas agree"
    );
}

macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::common::embedded().await;
                    super::$name(&fixture.ledger).await;
                }
            )*
        }
        mod anvil {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::common::anvil().await;
                    super::$name(&fixture.ledger).await;
                }
            )*
        }
    };
}

per_backend!(
    registrar_registers_binds_and_deactivates,
    only_the_patient_grants_and_revokes_per_organisation,
    replica_follows_the_registry,
);
