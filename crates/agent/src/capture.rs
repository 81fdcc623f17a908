//! Sidecar traffic capture: the iptables rules Istio's sidecar sets for outbound (and, with
//! `--inbound-ports`, inbound) traffic, built from a [`CaptureConfig`], applied to and removed
//! from the current network namespace.
//!
//! ```text
//! nat OUTPUT ─► ISTIO_OUTPUT_DNS (with DNS capture; UDP/TCP port 53)
//!               ├─ proxy uid/gid ─► RETURN (Envoy's, or an agent running as the proxy user)
//!               ├─ fwmark AGENT_MARK ─► RETURN (the DNS proxy's own upstream queries)
//!               └─ else ─► REDIRECT to dns_port (15053)
//!          ─► -p tcp ISTIO_OUTPUT
//!               ├─ fwmark AGENT_MARK (the agent's own connections) ─► RETURN
//!               ├─ -o lo (loopback interface) ─► RETURN
//!               ├─ proxy uid / gid (Envoy's own connections) ─► RETURN
//!               ├─ -d 127.0.0.1/32 (::1/128) ─► RETURN
//!               ├─ excluded ports / excluded CIDRs ─► RETURN
//!               └─ included CIDRs (default all) ─► ISTIO_REDIRECT ─► REDIRECT to 15001
//! ```
//!
//! - [`build`] is pure: a [`CaptureConfig`] gives one [`RuleSet`] per IP family, printable
//!   as `iptables-restore --noflush` input ([`RuleSet::restore_text`]) or as `iptables`
//!   command lines ([`RuleSet::commands`]).
//! - [`apply`] loads the rules atomically with `iptables-restore --noflush` (and
//!   `ip6tables-restore` when IPv6 capture is on); it removes a previous capture first, so
//!   applying twice leaves one copy. [`remove`] deletes the jumps from `OUTPUT` and our
//!   chains and nothing else, so rules others set stay untouched.
//! - [`Capture`] is the guard `entryway proxy --capture` holds: it removes the rules when
//!   dropped (errors, panics) and, if the `nat` table did not exist before, deletes the
//!   empty table again (iptables-nft creates it on first use), so that `iptables-save`
//!   afterwards prints exactly what it printed before.
//!
//! Inbound capture (`--inbound-ports`): `PREROUTING` → `ISTIO_INBOUND` (excluded ports and
//! 15006 itself return) → `ISTIO_IN_REDIRECT` → 15006 (`virtualInbound`); in `ISTIO_OUTPUT`,
//! Envoy's connections to the application from 127.0.0.6 return, and Envoy calling its own
//! workload's address over `lo` goes to the inbound side (Istio's rules).
//!
//! Every capture returns packets carrying [`AGENT_MARK`] first: the agent's own connections
//! (control plane, DNS upstreams) are never captured, whatever address they go to.

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// Istio's proxy user and group id (`istio-proxy`, 1337).
pub const DEFAULT_PROXY_ID: u32 = 1337;
/// Envoy's outbound capture listener port (Istio's `virtualOutbound`).
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;
/// The agent's DNS proxy port (Istio's).
pub const DEFAULT_DNS_PORT: u16 = 15053;

/// Firewall mark the DNS proxy puts on its upstream sockets (`SO_MARK`, see
/// [`crate::dns::upstream`]). With DNS capture the rules let packets carrying it through
/// uncaptured: the agent runs as root, not as the proxy user, so without the mark its own
/// queries to the resolv.conf nameservers (port 53) would be redirected back to itself.
/// Istio's value 1337 (0x539) is its TPROXY mark; this one is distinct.
pub const AGENT_MARK: u32 = 0x1538;

/// Chain every outbound TCP connection is sent through.
pub const CHAIN_OUTPUT: &str = "ISTIO_OUTPUT";
/// Chain that redirects to the outbound port.
pub const CHAIN_REDIRECT: &str = "ISTIO_REDIRECT";
/// Chain that redirects DNS (port 53) to the DNS proxy.
pub const CHAIN_OUTPUT_DNS: &str = "ISTIO_OUTPUT_DNS";
/// Chain every inbound TCP connection is sent through (from `PREROUTING`).
pub const CHAIN_INBOUND: &str = "ISTIO_INBOUND";
/// Chain that redirects to the inbound port.
pub const CHAIN_IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
/// Every chain [`apply`] may create (and [`remove`] deletes).
pub const CHAINS: [&str; 5] = [
    CHAIN_OUTPUT_DNS,
    CHAIN_OUTPUT,
    CHAIN_REDIRECT,
    CHAIN_INBOUND,
    CHAIN_IN_REDIRECT,
];
/// The built-in chains ours are jumped to from.
const ENTRY_CHAINS: [&str; 2] = ["OUTPUT", "PREROUTING"];
/// Envoy's inbound capture listener port (Istio's `virtualInbound`).
pub const DEFAULT_INBOUND_PORT: u16 = 15006;
/// The source address Envoy uses towards the local application for inbound traffic
/// (Istio's "magic" 127.0.0.6: the rules return it uncaptured).
pub const INBOUND_SOURCE_V4: &str = "127.0.0.6/32";
/// The IPv6 counterpart.
pub const INBOUND_SOURCE_V6: &str = "::6/128";

/// IP family of a rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`iptables`).
    V4,
    /// IPv6 (`ip6tables`).
    V6,
}

impl Family {
    /// The `iptables` command of this family.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The family's loopback address as a CIDR.
    pub fn loopback(self) -> Cidr {
        match self {
            Family::V4 => Cidr {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                prefix: 32,
            },
            Family::V6 => Cidr {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        }
    }

    fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a host network). Host
/// bits are cleared, as iptables prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The family.
    pub fn family(&self) -> Family {
        match self.addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// A CIDR that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an IP network (want ADDRESS or ADDRESS/PREFIX): {reason}")]
pub struct CidrError {
    input: String,
    reason: String,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| CidrError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err("bad address"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| err(&format!("prefix must be 0..={max}")))?,
        };
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which destinations are captured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Include {
    /// Every destination (Istio's `*`).
    #[default]
    All,
    /// Only these networks.
    Cidrs(Vec<Cidr>),
}

impl FromStr for Include {
    type Err = CidrError;

    /// `*` or a comma-separated list of CIDRs (empty = capture nothing).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "*" {
            return Ok(Include::All);
        }
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Include::Cidrs)
    }
}

/// Inbound capture: TCP arriving for the workload goes to Envoy's inbound listener
/// (Istio's `ISTIO_INBOUND_PORTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCapture {
    /// Envoy's inbound port (15006).
    pub port: u16,
    /// Destination ports captured: `None` = all (`*`), else these.
    pub ports: Option<Vec<u16>>,
    /// Destination ports never captured (Istio's `ISTIO_LOCAL_EXCLUDE_PORTS`, e.g. 22).
    pub exclude_ports: Vec<u16>,
}

impl Default for InboundCapture {
    fn default() -> Self {
        Self {
            port: DEFAULT_INBOUND_PORT,
            ports: None,
            exclude_ports: Vec::new(),
        }
    }
}

/// What to capture and where to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Envoy's outbound capture port (TCP is redirected here).
    pub outbound_port: u16,
    /// User ids whose connections are never captured (Envoy's own, the DNS proxy's).
    pub proxy_uids: Vec<u32>,
    /// Group ids whose connections are never captured.
    pub proxy_gids: Vec<u32>,
    /// Destinations captured.
    pub include: Include,
    /// Destinations never captured (checked before `include`).
    pub exclude_cidrs: Vec<Cidr>,
    /// Destination TCP ports never captured.
    pub exclude_ports: Vec<u16>,
    /// Leave connections over the loopback interface alone (to 127.0.0.0/8 and to the
    /// namespace's own addresses). When off, only 127.0.0.1 / ::1 stay uncaptured.
    pub exclude_loopback: bool,
    /// Redirect DNS (UDP and TCP port 53) to `dns_port`.
    pub dns_capture: bool,
    /// The DNS proxy's port.
    pub dns_port: u16,
    /// Also capture IPv6 (`ip6tables`); Envoy must then listen on `[::]:outbound_port`.
    pub ipv6: bool,
    /// Capture inbound traffic too; `None` = outbound only.
    pub inbound: Option<InboundCapture>,
}

impl Default for CaptureConfig {
    /// Istio's sidecar defaults: capture all TCP to 15001, proxy uid and gid 1337 excluded,
    /// loopback excluded, no DNS capture, IPv4 only.
    fn default() -> Self {
        Self {
            outbound_port: DEFAULT_OUTBOUND_PORT,
            proxy_uids: vec![DEFAULT_PROXY_ID],
            proxy_gids: vec![DEFAULT_PROXY_ID],
            include: Include::All,
            exclude_cidrs: Vec::new(),
            exclude_ports: Vec::new(),
            exclude_loopback: true,
            dns_capture: false,
            dns_port: DEFAULT_DNS_PORT,
            ipv6: false,
            inbound: None,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Port 0.
    #[error("{what} must not be 0")]
    ZeroPort {
        /// Which port.
        what: &'static str,
    },
    /// Nothing identifies the proxy, so its own connections would be captured in a loop.
    #[error(
        "no proxy uid or gid to exclude: Envoy's own connections would be redirected back to it"
    )]
    NoProxyIdentity,
}

impl CaptureConfig {
    /// Rejects settings that would capture the proxy's own traffic or redirect to port 0.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.outbound_port == 0 {
            return Err(ConfigError::ZeroPort {
                what: "the outbound port",
            });
        }
        if self.dns_capture && self.dns_port == 0 {
            return Err(ConfigError::ZeroPort {
                what: "the DNS port",
            });
        }
        if self.inbound.as_ref().is_some_and(|i| i.port == 0) {
            return Err(ConfigError::ZeroPort {
                what: "the inbound port",
            });
        }
        if self.proxy_uids.is_empty() && self.proxy_gids.is_empty() {
            return Err(ConfigError::NoProxyIdentity);
        }
        Ok(())
    }

    /// The families [`apply`] sets rules for.
    pub fn families(&self) -> Vec<Family> {
        if self.ipv6 {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    }
}

/// The `nat` rules of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// The family.
    pub family: Family,
    /// Chains to create (all in `nat`).
    pub chains: Vec<&'static str>,
    /// `-A` rules, each an argument list starting with the chain, e.g.
    /// `["ISTIO_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"]`.
    pub rules: Vec<Vec<String>>,
}

impl RuleSet {
    /// `iptables-restore --noflush` input (only the `nat` table).
    pub fn restore_text(&self) -> String {
        let mut s = String::from("*nat\n");
        for c in &self.chains {
            s.push_str(&format!(":{c} - [0:0]\n"));
        }
        for r in &self.rules {
            s.push_str("-A ");
            s.push_str(&r.join(" "));
            s.push('\n');
        }
        s.push_str("COMMIT\n");
        s
    }

    /// The same as `iptables`/`ip6tables` command lines.
    pub fn commands(&self) -> Vec<Vec<String>> {
        let cmd = self.family.iptables().to_owned();
        let mut out = Vec::new();
        for c in &self.chains {
            out.push(vec![
                cmd.clone(),
                "-t".into(),
                "nat".into(),
                "-N".into(),
                (*c).to_owned(),
            ]);
        }
        for r in &self.rules {
            let mut line = vec![cmd.clone(), "-t".into(), "nat".into(), "-A".into()];
            line.extend(r.iter().cloned());
            out.push(line);
        }
        out
    }

    /// The rules that jump from the built-in `OUTPUT` and `PREROUTING` chains into ours
    /// (what [`remove`] deletes from them).
    pub fn output_jumps(&self) -> Vec<Vec<String>> {
        self.rules
            .iter()
            .filter(|r| {
                r.first()
                    .is_some_and(|c| ENTRY_CHAINS.contains(&c.as_str()))
            })
            .cloned()
            .collect()
    }
}

fn rule(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

/// The rules for `config`, one set per family in [`CaptureConfig::families`]. Pure.
pub fn build(config: &CaptureConfig) -> Result<Vec<RuleSet>, ConfigError> {
    config.check()?;
    Ok(config
        .families()
        .into_iter()
        .map(|f| build_family(config, f))
        .collect())
}

fn owner_returns(chain: &str, prefix: &[&str], config: &CaptureConfig) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (flag, ids) in [
        ("--uid-owner", &config.proxy_uids),
        ("--gid-owner", &config.proxy_gids),
    ] {
        for id in ids {
            let id = id.to_string();
            let mut r = vec![chain];
            r.extend_from_slice(prefix);
            r.extend(["-m", "owner", flag, &id, "-j", "RETURN"]);
            out.push(rule(&r));
        }
    }
    out
}

fn lo_net(family: Family) -> String {
    family.loopback().to_string()
}

/// The rules of one family.
pub fn build_family(config: &CaptureConfig, family: Family) -> RuleSet {
    let outbound = config.outbound_port.to_string();
    let dns = config.dns_port.to_string();
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    if config.dns_capture {
        chains.push(CHAIN_OUTPUT_DNS);
    }
    chains.extend([CHAIN_OUTPUT, CHAIN_REDIRECT]);
    if config.inbound.is_some() {
        chains.extend([CHAIN_INBOUND, CHAIN_IN_REDIRECT]);
    }

    // Jumps from OUTPUT: DNS first (its REDIRECT ends the walk for port 53).
    if config.dns_capture {
        rules.push(rule(&["OUTPUT", "-j", CHAIN_OUTPUT_DNS]));
    }
    rules.push(rule(&["OUTPUT", "-p", "tcp", "-j", CHAIN_OUTPUT]));

    rules.push(rule(&[
        CHAIN_REDIRECT,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &outbound,
    ]));

    let mark = AGENT_MARK.to_string();
    if config.dns_capture {
        rules.push(rule(&[
            CHAIN_OUTPUT_DNS,
            "-m",
            "mark",
            "--mark",
            &mark,
            "-j",
            "RETURN",
        ]));
        for proto in ["udp", "tcp"] {
            rules.extend(owner_returns(
                CHAIN_OUTPUT_DNS,
                &["-p", proto, "--dport", "53"],
                config,
            ));
        }
        for proto in ["udp", "tcp"] {
            rules.push(rule(&[
                CHAIN_OUTPUT_DNS,
                "-p",
                proto,
                "--dport",
                "53",
                "-j",
                "REDIRECT",
                "--to-ports",
                &dns,
            ]));
        }
    }

    if let Some(inbound) = &config.inbound {
        let port = inbound.port.to_string();
        rules.push(rule(&["PREROUTING", "-p", "tcp", "-j", CHAIN_INBOUND]));
        rules.push(rule(&[
            CHAIN_IN_REDIRECT,
            "-p",
            "tcp",
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ]));
        // Envoy's own inbound port is never redirected (a connection straight to 15006).
        let mut exclude = vec![inbound.port];
        exclude.extend(inbound.exclude_ports.iter().copied());
        exclude.sort_unstable();
        exclude.dedup();
        let exclude = exclude
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        rules.push(rule(&[
            CHAIN_INBOUND,
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--dports",
            &exclude,
            "-j",
            "RETURN",
        ]));
        match &inbound.ports {
            None => rules.push(rule(&[CHAIN_INBOUND, "-p", "tcp", "-j", CHAIN_IN_REDIRECT])),
            Some(ports) => {
                for p in ports {
                    let p = p.to_string();
                    rules.push(rule(&[
                        CHAIN_INBOUND,
                        "-p",
                        "tcp",
                        "--dport",
                        &p,
                        "-j",
                        CHAIN_IN_REDIRECT,
                    ]));
                }
            }
        }
        // Envoy's inbound connections to the application come from 127.0.0.6 over lo.
        let source = match family {
            Family::V4 => INBOUND_SOURCE_V4,
            Family::V6 => INBOUND_SOURCE_V6,
        };
        rules.push(rule(&[
            CHAIN_OUTPUT,
            "-o",
            "lo",
            "-s",
            source,
            "-j",
            "RETURN",
        ]));
        // Envoy calling its own workload's address (a service VIP that resolved to this
        // machine): through the inbound side, as Istio does.
        for (flag, ids) in [
            ("--uid-owner", &config.proxy_uids),
            ("--gid-owner", &config.proxy_gids),
        ] {
            for id in ids {
                let id = id.to_string();
                rules.push(rule(&[
                    CHAIN_OUTPUT,
                    "-o",
                    "lo",
                    "!",
                    "-d",
                    &lo_net(family),
                    "-m",
                    "owner",
                    flag,
                    &id,
                    "-j",
                    CHAIN_IN_REDIRECT,
                ]));
            }
        }
    }
    // The agent's own connections (control plane, DNS upstreams): never captured, however
    // the control plane is reached (see `crate::net`).
    rules.push(rule(&[
        CHAIN_OUTPUT,
        "-m",
        "mark",
        "--mark",
        &mark,
        "-j",
        "RETURN",
    ]));
    if config.exclude_loopback {
        rules.push(rule(&[CHAIN_OUTPUT, "-o", "lo", "-j", "RETURN"]));
    }
    rules.extend(owner_returns(CHAIN_OUTPUT, &[], config));
    let lo = family.loopback().to_string();
    rules.push(rule(&[CHAIN_OUTPUT, "-d", &lo, "-j", "RETURN"]));
    for port in &config.exclude_ports {
        let p = port.to_string();
        rules.push(rule(&[
            CHAIN_OUTPUT,
            "-p",
            "tcp",
            "--dport",
            &p,
            "-j",
            "RETURN",
        ]));
    }
    for c in config.exclude_cidrs.iter().filter(|c| c.family() == family) {
        let c = c.to_string();
        rules.push(rule(&[CHAIN_OUTPUT, "-d", &c, "-j", "RETURN"]));
    }
    match &config.include {
        Include::All => rules.push(rule(&[CHAIN_OUTPUT, "-j", CHAIN_REDIRECT])),
        Include::Cidrs(cidrs) => {
            for c in cidrs.iter().filter(|c| c.family() == family) {
                let c = c.to_string();
                rules.push(rule(&[CHAIN_OUTPUT, "-d", &c, "-j", CHAIN_REDIRECT]));
            }
        }
    }
    RuleSet {
        family,
        chains,
        rules,
    }
}

/// Applying or removing rules failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A command could not be run.
    #[error(
        "running {command}: {source}. Capture needs root (CAP_NET_ADMIN) and iptables: apt-get install -y iptables"
    )]
    Spawn {
        /// The command.
        command: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// Exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
    status: String,
}

fn run_cmd(program: &str, args: &[String], stdin: Option<&str>) -> Result<Output, CaptureError> {
    let command = format!("{program} {}", args.join(" "));
    let spawn_err = |source| CaptureError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        status: out.status.to_string(),
    })
}

fn run_ok(program: &str, args: &[String], stdin: Option<&str>) -> Result<String, CaptureError> {
    let out = run_cmd(program, args, stdin)?;
    if out.ok {
        Ok(out.stdout)
    } else {
        Err(CaptureError::Failed {
            command: format!("{program} {}", args.join(" ")),
            status: out.status,
            stderr: out.stderr,
        })
    }
}

fn strings(parts: &[&str]) -> Vec<String> {
    rule(parts)
}

/// Whether `ip6tables` can be run here (installed, and IPv6 available in the namespace).
/// Asks `ip6tables-save`, which (unlike listing a chain) does not create the `nat` table.
pub fn ip6tables_available() -> bool {
    run_cmd("ip6tables-save", &[], None).is_ok_and(|o| o.ok)
}

/// Whether the `nat` table of `family` exists (`iptables-save` prints it; with `-t nat`
/// it would print an empty one either way).
pub fn nat_table_exists(family: Family) -> Result<bool, CaptureError> {
    let save = format!("{}-save", family.iptables());
    let out = run_ok(&save, &[], None)?;
    Ok(out.lines().any(|l| l.trim() == "*nat"))
}

fn chain_exists(family: Family, chain: &str) -> Result<bool, CaptureError> {
    Ok(run_cmd(
        family.iptables(),
        &strings(&["-t", "nat", "-S", chain]),
        None,
    )?
    .ok)
}

/// Removes the capture of `family` from the current namespace: every jump from `OUTPUT`
/// into one of [`CHAINS`] (as many copies as there are), then the chains. Rules and chains
/// of others are left alone. Nothing to remove is not an error.
pub fn remove_family(family: Family) -> Result<(), CaptureError> {
    let cmd = family.iptables();
    if !nat_table_exists(family)? {
        return Ok(());
    }
    // Jumps into our chains from the built-in chains, whatever their matches: read them back.
    for entry in ENTRY_CHAINS {
        let listing = run_ok(cmd, &strings(&["-t", "nat", "-S", entry]), None)?;
        for line in listing.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let jumps_to_ours = words
                .windows(2)
                .any(|w| w[0] == "-j" && CHAINS.contains(&w[1]));
            if words.first() == Some(&"-A") && jumps_to_ours {
                let mut args = strings(&["-t", "nat", "-D"]);
                args.extend(words[1..].iter().map(|w| (*w).to_owned()));
                run_ok(cmd, &args, None)?;
            }
        }
    }
    // Flush all first (chains may jump to each other), then delete.
    let mut present = Vec::new();
    for chain in CHAINS {
        if chain_exists(family, chain)? {
            run_ok(cmd, &strings(&["-t", "nat", "-F", chain]), None)?;
            present.push(chain);
        }
    }
    for chain in present {
        run_ok(cmd, &strings(&["-t", "nat", "-X", chain]), None)?;
    }
    Ok(())
}

/// Removes the capture of both families (IPv6 only where `ip6tables` works).
pub fn remove() -> Result<(), CaptureError> {
    remove_family(Family::V4)?;
    if ip6tables_available() {
        remove_family(Family::V6)?;
    }
    Ok(())
}

/// Applies `config` in the current network namespace, replacing a previous capture: the
/// rules of each family are loaded in one `iptables-restore --noflush` transaction.
pub fn apply(config: &CaptureConfig) -> Result<(), CaptureError> {
    let sets = build(config)?;
    remove()?;
    for set in &sets {
        let restore = format!("{}-restore", set.family.iptables());
        run_ok(
            &restore,
            &strings(&["--noflush"]),
            Some(&set.restore_text()),
        )?;
    }
    Ok(())
}

/// An applied capture; removed on [`Capture::remove`] or drop.
#[derive(Debug)]
pub struct Capture {
    families: Vec<(Family, bool)>,
    removed: bool,
}

impl Capture {
    /// Applies `config` (see [`apply`]), remembering which `nat` tables existed before.
    pub fn apply(config: &CaptureConfig) -> Result<Capture, CaptureError> {
        build(config)?;
        let mut families = Vec::new();
        for f in config.families() {
            families.push((f, nat_table_exists(f)?));
        }
        let mut capture = Capture {
            families,
            removed: false,
        };
        if let Err(e) = apply(config) {
            // Leave nothing half-applied.
            let _ = capture.remove_now();
            return Err(e);
        }
        Ok(capture)
    }

    /// Removes the rules; a `nat` table that only exists because of us (no rules, no
    /// chains of others) is deleted again with `nft`, as iptables cannot delete tables.
    pub fn remove(mut self) -> Result<(), CaptureError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), CaptureError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        remove()?;
        for (family, existed) in &self.families {
            if !existed && nat_table_is_pristine(*family)? {
                // Best effort: without nft the empty built-in chains stay (no effect).
                let _ = run_cmd(
                    "nft",
                    &strings(&["delete", "table", family.nft_family(), "nat"]),
                    None,
                );
            }
        }
        Ok(())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            tracing::error!(error = %e, "removing the traffic capture rules failed");
        }
    }
}

/// Whether the `nat` table holds only the built-in chains, empty, with ACCEPT policies.
fn nat_table_is_pristine(family: Family) -> Result<bool, CaptureError> {
    let save = format!("{}-save", family.iptables());
    let out = run_ok(&save, &strings(&["-t", "nat"]), None)?;
    const BUILTIN: [&str; 4] = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"];
    Ok(out.lines().all(|l| {
        let l = l.trim();
        l.is_empty()
            || l.starts_with('#')
            || l == "*nat"
            || l == "COMMIT"
            || l.strip_prefix(':').is_some_and(|rest| {
                let mut words = rest.split_whitespace();
                let name = words.next().unwrap_or_default();
                BUILTIN.contains(&name) && words.next() == Some("ACCEPT")
            })
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(set: &RuleSet) -> Vec<String> {
        set.rules.iter().map(|r| r.join(" ")).collect()
    }

    #[test]
    fn cidrs_parse_and_clear_host_bits() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            "2001:db8::1/32".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "host",
            "10.0.0/8",
            "10.0.0.0/x",
            "",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains("is not an IP network"), "{bad}: {e}");
        }
        assert_eq!("*".parse::<Include>().unwrap(), Include::All);
        assert_eq!(
            "10.0.0.0/8, 192.0.2.0/24".parse::<Include>().unwrap(),
            Include::Cidrs(vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap()
            ])
        );
    }

    #[test]
    fn inbound_capture_is_istios_with_the_agents_mark_first() {
        let config = CaptureConfig {
            inbound: Some(InboundCapture {
                exclude_ports: vec![22],
                ..InboundCapture::default()
            }),
            ..CaptureConfig::default()
        };
        let set = &build(&config).unwrap()[0];
        assert_eq!(
            set.chains,
            vec![
                "ISTIO_OUTPUT",
                "ISTIO_REDIRECT",
                "ISTIO_INBOUND",
                "ISTIO_IN_REDIRECT"
            ]
        );
        assert_eq!(
            lines(set),
            vec![
                "OUTPUT -p tcp -j ISTIO_OUTPUT",
                "ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
                "PREROUTING -p tcp -j ISTIO_INBOUND",
                "ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
                "ISTIO_INBOUND -p tcp -m multiport --dports 22,15006 -j RETURN",
                "ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
                "ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
                "ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
                "ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
                "ISTIO_OUTPUT -m mark --mark 5432 -j RETURN",
                "ISTIO_OUTPUT -o lo -j RETURN",
                "ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
                "ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
                "ISTIO_OUTPUT -j ISTIO_REDIRECT",
            ]
        );
        assert_eq!(
            set.output_jumps(),
            vec![
                rule(&["OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT"]),
                rule(&["PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"]),
            ]
        );
        let only = CaptureConfig {
            inbound: Some(InboundCapture {
                ports: Some(vec![8080, 9090]),
                ..InboundCapture::default()
            }),
            ..CaptureConfig::default()
        };
        let l = lines(&build(&only).unwrap()[0]);
        assert!(l.contains(&"ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT".to_string()));
        assert!(!l.contains(&"ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT".to_string()));
    }

    #[test]
    fn default_rules_are_istios_outbound_capture() {
        let sets = build(&CaptureConfig::default()).unwrap();
        assert_eq!(sets.len(), 1);
        let set = &sets[0];
        assert_eq!(set.family, Family::V4);
        assert_eq!(set.chains, vec!["ISTIO_OUTPUT", "ISTIO_REDIRECT"]);
        assert_eq!(
            lines(set),
            vec![
                "OUTPUT -p tcp -j ISTIO_OUTPUT",
                "ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
                "ISTIO_OUTPUT -m mark --mark 5432 -j RETURN",
                "ISTIO_OUTPUT -o lo -j RETURN",
                "ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
                "ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
                "ISTIO_OUTPUT -j ISTIO_REDIRECT",
            ]
        );
        assert_eq!(
            set.output_jumps(),
            vec![vec!["OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT"]]
        );
    }

    #[test]
    fn table_of_configurations() {
        struct Case {
            name: &'static str,
            config: CaptureConfig,
            family: Family,
            present: &'static [&'static str],
            absent: &'static [&'static str],
        }
        let base = CaptureConfig::default;
        let cases = [
            Case {
                name: "custom ports and ids",
                config: CaptureConfig {
                    outbound_port: 16001,
                    proxy_uids: vec![1000],
                    proxy_gids: vec![2000, 2001],
                    ..base()
                },
                family: Family::V4,
                present: &[
                    "ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001",
                    "ISTIO_OUTPUT -m owner --uid-owner 1000 -j RETURN",
                    "ISTIO_OUTPUT -m owner --gid-owner 2000 -j RETURN",
                    "ISTIO_OUTPUT -m owner --gid-owner 2001 -j RETURN",
                ],
                absent: &["1337", "15001"],
            },
            Case {
                name: "include list and exclusions",
                config: CaptureConfig {
                    include: "203.0.113.0/24,2001:db8::/32".parse().unwrap(),
                    exclude_cidrs: vec!["203.0.113.99".parse().unwrap()],
                    exclude_ports: vec![22, 3306],
                    ..base()
                },
                family: Family::V4,
                present: &[
                    "ISTIO_OUTPUT -p tcp --dport 22 -j RETURN",
                    "ISTIO_OUTPUT -p tcp --dport 3306 -j RETURN",
                    "ISTIO_OUTPUT -d 203.0.113.99/32 -j RETURN",
                    "ISTIO_OUTPUT -d 203.0.113.0/24 -j ISTIO_REDIRECT",
                ],
                absent: &["ISTIO_OUTPUT -j ISTIO_REDIRECT", "2001:db8"],
            },
            Case {
                name: "empty include captures nothing",
                config: CaptureConfig {
                    include: "".parse().unwrap(),
                    ..base()
                },
                family: Family::V4,
                present: &["OUTPUT -p tcp -j ISTIO_OUTPUT"],
                absent: &["-j ISTIO_REDIRECT"],
            },
            Case {
                name: "loopback not excluded",
                config: CaptureConfig {
                    exclude_loopback: false,
                    ..base()
                },
                family: Family::V4,
                present: &["ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN"],
                absent: &["-o lo"],
            },
            Case {
                name: "DNS capture",
                config: CaptureConfig {
                    dns_capture: true,
                    dns_port: 15054,
                    ..base()
                },
                family: Family::V4,
                present: &[
                    "OUTPUT -j ISTIO_OUTPUT_DNS",
                    "ISTIO_OUTPUT_DNS -m mark --mark 5432 -j RETURN",
                    "ISTIO_OUTPUT -m mark --mark 5432 -j RETURN",
                    "ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 1337 -j RETURN",
                    "ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 1337 -j RETURN",
                    "ISTIO_OUTPUT_DNS -p tcp --dport 53 -m owner --uid-owner 1337 -j RETURN",
                    "ISTIO_OUTPUT_DNS -p tcp --dport 53 -m owner --gid-owner 1337 -j RETURN",
                    "ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-ports 15054",
                    "ISTIO_OUTPUT_DNS -p tcp --dport 53 -j REDIRECT --to-ports 15054",
                ],
                absent: &[],
            },
            Case {
                name: "IPv6 set",
                config: CaptureConfig {
                    ipv6: true,
                    include: "203.0.113.0/24,2001:db8::/32".parse().unwrap(),
                    exclude_cidrs: vec!["2001:db8::1".parse().unwrap()],
                    ..base()
                },
                family: Family::V6,
                present: &[
                    "ISTIO_OUTPUT -d ::1/128 -j RETURN",
                    "ISTIO_OUTPUT -d 2001:db8::1/128 -j RETURN",
                    "ISTIO_OUTPUT -d 2001:db8::/32 -j ISTIO_REDIRECT",
                ],
                absent: &["127.0.0.1", "203.0.113"],
            },
        ];
        for case in cases {
            let sets = build(&case.config).unwrap();
            let set = sets
                .iter()
                .find(|s| s.family == case.family)
                .unwrap_or_else(|| panic!("{}: no {:?} set", case.name, case.family));
            let got = lines(set);
            for want in case.present {
                assert!(
                    got.iter().any(|l| l == want),
                    "{}: missing {want:?} in {got:#?}",
                    case.name
                );
            }
            for not in case.absent {
                assert!(
                    !got.iter().any(|l| l.contains(not)),
                    "{}: unexpected {not:?} in {got:#?}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn dns_jump_comes_before_the_tcp_jump() {
        let set = &build(&CaptureConfig {
            dns_capture: true,
            ..CaptureConfig::default()
        })
        .unwrap()[0];
        let jumps = set.output_jumps();
        assert_eq!(jumps.len(), 2);
        assert_eq!(jumps[0].join(" "), "OUTPUT -j ISTIO_OUTPUT_DNS");
        assert_eq!(
            set.chains,
            vec!["ISTIO_OUTPUT_DNS", "ISTIO_OUTPUT", "ISTIO_REDIRECT"]
        );
        // Owner exclusions precede the redirects inside the DNS chain.
        let dns: Vec<String> = set
            .rules
            .iter()
            .filter(|r| r[0] == "ISTIO_OUTPUT_DNS")
            .map(|r| r.join(" "))
            .collect();
        let first_redirect = dns.iter().position(|l| l.contains("REDIRECT")).unwrap();
        assert!(dns[..first_redirect].iter().all(|l| l.ends_with("RETURN")));
        assert_eq!(dns.len() - first_redirect, 2);
    }

    #[test]
    fn restore_text_and_commands() {
        let set = &build(&CaptureConfig::default()).unwrap()[0];
        let text = set.restore_text();
        assert!(text.starts_with("*nat\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n"));
        assert!(text.contains("\n-A OUTPUT -p tcp -j ISTIO_OUTPUT\n"));
        assert!(text.ends_with("COMMIT\n"));
        assert_eq!(
            text.lines().filter(|l| l.starts_with("-A ")).count(),
            set.rules.len()
        );
        let cmds = set.commands();
        assert_eq!(cmds[0].join(" "), "iptables -t nat -N ISTIO_OUTPUT");
        assert_eq!(cmds.len(), set.chains.len() + set.rules.len());
        assert!(cmds.iter().all(|c| c[0] == "iptables"));
        let v6 = build_family(&CaptureConfig::default(), Family::V6);
        assert!(v6.commands().iter().all(|c| c[0] == "ip6tables"));
    }

    #[test]
    fn unusable_configs_are_rejected() {
        let e = build(&CaptureConfig {
            proxy_uids: vec![],
            proxy_gids: vec![],
            ..CaptureConfig::default()
        })
        .unwrap_err();
        assert_eq!(e, ConfigError::NoProxyIdentity);
        let e = build(&CaptureConfig {
            outbound_port: 0,
            ..CaptureConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("outbound port"), "{e}");
        let e = build(&CaptureConfig {
            dns_capture: true,
            dns_port: 0,
            ..CaptureConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("DNS port"), "{e}");
    }
}
