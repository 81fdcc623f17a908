//! Sidecar traffic capture flags: `entryway capture-rules` (print the iptables rules Istio's
//! sidecar would set, without applying them) and the `--capture` flags of `entryway proxy`
//! (apply them in the current network namespace before Envoy starts, run Envoy under the
//! excluded group so its own connections are not captured, remove them on exit).

use std::io::Write;

use anyhow::Context as _;
use entryway_agent::capture::{self, CaptureConfig, Cidr, Include};

/// What is captured and where it goes (shared by `capture-rules` and `proxy --capture`).
/// The names follow Istio's `istio-iptables` where they can.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureRuleArgs {
    /// Envoy's outbound capture port (TCP is redirected here).
    #[arg(long, default_value_t = capture::DEFAULT_OUTBOUND_PORT, value_name = "PORT")]
    pub outbound_port: u16,
    /// User ids whose connections are never captured (Envoy's), comma-separated.
    #[arg(
        long = "proxy-uid",
        value_delimiter = ',',
        default_value = "1337",
        value_name = "UID,..."
    )]
    pub proxy_uids: Vec<u32>,
    /// Group ids whose connections are never captured, comma-separated. `proxy --capture`
    /// runs Envoy with the first one.
    #[arg(
        long = "proxy-gid",
        value_delimiter = ',',
        default_value = "1337",
        value_name = "GID,..."
    )]
    pub proxy_gids: Vec<u32>,
    /// Destinations captured: `*` or comma-separated CIDRs.
    #[arg(long, default_value = "*", value_name = "*|CIDR,...")]
    pub include_cidrs: String,
    /// Destinations never captured, comma-separated CIDRs.
    #[arg(long, value_delimiter = ',', value_name = "CIDR,...")]
    pub exclude_cidrs: Vec<String>,
    /// Destination TCP ports never captured, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "PORT,...")]
    pub exclude_ports: Vec<u16>,
    /// Also capture connections over the loopback interface (to the namespace's own
    /// addresses); only 127.0.0.1 / ::1 stay uncaptured.
    #[arg(long)]
    pub capture_loopback: bool,
    /// Redirect DNS (UDP and TCP port 53) to the agent's DNS proxy.
    #[arg(long)]
    pub redirect_dns: bool,
    /// The DNS proxy's port (with `--redirect-dns`).
    #[arg(long, default_value_t = capture::DEFAULT_DNS_PORT, value_name = "PORT")]
    pub redirect_dns_port: u16,
    /// Also capture IPv6 (ip6tables).
    #[arg(long)]
    pub capture_ipv6: bool,
    /// Inbound TCP ports captured to Envoy's inbound listener (Istio's
    /// `ISTIO_INBOUND_PORTS`): `*` for all, or a comma-separated list; empty (the default)
    /// captures no inbound traffic.
    #[arg(long, default_value = "", value_name = "*|PORT,...")]
    pub inbound_ports: String,
    /// Inbound ports never captured (Istio's `ISTIO_LOCAL_EXCLUDE_PORTS`, e.g. 22).
    #[arg(long, value_delimiter = ',', value_name = "PORT,...")]
    pub inbound_exclude_ports: Vec<u16>,
    /// Envoy's inbound listener port.
    #[arg(long, default_value_t = capture::DEFAULT_INBOUND_PORT, value_name = "PORT")]
    pub inbound_port: u16,
}

impl CaptureRuleArgs {
    /// The capture configuration, checked.
    pub fn config(&self) -> anyhow::Result<CaptureConfig> {
        let include: Include = self.include_cidrs.parse().context("--include-cidrs")?;
        let exclude_cidrs = self
            .exclude_cidrs
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| c.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .context("--exclude-cidrs")?;
        let inbound = match self.inbound_ports.trim() {
            "" => None,
            "*" => Some(None),
            list => Some(Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<u16>()
                            .ok()
                            .filter(|p| *p != 0)
                            .with_context(|| format!("--inbound-ports: {p:?} is not a port"))
                    })
                    .collect::<anyhow::Result<Vec<u16>>>()?,
            )),
        }
        .map(|ports| capture::InboundCapture {
            port: self.inbound_port,
            ports,
            exclude_ports: self.inbound_exclude_ports.clone(),
        });
        let config = CaptureConfig {
            inbound,
            outbound_port: self.outbound_port,
            proxy_uids: self.proxy_uids.clone(),
            proxy_gids: self.proxy_gids.clone(),
            include,
            exclude_cidrs,
            exclude_ports: self.exclude_ports.clone(),
            exclude_loopback: !self.capture_loopback,
            dns_capture: self.redirect_dns,
            dns_port: self.redirect_dns_port,
            ipv6: self.capture_ipv6,
        };
        config.check()?;
        Ok(config)
    }
}

/// How `capture-rules` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesFormat {
    /// `iptables-restore --noflush` input, one block per family.
    Restore,
    /// `iptables` / `ip6tables` command lines.
    Commands,
}

/// `entryway capture-rules`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureRulesArgs {
    /// What to capture.
    #[command(flatten)]
    pub rules: CaptureRuleArgs,
    /// Output form.
    #[arg(long, value_enum, default_value_t = RulesFormat::Restore)]
    pub format: RulesFormat,
}

/// Prints the rules; exit status 0, or 2 on bad flags (message on `err`).
pub fn run_rules(args: &CaptureRulesArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let sets = match args.rules.config().and_then(|c| Ok(capture::build(&c)?)) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            return 2;
        }
    };
    let mut text = String::new();
    for set in &sets {
        match args.format {
            RulesFormat::Restore => {
                text.push_str(&format!("# {}-restore --noflush\n", set.family.iptables()));
                text.push_str(&set.restore_text());
            }
            RulesFormat::Commands => {
                for c in set.commands() {
                    text.push_str(&c.join(" "));
                    text.push('\n');
                }
            }
        }
    }
    match out.write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "error: writing the rules: {e}");
            1
        }
    }
}

/// The capture flags of `entryway proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyCaptureArgs {
    /// Capture the namespace's outbound traffic to Envoy (iptables, as Istio's sidecar does;
    /// needs root): applied before Envoy starts, removed on exit. Envoy runs with the first
    /// `--proxy-gid` so its own connections are not captured.
    #[arg(long)]
    pub capture: bool,
    /// With `--capture`: also run Envoy as this user id (must be one of `--proxy-uid`);
    /// Envoy must then be able to read the work dir.
    #[arg(long, value_name = "UID")]
    pub envoy_uid: Option<u32>,
    /// What to capture.
    #[command(flatten)]
    pub rules: CaptureRuleArgs,
}

/// A capture to apply, and who Envoy runs as.
#[derive(Debug, Clone)]
pub struct CapturePlan {
    /// The rules' configuration.
    pub config: CaptureConfig,
    /// Envoy's user id (`None`: the agent's).
    pub envoy_uid: Option<u32>,
    /// Envoy's group id (`None`: the agent's).
    pub envoy_gid: Option<u32>,
}

impl ProxyCaptureArgs {
    /// `None` without `--capture`; else the checked plan.
    pub fn plan(&self) -> anyhow::Result<Option<CapturePlan>> {
        if !self.capture {
            return Ok(None);
        }
        let config = self.rules.config()?;
        if let Some(uid) = self.envoy_uid
            && !config.proxy_uids.contains(&uid)
        {
            anyhow::bail!(
                "--envoy-uid {uid} is not excluded from capture (--proxy-uid {:?}): Envoy's own connections would loop back to it",
                config.proxy_uids
            );
        }
        let envoy_gid = config.proxy_gids.first().copied();
        if self.envoy_uid.is_none() && envoy_gid.is_none() {
            anyhow::bail!(
                "--capture without a --proxy-gid needs --envoy-uid, so Envoy's own connections are told apart"
            );
        }
        Ok(Some(CapturePlan {
            config,
            envoy_uid: self.envoy_uid,
            envoy_gid,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: CaptureRulesArgs,
    }

    fn rules(args: &[&str]) -> (u8, String, String) {
        let mut argv = vec!["t"];
        argv.extend_from_slice(args);
        let t = T::try_parse_from(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_rules(&t.a, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn default_rules_print_as_restore_input() {
        let (code, out, err) = rules(&[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.starts_with("# iptables-restore --noflush\n*nat\n"),
            "{out}"
        );
        assert!(out.contains("-A OUTPUT -p tcp -j ISTIO_OUTPUT\n"), "{out}");
        assert!(out.contains("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"));
        assert!(!out.contains("ip6tables"));
        assert!(!out.contains("ISTIO_OUTPUT_DNS"));
    }

    #[test]
    fn flags_shape_the_rules() {
        let (code, out, err) = rules(&[
            "--format",
            "commands",
            "--outbound-port",
            "16001",
            "--proxy-uid",
            "1000,1001",
            "--proxy-gid",
            "2000",
            "--include-cidrs",
            "203.0.113.0/24,2001:db8::/32",
            "--exclude-cidrs",
            "203.0.113.5",
            "--exclude-ports",
            "22,8443",
            "--redirect-dns",
            "--redirect-dns-port",
            "5353",
            "--capture-ipv6",
        ]);
        assert_eq!(code, 0, "{err}");
        for want in [
            "iptables -t nat -N ISTIO_OUTPUT_DNS",
            "iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001",
            "iptables -t nat -A ISTIO_OUTPUT -m owner --uid-owner 1001 -j RETURN",
            "iptables -t nat -A ISTIO_OUTPUT -m owner --gid-owner 2000 -j RETURN",
            "iptables -t nat -A ISTIO_OUTPUT -d 203.0.113.5/32 -j RETURN",
            "iptables -t nat -A ISTIO_OUTPUT -p tcp --dport 8443 -j RETURN",
            "iptables -t nat -A ISTIO_OUTPUT -d 203.0.113.0/24 -j ISTIO_REDIRECT",
            "iptables -t nat -A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-ports 5353",
            "ip6tables -t nat -A ISTIO_OUTPUT -d 2001:db8::/32 -j ISTIO_REDIRECT",
            "ip6tables -t nat -A ISTIO_OUTPUT -d ::1/128 -j RETURN",
        ] {
            assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
        }
        assert!(!out.contains("1337"), "{out}");
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let (code, out, err) = rules(&["--exclude-cidrs", "10.0.0.0/40"]);
        assert_eq!(code, 2);
        assert!(out.is_empty());
        assert!(
            err.contains("--exclude-cidrs") && err.contains("10.0.0.0/40"),
            "{err}"
        );
        let (code, _, err) = rules(&["--include-cidrs", "everything"]);
        assert_eq!(code, 2);
        assert!(err.contains("--include-cidrs"), "{err}");
        let (code, _, err) = rules(&["--outbound-port", "0"]);
        assert_eq!(code, 2);
        assert!(err.contains("outbound port"), "{err}");
    }

    #[derive(Debug, Parser)]
    struct P {
        #[command(flatten)]
        a: ProxyCaptureArgs,
    }

    #[test]
    fn proxy_plan() {
        let plan = |args: &[&str]| {
            let mut argv = vec!["t"];
            argv.extend_from_slice(args);
            P::try_parse_from(argv).unwrap().a.plan()
        };
        assert!(plan(&[]).unwrap().is_none());
        let p = plan(&["--capture"]).unwrap().unwrap();
        assert_eq!((p.envoy_uid, p.envoy_gid), (None, Some(1337)));
        let p = plan(&[
            "--capture",
            "--proxy-gid",
            "4000,4001",
            "--envoy-uid",
            "1337",
        ])
        .unwrap()
        .unwrap();
        assert_eq!((p.envoy_uid, p.envoy_gid), (Some(1337), Some(4000)));
        let e = plan(&["--capture", "--envoy-uid", "5"]).unwrap_err();
        assert!(e.to_string().contains("not excluded"), "{e}");
    }
}
