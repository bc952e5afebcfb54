//! `wardseal-pki`: the hospital CA's command line. Argument parsing and output only; the
//! work is in the `wardseal_pki` library.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;
use wardseal_card::KeySelector;
use wardseal_core::identity::{
    EthereumAddress, GroupId, Identity, IdentityFields, Role, RuleId, SubjectId,
};
use wardseal_pki::batch::BatchOptions;
use wardseal_pki::ca::{Ca, InitOptions, KeyPlacement, Secrets, SubjectKey};
use wardseal_pki::card::{self, EnrollOptions, SigningKeySource, TokenChoice};
use wardseal_pki::describe::CertificateDescription;
use wardseal_pki::inventory::{Filter, Status, format_time};
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::profile::Request;
use wardseal_pki::serial::SerialNumber;
use wardseal_pki::token::Pkcs11Uri;

/// The wardseal hospital CA: issues and revokes the certificates of devices, collectors,
/// storage servers, staff, patient cards and administrators.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// The CA directory.
    #[arg(
        long,
        global = true,
        env = "WARDSEAL_CA_DIR",
        default_value = "wardseal-ca"
    )]
    ca_dir: PathBuf,
    /// Read the CA key passphrase from the first line of this file.
    #[arg(long, global = true, conflicts_with = "passphrase_env")]
    passphrase_file: Option<PathBuf>,
    /// Read the CA key passphrase from this environment variable.
    #[arg(long, global = true, value_name = "VARIABLE")]
    passphrase_env: Option<String>,
    /// Read the token PIN from the first line of this file.
    #[arg(long, global = true, conflicts_with = "pin_env")]
    pin_file: Option<PathBuf>,
    /// Read the token PIN from this environment variable.
    #[arg(long, global = true, value_name = "VARIABLE")]
    pin_env: Option<String>,
    /// Who is recorded in the audit log (default: $USER).
    #[arg(long, global = true)]
    actor: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a CA: root and issuing (path length 0) keys and certificates, and the database.
    Init(InitArgs),
    /// Issue one certificate from a CSR or a generated key.
    Issue(IssueArgs),
    /// Issue device certificates for every row of a CSV file (epc,group,rule,ward[,csr]), all or none.
    Batch(BatchArgs),
    /// Revoke a certificate by serial or EPC.
    Revoke(RevokeArgs),
    /// Sign a CRL (written to <ca-dir>/crl.pem), or serve fresh CRLs over HTTP.
    Crl(CrlArgs),
    /// List certificates.
    List(ListArgs),
    /// Show one certificate, with its wardseal identity in words.
    Show(ShowArgs),
    /// Verify a certificate: chain, validity, identity and (with --crl) revocation. Exit 1 when it fails.
    Verify(VerifyArgs),
    /// Issue a new certificate with the same identity as SERIAL, recording the link.
    Renew(RenewArgs),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Patients' smart cards and tokens: list, enroll, sign, verify.
    Card(CardArgs),
}

#[derive(Args)]
struct CardArgs {
    /// PKCS#11 module (default: $WARDSEAL_PKCS11_MODULE, else OpenSC's opensc-pkcs11.so).
    #[arg(long, global = true)]
    module: Option<PathBuf>,
    /// Read the card's PIN from the first line of this file (else a prompt).
    #[arg(long, global = true, conflicts_with = "card_pin_env")]
    card_pin_file: Option<PathBuf>,
    /// Read the card's PIN from this environment variable.
    #[arg(long, global = true, value_name = "VARIABLE")]
    card_pin_env: Option<String>,
    #[command(subcommand)]
    command: CardCommand,
}

#[derive(Subcommand)]
enum CardCommand {
    /// List the module's tokens (label, serial, flags, public keys and certificates) and the PC/SC readers.
    List,
    /// Generate a key on a patient's card, issue its patient certificate and write it back to the card.
    Enroll(EnrollArgs),
    /// Sign a file with a card key (or an encrypted key file); writes the signature.
    Sign(SignArgs),
    /// Verify a file's signature with a certificate's key. Exit 1 when it fails.
    Verify(CardVerifyArgs),
}

#[derive(Args)]
struct EnrollArgs {
    /// The patient's subject id.
    #[arg(long)]
    patient: String,
    /// The card: token label, serial number or pkcs11: URI.
    #[arg(long)]
    token: String,
    /// Label of the key and certificate on the card.
    #[arg(long, default_value = "wardseal patient")]
    key_label: String,
    /// CKA_ID of the key and certificate (hex).
    #[arg(long, default_value = "01")]
    key_id: HexBytes,
    /// Ward, recorded in the inventory.
    #[arg(long)]
    ward: Option<String>,
    /// Validity in days (default: the patient profile's).
    #[arg(long)]
    days: Option<u32>,
    /// Also write the certificate (PEM) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct SignArgs {
    /// The file to sign.
    file: PathBuf,
    /// Where the signature goes (default: FILE.sig).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The card: token label, serial number or pkcs11: URI.
    #[arg(long, required_unless_present = "key", conflicts_with = "key")]
    token: Option<String>,
    /// CKA_ID of the key on the card (hex; default: the card's only key).
    #[arg(long)]
    key_id: Option<HexBytes>,
    /// Label of the key on the card.
    #[arg(long)]
    key_label: Option<String>,
    /// Sign with this encrypted PKCS#8 key file instead (passphrase: --passphrase-file/--passphrase-env, else a prompt).
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(Args)]
struct CardVerifyArgs {
    /// The signed file.
    file: PathBuf,
    /// The signature.
    signature: PathBuf,
    /// The signer's certificate (PEM or DER).
    certificate: PathBuf,
    /// Signature algorithm (default from the certificate's key: ecdsa-p256-sha256 (DER) for P-256;
    /// also ecdsa-p256-sha256-raw, rsa-pss-sha256, dsa-sha256, ed25519).
    #[arg(long)]
    algorithm: Option<wardseal_core::signature::SignatureAlgorithm>,
}

/// A CKA_ID on the command line: hex, colons allowed.
#[derive(Clone)]
struct HexBytes(Vec<u8>);

impl std::str::FromStr for HexBytes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        hex::decode(text.trim_start_matches("0x").replace(':', ""))
            .map(Self)
            .map_err(|error| format!("expected hexadecimal bytes like 01 or 9c01: {error}"))
    }
}

#[derive(Args)]
struct InitArgs {
    /// Organisation: subject O of every certificate.
    #[arg(long)]
    organisation: String,
    /// CA key algorithm: p256, p384 or rsa3072.
    #[arg(long, default_value = "p256")]
    algorithm: KeyAlgorithm,
    /// Keep the root key on a token: pkcs11:token=…;object=…[?module-path=…].
    #[arg(long, value_name = "PKCS11_URI")]
    root_key: Option<String>,
    /// Keep the issuing key on a token: pkcs11:token=…;object=…[?module-path=…].
    #[arg(long, value_name = "PKCS11_URI")]
    issuing_key: Option<String>,
    /// CRL URL put in every certificate (http://…).
    #[arg(long)]
    crl_url: Option<String>,
    /// Days from one CRL to its next update.
    #[arg(long, default_value_t = 7)]
    crl_days: u32,
    /// Root validity in days.
    #[arg(long, default_value_t = 7300)]
    root_days: u32,
    /// Issuing CA validity in days.
    #[arg(long, default_value_t = 1825)]
    issuing_days: u32,
}

#[derive(Args)]
struct IdentityArgs {
    /// Device EPC (tag URI, pure identity URI or 24 hex digits).
    #[arg(long)]
    epc: Option<String>,
    /// Group id (device, collector).
    #[arg(long)]
    group: Option<u32>,
    /// Rule id (device, collector).
    #[arg(long)]
    rule: Option<u32>,
    /// Subject id: staff member, patient, or the collector's ward.
    #[arg(long)]
    subject_id: Option<String>,
    /// Ethereum account (collector, storage, admin).
    #[arg(long)]
    ethereum_address: Option<String>,
}

#[derive(Args)]
struct KeyArgs {
    /// PKCS#10 request (PEM or DER): only its public key is used.
    #[arg(long, conflicts_with = "key_out")]
    csr: Option<PathBuf>,
    /// Generate a key and write it here (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    key_out: Option<PathBuf>,
    /// Algorithm of a generated key: p256, p384, rsa3072, ed25519, dsa2048 (DSA 2048/256).
    #[arg(long, default_value = "p256")]
    key_algorithm: KeyAlgorithm,
}

#[derive(Args)]
struct IssueArgs {
    /// device, collector, storage, staff, patient or admin.
    #[arg(long)]
    profile: Role,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// DNS name (collector, storage).
    #[arg(long)]
    dns: Vec<String>,
    /// IP address (collector, storage).
    #[arg(long)]
    ip: Vec<IpAddr>,
    /// Email address (staff, admin).
    #[arg(long)]
    email: Vec<String>,
    /// Subject common name (default from the identity).
    #[arg(long)]
    cn: Option<String>,
    /// Ward, recorded in the inventory.
    #[arg(long)]
    ward: Option<String>,
    /// Validity in days (default per profile).
    #[arg(long)]
    days: Option<u32>,
    /// Write the certificate (PEM) here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct BatchArgs {
    /// The CSV file: epc,group,rule,ward[,csr].
    #[arg(long)]
    csv: PathBuf,
    /// Where certificates (<EPC hex>.crt) and generated keys (<EPC hex>.key) go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Algorithm of generated keys: p256, p384, rsa3072, ed25519, dsa2048 (the batch's DSA
    /// keys share one set of domain parameters).
    #[arg(long, default_value = "p256")]
    key_algorithm: KeyAlgorithm,
    /// Validity in days (default: the device profile's).
    #[arg(long)]
    days: Option<u32>,
    /// Signing threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Args)]
struct RevokeArgs {
    /// Serial number (hex, colons allowed).
    #[arg(required_unless_present = "epc", conflicts_with = "epc")]
    serial: Option<SerialNumber>,
    /// Revoke the valid certificate of this EPC instead.
    #[arg(long)]
    epc: Option<String>,
    /// RFC 5280 reason: unspecified, key-compromise, ca-compromise, affiliation-changed,
    /// superseded, cessation-of-operation, certificate-hold, privilege-withdrawn.
    #[arg(long, default_value = "unspecified")]
    reason: wardseal_pki::crl::RevocationReason,
    /// When the key was compromised or the certificate became invalid (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    invalidity_date: Option<OffsetDateTime>,
}

#[derive(Args)]
struct CrlArgs {
    /// Also write the CRL (PEM) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Serve CRLs over HTTP on this address (e.g. 127.0.0.1:8080) until interrupted.
    #[arg(long, value_name = "ADDRESS")]
    serve: Option<String>,
}

#[derive(Args)]
struct ListArgs {
    /// Only this role.
    #[arg(long)]
    role: Option<Role>,
    /// Only this group.
    #[arg(long)]
    group: Option<u32>,
    /// Only this ward.
    #[arg(long)]
    ward: Option<String>,
    /// Only valid, revoked or expired certificates.
    #[arg(long)]
    status: Option<Status>,
    /// Only valid certificates expiring within this many days.
    #[arg(long, value_name = "DAYS")]
    expiring_within: Option<u64>,
}

#[derive(Args)]
struct ShowArgs {
    /// Serial number.
    serial: SerialNumber,
    /// Print the certificate PEM as well.
    #[arg(long)]
    pem: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The certificate (PEM or DER).
    certificate: PathBuf,
    /// Check revocation against this CRL, or the CA's latest (<ca-dir>/crl.pem) if no file is given.
    #[arg(long, value_name = "CRL")]
    crl: Option<Option<PathBuf>>,
}

#[derive(Args)]
struct RenewArgs {
    /// Serial of the certificate to renew.
    serial: SerialNumber,
    /// A new key: CSR or generated (default: keep the old certificate's key).
    #[command(flatten)]
    key: KeyArgs,
    /// Validity in days (default per profile).
    #[arg(long)]
    days: Option<u32>,
    /// Write the certificate (PEM) here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exit 1 if an entry was altered, deleted or inserted.
    Verify,
    /// Print the entries.
    List,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("expected an RFC 3339 time like 2025-01-31T12:00:00Z: {error}"))
}

fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    out(&serde_json::to_string_pretty(value)?)
}

impl Cli {
    fn secrets(&self) -> Secrets {
        let source = |file: &Option<PathBuf>, env: &Option<String>| match (file, env) {
            (Some(path), _) => Some(SecretSource::File(path.clone())),
            (None, Some(name)) => Some(SecretSource::Environment(name.clone())),
            (None, None) => None,
        };
        Secrets {
            passphrase: source(&self.passphrase_file, &self.passphrase_env),
            pin: source(&self.pin_file, &self.pin_env),
        }
    }

    fn card_pin(&self, args: &CardArgs) -> Option<SecretSource> {
        match (&args.card_pin_file, &args.card_pin_env) {
            (Some(path), _) => Some(SecretSource::File(path.clone())),
            (None, Some(name)) => Some(SecretSource::Environment(name.clone())),
            (None, None) => None,
        }
    }

    fn actor(&self) -> String {
        self.actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

impl KeyArgs {
    fn subject_key(&self) -> anyhow::Result<Option<SubjectKey>> {
        match (&self.csr, &self.key_out) {
            (Some(path), _) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let csr = wardseal_pki::csr::read_csr(&bytes)
                    .with_context(|| format!("CSR {}", path.display()))?;
                Ok(Some(SubjectKey::Csr(csr)))
            }
            (None, Some(path)) => Ok(Some(SubjectKey::Generate {
                algorithm: self.key_algorithm,
                path: path.clone(),
            })),
            (None, None) => Ok(None),
        }
    }
}

fn identity(role: Role, args: &IdentityArgs) -> anyhow::Result<Identity> {
    let fields = IdentityFields {
        device_id: args.epc.as_deref().map(str::parse).transpose()?,
        group_id: args.group.map(GroupId),
        rule_id: args.rule.map(RuleId),
        subject_id: args.subject_id.as_deref().map(SubjectId::new).transpose()?,
        ethereum_address: args
            .ethereum_address
            .as_deref()
            .map(str::parse::<EthereumAddress>)
            .transpose()?,
    };
    Ok(Identity::new(role, fields)?)
}

fn emit_certificate(
    cli: &Cli,
    issued: &wardseal_pki::ca::Issued,
    path: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, &issued.pem).with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        let mut value = serde_json::to_value(issued)?;
        if path.is_none() {
            value["pem"] = serde_json::Value::String(issued.pem.clone());
        }
        json(&value)
    } else if path.is_none() {
        out(&issued.pem)
    } else {
        let key = issued
            .key_path
            .as_ref()
            .map(|path| format!(", key in {}", path.display()))
            .unwrap_or_default();
        out(&format!(
            "issued {} serial {}{key}",
            issued.record.role, issued.record.serial
        ))
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let actor = cli.actor();
    let secrets = cli.secrets();
    match &cli.command {
        Command::Init(args) => {
            let mut options = InitOptions::new(&cli.ca_dir, &args.organisation);
            options.algorithm = args.algorithm;
            for (uri, placement) in [
                (&args.root_key, &mut options.root_key),
                (&args.issuing_key, &mut options.issuing_key),
            ] {
                if let Some(uri) = uri {
                    *placement = KeyPlacement::Token(Pkcs11Uri::parse(uri)?);
                }
            }
            options.crl_url.clone_from(&args.crl_url);
            options.crl_days = args.crl_days;
            let now = OffsetDateTime::now_utc();
            options.root_validity = (now, now + time::Duration::days(i64::from(args.root_days)));
            options.issuing_validity = (
                now,
                now + time::Duration::days(i64::from(args.issuing_days)),
            );
            let ca = Ca::init(&options, &secrets, &actor).await?;
            if cli.json {
                json(ca.settings())?;
            } else {
                out(&format!(
                    "CA created in {} (root.crt, issuing.crt, chain.pem, ca.db); move root.key offline if it is a file",
                    ca.dir().display()
                ))?;
            }
        }
        Command::Issue(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let mut request = Request::new(identity(args.profile, &args.identity)?);
            request.dns_names.clone_from(&args.dns);
            request.ip_addresses.clone_from(&args.ip);
            request.emails.clone_from(&args.email);
            request.common_name.clone_from(&args.cn);
            request.ward.clone_from(&args.ward);
            request.validity_days = args.days;
            request.check()?;
            let Some(key) = args.key.subject_key()? else {
                bail!("give --csr FILE (the requester's key) or --key-out FILE (generate one)");
            };
            let signing = ca.unlock(&secrets)?;
            let issued = signing.issue(&request, &key, &actor).await?;
            emit_certificate(cli, &issued, args.out.as_ref())?;
        }
        Command::Batch(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let signing = ca.unlock(&secrets)?;
            let options = BatchOptions {
                csv: args.csv.clone(),
                out_dir: args.out_dir.clone(),
                algorithm: args.key_algorithm,
                validity_days: args.days,
                threads: args.threads,
            };
            let started = std::time::Instant::now();
            let report = signing.batch(&options, &actor).await?;
            let seconds = started.elapsed().as_secs_f64();
            if cli.json {
                let mut value = serde_json::to_value(&report)?;
                value["seconds"] = serde_json::json!(seconds);
                json(&value)?;
            } else {
                out(&format!(
                    "issued {} device certificates ({} keys generated) into {} in {seconds:.2} s",
                    report.issued,
                    report.generated_keys,
                    report.out_dir.display()
                ))?;
            }
        }
        Command::Revoke(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let serial = match (&args.serial, &args.epc) {
                (Some(serial), _) => serial.clone(),
                (None, Some(epc)) => ca.serial_for_epc(epc).await?,
                (None, None) => bail!("give a serial or --epc"),
            };
            let record = ca
                .revoke(&serial, args.reason, args.invalidity_date, &actor)
                .await?;
            if cli.json {
                json(&record)?;
            } else {
                out(&format!(
                    "revoked {} ({}); run `wardseal-pki crl` to publish",
                    record.serial, args.reason
                ))?;
            }
        }
        Command::Crl(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let signing = ca.unlock(&secrets)?;
            if let Some(address) = &args.serve {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address}"))?;
                let bound = listener.local_addr()?;
                let path = wardseal_pki::serve::crl_path(ca.settings().crl_url.as_deref());
                out(&format!("serving CRL at http://{bound}{path}"))?;
                signing
                    .serve_crl(listener, &actor, async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await?;
            } else {
                let crl = signing.crl(&actor).await?;
                if let Some(path) = &args.out {
                    std::fs::write(path, crl.pem()?)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                if cli.json {
                    json(&crl)?;
                } else {
                    out(&format!(
                        "CRL number {} with {} entries, next update {}, in {}",
                        crl.number,
                        crl.entries,
                        format_time(crl.next_update),
                        ca.crl_path().display()
                    ))?;
                }
            }
        }
        Command::List(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let filter = Filter {
                role: args.role,
                group_id: args.group.map(GroupId),
                ward: args.ward.clone(),
                epc: None,
                status: args.status,
                expiring_within: args
                    .expiring_within
                    .map(|days| std::time::Duration::from_secs(days * 86_400)),
            };
            let records = ca.inventory().list(&filter).await?;
            let now = OffsetDateTime::now_utc();
            if cli.json {
                let values: Vec<_> = records
                    .iter()
                    .map(|record| {
                        let mut value = serde_json::to_value(record)?;
                        value["status"] = serde_json::to_value(record.status(now))?;
                        Ok(value)
                    })
                    .collect::<anyhow::Result<_>>()?;
                json(&values)?;
            } else {
                let mut text = String::new();
                for record in &records {
                    text.push_str(&format!(
                        "{}  {:<9} {:<8} {:<20}  {}  {}\n",
                        record.serial,
                        record.role,
                        record.status(now),
                        record.not_after.date(),
                        record.ward.as_deref().unwrap_or("-"),
                        record.common_name,
                    ));
                }
                text.push_str(&format!("{} certificate(s)", records.len()));
                out(&text)?;
            }
        }
        Command::Show(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let record = ca.inventory().certificate(&args.serial).await?;
            let description = CertificateDescription::from_bytes(&record.der)?;
            let now = OffsetDateTime::now_utc();
            let pem = wardseal_pki::ca::pem("CERTIFICATE", &record.der)?;
            if cli.json {
                json(&serde_json::json!({
                    "record": record,
                    "status": record.status(now),
                    "certificate": description,
                    "pem": pem,
                }))?;
            } else {
                let mut text = format!("{description}status:     {}\n", record.status(now));
                if let Some(revocation) = &record.revocation {
                    text.push_str(&format!(
                        "revoked:    {} ({})\n",
                        format_time(revocation.revoked_at),
                        revocation.reason
                    ));
                }
                if let Some(ward) = &record.ward {
                    text.push_str(&format!("ward:       {ward}\n"));
                }
                if let Some(old) = &record.renewal_of {
                    text.push_str(&format!("renews:     {old}\n"));
                }
                if args.pem {
                    text.push_str(&pem);
                }
                out(&text)?;
            }
        }
        Command::Verify(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let certificate = std::fs::read(&args.certificate)
                .with_context(|| format!("reading {}", args.certificate.display()))?;
            let crl = match &args.crl {
                Some(path) => {
                    let path = path.clone().unwrap_or_else(|| ca.crl_path());
                    Some(
                        std::fs::read(&path)
                            .with_context(|| format!("reading CRL {}", path.display()))?,
                    )
                }
                None => None,
            };
            match ca.verify(&certificate, crl.as_deref(), OffsetDateTime::now_utc()) {
                Ok(verified) => {
                    if cli.json {
                        json(&serde_json::json!({ "valid": true, "result": verified }))?;
                    } else {
                        let revocation = if verified.revocation_checked {
                            "not revoked"
                        } else {
                            "revocation not checked"
                        };
                        out(&format!(
                            "OK: {} ({revocation})",
                            verified.certificate.subject
                        ))?;
                    }
                }
                Err(error) => {
                    if cli.json {
                        json(&serde_json::json!({ "valid": false, "reason": error.to_string() }))?;
                    } else {
                        out(&format!("FAILED: {error}"))?;
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Renew(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let key = args.key.subject_key()?;
            let signing = ca.unlock(&secrets)?;
            let issued = signing
                .renew(&args.serial, key.as_ref(), args.days, &actor)
                .await?;
            emit_certificate(cli, &issued, args.out.as_ref())?;
        }
        Command::Audit(AuditCommand::Verify) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            match wardseal_pki::audit::verify(ca.inventory()).await {
                Ok(report) if cli.json => json(&report)?,
                Ok(report) => out(&format!(
                    "audit log intact: {} entries, head {}",
                    report.entries, report.head
                ))?,
                Err(error) => {
                    out(&format!("FAILED: {error}"))?;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Audit(AuditCommand::List) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let entries = wardseal_pki::audit::entries(ca.inventory()).await?;
            if cli.json {
                json(&entries)?;
            } else {
                let mut text = String::new();
                for entry in &entries {
                    let at = OffsetDateTime::from_unix_timestamp(entry.at)
                        .map(format_time)
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "{:>6} {at} {:<10} {:<8} {}\n",
                        entry.id, entry.actor, entry.operation, entry.detail
                    ));
                }
                out(&text)?;
            }
        }
        Command::Card(args) => return run_card(cli, args, &secrets, &actor).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_card(
    cli: &Cli,
    args: &CardArgs,
    secrets: &Secrets,
    actor: &str,
) -> anyhow::Result<ExitCode> {
    let module = card::module_path(args.module.as_deref());
    let token = |text: &str| TokenChoice {
        module: module.clone(),
        token: text.to_owned(),
    };
    match &args.command {
        CardCommand::List => {
            let listing = card::list(&module)?;
            if cli.json {
                json(&listing)?;
            } else {
                out(&card_listing_text(&listing))?;
            }
        }
        CardCommand::Enroll(enroll) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let signing = ca.unlock(secrets)?;
            let mut options =
                EnrollOptions::new(token(&enroll.token), cli.card_pin(args), &enroll.patient);
            options.key_label.clone_from(&enroll.key_label);
            options.key_id.clone_from(&enroll.key_id.0);
            options.ward.clone_from(&enroll.ward);
            options.validity_days = enroll.days;
            let enrolled = signing.enroll_card(&options, actor).await?;
            if let Some(path) = &enroll.out {
                std::fs::write(path, &enrolled.issued.pem)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if cli.json {
                json(&enrolled)?;
            } else {
                out(&format!(
                    "enrolled patient {} on token {:?} (serial {}): key {:?} id {}, certificate serial {}",
                    enroll.patient,
                    enrolled.token_label,
                    enrolled.token_serial,
                    enrolled.key_label,
                    enrolled.key_id,
                    enrolled.issued.record.serial
                ))?;
            }
        }
        CardCommand::Sign(sign) => {
            let source = match (&sign.token, &sign.key) {
                (_, Some(path)) => SigningKeySource::File {
                    path: path.clone(),
                    passphrase: secrets.passphrase.clone().unwrap_or(SecretSource::Prompt),
                },
                (Some(text), None) => SigningKeySource::Token {
                    token: token(text),
                    pin: cli.card_pin(args),
                    key: match (&sign.key_id, &sign.key_label) {
                        (Some(id), Some(label)) => {
                            Some(KeySelector::IdAndLabel(id.0.clone(), label.clone()))
                        }
                        (Some(id), None) => Some(KeySelector::Id(id.0.clone())),
                        (None, Some(label)) => Some(KeySelector::Label(label.clone())),
                        (None, None) => None,
                    },
                },
                (None, None) => bail!("give --token (a card) or --key (a key file)"),
            };
            let message = std::fs::read(&sign.file)
                .with_context(|| format!("reading {}", sign.file.display()))?;
            let signer = card::open_signer(&source)?;
            let signature = signer
                .sign_message(&message)
                .map_err(wardseal_pki::Error::from)?;
            let path = sign.out.clone().unwrap_or_else(|| {
                let mut name = sign.file.clone().into_os_string();
                name.push(".sig");
                PathBuf::from(name)
            });
            std::fs::write(&path, &signature)
                .with_context(|| format!("writing {}", path.display()))?;
            if cli.json {
                json(&serde_json::json!({
                    "signature": path,
                    "algorithm": signer.algorithm(),
                    "bytes": signature.len(),
                }))?;
            } else {
                out(&format!(
                    "signed {} ({}) into {}",
                    sign.file.display(),
                    signer.algorithm(),
                    path.display()
                ))?;
            }
        }
        CardCommand::Verify(verify) => {
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))
            };
            let message = read(&verify.file)?;
            let signature = read(&verify.signature)?;
            let certificate = read(&verify.certificate)?;
            match card::verify_signature(&message, &signature, &certificate, verify.algorithm) {
                Ok(verified) => {
                    if cli.json {
                        json(&serde_json::json!({ "valid": true, "result": verified }))?;
                    } else {
                        out(&format!(
                            "OK: signed by {} ({}, {})",
                            verified.subject, verified.key, verified.algorithm
                        ))?;
                    }
                }
                Err(error) => {
                    if cli.json {
                        json(&serde_json::json!({ "valid": false, "reason": error.to_string() }))?;
                    } else {
                        out(&format!("FAILED: {error}"))?;
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn card_listing_text(listing: &card::CardListing) -> String {
    let mut text = format!("PKCS#11 tokens in {}:\n", listing.module.display());
    if listing.tokens.is_empty() {
        text.push_str("  (none)\n");
    }
    for token in &listing.tokens {
        let flags = if token.flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", token.flags.join(", "))
        };
        text.push_str(&format!(
            "  {:?} serial {} ({} {}) in {:?}{flags}\n",
            token.label, token.serial, token.manufacturer, token.model, token.slot
        ));
        for object in &token.objects {
            text.push_str(&format!(
                "    {:<11} {:?} id {}\n",
                object.kind, object.label, object.id
            ));
        }
        if let Some(error) = &token.objects_error {
            text.push_str(&format!("    (objects unreadable: {error})\n"));
        }
    }
    text.push_str("PC/SC readers:\n");
    match &listing.readers {
        Ok(readers) if readers.is_empty() => text.push_str("  (none)\n"),
        Ok(readers) => {
            for reader in readers {
                match &reader.atr {
                    Some(atr) => {
                        text.push_str(&format!("  {}: card present, ATR {atr}\n", reader.reader))
                    }
                    None => text.push_str(&format!("  {}: no card\n", reader.reader)),
                }
            }
        }
        Err(reason) => text.push_str(&format!("  (cannot list readers: {reason})\n")),
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the runtime: {error}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
