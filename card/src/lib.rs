//! wardseal-card: the keys that sign patient data, and the cards they live on.
//!
//! # Design
//!
//! Everything that signs goes through one trait, [`Signer`]: sign a SHA-256 digest, say
//! which [`SignatureAlgorithm`] (and encoding) the signature has, and give the public key
//! and, when known, the certificate. The collector signs batch-header hashes with it, the
//! CA signs certificates with it (through [`RcgenKey`]), the CLI signs files with it.
//!
//! - [`Pkcs11Signer`] — a key on a PKCS#11 token: a patient smart card through OpenSC,
//!   or SoftHSM standing in for one. The module is loaded and initialised once per process
//!   ([`pkcs11::Module`], `CKF_OS_LOCKING_OK`) and never finalised; sessions come from a
//!   pool, one per concurrent caller, and are closed one at a time. That is what keeps
//!   SoftHSM 2.6.1 from crashing (parallel `C_Initialize`, concurrent `C_CloseSession`,
//!   `C_Finalize` under a live session). Tokens are chosen by label, serial or RFC 7512
//!   `pkcs11:` URI — never by slot number — and keys by CKA_ID or label. ECDSA P-256 is
//!   `CKM_ECDSA` over a software SHA-256 (SoftHSM 2.6 has no `CKM_ECDSA_SHA256`), returned
//!   as DER or raw `r‖s`; RSA is PSS (SHA-256, MGF1-SHA-256, 32-byte salt).
//! - Keys marked `CKA_ALWAYS_AUTHENTICATE` (PIV 9C) want the PIN before every signature.
//!   PKCS#11 does that with a context-specific login between `C_SignInit` and the data;
//!   `cryptoki` exposes that only for multi-part mechanisms, so [`Signer::sign_message`]
//!   re-authenticates with `CKM_SHA256_RSA_PKCS_PSS` (or `CKM_ECDSA_SHA256` where the module
//!   has it), and where neither works the error names the token's keys that ask once.
//! - [`SoftwareSigner`] — P-256, RSA, Ed25519 or DSA-2048 keys in encrypted PKCS#8 files
//!   (scrypt + AES-256-CBC, mode 0600), interchangeable with openssl's. The embedded default
//!   when no card is present.
//! - [`CardWatcher`] — PC/SC readers and cards as a tokio stream of [`CardEvent`]s, so a
//!   bedside collector knows when a patient's card is inserted or pulled.
//! - [`Pkcs11X509Key`] — an EC P-256 or P-384 token key as an rcgen `SigningKey`, for a
//!   CA whose keys stay on a token (P-384 is not a batch-header algorithm, so not a `Signer`).
//! - Enrollment ([`Pkcs11Token::enroll`], [`Pkcs11Token::install_certificate`]) — a key
//!   generated on the card, a CSR signed by it, the issued certificate written back.
//!
//! PINs and passphrases are [`Pin`] and [`Passphrase`]: zeroized on drop, `Debug` prints
//! `[secret elided]`, read from a file, an environment variable or the terminal
//! ([`SecretSource`]). Every failure is one [`Error`] variant with a sentence that says
//! what to do: wrong PIN (with what the token says about tries left), PIN locked, token
//! removed, token or key not found (listing what is there), mechanism unsupported,
//! module missing, pcscd not running.
//!
//! # Example
//!
//! ```no_run
//! use wardseal_card::{KeySelector, Pkcs11Config, Pkcs11Signer, SecretSource, Signer, TokenSelector, VerifyingKey};
//! use wardseal_core::hash::Hash;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Pkcs11Config::new(
//!     "/usr/lib/softhsm/libsofthsm2.so",
//!     TokenSelector::Label("patient-0001".into()),
//!     KeySelector::Id(vec![0x9c, 0x01]),
//!     Some(SecretSource::File("/run/wardseal/card.pin".into())),
//! );
//! // Or: Pkcs11Config::from_uri("pkcs11:token=patient-0001;id=%9C%01?module-path=…&pin-source=file:…")
//! let signer = Pkcs11Signer::open(&config)?;
//! let digest = Hash::sha256(b"batch header");
//! let signature = signer.sign_digest(&digest)?; // DER ECDSA P-256
//! if let Some(certificate) = signer.certificate_der() {
//!     VerifyingKey::from_certificate_der(certificate)?.verify_prehashed(signer.algorithm(), digest.as_bytes(), &signature)?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Watching a reader:
//!
//! ```no_run
//! # async fn watch() -> Result<(), wardseal_card::Error> {
//! use wardseal_card::{CardEvent, CardWatcher};
//! let mut watcher = CardWatcher::start()?; // Error::PcscUnavailable if pcscd is down
//! while let Some(event) = std::future::poll_fn(|cx| {
//!     futures_core::Stream::poll_next(std::pin::Pin::new(&mut watcher), cx)
//! })
//! .await
//! {
//!     if let CardEvent::CardInserted { reader, atr } = event? {
//!         eprintln!("card in {reader}: ATR {}", hex::encode(atr));
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod algorithm;
mod error;
pub mod pkcs11;
mod secret;
mod signer;
mod software;
pub mod virtual_card;
pub mod watcher;

pub use algorithm::{EcdsaEncoding, SignatureAlgorithm, ecdsa_p256_raw_to_der};
pub use error::{Error, PinTries};
pub use pkcs11::{
    EcCurve, KeySelector, Pkcs11Config, Pkcs11Signer, Pkcs11Token, Pkcs11X509Key, TokenSelector,
};
pub use secret::{Passphrase, Pin, SecretSource};
pub use signer::{RcgenKey, Signer};
pub use software::{KeyKind, SoftwareSigner};
pub use wardseal_core::signature::VerifyingKey;
pub use watcher::{CardEvent, CardWatcher, ReaderStatus};
