//! A ward for the integration tests: a real CA (wardseal-pki through wardseal-net's
//! `TestPki`), an embedded chain with the contracts deployed, rules and devices
//! registered, and a collector configuration file pointing at them.

#![allow(dead_code, reason = "each test file uses a different subset")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test helper fails the test by panicking"
)]

use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::Address;
use wardseal_collector::client::{Connection, Endpoint, Reply};
use wardseal_collector::config::{Config, load_config};
use wardseal_contracts::{
    AnyBackend, Device, EmbeddedChain, Ledger, Range, Role, TypeRule, WideDecimal,
};
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, Identity, RuleId};
use wardseal_core::reading::Timestamp;
use wardseal_net::client::ClientTlsSettings;
use wardseal_testkit::{CertificateFiles, TestPki};

pub(crate) mod alerts;
pub(crate) mod storage;

pub(crate) const WARD: &str = "ward-7";
pub(crate) const GROUP: u32 = 3;
pub(crate) const RULE: u32 = 7;
pub(crate) const MAX_PER_MINUTE: u32 = 3;

pub(crate) struct Ward {
    pub(crate) pki: TestPki,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ledger: Ledger<AnyBackend>,
    pub(crate) collector: CertificateFiles,
    pub(crate) config_path: PathBuf,
}

pub(crate) fn epc(serial: u64) -> Sgtin96 {
    format!("urn:epc:tag:sgtin-96:3.0614141.812345.{serial}")
        .parse()
        .unwrap()
}

impl Ward {
    /// A ward whose registry holds `devices` (EPC serial, group, active).
    pub(crate) async fn new(devices: &[(u64, u32, bool)], extra_config: &str) -> Self {
        Self::build(devices, extra_config, MAX_PER_MINUTE).await
    }

    /// A ward whose heart-rate rule allows `max_per_minute` readings a minute (0: any).
    pub(crate) async fn build(
        devices: &[(u64, u32, bool)],
        extra_config: &str,
        max_per_minute: u32,
    ) -> Self {
        Self::build_with(devices, extra_config, max_per_minute, None).await
    }

    /// A ward whose collector delivers to storage on `storage_port` (127.0.0.1) and takes
    /// its assignments from storage's API; its heart-rate rule has no rate limit.
    pub(crate) async fn linked(
        devices: &[(u64, u32, bool)],
        extra_config: &str,
        storage_port: u16,
    ) -> Self {
        Self::build_with(devices, extra_config, 0, Some(storage_port)).await
    }

    async fn build_with(
        devices: &[(u64, u32, bool)],
        extra_config: &str,
        max_per_minute: u32,
        storage_port: Option<u16>,
    ) -> Self {
        let pki = TestPki::new().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let chain = EmbeddedChain::open(dir.path().join("chain")).unwrap();
        let admin = Address::repeat_byte(0x11);
        let backend: AnyBackend = chain.backend(admin).into();
        let ledger = Ledger::deploy(backend).await.unwrap();
        ledger.grant_role(Role::Anchorer, admin).await.unwrap();
        ledger.create_rule(RULE).await.unwrap();
        let range = Range::new(
            WideDecimal::parse("30").unwrap(),
            WideDecimal::parse("220").unwrap(),
        )
        .unwrap();
        ledger
            .set_type_rule(
                RULE,
                &TypeRule::new(1, "/min", vec![range], max_per_minute).unwrap(),
            )
            .await
            .unwrap();
        ledger.set_group_rule(GROUP, RULE).await.unwrap();
        for &(serial, group, active) in devices {
            let device = Device {
                epc: epc(serial).to_bytes(),
                group,
                rule_id: RULE,
                ward: "ward-7".into(),
                active: true,
            };
            ledger.register_device(&device).await.unwrap();
            if !active {
                ledger.deactivate_device(device.epc).await.unwrap();
            }
        }
        ledger.suite().save(&dir.path().join("suite.json")).unwrap();
        let collector = pki
            .issue(Identity::collector(
                "ward-7".parse().unwrap(),
                None,
                None,
                None,
            ))
            .await
            .unwrap();
        let config_path = dir.path().join("collector.toml");
        let config = format!(
            r#"
{collector_section}
[tls]
certificate = "{certificate}"
key = "{key}"
ca_bundle = "{bundle}"
crls = ["{crl}"]
crl_refresh_secs = 3600
[spool]
path = "{dir}/spool.db"
{storage_section}
[ledger]
suite = "{dir}/suite.json"
embedded_dir = "{dir}/chain"
account = "0x1111111111111111111111111111111111111111"
anchor_interval_secs = 3600
follow_interval_ms = 50
{extra_config}
"#,
            certificate = collector.certificate.display(),
            key = collector.key.display(),
            bundle = pki.ca_bundle().display(),
            crl = pki.crl().display(),
            dir = dir.path().display(),
            storage_section = match storage_port {
                Some(port) => format!(
                    "[storage]\nurl = \"https://127.0.0.1:{port}\"\nassignments_refresh_secs = 1"
                ),
                None => format!(
                    "[storage]\nurl = \"https://127.0.0.1:9\"\nassignments_file = \"{}/assignments.json\"",
                    dir.path().display()
                ),
            },
            collector_section = if extra_config.contains("[collector]") {
                String::new()
            } else {
                "[collector]\nward = \"ward-7\"\nlisten = \"127.0.0.1:0\"\ndrain_secs = 5".into()
            },
        );
        std::fs::write(&config_path, config).unwrap();
        std::fs::write(
            dir.path().join("assignments.json"),
            format!(
                r#"{{"ward":"ward-7","as_of":"{}","assignments":[]}}"#,
                Timestamp::now()
            ),
        )
        .unwrap();
        Self {
            pki,
            dir,
            ledger,
            collector,
            config_path,
        }
    }

    pub(crate) fn config(&self) -> Config {
        load_config(&self.config_path, Vec::new()).unwrap()
    }

    /// Writes the ward's assignments file (device EPC serial → patient).
    pub(crate) fn assign(&self, pairs: &[(u64, &str)]) {
        let assignments: Vec<String> = pairs
            .iter()
            .map(|(serial, patient)| {
                format!(
                    r#"{{"device":"{}","patient":"{patient}","since":"2026-01-01T00:00:00Z"}}"#,
                    epc(*serial).tag_uri()
                )
            })
            .collect();
        std::fs::write(
            self.dir.path().join("assignments.json"),
            format!(
                r#"{{"ward":"ward-7","as_of":"{}","assignments":[{}]}}"#,
                Timestamp::now(),
                assignments.join(",")
            ),
        )
        .unwrap();
    }

    pub(crate) async fn device(&self, serial: u64, group: u32) -> CertificateFiles {
        self.pki
            .issue(Identity::device(epc(serial), GroupId(group), RuleId(RULE)))
            .await
            .unwrap()
    }

    pub(crate) fn client_config(
        &self,
        certificate: &CertificateFiles,
    ) -> Arc<rustls::ClientConfig> {
        ClientTlsSettings::new(
            self.pki.ca_bundle(),
            &certificate.certificate,
            &certificate.key,
        )
        .client_config(&[b"h2", b"http/1.1"])
        .unwrap()
    }

    pub(crate) async fn connect(&self, port: u16, certificate: &CertificateFiles) -> Connection {
        Connection::open(&endpoint(port), self.client_config(certificate))
            .await
            .unwrap()
    }

    /// Fails the test if a new connection as the revoked `certificate` gets an answer to
    /// reading `sequence`: the handshake or the request must fail (no session resumption
    /// skips the revocation check).
    pub(crate) async fn assert_fresh_connection_refused(
        &self,
        port: u16,
        certificate: &CertificateFiles,
        sequence: u64,
    ) {
        let fresh = Connection::open(&endpoint(port), self.client_config(certificate)).await;
        if let Ok(connection) = fresh {
            let reply = connection
                .send(
                    hyper::Method::POST,
                    "/v1/readings",
                    heart_rate("72", sequence, Timestamp::now()).into_bytes(),
                )
                .await;
            assert!(reply.is_err(), "a revoked device got an answer: {reply:?}");
        }
    }
}

pub(crate) fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}

pub(crate) fn heart_rate(value: &str, sequence: u64, time: Timestamp) -> String {
    format!(
        r#"{{"type":"heart_rate","value":{value},"unit":"/min","time":"{time}","seq":{sequence}}}"#
    )
}

pub(crate) async fn post(connection: &Connection, body: &str) -> (u16, serde_json::Value) {
    let Reply { status, body, .. } = connection
        .send(
            hyper::Method::POST,
            "/v1/readings",
            body.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

pub(crate) fn code(json: &serde_json::Value) -> &str {
    json["code"].as_str().unwrap_or("")
}
