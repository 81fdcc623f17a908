//! `entryway demo`: local stand-ins for outside services, the control plane and a sidecar
//! Envoy on this machine; sends traffic through the sidecar's explicit proxy and prints what
//! governance did, counted at the stand-ins.
//!
//! Nothing leaves the machine: every stand-in listens on 127.0.0.1 and the mesh is
//! REGISTRY_ONLY, so a host without a ServiceEntry is refused.

pub mod standins;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::proxy::Agent;
use crate::serve::{ControlPlane, ServeArgs};
use standins::{Reply, StandIn};

/// Flags of `entryway demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Keep everything running after the report (until Ctrl-C), to poke at it with curl.
    #[arg(long)]
    pub keep_running: bool,
    /// Use the Delta ADS protocol.
    #[arg(long)]
    pub delta: bool,
}

const FLAKY: &str = "flaky.demo.example";
const SLOW: &str = "slow.demo.example";
const QUOTES: &str = "quotes.demo.example";
const INVENTORY: &str = "inventory.demo.example";
const SECURE: &str = "secure.demo.example";
const ECHO: &str = "echo.demo.example";
const UNKNOWN: &str = "unknown.demo.example";

/// Requests sent to the fault-injected service.
const FAULT_SAMPLES: usize = 100;
/// Concurrent requests sent at the circuit breaker.
const BREAKER_LOAD: usize = 10;

struct StandIns {
    flaky: StandIn,
    slow: StandIn,
    quotes: StandIn,
    inventory: StandIn,
    secure: StandIn,
    echo: StandIn,
}

fn se_http(name: &str, host: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  location: MESH_EXTERNAL\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]\n"
    )
}

/// The demo's Istio config, one file per service.
fn config_files(s: &StandIns, certs: &Path) -> Vec<(String, String)> {
    let certs = certs.display();
    vec![
        (
            "flaky.yaml".into(),
            format!(
                "# An API that fails 2 of every 3 requests; retries absorb it.\n{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: flaky}}\nspec:\n  hosts: [{FLAKY}]\n  http:\n  - route: [{{destination: {{host: {FLAKY}}}}}]\n    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: 5xx}}\n",
                se_http("flaky", FLAKY, s.flaky.addr.port())
            ),
        ),
        (
            "slow.yaml".into(),
            format!(
                "# An API that answers after 2 s; the route gives up after 0.5 s.\n{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: slow}}\nspec:\n  hosts: [{SLOW}]\n  http:\n  - route: [{{destination: {{host: {SLOW}}}}}]\n    timeout: 0.5s\n    retries: {{attempts: 0}}\n",
                se_http("slow", SLOW, s.slow.addr.port())
            ),
        ),
        (
            "quotes.yaml".into(),
            format!(
                "# Fault injection: 30% of requests are answered 503 by the sidecar itself.\n{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: quotes}}\nspec:\n  hosts: [{QUOTES}]\n  http:\n  - route: [{{destination: {{host: {QUOTES}}}}}]\n    retries: {{attempts: 0}}\n    fault:\n      abort:\n        percentage: {{value: 30}}\n        httpStatus: 503\n",
                se_http("quotes", QUOTES, s.quotes.addr.port())
            ),
        ),
        (
            "inventory.yaml".into(),
            format!(
                "# A circuit breaker: one connection, one pending request.\n{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: inventory}}\nspec:\n  host: {INVENTORY}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: 1}}\n      http: {{http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: inventory}}\nspec:\n  hosts: [{INVENTORY}]\n  http:\n  - route: [{{destination: {{host: {INVENTORY}}}}}]\n    retries: {{attempts: 0}}\n",
                se_http("inventory", INVENTORY, s.inventory.addr.port())
            ),
        ),
        (
            "secure.yaml".into(),
            format!(
                "# TLS origination: the application speaks plain HTTP, the sidecar mutual TLS.\n{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: secure}}\nspec:\n  host: {SECURE}\n  trafficPolicy:\n    portLevelSettings:\n    - port: {{number: 80}}\n      tls:\n        mode: MUTUAL\n        clientCertificate: {certs}/client.pem\n        privateKey: {certs}/client-key.pem\n        caCertificates: {certs}/ca.pem\n        sni: {SECURE}\n        subjectAltNames: [{SECURE}]\n",
                se_http("secure", SECURE, s.secure.addr.port())
            ),
        ),
        (
            "echo.yaml".into(),
            format!(
                "# A plain TCP service, reached through a CONNECT tunnel.\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [{ECHO}]\n  location: MESH_EXTERNAL\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]\n",
                s.echo.addr.port()
            ),
        ),
    ]
}

/// One HTTP response as the application sees it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
    elapsed: Duration,
}

/// `GET http://host/` through the explicit proxy (absolute-form request).
async fn get(proxy: SocketAddr, host: &str) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy).await?;
    let req = format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    // Read the head, then exactly content-length bytes: waiting for EOF would wait out
    // Envoy's delayed close of the downstream connection.
    let read = async {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if let Some(len) = len
                    && raw.len() >= end + 4 + len
                {
                    return Ok::<_, std::io::Error>(raw);
                }
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(raw);
            }
            raw.extend_from_slice(&chunk[..n]);
        }
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("no answer within 10 s")??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {head:?}"))?;
    Ok(Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
        elapsed: started.elapsed(),
    })
}

/// CONNECT `host:port` through the explicit proxy, send a line, read the echo.
async fn connect_echo(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    line: &str,
) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(proxy).await?;
    let req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .context("CONNECT: no answer")??;
        anyhow::ensure!(n == 1, "CONNECT: connection closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "CONNECT refused: {}",
        head.trim()
    );
    stream.write_all(line.as_bytes()).await?;
    let mut buf = vec![0u8; line.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .context("no echo")??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn start_standins(pki: &standins::Pki) -> anyhow::Result<StandIns> {
    Ok(StandIns {
        flaky: standins::http(Arc::new(|n| {
            if n % 3 == 2 {
                Reply::new(200, "flaky: ok")
            } else {
                Reply::new(503, "flaky: failing")
            }
        }))
        .await?,
        slow: standins::http(Arc::new(|_| {
            Reply::new(200, "slow: ok").after(Duration::from_secs(2))
        }))
        .await?,
        quotes: standins::http(Arc::new(|_| Reply::new(200, "quotes: ok"))).await?,
        inventory: standins::http(Arc::new(|_| {
            Reply::new(200, "inventory: ok").after(Duration::from_millis(500))
        }))
        .await?,
        secure: standins::tls_mutual(pki, "secure: hello over mutual TLS")?,
        echo: standins::tcp_echo().await?,
    })
}

fn row(what: &str, host: &str, result: &str, config: &str) {
    println!("{what:<16} {host:<24} {result}\n{:<41} ({config})", "");
}

/// Runs `entryway demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let signal = entryway_agent::shutdown_signal()?;
    let dir = tempfile::Builder::new()
        .prefix("entryway-demo-")
        .tempdir()?;
    let certs = dir.path().join("certs");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&certs)?;
    std::fs::create_dir_all(&config)?;

    let pki = standins::pki(SECURE)?;
    for (name, pem) in [
        ("ca.pem", &pki.ca_pem),
        ("client.pem", &pki.client_cert_pem),
        ("client-key.pem", &pki.client_key_pem),
    ] {
        std::fs::write(certs.join(name), pem)?;
    }
    let s = start_standins(&pki).await?;
    for (name, text) in config_files(&s, &certs) {
        std::fs::write(config.join(name), text)?;
    }
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let serve = ServeArgs {
        config: vec![config.clone()],
        mesh: Some(mesh),
        default_namespace: "default".into(),
        xds_address: ([127, 0, 0, 1], 0).into(),
        admin_address: ([127, 0, 0, 1], 0).into(),
        debounce_ms: 10,
        insecure_remote_xds: false,
        // The demo's sidecar talks to the control plane over loopback.
        secure_xds_address: "off".into(),
        tls_san: Vec::new(),
        state_dir: dir.path().join("state"),
        ca_dir: None,
        trust_domain: entryway_contract::DEFAULT_TRUST_DOMAIN.into(),
        workload_cert_ttl: entryway_server::ca::DEFAULT_WORKLOAD_TTL,
        max_file_bytes: entryway_server::files::DEFAULT_MAX_FILE_BYTES,
        max_withdrawal_percent: 50,
        confirm_withdrawal: false,
    };
    let cp = ControlPlane::start(&serve, stop_rx.clone()).await?;
    let explicit: SocketAddr = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        l.local_addr()?
    };
    let mut agent_config = entryway_agent::ProxyAgentConfig::from_env()?;
    agent_config.xds_address =
        entryway_agent::XdsAddress::new(cp.xds_addr.ip().to_string(), cp.xds_addr.port());
    agent_config.admin_port = 0;
    agent_config.explicit_proxy = Some(explicit);
    agent_config.work_dir = dir.path().join("proxy");
    if args.delta {
        agent_config.ads_api_type = entryway_agent::AdsApiType::DeltaGrpc;
    }
    let joined = crate::proxy::join(&agent_config, stop_rx.clone()).await?;
    let agent = match Agent::start(agent_config, joined.identity, stop_rx) {
        Ok(a) => a,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = cp.join().await;
            return Err(e);
        }
    };

    let result = report(explicit, &s, &cp, &config).await;
    if result.is_ok() {
        println!(
            "\ndone in {:.1} s. Config: {} | control plane admin: http://{}/debug/configz",
            started.elapsed().as_secs_f64(),
            config.display(),
            cp.admin_addr
        );
    }
    if result.is_ok() && args.keep_running {
        println!("still running; try  curl -x http://{explicit} http://{FLAKY}/   (Ctrl-C stops)");
        let _ = signal.await;
    }
    let _ = stop_tx.send(true);
    let agent_result = agent.join().await;
    let cp_result = cp.join().await;
    result?;
    agent_result?;
    cp_result
}

async fn report(
    proxy: SocketAddr,
    s: &StandIns,
    cp: &ControlPlane,
    config: &Path,
) -> anyhow::Result<()> {
    println!(
        "entryway demo: control plane xDS {} admin http://{}/, sidecar Envoy with explicit proxy http://{proxy}",
        cp.xds_addr, cp.admin_addr
    );
    println!(
        "config: {} (REGISTRY_ONLY); stand-ins on 127.0.0.1\n",
        config.display()
    );
    // Ready when the sidecar routes by its ServiceEntries: the quotes service answers
    // (possibly with an injected fault) and an unknown host is refused.
    let waiting = Instant::now();
    let deadline = waiting + Duration::from_secs(30);
    loop {
        let unknown = get(proxy, UNKNOWN).await.ok().map(|a| a.status);
        let known = get(proxy, QUOTES).await.ok().map(|a| a.status);
        if unknown == Some(502) && matches!(known, Some(200 | 503)) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sidecar did not become ready within 30 s (unknown host: {unknown:?}, {QUOTES}: {known:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "sidecar ready (routes and endpoints pushed) after {:.2} s\n",
        waiting.elapsed().as_secs_f64()
    );

    // Retries.
    let before = s.flaky.hits();
    let mut ok = 0;
    for _ in 0..10 {
        if get(proxy, FLAKY).await?.status == 200 {
            ok += 1;
        }
    }
    row(
        "retries",
        FLAKY,
        &format!(
            "10 requests -> {ok} x 200; the API saw {} attempts (it fails 2 of every 3)",
            s.flaky.hits() - before
        ),
        "VirtualService retries: attempts 3, retryOn 5xx",
    );

    // Timeout.
    let answers = get_concurrent(proxy, SLOW, 3).await;
    let mut timed_out = 0;
    let mut slowest = Duration::ZERO;
    for a in answers {
        let a = a?;
        if a.status == 504 {
            timed_out += 1;
        }
        slowest = slowest.max(a.elapsed);
    }
    row(
        "timeout",
        SLOW,
        &format!(
            "3 requests -> {timed_out} x 504 after at most {:.2} s; the API takes 2 s",
            slowest.as_secs_f64()
        ),
        "VirtualService timeout: 0.5s",
    );

    // Fault injection.
    let mut injected = 0;
    let mut passed = 0;
    let before = s.quotes.hits();
    for _ in 0..FAULT_SAMPLES {
        let a = get(proxy, QUOTES).await?;
        match a.status {
            503 if a.body.contains("fault filter abort") => injected += 1,
            200 => passed += 1,
            _ => {}
        }
    }
    row(
        "fault injection",
        QUOTES,
        &format!(
            "{FAULT_SAMPLES} requests -> {injected} x 503 injected, {passed} x 200; the API saw {}",
            s.quotes.hits() - before
        ),
        "VirtualService fault.abort: 30%, httpStatus 503",
    );

    // Circuit breaker.
    let answers = get_concurrent(proxy, INVENTORY, BREAKER_LOAD).await;
    let (mut ok, mut overflow, mut other) = (0, 0, 0);
    for a in answers {
        match a {
            Ok(a) if a.status == 200 => ok += 1,
            Ok(a) if a.status == 503 && a.headers.contains("x-envoy-overloaded") => overflow += 1,
            _ => other += 1,
        }
    }
    row(
        "circuit breaker",
        INVENTORY,
        &format!(
            "{BREAKER_LOAD} concurrent -> {ok} x 200, {overflow} x 503 overflow (x-envoy-overloaded){}",
            if other > 0 {
                format!(", {other} other")
            } else {
                String::new()
            }
        ),
        "DestinationRule connectionPool: maxConnections 1, http1MaxPendingRequests 1",
    );

    // TLS origination.
    let before = s.secure.hits();
    let a = get(proxy, SECURE).await?;
    row(
        "TLS origination",
        SECURE,
        &format!(
            "plain HTTP -> {} {:?}; the server got {} request(s) over mutual TLS",
            a.status,
            a.body.trim(),
            s.secure.hits() - before
        ),
        "DestinationRule tls: MUTUAL, client cert + CA via the agent's SDS, SAN checked",
    );

    // TCP through CONNECT.
    let echoed = connect_echo(proxy, ECHO, 9000, "hello\n").await;
    row(
        "TCP",
        &format!("{ECHO}:9000"),
        &match echoed {
            Ok(e) => format!(
                "CONNECT tunnel -> echoed {:?} ({} connection(s) at the server)",
                e.trim(),
                s.echo.hits()
            ),
            Err(e) => format!("failed: {e:#}"),
        },
        "ServiceEntry TCP port 9000, STATIC endpoint",
    );

    // Blocked.
    let a = get(proxy, UNKNOWN).await?;
    row(
        "blocked",
        UNKNOWN,
        &format!("-> {} (no ServiceEntry)", a.status),
        "mesh outboundTrafficPolicy: REGISTRY_ONLY",
    );
    Ok(())
}

/// `n` concurrent `GET http://host/` through the proxy, in order.
async fn get_concurrent(
    proxy: SocketAddr,
    host: &'static str,
    n: usize,
) -> Vec<anyhow::Result<Answer>> {
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(get(proxy, host))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.map_err(anyhow::Error::from).and_then(|r| r));
    }
    out
}
