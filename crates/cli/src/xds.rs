//! `entryway xds dump`: what one proxy would receive, as Envoy's `/config_dump` JSON or YAML,
//! as `istioctl proxy-config`-style tables, or as a static Envoy bootstrap.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use entryway_agent::bootstrap::BootstrapOptions;
use entryway_model::api::MeshConfig;
use entryway_model::registry::{ConfigSet, Proxy, ProxyScope, Registry};
use entryway_xds::generator::{self, ProxyConfig};

use crate::validate::{FileVerdict, check_paths};

/// Arguments of `entryway xds dump`.
#[derive(Debug, Clone, clap::Args)]
pub struct DumpArgs {
    /// Config files or directories (recursive).
    #[arg(long = "config", required = true, num_args = 1..)]
    pub config: Vec<PathBuf>,
    /// Mesh config file (defaults to Istio's).
    #[arg(long)]
    pub mesh: Option<PathBuf>,
    /// The proxy's namespace (also the namespace of documents that name none).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The proxy's labels, `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    pub labels: String,
    /// The proxy's IP addresses (repeat or comma-separate).
    #[arg(long = "ip", value_delimiter = ',')]
    pub ips: Vec<IpAddr>,
    /// The proxy captures DNS (ISTIO_META_DNS_CAPTURE): auto-allocated addresses are used.
    #[arg(long)]
    pub dns_capture: bool,
    /// Explicit-proxy mode: also generate an HTTP proxy listener on this `ip:port`.
    #[arg(long, value_name = "ADDR")]
    pub explicit_proxy: Option<std::net::SocketAddr>,
    /// The proxy's service account (a WorkloadEntry with another one is not its workload).
    #[arg(long)]
    pub service_account: Option<String>,
    /// Inbound traffic is captured (`INTERCEPTION_MODE=REDIRECT`): `virtualInbound` on 15006.
    #[arg(long)]
    pub inbound_capture: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = DumpOutput::Json)]
    pub output: DumpOutput,
    /// Print a complete static Envoy bootstrap with every resource inline instead.
    #[arg(long)]
    pub bootstrap: bool,
    /// Admin port of the bootstrap.
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
}

/// Output formats of `xds dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpOutput {
    /// Envoy `/config_dump` JSON.
    Json,
    /// The same as YAML.
    Yaml,
    /// Tables like `istioctl proxy-config`.
    Summary,
}

/// Parses `k=v,k2=v2`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("label {part:?} is not k=v"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Valid objects of the verdicts, and a report line per invalid document or unreadable file.
pub fn valid_configs(verdicts: Vec<FileVerdict>) -> (ConfigSet, Vec<String>, bool) {
    let mut configs = Vec::new();
    let mut problems = Vec::new();
    let mut unreadable = false;
    for v in verdicts {
        match v.result {
            Err(e) => {
                unreadable = true;
                problems.push(format!("{}: {e}", v.file));
            }
            Ok(docs) => {
                for d in docs {
                    if let Some(c) = d.config() {
                        configs.push(c.clone());
                    } else if !d.report.is_valid() {
                        let first = d
                            .report
                            .errors
                            .first()
                            .map(|i| format!("{}: {}", i.path, i.message))
                            .unwrap_or_default();
                        problems.push(format!(
                            "{}:{}: {} {}/{}: skipped (invalid): {first}",
                            v.file,
                            d.doc.line(),
                            d.doc.kind,
                            d.doc.namespace,
                            d.doc.name
                        ));
                    }
                }
            }
        }
    }
    (ConfigSet::new(configs), problems, unreadable)
}

/// The proxy described by the arguments.
pub fn proxy_of(args: &DumpArgs) -> Result<Proxy, String> {
    let mut p = Proxy::in_namespace(&args.namespace);
    p.labels = parse_labels(&args.labels)?;
    if !args.ips.is_empty() {
        p.ips.clone_from(&args.ips);
        p.id = format!(
            "sidecar~{}~entryway.{ns}~{ns}.svc.cluster.local",
            args.ips[0],
            ns = args.namespace
        );
    }
    p.dns_capture = args.dns_capture;
    p.explicit_proxy = args.explicit_proxy;
    p.service_account.clone_from(&args.service_account);
    p.inbound_capture = args.inbound_capture;
    Ok(p)
}

/// Generates the configuration of one proxy.
pub fn generate(set: &ConfigSet, mesh: &MeshConfig, proxy: &Proxy) -> ProxyConfig {
    let registry = Registry::build(set, mesh);
    let scope = ProxyScope::new(&registry, mesh, proxy);
    generator::generate(&scope)
}

/// [`generate`], plus the service ports that lose their listener to another service
/// (`entryway_xds::generator::lds::listener_conflicts`), printed as warnings by `xds dump`.
pub fn generate_checked(
    set: &ConfigSet,
    mesh: &MeshConfig,
    proxy: &Proxy,
) -> (ProxyConfig, Vec<generator::lds::ListenerConflict>) {
    let registry = Registry::build(set, mesh);
    let scope = ProxyScope::new(&registry, mesh, proxy);
    (
        generator::generate(&scope),
        generator::lds::listener_conflicts(&scope),
    )
}

/// A static bootstrap (JSON) serving `cfg` with no management server.
pub fn static_bootstrap(
    cfg: &ProxyConfig,
    proxy: &Proxy,
    admin_port: u16,
) -> Result<serde_json::Value, String> {
    let (listeners, clusters) = entryway_xds::dump::inline_static(cfg);
    let mut b = BootstrapOptions::new(proxy.id.clone(), format!("entryway.{}", proxy.namespace))
        .with_admin_port(admin_port);
    for l in &listeners {
        b = b
            .with_static_listener(entryway_xds::json::to_json_value(l).map_err(|e| e.to_string())?);
    }
    for c in &clusters {
        b = b.with_static_cluster(entryway_xds::json::to_json_value(c).map_err(|e| e.to_string())?);
    }
    Ok(b.to_value())
}

/// Runs `entryway xds dump`. Returns the exit status.
pub fn run_dump(args: &DumpArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mesh = match crate::load_mesh(args.mesh.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            return 2;
        }
    };
    let proxy = match proxy_of(args) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "error: --labels: {e}");
            return 2;
        }
    };
    let (set, problems, unreadable) =
        valid_configs(check_paths(&args.config, &args.namespace, &mesh));
    for p in &problems {
        let _ = writeln!(err, "{p}");
    }
    if unreadable {
        return 2;
    }
    let (cfg, conflicts) = generate_checked(&set, &mesh, &proxy);
    for c in &conflicts {
        let _ = writeln!(err, "warning: {c}");
    }
    let result = if args.bootstrap {
        static_bootstrap(&cfg, &proxy, args.admin_port)
            .and_then(|v| serde_json::to_string_pretty(&v).map_err(|e| e.to_string()))
    } else {
        match args.output {
            DumpOutput::Summary => Ok(entryway_xds::dump::summary(&cfg)),
            DumpOutput::Json | DumpOutput::Yaml => entryway_xds::dump::config_dump_json(&cfg, "1")
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    if args.output == DumpOutput::Json {
                        serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
                    } else {
                        serde_yaml::to_string(&v).map_err(|e| e.to_string())
                    }
                }),
        }
    };
    match result {
        Ok(text) => {
            let _ = writeln!(out, "{}", text.trim_end());
            0
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            2
        }
    }
}
