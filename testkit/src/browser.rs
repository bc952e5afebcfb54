//! Debian's Chromium, headless, driven over W3C WebDriver (`chromium-driver`), signed in
//! to a mutual-TLS server with a client certificate and no prompt.
//!
//! [`Browser::start`] makes a private home directory whose NSS database (where Chromium
//! on Linux keeps certificates, `$HOME/.pki/nssdb`) trusts the hospital CA and holds one
//! client certificate and key, imported from a PKCS#12 file with NSS's own `pk12util`.
//! Chromium asks which client certificate to present unless the managed policy
//! `AutoSelectCertificateForUrls` names the site: [`POLICY_FILE`] selects one for any
//! `https://127.0.0.1` port (the database holds only one, so that is the one), the way a
//! hospital's managed browsers are configured. Managed policies are read from a
//! system directory only, so the file is written there (as root), with the same content
//! for every test.
//!
//! The driver runs on a free loopback port under coreutils `timeout`, which bounds its
//! life and that of the Chromium it starts (one process group); dropping the
//! [`Browser`] ends both by the group leader's PID. A missing Chromium, driver or NSS
//! tool is an [`Error::Missing`] naming the Debian packages: the suite fails, it never
//! skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::Error;
use crate::pki::CertificateFiles;
use crate::process::{Process, Signal};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The managed policy file that selects the client certificate without a prompt.
pub const POLICY_FILE: &str = "/etc/chromium/policies/managed/wardseal-tests.json";
/// The Debian packages the browser needs.
pub const PACKAGES: &str = "chromium chromium-driver libnss3-tools";
/// How long a browser may live before `timeout` ends it, whatever the test does.
pub const DEFAULT_LIFE: Duration = Duration::from_secs(600);
/// How long the driver has to start listening.
const DRIVER_START: Duration = Duration::from_secs(30);

/// A headless Chromium under a WebDriver session.
#[derive(Debug)]
pub struct Browser {
    client: Option<Client>,
    driver: Process,
    home: tempfile::TempDir,
}

/// How [`Browser::start`] starts a browser.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The CA certificates (PEM) the browser trusts for servers.
    pub ca_bundle: PathBuf,
    /// The client certificate and key the browser presents.
    pub identity: CertificateFiles,
    /// The window's width and height in CSS pixels (screenshots have this size).
    pub window: (u32, u32),
    /// How long the browser may live at most.
    pub life: Duration,
}

impl BrowserOptions {
    /// A 1280×900 window trusting `ca_bundle` and presenting `identity`, for at most
    /// [`DEFAULT_LIFE`].
    pub fn new(ca_bundle: &Path, identity: &CertificateFiles) -> Self {
        Self {
            ca_bundle: ca_bundle.to_owned(),
            identity: identity.clone(),
            window: (1280, 900),
            life: DEFAULT_LIFE,
        }
    }
}

fn require(path: &str, what: &'static str) -> Result<(), Error> {
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(Error::Missing {
            what,
            path: PathBuf::from(path),
            fix: format!("apt-get install {PACKAGES}"),
        })
    }
}

fn tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), Error> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            action: "run",
            what: program.to_owned(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            tool: program.to_owned(),
            args: args
                .iter()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

/// Writes [`POLICY_FILE`] unless it already says what it must.
fn write_policy() -> Result<(), Error> {
    let pattern = json!({"pattern": "https://127.0.0.1:*", "filter": {}}).to_string();
    let policy = json!({ "AutoSelectCertificateForUrls": [pattern] }).to_string();
    let path = Path::new(POLICY_FILE);
    if std::fs::read_to_string(path).is_ok_and(|text| text == policy) {
        return Ok(());
    }
    let fix = |source: std::io::Error| Error::Missing {
        what: "the managed Chromium policy that selects the client certificate",
        path: path.to_owned(),
        fix: format!("run the suite as root, or write {policy} to {POLICY_FILE} ({source})"),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fix)?;
    }
    // Written whole under another name, then renamed: a browser starting meanwhile
    // reads the old file or the new one, never half of one.
    let partial = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&partial, &policy).map_err(fix)?;
    std::fs::rename(&partial, path).map_err(fix)
}

/// The certificates of a PEM bundle, one PEM text each.
fn split_bundle(path: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path.display(), e))?;
    let mut certificates = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END CERTIFICATE-----") {
            certificates.push(std::mem::take(&mut current));
        }
    }
    if certificates.is_empty() {
        return Err(Error::Failed {
            what: format!("read the CA bundle {}", path.display()),
            reason: "it holds no PEM certificate".into(),
        });
    }
    Ok(certificates)
}

/// Makes `home/.pki/nssdb` trusting `options.ca_bundle` and holding `options.identity`.
fn nss_database(home: &Path, options: &BrowserOptions) -> Result<(), Error> {
    let db = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&db).map_err(|e| Error::io("create", db.display(), e))?;
    let db_arg = format!("sql:{}", db.display());
    tool(
        "certutil",
        &[
            "-N".as_ref(),
            "-d".as_ref(),
            db_arg.as_ref(),
            "--empty-password".as_ref(),
        ],
    )?;
    for (index, pem) in split_bundle(&options.ca_bundle)?.iter().enumerate() {
        let file = home.join(format!("ca-{index}.pem"));
        std::fs::write(&file, pem).map_err(|e| Error::io("write", file.display(), e))?;
        let nickname = format!("hospital CA {index}");
        tool(
            "certutil",
            &[
                "-A".as_ref(),
                "-d".as_ref(),
                db_arg.as_ref(),
                "-n".as_ref(),
                nickname.as_ref(),
                "-t".as_ref(),
                "C,,".as_ref(),
                "-i".as_ref(),
                file.as_os_str(),
            ],
        )?;
    }
    let pkcs12 = home.join("identity.p12");
    let password = home.join("identity.p12.pass");
    options.identity.write_pkcs12(
        &options.ca_bundle,
        "wardseal test identity",
        &pkcs12,
        &password,
    )?;
    tool(
        "pk12util",
        &[
            "-i".as_ref(),
            pkcs12.as_os_str(),
            "-d".as_ref(),
            db_arg.as_ref(),
            "-w".as_ref(),
            password.as_os_str(),
        ],
    )
}

impl Browser {
    /// Starts a headless Chromium as `options` say, under a new WebDriver session.
    pub async fn start(options: &BrowserOptions) -> Result<Self, Error> {
        require(CHROMIUM, "Chromium")?;
        require(CHROMEDRIVER, "chromium-driver")?;
        require("/usr/bin/certutil", "NSS's certutil")?;
        require("/usr/bin/pk12util", "NSS's pk12util")?;
        write_policy()?;
        let home = tempfile::Builder::new()
            .prefix("wardseal-browser-")
            .tempdir()
            .map_err(|e| Error::io("create", "a home directory for the browser", e))?;
        nss_database(home.path(), options)?;
        let port = crate::free_port()?;
        // `timeout` runs the driver in a process group of its own and, at the end of the
        // life or on SIGTERM, signals the whole group: the driver and its Chromium.
        let mut driver = Process::new(
            "chromedriver",
            "timeout",
            home.path().join("chromedriver.log"),
        )
        .args([
            "--kill-after=5".to_owned(),
            format!("{}s", options.life.as_secs().max(1)),
            CHROMEDRIVER.to_owned(),
            format!("--port={port}"),
        ])
        .env("HOME", home.path());
        driver.start()?;
        driver.wait_listening(port, DRIVER_START).await?;
        let (width, height) = options.window;
        let profile = home.path().join("profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--password-store=basic",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|error| Error::Failed {
                what: "open a WebDriver session in Chromium".into(),
                reason: format!("{error}; the driver's log:\n{}", driver.log_tail(30)),
            })?;
        Ok(Self {
            client: Some(client),
            driver,
            home,
        })
    }

    /// The WebDriver session.
    pub fn client(&self) -> Result<&Client, Error> {
        self.client.as_ref().ok_or_else(|| Error::NotRunning {
            name: "the WebDriver session".into(),
        })
    }

    /// Where the browser's files are (its NSS database, profile and driver log).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Opens `url` and waits for the page to load.
    pub async fn open(&self, url: &str) -> Result<(), Error> {
        self.client()?
            .goto(url)
            .await
            .map_err(|error| webdriver(&format!("open {url}"), error))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns
    /// its value.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.client()?
            .execute(script, args)
            .await
            .map_err(|error| webdriver("run a script in the page", error))
    }

    /// Runs `script` every 50 ms until it returns something other than `null`, `false`,
    /// `""` or `0`, and returns that; fails after `timeout` saying `what` did not
    /// happen. The bound is on waiting: how soon it holds is not asserted.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Vec<Value>,
    ) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.run(script, args.clone()).await?;
            let holds = match &value {
                Value::Null => false,
                Value::Bool(yes) => *yes,
                Value::String(text) => !text.is_empty(),
                Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
                Value::Array(_) | Value::Object(_) => true,
            };
            if holds {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(Error::NotInTime {
                    what: what.to_owned(),
                    seconds: timeout.as_secs(),
                    hint: "",
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Result<Vec<u8>, Error> {
        self.client()?
            .screenshot()
            .await
            .map_err(|error| webdriver("take a screenshot", error))
    }

    /// Ends the session (Chromium exits) and stops the driver.
    pub async fn close(mut self) -> Result<(), Error> {
        if let Some(client) = self.client.take() {
            client
                .close()
                .await
                .map_err(|error| webdriver("end the WebDriver session", error))?;
        }
        let _ = self
            .driver
            .stop(Signal::Term, Duration::from_secs(10))
            .await;
        Ok(())
    }
}

impl Drop for Browser {
    /// A browser dropped without [`Browser::close`] still ends: SIGTERM to `timeout`
    /// ends the group (the driver and Chromium), then the process handle kills
    /// `timeout` itself.
    fn drop(&mut self) {
        let _ = self.driver.signal(Signal::Term);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn webdriver(what: &str, error: fantoccini::error::CmdError) -> Error {
    Error::Failed {
        what: what.to_owned(),
        reason: error.to_string(),
    }
}
