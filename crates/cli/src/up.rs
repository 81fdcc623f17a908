//! `entryway up`: the control plane and one sidecar Envoy on this machine, with a short status
//! line on the terminal whenever something changes, and a clean shutdown on Ctrl-C.

use std::time::Duration;

use entryway_agent::EnvoyPhase;
use entryway_agent::supervisor::admin::admin_request;
use tokio::sync::watch;
use tracing::info;

use crate::proxy::{self, Agent, ProxyArgs};
use crate::serve::{ControlPlane, ServeArgs};

/// Flags of `entryway up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Control plane flags.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Sidecar flags.
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// Status refresh interval in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub status_interval_ms: u64,
}

/// What the status line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Snapshot version in force.
    pub version: u64,
    /// Configs in force.
    pub accepted: usize,
    /// Documents rejected by the last reload.
    pub rejected: usize,
    /// Connected ADS streams.
    pub proxies: usize,
    /// Envoy's phase.
    pub envoy: EnvoyPhase,
    /// Active Envoy listeners (`None` until its admin answers).
    pub listeners: Option<usize>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "config v{}: {} accepted, {} rejected | proxies connected: {} | envoy: {:?}",
            self.version, self.accepted, self.rejected, self.proxies, self.envoy
        )?;
        match self.listeners {
            Some(n) => write!(f, ", {n} listeners ready"),
            None => Ok(()),
        }
    }
}

async fn status(cp: &ControlPlane, agent: &Agent) -> Status {
    let cs = cp.shared.config_status();
    let proxies = cp.shared.proxies.lock().map(|p| p.len()).unwrap_or(0);
    let envoy = agent.status.borrow().clone();
    let listeners = match envoy.admin {
        Some(addr) if envoy.is_running() => admin_request(addr, "GET", "/listeners?format=json")
            .await
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["listener_statuses"].as_array().map(Vec::len)),
        _ => None,
    };
    Status {
        version: cs.version,
        accepted: cs.accepted.len(),
        rejected: cs.rejected.len(),
        proxies,
        envoy: envoy.phase,
        listeners,
    }
}

/// Runs `entryway up` until Ctrl-C/SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let signal = entryway_agent::shutdown_signal()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let cp = ControlPlane::start(&args.serve, stop_rx.clone()).await?;
    let config = proxy::agent_config(&args.proxy, cp.xds_addr)?;
    eprintln!(
        "entryway up: control plane xDS {} admin http://{}/ | config {}",
        cp.xds_addr,
        cp.admin_addr,
        cp.config
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("entryway up: sidecar {}", proxy::describe(&config));
    if let Some(p) = config.explicit_proxy {
        eprintln!("entryway up: try  curl -x http://{p} http://<a ServiceEntry host>/");
    }
    let joined = match proxy::join(&config, stop_rx.clone()).await {
        Ok(j) => j,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = cp.join().await;
            return Err(e);
        }
    };
    let dns = match config.dns_capture {
        true => {
            match proxy::start_dns(&config, &joined.control_plane, args.proxy.dns_address).await {
                Ok(d) => {
                    eprintln!("entryway up: DNS proxy on {} (udp+tcp)", d.addr);
                    Some(d)
                }
                Err(e) => {
                    let _ = stop_tx.send(true);
                    let _ = cp.join().await;
                    return Err(e);
                }
            }
        }
        false => None,
    };
    let agent = match Agent::start(config, joined.identity, stop_rx) {
        Ok(a) => a,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = cp.join().await;
            return Err(e);
        }
    };

    let mut signal = std::pin::pin!(signal);
    let mut last: Option<Status> = None;
    let interval = Duration::from_millis(args.status_interval_ms.max(50));
    let failure = loop {
        let s = status(&cp, &agent).await;
        if last.as_ref() != Some(&s) {
            eprintln!("entryway up: {s}");
            last = Some(s);
        }
        if cp.any_finished() {
            break Some("a control plane task stopped unexpectedly");
        }
        if agent.finished() {
            break Some("the sidecar agent stopped unexpectedly");
        }
        tokio::select! {
            sig = &mut signal => { info!(signal = sig, "shutting down"); break None; }
            _ = tokio::time::sleep(interval) => {}
        }
    };
    let _ = stop_tx.send(true);
    // Envoy drains with the config it holds; the ADS streams end at once.
    let agent_result = agent.join().await;
    drop(dns);
    let cp_result = cp.join().await;
    eprintln!("entryway up: stopped");
    agent_result?;
    cp_result?;
    match failure {
        Some(why) => anyhow::bail!(why),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_every_part() {
        let s = Status {
            version: 3,
            accepted: 12,
            rejected: 1,
            proxies: 1,
            envoy: EnvoyPhase::Running,
            listeners: Some(5),
        };
        assert_eq!(
            s.to_string(),
            "config v3: 12 accepted, 1 rejected | proxies connected: 1 | envoy: Running, 5 listeners ready"
        );
    }
}
