//! `entryway proxy`: the sidecar agent. Writes the Envoy bootstrap (node id and metadata from
//! flags or the environment, the xDS address), starts Envoy, restarts it with back-off when it
//! dies, drains it on SIGTERM/SIGINT, and logs Envoy's lines under its own.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use entryway_agent::{
    AdsApiType, EnvoyPhase, EnvoyStatus, ProxyAgentConfig, Supervisor, SupervisorOptions,
    XdsAddress,
};
use tokio::sync::watch;
use tracing::info;

/// Default explicit-proxy address.
pub const DEFAULT_EXPLICIT_PROXY: &str = "127.0.0.1:15080";

/// Flags of the sidecar agent (shared by `proxy` and `up`). Unset flags fall back to the
/// environment as Istio's `pilot-agent` reads it (`POD_NAMESPACE`, `INSTANCE_IP`,
/// `ISTIO_METAJSON_LABELS`, `ISTIO_META_*`, `ISTIO_DELTA_XDS`, `ENVOY_BIN`).
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// The control plane's xDS address (host:port).
    #[arg(long = "xds", value_name = "HOST:PORT")]
    pub xds: Option<String>,
    /// Envoy admin port on 127.0.0.1 (0 lets the kernel choose).
    #[arg(long, default_value_t = entryway_agent::supervisor::config::DEFAULT_ADMIN_PORT)]
    pub envoy_admin_port: u16,
    /// Explicit HTTP proxy listener (`curl -x http://ADDR ...`, `HTTPS_PROXY`); `off` disables it.
    #[arg(long, default_value = DEFAULT_EXPLICIT_PROXY, value_name = "ADDR|off")]
    pub explicit_proxy: String,
    /// Use the Delta (incremental) ADS protocol instead of state of the world.
    #[arg(long)]
    pub delta: bool,
    /// The proxy's namespace (node metadata NAMESPACE).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Workload labels, `k=v,k2=v2` (node metadata LABELS).
    #[arg(long, value_name = "K=V,...")]
    pub labels: Option<String>,
    /// Workload IPs, comma-separated (node metadata INSTANCE_IPS).
    #[arg(long, value_name = "IP,...", value_delimiter = ',')]
    pub ip: Vec<IpAddr>,
    /// The Envoy node id (default: Istio's `sidecar~IP~POD.NS~NS.svc.cluster.local`).
    #[arg(long)]
    pub node_id: Option<String>,
    /// The Envoy binary (else `ENVOY_BIN`, `PATH`, the project's `.venv`).
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Envoy `--base-id` (default: hot restart disabled, no shared memory to clash on).
    #[arg(long)]
    pub base_id: Option<u32>,
    /// Directory for the bootstrap and Envoy's admin address file; one live agent per
    /// directory (default `$TMPDIR/entryway-port-<envoy admin port>`, so that a restarted
    /// agent finds and stops an Envoy its predecessor left running).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Envoy log level (trace, debug, info, warning, error, critical, off).
    #[arg(long)]
    pub envoy_log_level: Option<String>,
    /// Envoy worker threads.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Run the DNS proxy (node metadata DNS_CAPTURE=true, as Istio's
    /// `ISTIO_META_DNS_CAPTURE`): answers for ServiceEntry hosts from the control plane's name
    /// table, forwards the rest to /etc/resolv.conf; services without addresses get
    /// auto-allocated ones.
    #[arg(long)]
    pub dns_capture: bool,
    /// DNS proxy address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:15053", value_name = "ADDR")]
    pub dns_address: SocketAddr,
    /// The workload's service account (node metadata SERVICE_ACCOUNT; the identity asked
    /// of the mesh CA). Default: `SERVICE_ACCOUNT`, else `default`.
    #[arg(long)]
    pub service_account: Option<String>,
    /// Join the mesh with what `entryway vm configure` wrote: root certificate, join token,
    /// settings (namespace, service account, the control plane's secure address).
    #[arg(long, value_name = "DIR")]
    pub join_dir: Option<PathBuf>,
    /// Join the mesh through the secure port, trusting this mesh root (PEM).
    #[arg(long, value_name = "FILE")]
    pub root_cert: Option<PathBuf>,
    /// The join token file (with `--root-cert`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The DNS name the control plane's certificate must carry (Istio's `ISTIOD_SAN`).
    #[arg(long, value_name = "NAME")]
    pub xds_san: Option<String>,
    /// Requested workload certificate lifetime (`24h`, `10m`); the CA's default otherwise.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub cert_ttl: Option<std::time::Duration>,
}

/// The agent settings from the environment overridden by `args`; `xds_default` is used when
/// neither names the control plane.
pub fn agent_config(args: &ProxyArgs, xds_default: SocketAddr) -> anyhow::Result<ProxyAgentConfig> {
    use entryway_agent::mesh::join_dir::{self, JoinDir};
    // A join directory's settings come after the process environment (they describe this
    // machine's place in the mesh); flags come last.
    let join = match &args.join_dir {
        Some(dir) => Some(JoinDir::read(dir).context("reading the join directory")?),
        None => None,
    };
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if let Some(j) = &join {
        vars.extend(j.env.clone());
    }
    let mut c = ProxyAgentConfig::from_vars(vars)?;
    let join_xds = join.as_ref().and_then(|j| j.get(join_dir::XDS_ADDRESS_KEY));
    c.xds_address = match (&args.xds, join_xds) {
        (Some(a), _) => XdsAddress::parse(a)?,
        (None, Some(a)) => XdsAddress::parse(a)
            .with_context(|| format!("{} in the join directory", join_dir::XDS_ADDRESS_KEY))?,
        (None, None) => XdsAddress::new(xds_default.ip().to_string(), xds_default.port()),
    };
    if let Some(sa) = &args.service_account {
        c.service_account = sa.clone();
    }
    let root_cert = args
        .root_cert
        .clone()
        .or_else(|| join.as_ref().map(JoinDir::root_cert));
    if let Some(root_cert) = root_cert {
        let get = |k: &str| join.as_ref().and_then(|j| j.get(k)).map(str::to_string);
        let ca_address =
            match get(join_dir::CA_ADDRESS_KEY) {
                Some(a) => Some(XdsAddress::parse(&a).with_context(|| {
                    format!("{} in the join directory", join_dir::CA_ADDRESS_KEY)
                })?),
                None => None,
            };
        let cert_ttl =
            match (args.cert_ttl, get(join_dir::SECRET_TTL_KEY)) {
                (Some(t), _) => Some(t),
                (None, Some(t)) => Some(humantime::parse_duration(&t).with_context(|| {
                    format!("{} in the join directory", join_dir::SECRET_TTL_KEY)
                })?),
                (None, None) => None,
            };
        c.mesh = Some(entryway_agent::mesh::MeshSecurity {
            root_cert,
            token_file: args
                .token_file
                .clone()
                .or_else(|| join.as_ref().map(JoinDir::token_file)),
            server_name: args
                .xds_san
                .clone()
                .or_else(|| get(join_dir::SERVER_NAME_KEY))
                .unwrap_or_else(|| entryway_contract::DEFAULT_CONTROL_PLANE_NAME.to_string()),
            ca_address,
            cert_ttl,
        });
        // A machine joining from elsewhere that names no address of its own: the one it
        // reaches the control plane from.
        let ip_named = !args.ip.is_empty()
            || std::env::var_os("INSTANCE_IP").is_some()
            || std::env::var_os("ISTIO_META_INSTANCE_IPS").is_some()
            || join.as_ref().is_some_and(|j| {
                j.get("INSTANCE_IP").is_some() || j.get("ISTIO_META_INSTANCE_IPS").is_some()
            });
        if !ip_named
            && let Ok(ip) =
                entryway_agent::net::local_address_towards(&c.xds_address.host, c.xds_address.port)
            && !ip.is_loopback()
        {
            c.instance_ips = vec![ip];
        }
    } else if args.token_file.is_some() {
        anyhow::bail!(
            "--token-file needs --root-cert (the mesh root that verifies the control plane)"
        );
    }
    c.admin_port = args.envoy_admin_port;
    if args.delta {
        c.ads_api_type = AdsApiType::DeltaGrpc;
    }
    if let Some(ns) = &args.namespace {
        c.namespace = ns.clone();
    }
    if let Some(l) = &args.labels {
        c.labels = crate::xds::parse_labels(l).map_err(anyhow::Error::msg)?;
    }
    if !args.ip.is_empty() {
        c.instance_ips = args.ip.clone();
    }
    if args.node_id.is_some() {
        c.node_id = args.node_id.clone();
    }
    if args.envoy.is_some() {
        c.envoy_binary = args.envoy.clone();
    }
    c.base_id = args.base_id;
    match &args.work_dir {
        Some(d) => c.work_dir = d.clone(),
        None => c.work_dir = entryway_agent::supervisor::config::default_work_dir_for(c.admin_port),
    }
    if let Some(l) = &args.envoy_log_level {
        c.log_level = l.clone();
    }
    if let Some(n) = args.concurrency {
        c.concurrency = n;
    }
    c.explicit_proxy = parse_explicit_proxy(&args.explicit_proxy)?;
    if args.dns_capture {
        c.dns_capture = true;
    }
    Ok(c)
}

/// How this agent reaches the control plane and who it is there.
pub struct Joined {
    /// The control plane (secure port with the workload certificate, or plaintext).
    pub control_plane: entryway_agent::mesh::ControlPlane,
    /// The identity served to Envoy (`default`, `ROOTCA`), following rotations.
    pub identity: entryway_agent::sds::IdentitySource,
}

/// With mesh credentials: the first workload certificate from the mesh CA (retrying until it
/// signs or `stop` fires) and its rotation in the background. Without: a self-signed identity
/// and the plaintext port.
pub async fn join(
    config: &ProxyAgentConfig,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Joined> {
    use entryway_agent::mesh::{CertificateClient, ControlPlane, start_identity};
    let Some(mesh) = &config.mesh else {
        let identity = entryway_agent::sds::self_signed_for(config)?;
        return Ok(Joined {
            control_plane: ControlPlane::plaintext(config.xds_address.clone()),
            identity: entryway_agent::sds::fixed_identity(identity),
        });
    };
    let root = std::fs::read_to_string(&mesh.root_cert)
        .with_context(|| format!("reading the mesh root {}", mesh.root_cert.display()))?;
    let cp = ControlPlane::secure(config.xds_address.clone(), &root, &mesh.server_name, None)?;
    let ca = match &mesh.ca_address {
        Some(a) => cp.at(a.clone()),
        None => cp.clone(),
    };
    let client = CertificateClient::new(
        ca,
        mesh.token_file.clone(),
        config.spiffe_id(),
        mesh.cert_ttl,
    );
    let (identity, _rotation) = start_identity(client, stop)
        .await
        .context("getting a workload certificate from the mesh CA")?;
    Ok(Joined {
        control_plane: cp.with_identity(Some(identity.clone())),
        identity,
    })
}

/// `off` → `None`; else a socket address.
pub fn parse_explicit_proxy(s: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.eq_ignore_ascii_case("off") || s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("--explicit-proxy {s:?}: expected IP:PORT or off"))
}

/// A started agent.
pub struct Agent {
    /// Settings in use.
    pub config: ProxyAgentConfig,
    /// Envoy's status.
    pub status: watch::Receiver<EnvoyStatus>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    /// Starts the local SDS server (secrets for Envoy, as Istio's agent serves them), writes
    /// the bootstrap and supervises Envoy until `stop` turns true.
    pub fn start(
        config: ProxyAgentConfig,
        identity: entryway_agent::sds::IdentitySource,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Agent> {
        Self::start_as(config, identity, stop, None, None)
    }

    /// Like [`Agent::start`], running Envoy as `uid` / `gid` when given (traffic capture
    /// tells Envoy's own connections apart by them).
    pub fn start_as(
        config: ProxyAgentConfig,
        identity: entryway_agent::sds::IdentitySource,
        mut stop: watch::Receiver<bool>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> anyhow::Result<Agent> {
        let mut launch = config.prepare()?;
        launch.uid = uid;
        launch.gid = gid;
        let sds = entryway_agent::sds::start_for_agent_following(&config, identity)
            .context("starting the SDS server")?;
        let sup = Supervisor::new(launch, SupervisorOptions::default());
        let status = sup.status();
        let task = tokio::spawn(async move {
            let exit = sup
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            // Envoy is gone (or never ran): stop serving its secrets.
            if let Err(e) = sds.shutdown().await {
                tracing::warn!(error = %e, "SDS server stopped with an error");
            }
            let exit = exit?;
            info!(
                restarts = exit.restarts,
                killed = exit.killed,
                "Envoy stopped"
            );
            Ok(())
        });
        Ok(Agent {
            config,
            status,
            task,
        })
    }

    /// Whether supervision ended (before shutdown: it gave up).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for supervision to end.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await.context("agent task")?
    }
}

/// The DNS proxy and the name-table subscription feeding it; both stop when dropped.
pub struct Dns {
    /// Where it answers.
    pub addr: SocketAddr,
    _nds: entryway_agent::nds::NdsClient,
    _dns: entryway_agent::dns::DnsHandle,
}

/// Subscribes to the control plane's name table (NDS, as this proxy's node) and serves DNS
/// on `addr` from it.
pub async fn start_dns(
    config: &ProxyAgentConfig,
    control_plane: &entryway_agent::mesh::ControlPlane,
    addr: SocketAddr,
) -> anyhow::Result<Dns> {
    let node = entryway_agent::nds::node(&config.node_id(), &config.bootstrap().node_metadata);
    let nds = entryway_agent::nds::NdsClient::start_with(
        control_plane,
        node,
        entryway_agent::nds::NameTableHandle::new(),
    );
    let options = entryway_agent::dns::DnsOptions::system(addr, &config.namespace)
        .context("reading /etc/resolv.conf for the DNS proxy's upstreams")?;
    let dns = entryway_agent::dns::DnsProxy::start(options, nds.table())
        .await
        .with_context(|| format!("cannot serve DNS on {addr}"))?;
    info!(%addr, "DNS proxy listening (name table from the control plane)");
    Ok(Dns {
        addr,
        _nds: nds,
        _dns: dns,
    })
}

/// One line describing the agent's settings (printed at start).
pub fn describe(c: &ProxyAgentConfig) -> String {
    let mut s = format!(
        "node {} (namespace {}), xDS {}:{} ({}), Envoy admin 127.0.0.1:{}",
        c.node_id(),
        c.namespace,
        c.xds_address.host,
        c.xds_address.port,
        match c.ads_api_type {
            AdsApiType::Grpc => "state of the world",
            AdsApiType::DeltaGrpc => "delta",
        },
        c.admin_port
    );
    match c.explicit_proxy {
        Some(a) => s.push_str(&format!(", explicit proxy http://{a}")),
        None => s.push_str(", explicit proxy off"),
    }
    s
}

/// `entryway proxy` flags: the agent's, plus traffic capture (not shared with `up`).
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyCommandArgs {
    /// The agent.
    #[command(flatten)]
    pub agent: ProxyArgs,
    /// Traffic capture (`--capture`, see `entryway capture-rules`).
    #[command(flatten)]
    pub capture: crate::capture::ProxyCaptureArgs,
}

/// Runs `entryway proxy` until SIGINT/SIGTERM; with `--capture`, the namespace's outbound
/// traffic goes to Envoy meanwhile.
pub async fn run_command(args: ProxyCommandArgs) -> anyhow::Result<()> {
    let plan = args.capture.plan()?;
    run_with_capture(args.agent, plan).await
}

/// Runs `entryway proxy` until SIGINT/SIGTERM.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    run_with_capture(args, None).await
}

/// Runs `entryway proxy`; `capture` rules are applied before Envoy starts and removed when
/// this returns, on success and on error alike (the guard removes them when dropped).
pub async fn run_with_capture(
    args: ProxyArgs,
    mut capture: Option<crate::capture::CapturePlan>,
) -> anyhow::Result<()> {
    let signal = entryway_agent::shutdown_signal()?;
    let default_xds: SocketAddr = ([127, 0, 0, 1], entryway_contract::PLAINTEXT_XDS_PORT).into();
    let mut config = agent_config(&args, default_xds)?;
    // Inbound listeners on 15006 only when inbound traffic is captured to them.
    config.inbound_capture = capture.as_ref().is_some_and(|p| p.config.inbound.is_some());
    // As Istio's sidecar: with DNS capture on (flag, environment or join directory), the
    // application's DNS queries (port 53) go to the DNS proxy too.
    if let Some(p) = capture.as_mut()
        && config.dns_capture
    {
        p.config.dns_capture = true;
        p.config.dns_port = args.dns_address.port();
    }
    eprintln!("entryway proxy: {}", describe(&config));
    // --- traffic capture (issue 6): apply now, remove on every way out ---
    let (guard, envoy_uid, envoy_gid) = match &capture {
        None => (None, None, None),
        Some(plan) => {
            let guard = entryway_agent::Capture::apply(&plan.config)
                .context("applying the traffic capture rules")?;
            eprintln!(
                "entryway proxy: capturing outbound TCP to port {} (Envoy runs as uid {}, gid {})",
                plan.config.outbound_port,
                plan.envoy_uid.map_or("unchanged".into(), |u| u.to_string()),
                plan.envoy_gid.map_or("unchanged".into(), |g| g.to_string()),
            );
            (Some(guard), plan.envoy_uid, plan.envoy_gid)
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let result = async {
        let mut signal = std::pin::pin!(signal);
        let joined = tokio::select! {
            j = join(&config, stop_rx.clone()) => j?,
            sig = &mut signal => {
                info!(signal = sig, "shutting down before joining the mesh");
                return Ok(());
            }
        };
        let _dns = match config.dns_capture {
            true => Some(start_dns(&config, &joined.control_plane, args.dns_address).await?),
            false => None,
        };
        run_agent(
            config,
            joined.identity,
            signal,
            stop_tx,
            stop_rx,
            envoy_uid,
            envoy_gid,
        )
        .await
    }
    .await;
    if let Some(guard) = guard {
        guard
            .remove()
            .context("removing the traffic capture rules")?;
        eprintln!("entryway proxy: capture rules removed");
    }
    result
}

async fn run_agent(
    config: ProxyAgentConfig,
    identity: entryway_agent::sds::IdentitySource,
    signal: impl std::future::Future<Output = &'static str>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> anyhow::Result<()> {
    let agent = Agent::start_as(config, identity, stop_rx, uid, gid)?;
    let mut status = agent.status.clone();
    tokio::select! {
        sig = signal => info!(signal = sig, "shutting down"),
        _ = status.wait_for(|s| s.phase == EnvoyPhase::Failed) => {}
    }
    let _ = stop_tx.send(true);
    agent.join().await
}
