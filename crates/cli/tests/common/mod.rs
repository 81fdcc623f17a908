//! Shared setup of the governance tests (`governance_*.rs`): generated configuration served
//! to real Envoy from a static bootstrap, traffic through the explicit-proxy listener (plain
//! HTTP in absolute form, as `curl -x` sends it), the agent's SDS server for TLS secrets.
//!
//! The explicit proxy serves the same per-port virtual hosts as captured traffic (see
//! `rds_explicit.rs`), so VirtualService and DestinationRule effects apply identically.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use entryway::xds::{generate, valid_configs};
use entryway_agent::bootstrap::BootstrapOptions;
use entryway_agent::sds::{MeshIdentity, SdsHandle, SdsOptions, SdsServer};
use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use entryway_testkit::http::{HttpRequest, send};
use entryway_testkit::{EnvoyHarness, EnvoyProcess, HttpResponse, eventually_ok, free_port};
use entryway_xds::generator::ProxyConfig;

pub const WAIT: Duration = Duration::from_secs(20);

/// Validates `yaml` (every document must be valid) and generates the configuration of an
/// explicit-proxy sidecar in namespace `default`.
pub fn generate_explicit(yaml: &str) -> (ProxyConfig, Proxy) {
    let mesh = MeshConfig {
        // virtualOutbound binds this port: keep it away from other tests' Envoys.
        proxy_listen_port: i32::from(free_port().expect("port")),
        ..MeshConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).expect("write");
    let (set, problems, _) =
        valid_configs(entryway::validate::check_paths(&[path], "default", &mesh));
    assert!(problems.is_empty(), "{problems:?}\n{yaml}");
    let mut proxy = Proxy::in_namespace("default");
    // Port 0: the kernel picks; the real address is read back from Envoy's admin API.
    proxy.explicit_proxy = Some("127.0.0.1:0".parse().expect("addr"));
    let cfg = generate(&set, &mesh, &proxy);
    (cfg, proxy)
}

/// A static bootstrap of `cfg` (admin port 0), with the `sds-grpc` cluster to `sds` if any.
pub fn bootstrap(cfg: &ProxyConfig, proxy: &Proxy, sds: Option<&Path>) -> String {
    let (listeners, clusters) = entryway_xds::dump::inline_static(cfg);
    let mut b = BootstrapOptions::new(proxy.id.clone(), format!("entryway.{}", proxy.namespace))
        .with_admin_port(0);
    if let Some(socket) = sds {
        b = b.with_sds_socket(socket);
    }
    for l in &listeners {
        b = b.with_static_listener(entryway_xds::json::to_json_value(l).expect("listener"));
    }
    for c in &clusters {
        b = b.with_static_cluster(entryway_xds::json::to_json_value(c).expect("cluster"));
    }
    b.render()
}

/// Envoy serving `yaml` through its explicit-proxy listener.
pub struct Explicit {
    pub envoy: EnvoyProcess,
    pub proxy: SocketAddr,
}

impl Explicit {
    pub fn start(yaml: &str) -> Self {
        Self::start_with_sds(yaml, None)
    }

    pub fn start_with_sds(yaml: &str, sds: Option<&Path>) -> Self {
        let (cfg, proxy) = generate_explicit(yaml);
        let text = bootstrap(&cfg, &proxy, sds);
        let envoy = EnvoyHarness::require()
            .start(&text)
            .unwrap_or_else(|e| panic!("Envoy did not start: {e}\n{text}"));
        envoy.wait_ready(WAIT).unwrap_or_else(|e| {
            panic!("Envoy not ready: {e}\n{}", envoy.log_tail(40));
        });
        let addr = envoy
            .wait_listener("explicit_proxy", Duration::from_secs(10))
            .expect("explicit_proxy listener address");
        assert_ne!(addr.port(), 0);
        Self { envoy, proxy: addr }
    }

    /// `GET http://<authority><path>` through the proxy (absolute form, `Connection: close`).
    pub fn get(
        &self,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<HttpResponse> {
        let url = format!("http://{authority}{path}");
        send(
            self.proxy,
            &HttpRequest {
                headers,
                timeout: Duration::from_secs(10),
                ..HttpRequest::get(authority, &url)
            },
        )
    }

    /// Like [`get`](Self::get), also returning how long the response took.
    pub fn timed_get(
        &self,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (HttpResponse, Duration) {
        let start = Instant::now();
        let resp = self
            .get(authority, path, headers)
            .unwrap_or_else(|e| panic!("GET http://{authority}{path}: {e}"));
        (resp, start.elapsed())
    }

    /// The first request through a fresh Envoy, retried (bounded) until it answers `want`.
    pub fn first(&self, authority: &str, path: &str, want: u16) -> HttpResponse {
        eventually_ok(Duration::from_secs(10), || {
            match self.get(authority, path, &[]) {
                Ok(r) if r.status == want => Ok(r),
                Ok(r) => Err(format!("status {} body {:?}", r.status, r.text())),
                Err(e) => Err(e.to_string()),
            }
        })
        .unwrap_or_else(|e| panic!("http://{authority}{path} through {}: {e}", self.proxy))
    }

    /// A counter or gauge (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        self.envoy.stat(name).expect("stats").unwrap_or(0)
    }

    /// The Envoy log tail, for failure messages.
    pub fn log(&self) -> String {
        self.envoy.log_tail(60)
    }
}

/// The agent's SDS server on its own tokio runtime.
pub struct Sds {
    pub handle: Option<SdsHandle>,
    pub runtime: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
}

impl Sds {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let identity =
            MeshIdentity::self_signed("cluster.local", "default", "default").expect("identity");
        let handle = {
            let _guard = runtime.enter();
            SdsServer::start_with(dir.path().join("sds.sock"), identity, SdsOptions::default())
                .expect("sds server")
        };
        Self {
            handle: Some(handle),
            runtime,
            dir,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.handle
            .as_ref()
            .map(|h| h.socket_path().to_path_buf())
            .expect("running")
    }
}

impl Drop for Sds {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.runtime.block_on(h.shutdown());
        }
    }
}

/// A ServiceEntry document (namespace `default`).
pub fn service_entry(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
    )
}

/// A DestinationRule document (namespace `default`).
pub fn destination_rule(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
    )
}

/// A VirtualService document (namespace `default`).
pub fn virtual_service(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
    )
}

/// Hoeffding: for `n` independent trials with success probability `p`, the count of
/// successes lies within `n·p ± n·t` except with probability at most `2·exp(-2·n·t²)`.
/// Returns the inclusive bounds for failure probability `1e-7` (< 1e-6 as required).
pub fn hoeffding_bounds(n: usize, p: f64) -> (usize, usize) {
    let nf = n as f64;
    let t = ((2.0f64 / 1e-7).ln() / (2.0 * nf)).sqrt();
    let lo = (nf * (p - t)).floor().max(0.0) as usize;
    let hi = (nf * (p + t)).ceil().min(nf) as usize;
    (lo, hi)
}

/// Runs `n` calls of `f` on `threads` threads; returns the results in call order.
pub fn parallel<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: std::sync::Mutex<Vec<Option<T>>> =
        std::sync::Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let r = f(i);
                    out.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every call ran"))
        .collect()
}
