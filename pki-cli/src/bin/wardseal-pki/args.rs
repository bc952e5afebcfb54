//! The command line's arguments (clap), and how they become the library's inputs.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;
use wardseal_core::identity::{
    AuthorityKind, EthereumAddress, GroupId, Identity, IdentityFields, Role, RuleId, SubjectId,
};
use wardseal_pki::ca::{Secrets, SubjectKey};
use wardseal_pki::inventory::Status;
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::serial::SerialNumber;

/// The wardseal hospital CA: issues and revokes the certificates of devices, collectors,
/// storage servers, staff, patient cards and administrators.
#[derive(Parser)]
#[command(version, propagate_version = true)]
pub(crate) struct Cli {
    /// The CA directory.
    #[arg(
        long,
        global = true,
        env = "WARDSEAL_CA_DIR",
        default_value = "wardseal-ca"
    )]
    pub(crate) ca_dir: PathBuf,
    /// Read the CA key passphrase from the first line of this file.
    #[arg(long, global = true, conflicts_with = "passphrase_env")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Read the CA key passphrase from this environment variable.
    #[arg(long, global = true, value_name = "VARIABLE")]
    pub(crate) passphrase_env: Option<String>,
    /// Read the token PIN from the first line of this file.
    #[arg(long, global = true, conflicts_with = "pin_env")]
    pub(crate) pin_file: Option<PathBuf>,
    /// Read the token PIN from this environment variable.
    #[arg(long, global = true, value_name = "VARIABLE")]
    pub(crate) pin_env: Option<String>,
    /// Who is recorded in the audit log (default: $USER).
    #[arg(long, global = true)]
    pub(crate) actor: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// EST (RFC 7030) enrollment: register devices, serve enrollments over HTTPS.
    #[command(subcommand)]
    Est(EstCommand),
    /// The offline root's ceremony: create it, sign an issuing CA, revoke one, sign the root CRL.
    Root(RootArgs),
}

#[derive(Args)]
pub(crate) struct RootArgs {
    /// The root directory (removable media or an offline machine).
    #[arg(
        long,
        global = true,
        env = "WARDSEAL_ROOT_DIR",
        default_value = "wardseal-root"
    )]
    pub(crate) root_dir: PathBuf,
    /// Read the root key's passphrase from this file (default: the --passphrase-file/--passphrase-env source).
    #[arg(long, global = true)]
    pub(crate) root_passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: RootCommand,
}

#[derive(Subcommand)]
pub(crate) enum RootCommand {
    /// Create the root: key (encrypted) and self-signed certificate, in --root-dir.
    Init(RootInitArgs),
    /// Create an issuing CA in --ca-dir, its certificate signed by the root (the root key stays in --root-dir).
    SignIssuing(SignIssuingArgs),
    /// Revoke an issuing CA the root signed (listed by the next `root crl`).
    Revoke(RootRevokeArgs),
    /// Sign the root CRL; --publish copies it into CA directories and rebuilds their crl-set.pem.
    Crl(RootCrlArgs),
    /// List the issuing CAs the root signed.
    List,
    /// Move the root key of a CA made by `init` (in --ca-dir) into --root-dir.
    Adopt(RootAdoptArgs),
}

#[derive(Args)]
pub(crate) struct RootInitArgs {
    /// Subject O of the root and of the CAs it signs.
    #[arg(long)]
    pub(crate) organisation: String,
    /// Root key algorithm (p256, p384, rsa3072).
    #[arg(long, default_value = "p256")]
    pub(crate) algorithm: KeyAlgorithm,
    /// Validity of the root in days.
    #[arg(long, default_value_t = 7300)]
    pub(crate) days: u32,
    /// Days from one root CRL to its nextUpdate (the next ceremony must come before).
    #[arg(long, default_value_t = 30)]
    pub(crate) crl_days: u32,
}

#[derive(Args)]
pub(crate) struct SignIssuingArgs {
    /// The issuing CA's common name (give each issuing CA under one root its own).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Issuing key algorithm (p256, p384, rsa3072).
    #[arg(long, default_value = "p256")]
    pub(crate) algorithm: KeyAlgorithm,
    /// Use this existing token key (PKCS#11 URI) for the issuing CA.
    #[arg(long, value_name = "PKCS11_URI")]
    pub(crate) issuing_key: Option<String>,
    /// CRL distribution point URL of the certificates the issuing CA signs.
    #[arg(long)]
    pub(crate) crl_url: Option<String>,
    /// Days from one issuing CRL to its nextUpdate.
    #[arg(long, default_value_t = 7)]
    pub(crate) crl_days: u32,
    /// Validity of the issuing CA in days (at most the root's).
    #[arg(long, default_value_t = 1825)]
    pub(crate) issuing_days: u32,
}

#[derive(Args)]
pub(crate) struct RootRevokeArgs {
    /// The issuing CA's serial (hex; see `root list`).
    pub(crate) serial: SerialNumber,
    /// Reason (RFC 5280 name, e.g. ca-compromise).
    #[arg(long, default_value = "unspecified")]
    pub(crate) reason: wardseal_pki::crl::RevocationReason,
}

#[derive(Args)]
pub(crate) struct RootCrlArgs {
    /// Also write the CRL (PEM) here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// A CA directory to publish the root CRL into (its crl-set.pem is rebuilt); repeatable.
    #[arg(long)]
    pub(crate) publish: Vec<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RootAdoptArgs {
    /// Days from one root CRL to its nextUpdate.
    #[arg(long, default_value_t = 30)]
    pub(crate) crl_days: u32,
}

#[derive(Subcommand)]
pub(crate) enum EstCommand {
    /// Pre-register a device (EPC, group, rule, ward) with its bootstrap credential: a one-time secret (printed once) or a manufacturer certificate's serialNumber.
    Register(EstRegisterArgs),
    /// Serve /.well-known/est/{cacerts,csrattrs,simpleenroll,simplereenroll} over HTTPS until interrupted.
    Serve(EstServeArgs),
}

#[derive(Args)]
pub(crate) struct EstRegisterArgs {
    /// The device's EPC (tag URI, pure identity URI or 24 hex digits).
    #[arg(long)]
    pub(crate) epc: String,
    /// Its group.
    #[arg(long)]
    pub(crate) group: u32,
    /// Its rule.
    #[arg(long)]
    pub(crate) rule: u32,
    /// Its ward.
    #[arg(long)]
    pub(crate) ward: Option<String>,
    /// Generate a one-time enrollment secret (HTTP Basic password; user = the EPC in hex).
    #[arg(long)]
    pub(crate) secret: bool,
    /// Write the secret to this new file (0600) instead of printing it.
    #[arg(long, requires = "secret")]
    pub(crate) secret_out: Option<PathBuf>,
    /// The subject serialNumber of the device's manufacturer (IDevID) certificate.
    #[arg(long)]
    pub(crate) manufacturer_serial: Option<String>,
    /// Replace an existing registration (a new secret for a reset device).
    #[arg(long)]
    pub(crate) replace: bool,
}

#[derive(Args)]
pub(crate) struct EstServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub(crate) listen: String,
    /// The server's certificate (PEM; e.g. `issue --profile storage --dns est.example`).
    #[arg(long)]
    pub(crate) tls_cert: PathBuf,
    /// The server's private key (PEM).
    #[arg(long)]
    pub(crate) tls_key: PathBuf,
    /// A manufacturer CA (PEM) whose IDevID certificates may bootstrap enrollment; repeatable.
    #[arg(long)]
    pub(crate) manufacturer_ca: Vec<PathBuf>,
    /// Validity in days of the certificates issued (default: the profile's).
    #[arg(long)]
    pub(crate) days: Option<u32>,
}

#[derive(Args)]
pub(crate) struct CardArgs {
    /// PKCS#11 module (default: $WARDSEAL_PKCS11_MODULE, else OpenSC's opensc-pkcs11.so).
    #[arg(long, global = true)]
    pub(crate) module: Option<PathBuf>,
    /// Read the card's PIN from the first line of this file (else a prompt).
    #[arg(long, global = true, conflicts_with = "card_pin_env")]
    pub(crate) card_pin_file: Option<PathBuf>,
    /// Read the card's PIN from this environment variable.
    #[arg(long, global = true, value_name = "VARIABLE")]
    pub(crate) card_pin_env: Option<String>,
    #[command(subcommand)]
    pub(crate) command: CardCommand,
}

#[derive(Subcommand)]
pub(crate) enum CardCommand {
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
pub(crate) struct EnrollArgs {
    /// The patient's subject id.
    #[arg(long)]
    pub(crate) patient: String,
    /// The card: token label, serial number or pkcs11: URI.
    #[arg(long)]
    pub(crate) token: String,
    /// Label of the key and certificate on the card.
    #[arg(long, default_value = "wardseal patient")]
    pub(crate) key_label: String,
    /// CKA_ID of the key and certificate (hex).
    #[arg(long, default_value = "01")]
    pub(crate) key_id: HexBytes,
    /// Ward, recorded in the inventory.
    #[arg(long)]
    pub(crate) ward: Option<String>,
    /// Validity in days (default: the patient profile's).
    #[arg(long)]
    pub(crate) days: Option<u32>,
    /// Also write the certificate (PEM) here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct SignArgs {
    /// The file to sign.
    pub(crate) file: PathBuf,
    /// Where the signature goes (default: FILE.sig).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// The card: token label, serial number or pkcs11: URI.
    #[arg(long, required_unless_present = "key", conflicts_with = "key")]
    pub(crate) token: Option<String>,
    /// CKA_ID of the key on the card (hex; default: the card's only key).
    #[arg(long)]
    pub(crate) key_id: Option<HexBytes>,
    /// Label of the key on the card.
    #[arg(long)]
    pub(crate) key_label: Option<String>,
    /// Sign with this encrypted PKCS#8 key file instead (passphrase: --passphrase-file/--passphrase-env, else a prompt).
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct CardVerifyArgs {
    /// The signed file.
    pub(crate) file: PathBuf,
    /// The signature.
    pub(crate) signature: PathBuf,
    /// The signer's certificate (PEM or DER).
    pub(crate) certificate: PathBuf,
    /// Signature algorithm (default from the certificate's key: ecdsa-p256-sha256 (DER) for P-256;
    /// also ecdsa-p256-sha256-raw, rsa-pss-sha256, dsa-sha256, ed25519).
    #[arg(long)]
    pub(crate) algorithm: Option<wardseal_core::signature::SignatureAlgorithm>,
}

/// A CKA_ID on the command line: hex, colons allowed.
#[derive(Clone)]
pub(crate) struct HexBytes(pub(crate) Vec<u8>);

impl std::str::FromStr for HexBytes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        hex::decode(text.trim_start_matches("0x").replace(':', ""))
            .map(Self)
            .map_err(|error| format!("expected hexadecimal bytes like 01 or 9c01: {error}"))
    }
}

#[derive(Args)]
pub(crate) struct InitArgs {
    /// Organisation: subject O of every certificate.
    #[arg(long)]
    pub(crate) organisation: String,
    /// CA key algorithm: p256, p384 or rsa3072.
    #[arg(long, default_value = "p256")]
    pub(crate) algorithm: KeyAlgorithm,
    /// Keep the root key on a token: pkcs11:token=…;object=…[?module-path=…].
    #[arg(long, value_name = "PKCS11_URI")]
    pub(crate) root_key: Option<String>,
    /// Keep the issuing key on a token: pkcs11:token=…;object=…[?module-path=…].
    #[arg(long, value_name = "PKCS11_URI")]
    pub(crate) issuing_key: Option<String>,
    /// CRL URL put in every certificate (http://…).
    #[arg(long)]
    pub(crate) crl_url: Option<String>,
    /// Days from one CRL to its next update.
    #[arg(long, default_value_t = 7)]
    pub(crate) crl_days: u32,
    /// Root validity in days.
    #[arg(long, default_value_t = 7300)]
    pub(crate) root_days: u32,
    /// Issuing CA validity in days.
    #[arg(long, default_value_t = 1825)]
    pub(crate) issuing_days: u32,
}

#[derive(Args)]
pub(crate) struct IdentityArgs {
    /// Device EPC (tag URI, pure identity URI or 24 hex digits).
    #[arg(long)]
    pub(crate) epc: Option<String>,
    /// Group id (device, collector).
    #[arg(long)]
    pub(crate) group: Option<u32>,
    /// Rule id (device, collector).
    #[arg(long)]
    pub(crate) rule: Option<u32>,
    /// Subject id: staff member, patient, or the collector's ward.
    #[arg(long)]
    pub(crate) subject_id: Option<String>,
    /// Ethereum account (collector, storage, admin).
    #[arg(long)]
    pub(crate) ethereum_address: Option<String>,
    /// Kind of organisation (authority): laboratory, insurer, pharmacy or hospital.
    #[arg(long)]
    pub(crate) authority_kind: Option<String>,
}

#[derive(Args)]
pub(crate) struct KeyArgs {
    /// PKCS#10 request (PEM or DER): only its public key is used.
    #[arg(long, conflicts_with = "key_out")]
    pub(crate) csr: Option<PathBuf>,
    /// Generate a key and write it here (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    pub(crate) key_out: Option<PathBuf>,
    /// Algorithm of a generated key: p256, p384, rsa3072, ed25519, dsa2048 (DSA 2048/256).
    #[arg(long, default_value = "p256")]
    pub(crate) key_algorithm: KeyAlgorithm,
}

// How long a certificate issued or renewed lasts and where it goes (a plain comment: a
// doc comment on a flattened struct could become the subcommand's about text).
#[derive(Args)]
pub(crate) struct CertificateOutputArgs {
    /// Validity in days (default per profile).
    #[arg(long)]
    pub(crate) days: Option<u32>,
    /// Write the certificate (PEM) here instead of standard output.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct IssueArgs {
    /// device, collector, storage, staff, patient or admin.
    #[arg(long)]
    pub(crate) profile: Role,
    #[command(flatten)]
    pub(crate) identity: IdentityArgs,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    /// DNS name (collector, storage).
    #[arg(long)]
    pub(crate) dns: Vec<String>,
    /// IP address (collector, storage).
    #[arg(long)]
    pub(crate) ip: Vec<IpAddr>,
    /// Email address (staff, admin).
    #[arg(long)]
    pub(crate) email: Vec<String>,
    /// Subject common name (default from the identity).
    #[arg(long)]
    pub(crate) cn: Option<String>,
    /// Ward, recorded in the inventory.
    #[arg(long)]
    pub(crate) ward: Option<String>,
    #[command(flatten)]
    pub(crate) output: CertificateOutputArgs,
}

#[derive(Args)]
pub(crate) struct BatchArgs {
    /// The CSV file: epc,group,rule,ward[,csr].
    #[arg(long)]
    pub(crate) csv: PathBuf,
    /// Where certificates (<EPC hex>.crt) and generated keys (<EPC hex>.key) go.
    #[arg(long)]
    pub(crate) out_dir: PathBuf,
    /// Algorithm of generated keys: p256, p384, rsa3072, ed25519, dsa2048 (the batch's DSA
    /// keys share one set of domain parameters).
    #[arg(long, default_value = "p256")]
    pub(crate) key_algorithm: KeyAlgorithm,
    /// Validity in days (default: the device profile's).
    #[arg(long)]
    pub(crate) days: Option<u32>,
    /// Signing threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
}

#[derive(Args)]
pub(crate) struct RevokeArgs {
    /// Serial number (hex, colons allowed).
    #[arg(required_unless_present = "epc", conflicts_with = "epc")]
    pub(crate) serial: Option<SerialNumber>,
    /// Revoke the valid certificate of this EPC instead.
    #[arg(long)]
    pub(crate) epc: Option<String>,
    /// RFC 5280 reason: unspecified, key-compromise, ca-compromise, affiliation-changed,
    /// superseded, cessation-of-operation, certificate-hold, privilege-withdrawn.
    #[arg(long, default_value = "unspecified")]
    pub(crate) reason: wardseal_pki::crl::RevocationReason,
    /// When the key was compromised or the certificate became invalid (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub(crate) invalidity_date: Option<OffsetDateTime>,
}

#[derive(Args)]
pub(crate) struct CrlArgs {
    /// Also write the CRL (PEM) here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Serve CRLs over HTTP on this address (e.g. 127.0.0.1:8080) until interrupted.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) serve: Option<String>,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    /// Only this role.
    #[arg(long)]
    pub(crate) role: Option<Role>,
    /// Only this group.
    #[arg(long)]
    pub(crate) group: Option<u32>,
    /// Only this ward.
    #[arg(long)]
    pub(crate) ward: Option<String>,
    /// Only valid, revoked or expired certificates.
    #[arg(long)]
    pub(crate) status: Option<Status>,
    /// Only valid certificates expiring within this many days.
    #[arg(long, value_name = "DAYS")]
    pub(crate) expiring_within: Option<u64>,
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    /// Serial number.
    pub(crate) serial: SerialNumber,
    /// Print the certificate PEM as well.
    #[arg(long)]
    pub(crate) pem: bool,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The certificate (PEM or DER).
    pub(crate) certificate: PathBuf,
    /// Check revocation against this CRL, or the CA's latest (<ca-dir>/crl.pem) if no file is given.
    #[arg(long, value_name = "CRL")]
    pub(crate) crl: Option<Option<PathBuf>>,
}

#[derive(Args)]
pub(crate) struct RenewArgs {
    /// Serial of the certificate to renew.
    pub(crate) serial: SerialNumber,
    /// A new key: CSR or generated (default: keep the old certificate's key).
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    #[command(flatten)]
    pub(crate) output: CertificateOutputArgs,
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain; exit 1 if an entry was altered, deleted or inserted.
    Verify,
    /// Print the entries.
    List,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("expected an RFC 3339 time like 2025-01-31T12:00:00Z: {error}"))
}

/// A secret read from a file if one is given, else from an environment variable if one is
/// named (clap makes the two conflict).
fn secret_source(file: &Option<PathBuf>, env: &Option<String>) -> Option<SecretSource> {
    match (file, env) {
        (Some(path), _) => Some(SecretSource::File(path.clone())),
        (None, Some(name)) => Some(SecretSource::Environment(name.clone())),
        (None, None) => None,
    }
}

impl Cli {
    /// The CA key's passphrase and the CA token's PIN.
    pub(crate) fn secrets(&self) -> Secrets {
        Secrets {
            passphrase: secret_source(&self.passphrase_file, &self.passphrase_env),
            pin: secret_source(&self.pin_file, &self.pin_env),
        }
    }

    /// The offline root key's passphrase: its own file, else the CA passphrase's source,
    /// else a prompt.
    pub(crate) fn root_passphrase(&self, args: &RootArgs) -> SecretSource {
        args.root_passphrase_file
            .clone()
            .map(SecretSource::File)
            .or_else(|| secret_source(&self.passphrase_file, &self.passphrase_env))
            .unwrap_or(SecretSource::Prompt)
    }

    /// The patient card's PIN (a prompt when neither a file nor a variable is given).
    pub(crate) fn card_pin(&self, args: &CardArgs) -> Option<SecretSource> {
        secret_source(&args.card_pin_file, &args.card_pin_env)
    }

    /// Who the audit log records.
    pub(crate) fn actor(&self) -> String {
        self.actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

impl KeyArgs {
    /// The subject's key: the CSR's public key, a key to generate, or none (renew keeps
    /// the old certificate's).
    pub(crate) fn subject_key(&self) -> anyhow::Result<Option<SubjectKey>> {
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

/// The identity the certificate will carry, from the identity options.
pub(crate) fn identity(role: Role, args: &IdentityArgs) -> anyhow::Result<Identity> {
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
        authority_kind: args
            .authority_kind
            .as_deref()
            .map(str::parse::<AuthorityKind>)
            .transpose()?,
    };
    Ok(Identity::new(role, fields)?)
}
