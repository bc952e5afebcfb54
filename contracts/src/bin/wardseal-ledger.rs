//! `wardseal-ledger`: the admin CLI of the wardseal contracts (deploy, devices, rules,
//! consent, authorities, roles, anchors), thin over `wardseal_contracts::Ledger`.

use std::io::Write;
use std::path::PathBuf;

use alloy::primitives::{Address, B256};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use wardseal_contracts::model::parse_data_type;
use wardseal_contracts::{
    AccountKey, AlarmLimit, AnyBackend, Device, Ledger, LedgerAccount, LedgerLocation, PatientKey,
    PatientLimits, Range, Role, Suite, TypeRule, WideDecimal,
};
use wardseal_core::identity::AuthorityKind;

/// Administer the wardseal contracts: rules, device registry, consent, audit anchors.
///
/// The chain is either embedded (`--embedded DIR`: revm in this process, kept in DIR) or a
/// JSON-RPC node (`--rpc URL`: Besu, anvil). Transactions are signed with the key in
/// `--key-file` (a hex secp256k1 private key; create one with `key new`). The suite's
/// addresses are kept in `--suite` (written by `deploy`).
#[derive(Parser)]
#[command(name = "wardseal-ledger", version)]
struct Cli {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ChainArgs {
    /// Use the embedded chain kept in this directory (created if missing).
    #[arg(
        long,
        env = "WARDSEAL_LEDGER_EMBEDDED",
        conflicts_with = "rpc",
        global = true
    )]
    embedded: Option<PathBuf>,
    /// Use the JSON-RPC node at this URL, e.g. http://127.0.0.1:8545.
    #[arg(long, env = "WARDSEAL_LEDGER_RPC", global = true)]
    rpc: Option<String>,
    /// File holding the hex private key that signs transactions (mode 0600).
    #[arg(long, env = "WARDSEAL_LEDGER_KEY_FILE", global = true)]
    key_file: Option<PathBuf>,
    /// The suite file: contract addresses written by `deploy`.
    #[arg(
        long,
        env = "WARDSEAL_LEDGER_SUITE",
        default_value = "suite.json",
        global = true
    )]
    suite: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create a signing key file (0600) and print its account address.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Deploy a new suite; the key's account becomes its admin. Writes --suite.
    Deploy,
    /// Grant or revoke a role: rule-admin, registrar (devices), anchorer (collectors, storage) or authority-registrar.
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Register, deactivate, show and list devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Create rules, set what they allow, assign them to groups, show them.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// A patient's own alarm limits and responsible clinicians.
    Patient {
        #[command(subcommand)]
        command: PatientCommand,
    },
    /// Grant, revoke and show a patient's consent (the key must be the patient's).
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Authorities (laboratories, insurers, pharmacies, hospitals): register, bind
    /// certificate subjects, deactivate (authority registrars); grant and revoke access
    /// (the key must be the patient's).
    Authority {
        #[command(subcommand)]
        command: AuthorityCommand,
    },
    /// List anchors.
    Anchors {
        #[command(subcommand)]
        command: AnchorsCommand,
    },
    /// Verify that a root is anchored, or anchor one.
    Anchor {
        #[command(subcommand)]
        command: AnchorCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new random key to FILE and print its address.
    New {
        /// Where to write it; refuses to overwrite.
        file: PathBuf,
    },
    /// Print the address of --key-file.
    Address,
}

#[derive(Subcommand)]
enum RoleCommand {
    /// Give ACCOUNT the role.
    Grant { role: Role, account: Address },
    /// Take the role from ACCOUNT.
    Revoke { role: Role, account: Address },
    /// Whether ACCOUNT has the role.
    Show { role: Role, account: Address },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a device (active); an EPC registers once.
    Register {
        /// The SGTIN-96 EPC: a tag URI (urn:epc:tag:sgtin-96:3.0614141.812345.6789), a pure-identity URI or 24 hex digits (3074257BF7194E4000001A85).
        #[arg(long)]
        epc: String,
        /// Its group id.
        #[arg(long)]
        group: u32,
        /// Its rule id.
        #[arg(long)]
        rule: u32,
        /// The ward it is in.
        #[arg(long)]
        ward: String,
    },
    /// Deactivate a device for good (captured or retired).
    Deactivate {
        /// The EPC (tag URI, pure-identity URI or 24 hex digits).
        #[arg(long)]
        epc: String,
    },
    /// Show one device.
    Show {
        /// The EPC (tag URI, pure-identity URI or 24 hex digits).
        #[arg(long)]
        epc: String,
    },
    /// List every registered device.
    List,
}

#[derive(Subcommand)]
enum RuleCommand {
    /// Deploy and register a range rule under RULE_ID.
    Create { rule_id: u32 },
    /// Allow a data type under a rule: unit, one --range per value component, rate.
    ///
    /// Components: one for a quantity; systolic then diastolic for blood_pressure; lowest
    /// then highest sample for ecg, eeg and emg.
    Set {
        rule_id: u32,
        /// Data type name (heart_rate, spo2, blood_pressure, ecg, …) or code.
        #[arg(long = "type")]
        data_type: String,
        /// UCUM unit; defaults to the data type's unit.
        #[arg(long)]
        unit: Option<String>,
        /// Inclusive range MIN..MAX, exact decimals, e.g. 30..220 or -5.5..5.5.
        #[arg(long = "range", required = true, allow_hyphen_values = true)]
        ranges: Vec<String>,
        /// Clinical alarm limit `[COMPONENT:]OP BOUND:PRIORITY`, e.g. '<=40:high' or
        /// '1:>120:medium' (OP <, <=, >, >=; PRIORITY low, medium, high). A reading past
        /// one is accepted and flagged; outside a --range it is refused as false data.
        #[arg(long = "alarm", allow_hyphen_values = true)]
        alarms: Vec<String>,
        /// Most readings per device per minute; 0 for no limit.
        #[arg(long, default_value_t = 0)]
        max_per_minute: u32,
    },
    /// Stop a rule from allowing a data type.
    Remove {
        rule_id: u32,
        /// Data type name or code.
        #[arg(long = "type")]
        data_type: String,
    },
    /// Make a group follow a rule.
    Assign {
        /// The group id.
        #[arg(long)]
        group: u32,
        /// The rule id.
        #[arg(long)]
        rule: u32,
    },
    /// Show one rule, or every rule and group assignment.
    Show { rule_id: Option<u32> },
}

#[derive(Subcommand)]
enum PatientCommand {
    /// Make a clinician responsible for a patient, or no longer (rule admins only).
    Clinician {
        /// The patient's subject id (only its pseudonymous key goes on chain).
        #[arg(long)]
        patient: String,
        /// The clinician's account.
        #[arg(long)]
        clinician: Address,
        /// Withdraw the responsibility instead.
        #[arg(long)]
        remove: bool,
    },
    /// Replace the patient's alarm limits for a data type (rule admins and the patient's
    /// responsible clinicians).
    SetLimits {
        /// The patient's subject id.
        #[arg(long)]
        patient: String,
        /// Data type name or code.
        #[arg(long = "type")]
        data_type: String,
        /// Alarm limit, as for `rule set --alarm`; at least one.
        #[arg(long = "alarm", required = true, allow_hyphen_values = true)]
        alarms: Vec<String>,
    },
    /// Give the patient the rule's alarm limits for a data type again.
    ClearLimits {
        /// The patient's subject id.
        #[arg(long)]
        patient: String,
        /// Data type name or code.
        #[arg(long = "type")]
        data_type: String,
    },
    /// Show the patient's own alarm limits for a data type.
    ShowLimits {
        /// The patient's subject id.
        #[arg(long)]
        patient: String,
        /// Data type name or code.
        #[arg(long = "type")]
        data_type: String,
    },
}

#[derive(Subcommand)]
enum ConsentCommand {
    /// The patient (the key's account) allows AUTHORITY.
    Grant {
        #[arg(long)]
        patient: Address,
        #[arg(long)]
        authority: Address,
    },
    /// The patient (the key's account) withdraws AUTHORITY's access.
    Revoke {
        #[arg(long)]
        patient: Address,
        #[arg(long)]
        authority: Address,
    },
    /// Whether AUTHORITY has the patient's consent.
    Show {
        #[arg(long)]
        patient: Address,
        #[arg(long)]
        authority: Address,
    },
}

#[derive(Subcommand)]
enum AuthorityCommand {
    /// Register ORGANISATION, active, as a KIND (laboratory, insurer, pharmacy, hospital).
    Register {
        organisation: String,
        #[arg(long)]
        kind: AuthorityKind,
    },
    /// Deactivate ORGANISATION: its certificates read nothing until reactivated.
    Deactivate { organisation: String },
    /// Reactivate ORGANISATION.
    Activate { organisation: String },
    /// Bind certificate subject id SUBJECT to ORGANISATION.
    Bind {
        subject: String,
        #[arg(long)]
        organisation: String,
    },
    /// Unbind certificate subject id SUBJECT from its organisation.
    Unbind { subject: String },
    /// The patient (the key's account) allows ORGANISATION to read their records.
    Grant { organisation: String },
    /// The patient (the key's account) withdraws ORGANISATION's access.
    Revoke { organisation: String },
    /// ORGANISATION, its bound subjects, and (with --patient) whether it has that patient's consent.
    Show {
        organisation: String,
        #[arg(long)]
        patient: Option<Address>,
    },
    /// Every registered organisation with its kind, state and bound subjects.
    List,
    /// What storage decides for a read by SUBJECT of the records of the patient with account PATIENT.
    Check {
        #[arg(long)]
        subject: String,
        #[arg(long)]
        patient: Address,
    },
}

#[derive(Subcommand)]
enum AnchorsCommand {
    /// List anchors from a block on (default: the suite's deployment).
    List {
        #[arg(long)]
        from: Option<u64>,
    },
}

#[derive(Subcommand)]
enum AnchorCommand {
    /// Exit 0 and print the anchor if ROOT is anchored; exit 1 otherwise.
    Verify { root: B256 },
    /// Anchor a root (anchorers only).
    Add {
        /// The log the root covers (32 bytes hex).
        #[arg(long)]
        log_id: B256,
        /// The Merkle root (32 bytes hex).
        #[arg(long)]
        root: B256,
        /// How many entries it covers.
        #[arg(long)]
        count: u64,
        /// First entry time, microseconds since the Unix epoch.
        #[arg(long)]
        first: u64,
        /// Last entry time, microseconds since the Unix epoch.
        #[arg(long)]
        last: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Format from WARDSEAL_LOG_FORMAT (`human` or `json`), level from RUST_LOG.
    wardseal_net::logging::init(wardseal_net::logging::LogFormat::from_env().unwrap_or_default());
    if let Command::Key { command } = &cli.command {
        return key(command, &cli.chain);
    }
    let key = read_key(&cli.chain)?;
    let location =
        LedgerLocation::from_choice(cli.chain.embedded.clone(), cli.chain.rpc.as_deref())
            .context("say which chain: --embedded DIR or --rpc URL")?;
    let backend = location.backend(LedgerAccount::Key(key))?;
    run(backend, &cli).await
}

fn out(text: impl std::fmt::Display) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

fn read_key(chain: &ChainArgs) -> anyhow::Result<AccountKey> {
    let Some(path) = &chain.key_file else {
        bail!("--key-file is needed to sign (create one with `wardseal-ledger key new FILE`)");
    };
    Ok(AccountKey::read(path)?)
}

fn key(command: &KeyCommand, chain: &ChainArgs) -> anyhow::Result<()> {
    match command {
        KeyCommand::New { file } => {
            let key = AccountKey::generate();
            key.write_new(file)?;
            out(key.address())
        }
        KeyCommand::Address => out(read_key(chain)?.address()),
    }
}

/// An SGTIN-96 EPC as a tag URI, a pure-identity URI or 24 hex digits; the registry keys
/// devices by its 12-byte binary form.
fn parse_epc(text: &str) -> anyhow::Result<[u8; 12]> {
    let epc: wardseal_core::epc::Sgtin96 = text
        .trim_start_matches("0x")
        .parse()
        .with_context(|| format!("EPC `{text}`"))?;
    Ok(epc.to_bytes())
}

fn parse_range(text: &str) -> anyhow::Result<Range> {
    let Some((min, max)) = text.split_once("..") else {
        bail!("range `{text}` is not MIN..MAX (e.g. 30..220)");
    };
    Ok(Range::new(
        WideDecimal::parse(min)?,
        WideDecimal::parse(max)?,
    )?)
}

fn show_rule(rule: &wardseal_contracts::Rule) -> anyhow::Result<()> {
    out(format_args!("rule {} at {}", rule.rule_id, rule.address))?;
    for t in &rule.types {
        let name = wardseal_core::reading::DataType::from_code(t.data_type)
            .map_or_else(|| t.data_type.to_string(), |d| d.name().to_owned());
        let ranges: Vec<String> = t
            .ranges
            .iter()
            .map(|r| format!("{}..{}", r.min, r.max))
            .collect();
        let rate = match t.max_per_minute {
            0 => "no rate limit".to_owned(),
            n => format!("at most {n}/min"),
        };
        let alarms: Vec<String> = t.alarms.iter().map(ToString::to_string).collect();
        let alarms = if alarms.is_empty() {
            String::new()
        } else {
            format!(" alarms {}", alarms.join(" "))
        };
        out(format_args!(
            "  {name} [{}] {} {rate}{alarms}",
            t.unit,
            ranges.join(" ")
        ))?;
    }
    Ok(())
}

async fn authority(ledger: &Ledger<AnyBackend>, command: &AuthorityCommand) -> anyhow::Result<()> {
    let mined = |what: &str, tx: wardseal_contracts::TxOutcome| {
        out(format_args!(
            "{what} in block {} ({})",
            tx.block, tx.tx_hash
        ))
    };
    match command {
        AuthorityCommand::Register { organisation, kind } => {
            mined(
                "registered",
                ledger.register_authority(organisation, *kind).await?,
            )?;
        }
        AuthorityCommand::Deactivate { organisation } => {
            mined(
                "deactivated",
                ledger.set_authority_active(organisation, false).await?,
            )?;
        }
        AuthorityCommand::Activate { organisation } => {
            mined(
                "activated",
                ledger.set_authority_active(organisation, true).await?,
            )?;
        }
        AuthorityCommand::Bind {
            subject,
            organisation,
        } => {
            mined(
                "bound",
                ledger.bind_authority_subject(subject, organisation).await?,
            )?;
        }
        AuthorityCommand::Unbind { subject } => {
            mined("unbound", ledger.unbind_authority_subject(subject).await?)?;
        }
        AuthorityCommand::Grant { organisation } => {
            mined(
                "granted",
                ledger.grant_authority_access(organisation).await?,
            )?;
        }
        AuthorityCommand::Revoke { organisation } => {
            mined(
                "revoked",
                ledger.revoke_authority_access(organisation).await?,
            )?;
        }
        AuthorityCommand::Show {
            organisation,
            patient,
        } => {
            let Some(entry) = ledger.authority(organisation).await? else {
                bail!("authority {organisation} is not registered");
            };
            let book = ledger.authority_book().await?;
            let mut shown = serde_json::json!({
                "organisation": entry.id,
                "kind": entry.kind,
                "active": entry.active,
                "subjects": book.subjects_of(organisation),
            });
            if let Some(patient) = patient {
                shown["consent"] = ledger
                    .authority_access(*patient, organisation)
                    .await?
                    .into();
            }
            out(serde_json::to_string_pretty(&shown)?)?;
        }
        AuthorityCommand::List => {
            let book = ledger.authority_book().await?;
            for entry in book.organisations() {
                out(format_args!(
                    "{} {} {} subjects [{}]",
                    entry.id,
                    entry.kind,
                    if entry.active { "active" } else { "inactive" },
                    book.subjects_of(&entry.id).join(", ")
                ))?;
            }
        }
        AuthorityCommand::Check { subject, patient } => {
            let decision = ledger.authority_book().await?.decide(subject, *patient);
            out(serde_json::to_string_pretty(&serde_json::json!({
                "code": decision.code(),
                "organisation": decision.organisation(),
            }))?)?;
            if decision.code() != "consent" {
                bail!("refused: {}", decision.code());
            }
        }
    }
    Ok(())
}

async fn run(backend: AnyBackend, cli: &Cli) -> anyhow::Result<()> {
    if let Command::Deploy = cli.command {
        let ledger = Ledger::deploy(backend).await?;
        ledger.suite().save(&cli.chain.suite)?;
        let s = ledger.suite();
        out(format_args!(
            "deployed at block {}\n  RuleManager       {}\n  DeviceRegistry    {}\n  Consent           {}\n  AuditAnchor       {}\n  AuthorityRegistry {}\nwrote {}",
            s.deployed_at,
            s.rule_manager,
            s.device_registry,
            s.consent,
            s.audit_anchor,
            s.authority_registry,
            cli.chain.suite.display()
        ))?;
        return Ok(());
    }
    let ledger = Ledger::new(backend, Suite::load(&cli.chain.suite)?);
    match &cli.command {
        Command::Key { .. } | Command::Deploy => {}
        Command::Role { command } => match command {
            RoleCommand::Grant { role, account } => {
                let tx = ledger.grant_role(*role, *account).await?;
                out(format_args!(
                    "granted in block {} ({})",
                    tx.block, tx.tx_hash
                ))?;
            }
            RoleCommand::Revoke { role, account } => {
                let tx = ledger.revoke_role(*role, *account).await?;
                out(format_args!(
                    "revoked in block {} ({})",
                    tx.block, tx.tx_hash
                ))?;
            }
            RoleCommand::Show { role, account } => {
                out(ledger.has_role(*role, *account).await?)?;
            }
        },
        Command::Device { command } => match command {
            DeviceCommand::Register {
                epc,
                group,
                rule,
                ward,
            } => {
                let device = Device {
                    epc: parse_epc(epc)?,
                    group: *group,
                    rule_id: *rule,
                    ward: ward.clone(),
                    active: true,
                };
                let tx = ledger.register_device(&device).await?;
                out(format_args!("registered in block {}", tx.block))?;
            }
            DeviceCommand::Deactivate { epc } => {
                let tx = ledger.deactivate_device(parse_epc(epc)?).await?;
                out(format_args!("deactivated in block {}", tx.block))?;
            }
            DeviceCommand::Show { epc } => match ledger.device(parse_epc(epc)?).await? {
                Some(d) => out(serde_json::to_string_pretty(&d)?)?,
                None => bail!("device {epc} is not registered"),
            },
            DeviceCommand::List => {
                for d in ledger.devices().await? {
                    let state = if d.active { "active" } else { "inactive" };
                    out(format_args!(
                        "{} group {} rule {} ward {} {state}",
                        hex::encode_upper(d.epc),
                        d.group,
                        d.rule_id,
                        d.ward
                    ))?;
                }
            }
        },
        Command::Rule { command } => match command {
            RuleCommand::Create { rule_id } => {
                let address = ledger.create_rule(*rule_id).await?;
                out(format_args!("rule {rule_id} at {address}"))?;
            }
            RuleCommand::Set {
                rule_id,
                data_type,
                unit,
                ranges,
                alarms,
                max_per_minute,
            } => {
                let data_type = parse_data_type(data_type)?;
                let ranges = ranges
                    .iter()
                    .map(|r| parse_range(r))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let unit = unit
                    .clone()
                    .unwrap_or_else(|| data_type.ucum_unit().to_owned());
                let alarms = alarms
                    .iter()
                    .map(|a| AlarmLimit::parse(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let rule = TypeRule::new(data_type.code(), unit, ranges, *max_per_minute)?
                    .with_alarms(alarms)?;
                let tx = ledger.set_type_rule(*rule_id, &rule).await?;
                out(format_args!("set in block {}", tx.block))?;
            }
            RuleCommand::Remove { rule_id, data_type } => {
                let code = parse_data_type(data_type)?.code();
                let tx = ledger.remove_type_rule(*rule_id, code).await?;
                out(format_args!("removed in block {}", tx.block))?;
            }
            RuleCommand::Assign { group, rule } => {
                let tx = ledger.set_group_rule(*group, *rule).await?;
                out(format_args!(
                    "group {group} follows rule {rule} (block {})",
                    tx.block
                ))?;
            }
            RuleCommand::Show { rule_id } => match rule_id {
                Some(id) => match ledger.rule(*id).await? {
                    Some(rule) => show_rule(&rule)?,
                    None => bail!("rule {id} is not registered"),
                },
                None => {
                    for rule in ledger.rules().await? {
                        show_rule(&rule)?;
                    }
                    for (group, rule) in ledger.group_rules().await? {
                        out(format_args!("group {group} follows rule {rule}"))?;
                    }
                }
            },
        },
        Command::Patient { command } => match command {
            PatientCommand::Clinician {
                patient,
                clinician,
                remove,
            } => {
                let key = PatientKey::for_subject(patient);
                let tx = ledger
                    .set_responsible_clinician(key, *clinician, !remove)
                    .await?;
                out(format_args!("set in block {}", tx.block))?;
            }
            PatientCommand::SetLimits {
                patient,
                data_type,
                alarms,
            } => {
                let alarms = alarms
                    .iter()
                    .map(|a| AlarmLimit::parse(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let limits = PatientLimits::new(
                    PatientKey::for_subject(patient),
                    parse_data_type(data_type)?.code(),
                    alarms,
                )?;
                let tx = ledger.set_patient_limits(&limits).await?;
                out(format_args!("set in block {}", tx.block))?;
            }
            PatientCommand::ClearLimits { patient, data_type } => {
                let code = parse_data_type(data_type)?.code();
                let tx = ledger
                    .clear_patient_limits(PatientKey::for_subject(patient), code)
                    .await?;
                out(format_args!("cleared in block {}", tx.block))?;
            }
            PatientCommand::ShowLimits { patient, data_type } => {
                let code = parse_data_type(data_type)?.code();
                match ledger
                    .patient_limits(PatientKey::for_subject(patient), code)
                    .await?
                {
                    Some(own) => {
                        let limits: Vec<String> =
                            own.limits.iter().map(ToString::to_string).collect();
                        out(limits.join(" "))?;
                    }
                    None => out("the rule's limits")?,
                }
            }
        },
        Command::Consent { command } => match command {
            ConsentCommand::Grant { patient, authority } => {
                let tx = ledger.grant_consent(*patient, *authority).await?;
                out(format_args!("granted in block {}", tx.block))?;
            }
            ConsentCommand::Revoke { patient, authority } => {
                let tx = ledger.revoke_consent(*patient, *authority).await?;
                out(format_args!("revoked in block {}", tx.block))?;
            }
            ConsentCommand::Show { patient, authority } => {
                out(ledger.consent(*patient, *authority).await?)?;
            }
        },
        Command::Authority { command } => authority(&ledger, command).await?,
        Command::Anchors {
            command: AnchorsCommand::List { from },
        } => {
            let from = from.unwrap_or(ledger.suite().deployed_at);
            let head = ledger.head().await?;
            for r in ledger.anchors(from, head).await? {
                out(format_args!(
                    "block {} root {} log {} count {} time {}..{} by {}",
                    r.block,
                    r.anchor.root,
                    r.anchor.log_id,
                    r.anchor.count,
                    r.anchor.first_time,
                    r.anchor.last_time,
                    r.anchorer
                ))?;
            }
        }
        Command::Anchor { command } => match command {
            AnchorCommand::Verify { root } => match ledger.anchored(*root).await? {
                Some(r) => out(serde_json::to_string_pretty(&r)?)?,
                None => bail!("root {root} is not anchored"),
            },
            AnchorCommand::Add {
                log_id,
                root,
                count,
                first,
                last,
            } => {
                let anchor = wardseal_contracts::Anchor {
                    log_id: *log_id,
                    root: *root,
                    count: *count,
                    first_time: *first,
                    last_time: *last,
                };
                let tx = ledger.anchor(&anchor).await?;
                out(format_args!(
                    "anchored in block {} ({}), gas {}",
                    tx.block, tx.tx_hash, tx.gas_used
                ))?;
            }
        },
    }
    Ok(())
}
