//! SoftHSM2 token stores for wardseal's tests, benchmarks and demo.
//!
//! # Design
//!
//! SoftHSM reads the file named by `SOFTHSM2_CONF` when `C_Initialize` runs and keeps its
//! tokens in the directory that file names. A [`SoftHsm`] is such a pair, private to one
//! test, in a temporary directory that is deleted when the value is dropped. Tokens are
//! always found by **label**: SoftHSM reassigns slot numbers whenever a token is
//! initialised, so a slot number saved before `--init-token` means nothing after it.
//!
//! Everything this crate does to a store it does through SoftHSM's own tools
//! (`softhsm2-util`) and OpenSC's `pkcs11-tool`, run as child processes whose environment
//! names the private configuration. Nothing here loads the module in-process.
//!
//! Code under test that loads `libsofthsm2.so` itself (the `wardseal-card` PKCS#11 signer)
//! needs `SOFTHSM2_CONF` in its *own* environment before the module initialises, and one
//! PKCS#11 context per process (SoftHSM 2.6.1 crashes when several initialise in
//! parallel). Changing the environment of a running, multi-threaded test binary is not
//! sound, so [`run_isolated_test`] runs one test body in a fresh child process of the test
//! binary, started with the private configuration in its environment: one store, one
//! module instance, one process.
//!
//! # Example
//!
//! ```no_run
//! use wardseal_softhsm::{SoftHsm, TokenSpec};
//!
//! # fn main() -> Result<(), wardseal_softhsm::Error> {
//! let hsm = SoftHsm::new()?;
//! let token = hsm.init_token(&TokenSpec::new("patient-0001"))?;
//! hsm.generate_ec_p256(&token, "signing key", &[0x01])?;
//! let listing = hsm.list_objects(&token)?;
//! assert!(listing.contains("signing key"));
//! # Ok(())
//! # }
//! ```
//!
//! In a test that loads the module in-process:
//!
//! ```no_run
//! #[test]
//! fn signs_on_a_token() {
//!     wardseal_softhsm::run_isolated_test("signs_on_a_token", |hsm| {
//!         // `hsm` is this process's store; SOFTHSM2_CONF already names it.
//!     })
//!     .unwrap();
//! }
//! ```

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

use secrecy::{ExposeSecret, SecretString};

/// Where Debian, Fedora and Homebrew put SoftHSM's PKCS#11 module, searched in this order
/// after the `SOFTHSM2_MODULE` environment variable.
pub const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
];

/// Environment variable that overrides where [`find_module`] looks for `libsofthsm2.so`.
pub const MODULE_ENV: &str = "SOFTHSM2_MODULE";

/// Environment variable SoftHSM reads its configuration file name from.
pub const CONF_ENV: &str = "SOFTHSM2_CONF";

/// Environment variable that tells a re-executed test binary which test it is to run
/// inside the isolated store (see [`run_isolated_test`]).
pub const CHILD_ENV: &str = "WARDSEAL_SOFTHSM_CHILD";

/// Environment variable naming the file a child writes when its body finished, so a
/// filter that matched no test cannot pass silently.
const DONE_ENV: &str = "WARDSEAL_SOFTHSM_DONE";

/// What went wrong while preparing or using a SoftHSM store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `libsofthsm2.so` is in none of the usual places and `SOFTHSM2_MODULE` is unset or wrong.
    #[error(
        "libsofthsm2.so not found (looked in {searched:?}); install Debian's `softhsm2` \
         package or set SOFTHSM2_MODULE to the module's path"
    )]
    ModuleNotFound {
        /// The paths that were tried.
        searched: Vec<PathBuf>,
    },
    /// A file or directory of the store could not be created, read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A tool this crate runs is not installed.
    #[error("cannot run `{tool}`: {source}; install Debian's `softhsm2` and `opensc` packages")]
    ToolMissing {
        /// The program name.
        tool: String,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and reported failure.
    #[error("`{tool} {args}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The program name.
        tool: String,
        /// Its arguments, with PINs replaced by `***`.
        args: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on standard error (and standard output, when stderr was empty).
        stderr: String,
    },
    /// `SOFTHSM2_CONF` is not set in a process that was supposed to inherit a store.
    #[error("SOFTHSM2_CONF is not set; this process was not started by run_isolated_test")]
    NotInherited,
    /// The configuration file named by `SOFTHSM2_CONF` has no `directories.tokendir` line.
    #[error("{path} has no `directories.tokendir =` line")]
    BadConfiguration {
        /// The configuration file.
        path: PathBuf,
    },
    /// The isolated child process failed or did not run the body.
    #[error("isolated run of `{name}` failed: {reason}")]
    ChildFailed {
        /// The test (or benchmark) name.
        name: String,
        /// The exit status, or that the body never ran.
        reason: String,
    },
}

/// Finds SoftHSM's PKCS#11 module: `SOFTHSM2_MODULE` if set, else the usual install paths.
pub fn find_module() -> Result<PathBuf, Error> {
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os(MODULE_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(path);
    }
    for candidate in MODULE_CANDIDATES {
        let path = PathBuf::from(candidate);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(path);
    }
    Err(Error::ModuleNotFound { searched })
}

/// The label and PINs of a token to initialise.
///
/// The PINs default to fixed test values; they are test fixtures, never real secrets, but
/// are still held as secrets and never printed.
#[derive(Clone)]
pub struct TokenSpec {
    /// Token label (at most 32 bytes; SoftHSM pads it with spaces).
    pub label: String,
    /// Security officer PIN.
    pub so_pin: SecretString,
    /// User PIN.
    pub user_pin: SecretString,
}

impl TokenSpec {
    /// User PIN given to tokens unless [`TokenSpec::with_user_pin`] says otherwise.
    pub const DEFAULT_USER_PIN: &'static str = "1234";
    /// SO PIN given to tokens unless [`TokenSpec::with_so_pin`] says otherwise.
    pub const DEFAULT_SO_PIN: &'static str = "12345678";

    /// A token with this label and the default test PINs.
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            so_pin: SecretString::from(Self::DEFAULT_SO_PIN),
            user_pin: SecretString::from(Self::DEFAULT_USER_PIN),
        }
    }

    /// Replaces the user PIN.
    pub fn with_user_pin(mut self, pin: &str) -> Self {
        self.user_pin = SecretString::from(pin);
        self
    }

    /// Replaces the SO PIN.
    pub fn with_so_pin(mut self, pin: &str) -> Self {
        self.so_pin = SecretString::from(pin);
        self
    }
}

impl fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSpec")
            .field("label", &self.label)
            .field("so_pin", &"[secret elided]")
            .field("user_pin", &"[secret elided]")
            .finish()
    }
}

/// A token that exists in a [`SoftHsm`] store.
#[derive(Clone, Debug)]
pub struct Token {
    spec: TokenSpec,
    serial: String,
}

impl Token {
    /// The token's label.
    pub fn label(&self) -> &str {
        &self.spec.label
    }

    /// The token's serial number as SoftHSM reports it (16 hex digits).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The user PIN the token was initialised with.
    pub fn user_pin(&self) -> &SecretString {
        &self.spec.user_pin
    }

    /// The SO PIN the token was initialised with.
    pub fn so_pin(&self) -> &SecretString {
        &self.spec.so_pin
    }
}

/// A private SoftHSM2 configuration and token directory.
///
/// Created by [`SoftHsm::new`] in a temporary directory that is removed on drop, or
/// attached by [`SoftHsm::from_env`] to the store a parent process created (then left in
/// place on drop: the parent owns it).
pub struct SoftHsm {
    /// Keeps the temporary directory alive; `None` when attached to a parent's store.
    _dir: Option<tempfile::TempDir>,
    conf: PathBuf,
    tokens: PathBuf,
    module: PathBuf,
}

impl fmt::Debug for SoftHsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftHsm")
            .field("conf", &self.conf)
            .field("tokens", &self.tokens)
            .field("module", &self.module)
            .field("owned", &self._dir.is_some())
            .finish()
    }
}

impl SoftHsm {
    /// Creates an empty store in a new temporary directory.
    pub fn new() -> Result<Self, Error> {
        let module = find_module()?;
        let dir = tempfile::Builder::new()
            .prefix("wardseal-softhsm-")
            .tempdir()
            .map_err(|source| Error::Io {
                action: "create temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).map_err(|source| Error::Io {
            action: "create",
            path: tokens.clone(),
            source,
        })?;
        let conf = dir.path().join("softhsm2.conf");
        let text = format!(
            "# wardseal private SoftHSM store\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n\
             slots.removable = false\n",
            tokens.display()
        );
        fs::write(&conf, text).map_err(|source| Error::Io {
            action: "write",
            path: conf.clone(),
            source,
        })?;
        Ok(Self {
            _dir: Some(dir),
            conf,
            tokens,
            module,
        })
    }

    /// Attaches to the store named by `SOFTHSM2_CONF` in this process's environment,
    /// without taking ownership (the directory is not removed on drop).
    pub fn from_env() -> Result<Self, Error> {
        let conf = PathBuf::from(std::env::var_os(CONF_ENV).ok_or(Error::NotInherited)?);
        let text = fs::read_to_string(&conf).map_err(|source| Error::Io {
            action: "read",
            path: conf.clone(),
            source,
        })?;
        let tokens = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("directories.tokendir"))
            .filter_map(|rest| rest.trim_start().strip_prefix('='))
            .map(|value| PathBuf::from(value.trim()))
            .next()
            .ok_or_else(|| Error::BadConfiguration { path: conf.clone() })?;
        Ok(Self {
            _dir: None,
            conf,
            tokens,
            module: find_module()?,
        })
    }

    /// The configuration file (what `SOFTHSM2_CONF` must name).
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The token directory.
    pub fn token_dir(&self) -> &Path {
        &self.tokens
    }

    /// The PKCS#11 module to load (`libsofthsm2.so`).
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// A command for `program` whose environment points SoftHSM at this store.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env(CONF_ENV, &self.conf);
        command
    }

    /// A `pkcs11-tool` command with `--module` set to SoftHSM and the environment pointing
    /// at this store.
    pub fn pkcs11_tool(&self) -> Command {
        let mut command = self.command("pkcs11-tool");
        command.arg("--module").arg(&self.module);
        command
    }

    /// Initialises a new token in the first free slot, sets its user PIN, and returns it
    /// with the serial number SoftHSM gave it.
    pub fn init_token(&self, spec: &TokenSpec) -> Result<Token, Error> {
        let mut command = self.command("softhsm2-util");
        command.args(["--init-token", "--free", "--label", &spec.label]);
        command.args(["--so-pin", spec.so_pin.expose_secret()]);
        command.args(["--pin", spec.user_pin.expose_secret()]);
        run(&mut command, "softhsm2-util")?;
        let serial = self.token_serial(&spec.label)?;
        Ok(Token {
            spec: spec.clone(),
            serial,
        })
    }

    /// The serial number of the token labelled `label`, read from `softhsm2-util --show-slots`.
    fn token_serial(&self, label: &str) -> Result<String, Error> {
        let mut command = self.command("softhsm2-util");
        command.arg("--show-slots");
        let output = run(&mut command, "softhsm2-util")?;
        let text = String::from_utf8_lossy(&output.stdout);
        // Each slot block lists "Serial number:" before "Label:".
        let mut serial = None;
        let mut current_serial = None;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("Slot ") {
                current_serial = None;
            } else if let Some(value) = line.strip_prefix("Serial number:") {
                current_serial = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("Label:")
                && value.trim() == label
            {
                serial = current_serial.take();
            }
        }
        serial.ok_or_else(|| Error::ToolFailed {
            tool: "softhsm2-util".to_owned(),
            args: "--show-slots".to_owned(),
            status: output.status,
            stderr: format!("no token labelled {label:?} in the listing"),
        })
    }

    /// Generates an ECDSA P-256 key pair on `token` (signing only) with this label and CKA_ID.
    pub fn generate_ec_p256(&self, token: &Token, label: &str, id: &[u8]) -> Result<(), Error> {
        self.keypairgen(token, "EC:prime256v1", label, id, false)
    }

    /// Generates an RSA key pair of `bits` bits on `token` (signing only).
    ///
    /// With `always_authenticate` the private key gets `CKA_ALWAYS_AUTHENTICATE`: the token
    /// asks for the PIN again before every signature (like PIV key 9C).
    pub fn generate_rsa(
        &self,
        token: &Token,
        bits: u32,
        label: &str,
        id: &[u8],
        always_authenticate: bool,
    ) -> Result<(), Error> {
        self.keypairgen(
            token,
            &format!("rsa:{bits}"),
            label,
            id,
            always_authenticate,
        )
    }

    /// Generates an ECDSA P-256 key pair that asks for the PIN before every signature.
    pub fn generate_ec_p256_always_authenticate(
        &self,
        token: &Token,
        label: &str,
        id: &[u8],
    ) -> Result<(), Error> {
        self.keypairgen(token, "EC:prime256v1", label, id, true)
    }

    fn keypairgen(
        &self,
        token: &Token,
        key_type: &str,
        label: &str,
        id: &[u8],
        always_authenticate: bool,
    ) -> Result<(), Error> {
        let mut command = self.pkcs11_tool();
        command.args(["--token-label", token.label(), "--login"]);
        command.args(["--pin", token.user_pin().expose_secret()]);
        command.args(["--keypairgen", "--key-type", key_type, "--usage-sign"]);
        command.args(["--label", label, "--id", &hex::encode(id)]);
        if always_authenticate {
            command.arg("--always-auth");
        }
        run(&mut command, "pkcs11-tool").map(drop)
    }

    /// Imports a PKCS#8 private key (PEM file, unencrypted) and its public key into `token`
    /// with `softhsm2-util --import`. This is how DSA keys get onto a token: `pkcs11-tool`
    /// cannot generate them.
    pub fn import_private_key(
        &self,
        token: &Token,
        pkcs8_pem: &Path,
        label: &str,
        id: &[u8],
    ) -> Result<(), Error> {
        let mut command = self.command("softhsm2-util");
        command.arg("--import").arg(pkcs8_pem);
        command.args(["--token", token.label(), "--label", label]);
        command.args(["--id", &hex::encode(id)]);
        command.args(["--pin", token.user_pin().expose_secret()]);
        run(&mut command, "softhsm2-util").map(drop)
    }

    /// Writes a DER certificate to `token` as a certificate object with this label and CKA_ID.
    pub fn import_certificate(
        &self,
        token: &Token,
        certificate_der: &[u8],
        label: &str,
        id: &[u8],
    ) -> Result<(), Error> {
        let file = tempfile::NamedTempFile::new_in(self.tokens.parent().unwrap_or(&self.tokens))
            .map_err(|source| Error::Io {
                action: "create temporary file in",
                path: self.tokens.clone(),
                source,
            })?;
        fs::write(file.path(), certificate_der).map_err(|source| Error::Io {
            action: "write",
            path: file.path().to_owned(),
            source,
        })?;
        let mut command = self.pkcs11_tool();
        command.args(["--token-label", token.label(), "--login"]);
        command.args(["--pin", token.user_pin().expose_secret()]);
        command.arg("--write-object").arg(file.path());
        command.args(["--type", "cert", "--label", label, "--id", &hex::encode(id)]);
        run(&mut command, "pkcs11-tool").map(drop)
    }

    /// `pkcs11-tool --list-objects` on `token`, logged in (private objects included).
    pub fn list_objects(&self, token: &Token) -> Result<String, Error> {
        let mut command = self.pkcs11_tool();
        command.args(["--token-label", token.label(), "--login"]);
        command.args(["--pin", token.user_pin().expose_secret()]);
        command.arg("--list-objects");
        let output = run(&mut command, "pkcs11-tool")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl SoftHsm {
    /// Marks the user PIN of `token` as locked (`CKF_USER_PIN_LOCKED`) in its object store.
    ///
    /// SoftHSM 2.6.1 never locks a PIN by itself: a failed login only sets
    /// `CKF_USER_PIN_COUNT_LOW`, however many follow. Real cards lock after a few tries,
    /// so this sets the flag in the token file the way such a token would; the real
    /// module then reports the token as locked in `C_GetTokenInfo` (SoftHSM 2.6.1 still
    /// accepts the PIN in `C_Login`: callers must check the flag, as `wardseal-card`
    /// does). Call it before any process has the module loaded (SoftHSM reads the token
    /// file when it initialises).
    pub fn lock_user_pin(&self, token: &Token) -> Result<(), Error> {
        const CKF_USER_PIN_LOCKED: u64 = 0x0004_0000;
        // Object store record: attribute type CKA_VENDOR_DEFINED + 0x534B (SoftHSM's token
        // flags), kind 2 (unsigned long), then the value as 8 big-endian bytes.
        const FLAGS_RECORD: [u8; 16] = [0, 0, 0, 0, 0x80, 0, 0x53, 0x4b, 0, 0, 0, 0, 0, 0, 0, 2];
        let file = self.token_object_file(token)?;
        let mut bytes = fs::read(&file).map_err(|source| Error::Io {
            action: "read",
            path: file.clone(),
            source,
        })?;
        let bad = || Error::BadConfiguration { path: file.clone() };
        let at = bytes
            .windows(FLAGS_RECORD.len())
            .position(|window| window == FLAGS_RECORD)
            .ok_or_else(bad)?
            + FLAGS_RECORD.len();
        let value = bytes.get_mut(at..at + 8).ok_or_else(bad)?;
        let flags = u64::from_be_bytes(value.try_into().map_err(|_| bad())?) | CKF_USER_PIN_LOCKED;
        value.copy_from_slice(&flags.to_be_bytes());
        fs::write(&file, bytes).map_err(|source| Error::Io {
            action: "write",
            path: file.clone(),
            source,
        })
    }

    /// The `token.object` file of `token`: the token directory whose file holds its serial.
    fn token_object_file(&self, token: &Token) -> Result<PathBuf, Error> {
        let entries = fs::read_dir(&self.tokens).map_err(|source| Error::Io {
            action: "list",
            path: self.tokens.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let file = entry.path().join("token.object");
            if let Ok(bytes) = fs::read(&file)
                && bytes
                    .windows(token.serial.len())
                    .any(|window| window == token.serial.as_bytes())
            {
                return Ok(file);
            }
        }
        Err(Error::BadConfiguration {
            path: self.tokens.clone(),
        })
    }
}

/// Runs `command`, returning its output when it exits with success.
fn run(command: &mut Command, tool: &str) -> Result<Output, Error> {
    let output = command.output().map_err(|source| Error::ToolMissing {
        tool: tool.to_owned(),
        source,
    })?;
    if output.status.success() {
        return Ok(output);
    }
    let mut hide_next = false;
    let args = command
        .get_args()
        .map(|arg| {
            let arg = arg.to_string_lossy();
            let shown = if hide_next {
                "***".to_owned()
            } else {
                arg.to_string()
            };
            hide_next = matches!(&*arg, "--pin" | "--so-pin" | "-p" | "--file-pin");
            shown
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(Error::ToolFailed {
        tool: tool.to_owned(),
        args,
        status: output.status,
        stderr,
    })
}

/// Runs a `#[test]` body in a child process of the test binary, with a private store.
///
/// In the parent (the test as `cargo test` runs it) this creates a [`SoftHsm`], re-runs
/// the current test binary with the filter `test_name --exact`, `SOFTHSM2_CONF` naming the
/// store, and waits; the store is deleted afterwards. In the child, `body` runs with the
/// inherited store. `test_name` must be the test's full path as the harness prints it
/// (`module::name`, or just `name` at the top of an integration test file).
///
/// Returns an error if the child failed, or if it exited without running `body` (a wrong
/// `test_name` would otherwise pass silently).
pub fn run_isolated_test(test_name: &str, body: impl FnOnce(&SoftHsm)) -> Result<(), Error> {
    run_isolated(
        test_name,
        &[test_name, "--exact", "--nocapture", "--test-threads=1"],
        body,
    )
}

/// Like [`run_isolated_test`], for binaries that are not libtest harnesses (benchmarks with
/// `harness = false`, examples): `child_args` are the arguments the child is started with.
pub fn run_isolated(
    name: &str,
    child_args: &[&str],
    body: impl FnOnce(&SoftHsm),
) -> Result<(), Error> {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        let hsm = SoftHsm::from_env()?;
        body(&hsm);
        if let Some(done) = std::env::var_os(DONE_ENV) {
            fs::write(&done, b"done").map_err(|source| Error::Io {
                action: "write",
                path: PathBuf::from(done),
                source,
            })?;
        }
        return Ok(());
    }
    let hsm = SoftHsm::new()?;
    let done = hsm.tokens.with_file_name("child-done");
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        action: "find the current executable",
        path: PathBuf::new(),
        source,
    })?;
    let output = Command::new(&exe)
        .args(child_args)
        .env(CHILD_ENV, name)
        .env(CONF_ENV, &hsm.conf)
        .env(DONE_ENV, &done)
        .output()
        .map_err(|source| Error::Io {
            action: "run",
            path: exe.clone(),
            source,
        })?;
    // Hand the child's output on, each stream to its own: a failure shows where it
    // failed, and what a bench prints on stdout (its `BENCH` lines) stays on stdout.
    let _ = std::io::stdout().lock().write_all(&output.stdout);
    let _ = std::io::stderr().lock().write_all(&output.stderr);
    if !output.status.success() {
        return Err(Error::ChildFailed {
            name: name.to_owned(),
            reason: format!("child exited with {}", output.status),
        });
    }
    if !done.exists() {
        return Err(Error::ChildFailed {
            name: name.to_owned(),
            reason: "the child ran no body: is the test name its full path?".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
