//! `wardseal-pki`: the hospital CA's command line. The arguments are in [`args`]; the work
//! and the text of every report are in the `wardseal_pki` library; this file wires one to
//! the other and prints.

mod args;
mod est;
mod root;

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use time::OffsetDateTime;
use wardseal_card::KeySelector;
use wardseal_core::identity::GroupId;
use wardseal_pki::audit::AuditLog;
use wardseal_pki::batch::BatchOptions;
use wardseal_pki::ca::{Ca, InitOptions, Issued, KeyPlacement, Secrets};
use wardseal_pki::card::{self, EnrollOptions, SigningKeySource, TokenChoice};
use wardseal_pki::describe::CertificateDescription;
use wardseal_pki::inventory::{CertificateDetails, Filter, Listing};
use wardseal_pki::key::SecretSource;
use wardseal_pki::profile::Request;
use wardseal_pki::token::Pkcs11Uri;

use crate::args::{AuditCommand, CardArgs, CardCommand, Cli, Command, identity};

/// Writes `text` to standard output, ending it with a newline if it has none.
pub(crate) fn out(text: &str) -> anyhow::Result<()> {
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

/// Prints `value` as JSON with `--json`, else `text`.
pub(crate) fn emit(
    cli: &Cli,
    value: &impl serde::Serialize,
    text: impl Display,
) -> anyhow::Result<()> {
    if cli.json {
        json(value)
    } else {
        out(&text.to_string())
    }
}

/// Prints a check's verdict (`OK: …` or `FAILED: …`, or JSON) and the exit code it means.
fn verdict(
    cli: &Cli,
    result: Result<impl serde::Serialize + Display, impl Display>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(verified) => {
            emit(
                cli,
                &serde_json::json!({ "valid": true, "result": verified }),
                format_args!("OK: {verified}"),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            emit(
                cli,
                &serde_json::json!({ "valid": false, "reason": error.to_string() }),
                format_args!("FAILED: {error}"),
            )?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn emit_certificate(cli: &Cli, issued: &Issued, path: Option<&PathBuf>) -> anyhow::Result<()> {
    if let Some(path) = path {
        write(path, &issued.pem)?;
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
        out(&issued.to_string())
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
            emit(
                cli,
                ca.settings(),
                format_args!(
                    "CA created in {} (root.crt, issuing.crt, chain.pem, ca.db); move root.key offline if it is a file",
                    ca.dir().display()
                ),
            )?;
        }
        Command::Issue(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let mut request = Request::new(identity(args.profile, &args.identity)?);
            request.dns_names.clone_from(&args.dns);
            request.ip_addresses.clone_from(&args.ip);
            request.emails.clone_from(&args.email);
            request.common_name.clone_from(&args.cn);
            request.ward.clone_from(&args.ward);
            request.validity_days = args.output.days;
            request.check()?;
            let Some(key) = args.key.subject_key()? else {
                bail!("give --csr FILE (the requester's key) or --key-out FILE (generate one)");
            };
            let signing = ca.unlock(&secrets)?;
            let issued = signing.issue(&request, &key, &actor).await?;
            emit_certificate(cli, &issued, args.output.out.as_ref())?;
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
            let mut value = serde_json::to_value(&report)?;
            value["seconds"] = serde_json::json!(seconds);
            emit(cli, &value, format_args!("{report} in {seconds:.2} s"))?;
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
            emit(
                cli,
                &record,
                format_args!(
                    "revoked {} ({}); run `wardseal-pki crl` to publish",
                    record.serial, args.reason
                ),
            )?;
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
                    write(path, crl.pem()?)?;
                }
                emit(
                    cli,
                    &crl,
                    format_args!("{crl}, in {}", ca.crl_path().display()),
                )?;
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
                out(&Listing {
                    records: &records,
                    now,
                }
                .to_string())?;
            }
        }
        Command::Show(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let record = ca.inventory().certificate(&args.serial).await?;
            let description = CertificateDescription::from_bytes(&record.der)?;
            let now = OffsetDateTime::now_utc();
            let pem = wardseal_pki::ca::pem("CERTIFICATE", &record.der)?;
            let details = CertificateDetails {
                record: &record,
                description: &description,
                now,
                pem: args.pem.then_some(pem.as_str()),
            };
            emit(
                cli,
                &serde_json::json!({
                    "record": record,
                    "status": record.status(now),
                    "certificate": description,
                    "pem": pem,
                }),
                details,
            )?;
        }
        Command::Verify(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let certificate = read(&args.certificate)?;
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
            let result = ca.verify(&certificate, crl.as_deref(), OffsetDateTime::now_utc());
            return verdict(cli, result);
        }
        Command::Renew(args) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let key = args.key.subject_key()?;
            let signing = ca.unlock(&secrets)?;
            let issued = signing
                .renew(&args.serial, key.as_ref(), args.output.days, &actor)
                .await?;
            emit_certificate(cli, &issued, args.output.out.as_ref())?;
        }
        Command::Audit(AuditCommand::Verify) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            match wardseal_pki::audit::verify(ca.inventory()).await {
                Ok(report) => emit(cli, &report, &report)?,
                Err(error) => {
                    // The failure is text even with --json: it is an error, not a report.
                    out(&format!("FAILED: {error}"))?;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Audit(AuditCommand::List) => {
            let ca = Ca::open(&cli.ca_dir).await?;
            let entries = wardseal_pki::audit::entries(ca.inventory()).await?;
            emit(cli, &entries, AuditLog(&entries))?;
        }
        Command::Card(args) => return run_card(cli, args, &secrets, &actor).await,
        Command::Est(command) => est::run(cli, command, &secrets, &actor).await?,
        Command::Root(args) => root::run(cli, args, &secrets, &actor).await?,
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
            emit(cli, &listing, &listing)?;
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
                write(path, &enrolled.issued.pem)?;
            }
            emit(
                cli,
                &enrolled,
                format_args!("enrolled patient {} {enrolled}", enroll.patient),
            )?;
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
            let message = read(&sign.file)?;
            let signer = card::open_signer(&source)?;
            let signature = signer
                .sign_message(&message)
                .map_err(wardseal_pki::Error::from)?;
            let path = sign.out.clone().unwrap_or_else(|| {
                let mut name = sign.file.clone().into_os_string();
                name.push(".sig");
                PathBuf::from(name)
            });
            write(&path, &signature)?;
            emit(
                cli,
                &serde_json::json!({
                    "signature": path,
                    "algorithm": signer.algorithm(),
                    "bytes": signature.len(),
                }),
                format_args!(
                    "signed {} ({}) into {}",
                    sign.file.display(),
                    signer.algorithm(),
                    path.display()
                ),
            )?;
        }
        CardCommand::Verify(verify) => {
            let message = read(&verify.file)?;
            let signature = read(&verify.signature)?;
            let certificate = read(&verify.certificate)?;
            let result =
                card::verify_signature(&message, &signature, &certificate, verify.algorithm);
            return verdict(cli, result);
        }
    }
    Ok(ExitCode::SUCCESS)
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
