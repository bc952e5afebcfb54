//! `wardseal-storage`: the storage server, its administration CLI and the offline proof
//! checker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use wardseal_contracts::{AccountKey, LedgerAccount, LedgerLocation};
use wardseal_core::identity::SubjectId;
use wardseal_net::server::ServerTlsSettings;
use wardseal_storage::api::parse_account;
use wardseal_storage::store::{Store, now_micros};
use wardseal_storage::{Server, ServerConfig};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "wardseal storage server: verified, card-signed patient data over mutual TLS"
)]
struct Cli {
    /// Database: sqlite://PATH (default, one 0600 file) or postgres://…
    #[arg(
        long,
        env = "WARDSEAL_STORAGE_DATABASE",
        default_value = "sqlite://storage.db",
        global = true
    )]
    database: String,
    /// Log lines for a person (`human`) or one JSON object per line (`json`); the level
    /// comes from `RUST_LOG` (default `info`).
    #[arg(long, global = true, env = wardseal_net::logging::FORMAT_VARIABLE, default_value = "human")]
    log_format: wardseal_net::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API over mutual TLS (SIGHUP reloads certificates and CRLs).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// The server certificate (PEM).
        #[arg(long)]
        certificate: PathBuf,
        /// The server key (PEM, 0600).
        #[arg(long)]
        key: PathBuf,
        /// The hospital CA bundle (root + issuing, PEM).
        #[arg(long)]
        ca_bundle: PathBuf,
        /// CRL files (PEM or DER); at least one: without a CRL nothing can be revoked.
        #[arg(long, required = true)]
        crl: Vec<PathBuf>,
        /// The deployed contracts (suite.json).
        #[arg(long)]
        suite: PathBuf,
        /// Embedded chain directory (default ledger).
        #[arg(long, conflicts_with = "rpc")]
        embedded: Option<PathBuf>,
        /// JSON-RPC node URL.
        #[arg(long)]
        rpc: Option<String>,
        /// The storage account's key file (hex private key, 0600) for anchoring.
        #[arg(long)]
        ledger_key_file: PathBuf,
        /// Seconds between anchors of the access log and of the batch log.
        #[arg(long, default_value_t = 60)]
        anchor_every: u64,
        /// Seconds a high-priority alert may stay unacknowledged before it escalates.
        #[arg(
            long,
            env = "WARDSEAL_STORAGE_ESCALATE_HIGH_SECS",
            default_value_t = 120
        )]
        escalate_high_secs: u64,
        /// Seconds a medium-priority alert may stay unacknowledged before it escalates.
        #[arg(
            long,
            env = "WARDSEAL_STORAGE_ESCALATE_MEDIUM_SECS",
            default_value_t = 600
        )]
        escalate_medium_secs: u64,
        /// Seconds a low-priority alert may stay unacknowledged before it escalates.
        #[arg(
            long,
            env = "WARDSEAL_STORAGE_ESCALATE_LOW_SECS",
            default_value_t = 1800
        )]
        escalate_low_secs: u64,
    },
    /// Admit a patient.
    Admit {
        /// Pseudonymous patient id.
        patient: String,
        /// Ward.
        #[arg(long)]
        ward: String,
        /// Room.
        #[arg(long)]
        room: String,
        /// Bed.
        #[arg(long)]
        bed: String,
        /// The patient's consent account (0x…).
        #[arg(long)]
        account: Option<String>,
    },
    /// Assign a device (EPC in any form) to an admitted patient from now.
    AssignDevice {
        /// The device EPC.
        device: String,
        /// The patient.
        patient: String,
    },
    /// Assign a staff member to an admitted patient.
    AssignStaff {
        /// The staff member's subject id.
        staff: String,
        /// The patient.
        patient: String,
        /// Duty (doctor, nurse).
        #[arg(long, default_value = "nurse")]
        duty: String,
    },
    /// Record a staff member's (or lab's) consent account.
    StaffAccount {
        /// The staff member's subject id.
        staff: String,
        /// The account (0x…).
        account: String,
    },
    /// Discharge a patient (ends every assignment).
    Discharge {
        /// The patient.
        patient: String,
    },
    /// List refused batches.
    Rejections,
    /// Check a proof document against the CA root certificate and the chain. Exit 0 ok, 3
    /// bad proof, 4 batch not anchored yet, 5 anchor not on chain or different, 1 the
    /// chain could not be asked.
    VerifyProof {
        /// The proof (JSON from GET /v1/readings/{leaf}/proof).
        file: PathBuf,
        /// The CA certificate to trust (PEM or DER).
        #[arg(long)]
        ca: PathBuf,
        /// The deployed contracts (suite.json).
        #[arg(long, required_unless_present = "skip_chain")]
        suite: Option<PathBuf>,
        /// Embedded chain directory (read only; not while a server holds it).
        #[arg(long, conflicts_with = "rpc")]
        embedded: Option<PathBuf>,
        /// JSON-RPC node URL.
        #[arg(long)]
        rpc: Option<String>,
        /// Check only what the CA certificate proves; the anchor is NOT checked.
        #[arg(long, conflicts_with_all = ["suite", "embedded", "rpc"])]
        skip_chain: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    wardseal_net::logging::init(cli.log_format);
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    match cli.command {
        Command::VerifyProof {
            file,
            ca,
            suite,
            embedded,
            rpc,
            skip_chain,
        } => {
            let document: wardseal_storage::proof::ProofDocument = match std::fs::read(&file)
                .with_context(|| format!("read {}", file.display()))
                .and_then(|bytes| {
                    serde_json::from_slice(&bytes).context("the file is not a proof document")
                }) {
                Ok(document) => document,
                Err(error) => {
                    eprintln!("bad proof: {error:#}");
                    return Ok(std::process::ExitCode::from(3));
                }
            };
            let ca_bytes = std::fs::read(&ca).with_context(|| format!("read {}", ca.display()))?;
            let ca_der = pem_or_der(&ca_bytes)?;
            let ledger = match (skip_chain, suite) {
                (true, _) => None,
                (false, Some(suite)) => Some(
                    LedgerLocation::from_choice(embedded, rpc.as_deref())
                        .context("give --embedded DIR or --rpc URL (or --skip-chain)")?
                        .open_read_only(&suite)?,
                ),
                (false, None) => anyhow::bail!("give --suite FILE (or --skip-chain)"),
            };
            let verified = match wardseal_storage::proof::verify(&document, &ca_der) {
                Ok(verified) => verified,
                Err(error) => return Ok(proof_failure(&error)),
            };
            writeln!(
                out,
                "ok: reading {} of patient {} (batch {}, leaf {}) is signed by the patient's card and chains to the CA",
                verified.reading.measurement().data_type().name(),
                verified.header.patient().as_str(),
                verified.header.sequence(),
                verified.leaf_hash
            )?;
            let Some(ledger) = ledger else {
                writeln!(
                    out,
                    "WARNING: --skip-chain: the on-chain anchor was NOT checked; this proof does not show when the batch was stored"
                )?;
                return Ok(std::process::ExitCode::SUCCESS);
            };
            match wardseal_storage::proof::check_on_chain(&ledger, &verified).await {
                Ok(record) => writeln!(
                    out,
                    "ok: the batch is under root {} anchored on chain in block {} by {} (batch log, {} batches)",
                    record.anchor.root, record.block, record.anchorer, record.anchor.count
                )?,
                Err(error) => return Ok(proof_failure(&error)),
            }
        }
        Command::Serve {
            listen,
            certificate,
            key,
            ca_bundle,
            crl,
            suite,
            embedded,
            rpc,
            ledger_key_file,
            anchor_every,
            escalate_high_secs,
            escalate_medium_secs,
            escalate_low_secs,
        } => {
            let mut tls = ServerTlsSettings::new(certificate, key, ca_bundle);
            tls.crls = crl;
            let location = LedgerLocation::from_choice(embedded, rpc.as_deref())
                .context("give --embedded DIR or --rpc URL")?;
            let key = AccountKey::read(&ledger_key_file)?;
            let ledger = location.open(LedgerAccount::Key(key), &suite)?;
            let mut config = ServerConfig::new(cli.database, listen, tls);
            config.anchor_interval = Some(Duration::from_secs(anchor_every.max(1)));
            config.escalation = wardseal_storage::alerts::EscalationPolicy::from_secs(
                escalate_low_secs,
                escalate_medium_secs,
                escalate_high_secs,
            )?;
            // Before listening: a SIGHUP must never find the default action (exit).
            let mut hangup = signal(SignalKind::hangup()).context("watch for SIGHUP")?;
            let server = Server::start(&config, ledger).await?;
            writeln!(out, "wardseal-storage listening on {}", server.local_addr())?;
            drop(out);
            loop {
                tokio::select! {
                    _ = hangup.recv() => {
                        match server.reload() {
                            Ok(()) => tracing::info!("reloaded the certificates and CRLs"),
                            Err(error) => tracing::error!(
                                %error,
                                "reload failed, keeping the previous configuration"
                            ),
                        }
                    }
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            server.shutdown().await;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        command => {
            let store = Store::open(&cli.database).await?;
            match command {
                Command::Admit {
                    patient,
                    ward,
                    room,
                    bed,
                    account,
                } => {
                    let account = account.as_deref().map(parse_account).transpose()?;
                    store
                        .admit(&SubjectId::new(patient)?, &ward, &room, &bed, account)
                        .await?;
                }
                Command::AssignDevice { device, patient } => {
                    let device: wardseal_core::epc::Sgtin96 = device.parse()?;
                    store
                        .assign_device(&device.pure_identity_uri(), &patient, now_micros())
                        .await?;
                }
                Command::AssignStaff {
                    staff,
                    patient,
                    duty,
                } => {
                    store
                        .assign_staff(&SubjectId::new(staff)?, &SubjectId::new(patient)?, &duty)
                        .await?
                }
                Command::StaffAccount { staff, account } => {
                    store
                        .set_staff_account(&SubjectId::new(staff)?, parse_account(&account)?)
                        .await?
                }
                Command::Discharge { patient } => {
                    store.discharge(&SubjectId::new(patient)?).await?
                }
                Command::Rejections => {
                    for rejection in store.rejections().await? {
                        writeln!(out, "{}", serde_json::to_string(&rejection)?)?;
                    }
                }
                Command::VerifyProof { .. } | Command::Serve { .. } => {}
            }
            writeln!(out, "ok")?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Prints why a proof failed and gives its exit status ([`ProofError::exit_code`]).
fn proof_failure(error: &wardseal_storage::ProofError) -> std::process::ExitCode {
    let kind = match error.exit_code() {
        3 => "bad proof",
        4 => "not anchored",
        5 => "anchor not on chain",
        _ => "chain unavailable",
    };
    eprintln!("{kind}: {error}");
    std::process::ExitCode::from(error.exit_code())
}

fn pem_or_der(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    if bytes.starts_with(b"-----BEGIN") {
        Ok(rustls::pki_types::CertificateDer::from_pem_slice(bytes)
            .context("no certificate in the PEM file")?
            .to_vec())
    } else {
        Ok(bytes.to_vec())
    }
}
