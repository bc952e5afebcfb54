//! EST (RFC 7030) end to end: `wardseal-pki est serve` as a child process, devices played
//! by curl and openssl alone, as in RFC 7030's examples (`openssl req` makes the CSR, curl
//! posts it base64-encoded, `openssl pkcs7 -print_certs` reads the answer).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{TestCa, openssl, require_tool, run, succeeded, text};

const DEVICE: &str = "urn:epc:tag:sgtin-96:3.0614141.812345.6789";
const DEVICE_HEX: &str = "3074257BF7194E4000001A85";
const OTHER_DEVICE: &str = "urn:epc:tag:sgtin-96:3.0614141.812345.42";
const THIRD_DEVICE: &str = "urn:epc:tag:sgtin-96:3.0614141.812345.43";

/// `wardseal-pki est serve` on a loopback port the kernel chose; stopped when dropped.
struct EstServer {
    child: Child,
    port: u16,
}

impl EstServer {
    fn start(ca: &TestCa, extra: &[&str]) -> Self {
        let (_, certificate, key) = ca.issue(
            "est-server",
            &[
                "--profile",
                "storage",
                "--dns",
                "localhost",
                "--ip",
                "127.0.0.1",
            ],
        );
        let mut args = vec![
            "est".to_owned(),
            "serve".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--tls-cert".to_owned(),
            certificate.display().to_string(),
            "--tls-key".to_owned(),
            key.display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = ca
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line);
            }
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("the EST server did not say where it listens within 60 s");
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        Self { child, port }
    }

    fn url(&self, operation: &str) -> String {
        format!(
            "https://127.0.0.1:{}/.well-known/est/{operation}",
            self.port
        )
    }
}

impl Drop for EstServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl() -> PathBuf {
    require_tool(
        "curl",
        "run `apt-get install curl` (or ./scripts/test, which installs it)",
    )
}

/// An answer: HTTP status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        text(&self.body)
    }
}

/// curl with the CA's root as trust anchor; `args` add method, body and credentials.
fn curl_est(ca: &TestCa, url: &str, args: &[&str]) -> Answer {
    let body = tempfile::NamedTempFile::new().unwrap();
    let output = run(Command::new(curl())
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca.file("root.crt"))
        .args(["-o"])
        .arg(body.path())
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url));
    assert!(
        output.status.success(),
        "curl {args:?} {url} failed: {}",
        text(&output.stderr)
    );
    Answer {
        status: text(&output.stdout).trim().parse().unwrap(),
        body: std::fs::read(body.path()).unwrap(),
    }
}

/// `openssl req`: a new P-256 key and a DER CSR with `subject`, base64-encoded with
/// `openssl base64` (the body RFC 7030 §4.2.1 asks for). Returns (key, base64 CSR file).
fn csr(ca: &TestCa, name: &str, subject: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let key = ca.path(&format!("{name}.key"));
    let der = ca.path(&format!("{name}.csr.der"));
    let base64 = ca.path(&format!("{name}.csr.b64"));
    succeeded(
        "openssl req",
        &run(Command::new(openssl())
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                subject,
                "-outform",
                "DER",
            ])
            .args(extra)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&der)),
    );
    succeeded(
        "openssl base64",
        &run(Command::new(openssl())
            .args(["base64", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&base64)),
    );
    (key, base64)
}

/// Posts a base64 CSR to `operation`; `auth` adds credentials.
fn post_csr(ca: &TestCa, server: &EstServer, operation: &str, csr: &Path, auth: &[&str]) -> Answer {
    let data = format!("@{}", csr.display());
    let mut args = vec![
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        data.as_str(),
    ];
    args.extend_from_slice(auth);
    curl_est(ca, &server.url(operation), &args)
}

/// `openssl base64 -d` then `openssl pkcs7 -print_certs`: the PEM certificates of an
/// answer.
fn print_certs(ca: &TestCa, name: &str, answer: &Answer) -> PathBuf {
    assert_eq!(answer.status, 200, "{}", answer.text());
    let base64 = ca.path(&format!("{name}.p7.b64"));
    let der = ca.path(&format!("{name}.p7"));
    let pem = ca.path(&format!("{name}.pem"));
    std::fs::write(&base64, &answer.body).unwrap();
    succeeded(
        "openssl base64 -d",
        &run(Command::new(openssl())
            .args(["base64", "-d", "-in"])
            .arg(&base64)
            .arg("-out")
            .arg(&der)),
    );
    succeeded(
        "openssl pkcs7",
        &run(Command::new(openssl())
            .args(["pkcs7", "-inform", "DER", "-print_certs", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem)),
    );
    pem
}

fn openssl_text(certificate: &Path) -> String {
    succeeded(
        "openssl x509",
        &run(Command::new(openssl())
            .args(["x509", "-noout", "-text", "-in"])
            .arg(certificate)),
    )
}

fn register_with_secret(ca: &TestCa, epc: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(&ca.ok(&[
        "--json", "est", "register", "--epc", epc, "--group", "3", "--rule", "128", "--ward",
        "ward-7", "--secret",
    ]))
    .unwrap();
    (
        json["user"].as_str().unwrap().to_owned(),
        json["secret"].as_str().unwrap().to_owned(),
    )
}

fn audit_operations(ca: &TestCa) -> Vec<serde_json::Value> {
    serde_json::from_str(&ca.ok(&["--json", "audit", "list"])).unwrap()
}

fn refusals(ca: &TestCa) -> Vec<String> {
    audit_operations(ca)
        .iter()
        .filter(|entry| entry["operation"] == "est-refused")
        .map(|entry| entry["detail"].to_string())
        .collect()
}

#[test]
fn a_registered_device_enrolls_with_curl_and_openssl_and_others_are_refused() {
    let ca = TestCa::new();
    let (user, secret) = register_with_secret(&ca, DEVICE);
    assert_eq!(user, DEVICE_HEX);
    let server = EstServer::start(&ca, &[]);

    // The CA certificates, to anyone.
    let cacerts = curl_est(&ca, &server.url("cacerts"), &[]);
    let chain = text(&std::fs::read(print_certs(&ca, "cacerts", &cacerts)).unwrap());
    assert!(
        chain.contains("wardseal issuing CA") && chain.contains("wardseal root CA"),
        "{chain}"
    );
    let attributes = curl_est(&ca, &server.url("csrattrs"), &[]);
    assert_eq!(attributes.status, 200);

    // The CSR asks for things the profile does not give; only its key is used.
    let (key, request) = csr(
        &ca,
        "device",
        "/O=Evil Corp/CN=urn:epc:id:sgtin:0614141.812345.6789",
        &["-addext", "subjectAltName=DNS:evil.example"],
    );
    let credentials = format!("{user}:{secret}");
    let answer = post_csr(
        &ca,
        &server,
        "simpleenroll",
        &request,
        &["--user", &credentials],
    );
    let certificate = print_certs(&ca, "device-cert", &answer);
    let description = openssl_text(&certificate);
    assert!(
        description.contains("URI:urn:epc:id:sgtin:0614141.812345.6789"),
        "{description}"
    );
    assert!(
        description.contains("O = St Example Hospital"),
        "{description}"
    );
    assert!(
        !description.contains("Evil") && !description.contains("evil.example"),
        "{description}"
    );
    // `-print_certs` writes subject and issuer lines before the PEM: keep the PEM only.
    let plain = ca.path("device.crt");
    succeeded(
        "openssl x509",
        &run(Command::new(openssl())
            .args(["x509", "-in"])
            .arg(&certificate)
            .arg("-out")
            .arg(&plain)),
    );
    let verified = ca.ok(&["--json", "verify", plain.to_str().unwrap()]);
    assert!(
        verified.contains("\"valid\": true") && verified.contains("ward"),
        "{verified}"
    );
    // The key the device made is the certificate's.
    let modulus = |args: &[&str], path: &Path| {
        succeeded(
            "openssl pkey",
            &run(Command::new(openssl()).args(args).arg(path)),
        )
    };
    assert_eq!(
        modulus(&["pkey", "-pubout", "-in"], &key),
        modulus(&["x509", "-noout", "-pubkey", "-in"], &certificate)
    );

    // The same one-time secret a second time.
    let (_, again) = csr(&ca, "again", "/CN=again", &[]);
    let reused = post_csr(
        &ca,
        &server,
        "simpleenroll",
        &again,
        &["--user", &credentials],
    );
    assert_eq!(reused.status, 403, "{}", reused.text());
    assert!(reused.text().contains("secret_used"), "{}", reused.text());

    // An EPC nobody registered.
    let unregistered = post_csr(
        &ca,
        &server,
        "simpleenroll",
        &again,
        &[
            "--user",
            "3074257BF7194E4000001A86:0123456789abcdef0123456789abcdef",
        ],
    );
    assert_eq!(unregistered.status, 401, "{}", unregistered.text());
    assert!(unregistered.text().contains("credentials_refused"));

    // A registered device whose CSR names another device; its secret stays unspent.
    let (other_user, other_secret) = register_with_secret(&ca, OTHER_DEVICE);
    let other_credentials = format!("{other_user}:{other_secret}");
    let (_, naming) = csr(
        &ca,
        "naming",
        "/CN=urn:epc:tag:sgtin-96:3.0614141.812345.43",
        &[],
    );
    let named = post_csr(
        &ca,
        &server,
        "simpleenroll",
        &naming,
        &["--user", &other_credentials],
    );
    assert_eq!(named.status, 403, "{}", named.text());
    assert!(
        named.text().contains("csr_names_another_device"),
        "{}",
        named.text()
    );
    let (_, naming_san) = csr(
        &ca,
        "naming-san",
        "/CN=pump",
        &[
            "-addext",
            "subjectAltName=URI:urn:epc:id:sgtin:0614141.812345.43",
        ],
    );
    let named = post_csr(
        &ca,
        &server,
        "simpleenroll",
        &naming_san,
        &["--user", &other_credentials],
    );
    assert_eq!(named.status, 403, "{}", named.text());
    let (other_key, own) = csr(&ca, "other", "/CN=pump", &[]);
    let enrolled = post_csr(
        &ca,
        &server,
        "simpleenroll",
        &own,
        &["--user", &other_credentials],
    );
    let other_certificate = print_certs(&ca, "other-cert", &enrolled);

    // No credential at all: a Basic challenge.
    let headers = ca.path("challenge.headers");
    let challenge = curl_est(
        &ca,
        &server.url("simpleenroll"),
        &[
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", own.display()),
            "-D",
            headers.to_str().unwrap(),
        ],
    );
    assert_eq!(challenge.status, 401);
    let headers = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("www-authenticate: basic"), "{headers}");

    // Re-enrollment with the current certificate keeps the identity, takes the new key.
    let (_, renewal) = csr(&ca, "renewal", "/CN=renewal", &[]);
    let certificate_arg = certificate.display().to_string();
    let key_arg = key.display().to_string();
    let renewed = post_csr(
        &ca,
        &server,
        "simplereenroll",
        &renewal,
        &["--cert", &certificate_arg, "--key", &key_arg],
    );
    let renewed = print_certs(&ca, "renewed", &renewed);
    let renewed_text = openssl_text(&renewed);
    assert!(
        renewed_text.contains("URI:urn:epc:id:sgtin:0614141.812345.6789"),
        "{renewed_text}"
    );
    let records = ca.list(&[]);
    assert!(
        records.iter().any(|record| !record["renewal_of"].is_null()),
        "the renewal is not linked: {records:?}"
    );
    // Re-enrollment needs the certificate, not a secret.
    let refused = post_csr(
        &ca,
        &server,
        "simplereenroll",
        &renewal,
        &["--user", &credentials],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());

    // Revoked by the CLI while the server runs: the next renewal is refused.
    ca.ok(&["revoke", "--epc", OTHER_DEVICE]);
    let other_certificate_arg = other_certificate.display().to_string();
    let other_key_arg = other_key.display().to_string();
    let revoked = post_csr(
        &ca,
        &server,
        "simplereenroll",
        &renewal,
        &["--cert", &other_certificate_arg, "--key", &other_key_arg],
    );
    assert_eq!(revoked.status, 403, "{}", revoked.text());
    assert!(
        revoked.text().contains("not_renewable"),
        "{}",
        revoked.text()
    );

    // Bad requests get clear answers and the server keeps serving.
    let garbage = ca.path("garbage.b64");
    std::fs::write(&garbage, "this is not base64 ***").unwrap();
    let (third_user, third_secret) = register_with_secret(&ca, THIRD_DEVICE);
    let third = format!("{third_user}:{third_secret}");
    let answer = post_csr(&ca, &server, "simpleenroll", &garbage, &["--user", &third]);
    assert_eq!(answer.status, 400, "{}", answer.text());
    std::fs::write(&garbage, "aGVsbG8=").unwrap();
    let answer = post_csr(&ca, &server, "simpleenroll", &garbage, &["--user", &third]);
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.text().contains("bad_csr"), "{}", answer.text());
    let answer = curl_est(
        &ca,
        &server.url("simpleenroll"),
        &[
            "--user",
            &third,
            "--data-binary",
            &format!("@{}", own.display()),
        ],
    );
    assert_eq!(answer.status, 400, "{}", answer.text());
    let answer = curl_est(&ca, &server.url("simpleenroll"), &[]);
    assert_eq!(answer.status, 405);
    let answer = curl_est(&ca, &server.url("fullcmc"), &[]);
    assert_eq!(answer.status, 404);
    // The third device's secret survived all of that.
    let (_, third_csr) = csr(&ca, "third", "/CN=third", &[]);
    let answer = post_csr(
        &ca,
        &server,
        "simpleenroll",
        &third_csr,
        &["--user", &third],
    );
    assert_eq!(answer.status, 200, "{}", answer.text());

    // Every enrollment and refusal is in the audit log, and the chain holds.
    let operations = audit_operations(&ca);
    let count = |name: &str| {
        operations
            .iter()
            .filter(|entry| entry["operation"] == name)
            .count()
    };
    assert_eq!(count("est-enroll"), 3);
    assert_eq!(count("est-reenroll"), 1);
    let refusals = refusals(&ca).join("\n");
    for expected in [
        "secret_used",
        "not-registered",
        "csr_names_another_device",
        "not_renewable",
    ] {
        assert!(
            refusals.contains(expected),
            "no {expected} refusal in\n{refusals}"
        );
    }
    assert!(
        !refusals.contains(&secret),
        "a secret reached the audit log"
    );
    ca.ok(&["audit", "verify"]);
}

#[test]
fn a_manufacturer_certificate_bootstraps_enrollment() {
    let ca = TestCa::new();
    // A manufacturer CA and two IDevIDs (IEEE 802.1AR: the serial in the subject).
    let manufacturer_key = ca.path("manufacturer.key");
    let manufacturer = ca.path("manufacturer.pem");
    succeeded(
        "openssl req -x509",
        &run(Command::new(openssl())
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/O=Acme Devices/CN=Acme IDevID CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
            ])
            .arg(&manufacturer_key)
            .arg("-out")
            .arg(&manufacturer)),
    );
    let extensions = ca.path("idevid.ext");
    std::fs::write(
        &extensions,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    let idevid = |name: &str, serial: &str| -> (PathBuf, PathBuf) {
        let key = ca.path(&format!("{name}.key"));
        let request = ca.path(&format!("{name}.csr"));
        let certificate = ca.path(&format!("{name}.pem"));
        succeeded(
            "openssl req",
            &run(Command::new(openssl())
                .args([
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-subj",
                ])
                .arg(format!(
                    "/O=Acme Devices/CN=Acme infusion pump/serialNumber={serial}"
                ))
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&request)),
        );
        succeeded(
            "openssl x509 -req",
            &run(Command::new(openssl())
                .args(["x509", "-req", "-days", "30", "-in"])
                .arg(&request)
                .arg("-CA")
                .arg(&manufacturer)
                .arg("-CAkey")
                .arg(&manufacturer_key)
                .arg("-extfile")
                .arg(&extensions)
                .arg("-out")
                .arg(&certificate)),
        );
        (certificate, key)
    };
    let (registered, registered_key) = idevid("idevid-1", "ACME-0001");
    let (unregistered, unregistered_key) = idevid("idevid-2", "ACME-0002");
    ca.ok(&[
        "est",
        "register",
        "--epc",
        DEVICE,
        "--group",
        "3",
        "--rule",
        "128",
        "--manufacturer-serial",
        "ACME-0001",
    ]);
    let manufacturer_arg = manufacturer.display().to_string();
    let server = EstServer::start(
        &ca,
        &["--manufacturer-ca", &manufacturer_arg, "--days", "2"],
    );

    let (_, request) = csr(&ca, "ldevid", "/CN=pump", &[]);
    let tls = |certificate: &Path, key: &Path| {
        vec![
            "--cert".to_owned(),
            certificate.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]
    };
    let args = tls(&registered, &registered_key);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let answer = post_csr(&ca, &server, "simpleenroll", &request, &args);
    let certificate = print_certs(&ca, "ldevid-cert", &answer);
    let description = openssl_text(&certificate);
    assert!(
        description.contains("URI:urn:epc:id:sgtin:0614141.812345.6789"),
        "{description}"
    );
    assert!(!description.contains("Acme"), "{description}");

    // The IDevID again, while the device holds a valid certificate: renew instead.
    let again = post_csr(&ca, &server, "simpleenroll", &request, &args);
    assert_eq!(again.status, 409, "{}", again.text());

    // An IDevID no registration names.
    let args = tls(&unregistered, &unregistered_key);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let answer = post_csr(&ca, &server, "simpleenroll", &request, &args);
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(
        answer.text().contains("manufacturer_not_registered"),
        "{}",
        answer.text()
    );

    // A certificate from a manufacturer CA the server was not given: no TLS session.
    let stranger_key = ca.path("stranger.key");
    let stranger = ca.path("stranger.pem");
    succeeded(
        "openssl req -x509",
        &run(Command::new(openssl())
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=stranger/serialNumber=ACME-0001",
                "-keyout",
            ])
            .arg(&stranger_key)
            .arg("-out")
            .arg(&stranger)),
    );
    let output = run(Command::new(curl())
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca.file("root.crt"))
        .arg("--cert")
        .arg(&stranger)
        .arg("--key")
        .arg(&stranger_key)
        .args(["-H", "Content-Type: application/pkcs10", "--data-binary"])
        .arg(format!("@{}", request.display()))
        .arg(server.url("simpleenroll")));
    assert!(
        !output.status.success(),
        "an unknown manufacturer's certificate was accepted"
    );

    let operations = audit_operations(&ca);
    assert!(operations.iter().any(|entry| {
        let detail: serde_json::Value =
            serde_json::from_str(entry["detail"].as_str().unwrap()).unwrap();
        entry["operation"] == "est-enroll"
            && detail["credential"] == "manufacturer-certificate"
            && detail["manufacturer_serial"] == "ACME-0001"
    }));
    ca.ok(&["audit", "verify"]);
}
