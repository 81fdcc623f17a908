//! [`ThreeHosts`]: a small mesh across three hosts (network namespaces on one bridge), with
//! the real `entryway` binary: a control plane, a client VM and a server VM.
//!
//! ```text
//! cp  10.77.0.1   entryway serve (secure port 10.77.0.1:15012, plaintext 15010 on loopback)
//! a   10.77.0.2   entryway proxy --join-dir A --capture (DNS capture from the join dir)
//! b   10.77.0.3   entryway proxy --join-dir B --capture --inbound-ports '*'; an HTTP server on
//!                 :8080 (the application), a WorkloadEntry of a MESH_INTERNAL ServiceEntry
//! ```
//!
//! Shared by the issue-9 acceptance tests and the mesh latency benchmark, so both measure
//! the same setup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::{INSTALL_HINT, Lan, Netns, NetnsResolvConf};
use crate::{HttpUpstream, Spawned, eventually_ok, http_get};

/// How long a host may take to come up.
pub const WAIT: Duration = Duration::from_secs(40);
/// Host index of the control plane.
pub const CP: usize = 0;
/// Host index of the client VM.
pub const A: usize = 1;
/// Host index of the server VM.
pub const B: usize = 2;
/// The port B's application listens on (the WorkloadEntry's target port).
pub const B_APP_PORT: u16 = 8080;
/// What B's application answers.
pub const B_BODY: &str = "hello from b";

/// The registry of the three-host mesh: B's service (MESH_INTERNAL, port 80 → 8080), B's
/// WorkloadEntry, a VirtualService that sets a header and routes to a DestinationRule
/// subset, the DestinationRule (ISTIO_MUTUAL).
pub const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b, namespace: shop}
spec:
  hosts: [b.shop.mesh]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: STATIC
  workloadSelector: {labels: {app: b}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-b, namespace: shop}
spec: {address: 10.77.0.3, labels: {app: b, version: v1}, serviceAccount: b-sa}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: shop}
spec:
  hosts: [b.shop.mesh]
  http:
  - headers: {request: {set: {x-route: via-virtual-service}}}
    route: [{destination: {host: b.shop.mesh, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: shop}
spec:
  host: b.shop.mesh
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {version: v1}}]
"#;

/// How the mesh is set up.
#[derive(Debug, Clone, Default)]
pub struct MeshOptions {
    /// A plug-in CA directory (else the self-signed root in the state dir).
    pub ca_dir: Option<PathBuf>,
    /// `--workload-cert-ttl`.
    pub cert_ttl: Option<String>,
    /// Envoy's log level on both VMs (default `info`).
    pub envoy_log_level: Option<String>,
}

impl MeshOptions {
    fn ca_args(&self) -> Vec<String> {
        match &self.ca_dir {
            Some(d) => vec!["--ca-dir".into(), d.to_string_lossy().into_owned()],
            None => Vec::new(),
        }
    }
}

/// The running mesh; every process is stopped on drop.
#[derive(Debug)]
pub struct ThreeHosts {
    /// The hosts and the switch.
    pub lan: Lan,
    /// Config (`cfg/`), state, join directories, logs.
    pub dir: tempfile::TempDir,
    /// `entryway serve` on the control plane host.
    pub cp: Spawned,
    /// A's agent.
    pub a: Spawned,
    /// B's agent.
    pub b: Spawned,
    /// B's application.
    pub upstream: HttpUpstream,
    entryway: PathBuf,
    options: MeshOptions,
    _resolv: NetnsResolvConf,
}

/// Runs `f` on a thread inside `ns` (its sockets live there).
pub fn in_ns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread()
                .unwrap_or_else(|e| panic!("entering {}: {e}. {INSTALL_HINT}", ns.name()));
            f()
        })
        .join()
        .expect("thread in namespace")
    })
}

/// `curl -sS -m 5 ARGS` inside `ns`: (exit code, stdout, stderr).
pub fn curl(ns: &Netns, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "curl", "-sS", "-m", "5"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}. {INSTALL_HINT}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET `path` from an admin server on `ns`'s loopback (empty on failure).
pub fn admin(ns: &Netns, port: u16, path: &str) -> String {
    in_ns(ns, || {
        http_get(SocketAddr::from(([127, 0, 0, 1], port)), "localhost", path)
            .map(|r| r.text())
            .unwrap_or_default()
    })
}

impl Drop for ThreeHosts {
    /// The agents first (each stops its Envoy and removes its rules), then the control plane.
    fn drop(&mut self) {
        self.a.terminate();
        self.b.terminate();
        self.cp.terminate();
    }
}

impl ThreeHosts {
    /// A path in the mesh's directory.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Starts everything with `entryway` (the binary) and waits for the control plane.
    pub fn start(entryway: &Path, options: MeshOptions, dir: tempfile::TempDir) -> ThreeHosts {
        let lan = Lan::create(3).unwrap_or_else(|e| panic!("{e}. {INSTALL_HINT}"));
        std::fs::create_dir_all(dir.path().join("cfg")).expect("cfg");
        std::fs::write(dir.path().join("cfg/b.yaml"), CONFIG).expect("config");
        std::fs::write(
            dir.path().join("mesh.yaml"),
            "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
        )
        .expect("mesh");
        let cp = Self::serve_on(&lan, entryway, dir.path(), &options, "cp.log");
        let secure = format!("{}:15012", Lan::addr(CP));
        let join_a = dir.path().join("join-a");
        let join_b = dir.path().join("join-b");
        let configure = |args: &[&str]| {
            let out = std::process::Command::new(entryway)
                .args(["vm", "configure", "--state-dir"])
                .arg(dir.path().join("state"))
                .args(options.ca_args())
                .args(args)
                .output()
                .expect("entryway vm configure");
            assert!(
                out.status.success(),
                "vm configure failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        configure(&[
            "-n",
            "client",
            "--service-account",
            "a-sa",
            "--xds-address",
            &secure,
            "--dns-capture",
            "-o",
            &join_a.to_string_lossy(),
        ]);
        configure(&[
            "-n",
            "shop",
            "--service-account",
            "b-sa",
            "--labels",
            "app=b,version=v1",
            "--xds-address",
            &secure,
            "-o",
            &join_b.to_string_lossy(),
        ]);
        // B's application: an HTTP server on all of B's addresses.
        let upstream = in_ns(&lan.hosts[B], || {
            HttpUpstream::start_at(
                "b-app",
                SocketAddr::from(([0, 0, 0, 0], B_APP_PORT)),
                200,
                B_BODY,
            )
            .expect("b's app")
        });
        let level = options
            .envoy_log_level
            .clone()
            .unwrap_or_else(|| "info".into());
        let agent = |host: usize, join: &Path, extra: &[&str], name: &str| {
            let mut args = vec![
                "proxy".to_string(),
                "--join-dir".into(),
                join.to_string_lossy().into_owned(),
                "--capture".into(),
                "--explicit-proxy".into(),
                "off".into(),
                "--work-dir".into(),
                dir.path()
                    .join(format!("work-{name}"))
                    .to_string_lossy()
                    .into_owned(),
                "--envoy-log-level".into(),
                level.clone(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Spawned::in_netns(
                &lan.hosts[host],
                entryway,
                &args,
                &[("RUST_LOG", "info")],
                dir.path().join(format!("{name}.log")),
            )
            .expect("agent")
        };
        let b = agent(B, &join_b, &["--inbound-ports", "*"], "b");
        // A resolves through its DNS proxy; names it does not know go to a nameserver that
        // does not exist (nothing leaves the bridge).
        let resolv =
            NetnsResolvConf::write(&lan.hosts[A], &format!("nameserver {}\n", Lan::addr(CP)))
                .expect("resolv.conf");
        let a = agent(A, &join_a, &[], "a");
        ThreeHosts {
            lan,
            dir,
            cp,
            a,
            b,
            upstream,
            entryway: entryway.to_path_buf(),
            options,
            _resolv: resolv,
        }
    }

    fn serve_on(
        lan: &Lan,
        entryway: &Path,
        dir: &Path,
        options: &MeshOptions,
        log: &str,
    ) -> Spawned {
        let secure = format!("{}:15012", Lan::addr(CP));
        let mut args: Vec<String> = [
            "serve",
            "--config",
            &dir.join("cfg").to_string_lossy(),
            "--mesh",
            &dir.join("mesh.yaml").to_string_lossy(),
            "--state-dir",
            &dir.join("state").to_string_lossy(),
            "--secure-xds-address",
            &secure,
            "--debounce-ms",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(options.ca_args());
        if let Some(ttl) = &options.cert_ttl {
            args.extend(["--workload-cert-ttl".to_string(), ttl.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cp = Spawned::in_netns(
            &lan.hosts[CP],
            entryway,
            &args,
            &[("RUST_LOG", "info")],
            dir.join(log),
        )
        .expect("serve");
        eventually_ok(WAIT, || {
            let r = admin(&lan.hosts[CP], 15014, "/ready");
            if r.contains("ready") { Ok(()) } else { Err(r) }
        })
        .unwrap_or_else(|e| panic!("control plane not ready: {e}\n{}", cp.log()));
        cp
    }

    /// Restarts the control plane (same state and CA), logging to `log`.
    pub fn restart_control_plane(&mut self, log: &str) {
        self.cp.terminate();
        self.cp = Self::serve_on(
            &self.lan,
            &self.entryway,
            self.dir.path(),
            &self.options,
            log,
        );
    }

    /// Waits until A reaches B's application by name through both sidecars.
    pub fn wait_a_reaches_b(&self, path: &str) {
        let url = format!("http://b.shop.mesh{path}");
        eventually_ok(WAIT, || {
            let r = curl(&self.lan.hosts[A], &[&url]);
            if r.0 == 0 && r.1 == B_BODY {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        })
        .unwrap_or_else(|e| {
            panic!(
                "A never reached B: {e}\n--- a ---\n{}\n--- b ---\n{}\n--- cp ---\n{}",
                self.a.log(),
                self.b.log(),
                self.cp.log()
            )
        });
    }
}
