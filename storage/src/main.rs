//! `wardseal-storage`: the storage server, its administration CLI and the offline proof
//! checker.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wardseal_contracts::{AnyBackend, EmbeddedChain, Ledger, RpcBackend, Suite};
use wardseal_net::serve::{ServeOptions, serve};
use wardseal_net::server::{ServerTls, ServerTlsSettings};
use wardseal_storage::api::{Storage, parse_account};
use wardseal_storage::chain::Chain;
use wardseal_storage::store::{Store, now_micros};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API over mutual TLS (SIGHUP reloads certificates and CRLs).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
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
                (false, Some(suite)) => Some(read_only_ledger(&suite, embedded, rpc)?),
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
        } => {
            let mut settings = ServerTlsSettings::new(certificate, key, ca_bundle);
            settings.crls = crl;
            let tls = Arc::new(ServerTls::load(settings)?);
            let store = Store::open(&cli.database).await?;
            let signer: alloy::signers::local::PrivateKeySigner =
                std::fs::read_to_string(&ledger_key_file)
                    .with_context(|| format!("read {}", ledger_key_file.display()))?
                    .trim()
                    .parse()
                    .context("the ledger key file must hold a hex private key")?;
            let suite = Suite::load(&suite)?;
            let backend: AnyBackend = match (embedded, rpc) {
                (Some(dir), _) => EmbeddedChain::open(dir)?.backend(signer.address()).into(),
                (None, Some(url)) => RpcBackend::connect(&url, signer)?.into(),
                (None, None) => anyhow::bail!("give --embedded DIR or --rpc URL"),
            };
            let chain = Chain::new(Ledger::new(backend, suite)).await?;
            let storage = Arc::new(Storage {
                store,
                chain,
                tls: Arc::clone(&tls),
                alerts: wardseal_storage::alerts::AlertHub::default(),
            });
            tokio::spawn(wardseal_storage::alerts::run_escalation(
                Arc::clone(&storage),
                std::time::Duration::from_secs(1),
            ));
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            writeln!(out, "wardseal-storage listening on {listen}")?;
            drop(out);
            let reload = Arc::clone(&tls);
            tokio::spawn(async move {
                let Ok(mut hangup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    return;
                };
                while hangup.recv().await.is_some() {
                    if let Err(error) = reload.reload() {
                        eprintln!("reload failed, keeping the previous configuration: {error}");
                    }
                }
            });
            let anchoring = Arc::clone(&storage);
            tokio::spawn(async move {
                let mut interval =
                    tokio::time::interval(std::time::Duration::from_secs(anchor_every.max(1)));
                loop {
                    interval.tick().await;
                    if let Err(error) = wardseal_storage::access::anchor(&anchoring).await {
                        eprintln!("anchoring the access log failed: {error}");
                    }
                    if let Err(error) = wardseal_storage::batch_log::anchor(&anchoring).await {
                        eprintln!("anchoring the batch log failed: {error}");
                    }
                }
            });
            let handler = move |request, peer| {
                let storage = Arc::clone(&storage);
                async move { storage.respond(request, peer).await }
            };
            serve(listener, tls, ServeOptions::default(), handler, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
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
                    store.admit(&patient, &ward, &room, &bed, account).await?;
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
                } => store.assign_staff(&staff, &patient, &duty).await?,
                Command::StaffAccount { staff, account } => {
                    store
                        .set_staff_account(&staff, parse_account(&account)?)
                        .await?
                }
                Command::Discharge { patient } => store.discharge(&patient).await?,
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

/// The ledger for reading anchors: an embedded chain opened as a reader (the account is
/// never used), or a node with a throwaway key (calls need no funds and send nothing).
fn read_only_ledger(
    suite: &std::path::Path,
    embedded: Option<PathBuf>,
    rpc: Option<String>,
) -> anyhow::Result<Ledger<AnyBackend>> {
    let suite = Suite::load(suite)?;
    let backend: AnyBackend = match (embedded, rpc) {
        (Some(dir), _) => EmbeddedChain::open(dir)?
            .backend(alloy::primitives::Address::ZERO)
            .into(),
        (None, Some(url)) => {
            RpcBackend::connect(&url, alloy::signers::local::PrivateKeySigner::random())?.into()
        }
        (None, None) => anyhow::bail!("give --embedded DIR or --rpc URL (or --skip-chain)"),
    };
    Ok(Ledger::new(backend, suite))
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
