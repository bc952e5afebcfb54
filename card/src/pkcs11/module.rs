//! Loading a PKCS#11 module once per process, and the session discipline SoftHSM needs.
//!
//! SoftHSM 2.6.1 (and other modules) crash when misused from several threads:
//! - two contexts calling `C_Initialize` at the same time corrupt its global state: every
//!   [`Module::load`] takes one process-wide lock, and a module path is loaded and
//!   initialised once per process, then shared (`Arc`);
//! - closing sessions concurrently races in its session manager: every session is closed
//!   through [`Module::close_session`], which holds a per-module lock;
//! - `C_Finalize` while another thread still has a session open frees memory that thread
//!   is using: a loaded module is never finalised; the operating system unloads it at exit.
//!
//! Each module is initialised with `CKF_OS_LOCKING_OK`, so the module itself may use
//! native locks for everything else, and sessions are never shared between threads (a
//! `cryptoki` session is `Send` but not `Sync`; the signer keeps a pool of them).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::map_error;
use crate::Error;

/// Every module loaded in this process, by canonical path. Also the lock that serialises
/// `C_Initialize`.
static MODULES: Mutex<Vec<Arc<Module>>> = Mutex::new(Vec::new());

/// A loaded and initialised PKCS#11 module (`libsofthsm2.so`, `opensc-pkcs11.so`, …).
pub struct Module {
    context: Pkcs11,
    path: PathBuf,
    close_lock: Mutex<()>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Loads and initialises the module at `path`, or returns the instance this process
    /// already has.
    pub fn load(path: &Path) -> Result<Arc<Self>, Error> {
        let canonical = path.canonicalize().map_err(|_| Error::ModuleMissing {
            path: path.to_owned(),
        })?;
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.iter().find(|module| module.path == canonical) {
            return Ok(Arc::clone(module));
        }
        let load_error = |detail: String| Error::ModuleLoad {
            path: canonical.clone(),
            detail,
        };
        let context = Pkcs11::new(&canonical).map_err(|error| load_error(error.to_string()))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            // Another library in this process initialised it first; its context is ours too.
            Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(error) => return Err(load_error(error.to_string())),
        }
        let module = Arc::new(Self {
            context,
            path: canonical,
            close_lock: Mutex::new(()),
        });
        modules.push(Arc::clone(&module));
        Ok(module)
    }

    /// The module's canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens present in the module's slots.
    pub fn tokens(&self) -> Result<Vec<TokenDescription>, Error> {
        let slots = self
            .context
            .get_slots_with_token()
            .map_err(|error| map_error("", error))?;
        let mut tokens = Vec::with_capacity(slots.len());
        for slot in slots {
            // A token pulled out between the two calls is simply not listed.
            if let Ok(description) = self.describe(slot) {
                tokens.push(description);
            }
        }
        Ok(tokens)
    }

    pub(crate) fn describe(&self, slot: Slot) -> Result<TokenDescription, Error> {
        let info = self
            .context
            .get_token_info(slot)
            .map_err(|error| map_error("", error))?;
        let slot_description = self
            .context
            .get_slot_info(slot)
            .map(|info| info.slot_description().trim_end().to_owned())
            .unwrap_or_default();
        Ok(TokenDescription {
            slot,
            label: info.label().trim_end().to_owned(),
            serial: info.serial_number().trim_end().to_owned(),
            manufacturer: info.manufacturer_id().trim_end().to_owned(),
            model: info.model().trim_end().to_owned(),
            slot_description,
            user_pin_locked: info.user_pin_locked(),
            user_pin_count_low: info.user_pin_count_low(),
            user_pin_final_try: info.user_pin_final_try(),
            protected_authentication_path: info.protected_authentication_path(),
        })
    }

    /// The public keys and certificates on a token: what anyone can read without the PIN
    /// (private keys are private objects, listed by [`Pkcs11Token::private_keys`] after
    /// login).
    ///
    /// [`Pkcs11Token::private_keys`]: super::Pkcs11Token::private_keys
    pub fn public_objects(&self, token: &TokenDescription) -> Result<Vec<PublicObject>, Error> {
        let session = self
            .context
            .open_ro_session(token.slot)
            .map_err(|error| map_error(&token.label, error))?;
        let result = (|| {
            let mut objects = Vec::new();
            for (class, kind) in [
                (ObjectClass::PUBLIC_KEY, PublicObjectKind::PublicKey),
                (ObjectClass::CERTIFICATE, PublicObjectKind::Certificate),
            ] {
                let handles = session
                    .find_objects(&[Attribute::Class(class)])
                    .map_err(|error| map_error(&token.label, error))?;
                for handle in handles {
                    let attributes = session
                        .get_attributes(handle, &[AttributeType::Label, AttributeType::Id])
                        .map_err(|error| map_error(&token.label, error))?;
                    let mut object = PublicObject {
                        kind,
                        label: String::new(),
                        id: Vec::new(),
                    };
                    for attribute in attributes {
                        match attribute {
                            Attribute::Label(label) => {
                                object.label = String::from_utf8_lossy(&label).into_owned();
                            }
                            Attribute::Id(id) => object.id = id,
                            _ => {}
                        }
                    }
                    objects.push(object);
                }
            }
            Ok(objects)
        })();
        self.close_session(session);
        result
    }

    pub(crate) fn context(&self) -> &Pkcs11 {
        &self.context
    }

    /// Closes a session, never at the same time as another close on this module.
    pub(crate) fn close_session(&self, session: Session) {
        let _guard = self
            .close_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Nothing to do about a failure: the handle is gone either way.
        let _ = session.close();
    }
}

/// What a module says about one of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenDescription {
    pub(crate) slot: Slot,
    /// Token label, trailing spaces removed.
    pub label: String,
    /// Token serial number.
    pub serial: String,
    /// Token manufacturer.
    pub manufacturer: String,
    /// Token model.
    pub model: String,
    /// Description of the slot (reader) the token is in.
    pub slot_description: String,
    /// The user PIN is locked.
    pub user_pin_locked: bool,
    /// Few PIN tries are left.
    pub user_pin_count_low: bool,
    /// The next wrong PIN locks the token.
    pub user_pin_final_try: bool,
    /// The PIN is entered on a pinpad, not sent by the application.
    pub protected_authentication_path: bool,
}

/// What a public object on a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicObjectKind {
    /// A public key (the half of a key pair anyone may read).
    PublicKey,
    /// An X.509 certificate.
    Certificate,
}

/// A public key or certificate on a token, as [`Module::public_objects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublicObject {
    /// Public key or certificate.
    pub kind: PublicObjectKind,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID (ties a key pair to its certificate).
    pub id: Vec<u8>,
}
