//! The admin server over real TCP: every endpoint, with a store loaded from real files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use entryway_model::api::MeshConfig;
use entryway_model::registry::Proxy;
use entryway_server::admin::AdminServer;
use entryway_server::shared::{ProxyStatus, Shared, TypeSync};
use entryway_server::snapshot::Snapshot;
use entryway_server::store::{Store, StoreOptions};
use entryway_testkit::http::{HttpRequest, HttpResponse, send};
use serde_json::Value;
use tokio::sync::oneshot;

const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: httpbin
  namespace: web
spec:
  hosts: [httpbin.example.com]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports:
      http: 18080
    labels:
      version: v1
";

const BAD: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: broken
  namespace: web
spec:
  hosts: [broken.example.com]
  ports:
  - number: 0
    name: http
  resolution: DNS
";

struct Admin {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Admin {
    async fn start(shared: Arc<Shared>) -> Admin {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let server = AdminServer::bind(addr, shared).await.expect("bind");
        let addr = server.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Admin {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn request(&self, method: &'static str, path: &str) -> HttpResponse {
        let addr = self.addr;
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            let mut req = HttpRequest::get("localhost", &path);
            req.method = method;
            send(addr, &req)
        })
        .await
        .expect("client task")
        .expect("HTTP request")
    }

    async fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path).await
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        serde_json::from_slice(&r.body).expect("JSON body")
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("admin task");
    }
}

fn loaded(dir: &Path) -> (Store, Arc<Shared>) {
    std::fs::write(dir.join("httpbin.yaml"), SE).expect("write");
    std::fs::write(dir.join("broken.yaml"), BAD).expect("write");
    Store::open(StoreOptions::new(vec![dir.to_path_buf()])).expect("open")
}

fn connect_proxy(shared: &Shared, conn: u64, node_id: &str) {
    let mut proxy = Proxy::in_namespace("web");
    proxy.id = node_id.to_string();
    let mut types = BTreeMap::new();
    types.insert(
        "type.googleapis.com/envoy.config.cluster.v3.Cluster".to_string(),
        TypeSync {
            sent_version: "1".into(),
            sent_nonce: "n1".into(),
            acked_version: "1".into(),
            last_nack: Some("duplicate cluster".into()),
            resources: 3,
        },
    );
    let status = ProxyStatus {
        node_id: node_id.to_string(),
        protocol: "delta".into(),
        namespace: "web".into(),
        identity: None,
        snapshot_version: 1,
        types,
    };
    shared
        .proxies
        .lock()
        .expect("proxies lock")
        .insert(conn, (proxy, status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_until_the_first_snapshot() {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::empty(MeshConfig::default())));
    let shared = Shared::new(rx);
    let admin = Admin::start(shared).await;
    let r = admin.get("/ready").await;
    assert_eq!(r.status, 503, "{}", r.text());
    tx.send_modify(|s| {
        let mut next = (**s).clone();
        next.version = 1;
        *s = Arc::new(next);
    });
    let r = admin.get("/ready").await;
    assert_eq!(r.status, 200, "{}", r.text());
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, shared) = loaded(dir.path());
    shared.metrics.proxies_delta(2);
    shared.metrics.pushes.add("cds", 3);
    shared.metrics.nacks.add("lds", 1);
    shared
        .metrics
        .push_time
        .observe(std::time::Duration::from_micros(1500));
    let admin = Admin::start(Arc::clone(&shared)).await;
    let r = admin.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    let text = r.text();
    for line in [
        "# TYPE entryway_connected_proxies gauge",
        "entryway_connected_proxies 2",
        "# TYPE entryway_pushes_total counter",
        "entryway_pushes_total{type=\"cds\"} 3",
        "# TYPE entryway_push_seconds histogram",
        "entryway_push_seconds_bucket{le=\"0.001\"} 0",
        "entryway_push_seconds_bucket{le=\"0.0025\"} 1",
        "entryway_push_seconds_bucket{le=\"+Inf\"} 1",
        "entryway_push_seconds_count 1",
        "entryway_convergence_seconds_bucket{le=\"+Inf\"} 0",
        "entryway_convergence_seconds_count 0",
        "entryway_nacks_total{type=\"lds\"} 1",
        "entryway_rejected_configs_total{kind=\"ServiceEntry\"} 1",
        "entryway_rejected_configs_total{kind=\"Sidecar\"} 0",
        "entryway_config_version 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_endpoints_serve_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, shared) = loaded(dir.path());
    let node = "sidecar~127.0.0.1~app.web~web.svc.cluster.local";
    connect_proxy(&shared, 7, node);
    let admin = Admin::start(Arc::clone(&shared)).await;

    // syncz: one entry per connected proxy.
    let syncz = admin.json("/debug/syncz").await;
    let entries = syncz.as_array().expect("array");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["node_id"], node);
    let cds = &entries[0]["types"]["type.googleapis.com/envoy.config.cluster.v3.Cluster"];
    assert_eq!(cds["last_nack"], "duplicate cluster");

    // registryz: the service with address, ports, resolution and endpoints.
    let reg = admin.json("/debug/registryz").await;
    let svc = &reg["services"][0];
    assert_eq!(svc["hostname"], "httpbin.example.com");
    assert_eq!(svc["namespace"], "web");
    assert_eq!(svc["resolution"], "STATIC");
    assert_eq!(svc["ports"][0]["number"], 80);
    assert_eq!(svc["ports"][0]["protocol"], "HTTP");
    assert_eq!(svc["endpoints"][0]["address"], "127.0.0.1");
    assert_eq!(svc["endpoints"][0]["port"], 18080);
    assert_eq!(svc["endpoints"][0]["labels"]["version"], "v1");

    // configz: accepted with file, rejected with field and reason.
    let configz = admin.json("/debug/configz").await;
    assert_eq!(configz["version"], 1);
    let accepted = &configz["accepted"][0];
    assert_eq!(accepted["kind"], "ServiceEntry");
    assert_eq!(accepted["name"], "httpbin");
    assert!(
        accepted["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("httpbin.yaml"))
    );
    let rejected = &configz["rejected"][0];
    assert_eq!(rejected["name"], "broken");
    assert!(
        rejected["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken.yaml"))
    );
    assert_eq!(rejected["errors"][0]["path"], "spec.ports[0].number");
    assert!(
        rejected["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1-65535"))
    );
    assert_eq!(rejected["error_lines"][0], 9);
    assert_eq!(rejected["kept_last_good"], false);

    // config_dump for the connected proxy: generated from the current snapshot.
    let encoded = node.replace('~', "%7E");
    let dump = admin
        .json(&format!("/debug/config_dump?proxy={encoded}"))
        .await;
    let text = dump.to_string();
    assert!(text.contains("outbound|80||httpbin.example.com"), "{text}");
    assert!(text.contains("ClustersConfigDump"), "{text}");

    // Unknown and missing ids.
    let r = admin.get("/debug/config_dump?proxy=nobody").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no connected proxy with id \"nobody\""));
    let r = admin.get("/debug/config_dump").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains(node), "{}", r.text());
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_unknown_paths_and_methods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, shared) = loaded(dir.path());
    let admin = Admin::start(shared).await;

    let index = admin.get("/").await;
    assert_eq!(index.status, 200);
    for path in [
        "/ready",
        "/metrics",
        "/debug/syncz",
        "/debug/config_dump",
        "/debug/registryz",
        "/debug/configz",
    ] {
        assert!(index.text().contains(path), "{path} not listed");
    }
    assert_eq!(admin.get("/nope").await.status, 404);
    let head = admin.request("HEAD", "/ready").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = admin.request("POST", "/ready").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    admin.stop().await;
}
