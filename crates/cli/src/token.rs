//! `entryway token`: join credentials for machines that join the mesh (what they present on
//! the secure port before they hold a workload certificate). Issued from the control plane's
//! state directory; the control plane need not be running.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use entryway_server::ca::tokens::TokenStore;

use crate::secure::tokens_dir;

/// `entryway token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token bound to a namespace and service account; prints it on stdout.
    Create(CreateArgs),
    /// Revoke a token (by id, or the token itself): refused from its next use on.
    Revoke(RevokeArgs),
}

/// `entryway token create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Namespace of the workload.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Service account of the workload.
    #[arg(long, default_value = entryway_contract::DEFAULT_SERVICE_ACCOUNT)]
    pub service_account: String,
    /// How long the token is valid (`1h`, `24h`, `7d`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The control plane's state directory.
    #[arg(long, default_value = "entryway-state", value_name = "DIR")]
    pub state_dir: PathBuf,
}

/// `entryway token revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token id (printed by `create`) or the token.
    pub token: String,
    /// The control plane's state directory.
    #[arg(long, default_value = "entryway-state", value_name = "DIR")]
    pub state_dir: PathBuf,
}

/// Runs a token subcommand; the exit code.
pub fn run(cmd: &TokenCommand, out: &mut impl Write, err: &mut impl Write) -> u8 {
    match cmd {
        TokenCommand::Create(a) => {
            let store = TokenStore::new(tokens_dir(&a.state_dir));
            match store.issue(&a.namespace, &a.service_account, a.ttl) {
                Ok((token, claims)) => {
                    let _ = writeln!(out, "{token}");
                    let _ = writeln!(
                        err,
                        "entryway token: id {} for namespace {} service account {}, valid {}",
                        claims.id,
                        claims.namespace,
                        claims.service_account,
                        humantime::format_duration(a.ttl)
                    );
                    0
                }
                Err(e) => {
                    let _ = writeln!(err, "entryway token create: {e}");
                    1
                }
            }
        }
        TokenCommand::Revoke(a) => {
            let store = TokenStore::new(tokens_dir(&a.state_dir));
            match store.revoke(&a.token) {
                Ok(id) => {
                    let _ = writeln!(err, "entryway token: revoked {id}");
                    0
                }
                Err(e) => {
                    let _ = writeln!(err, "entryway token revoke: {e}");
                    1
                }
            }
        }
    }
}
