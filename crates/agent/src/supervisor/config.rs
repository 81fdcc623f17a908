//! [`ProxyAgentConfig`]: everything `entryway proxy` needs to write the bootstrap and run
//! Envoy, with defaults taken from the environment the way Istio's `pilot-agent` takes them.
//!
//! Environment variables read by [`ProxyAgentConfig::from_env`] (flags override them):
//!
//! | variable | field | notes |
//! | --- | --- | --- |
//! | `POD_NAME` | `pod_name` | Istio's; falls back to `HOSTNAME`, then `entryway-proxy` |
//! | `POD_NAMESPACE` | `namespace` | Istio's; falls back to `ISTIO_META_NAMESPACE`, then `default` |
//! | `ISTIO_META_INSTANCE_IPS` | `instance_ips` | comma list (Istio's metadata passthrough of `INSTANCE_IPS`) |
//! | `INSTANCE_IP` | `instance_ips` | Istio's single pod IP, used when the list is unset; default `127.0.0.1` |
//! | `ISTIO_METAJSON_LABELS` | `labels` | JSON object (Istio's historical `ISTIO_METAJSON_*` form) |
//! | `ISTIO_META_LABELS` | `labels` | the same JSON, used when the above is unset |
//! | `ISTIO_META_DNS_CAPTURE` | `dns_capture` | `true`/`false` (Go `ParseBool` spellings) |
//! | `ENTRYWAY_EXPLICIT_PROXY` | `explicit_proxy` | `ip:port` of the explicit HTTP proxy listener; unset or empty = none (the CLI defaults it to `127.0.0.1:15080`) |
//! | `ISTIO_DELTA_XDS` | `ads_api_type` | `true` → `DELTA_GRPC`; unset or `false` → `GRPC` (Istio ≥ 1.22 defaults to delta; we default to state of the world) |
//! | other `ISTIO_META_<KEY>` | `extra_metadata[<KEY>]` | copied into `node.metadata` as Istio does (e.g. `CLUSTER_ID`, `INTERCEPTION_MODE`) |
//! | `ENVOY_BIN` | `envoy_binary` | through [`find_envoy`] (flag, `ENVOY_BIN`, `PATH`, `.venv`) |
//! | `SERVICE_ACCOUNT` | `service_account` | Istio's VM setting; default `default` |
//! | `TRUST_DOMAIN` | `trust_domain` | Istio's; default `cluster.local` |
//!
//! Not from the environment (Istio keeps them in `ProxyConfig`, not in env): the xDS address
//! (default `127.0.0.1:15010`), the Envoy admin port (15000), concurrency (2, Istio's sidecar
//! default), the Envoy log level (`warning`, Istio's default), the base id and the work dir.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::bootstrap::{AdsApiType, AdsOptions, BootstrapOptions, XdsAddress};
use crate::envoy_bin::{EnvoyNotFound, find_envoy};
use crate::node_meta::{self, NodeMeta};

use super::EnvoyLaunch;

/// Default xDS server address (Istio's plaintext xDS port).
pub const DEFAULT_XDS_ADDRESS: &str = "127.0.0.1:15010";
/// Default Envoy admin port (Istio's).
pub const DEFAULT_ADMIN_PORT: u16 = 15000;
/// Default Envoy worker threads (Istio's sidecar default).
pub const DEFAULT_CONCURRENCY: u32 = 2;
/// Default Envoy log level (Istio's `--proxyLogLevel` default).
pub const DEFAULT_LOG_LEVEL: &str = "warning";
/// Default `--drain-time-s` (also how long Envoy keeps a removed listener draining).
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(5);

const META_PREFIX: &str = "ISTIO_META_";
const METAJSON_LABELS: &str = "ISTIO_METAJSON_LABELS";

/// A configuration value from the environment that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}={value:?}: {reason}")]
pub struct EnvError {
    /// The variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Errors preparing the agent (finding Envoy, writing the bootstrap).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No usable Envoy binary (the message says how to install one).
    #[error(transparent)]
    EnvoyNotFound(#[from] EnvoyNotFound),
    /// A file-system step failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Settings of the sidecar agent. Build with [`ProxyAgentConfig::from_env`] (or
/// [`ProxyAgentConfig::from_vars`]), override fields from flags, then
/// [`prepare`](ProxyAgentConfig::prepare) an [`EnvoyLaunch`] for the
/// [`Supervisor`](super::Supervisor).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyAgentConfig {
    /// Pod (workload instance) name; part of the default node id.
    pub pod_name: String,
    /// The proxy's namespace ([`node_meta::NAMESPACE`]).
    pub namespace: String,
    /// Workload labels ([`node_meta::LABELS`]).
    pub labels: BTreeMap<String, String>,
    /// Workload IPs ([`node_meta::INSTANCE_IPS`]); the first one goes into the node id.
    pub instance_ips: Vec<IpAddr>,
    /// Whether DNS is captured ([`node_meta::DNS_CAPTURE`]).
    pub dns_capture: bool,
    /// Explicit-proxy listener address ([`node_meta::EXPLICIT_PROXY`]); `None` = no listener.
    pub explicit_proxy: Option<SocketAddr>,
    /// More `node.metadata` entries (the other `ISTIO_META_*` variables). The contract keys
    /// of [`node_meta`] are written from the typed fields and win over entries here.
    pub extra_metadata: BTreeMap<String, String>,
    /// `node.id`; `None` derives Istio's form, see [`ProxyAgentConfig::node_id`].
    pub node_id: Option<String>,
    /// `node.cluster`; `None` derives `<app label or pod name>.<namespace>`.
    pub node_cluster: Option<String>,
    /// The xDS (ADS) server.
    pub xds_address: XdsAddress,
    /// State of the world or Delta.
    pub ads_api_type: AdsApiType,
    /// Envoy admin port on 127.0.0.1; 0 lets the kernel choose (the supervisor reads the real
    /// address back from `--admin-address-path`).
    pub admin_port: u16,
    /// The Envoy binary; `None` searches like [`find_envoy`] (`ENVOY_BIN`, `PATH`, `.venv`).
    pub envoy_binary: Option<PathBuf>,
    /// `--base-id`; `None` runs Envoy with `--disable-hot-restart` (the agent restarts Envoy
    /// cold, so the hot-restart socket and shared memory are only a source of clashes).
    pub base_id: Option<u32>,
    /// Where the bootstrap and the admin address file are written.
    pub work_dir: PathBuf,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// Envoy's `-l` log level (`trace`, `debug`, `info`, `warning`, `error`, `critical`, `off`).
    pub log_level: String,
    /// Envoy's `--drain-time-s` (rounded up to whole seconds, at least 1).
    pub drain_time: Duration,
    /// The workload's service account ([`node_meta::SERVICE_ACCOUNT`], and the identity
    /// asked of the mesh CA).
    pub service_account: String,
    /// Trust domain of the workload's identity.
    pub trust_domain: String,
    /// Whether inbound traffic is captured to Envoy's inbound listener
    /// ([`node_meta::INTERCEPTION_MODE`] `REDIRECT`; else `NONE`).
    pub inbound_capture: bool,
    /// Mesh credentials: with them the agent joins through the control plane's secure
    /// port (certificate from the mesh CA, mTLS xDS); without them it talks plaintext.
    pub mesh: Option<crate::mesh::MeshSecurity>,
}

impl ProxyAgentConfig {
    /// Defaults, overridden by the process environment (see the module documentation).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_vars(std::env::vars())
    }

    /// Defaults, overridden by the given variables (same rules as [`Self::from_env`]); tests
    /// and embedders pass their own environment.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, EnvError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let env_err = |var: &str, value: &str, reason: String| EnvError {
            var: var.to_owned(),
            value: value.to_owned(),
            reason,
        };

        let pod_name = get("POD_NAME")
            .or_else(|| get("HOSTNAME"))
            .unwrap_or("entryway-proxy")
            .to_owned();
        let namespace = get("POD_NAMESPACE")
            .or_else(|| get("ISTIO_META_NAMESPACE"))
            .unwrap_or("default")
            .to_owned();

        let instance_ips = if let Some(v) = get("ISTIO_META_INSTANCE_IPS") {
            node_meta::parse_ips(v).map_err(|e| env_err("ISTIO_META_INSTANCE_IPS", v, e.reason))?
        } else if let Some(v) = get("INSTANCE_IP") {
            vec![
                v.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| env_err("INSTANCE_IP", v, "not an IP address".into()))?,
            ]
        } else {
            Vec::new()
        };
        let instance_ips = if instance_ips.is_empty() {
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        } else {
            instance_ips
        };

        let labels = match [METAJSON_LABELS, "ISTIO_META_LABELS"]
            .into_iter()
            .find_map(|var| get(var).map(|v| (var, v)))
        {
            Some((var, v)) => node_meta::parse_labels(v).map_err(|e| env_err(var, v, e.reason))?,
            None => BTreeMap::new(),
        };

        let dns_capture = match get("ISTIO_META_DNS_CAPTURE") {
            Some(v) => node_meta::parse_bool(node_meta::DNS_CAPTURE, v)
                .map_err(|e| env_err("ISTIO_META_DNS_CAPTURE", v, e.reason))?,
            None => false,
        };

        let explicit_proxy = match get("ENTRYWAY_EXPLICIT_PROXY") {
            Some(v) => node_meta::parse_socket_addr(node_meta::EXPLICIT_PROXY, v)
                .map_err(|e| env_err("ENTRYWAY_EXPLICIT_PROXY", v, e.reason))?,
            None => None,
        };

        let ads_api_type = match get("ISTIO_DELTA_XDS") {
            Some(v) => match node_meta::parse_bool("ISTIO_DELTA_XDS", v) {
                Ok(true) => AdsApiType::DeltaGrpc,
                Ok(false) => AdsApiType::Grpc,
                Err(e) => return Err(env_err("ISTIO_DELTA_XDS", v, e.reason)),
            },
            None => AdsApiType::Grpc,
        };

        let extra_metadata = vars
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(META_PREFIX)?, v)))
            .filter(|(k, _)| !k.is_empty() && !node_meta::ALL_KEYS.contains(k))
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();

        let service_account = get("SERVICE_ACCOUNT")
            .unwrap_or(entryway_contract::DEFAULT_SERVICE_ACCOUNT)
            .to_owned();
        let trust_domain = get("TRUST_DOMAIN")
            .unwrap_or(entryway_contract::DEFAULT_TRUST_DOMAIN)
            .to_owned();

        Ok(Self {
            pod_name,
            namespace,
            service_account,
            trust_domain,
            labels,
            instance_ips,
            dns_capture,
            explicit_proxy,
            extra_metadata,
            ads_api_type,
            ..Self::default()
        })
    }

    /// `node.id`: the explicit one, or Istio's sidecar form
    /// `sidecar~<first IP>~<pod>.<namespace>~<namespace>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let ip = self
            .instance_ips
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let ns = &self.namespace;
        format!("sidecar~{ip}~{}.{ns}~{ns}.svc.cluster.local", self.pod_name)
    }

    /// `node.cluster`: the explicit one, or `<app label or pod name>.<namespace>`.
    pub fn node_cluster(&self) -> String {
        if let Some(c) = &self.node_cluster {
            return c.clone();
        }
        let app = self.labels.get("app").unwrap_or(&self.pod_name);
        format!("{app}.{}", self.namespace)
    }

    /// The typed node metadata (the contract keys).
    pub fn node_meta(&self) -> NodeMeta {
        NodeMeta {
            namespace: Some(self.namespace.clone()),
            labels: self.labels.clone(),
            instance_ips: self.instance_ips.clone(),
            dns_capture: self.dns_capture,
            explicit_proxy: self.explicit_proxy,
            service_account: Some(self.service_account.clone()),
            interception_mode: Some(if self.inbound_capture {
                node_meta::InterceptionMode::Redirect
            } else {
                node_meta::InterceptionMode::None
            }),
        }
    }

    /// The workload identity (`spiffe://<trust domain>/ns/<namespace>/sa/<service account>`).
    pub fn spiffe_id(&self) -> entryway_contract::SpiffeId {
        entryway_contract::SpiffeId::new(
            self.trust_domain.clone(),
            self.namespace.clone(),
            self.service_account.clone(),
        )
    }

    /// The agent's SDS socket, `<work_dir>/sds.sock` (serve it with
    /// [`crate::sds::start_for_agent`]).
    pub fn sds_socket_path(&self) -> PathBuf {
        self.work_dir.join(crate::sds::SDS_SOCKET_FILE)
    }

    /// The bootstrap: node identity and metadata, admin on 127.0.0.1:`admin_port`, ADS to
    /// `xds_address`, `sds-grpc` to [`Self::sds_socket_path`]. Callers may add static
    /// resources before writing it.
    pub fn bootstrap(&self) -> BootstrapOptions {
        let mut ads = AdsOptions::new(self.ads_api_type, self.xds_address.clone());
        ads.tls_server_name = self.mesh.as_ref().map(|m| m.server_name.clone());
        let mut opts = BootstrapOptions::new(self.node_id(), self.node_cluster())
            .with_admin_port(self.admin_port)
            .with_ads(ads)
            .with_sds_socket(self.sds_socket_path());
        opts.node_metadata = self.extra_metadata.clone();
        opts.node_metadata.extend(self.node_meta().to_metadata());
        opts
    }

    /// Finds Envoy, writes [`Self::bootstrap`] into `work_dir` and returns the launch
    /// settings for the [`Supervisor`](super::Supervisor).
    pub fn prepare(&self) -> Result<EnvoyLaunch, AgentError> {
        self.prepare_with(&self.bootstrap())
    }

    /// Like [`Self::prepare`] with a bootstrap the caller has adjusted (e.g. extra static
    /// listeners, or no ADS at all).
    pub fn prepare_with(&self, bootstrap: &BootstrapOptions) -> Result<EnvoyLaunch, AgentError> {
        let binary = find_envoy(self.envoy_binary.as_deref())?;
        let mut launch = EnvoyLaunch::write(binary, &self.work_dir, bootstrap)?;
        launch.base_id = self.base_id;
        launch.concurrency = self.concurrency;
        launch.log_level = self.log_level.clone();
        launch.drain_time = self.drain_time;
        Ok(launch)
    }
}

impl Default for ProxyAgentConfig {
    /// Defaults without looking at the environment.
    fn default() -> Self {
        Self {
            pod_name: "entryway-proxy".into(),
            namespace: "default".into(),
            labels: BTreeMap::new(),
            instance_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            dns_capture: false,
            explicit_proxy: None,
            extra_metadata: BTreeMap::new(),
            node_id: None,
            node_cluster: None,
            xds_address: XdsAddress::new("127.0.0.1", 15010),
            ads_api_type: AdsApiType::Grpc,
            admin_port: DEFAULT_ADMIN_PORT,
            envoy_binary: None,
            base_id: None,
            work_dir: default_work_dir(),
            concurrency: DEFAULT_CONCURRENCY,
            log_level: DEFAULT_LOG_LEVEL.into(),
            drain_time: DEFAULT_DRAIN_TIME,
            service_account: entryway_contract::DEFAULT_SERVICE_ACCOUNT.into(),
            trust_domain: entryway_contract::DEFAULT_TRUST_DOMAIN.into(),
            inbound_capture: false,
            mesh: None,
        }
    }
}

/// `$TMPDIR/entryway-proxy-<pid>`: private to this agent process, so two agents on one host
/// never overwrite each other's bootstrap.
pub fn default_work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("entryway-proxy-{}", std::process::id()))
}

/// The default work directory of an agent whose Envoy admin listens on `admin_port`:
/// `$TMPDIR/entryway-port-<port>`. Two live agents cannot share an admin port, and a
/// restarted agent on the same port finds (and stops) an Envoy its predecessor left behind;
/// with port 0 (any port), [`default_work_dir`].
pub fn default_work_dir_for(admin_port: u16) -> PathBuf {
    if admin_port == 0 {
        return default_work_dir();
    }
    std::env::temp_dir().join(format!("entryway-port-{admin_port}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_environment() {
        let c = ProxyAgentConfig::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(c.namespace, "default");
        assert_eq!(c.pod_name, "entryway-proxy");
        assert_eq!(c.instance_ips, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(
            XdsAddress::parse(DEFAULT_XDS_ADDRESS),
            Ok(c.xds_address.clone())
        );
        assert_eq!(c.admin_port, 15000);
        assert_eq!(c.ads_api_type, AdsApiType::Grpc);
        assert_eq!(
            c.node_id(),
            "sidecar~127.0.0.1~entryway-proxy.default~default.svc.cluster.local"
        );
        assert_eq!(c.node_cluster(), "entryway-proxy.default");
    }

    #[test]
    fn istio_variables_fill_the_node() {
        let c = ProxyAgentConfig::from_vars([
            ("POD_NAME", "cart-7d9f"),
            ("POD_NAMESPACE", "shop"),
            ("INSTANCE_IP", "10.1.2.3"),
            ("ISTIO_METAJSON_LABELS", r#"{"app":"cart","version":"v1"}"#),
            ("ISTIO_META_DNS_CAPTURE", "true"),
            ("ISTIO_META_CLUSTER_ID", "Kubernetes"),
            ("ISTIO_META_NAMESPACE", "ignored"),
            ("ISTIO_DELTA_XDS", "true"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(
            c.node_id(),
            "sidecar~10.1.2.3~cart-7d9f.shop~shop.svc.cluster.local"
        );
        assert_eq!(c.node_cluster(), "cart.shop");
        assert_eq!(c.ads_api_type, AdsApiType::DeltaGrpc);
        let meta = c.bootstrap().node_metadata;
        assert_eq!(
            meta,
            BTreeMap::from([
                ("CLUSTER_ID".to_owned(), "Kubernetes".to_owned()),
                ("DNS_CAPTURE".to_owned(), "true".to_owned()),
                ("INTERCEPTION_MODE".to_owned(), "NONE".to_owned()),
                ("SERVICE_ACCOUNT".to_owned(), "default".to_owned()),
                ("INSTANCE_IPS".to_owned(), "10.1.2.3".to_owned()),
                (
                    "LABELS".to_owned(),
                    r#"{"app":"cart","version":"v1"}"#.to_owned()
                ),
                ("NAMESPACE".to_owned(), "shop".to_owned()),
            ])
        );
    }

    #[test]
    fn instance_ips_list_wins_and_hostname_is_the_fallback_pod_name() {
        let c = ProxyAgentConfig::from_vars([
            ("HOSTNAME", "vm-1"),
            ("INSTANCE_IP", "10.0.0.1"),
            ("ISTIO_META_INSTANCE_IPS", "10.0.0.2,fd00::2"),
            ("ISTIO_META_LABELS", r#"{"tier":"web"}"#),
        ])
        .unwrap();
        assert_eq!(c.pod_name, "vm-1");
        assert_eq!(
            c.instance_ips,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        assert_eq!(c.labels["tier"], "web");
        assert_eq!(c.node_cluster(), "vm-1.default");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value, reason) in [
            ("INSTANCE_IP", "10.0.0", "not an IP"),
            (
                "ISTIO_META_INSTANCE_IPS",
                "10.0.0.1,x",
                "\"x\" is not an IP",
            ),
            ("ISTIO_METAJSON_LABELS", "[]", "JSON object"),
            ("ISTIO_META_DNS_CAPTURE", "maybe", "true or false"),
            ("ISTIO_DELTA_XDS", "on", "true or false"),
            ("ENTRYWAY_EXPLICIT_PROXY", "15080", "ip:port"),
        ] {
            let err = ProxyAgentConfig::from_vars([(var, value)]).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(reason), "{err}");
            assert!(err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn explicit_proxy_goes_into_node_metadata() {
        let c = ProxyAgentConfig::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(c.explicit_proxy, None);
        assert!(
            !c.bootstrap()
                .node_metadata
                .contains_key(node_meta::EXPLICIT_PROXY)
        );
        let c =
            ProxyAgentConfig::from_vars([("ENTRYWAY_EXPLICIT_PROXY", "127.0.0.1:15081")]).unwrap();
        assert_eq!(c.explicit_proxy, Some("127.0.0.1:15081".parse().unwrap()));
        assert_eq!(
            c.bootstrap().node_metadata[node_meta::EXPLICIT_PROXY],
            "127.0.0.1:15081"
        );
    }

    #[test]
    fn bootstrap_carries_ads_and_admin() {
        let c = ProxyAgentConfig {
            admin_port: 0,
            xds_address: XdsAddress::new("10.9.9.9", 15010),
            ads_api_type: AdsApiType::DeltaGrpc,
            node_id: Some("custom".into()),
            ..ProxyAgentConfig::default()
        };
        let v = c.bootstrap().to_value();
        assert_eq!(v["node"]["id"], "custom");
        assert_eq!(v["admin"]["address"]["socket_address"]["port_value"], 0);
        assert_eq!(
            v["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert_eq!(
            v["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
                [0]["endpoint"]["address"]["socket_address"]["address"],
            "10.9.9.9"
        );
        assert_eq!(v["static_resources"]["clusters"][1]["name"], "sds-grpc");
        assert_eq!(
            v["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0]["lb_endpoints"]
                [0]["endpoint"]["address"]["pipe"]["path"],
            c.work_dir.join("sds.sock").to_str().unwrap()
        );
    }
}
