//! The offline root and the CRL set: two issuing CAs under one root kept in its own
//! directory, one of them revoked by the root. `openssl verify -crl_check_all` and nginx
//! (`ssl_verify_client on`, `ssl_crl`) must accept a valid device and refuse a revoked one
//! and one under the revoked issuing CA — which needs a CRL at every level of the chain.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestCa, openssl, require_tool, run, succeeded, text};

const VALID: &str = "urn:epc:tag:sgtin-96:3.0614141.812345.1";
const REVOKED: &str = "urn:epc:tag:sgtin-96:3.0614141.812345.2";
const UNDER_REVOKED_CA: &str = "urn:epc:tag:sgtin-96:3.0614141.812345.3";

/// Two issuing CAs signed by one offline root, devices issued, one device revoked, the
/// second issuing CA revoked by the root, every CRL signed and published.
struct Hierarchy {
    first: TestCa,
    second: TestCa,
    root_dir: PathBuf,
    valid: (PathBuf, PathBuf),
    revoked: (PathBuf, PathBuf),
    under_revoked_ca: (PathBuf, PathBuf),
    /// The root and both issuing CAs (PEM).
    bundle: PathBuf,
    /// Every CRL: the first CA's crl-set.pem (root CRL + its own) and the second's CRL.
    crls: PathBuf,
    /// root.crt then both issuing certificates, for `-untrusted`.
    intermediates: PathBuf,
}

fn root_command(ca: &TestCa, root_dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["root", "--root-dir", root_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    ca.ok(&all)
}

fn hierarchy() -> Hierarchy {
    let first = TestCa::uninitialised();
    let second = TestCa::uninitialised();
    let root_dir = first.path("root");
    root_command(
        &first,
        &root_dir,
        &["init", "--organisation", "St Example Hospital"],
    );
    root_command(
        &first,
        &root_dir,
        &[
            "sign-issuing",
            "--name",
            "St Example Hospital issuing CA 1",
            "--crl-url",
            "http://127.0.0.1:8099/1.crl",
        ],
    );
    root_command(
        &second,
        &root_dir,
        &[
            "sign-issuing",
            "--name",
            "St Example Hospital issuing CA 2",
            "--crl-url",
            "http://127.0.0.1:8099/2.crl",
        ],
    );
    // The root key never entered either CA directory.
    assert!(root_dir.join("root.key").is_file());
    for ca in [&first, &second] {
        assert!(!ca.file("root.key").exists());
        assert_eq!(
            std::fs::read(ca.file("root.crt")).unwrap(),
            std::fs::read(root_dir.join("root.crt")).unwrap()
        );
    }

    let pair = |(_, certificate, key): (String, PathBuf, PathBuf)| (certificate, key);
    let valid = pair(first.issue_device("valid", VALID));
    let revoked = pair(first.issue_device("revoked", REVOKED));
    let under_revoked_ca = pair(second.issue_device("under-revoked-ca", UNDER_REVOKED_CA));
    first.ok(&["revoke", "--epc", REVOKED, "--reason", "key-compromise"]);

    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&root_command(&first, &root_dir, &["--json", "list"])).unwrap();
    assert_eq!(listed.len(), 2);
    let second_serial = listed[1]["serial"].as_str().unwrap().to_owned();
    root_command(
        &first,
        &root_dir,
        &["revoke", &second_serial, "--reason", "ca-compromise"],
    );
    let first_dir = first.dir.to_str().unwrap().to_owned();
    let second_dir = second.dir.to_str().unwrap().to_owned();
    let crl = root_command(
        &first,
        &root_dir,
        &[
            "--json",
            "crl",
            "--publish",
            &first_dir,
            "--publish",
            &second_dir,
        ],
    );
    assert!(crl.contains("\"entries\": 1"), "{crl}");
    first.ok(&["crl"]);
    second.ok(&["crl"]);
    // Each CA directory now publishes the whole set: the root's CRL, then its own.
    for ca in [&first, &second] {
        let set = std::fs::read_to_string(ca.file("crl-set.pem")).unwrap();
        assert_eq!(set.matches("BEGIN X509 CRL").count(), 2, "{set}");
    }

    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap();
    let bundle = first.path("bundle.pem");
    std::fs::write(
        &bundle,
        [
            read(root_dir.join("root.crt")),
            read(first.file("issuing.crt")),
            read(second.file("issuing.crt")),
        ]
        .concat(),
    )
    .unwrap();
    let intermediates = first.path("intermediates.pem");
    std::fs::write(
        &intermediates,
        [
            read(first.file("issuing.crt")),
            read(second.file("issuing.crt")),
        ]
        .concat(),
    )
    .unwrap();
    let crls = first.path("crls.pem");
    std::fs::write(
        &crls,
        [
            read(first.file("crl-set.pem")),
            read(second.file("crl.pem")),
        ]
        .concat(),
    )
    .unwrap();
    Hierarchy {
        first,
        second,
        root_dir,
        valid,
        revoked,
        under_revoked_ca,
        bundle,
        crls,
        intermediates,
    }
}

fn openssl_verify_all(hierarchy: &Hierarchy, crls: &Path, certificate: &Path) -> (bool, String) {
    let output = run(Command::new(openssl())
        .args(["verify", "-crl_check_all", "-CAfile"])
        .arg(hierarchy.root_dir.join("root.crt"))
        .arg("-untrusted")
        .arg(&hierarchy.intermediates)
        .arg("-CRLfile")
        .arg(crls)
        .arg(certificate));
    (
        output.status.success(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

#[test]
fn openssl_checks_every_level_of_the_chain() {
    let hierarchy = hierarchy();
    let (ok, report) = openssl_verify_all(&hierarchy, &hierarchy.crls, &hierarchy.valid.0);
    assert!(ok, "{report}");
    let (ok, report) = openssl_verify_all(&hierarchy, &hierarchy.crls, &hierarchy.revoked.0);
    assert!(!ok && report.contains("certificate revoked"), "{report}");
    let (ok, report) =
        openssl_verify_all(&hierarchy, &hierarchy.crls, &hierarchy.under_revoked_ca.0);
    assert!(
        !ok && report.contains("certificate revoked") && report.contains("at 1 depth"),
        "{report}"
    );
    // Without the root's CRL, -crl_check_all cannot check the issuing CA at all.
    let (ok, report) = openssl_verify_all(
        &hierarchy,
        &hierarchy.first.file("crl.pem"),
        &hierarchy.valid.0,
    );
    assert!(
        !ok && report.contains("unable to get certificate CRL"),
        "{report}"
    );
    // And the second CA's own CRL does not list its devices: only the root's does.
    let second_crl = succeeded(
        "openssl crl",
        &run(Command::new(openssl())
            .args(["crl", "-noout", "-text", "-in"])
            .arg(hierarchy.second.file("crl.pem"))),
    );
    assert!(
        second_crl.contains("No Revoked Certificates"),
        "{second_crl}"
    );
}

fn nginx() -> PathBuf {
    require_tool(
        "nginx",
        "run `apt-get install nginx` (or ./scripts/test, which installs it); the test starts its own",
    )
}

/// nginx in the foreground on a loopback port, with a temporary prefix; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    prefix: tempfile::TempDir,
}

impl Nginx {
    fn start(server: &(PathBuf, PathBuf), bundle: &Path, crls: &Path) -> Self {
        let prefix = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = prefix.path().display().to_string();
        let config = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               access_log {dir}/access.log;\n\
               client_body_temp_path {dir}/client_body;\n\
               proxy_temp_path {dir}/proxy;\n\
               fastcgi_temp_path {dir}/fastcgi;\n\
               uwsgi_temp_path {dir}/uwsgi;\n\
               scgi_temp_path {dir}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {certificate};\n\
                 ssl_certificate_key {key};\n\
                 ssl_verify_client on;\n\
                 ssl_verify_depth 2;\n\
                 ssl_client_certificate {bundle};\n\
                 ssl_crl {crls};\n\
                 location / {{ return 200 \"hello $ssl_client_s_dn\\n\"; }}\n\
               }}\n\
             }}\n",
            certificate = server.0.display(),
            key = server.1.display(),
            bundle = bundle.display(),
            crls = crls.display(),
        );
        let config_path = prefix.path().join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(prefix.path().join("stderr.log")).unwrap();
        let child = Command::new(nginx())
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut nginx = Self {
            child,
            port,
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.logs());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 30 s: {}",
                nginx.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.prefix.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// The HTTP status nginx answers a client with this certificate and key.
    fn status(&self, root: &Path, client: &(PathBuf, PathBuf), chain: &Path) -> u16 {
        // The client sends its certificate and its issuing CA, as devices do.
        let with_chain = self.prefix.path().join("client.pem");
        std::fs::write(
            &with_chain,
            [
                std::fs::read(&client.0).unwrap(),
                std::fs::read(chain).unwrap(),
            ]
            .concat(),
        )
        .unwrap();
        let output = run(
            Command::new(require_tool("curl", "run `apt-get install curl`"))
                .args([
                    "-sS",
                    "--max-time",
                    "30",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--cacert",
                ])
                .arg(root)
                .arg("--cert")
                .arg(&with_chain)
                .arg("--key")
                .arg(&client.1)
                .arg(format!("https://127.0.0.1:{}/", self.port)),
        );
        text(&output.stdout).trim().parse().unwrap_or(0)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nginx_with_the_crl_set_accepts_and_refuses_the_same() {
    let hierarchy = hierarchy();
    let (_, certificate, key) = hierarchy.first.issue(
        "nginx",
        &[
            "--profile",
            "storage",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
    );
    let server_chain = hierarchy.first.path("nginx-chain.pem");
    std::fs::write(
        &server_chain,
        [
            std::fs::read(&certificate).unwrap(),
            std::fs::read(hierarchy.first.file("issuing.crt")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let nginx = Nginx::start(&(server_chain, key), &hierarchy.bundle, &hierarchy.crls);
    let root = hierarchy.root_dir.join("root.crt");
    let first_issuing = hierarchy.first.file("issuing.crt");
    let second_issuing = hierarchy.second.file("issuing.crt");
    assert_eq!(
        nginx.status(&root, &hierarchy.valid, &first_issuing),
        200,
        "{}",
        nginx.logs()
    );
    assert_eq!(
        nginx.status(&root, &hierarchy.revoked, &first_issuing),
        400,
        "{}",
        nginx.logs()
    );
    assert_eq!(
        nginx.status(&root, &hierarchy.under_revoked_ca, &second_issuing),
        400,
        "{}",
        nginx.logs()
    );
    let logs = nginx.logs();
    assert!(logs.contains("certificate revoked"), "{logs}");
}

#[test]
fn a_ca_made_by_init_adopts_an_offline_root() {
    let ca = TestCa::new();
    let root_dir = ca.path("root");
    assert!(ca.file("root.key").is_file());
    root_command(&ca, &root_dir, &["adopt"]);
    assert!(
        !ca.file("root.key").exists(),
        "the root key stayed in the CA directory"
    );
    assert!(root_dir.join("root.key").is_file());
    // The CA still issues and revokes; the root signs its CRL from its new home.
    let (_, certificate, _) = ca.issue_device("device", VALID);
    let ca_dir = ca.dir.to_str().unwrap().to_owned();
    root_command(&ca, &root_dir, &["crl", "--publish", &ca_dir]);
    ca.ok(&["crl"]);
    let output = run(Command::new(openssl())
        .args(["verify", "-crl_check_all", "-CAfile"])
        .arg(ca.file("root.crt"))
        .arg("-untrusted")
        .arg(ca.file("issuing.crt"))
        .arg("-CRLfile")
        .arg(ca.file("crl-set.pem"))
        .arg(&certificate));
    succeeded("openssl verify -crl_check_all", &output);
    let shown = ca.ok(&["--json", "audit", "list"]);
    assert!(shown.contains("root-adopt"), "{shown}");
    // Adopting twice finds nothing to move.
    let error = ca.fails(&[
        "root",
        "--root-dir",
        ca.path("again").to_str().unwrap(),
        "adopt",
    ]);
    assert!(error.contains("no root.key"), "{error}");
}
