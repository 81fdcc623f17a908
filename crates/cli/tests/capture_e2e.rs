//! Sidecar traffic capture end to end, with real processes and real Envoy.
//!
//! Two network namespaces joined by a veth pair (testkit [`VethPair`]): the application
//! namespace runs `entryway serve` on its loopback and `entryway proxy --capture` (the real
//! binary, under `ip netns exec`), and an unmodified `curl`; the outside namespace holds
//! stand-in servers on 203.0.113.0/24. Nothing routes out of the machine.
//!
//! - An HTTP ServiceEntry with a VIP (`addresses: [203.0.113.10]`, no server there) reached
//!   by `curl http://api.example.com/` resolved to the VIP: captured, routed by Host to the
//!   stand-in endpoint, and governed — a VirtualService retry (two 503s then 200: three
//!   requests at the stand-in) and a fault abort (418, nothing at the stand-in).
//! - HTTPS to the host of a TLS ServiceEntry, curl resolving it to an address nobody has:
//!   Envoy routes by SNI to the stand-in, TLS end to end (curl verifies the stand-in's CA).
//! - An unregistered host (HTTPS and plain HTTP): refused under REGISTRY_ONLY (nothing
//!   reaches its server), passed through to the original destination under ALLOW_ANY.
//! - SIGTERM: the proxy exits 0 and `iptables-save`/`ip6tables-save` in the namespace print
//!   exactly what they printed before it started; traffic is no longer captured.
//!
//! Needs root, `ip`, `iptables`, `curl` and `openssl` (CI installs them); Envoy from
//! `ENVOY_BIN`. Every wait is a bounded poll.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use entryway_testkit::netns::{INSTALL_HINT, Netns, VethPair};
use entryway_testkit::{EnvoyHarness, HttpUpstream, TLS_UPSTREAM_PATH, TlsUpstream, eventually_ok};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "203.0.113.10";
const API_ENDPOINT: &str = "203.0.113.20";
const TLS_ENDPOINT: &str = "203.0.113.30";
/// No host has this address: only SNI routing can reach the TLS stand-in through it.
const TLS_CALLED: &str = "203.0.113.31";
const UNREGISTERED_HTTP: &str = "203.0.113.40";
const UNREGISTERED_TLS: &str = "203.0.113.50";

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

/// The servers of the outside namespace.
struct StandIns {
    api: HttpUpstream,
    original: HttpUpstream,
    secure: TlsUpstream,
    secure_fwd: Forwarder,
    other: TlsUpstream,
    other_fwd: Forwarder,
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

fn start_stand_ins(outside: &Netns) -> StandIns {
    for ip in [
        API_ENDPOINT,
        TLS_ENDPOINT,
        UNREGISTERED_HTTP,
        UNREGISTERED_TLS,
    ] {
        outside
            .add_loopback_address(&format!("{ip}/32"))
            .expect("stand-in address");
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            outside
                .enter_current_thread()
                .expect("enter outside namespace");
            let api =
                HttpUpstream::start_at("api-standin", addr(API_ENDPOINT, 80), 200, "api-standin")
                    .expect("api stand-in");
            let original = HttpUpstream::start_at(
                "original-destination",
                addr(UNREGISTERED_HTTP, 80),
                200,
                "original-destination",
            )
            .expect("original destination");
            let secure = TlsUpstream::start("secure-standin", "secure.example.com")
                .expect("TLS stand-in (needs openssl)");
            let secure_fwd =
                Forwarder::start(addr(TLS_ENDPOINT, 443), secure.addr()).expect("forwarder");
            let other = TlsUpstream::start("unregistered-standin", "unregistered.example.net")
                .expect("TLS stand-in (needs openssl)");
            let other_fwd =
                Forwarder::start(addr(UNREGISTERED_TLS, 443), other.addr()).expect("forwarder");
            StandIns {
                api,
                original,
                secure,
                secure_fwd,
                other,
                other_fwd,
            }
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn config(dir: &Path, mode: &str) -> (PathBuf, PathBuf) {
    let cfg = dir.join("config");
    std::fs::create_dir_all(&cfg).expect("config dir");
    std::fs::write(
        cfg.join("mesh-external.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  addresses: [{VIP}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: {API_ENDPOINT}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  http:
  - match: [{{headers: {{x-fault: {{exact: abort}}}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: api.example.com}}}}]
  - route: [{{destination: {{host: api.example.com}}}}]
    retries: {{attempts: 3, retryOn: 5xx}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secure, namespace: default}}
spec:
  hosts: [secure.example.com]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: {TLS_ENDPOINT}}}]
"
        ),
    )
    .expect("write config");
    let mesh = dir.join("mesh.yaml");
    std::fs::write(&mesh, format!("outboundTrafficPolicy:\n  mode: {mode}\n")).expect("mesh");
    (cfg, mesh)
}

/// What one curl in the application namespace saw.
#[derive(Debug)]
struct Curl {
    exit_ok: bool,
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
        exit_ok: out.status.success(),
        code: code.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn resolve(host: &str, port: u16, ip: &str) -> String {
    format!("{host}:{port}:{ip}")
}

/// One counter from Envoy's admin (`/stats?filter=` takes a regex; cluster names hold `|`,
/// so filter on the stat's last part and match the whole name here).
fn envoy_stat(ns: &Netns, name: &str) -> u64 {
    let last = name.rsplit('.').next().unwrap_or(name);
    let c = curl(
        ns,
        &[&format!("http://127.0.0.1:15000/stats?filter={last}")],
    );
    c.body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stat {name} in\n{}", c.body))
}

fn scenario(mode: &str) {
    let envoy = EnvoyHarness::require();
    let pair = VethPair::create().expect("network namespaces joined by veth");
    let app = &pair.app;
    let routes = app.routes().expect("routes");
    assert!(
        !routes.contains("default"),
        "no route out of the machine:\n{routes}"
    );

    let stand = Outside {
        ns: &pair.outside,
        stand: Some(start_stand_ins(&pair.outside)),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, mesh) = config(dir.path(), mode);

    // A rule of someone else's, which must survive the capture untouched.
    app.iptables(&["-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"])
        .expect("iptables");
    let before = app.rules_dump().expect("iptables-save before");

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

    // HTTP to the VIP, resolved by curl: captured and routed by Host to the endpoint.
    let api_resolve = resolve("api.example.com", 80, VIP);
    let first = eventually_ok(WAIT, || {
        let c = curl(
            app,
            &["--resolve", &api_resolve, "http://api.example.com/ready"],
        );
        if c.code == 200 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("VIP never answered: {e}\n--- proxy ---\n{}", proxy.log()));
    assert_eq!(first.body, "api-standin");

    let during = app.rules_dump().expect("iptables-save while capturing");
    for want in [
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A OUTPUT -p tcp -m tcp --dport 9 -j DROP",
    ] {
        assert!(during.contains(want), "missing {want:?}:\n{during}");
    }

    // Governed: retries (two 503s, then 200).
    stand.api.clear_requests();
    stand.api.fail_next(2, 503);
    let c = curl(
        app,
        &["--resolve", &api_resolve, "http://api.example.com/retry"],
    );
    assert_eq!((c.code, c.body.as_str()), (200, "api-standin"), "{c:?}");
    assert_eq!(
        stand.api.request_count(),
        3,
        "1 try + 2 retries at the stand-in"
    );
    assert!(
        stand.api.hosts().iter().all(|h| h == "api.example.com"),
        "{:?}",
        stand.api.hosts()
    );
    // Governed: fault abort, nothing reaches the stand-in.
    stand.api.clear_requests();
    let c = curl(
        app,
        &[
            "--resolve",
            &api_resolve,
            "-H",
            "x-fault: abort",
            "http://api.example.com/fault",
        ],
    );
    assert_eq!(c.code, 418, "{c:?}");
    assert_eq!(stand.api.request_count(), 0);

    // HTTPS to the TLS ServiceEntry's host at an address nobody has: routed by SNI.
    let ca = stand.secure.ca_path();
    let ca = ca.to_str().expect("utf-8");
    let url = format!("https://secure.example.com{TLS_UPSTREAM_PATH}");
    let c = curl(
        app,
        &[
            "--cacert",
            ca,
            "--resolve",
            &resolve("secure.example.com", 443, TLS_CALLED),
            &url,
        ],
    );
    assert_eq!(
        (c.code, c.body.as_str()),
        (200, stand.secure.name()),
        "{c:?}"
    );
    assert_eq!(stand.secure_fwd.connections(), 1);
    assert!(
        envoy_stat(
            app,
            "cluster.outbound|443||secure.example.com;.upstream_cx_total"
        ) >= 1
    );

    // An unregistered host, HTTPS and HTTP.
    let other_ca = stand.other.ca_path();
    let other_url = format!("https://unregistered.example.net{TLS_UPSTREAM_PATH}");
    let tls = curl(
        app,
        &[
            "--cacert",
            other_ca.to_str().expect("utf-8"),
            "--resolve",
            &resolve("unregistered.example.net", 443, UNREGISTERED_TLS),
            &other_url,
        ],
    );
    let http = curl(app, &[&format!("http://{UNREGISTERED_HTTP}/unregistered")]);
    match mode {
        "REGISTRY_ONLY" => {
            assert!(!tls.exit_ok && tls.code == 0, "refused: {tls:?}");
            assert_eq!(
                stand.other_fwd.connections(),
                0,
                "nothing reached the unregistered host"
            );
            assert_eq!(http.code, 502, "{http:?}");
            assert_eq!(stand.original.request_count(), 0);
        }
        _ => {
            assert_eq!(
                (tls.code, tls.body.as_str()),
                (200, stand.other.name()),
                "{tls:?}"
            );
            assert_eq!(stand.other_fwd.connections(), 1);
            assert_eq!(
                (http.code, http.body.as_str()),
                (200, "original-destination"),
                "{http:?}"
            );
            assert_eq!(stand.original.paths(), vec!["/unregistered".to_string()]);
            assert!(envoy_stat(app, "cluster.PassthroughCluster;.upstream_cx_total") >= 2);
        }
    }

    // SIGTERM: the proxy stops and the rules are exactly as before.
    let status = proxy.terminate();
    let log = proxy.log();
    assert!(status.success(), "proxy exit {status}\n{log}");
    assert!(log.contains("capture rules removed"), "{log}");
    let after = app.rules_dump().expect("iptables-save after");
    assert_eq!(
        after, before,
        "rules after the proxy exited differ from before"
    );
    // No longer captured: the VIP has no server, the unregistered host is reached directly.
    let c = curl(
        app,
        &[
            "--connect-timeout",
            "1",
            "--resolve",
            &api_resolve,
            "http://api.example.com/",
        ],
    );
    assert!(!c.exit_ok, "VIP answered without capture: {c:?}");
    stand.original.clear_requests();
    let c = curl(app, &[&format!("http://{UNREGISTERED_HTTP}/direct")]);
    assert_eq!(
        (c.code, c.body.as_str()),
        (200, "original-destination"),
        "{c:?}"
    );
}

#[test]
fn capture_under_registry_only() {
    scenario("REGISTRY_ONLY");
}

#[test]
fn capture_under_allow_any() {
    scenario("ALLOW_ANY");
}
