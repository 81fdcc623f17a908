//! `entryway vm configure`: what a machine needs to join the mesh, as Istio's `istioctl x
//! workload entry configure` writes it: the mesh root (`root-cert.pem`), a join token bound to
//! the namespace and service account (`istio-token`), and settings (`cluster.env`).
//! `entryway proxy --join-dir DIR` starts from that directory.
//!
//! Run where the control plane's state is (it issues the token from the state directory's
//! key and reads the root from the CA the control plane uses).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use entryway_agent::mesh::join_dir;
use entryway_server::ca::tokens::TokenStore;

use crate::secure::tokens_dir;

/// `entryway vm ...`.
#[derive(Debug, clap::Subcommand)]
pub enum VmCommand {
    /// Write a join directory for a machine (root certificate, join token, settings).
    Configure(ConfigureArgs),
}

/// `entryway vm configure`.
#[derive(Debug, clap::Args)]
pub struct ConfigureArgs {
    /// Namespace of the workload.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Service account of the workload.
    #[arg(long, default_value = entryway_contract::DEFAULT_SERVICE_ACCOUNT)]
    pub service_account: String,
    /// The control plane's secure address as the machine reaches it (`HOST:15012`).
    #[arg(long, value_name = "HOST:PORT")]
    pub xds_address: String,
    /// The name the control plane's certificate carries (Istio's `ISTIOD_SAN`).
    #[arg(long, default_value = entryway_contract::DEFAULT_CONTROL_PLANE_NAME)]
    pub xds_san: String,
    /// Workload labels, `k=v,k2=v2`.
    #[arg(long, value_name = "K=V,...")]
    pub labels: Option<String>,
    /// Answer DNS for mesh hosts on the machine (Istio's `--capture-dns`).
    #[arg(long)]
    pub dns_capture: bool,
    /// How long the join token is valid.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// Requested workload certificate lifetime (the CA's default when absent).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub cert_ttl: Option<Duration>,
    /// The control plane's state directory.
    #[arg(long, default_value = "entryway-state", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The control plane's plug-in CA directory, when it uses one.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Trust domain.
    #[arg(long, default_value = entryway_contract::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// Where to write the files.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: PathBuf,
}

/// Runs a vm subcommand; the exit code.
pub fn run(cmd: &VmCommand, out: &mut impl Write, err: &mut impl Write) -> u8 {
    let VmCommand::Configure(a) = cmd;
    match configure(a) {
        Ok(id) => {
            let _ = writeln!(
                out,
                "wrote {} ({}, {}, {}); start the machine's sidecar with: entryway proxy --join-dir {}",
                a.output.display(),
                join_dir::ROOT_CERT_FILE,
                join_dir::TOKEN_FILE,
                join_dir::ENV_FILE,
                a.output.display()
            );
            let _ = writeln!(
                err,
                "entryway vm: a join token (id {id}) for namespace {:?} and service account {:?} is stored in {}",
                a.namespace,
                a.service_account,
                a.output.join(join_dir::TOKEN_FILE).display()
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "entryway vm configure: {e:#}");
            1
        }
    }
}

fn configure(a: &ConfigureArgs) -> anyhow::Result<String> {
    use anyhow::Context as _;
    entryway_agent::XdsAddress::parse(&a.xds_address).context("--xds-address")?;
    let serve = crate::serve::ServeArgs::for_state(&a.state_dir, a.ca_dir.clone(), &a.trust_domain);
    let ca = crate::secure::load_ca(&serve)?;
    let (token, claims) = TokenStore::new(tokens_dir(&a.state_dir))
        .issue(&a.namespace, &a.service_account, a.token_ttl)
        .context("issuing the join token")?;
    let mut env = BTreeMap::from([
        ("POD_NAMESPACE".to_string(), a.namespace.clone()),
        ("SERVICE_ACCOUNT".to_string(), a.service_account.clone()),
        ("TRUST_DOMAIN".to_string(), a.trust_domain.clone()),
        (join_dir::XDS_ADDRESS_KEY.to_string(), a.xds_address.clone()),
        (join_dir::SERVER_NAME_KEY.to_string(), a.xds_san.clone()),
    ]);
    if let Some(l) = &a.labels {
        let labels = crate::xds::parse_labels(l).map_err(anyhow::Error::msg)?;
        env.insert(
            "ISTIO_METAJSON_LABELS".to_string(),
            entryway_contract::node_meta::encode_labels(&labels),
        );
    }
    if a.dns_capture {
        env.insert("ISTIO_META_DNS_CAPTURE".to_string(), "true".to_string());
    }
    if let Some(t) = a.cert_ttl {
        env.insert(
            join_dir::SECRET_TTL_KEY.to_string(),
            humantime::format_duration(t).to_string(),
        );
    }
    join_dir::write(&a.output, &ca.root_pem(), &token, &env)
        .with_context(|| format!("writing {}", a.output.display()))?;
    Ok(claims.id)
}
