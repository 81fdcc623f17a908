//! The supervisor against real Envoy: start, restart after SIGKILL with back-off, drain on
//! shutdown, and the `ProxyAgentConfig` bootstrap reaching Envoy's node.
//!
//! Waiting is bounded polling of the status channel or the admin API, never a fixed sleep.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use entryway_agent::bootstrap::{BootstrapOptions, XdsAddress};
use entryway_agent::supervisor::{admin_ready, admin_request};
use entryway_agent::{
    EnvoyLaunch, EnvoyPhase, EnvoyStatus, ProxyAgentConfig, Supervisor, SupervisorExit,
    SupervisorOptions,
};
use entryway_testkit::{EnvoyHarness, HttpUpstream, fixtures, free_port, next_base_id};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

/// A static bootstrap: admin on a kernel-chosen port, listener `web` (kernel-chosen port)
/// routing to `upstream`.
fn static_launch(dir: &Path, upstream: SocketAddr, base_id: Option<u32>) -> EnvoyLaunch {
    let harness = EnvoyHarness::require();
    let bootstrap = BootstrapOptions::new("supervisor-test", "supervisor-test")
        .with_admin_port(0)
        .with_static_listener(fixtures::http_listener(
            "web",
            "127.0.0.1:0".parse().unwrap(),
            "upstream",
        ))
        .with_static_cluster(fixtures::static_cluster("upstream", upstream));
    let mut launch = EnvoyLaunch::write(harness.binary(), dir, &bootstrap).unwrap();
    launch.base_id = base_id;
    launch.concurrency = 1;
    launch.log_level = "info".into();
    launch.drain_time = Duration::from_secs(1);
    launch
}

struct Run {
    status: watch::Receiver<EnvoyStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<SupervisorExit, entryway_agent::SupervisorError>>,
}

fn start(launch: EnvoyLaunch, options: SupervisorOptions) -> Run {
    let supervisor = Supervisor::new(launch, options);
    let status = supervisor.status();
    let (stop, stopped) = oneshot::channel::<()>();
    // `tokio::spawn` also proves the run future is `Send`, as the CLI needs.
    let task = tokio::spawn(supervisor.run(async move {
        let _ = stopped.await;
    }));
    Run {
        status,
        stop: Some(stop),
        task,
    }
}

impl Run {
    async fn wait(&mut self, what: &str, f: impl FnMut(&EnvoyStatus) -> bool) -> EnvoyStatus {
        let result = tokio::time::timeout(WAIT, self.status.wait_for(f))
            .await
            .map(|r| r.map(|s| s.clone()));
        match result {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => panic!("supervisor ended while waiting for {what}"),
            Err(_) => panic!(
                "timed out waiting for {what}; status {:?}",
                *self.status.borrow()
            ),
        }
    }

    async fn running(&mut self) -> (u32, SocketAddr) {
        let s = self.wait("Envoy running", EnvoyStatus::is_running).await;
        (s.pid.unwrap(), s.admin.unwrap())
    }

    async fn shutdown(mut self) -> SupervisorExit {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("supervisor stops in time")
            .unwrap()
            .unwrap()
    }
}

/// Polls an async check until it yields `Some`, at most [`WAIT`].
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + WAIT;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

async fn wait_ready(admin: SocketAddr) {
    eventually("/ready = 200", || async move {
        admin_ready(admin).await.ok().filter(|r| *r)
    })
    .await;
}

async fn listener_addr(admin: SocketAddr, name: &str) -> SocketAddr {
    eventually("listener address", || async move {
        let resp = admin_request(admin, "GET", "/listeners?format=json")
            .await
            .ok()?;
        let v: Value = serde_json::from_str(&resp.body).ok()?;
        v["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == name)
            .and_then(|l| {
                let sa = &l["local_address"]["socket_address"];
                let ip = sa["address"].as_str()?;
                let port = sa["port_value"].as_u64()?;
                format!("{ip}:{port}").parse().ok()
            })
    })
    .await
}

fn process_exists(pid: u32) -> bool {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::test_kill_process(pid).is_ok()
}

fn kill9(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}

/// A keep-alive HTTP/1.1 client on one connection.
struct KeepAlive(TcpStream);

impl KeepAlive {
    async fn connect(addr: SocketAddr) -> Self {
        Self(TcpStream::connect(addr).await.unwrap())
    }

    /// Sends `GET /` and returns (status, `connection` header).
    async fn get(&mut self) -> (u16, Option<String>) {
        self.0
            .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = self.0.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a response");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length").unwrap().parse().unwrap();
        let mut body = buf.len() - head_end - 4;
        while body < length {
            let mut chunk = [0u8; 4096];
            let n = self.0.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside a body");
            body += n;
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, header("connection"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_envoy_serves_traffic_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = HttpUpstream::start("backend").unwrap();
    let t0 = Instant::now();
    let mut run = start(
        static_launch(dir.path(), upstream.addr(), None),
        SupervisorOptions::default(),
    );
    let (pid, admin) = run.running().await;
    wait_ready(admin).await;
    eprintln!("spawn → /ready 200: {:?}", t0.elapsed());
    assert!(process_exists(pid));

    let web = listener_addr(admin, "web").await;
    let (status, _) = KeepAlive::connect(web).await.get().await;
    assert_eq!(status, 200);
    assert_eq!(upstream.request_count(), 1);

    let t1 = Instant::now();
    let exit = run.shutdown().await;
    eprintln!(
        "shutdown (idle drain + SIGTERM): {:?}; {exit:?}",
        t1.elapsed()
    );
    let drain = exit.drain.expect("a running Envoy is drained");
    assert_eq!(drain.drain_request, Ok(200));
    assert_eq!(drain.connections_at_end, Some(0));
    assert!(!exit.killed, "Envoy should stop on SIGTERM");
    assert!(exit.exit.unwrap().success(), "{:?}", exit.exit);
    assert_eq!(exit.restarts, 0);
    assert!(!process_exists(pid), "Envoy pid {pid} still exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_envoy_killed_with_sigkill_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = HttpUpstream::start("backend").unwrap();
    // A fixed base id: the restarted Envoy must reuse the hot-restart shared memory and
    // domain socket names of the SIGKILLed one.
    let mut run = start(
        static_launch(dir.path(), upstream.addr(), Some(next_base_id())),
        SupervisorOptions::default(),
    );
    let (pid1, admin1) = run.running().await;
    wait_ready(admin1).await;

    let t0 = Instant::now();
    kill9(pid1);
    let s = run
        .wait("a new Envoy", |s| s.is_running() && s.pid != Some(pid1))
        .await;
    let restart_time = t0.elapsed();
    let (pid2, admin2) = (s.pid.unwrap(), s.admin.unwrap());
    wait_ready(admin2).await;
    eprintln!(
        "SIGKILL → running again: {restart_time:?}, → /ready: {:?}",
        t0.elapsed()
    );
    assert_eq!(s.restarts, 1);
    assert_eq!(s.starts, 2);
    assert_eq!(s.consecutive_failures, 1);
    assert!(
        s.last_exit.as_deref().unwrap().contains("SIGKILL"),
        "{:?}",
        s.last_exit
    );
    assert!(!process_exists(pid1));

    // The new Envoy serves traffic.
    let web = listener_addr(admin2, "web").await;
    assert_eq!(KeepAlive::connect(web).await.get().await.0, 200);

    // A second quick failure doubles the back-off (100 ms → 200 ms).
    kill9(pid2);
    let s = run
        .wait("the second back-off", |s| s.phase == EnvoyPhase::Restarting)
        .await;
    assert_eq!(s.consecutive_failures, 2);
    assert_eq!(s.restart_delay, Some(Duration::from_millis(200)));
    let s = run
        .wait("a third Envoy", |s| {
            s.is_running() && s.pid.is_some_and(|p| p != pid1 && p != pid2)
        })
        .await;
    assert_eq!(s.restarts, 2);
    wait_ready(s.admin.unwrap()).await;

    let exit = run.shutdown().await;
    assert_eq!(exit.restarts, 2);
    assert!(!exit.killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_open_connections_to_drain() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = HttpUpstream::start("backend").unwrap();
    let options = SupervisorOptions {
        drain_period: Duration::from_secs(15),
        ..SupervisorOptions::default()
    };
    let mut run = start(static_launch(dir.path(), upstream.addr(), None), options);
    let (pid, admin) = run.running().await;
    let web = listener_addr(admin, "web").await;
    let mut conn = KeepAlive::connect(web).await;
    assert_eq!(conn.get().await, (200, None), "keep-alive before the drain");

    let _ = run.stop.take().unwrap().send(());
    // The supervisor has asked Envoy to drain and sees the open connection.
    run.wait("draining with one open connection", |s| {
        s.phase == EnvoyPhase::Draining && s.open_connections == Some(1)
    })
    .await;
    assert!(process_exists(pid));
    // Envoy still serves the connection and asks the client to close it (`connection:
    // close`); the client does, and the supervisor stops Envoy. (A client that ignores the
    // header is disconnected by Envoy about 6 s later, measured with Envoy 1.40.)
    let (status, connection) = conn.get().await;
    assert_eq!(status, 200);
    assert_eq!(connection.as_deref(), Some("close"));
    let t0 = Instant::now();
    drop(conn);

    let exit = tokio::time::timeout(WAIT, run.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    eprintln!(
        "drain after the connection closed: {:?}; {exit:?}",
        t0.elapsed()
    );
    let drain = exit.drain.unwrap();
    assert_eq!(drain.drain_request, Ok(200));
    assert_eq!(drain.connections_at_start, Some(1));
    assert_eq!(drain.connections_at_end, Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the drain should end when the connection closes, not at the drain period: {drain:?}"
    );
    assert!(!exit.killed);
    assert!(!process_exists(pid));
    assert!(upstream.request_count() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_holds_the_drain_for_the_bounded_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = HttpUpstream::start("backend").unwrap();
    let drain_period = Duration::from_millis(700);
    let options = SupervisorOptions {
        drain_period,
        ..SupervisorOptions::default()
    };
    let mut run = start(static_launch(dir.path(), upstream.addr(), None), options);
    let (pid, admin) = run.running().await;
    let web = listener_addr(admin, "web").await;
    // Envoy does not close an idle keep-alive connection when draining; only the bound
    // ends the wait.
    let mut conn = KeepAlive::connect(web).await;
    assert_eq!(conn.get().await.0, 200);

    let exit = run.shutdown().await;
    let drain = exit.drain.unwrap();
    assert_eq!(drain.connections_at_start, Some(1), "{drain:?}");
    assert_eq!(drain.connections_at_end, Some(1), "{drain:?}");
    assert!(drain.waited >= drain_period, "{drain:?}");
    assert!(
        drain.waited < drain_period + Duration::from_secs(2),
        "{drain:?}"
    );
    assert!(!exit.killed);
    assert!(!process_exists(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_follows_when_envoy_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = HttpUpstream::start("backend").unwrap();
    let options = SupervisorOptions {
        term_timeout: Duration::from_millis(300),
        ..SupervisorOptions::default()
    };
    let mut run = start(static_launch(dir.path(), upstream.addr(), None), options);
    let (pid, _) = run.running().await;
    // A stopped process neither answers the admin API nor acts on SIGTERM (it stays
    // pending); only SIGKILL ends it.
    let raw = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(raw, rustix::process::Signal::STOP).unwrap();

    let exit = run.shutdown().await;
    let drain = exit.drain.as_ref().unwrap();
    assert!(drain.drain_request.is_err(), "{drain:?}");
    assert!(exit.killed, "{exit:?}");
    assert!(
        exit.exit.unwrap().to_string().contains("SIGKILL"),
        "{exit:?}"
    );
    assert!(!process_exists(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_when_envoy_keeps_failing_at_start() {
    let harness = EnvoyHarness::require();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bad.yaml");
    std::fs::write(
        &bootstrap,
        "static_resources: { listeners: [ { name: 1 } ] }\n",
    )
    .unwrap();
    let launch = EnvoyLaunch::new(harness.binary(), &bootstrap, dir.path());
    let options = SupervisorOptions {
        give_up_after: Some(2),
        ..SupervisorOptions::default()
    };
    let supervisor = Supervisor::new(launch, options);
    let status = supervisor.status();
    let never = std::future::pending::<()>();
    let err = tokio::time::timeout(WAIT, supervisor.run(never))
        .await
        .unwrap()
        .unwrap_err();
    match &err {
        entryway_agent::SupervisorError::GaveUp {
            failures,
            last_exit,
        } => {
            assert_eq!(*failures, 3);
            assert_eq!(last_exit, "exit status: 1");
        }
        other => panic!("unexpected {other}"),
    }
    let s = status.borrow().clone();
    assert_eq!(s.phase, EnvoyPhase::Failed);
    assert_eq!((s.starts, s.restarts), (3, 2));
}

#[tokio::test]
async fn first_start_failure_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let launch = EnvoyLaunch::new(
        dir.path().join("no-envoy"),
        dir.path().join("b.json"),
        dir.path(),
    );
    let err = Supervisor::new(launch, SupervisorOptions::default())
        .run(std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(
        matches!(err, entryway_agent::SupervisorError::Spawn { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no-envoy"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_config_bootstrap_reaches_envoy_without_a_control_plane() {
    let harness = EnvoyHarness::require();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProxyAgentConfig::from_vars([
        ("POD_NAME", "cart-1"),
        ("POD_NAMESPACE", "shop"),
        ("INSTANCE_IP", "10.1.2.3"),
        ("ISTIO_METAJSON_LABELS", r#"{"app":"cart"}"#),
        ("ISTIO_META_DNS_CAPTURE", "true"),
        ("ISTIO_DELTA_XDS", "true"),
    ])
    .unwrap();
    // Nothing listens there: Envoy must still start and keep retrying ADS.
    config.xds_address = XdsAddress::new("127.0.0.1", free_port().unwrap());
    config.admin_port = 0;
    config.work_dir = dir.path().to_path_buf();
    config.envoy_binary = Some(harness.binary().to_path_buf());
    config.concurrency = 1;
    let launch = config.prepare().unwrap();
    harness.validate_file(&launch.bootstrap_path).unwrap();

    let mut run = start(launch, SupervisorOptions::default());
    let (_, admin) = run.running().await;
    let dump = admin_request(admin, "GET", "/config_dump").await.unwrap();
    assert_eq!(dump.status, 200, "{}", dump.body);
    let dump: Value = serde_json::from_str(&dump.body).unwrap();
    let node = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|c| c.get("bootstrap"))
        .map(|b| &b["node"])
        .expect("a bootstrap config dump");
    assert_eq!(
        node["id"],
        "sidecar~10.1.2.3~cart-1.shop~shop.svc.cluster.local"
    );
    assert_eq!(node["cluster"], "cart.shop");
    let meta = &node["metadata"];
    assert_eq!(meta["NAMESPACE"], "shop");
    assert_eq!(meta["LABELS"], r#"{"app":"cart"}"#);
    assert_eq!(meta["INSTANCE_IPS"], "10.1.2.3");
    assert_eq!(meta["DNS_CAPTURE"], "true");

    let exit = run.shutdown().await;
    assert!(!exit.killed);
}
