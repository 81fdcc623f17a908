//! `entryway serve`: the control plane alone (config store + watcher, ADS server, admin HTTP).
//!
//! ```text
//! config dir ──watch──► Store (validate, last good per resource) ──snapshot──► ADS ──► Envoys
//!                                   └──────────── Shared (status, metrics) ──► admin HTTP
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use entryway_server::admin::AdminServer;
use entryway_server::shared::Shared;
use entryway_server::store::{Store, StoreOptions};
use entryway_server::watch::WatchOptions;
use entryway_server::withdrawal::WithdrawalPolicy;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::defaults;

/// Flags of the control plane (shared by `serve` and `up`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Config files or directories (read recursively, watched). Without it, the embedded
    /// default config is written to `./entryway-config` (when that does not exist) and used.
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub config: Vec<PathBuf>,
    /// Mesh config file (outboundTrafficPolicy, ...); Istio's defaults when absent.
    #[arg(long, value_name = "FILE")]
    pub mesh: Option<PathBuf>,
    /// Namespace of documents that name none.
    #[arg(long, default_value = entryway_server::store::DEFAULT_NAMESPACE)]
    pub default_namespace: String,
    /// Plaintext ADS listen address (Istio's 15010): no authentication, so loopback only
    /// unless `--insecure-remote-xds` is given. Proxies on other machines use the secure port.
    #[arg(long, default_value = "127.0.0.1:15010", value_name = "ADDR")]
    pub xds_address: SocketAddr,
    /// Allow `--xds-address` on a non-loopback address (every resource of every namespace to
    /// anyone who connects; a warning is logged).
    #[arg(long)]
    pub insecure_remote_xds: bool,
    /// Secure port (Istio's 15012): xDS and the certificate API over TLS, callers
    /// authenticated by workload certificate or join token; `off` disables it.
    #[arg(long, default_value = "0.0.0.0:15012", value_name = "ADDR|off")]
    pub secure_xds_address: String,
    /// Extra DNS names or IPs in the control plane's serving certificate (besides istiod's
    /// names, `localhost`, 127.0.0.1 and the secure listen address).
    #[arg(long = "tls-san", value_name = "NAME|IP")]
    pub tls_san: Vec<String>,
    /// The control plane's state: the self-signed mesh CA (created once, kept across
    /// restarts), the join-token key, and the last good configuration (`<DIR>/last-good/`,
    /// read back at start, so a file found broken at start keeps serving its last good
    /// resources).
    #[arg(long, default_value = "entryway-state", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Istio's plug-in CA directory (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
    /// `cert-chain.pem`); without it the self-signed root in the state directory is used.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Trust domain of workload identities (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`).
    #[arg(long, default_value = entryway_contract::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// Lifetime of workload certificates when a request asks for none (`24h`, `10m`, `30s`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub workload_cert_ttl: std::time::Duration,
    /// Admin HTTP listen address (/ready, /metrics, /debug/*), Istio's monitoring port.
    #[arg(long, default_value = "127.0.0.1:15014", value_name = "ADDR")]
    pub admin_address: SocketAddr,
    /// Quiet time (ms) after a file change before the reload (bursts coalesce).
    #[arg(long, default_value_t = 10, value_name = "MS")]
    pub debounce_ms: u64,
    /// Largest config file read (bytes); a larger one is refused and keeps its last good
    /// resources.
    #[arg(long, default_value_t = entryway_server::files::DEFAULT_MAX_FILE_BYTES, value_name = "BYTES")]
    pub max_file_bytes: u64,
    /// Hold a reload that would withdraw more than this percentage of the resources in
    /// force (at least five of them) until confirmed; 100 turns this off. A removed config
    /// root is always held. Confirm with SIGHUP, or restore the files.
    #[arg(long, default_value_t = 50, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_withdrawal_percent: u8,
    /// Apply a withdrawal the first reload would hold (the files say so; you mean it).
    #[arg(long)]
    pub confirm_withdrawal: bool,
}

/// Longest the first read of the config may take before the start fails.
const FIRST_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl ServeArgs {
    /// The defaults of every flag, with this state, CA directory and trust domain (what
    /// commands that work on the control plane's state need).
    pub fn for_state(
        state_dir: &std::path::Path,
        ca_dir: Option<PathBuf>,
        trust_domain: &str,
    ) -> ServeArgs {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut args = Defaults::parse_from(["entryway"]).serve;
        args.state_dir = state_dir.to_path_buf();
        args.ca_dir = ca_dir;
        args.trust_domain = trust_domain.to_string();
        args
    }
}

/// A running control plane.
pub struct ControlPlane {
    /// Where plaintext ADS listens.
    pub xds_addr: SocketAddr,
    /// Where the secure port listens (`None` when off).
    pub secure_addr: Option<SocketAddr>,
    /// The mesh CA (`None` when the secure port is off).
    pub ca: Option<Arc<entryway_server::ca::MeshCa>>,
    /// Where admin HTTP listens.
    pub admin_addr: SocketAddr,
    /// Status and metrics shared by every part.
    pub shared: Arc<Shared>,
    /// The config paths in use.
    pub config: Vec<PathBuf>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl ControlPlane {
    /// Loads the config, binds the ports and starts the watcher, ADS and admin tasks; they
    /// stop when `stop` turns true.
    pub async fn start(args: &ServeArgs, stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let config = if args.config.is_empty() {
            vec![defaults::ensure_default_config(
                &defaults::default_config_dir(),
            )?]
        } else {
            args.config.clone()
        };
        let options = StoreOptions {
            paths: config.clone(),
            mesh_file: args.mesh.clone(),
            default_namespace: args.default_namespace.clone(),
            max_file_bytes: args.max_file_bytes,
            state_dir: Some(args.state_dir.clone()),
            withdrawal: WithdrawalPolicy {
                max_percent: args.max_withdrawal_percent,
                ..WithdrawalPolicy::default()
            },
            confirm_withdrawal: args.confirm_withdrawal,
            read_hook: None,
        };
        let open = tokio::task::spawn_blocking(move || Store::open(options));
        let (store, shared) = tokio::time::timeout(FIRST_READ_TIMEOUT, open)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "reading the config did not finish within {} s (a hung file system?)",
                    FIRST_READ_TIMEOUT.as_secs()
                )
            })?
            .context("loading the config")??;
        let confirmation = store.confirmation();

        if !args.xds_address.ip().is_loopback() {
            if !args.insecure_remote_xds {
                anyhow::bail!(
                    "--xds-address {}: the plaintext xDS port serves every resource without \
                     authentication and listens on loopback only; proxies on other machines use \
                     the secure port ({}); pass --insecure-remote-xds to serve it there anyway",
                    args.xds_address,
                    args.secure_xds_address
                );
            }
            tracing::warn!(
                address = %args.xds_address,
                "plaintext xDS on a non-loopback address: anyone who can connect gets every resource of every namespace"
            );
        }
        let ads_listener = entryway_server::ads::bind(args.xds_address).await?;
        let xds_addr = ads_listener.local_addr()?;
        let secure = crate::secure::start(args, &shared, stop.clone()).await?;
        let secure_addr = secure.as_ref().map(|s| s.addr);
        let ca = secure.as_ref().map(|s| Arc::clone(&s.ca));
        let admin = AdminServer::bind(args.admin_address, Arc::clone(&shared))
            .await
            .with_context(|| format!("cannot listen on {} (admin)", args.admin_address))?;
        let admin_addr = admin.local_addr()?;

        let stopped = move |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let watch_options = WatchOptions {
            quiet: std::time::Duration::from_millis(args.debounce_ms),
            ..WatchOptions::default()
        };
        let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        let s = stop.clone();
        tasks.push((
            "config watcher",
            tokio::spawn(async move {
                entryway_server::watch::run(store, watch_options, stopped(s)).await?;
                Ok(())
            }),
        ));
        // SIGHUP confirms a held withdrawal (the operator did mean to remove those files).
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let mut s = stop.clone();
        tasks.push((
            "SIGHUP handler",
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = s.wait_for(|s| *s) => return Ok(()),
                        got = hangup.recv() => {
                            if got.is_none() {
                                return Ok(());
                            }
                            info!("SIGHUP: confirming the held config withdrawal, if any");
                            confirmation.confirm();
                        }
                    }
                }
            }),
        ));
        let s = stop.clone();
        let sh = Arc::clone(&shared);
        let (secure_port, authenticator) = match secure {
            Some(s) => (Some(s.port), Some(s.authenticator)),
            None => (None, None),
        };
        tasks.push((
            "ADS server",
            tokio::spawn(async move {
                let options = entryway_server::ads::AdsOptions {
                    authenticator,
                    ..Default::default()
                };
                entryway_server::ads::serve_ports(
                    Some(ads_listener),
                    secure_port,
                    sh,
                    options,
                    stopped(s),
                )
                .await?;
                Ok(())
            }),
        ));
        let s = stop.clone();
        tasks.push((
            "admin server",
            tokio::spawn(async move {
                admin.serve(stopped(s)).await;
                Ok(())
            }),
        ));
        info!(
            xds = %xds_addr,
            secure = %secure_addr.map_or("off".to_string(), |a| a.to_string()),
            admin = %admin_addr,
            config = %config.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","),
            "control plane started"
        );
        Ok(ControlPlane {
            xds_addr,
            secure_addr,
            ca,
            admin_addr,
            shared,
            config,
            tasks,
        })
    }

    /// Whether a task has ended (each runs until shutdown, so before it this is a failure).
    pub fn any_finished(&self) -> bool {
        self.tasks.iter().any(|(_, t)| t.is_finished())
    }

    /// Waits for every task; returns the first failure.
    pub async fn join(self) -> anyhow::Result<()> {
        let mut first = None;
        for (name, task) in self.tasks {
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("{e}")),
            };
            if let Err(e) = result {
                error!(task = name, error = %format!("{e:#}"), "control plane task failed");
                first.get_or_insert(e.context(name));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Runs `entryway serve` until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let signal = entryway_agent::shutdown_signal()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let cp = ControlPlane::start(&args, stop_rx).await?;
    eprintln!(
        "entryway serve: xDS on {} (plaintext), {} (secure), admin on http://{}/ (config: {})",
        cp.xds_addr,
        cp.secure_addr.map_or("off".to_string(), |a| a.to_string()),
        cp.admin_addr,
        cp.config
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let failed = tokio::select! {
        sig = signal => { info!(signal = sig, "shutting down"); false }
        _ = wait_any_finished(&cp) => true,
    };
    let _ = stop_tx.send(true);
    let result = cp.join().await;
    if failed && result.is_ok() {
        anyhow::bail!("a control plane task stopped unexpectedly");
    }
    result
}

/// Resolves once any control-plane task has ended.
pub async fn wait_any_finished(cp: &ControlPlane) {
    loop {
        if cp.any_finished() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
