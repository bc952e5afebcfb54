//! wip

mod algorithm;
mod error;
pub mod pkcs11;
mod secret;
mod signer;
mod software;
mod verify;
pub mod virtual_card;
pub mod watcher;

pub use algorithm::{EcdsaEncoding, SignatureAlgorithm, ecdsa_p256_raw_to_der};
pub use error::{Error, PinTries};
pub use pkcs11::{KeySelector, Pkcs11Config, Pkcs11Signer, Pkcs11Token, TokenSelector};
pub use secret::{Passphrase, Pin, SecretSource};
pub use signer::{RcgenKey, Signer};
pub use software::{KeyKind, SoftwareSigner};
pub use verify::PublicKey;
pub use watcher::{CardEvent, CardWatcher};
