//! The `wardseal-ledger` binary, end to end on an embedded chain and on anvil.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a failing test"
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

struct Cli<'a> {
    dir: &'a Path,
    chain: Vec<String>,
}

impl Cli<'_> {
    fn run(&self, key: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wardseal-ledger"))
            .args(&self.chain)
            .arg("--key-file")
            .arg(self.dir.join(key))
            .arg("--suite")
            .arg(self.dir.join("suite.json"))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, key: &str, args: &[&str]) -> String {
        let output = self.run(key, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?} failed: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    }

    fn fails(&self, key: &str, args: &[&str]) -> String {
        let output = self.run(key, args);
        assert!(!output.status.success(), "{args:?} should have failed");
        String::from_utf8(output.stderr).unwrap()
    }
}

fn write_key(dir: &Path, name: &str, index: usize) {
    let signer = common::signer(index);
    let path = dir.join(name);
    std::fs::write(&path, hex::encode(signer.to_bytes())).unwrap();
    // The CLI refuses key files others may read.
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&path, private).unwrap();
}

/// `rule set 7 --type …` as the admin.
fn set_rule_7(cli: &Cli<'_>, type_and_limits: &[&str]) {
    let mut args = vec!["rule", "set", "7", "--type"];
    args.extend_from_slice(type_and_limits);
    cli.ok("admin.key", &args);
}

fn admin_session(cli: &Cli<'_>) {
    write_key(cli.dir, "admin.key", 0);
    write_key(cli.dir, "other.key", 1);
    let other = common::address(1).to_string();

    assert!(cli.ok("admin.key", &["deploy"]).contains("AuditAnchor"));
    cli.ok("admin.key", &["rule", "create", "7"]);
    set_rule_7(
        cli,
        &["heart_rate", "--range", "30..220", "--max-per-minute", "6"],
    );
    set_rule_7(
        cli,
        &["blood_pressure", "--range", "60..250", "--range", "30..150"],
    );
    set_rule_7(
        cli,
        &["ecg", "--range", "-5.5..5.5", "--range", "-5.5..5.5"],
    );
    cli.ok(
        "admin.key",
        &["rule", "assign", "--group", "3", "--rule", "7"],
    );
    let shown = cli.ok("admin.key", &["rule", "show"]);
    assert!(
        shown.contains("heart_rate [/min] 30..220 at most 6/min"),
        "{shown}"
    );
    assert!(
        shown.contains("blood_pressure [mm[Hg]] 60..250 30..150"),
        "{shown}"
    );
    assert!(shown.contains("group 3 follows rule 7"), "{shown}");
    assert!(
        shown.contains("ecg [mV] -5.5..5.5 -5.5..5.5 no rate limit"),
        "{shown}"
    );
    // Alarm limits on a rule, and a patient's own set by their responsible clinician.
    set_rule_7(
        cli,
        &[
            "spo2",
            "--range",
            "0..100",
            "--alarm",
            "<=91:high",
            "--alarm",
            "<=93:medium",
        ],
    );
    let shown = cli.ok("admin.key", &["rule", "show", "7"]);
    assert!(
        shown.contains("spo2 [%] 0..100 no rate limit alarms 0:<=91:high 0:<=93:medium"),
        "{shown}"
    );
    let own = [
        "patient",
        "set-limits",
        "--patient",
        "P-7",
        "--type",
        "spo2",
        "--alarm",
        "<=85:high",
    ];
    let refused = cli.fails("other.key", &own);
    assert!(refused.contains("responsible for patient"), "{refused}");
    cli.ok(
        "admin.key",
        &[
            "patient",
            "clinician",
            "--patient",
            "P-7",
            "--clinician",
            &other,
        ],
    );
    cli.ok("other.key", &own);
    let shown = cli.ok(
        "admin.key",
        &[
            "patient",
            "show-limits",
            "--patient",
            "P-7",
            "--type",
            "spo2",
        ],
    );
    assert_eq!(shown.trim(), "0:<=85:high");
    // Not a rule admin: refused with the contract's error.
    let refused = cli.fails(
        "other.key",
        &["rule", "assign", "--group", "4", "--rule", "7"],
    );
    assert!(refused.contains("lacks role"), "{refused}");

    let epc = "3074257BF7194E4000001A85";
    let register = [
        "device", "register", "--epc", epc, "--group", "3", "--rule", "7", "--ward", "ward-3A",
    ];
    cli.ok("admin.key", &register);
    assert!(
        cli.fails("admin.key", &register)
            .contains("already registered")
    );
    // The same device named by its EPC URI is the same registry key.
    let by_uri = [
        "device",
        "register",
        "--epc",
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
        "--group",
        "3",
        "--rule",
        "7",
        "--ward",
        "ward-3A",
    ];
    assert!(
        cli.fails("admin.key", &by_uri)
            .contains("already registered")
    );
    let malformed = cli.fails(
        "admin.key",
        &[
            "device",
            "show",
            "--epc",
            "urn:epc:id:sgtin:614141.812345.6789",
        ],
    );
    assert!(malformed.contains("company prefix"), "{malformed}");
    cli.ok("admin.key", &["device", "deactivate", "--epc", epc]);
    assert!(
        cli.ok("admin.key", &["device", "list"])
            .contains(&format!("{epc} group 3 rule 7 ward ward-3A inactive"))
    );

    let root = format!("0x{}", "ab".repeat(32));
    let log = format!("0x{}", "01".repeat(32));
    let add = [
        "anchor", "add", "--log-id", &log, "--root", &root, "--count", "1000", "--first", "1",
        "--last", "2",
    ];
    assert!(cli.fails("admin.key", &add).contains("lacks role"));
    cli.ok(
        "admin.key",
        &["role", "grant", "anchorer", &common::address(0).to_string()],
    );
    assert!(cli.ok("admin.key", &add).contains("anchored in block"));
    assert!(
        cli.ok("admin.key", &["anchor", "verify", &root])
            .contains("\"count\": 1000")
    );
    assert!(
        cli.fails("admin.key", &["anchor", "verify", &log])
            .contains("not anchored")
    );
    assert!(cli.ok("admin.key", &["anchors", "list"]).contains(&root));

    let patient = common::address(0).to_string();
    let consent = [
        "consent",
        "grant",
        "--patient",
        &patient,
        "--authority",
        &other,
    ];
    assert!(
        cli.fails("other.key", &consent)
            .contains("may not change the consent")
    );
    cli.ok("admin.key", &consent);
    assert_eq!(
        cli.ok(
            "other.key",
            &[
                "consent",
                "show",
                "--patient",
                &patient,
                "--authority",
                &other
            ]
        )
        .trim(),
        "true"
    );
}

/// Authorities after `admin_session`: a registrar registers and binds, only the patient
/// (other.key) grants and revokes, and `check` says what storage would decide.
fn authority_session(cli: &Cli<'_>) {
    let patient = common::address(1).to_string();
    cli.ok(
        "admin.key",
        &["authority", "register", "lab-7", "--kind", "laboratory"],
    );
    let unknown_kind = cli.fails(
        "admin.key",
        &["authority", "register", "clinic-1", "--kind", "clinic"],
    );
    assert!(
        unknown_kind.contains("laboratory, insurer"),
        "{unknown_kind}"
    );
    let refused = cli.fails(
        "other.key",
        &["authority", "register", "lab-8", "--kind", "laboratory"],
    );
    assert!(refused.contains("lacks role"), "{refused}");
    cli.ok(
        "admin.key",
        &["authority", "bind", "lab-7-1", "--organisation", "lab-7"],
    );
    let check = [
        "authority",
        "check",
        "--subject",
        "lab-7-1",
        "--patient",
        &patient,
    ];
    assert!(cli.fails("admin.key", &check).contains("no_consent"));
    cli.ok("other.key", &["authority", "grant", "lab-7"]);
    assert!(cli.ok("admin.key", &check).contains("\"consent\""));
    let shown = cli.ok(
        "admin.key",
        &["authority", "show", "lab-7", "--patient", &patient],
    );
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["kind"], "laboratory");
    assert_eq!(shown["subjects"][0], "lab-7-1");
    assert_eq!(shown["consent"], true);
    cli.ok("admin.key", &["authority", "deactivate", "lab-7"]);
    assert!(
        cli.ok("admin.key", &["authority", "list"])
            .contains("lab-7 laboratory inactive subjects [lab-7-1]")
    );
    assert!(
        cli.fails("admin.key", &check)
            .contains("authority_inactive")
    );
    cli.ok("admin.key", &["authority", "activate", "lab-7"]);
    cli.ok("other.key", &["authority", "revoke", "lab-7"]);
    assert!(cli.fails("admin.key", &check).contains("no_consent"));
    let again = cli.fails("other.key", &["authority", "revoke", "lab-7"]);
    assert!(again.contains("does not have the consent"), "{again}");
}

#[test]
fn admin_session_on_embedded_chain() {
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("chain");
    let cli = Cli {
        dir: dir.path(),
        chain: vec!["--embedded".into(), chain_dir.display().to_string()],
    };
    admin_session(&cli);
    authority_session(&cli);
}

#[tokio::test]
async fn admin_session_on_anvil() {
    let fixture = common::anvil().await;
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: dir.path(),
        chain: vec!["--rpc".into(), fixture.node.url()],
    };
    admin_session(&cli);
    authority_session(&cli);
}

#[test]
fn key_new_writes_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k");
    let output = Command::new(env!("CARGO_BIN_EXE_wardseal-ledger"))
        .args(["key", "new"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success());
    let address = String::from_utf8(output.stdout).unwrap();
    assert!(address.trim().starts_with("0x") && address.trim().len() == 42);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // It refuses to overwrite a key.
    let again = Command::new(env!("CARGO_BIN_EXE_wardseal-ledger"))
        .args(["key", "new"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!again.status.success());
}
