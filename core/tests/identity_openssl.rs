//! Interop: the identity extension DER that wardseal writes is byte for byte what openssl
//! builds from the same ASN.1 values (`openssl asn1parse -genconf`), and openssl parses it.
//!
//! This test needs `/usr/bin/openssl` and fails without it: a missing interop check must
//! not pass silently.
#![expect(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::fmt::Write as _;

mod common;
use common::{Scratch, path_str};
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{
    AuthorityKind, EthereumAddress, GroupId, IDENTITY_EXTENSION_OID, IDENTITY_EXTENSION_OID_STRING,
    Identity, PATIENT_DATA_SIGNING_OID, PATIENT_DATA_SIGNING_OID_STRING, Role, RuleId, SubjectId,
};

/// The `asn1parse -genconf` description of `identity`, written from its accessors
/// following the ASN.1 module (not from wardseal's encoder).
fn genconf(identity: &Identity) -> String {
    let role = match identity.role() {
        Role::Device => 0,
        Role::Collector => 1,
        Role::Storage => 2,
        Role::Staff => 3,
        Role::Patient => 4,
        Role::Admin => 5,
        Role::Authority => 6,
    };
    let mut config = String::from("asn1 = SEQUENCE:identity\n[identity]\nversion = INTEGER:1\n");
    writeln!(config, "role = ENUMERATED:{role}").unwrap();
    if let Some(epc) = identity.device_id() {
        writeln!(
            config,
            "deviceId = IMPLICIT:0,FORMAT:HEX,OCTETSTRING:{}",
            epc.to_hex()
        )
        .unwrap();
    }
    if let Some(GroupId(group)) = identity.group_id() {
        writeln!(config, "groupId = IMPLICIT:1,INTEGER:{group}").unwrap();
    }
    if let Some(RuleId(rule)) = identity.rule_id() {
        writeln!(config, "ruleId = IMPLICIT:2,INTEGER:{rule}").unwrap();
    }
    if let Some(subject) = identity.subject_id() {
        let text = subject.as_str();
        if text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        {
            writeln!(config, "subjectId = IMPLICIT:3,UTF8String:{text}").unwrap();
        } else {
            // openssl's config syntax gives '#', '"', '$' and ';' meanings, and it has no
            // hex form for UTF8String. IMPLICIT [3] replaces the universal tag anyway, so
            // an OCTET STRING of the same bytes encodes identically.
            writeln!(
                config,
                "subjectId = IMPLICIT:3,FORMAT:HEX,OCTETSTRING:{}",
                hex::encode(text)
            )
            .unwrap();
        }
    }
    if let Some(address) = identity.ethereum_address() {
        writeln!(
            config,
            "ethereumAddress = IMPLICIT:4,FORMAT:HEX,OCTETSTRING:{}",
            hex::encode(address.as_bytes())
        )
        .unwrap();
    }
    if let Some(kind) = identity.authority_kind() {
        let value = match kind {
            AuthorityKind::Laboratory => 0,
            AuthorityKind::Insurer => 1,
            AuthorityKind::Pharmacy => 2,
            AuthorityKind::Hospital => 3,
        };
        writeln!(config, "authorityKind = IMPLICIT:5,ENUMERATED:{value}").unwrap();
    }
    config
}

fn subject(text: &str) -> SubjectId {
    text.parse().unwrap()
}

fn address(text: &str) -> EthereumAddress {
    text.parse().unwrap()
}

fn identities() -> Vec<Identity> {
    let epc: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
        .parse()
        .unwrap();
    let other_epc: Sgtin96 = "3066C4409047E140075BCD15".parse().unwrap();
    let eth = address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    vec![
        Identity::device(epc.clone(), GroupId(3), RuleId(128)),
        Identity::device(other_epc, GroupId(0), RuleId(u32::MAX)),
        Identity::device(epc, GroupId(32_768), RuleId(8_388_608)),
        Identity::collector(
            subject("ward-3A"),
            Some(GroupId(2)),
            Some(RuleId(255)),
            Some(eth),
        ),
        Identity::collector(subject("ward-ICU"), None, None, None),
        Identity::storage(None, None),
        Identity::storage(Some(subject("storage-1")), Some(eth)),
        Identity::staff(subject("nurse-0042")),
        Identity::patient(subject("P-000123")),
        Identity::patient(subject(&"~".repeat(64))),
        Identity::admin(Some(subject("it-ops#1=\"x\";$")), Some(eth)),
        Identity::admin(None, None),
        Identity::authority(subject("lab-0007"), AuthorityKind::Laboratory),
        Identity::authority(subject("insurer-12"), AuthorityKind::Insurer),
        Identity::authority(subject("pharmacy-3"), AuthorityKind::Pharmacy),
        Identity::authority(subject("hospital-north"), AuthorityKind::Hospital),
    ]
}

#[test]
fn encoding_matches_openssl_genconf_byte_for_byte() {
    let scratch = Scratch::new("identity-openssl");
    for (index, identity) in identities().iter().enumerate() {
        let config = scratch.path(&format!("{index}.cnf"));
        let generated = scratch.path(&format!("{index}.openssl.der"));
        std::fs::write(&config, genconf(identity)).unwrap();
        scratch.openssl_text(&[
            "asn1parse",
            "-genconf",
            path_str(&config),
            "-out",
            path_str(&generated),
            "-noout",
        ]);
        let expected = std::fs::read(&generated).unwrap();
        assert_eq!(
            hex::encode(identity.to_der()),
            hex::encode(&expected),
            "{identity:?}"
        );
        assert_eq!(&Identity::from_der(&expected).unwrap(), identity);
    }
}

#[test]
fn openssl_parses_what_wardseal_writes() {
    let scratch = Scratch::new("identity-openssl");
    for (index, identity) in identities().iter().enumerate() {
        let der = scratch.path(&format!("{index}.der"));
        std::fs::write(&der, identity.to_der()).unwrap();
        let dump =
            scratch.openssl_text(&["asn1parse", "-inform", "DER", "-in", path_str(&der), "-i"]);
        let lines: Vec<&str> = dump.lines().collect();
        assert!(lines[0].contains("cons: SEQUENCE"), "{dump}");
        assert!(
            lines[1].contains("INTEGER") && lines[1].ends_with(":01"),
            "{dump}"
        );
        assert!(lines[2].contains("ENUMERATED"), "{dump}");
        let optional = [
            identity.device_id().is_some(),
            identity.group_id().is_some(),
            identity.rule_id().is_some(),
            identity.subject_id().is_some(),
            identity.ethereum_address().is_some(),
            identity.authority_kind().is_some(),
        ];
        let expected_tags: Vec<String> = (0..6)
            .filter(|&tag| optional[tag])
            .map(|tag| format!("cont [ {tag} ]"))
            .collect();
        let found_tags: Vec<String> = lines[3..]
            .iter()
            .map(|line| {
                let start = line.find("cont [").expect("only context tags follow");
                line[start..start + 10].to_owned()
            })
            .collect();
        assert_eq!(found_tags, expected_tags, "{dump}");
    }
}

#[test]
fn oids_match_openssl_encoding() {
    let scratch = Scratch::new("identity-openssl");
    for (oid, text) in [
        (IDENTITY_EXTENSION_OID, IDENTITY_EXTENSION_OID_STRING),
        (PATIENT_DATA_SIGNING_OID, PATIENT_DATA_SIGNING_OID_STRING),
    ] {
        let out = scratch.path("oid.der");
        scratch.openssl_text(&[
            "asn1parse",
            "-genstr",
            &format!("OID:{text}"),
            "-out",
            path_str(&out),
            "-noout",
        ]);
        let expected = std::fs::read(&out).unwrap();
        let mut ours = vec![0x06, u8::try_from(oid.as_bytes().len()).unwrap()];
        ours.extend_from_slice(oid.as_bytes());
        assert_eq!(ours, expected, "{text}");
    }
}
