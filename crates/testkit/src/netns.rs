//! Network namespaces for capture tests: a namespace of our own with loopback up, which
//! a test thread can enter (its sockets and child processes then live there), with
//! iptables rules that exist only inside it. Removed on drop.
//!
//! [`VethPair`] joins two of them (an application namespace and an "outside" one) with a
//! veth link on 198.51.100.0/24; the application namespace routes the documentation ranges
//! 192.0.2.0/24 and 203.0.113.0/24 to the outside one and has no default route, so nothing
//! leaves the machine.
//!
//! Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip` (iproute2) and `iptables`; when they
//! are missing the error says how to install them.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// How to get the tools the capture tests need.
pub const INSTALL_HINT: &str = "capture tests need root and the `ip` and `iptables` commands: \
    apt-get install -y iproute2 iptables (run the tests as root, e.g. in CI's container)";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace created by the test; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn run(cmd: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("running {cmd} {}: {e}. {INSTALL_HINT}", args.join(" ")),
        )
    })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd} {} failed: {}{}. {INSTALL_HINT}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Netns {
    /// Creates `ew-<pid>-<n>` with loopback up.
    pub fn create() -> io::Result<Netns> {
        let name = format!(
            "ew-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> io::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `iptables <args>` inside the namespace.
    pub fn iptables(&self, args: &[&str]) -> io::Result<String> {
        self.exec("iptables", args)
    }

    /// Adds an address to the namespace's loopback (e.g. `203.0.113.10/32`), so servers can
    /// listen on addresses that look external.
    pub fn add_loopback_address(&self, cidr: &str) -> io::Result<()> {
        self.ip(&["addr", "add", cidr, "dev", "lo"]).map(|_| ())
    }

    /// Moves the calling thread into the namespace. Sockets it opens afterwards, threads it
    /// spawns and processes it starts are all inside. Call it on a thread of its own.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.name))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(io::Error::from)
    }

    /// Istio-style outbound capture: TCP from any process whose group is not `proxy_gid`, to
    /// `destinations` (CIDRs), is redirected to `port` (Envoy's virtualOutbound).
    pub fn capture_outbound(
        &self,
        destinations: &[&str],
        port: u16,
        proxy_gid: u32,
    ) -> io::Result<()> {
        let port = port.to_string();
        let gid = proxy_gid.to_string();
        for d in destinations {
            self.iptables(&[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                d,
                "-m",
                "owner",
                "!",
                "--gid-owner",
                &gid,
                "-j",
                "REDIRECT",
                "--to-ports",
                &port,
            ])?;
        }
        Ok(())
    }
}

impl Netns {
    /// Removes every capture rule (before stopping servers whose wake-up would be captured).
    pub fn clear_capture(&self) -> io::Result<()> {
        self.iptables(&["-t", "nat", "-F", "OUTPUT"]).map(|_| ())
    }
}

impl Netns {
    /// Adds `cidr` to the interface `dev`.
    pub fn add_address(&self, dev: &str, cidr: &str) -> io::Result<()> {
        self.ip(&["addr", "add", cidr, "dev", dev]).map(|_| ())
    }

    /// Adds a route to `destination` (a CIDR) via the gateway `via`.
    pub fn add_route(&self, destination: &str, via: &str) -> io::Result<()> {
        self.ip(&["route", "add", destination, "via", via])
            .map(|_| ())
    }

    /// The namespace's IPv4 routes (`ip route show`).
    pub fn routes(&self) -> io::Result<String> {
        self.ip(&["route", "show"])
    }

    /// The namespace's IPv4 and IPv6 rules (`iptables-save` then `ip6tables-save`), with
    /// the generated-on comments dropped so two dumps compare equal when the rules are.
    /// Counters are not printed (no `-c`).
    pub fn rules_dump(&self) -> io::Result<String> {
        let mut out = String::new();
        for save in ["iptables-save", "ip6tables-save"] {
            out.push_str(&format!("## {save}\n"));
            for line in self.exec(save, &[])?.lines() {
                if !line.starts_with('#') {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        Ok(out)
    }
}

/// Two network namespaces joined by a veth pair: `app` (198.51.100.1/24 on `eth0`) and
/// `outside` (198.51.100.2/24 on `eth0`). `app` routes 192.0.2.0/24 and 203.0.113.0/24 via
/// `outside`, which answers on addresses a test adds (e.g. `203.0.113.20/32` on its
/// loopback with [`Netns::add_loopback_address`]). Neither has a default route.
#[derive(Debug)]
pub struct VethPair {
    /// Where the application (and its sidecar) runs.
    pub app: Netns,
    /// Where stand-ins for outside servers run.
    pub outside: Netns,
}

impl VethPair {
    /// The application namespace's address.
    pub const APP_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The outside namespace's address on the link.
    pub const OUTSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    /// Networks `app` reaches through `outside`.
    pub const ROUTED: [&'static str; 2] = ["192.0.2.0/24", "203.0.113.0/24"];
    /// The interface name in both namespaces.
    pub const DEV: &'static str = "eth0";

    /// Creates both namespaces and the link.
    pub fn create() -> io::Result<VethPair> {
        let app = Netns::create()?;
        let outside = Netns::create()?;
        app.ip(&[
            "link",
            "add",
            Self::DEV,
            "type",
            "veth",
            "peer",
            "name",
            Self::DEV,
            "netns",
            outside.name(),
        ])?;
        let gateway = Self::OUTSIDE_ADDR.to_string();
        for (ns, addr) in [(&app, Self::APP_ADDR), (&outside, Self::OUTSIDE_ADDR)] {
            ns.add_address(Self::DEV, &format!("{addr}/24"))?;
            ns.ip(&["link", "set", Self::DEV, "up"])?;
        }
        for net in Self::ROUTED {
            app.add_route(net, &gateway)?;
        }
        Ok(VethPair { app, outside })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Several hosts on one link, as separate machines would be: `hosts[i]` is a namespace with
/// `eth0` = `10.77.0.<i+1>/24`, all joined by a bridge in a switch namespace of their own.
/// Every host but the first has a default route via the first (as a machine has one: a
/// connection to an address of no subnet, such as a mesh VIP, needs a route before capture
/// rules see it); nothing routes beyond the bridge.
#[derive(Debug)]
pub struct Lan {
    /// The hosts.
    pub hosts: Vec<Netns>,
    /// The namespace holding the bridge (`br0`) and the host ends of the links (`p<i>`).
    pub switch: Netns,
}

impl Lan {
    /// The subnet of the link.
    pub const SUBNET: &'static str = "10.77.0.0/24";
    /// The host interface name.
    pub const DEV: &'static str = "eth0";

    /// Creates `n` hosts and the switch.
    pub fn create(n: usize) -> io::Result<Lan> {
        let switch = Netns::create()?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let mut hosts = Vec::with_capacity(n);
        for i in 0..n {
            let host = Netns::create()?;
            let port = format!("p{i}");
            host.ip(&[
                "link",
                "add",
                Self::DEV,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                switch.name(),
            ])?;
            switch.ip(&["link", "set", &port, "master", "br0"])?;
            switch.ip(&["link", "set", &port, "up"])?;
            host.add_address(Self::DEV, &format!("{}/24", Self::addr(i)))?;
            host.ip(&["link", "set", Self::DEV, "up"])?;
            if i > 0 {
                host.ip(&["route", "add", "default", "via", &Self::addr(0).to_string()])?;
            }
            hosts.push(host);
        }
        Ok(Lan { hosts, switch })
    }

    /// The address of host `i`.
    pub fn addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, u8::try_from(i + 1).unwrap_or(u8::MAX))
    }

    /// The switch-side interface of host `i` (where a capture sees everything host `i`
    /// sends and receives).
    pub fn port_of(i: usize) -> String {
        format!("p{i}")
    }
}

/// `/etc/netns/<ns>/resolv.conf`, which `ip netns exec` bind-mounts over `/etc/resolv.conf`
/// for processes it starts in that namespace; removed on drop.
#[derive(Debug)]
pub struct NetnsResolvConf {
    dir: std::path::PathBuf,
}

impl NetnsResolvConf {
    /// Writes `text` as the namespace's resolv.conf.
    pub fn write(ns: &Netns, text: &str) -> io::Result<NetnsResolvConf> {
        let dir = std::path::Path::new("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("resolv.conf"), text)?;
        Ok(NetnsResolvConf { dir })
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
