//! The wardseal hospital CA: issues, renews and revokes the X.509 certificates that give
//! every device, collector, storage server, clinician, patient card and administrator its
//! wardseal identity; publishes CRLs; keeps an inventory and a hash-chained audit log.
//!
//! # Design
//!
//! - A CA is a directory ([`ca`]): an offline root, an issuing CA (path length 0) whose key
//!   is an encrypted PKCS#8 file ([`key`]) or stays on a PKCS#11 token ([`token`], through
//!   wardseal-card: EC P-256 or P-384), and a
//!   SQLite database ([`inventory`]) written only in `BEGIN IMMEDIATE` transactions, so
//!   several processes can issue at once.
//! - Certificates are built from a [`profile::Profile`] per role, never from what a CSR
//!   asks for: [`csr`] verifies the request's signature and keeps only its public key. The
//!   identity extension of `wardseal-core` is always added, non-critical; devices also get
//!   their EPC as a `urn:epc:id:sgtin:` SAN URI. Serials have 126 random bits ([`serial`]).
//! - Signing goes through one seam, [`signer::CaSigner`], whatever holds the key; rcgen
//!   writes the certificates and CRLs ([`crl`]); x509-parser checks them back ([`verify`],
//!   [`describe`]) independently of rcgen.
//! - Subject keys ([`key::KeyAlgorithm`]) are EC P-256 or P-384, RSA, Ed25519, or DSA
//!   2048/256. rcgen cannot write DSA keys: [`public_key`] lets rcgen build the certificate
//!   around a placeholder and splices the DSA SubjectPublicKeyInfo in before the CA signs.
//! - [`batch`] onboards a fleet all or nothing; [`serve`] publishes CRLs over HTTP;
//!   [`audit`] chains every operation's record to the previous one.
//! - [`est`] serves EST (RFC 7030): devices pre-registered in the inventory enroll with a
//!   one-time secret or a manufacturer certificate, certificates renew themselves; every
//!   enrollment and refusal is audited. [`root`] keeps the root key in its own directory
//!   and signs issuing CAs and the root CRL in a ceremony, so every level has a CRL.
//! - [`card`] enrolls patients' cards (key generated on the card, CSR, `patient`
//!   certificate written back), lists tokens and readers, and signs and verifies files
//!   with card keys, all through wardseal-card.
//! - One error type, [`Error`], with a sub-enum per domain; messages say what to do.
//!
//! # Example
//!
//! ```
//! use wardseal_core::identity::{GroupId, Identity, RuleId};
//! use wardseal_pki::ca::{Ca, InitOptions, Secrets, SubjectKey};
//! use wardseal_pki::key::{KeyAlgorithm, SecretSource};
//! use wardseal_pki::profile::Request;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let temp = tempfile::tempdir()?;
//! std::fs::write(temp.path().join("passphrase"), "correct horse battery staple")?;
//! let secrets = Secrets {
//!     passphrase: Some(SecretSource::File(temp.path().join("passphrase"))),
//!     pin: None,
//! };
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let mut options = InitOptions::new(temp.path().join("ca"), "St Example Hospital");
//!     options.crl_url = Some("http://crl.hospital.example/issuing.crl".into());
//!     let ca = Ca::init(&options, &secrets, "it-admin").await?;
//!
//!     let epc = "urn:epc:tag:sgtin-96:3.0614141.812345.6789".parse()?;
//!     let mut request = Request::new(Identity::device(epc, GroupId(3), RuleId(128)));
//!     request.ward = Some("ward-7".into());
//!     let key = SubjectKey::Generate {
//!         algorithm: KeyAlgorithm::EcdsaP256,
//!         path: temp.path().join("monitor.key"),
//!     };
//!     let issued = ca.unlock(&secrets)?.issue(&request, &key, "it-admin").await?;
//!
//!     let verified = ca.verify(issued.pem.as_bytes(), None, time::OffsetDateTime::now_utc())?;
//!     let identity = verified.certificate.identity.ok_or("no identity")?;
//!     assert_eq!(identity.epc.as_deref(), Some("urn:epc:id:sgtin:0614141.812345.6789"));
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```

pub mod audit;
pub mod batch;
pub mod ca;
pub mod card;
pub mod crl;
pub mod csr;
pub mod describe;
mod error;
pub mod est;
pub mod inventory;
pub mod key;
pub mod profile;
pub mod public_key;
pub mod root;
pub mod serial;
pub mod serve;
pub mod signer;
pub mod token;
pub mod verify;

pub use error::{
    AuditError, BatchError, CaError, Cause, CsrError, Error, EstError, InventoryError, KeyError,
    ProfileError, RootError, RowError, TokenError, VerifyError,
};
