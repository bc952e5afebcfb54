//! `wardseal-pki root …`: the offline root's ceremony.

use time::OffsetDateTime;
use wardseal_pki::ca::{Ca, InitOptions, KeyPlacement, Secrets};
use wardseal_pki::root::{IssuedListing, OfflineRoot, RootOptions};
use wardseal_pki::token::Pkcs11Uri;

use crate::args::{Cli, RootArgs, RootCommand};
use crate::{emit, out};

pub(crate) async fn run(
    cli: &Cli,
    args: &RootArgs,
    secrets: &Secrets,
    actor: &str,
) -> anyhow::Result<()> {
    let passphrase = cli.root_passphrase(args);
    match &args.command {
        RootCommand::Init(init) => {
            let mut options = RootOptions::new(&args.root_dir, &init.organisation);
            options.algorithm = init.algorithm;
            let now = OffsetDateTime::now_utc();
            options.validity = (now, now + time::Duration::days(i64::from(init.days)));
            options.crl_days = init.crl_days;
            let root = OfflineRoot::init(&options, &passphrase)?;
            out(&format!(
                "root created in {} (root.key, root.crt, root.json); keep the directory offline",
                root.dir().display()
            ))?;
        }
        RootCommand::SignIssuing(sign) => {
            let root = OfflineRoot::open(&args.root_dir)?;
            let mut options = InitOptions::new(&cli.ca_dir, root.organisation());
            options.algorithm = sign.algorithm;
            options.root_key = KeyPlacement::Offline {
                dir: args.root_dir.clone(),
                passphrase,
            };
            if let Some(uri) = &sign.issuing_key {
                options.issuing_key = KeyPlacement::Token(Pkcs11Uri::parse(uri)?);
            }
            options.crl_url.clone_from(&sign.crl_url);
            options.crl_days = sign.crl_days;
            options.issuing_name.clone_from(&sign.name);
            let now = OffsetDateTime::now_utc();
            options.issuing_validity = (
                now,
                now + time::Duration::days(i64::from(sign.issuing_days)),
            );
            let ca = Ca::init(&options, secrets, actor).await?;
            emit(
                cli,
                ca.settings(),
                format_args!(
                    "issuing CA created in {}, signed by the root in {} (whose key stayed there)",
                    ca.dir().display(),
                    args.root_dir.display()
                ),
            )?;
        }
        RootCommand::Revoke(revoke) => {
            let mut root = OfflineRoot::open(&args.root_dir)?;
            let revoked = root.revoke(&revoke.serial, revoke.reason)?;
            emit(
                cli,
                &revoked,
                format_args!(
                    "revoked issuing CA {} ({}); run `wardseal-pki root crl` to publish",
                    revoked.serial, revoke.reason
                ),
            )?;
        }
        RootCommand::Crl(crl_args) => {
            let mut root = OfflineRoot::open(&args.root_dir)?.unlock(&passphrase)?;
            let crl = root.crl(&crl_args.publish)?;
            if let Some(path) = &crl_args.out {
                std::fs::write(path, crl.pem()?)?;
            }
            emit(cli, &crl, format_args!("root {crl}"))?;
        }
        RootCommand::List => {
            let root = OfflineRoot::open(&args.root_dir)?;
            emit(cli, &root.issued(), IssuedListing(root.issued()))?;
        }
        RootCommand::Adopt(adopt) => {
            let root =
                OfflineRoot::adopt(&cli.ca_dir, &args.root_dir, adopt.crl_days, actor).await?;
            out(&format!(
                "root key moved to {}; {} no longer holds it",
                root.dir().display(),
                cli.ca_dir.display()
            ))?;
        }
    }
    Ok(())
}
