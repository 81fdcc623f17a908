//! Network namespaces for capture tests: a namespace of our own with loopback up, which
//! a test thread can enter (its sockets and child processes then live there), with
//! iptables rules that exist only inside it. Removed on drop.
//!
//! Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip` (iproute2) and `iptables`; when they
//! are missing the error says how to install them.

use std::io;
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

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}
