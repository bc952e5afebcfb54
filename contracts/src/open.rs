//! Opening the ledger: where it is ([`LedgerLocation`]), as which account
//! ([`LedgerAccount`], usually an [`AccountKey`] read from a 0600 file), or read-only.
//!
//! Every program that reaches the ledger (storage, the collector, the simulator, the
//! `wardseal-ledger` CLI) opens it here, so the key file is checked, kept and never
//! printed the same way everywhere.
//!
//! ```no_run
//! # fn run() -> Result<(), wardseal_contracts::Error> {
//! use std::path::Path;
//! use wardseal_contracts::{AccountKey, LedgerAccount, LedgerLocation};
//!
//! let location = LedgerLocation::rpc("http://127.0.0.1:8545")?;
//! let key = AccountKey::read(Path::new("/etc/wardseal/storage-account.key"))?;
//! let ledger = location.open(LedgerAccount::Key(key), Path::new("/etc/wardseal/suite.json"))?;
//! # let _ = ledger;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use zeroize::Zeroizing;

use crate::backend::rpc::parse_url;
use crate::error::{AccountKeyError, Error};
use crate::{AnyBackend, EmbeddedChain, Ledger, RpcBackend, Suite};

/// A node URL (`http://…`), as [`LedgerLocation::Rpc`] holds it.
pub use alloy::transports::http::reqwest::Url;

/// Where the ledger is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// The embedded chain kept in this directory (created if missing); one process at a
    /// time holds it.
    Embedded(PathBuf),
    /// A JSON-RPC node (Besu QBFT, anvil).
    Rpc(Url),
}

impl std::fmt::Display for LedgerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerLocation::Embedded(dir) => write!(f, "embedded chain {}", dir.display()),
            LedgerLocation::Rpc(url) => write!(f, "node {url}"),
        }
    }
}

/// The account the ledger is used as.
#[derive(Debug)]
pub enum LedgerAccount {
    /// An account whose key signs transactions (needed on a node; on the embedded chain
    /// only its address is used).
    Key(AccountKey),
    /// An account given by address alone: enough on the embedded chain, which runs
    /// transactions without signatures; a node refuses to open with it.
    Address(Address),
}

impl LedgerAccount {
    /// The account's address.
    pub fn address(&self) -> Address {
        match self {
            LedgerAccount::Key(key) => key.address(),
            LedgerAccount::Address(address) => *address,
        }
    }
}

impl LedgerLocation {
    /// A node location from its URL text.
    pub fn rpc(url: &str) -> Result<Self, Error> {
        Ok(LedgerLocation::Rpc(parse_url(url)?))
    }

    /// The location a command line or configuration names with two optional settings
    /// (an embedded directory, a node URL): exactly one must be given.
    pub fn from_choice(embedded: Option<PathBuf>, rpc: Option<&str>) -> Result<Self, Error> {
        match (embedded, rpc) {
            (Some(dir), None) => Ok(LedgerLocation::Embedded(dir)),
            (None, Some(url)) => LedgerLocation::rpc(url),
            (Some(_), Some(_)) => Err(Error::Location(
                "both an embedded chain and a node are named: keep one".into(),
            )),
            (None, None) => Err(Error::Location(
                "no ledger named: give an embedded chain directory or a node URL".into(),
            )),
        }
    }

    /// A backend on this ledger as `account`. Opening the embedded chain takes its lock
    /// for this process.
    pub fn backend(&self, account: LedgerAccount) -> Result<AnyBackend, Error> {
        match (self, account) {
            (LedgerLocation::Embedded(dir), account) => {
                Ok(EmbeddedChain::open(dir)?.backend(account.address()).into())
            }
            (LedgerLocation::Rpc(url), LedgerAccount::Key(key)) => {
                Ok(RpcBackend::with_url(url.clone(), key.signer).into())
            }
            (LedgerLocation::Rpc(url), LedgerAccount::Address(address)) => {
                Err(AccountKeyError::Needed {
                    url: url.to_string(),
                    account: address,
                }
                .into())
            }
        }
    }

    /// The ledger of the suite in `suite` (`suite.json`), as `account`.
    pub fn open(&self, account: LedgerAccount, suite: &Path) -> Result<Ledger<AnyBackend>, Error> {
        let suite = Suite::load(suite)?;
        Ok(Ledger::new(self.backend(account)?, suite))
    }

    /// The ledger for reading only (anchors, registry, rules): the embedded chain as the
    /// zero address, or a node with a throwaway key (calls need no funds and send
    /// nothing). No key file is read.
    pub fn open_read_only(&self, suite: &Path) -> Result<Ledger<AnyBackend>, Error> {
        let account = match self {
            LedgerLocation::Embedded(_) => LedgerAccount::Address(Address::ZERO),
            LedgerLocation::Rpc(_) => LedgerAccount::Key(AccountKey::generate()),
        };
        self.open(account, suite)
    }
}

/// An account's secp256k1 private key. The signer wipes its key when dropped; `Debug`
/// shows only the address.
#[derive(Clone)]
pub struct AccountKey {
    signer: PrivateKeySigner,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("address", &self.address())
            .field("key", &"[secret elided]")
            .finish()
    }
}

impl AccountKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self {
            signer: PrivateKeySigner::random(),
        }
    }

    /// Reads a key file: the hex private key (64 digits, `0x` optional) on one line.
    /// Refuses a file that its group or other users may read or write.
    pub fn read(path: &Path) -> Result<Self, Error> {
        check_private(path)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            AccountKeyError::Read {
                path: path.to_owned(),
                source,
            }
        })?);
        // The hex is decoded here (not by the signer's `FromStr`) so the decoded bytes
        // live in a buffer that is wiped.
        let digits = text.trim();
        let digits = digits.strip_prefix("0x").unwrap_or(digits);
        let not_a_key = || AccountKeyError::NotAKey {
            path: path.to_owned(),
        };
        let mut bytes = Zeroizing::new([0_u8; 32]);
        hex::decode_to_slice(digits, bytes.as_mut_slice()).map_err(|_| not_a_key())?;
        let signer = PrivateKeySigner::from_slice(bytes.as_slice()).map_err(|_| not_a_key())?;
        Ok(Self { signer })
    }

    /// Writes the key to a new file created with mode 0600 (an existing file is never
    /// replaced).
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write as _;
        let fail = |source| AccountKeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(fail)?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(self.signer.to_bytes())));
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        Ok(())
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The signer, for a backend or [`Ledger::with_signer`].
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }

    /// The key as its signer.
    pub fn into_signer(self) -> PrivateKeySigner {
        self.signer
    }
}

impl From<PrivateKeySigner> for AccountKey {
    fn from(signer: PrivateKeySigner) -> Self {
        Self { signer }
    }
}

/// Refuses a key file whose group or other users have any permission on it.
fn check_private(path: &Path) -> Result<(), Error> {
    let metadata = std::fs::metadata(path).map_err(|source| AccountKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AccountKeyError::NotPrivate {
                path: path.to_owned(),
                mode,
            }
            .into());
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn key_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("account.key");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_0600_key_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), &format!("{KEY}\n"), 0o600);
        let key = AccountKey::read(&path).unwrap();
        let expected: PrivateKeySigner = KEY.parse().unwrap();
        assert_eq!(key.address(), expected.address());
        // The same key with a 0x prefix.
        std::fs::remove_file(&path).unwrap();
        let path = key_file(dir.path(), &format!("0x{KEY}"), 0o600);
        assert_eq!(
            AccountKey::read(&path).unwrap().address(),
            expected.address()
        );
    }

    #[test]
    fn a_world_readable_key_file_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), KEY, 0o644);
        let error = AccountKey::read(&path).unwrap_err();
        assert!(
            matches!(
                error,
                Error::AccountKey(AccountKeyError::NotPrivate { mode: 0o644, .. })
            ),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
        assert!(!message.contains(KEY), "the key leaked: {message}");
        // Group-readable only is refused too.
        std::fs::remove_file(&path).unwrap();
        let path = key_file(dir.path(), KEY, 0o640);
        assert!(matches!(
            AccountKey::read(&path),
            Err(Error::AccountKey(AccountKeyError::NotPrivate { .. }))
        ));
    }

    #[test]
    fn bad_hex_is_refused_without_echoing_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}zz", &KEY[..62]);
        let path = key_file(dir.path(), &text, 0o600);
        let error = AccountKey::read(&path).unwrap_err();
        assert!(
            matches!(error, Error::AccountKey(AccountKeyError::NotAKey { .. })),
            "{error:?}"
        );
        assert!(!error.to_string().contains(&text[..40]));
        // Too short.
        std::fs::remove_file(&path).unwrap();
        let path = key_file(dir.path(), &KEY[..40], 0o600);
        assert!(matches!(
            AccountKey::read(&path),
            Err(Error::AccountKey(AccountKeyError::NotAKey { .. }))
        ));
    }

    #[test]
    fn a_missing_key_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.key");
        let error = AccountKey::read(&path).unwrap_err();
        assert!(
            matches!(error, Error::AccountKey(AccountKeyError::Read { .. })),
            "{error:?}"
        );
        assert!(error.to_string().contains("nowhere.key"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = AccountKey::from(KEY.parse::<PrivateKeySigner>().unwrap());
        let shown = format!("{key:?}");
        assert!(
            !shown.contains(KEY) && shown.contains("secret elided"),
            "{shown}"
        );
    }

    #[test]
    fn written_keys_are_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.key");
        let key = AccountKey::generate();
        key.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(AccountKey::read(&path).unwrap().address(), key.address());
        assert!(matches!(
            key.write_new(&path),
            Err(Error::AccountKey(AccountKeyError::Write { .. }))
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_embedded_ledger_opens_as_the_key_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let location = LedgerLocation::Embedded(dir.path().join("chain"));
        let key = AccountKey::generate();
        let address = key.address();
        let suite = dir.path().join("suite.json");
        {
            let ledger = Ledger::deploy(location.backend(LedgerAccount::Key(key)).unwrap())
                .await
                .unwrap();
            assert_eq!(ledger.account(), address);
            ledger.create_rule(7).await.unwrap();
            ledger.suite().save(&suite).unwrap();
        }
        let reader = location.open_read_only(&suite).unwrap();
        assert_eq!(reader.account(), Address::ZERO);
        assert!(reader.rule(7).await.unwrap().is_some());
    }

    #[test]
    fn a_node_needs_a_key_and_a_location_needs_one_choice() {
        let location = LedgerLocation::rpc("http://127.0.0.1:8545").unwrap();
        assert!(matches!(
            location.backend(LedgerAccount::Address(Address::repeat_byte(1))),
            Err(Error::AccountKey(AccountKeyError::Needed { .. }))
        ));
        assert!(LedgerLocation::rpc("not a url").is_err());
        assert!(matches!(
            LedgerLocation::from_choice(None, None),
            Err(Error::Location(_))
        ));
        assert!(matches!(
            LedgerLocation::from_choice(Some("chain".into()), Some("http://127.0.0.1:8545")),
            Err(Error::Location(_))
        ));
        assert_eq!(
            LedgerLocation::from_choice(Some("chain".into()), None).unwrap(),
            LedgerLocation::Embedded("chain".into())
        );
    }
}
