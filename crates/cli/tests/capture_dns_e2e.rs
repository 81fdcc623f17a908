//! DNS proxy and traffic capture together, end to end (issue 6), with real processes, real
//! Envoy, real iptables and two network namespaces joined by a veth pair (testkit
//! [`VethPair`]). The application namespace runs `entryway serve` on its loopback and
//! `entryway proxy --capture --dns-capture`; its `/etc/resolv.conf` (`ip netns exec`
//! bind-mounts `/etc/netns/<ns>/resolv.conf`) names a fake upstream DNS server in the outside
//! namespace, which also holds the stand-in servers. Nothing routes out of the machine.
//!
//! - A name the control plane does not know is forwarded by the DNS proxy to the upstream
//!   (its queries carry the capture-exclusion mark, so port-53 capture does not loop them
//!   back to it) and answered; a name the upstream does not know is NXDOMAIN.
//! - An unmodified `curl http://api.external.test/` (an address-less HTTP entry): the name
//!   is answered by the DNS proxy with an auto-allocated address, the connection captured,
//!   a VirtualService retry observed at the stand-in (1 try + 2 retries), then a fault.
//! - Two TCP ServiceEntries without addresses on port 9000: each name gets its own
//!   auto-allocated address and a client reaches each entry's own endpoint; `entryway xds
//!   dump` without `--dns-capture` warns that one shadows the other, naming both.
//! - The seed's MongoDB example (examples/seed-mongocluster.yaml) moved to documentation
//!   addresses: its `addresses` is a CIDR, which the name table skips (spec §8), so the name
//!   is not answered locally (the upstream says NXDOMAIN) and the client dials an address of
//!   the CIDR; it reaches one of the two STATIC endpoints, and the DestinationRule's MUTUAL
//!   TLS makes it mTLS, verified by the server (it requires a client certificate of its CA).
//!
//! Needs root, `ip`, `iptables`, `curl`, `getent` and `openssl` (CI installs them); Envoy
//! from `ENVOY_BIN`. Every wait is a bounded poll.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use entryway_testkit::netns::{INSTALL_HINT, Netns, VethPair};
use entryway_testkit::{EnvoyHarness, HttpUpstream, TLS_UPSTREAM_PATH, TlsUpstream, eventually_ok};

const WAIT: Duration = Duration::from_secs(30);
/// The fake upstream DNS server (the outside end of the veth pair).
const UPSTREAM_DNS: &str = "198.51.100.2";
/// The only name the fake upstream knows, and its answer.
const UPSTREAM_NAME: &str = "known.upstream.test";
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
const API_ENDPOINT: &str = "203.0.113.20";
const FIRST_ENDPOINT: &str = "203.0.113.61";
const SECOND_ENDPOINT: &str = "203.0.113.62";
/// The seed's `192.192.192.192/24` and endpoints 2.2.2.2 / 3.3.3.3, moved.
const MONGO_CIDR: &str = "192.0.2.0/24";
const MONGO_DIALED: &str = "192.0.2.192";
const MONGO_ENDPOINTS: [&str; 2] = ["203.0.113.2", "203.0.113.3"];

/// A child process killed on drop, its stderr in a file.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn_in(ns: &Netns, args: &[&str], log: PathBuf) -> Proc {
        let file = File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_entryway")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ip netns exec entryway: {e}. {INSTALL_HINT}"));
        Proc {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let pid = child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -TERM {pid}");
        let status = eventually_ok(WAIT, || match child.try_wait() {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("still running".to_string()),
            Err(e) => Err(e.to_string()),
        })
        .unwrap_or_else(|e| panic!("process did not exit: {e}\n{}", self.log()));
        self.child = None;
        status
    }
}

impl Drop for Proc {
    /// SIGTERM first (a failed test still gets Envoy stopped and the rules removed by the
    /// agent), SIGKILL if it has not exited after a bounded wait.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let exited = entryway_testkit::eventually(WAIT, || c.try_wait().ok().flatten());
            if exited.is_err() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A TCP forwarder (stand-in address → a local server), counting connections.
struct Forwarder {
    connections: Arc<AtomicUsize>,
}

impl Forwarder {
    fn start(listen: SocketAddr, target: SocketAddr) -> io::Result<Forwarder> {
        let listener = TcpListener::bind(listen)?;
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(up) = TcpStream::connect(target) else {
                    continue;
                };
                for (from, to) in [(&conn, &up), (&up, &conn)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Ok(Forwarder { connections })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Stand-ins that are dropped inside their namespace (their wake-up connections must reach
/// them, not whatever the test's own namespace routes those addresses to).
struct Outside<'a> {
    ns: &'a Netns,
    stand: Option<StandIns>,
}

impl std::ops::Deref for Outside<'_> {
    type Target = StandIns;
    fn deref(&self) -> &StandIns {
        self.stand.as_ref().expect("stand-ins")
    }
}

impl Drop for Outside<'_> {
    fn drop(&mut self) {
        if let Some(stand) = self.stand.take() {
            let ns = self.ns;
            std::thread::scope(|s| {
                s.spawn(move || {
                    if ns.enter_current_thread().is_ok() {
                        drop(stand);
                    } else {
                        // Cannot enter: leave the threads to end with the process.
                        std::mem::forget(stand);
                    }
                });
            });
        }
    }
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().expect("address")
}

/// A DNS server answering A queries for [`UPSTREAM_NAME`] with [`UPSTREAM_ANSWER`], NOERROR
/// without records for its other types, NXDOMAIN for every other name; counts queries.
struct FakeDns {
    queries: Arc<AtomicUsize>,
    names: Arc<std::sync::Mutex<Vec<String>>>,
}

/// The question name (lower case) and the offset just past the question.
fn question(q: &[u8]) -> Option<(String, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    q.get(i + 3)?;
    Some((labels.join("."), i + 4))
}

fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    let (name, end) = question(q)?;
    let qtype = u16::from_be_bytes([q[end - 4], q[end - 3]]);
    let known = name == UPSTREAM_NAME;
    let answer_a = known && qtype == 1;
    let mut r = Vec::with_capacity(end + 16);
    r.extend_from_slice(&q[0..2]);
    r.push(0x81 | (q[2] & 0x01)); // QR, opcode 0, RD copied... (bit 0 of byte 2 is RD)
    r.push(if known { 0x80 } else { 0x83 }); // RA; NOERROR or NXDOMAIN
    r.extend_from_slice(&[0, 1, 0, u8::from(answer_a), 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..end]);
    if answer_a {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&UPSTREAM_ANSWER.octets());
    }
    Some(r)
}

impl FakeDns {
    fn start(listen: SocketAddr) -> io::Result<FakeDns> {
        let sock = UdpSocket::bind(listen)?;
        let queries = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, seen) = (Arc::clone(&queries), Arc::clone(&names));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let q = &buf[..n];
                if n < 12 || q[2] & 0x80 != 0 {
                    continue;
                }
                count.fetch_add(1, Ordering::SeqCst);
                if let Some((name, _)) = question(q)
                    && let Ok(mut v) = seen.lock()
                {
                    v.push(name);
                }
                if let Some(r) = dns_answer(q) {
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        Ok(FakeDns { queries, names })
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Forgets the names asked so far (queries sent before the capture was in place went
    /// straight to this server).
    fn forget(&self) {
        if let Ok(mut v) = self.names.lock() {
            v.clear();
        }
    }

    fn asked(&self, name: &str) -> bool {
        self.names
            .lock()
            .map(|v| v.iter().any(|n| n == name))
            .unwrap_or(false)
    }
}

/// A TCP server that writes `banner` to every connection and closes it; counts them.
struct Banner {
    connections: Arc<AtomicUsize>,
}

impl Banner {
    fn start(listen: SocketAddr, banner: &'static str) -> io::Result<Banner> {
        let listener = TcpListener::bind(listen)?;
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = conn.write_all(banner.as_bytes());
            }
        });
        Ok(Banner { connections })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The servers of the outside namespace.
struct StandIns {
    dns: FakeDns,
    api: HttpUpstream,
    first: Banner,
    second: Banner,
    mongo: TlsUpstream,
    mongo_fwd: Vec<Forwarder>,
}

fn start_stand_ins(outside: &Netns) -> StandIns {
    let mut ips = vec![API_ENDPOINT, FIRST_ENDPOINT, SECOND_ENDPOINT];
    ips.extend(MONGO_ENDPOINTS);
    for ip in ips {
        outside
            .add_loopback_address(&format!("{ip}/32"))
            .expect("stand-in address");
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            outside
                .enter_current_thread()
                .expect("enter outside namespace");
            let dns = FakeDns::start(addr(UPSTREAM_DNS, 53)).expect("fake upstream DNS");
            let api =
                HttpUpstream::start_at("api-standin", addr(API_ENDPOINT, 80), 200, "api-standin")
                    .expect("api stand-in");
            let first = Banner::start(addr(FIRST_ENDPOINT, 9000), "first").expect("first");
            let second = Banner::start(addr(SECOND_ENDPOINT, 9000), "second").expect("second");
            let mongo = TlsUpstream::start_mutual("mongo-standin", "mymongodb.somedomain")
                .expect("mutual TLS stand-in (needs openssl)");
            let mongo_fwd = MONGO_ENDPOINTS
                .iter()
                .map(|ip| Forwarder::start(addr(ip, 27018), mongo.addr()).expect("forwarder"))
                .collect();
            StandIns {
                dns,
                api,
                first,
                second,
                mongo,
                mongo_fwd,
            }
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// `/etc/netns/<ns>/resolv.conf`, removed on drop.
struct NetnsResolvConf {
    dir: PathBuf,
}

impl NetnsResolvConf {
    fn create(ns: &Netns, text: &str) -> NetnsResolvConf {
        let dir = Path::new("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir).expect("/etc/netns/<ns>");
        std::fs::write(dir.join("resolv.conf"), text).expect("resolv.conf");
        NetnsResolvConf { dir }
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_yaml(certs: &TlsUpstream) -> String {
    let [m1, m2] = MONGO_ENDPOINTS;
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.external.test]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: {API_ENDPOINT}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.external.test]
  http:
  - match: [{{headers: {{x-fault: {{exact: abort}}}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: api.external.test}}}}]
  - route: [{{destination: {{host: api.external.test}}}}]
    retries: {{attempts: 3, retryOn: 5xx}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: first, namespace: default}}
spec:
  hosts: [first.tcp.test]
  ports: [{{number: 9000, name: tcp, protocol: TCP}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: {FIRST_ENDPOINT}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: second, namespace: default}}
spec:
  hosts: [second.tcp.test]
  ports: [{{number: 9000, name: tcp, protocol: TCP}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: {SECOND_ENDPOINT}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: external-svc-mongocluster, namespace: default}}
spec:
  hosts: [mymongodb.somedomain]
  addresses: [{MONGO_CIDR}]
  ports: [{{number: 27018, name: mongodb, protocol: MONGO}}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{{address: {m1}}}, {{address: {m2}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: mtls-mongocluster, namespace: default}}
spec:
  host: mymongodb.somedomain
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: {cert}
      privateKey: {key}
      caCertificates: {ca}
",
        cert = certs.client_cert_path().display(),
        key = certs.client_key_path().display(),
        ca = certs.ca_path().display(),
    )
}

/// `getent ahostsv4 NAME` in the namespace (glibc's resolver, reading the namespace's
/// resolv.conf): the first IPv4 address, or why there is none.
fn lookup(ns: &Netns, name: &str) -> Result<Ipv4Addr, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "getent", "ahostsv4", name])
        .output()
        .map_err(|e| format!("getent: {e}. {INSTALL_HINT}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{name}: getent exit {} {text:?}", out.status))
}

/// Connects from a thread inside `ns` (captured: it is not the proxy user), sends `send`
/// and reads to EOF.
fn tcp_exchange(ns: &Netns, to: SocketAddr, send: &[u8]) -> Result<String, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().map_err(|e| e.to_string())?;
            let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5))
                .map_err(|e| format!("connect {to}: {e}"))?;
            c.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            c.write_all(send).map_err(|e| format!("write: {e}"))?;
            let mut out = Vec::new();
            c.read_to_end(&mut out)
                .map_err(|e| format!("read from {to}: {e}"))?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        })
        .join()
        .unwrap_or_else(|_| Err("client thread panicked".into()))
    })
}

/// What one curl in the application namespace saw.
#[derive(Debug)]
struct Curl {
    code: u16,
    body: String,
    #[allow(dead_code)] // shown by Debug in assertion messages
    stderr: String,
}

fn curl(ns: &Netns, args: &[&str]) -> Curl {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "curl", "-sS", "--max-time", "5"])
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl: {e} (apt-get install curl). {INSTALL_HINT}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Curl {
        code: code.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `entryway xds dump` of `cfg` (summary); returns stderr.
fn dump_stderr(cfg: &Path, dns_capture: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_entryway"));
    cmd.args(["xds", "dump", "-o", "summary", "--config"])
        .arg(cfg);
    if dns_capture {
        cmd.arg("--dns-capture");
    }
    let out = cmd.output().expect("entryway xds dump");
    assert!(out.status.success(), "xds dump: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dns_proxy_and_capture_together() {
    let envoy = EnvoyHarness::require();
    let pair = VethPair::create().expect("network namespaces joined by veth");
    let app = &pair.app;
    // Auto-allocated addresses (Class E) need a route for the SYN to leave at all; a real
    // pod has a default route. Nothing answers there: only capture can reach a service.
    app.add_route("240.240.0.0/16", &VethPair::OUTSIDE_ADDR.to_string())
        .expect("route for auto-allocated addresses");
    let _resolv = NetnsResolvConf::create(app, &format!("nameserver {UPSTREAM_DNS}\n"));

    let stand = Outside {
        ns: &pair.outside,
        stand: Some(start_stand_ins(&pair.outside)),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(&cfg).expect("config dir");
    std::fs::write(cfg.join("mesh-external.yaml"), config_yaml(&stand.mongo)).expect("config");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n").expect("mesh");

    // Without DNS capture the two address-less TCP entries fight over 0.0.0.0_9000.
    let warn = dump_stderr(&cfg, false);
    assert!(
        warn.lines()
            .any(|l| l.starts_with("warning: listener 0.0.0.0_9000")
                && l.contains("default/first (first.tcp.test)")
                && l.contains("default/second (second.tcp.test)")),
        "{warn}"
    );
    let quiet = dump_stderr(&cfg, true);
    assert!(!quiet.contains("warning"), "{quiet}");

    let _serve = Proc::spawn_in(
        app,
        &[
            "serve",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--mesh",
            mesh.to_str().expect("utf-8"),
            "--xds-address",
            "127.0.0.1:15010",
            "--admin-address",
            "127.0.0.1:15014",
            "--state-dir",
            dir.path().join("state").to_str().expect("utf-8"),
        ],
        dir.path().join("serve.log"),
    );
    let work = dir.path().join("proxy");
    let mut proxy = Proc::spawn_in(
        app,
        &[
            "proxy",
            "--capture",
            "--dns-capture",
            "--xds",
            "127.0.0.1:15010",
            "--envoy",
            envoy.binary().to_str().expect("utf-8"),
            "--work-dir",
            work.to_str().expect("utf-8"),
            "--envoy-admin-port",
            "15000",
            "--explicit-proxy",
            "off",
            "--ip",
            "198.51.100.1",
        ],
        dir.path().join("proxy.log"),
    );

    // The application's curl: name from the DNS proxy, connection captured, governed.
    let first = eventually_ok(WAIT, || {
        let c = curl(app, &["http://api.external.test/ready"]);
        if c.code == 200 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .unwrap_or_else(|e| {
        panic!(
            "api.external.test never answered: {e}\n--- proxy ---\n{}",
            proxy.log()
        )
    });
    assert_eq!(first.body, "api-standin");
    stand.dns.forget();
    let api_ip = lookup(app, "api.external.test").expect("api.external.test resolves");
    assert_eq!(
        api_ip.octets()[..2],
        [240, 240],
        "auto-allocated address from the DNS proxy"
    );
    let rules = app.rules_dump().expect("iptables-save");
    for want in [
        "-A OUTPUT -j ISTIO_OUTPUT_DNS",
        "-A ISTIO_OUTPUT_DNS -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053",
        "-A ISTIO_OUTPUT_DNS -m mark --mark 0x1538 -j RETURN",
    ] {
        assert!(rules.contains(want), "missing {want:?}:\n{rules}");
    }
    stand.api.clear_requests();
    stand.api.fail_next(2, 503);
    let c = curl(app, &["http://api.external.test/retry"]);
    assert_eq!((c.code, c.body.as_str()), (200, "api-standin"), "{c:?}");
    assert_eq!(stand.api.request_count(), 3, "1 try + 2 retries");
    assert!(stand.api.hosts().iter().all(|h| h == "api.external.test"));
    stand.api.clear_requests();
    let c = curl(
        app,
        &["-H", "x-fault: abort", "http://api.external.test/fault"],
    );
    assert_eq!(c.code, 418, "{c:?}");
    assert_eq!(stand.api.request_count(), 0);

    // Names the table does not have go upstream, through the capture, and come back.
    let before = stand.dns.queries();
    let got = lookup(app, UPSTREAM_NAME)
        .unwrap_or_else(|e| panic!("{e}\n--- proxy ---\n{}", proxy.log()));
    assert_eq!(got, UPSTREAM_ANSWER);
    assert!(stand.dns.queries() > before, "the upstream was asked");
    assert!(lookup(app, "nowhere.upstream.test").is_err(), "NXDOMAIN");
    assert!(stand.dns.asked("nowhere.upstream.test"));
    // Table names are answered locally: the upstream never hears of them.
    assert!(!stand.dns.asked("api.external.test"));

    // Two address-less TCP entries on one port: each reaches its own endpoint.
    for (name, want, banner) in [
        ("first.tcp.test", "first", &stand.first),
        ("second.tcp.test", "second", &stand.second),
    ] {
        let ip = lookup(app, name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ip.octets()[..2], [240, 240], "{name}: {ip}");
        let before = banner.connections();
        let got = eventually_ok(WAIT, || {
            tcp_exchange(app, SocketAddr::from((ip, 9000)), b"").and_then(|s| {
                if s == want {
                    Ok(s)
                } else {
                    Err(format!("{name}: got {s:?}"))
                }
            })
        })
        .unwrap_or_else(|e| panic!("{e}\n--- proxy ---\n{}", proxy.log()));
        assert_eq!(got, want);
        assert_eq!(banner.connections(), before + 1, "{name}");
    }
    assert!(!stand.dns.asked("first.tcp.test") && !stand.dns.asked("second.tcp.test"));
    // The connected proxy captures DNS: the control plane reports no conflict for it.
    let configz = curl(app, &["http://127.0.0.1:15014/debug/configz"]);
    assert_eq!(configz.code, 200, "{configz:?}");
    assert!(
        configz.body.contains("\"listener_conflicts\": []"),
        "{}",
        configz.body
    );

    // The seed's MongoDB: a CIDR address has no name-table entry (spec §8).
    assert!(
        lookup(app, "mymongodb.somedomain").is_err(),
        "a CIDR-addressed entry must not be answered"
    );
    assert!(
        stand.dns.asked("mymongodb.somedomain"),
        "forwarded upstream"
    );
    let request = format!("GET {TLS_UPSTREAM_PATH} HTTP/1.0\r\n\r\n");
    let reply = tcp_exchange(app, addr(MONGO_DIALED, 27018), request.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n--- proxy ---\n{}", proxy.log()));
    assert!(
        reply.contains(stand.mongo.name()),
        "mTLS stand-in answered through Envoy: {reply:?}\n--- proxy ---\n{}",
        proxy.log()
    );
    let reached: Vec<usize> = stand.mongo_fwd.iter().map(Forwarder::connections).collect();
    assert_eq!(
        reached.iter().sum::<usize>(),
        1,
        "one STATIC endpoint: {reached:?}"
    );

    let status = proxy.terminate();
    assert!(status.success(), "proxy exit {status}\n{}", proxy.log());
}
