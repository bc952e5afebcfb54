//! `wardseal-pki est …`: registering devices and running the EST server.

use anyhow::Context as _;
use wardseal_core::identity::{GroupId, RuleId};
use wardseal_pki::ca::{Ca, Secrets};
use wardseal_pki::est::{self, EstOptions, Registration, TlsFiles};

use crate::args::{Cli, EstCommand};
use crate::{emit, out};

pub(crate) async fn run(
    cli: &Cli,
    command: &EstCommand,
    secrets: &Secrets,
    actor: &str,
) -> anyhow::Result<()> {
    let ca = Ca::open(&cli.ca_dir).await?;
    match command {
        EstCommand::Register(args) => {
            let epc: wardseal_core::epc::Sgtin96 = args.epc.parse()?;
            let registration = Registration {
                epc: epc.clone(),
                group_id: GroupId(args.group),
                rule_id: RuleId(args.rule),
                ward: args.ward.clone(),
                secret: args.secret,
                manufacturer_serial: args.manufacturer_serial.clone(),
            };
            let secret = est::register(&ca, &registration, args.replace, actor).await?;
            let shown = match (&secret, &args.secret_out) {
                (Some(secret), Some(path)) => {
                    wardseal_pki::key::write_private_file(path, secret.expose().as_bytes())?;
                    None
                }
                (Some(secret), None) => Some(secret.expose()),
                (None, _) => None,
            };
            emit(
                cli,
                &serde_json::json!({
                    "epc": epc.pure_identity_uri(),
                    "user": epc.to_hex(),
                    "secret": shown,
                    "secret_file": args.secret_out,
                    "manufacturer_serial": args.manufacturer_serial,
                }),
                format_args!(
                    "registered {} for EST enrollment (HTTP Basic user {}){}",
                    epc.pure_identity_uri(),
                    epc.to_hex(),
                    shown.map_or_else(String::new, |secret| format!("; one-time secret {secret}"))
                ),
            )?;
        }
        EstCommand::Serve(args) => {
            let signing = ca.unlock(secrets)?;
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("binding {}", args.listen))?;
            let bound = listener.local_addr()?;
            let files = TlsFiles {
                certificate: args.tls_cert.clone(),
                key: args.tls_key.clone(),
                manufacturer_cas: args.manufacturer_ca.clone(),
            };
            let options = EstOptions {
                validity_days: args.days,
                ..EstOptions::default()
            };
            out(&format!("serving EST at https://{bound}{}", est::PREFIX))?;
            est::serve(&signing, &files, listener, options, actor, shutdown()).await?;
        }
    }
    Ok(())
}

/// Ends on Ctrl-C or SIGTERM.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
