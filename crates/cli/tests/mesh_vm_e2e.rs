//! Machines joining the mesh (issue 9), end to end, with real processes, real Envoy and three
//! hosts that are three network namespaces on one bridge ([`Lan`]):
//!
//! ```text
//! cp  10.77.0.1   entryway serve (secure port 10.77.0.1:15012, plaintext 15010 on loopback)
//! a   10.77.0.2   entryway proxy --join-dir A --capture --dns-capture; curl (the client app)
//! b   10.77.0.3   entryway proxy --join-dir B --capture --inbound-ports '*'; an HTTP server
//!                 on :8080 (the server app), a WorkloadEntry of a MESH_INTERNAL ServiceEntry
//! ```
//!
//! Checked: A's unmodified `curl http://b.shop.mesh/` resolves (the agent's own name-table
//! stream to the control plane on another host is not captured by its own rules, under
//! REGISTRY_ONLY), the bytes between the hosts are TLS (tcpdump on B's link shows a TLS
//! handshake and no plaintext HTTP), B's application sees A's SPIFFE identity in
//! `x-forwarded-client-cert`, the VirtualService (header set, route to a DestinationRule
//! subset) applies; PERMISSIVE lets a client without a mesh certificate through in plain
//! text, STRICT does not; a bad token, no credential, a certificate of another CA and a
//! namespace claim that is not the caller's are refused on 15012 (and shown in
//! `/debug/syncz`); 15010 is not reachable from another host; no private key appears in any
//! log, debug endpoint or Envoy config dump.
//!
//! Needs root, `ip`, `iptables`, `curl` and `tcpdump` (CI installs them); Envoy from
//! `ENVOY_BIN`. Every wait is a bounded poll.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use entryway_agent::XdsAddress;
use entryway_agent::mesh::{CertificateClient, ControlPlane};
use entryway_agent::sds::{MeshIdentity, fixed_identity};
use entryway_contract::SpiffeId;
use entryway_testkit::mesh::{A, B, B_BODY, CP, MeshOptions, ThreeHosts, WAIT, admin, curl, in_ns};
use entryway_testkit::netns::{Lan, Netns};
use entryway_testkit::{Spawned, eventually_ok};

fn entryway() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_entryway"))
}

/// Runs an async block on a current-thread runtime inside `ns`.
fn in_ns_async<T: Send, F: std::future::Future<Output = T>>(
    ns: &Netns,
    f: impl FnOnce() -> F + Send,
) -> T {
    in_ns(ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
}

const STRICT: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
"#;

fn start(options: MeshOptions) -> ThreeHosts {
    ThreeHosts::start(&entryway(), options, tempfile::tempdir().expect("tmp"))
}

/// Starts tcpdump on B's link; returns it and its output file.
fn tcpdump_on_b(m: &ThreeHosts) -> Spawned {
    let port = Lan::port_of(B);
    Spawned::in_netns(
        &m.lan.switch,
        Path::new("tcpdump"),
        &[
            "-i", &port, "-l", "-n", "-X", "-s", "0", "tcp", "port", "8080",
        ],
        &[],
        m.path("tcpdump.log"),
    )
    .unwrap_or_else(|e| panic!("tcpdump: {e} (apt-get install -y tcpdump)"))
}

#[test]
fn vms_join_the_mesh_with_mutual_tls() {
    let mut m = start(MeshOptions::default());
    let url = "http://b.shop.mesh/hello";

    // A's application calls B by name: resolved by A's DNS proxy (its name table came over
    // the agent's own, uncaptured, stream to the control plane on another host).
    let mut dump = tcpdump_on_b(&m);
    std::thread::sleep(Duration::from_millis(300)); // tcpdump attaches
    let (code, body, err) = eventually_ok(WAIT, || {
        let r = curl(&m.lan.hosts[A], &[url]);
        if r.0 == 0 && r.1 == B_BODY {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .unwrap_or_else(|e| {
        panic!(
            "A never reached B: {e}\n--- a ---\n{}\n--- b ---\n{}\n--- cp ---\n{}",
            m.a.log(),
            m.b.log(),
            m.cp.log()
        )
    });
    assert_eq!((code, body.as_str()), (0, B_BODY), "{err}");

    // B's application saw A's identity, forwarded by B's sidecar, and the route's header.
    let req = m
        .upstream
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/hello")
        .expect("request at b");
    let xfcc = req
        .header("x-forwarded-client-cert")
        .unwrap_or_default()
        .to_string();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/client/sa/a-sa")
            && xfcc.contains("By=spiffe://cluster.local/ns/shop/sa/b-sa"),
        "x-forwarded-client-cert: {xfcc:?}"
    );
    assert_eq!(req.header("x-route"), Some("via-virtual-service"));
    eprintln!("x-forwarded-client-cert at B: {xfcc}");

    // The bytes between the hosts: a TLS handshake, no plaintext HTTP.
    std::thread::sleep(Duration::from_millis(300));
    dump.terminate();
    let captured = dump.log();
    assert!(
        captured.contains("10.77.0.3.8080"),
        "nothing captured: {captured}"
    );
    assert!(
        !captured.contains("GET /hello") && !captured.contains("x-route"),
        "plaintext HTTP on the wire:\n{captured}"
    );
    assert!(
        captured.contains("1603 01") || captured.contains("1603 03"),
        "no TLS record on the wire:\n{captured}"
    );

    // PERMISSIVE (the default): a client without a mesh certificate gets through, in plain
    // text, to B's port (the cp host has no sidecar).
    let plain = format!("http://{}:8080/plain", Lan::addr(B));
    let (code, body, err) = curl(&m.lan.hosts[CP], &[&plain]);
    assert_eq!(
        (code, body.as_str()),
        (0, B_BODY),
        "PERMISSIVE plain text: {err}"
    );
    let plain_req = m
        .upstream
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/plain")
        .expect("plain request at b");
    assert_eq!(plain_req.header("x-forwarded-client-cert"), None);

    // STRICT: the plain client is refused; the mesh client still passes.
    std::fs::write(m.path("cfg/strict.yaml"), STRICT).expect("write STRICT");
    eventually_ok(WAIT, || {
        let r = curl(&m.lan.hosts[CP], &[&plain]);
        if r.0 != 0 {
            Ok(())
        } else {
            Err(format!("still served: {r:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("STRICT not applied: {e}\n{}", m.b.log()));
    let (code, body, err) = curl(&m.lan.hosts[A], &[url]);
    assert_eq!(
        (code, body.as_str()),
        (0, B_BODY),
        "mesh client under STRICT: {err}"
    );

    // The server's identity is verified: a DestinationRule that expects another one makes
    // A refuse B's certificate.
    let config = entryway_testkit::mesh::CONFIG;
    let istio_mutual = "trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}";
    assert!(config.contains(istio_mutual));
    std::fs::write(
        m.path("cfg/b.yaml"),
        config.replace(
            istio_mutual,
            "trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/someone-else]}}",
        ),
    )
    .expect("write");
    eventually_ok(WAIT, || {
        let r = curl(
            &m.lan.hosts[A],
            &["-o", "/dev/null", "-w", "%{http_code}", url],
        );
        if r.1 == "503" {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("a certificate of the wrong identity was accepted: {e}"));

    // Istio's auto-mTLS (no TLS in the DestinationRule): B's endpoint has a service account,
    // so A uses mutual TLS on its own, and STRICT B accepts it.
    let auto_config = config.replace(&format!("  {istio_mutual}\n"), "");
    assert!(!auto_config.contains("tls:"), "{auto_config}");
    std::fs::write(m.path("cfg/b.yaml"), auto_config).expect("write");
    eventually_ok(WAIT, || {
        let r = curl(&m.lan.hosts[A], &["http://b.shop.mesh/auto"]);
        if r.0 == 0 && r.1 == B_BODY {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("auto-mTLS under STRICT: {e}\n{}", m.a.log()));
    let auto = m
        .upstream
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/auto")
        .expect("auto request at b");
    assert!(
        auto.header("x-forwarded-client-cert")
            .is_some_and(|x| x.contains("URI=spiffe://cluster.local/ns/client/sa/a-sa")),
        "auto-mTLS carried A's identity: {:?}",
        auto.header("x-forwarded-client-cert")
    );

    refusals(&m);
    no_private_keys(&m);

    for p in [&mut m.a, &mut m.b, &mut m.cp] {
        let status = p.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "exit: {status:?}\n{}",
            p.log()
        );
    }
}

/// Bad or missing credentials and foreign identities get nothing on 15012; 15010 is not
/// reachable from another host.
fn refusals(m: &ThreeHosts) {
    let root = std::fs::read_to_string(m.path("join-a/root-cert.pem")).expect("root");
    let secure = XdsAddress::new(Lan::addr(CP).to_string(), 15012);
    let a_id = SpiffeId::new("cluster.local", "client", "a-sa");
    let bad_token = m.path("bad-token");
    std::fs::write(&bad_token, "ew1.eyJucyI6InNob3AifQ.AAAA").expect("write");
    let revoked_token = m.path("revoked-token");
    let out = std::process::Command::new(entryway())
        .args([
            "token",
            "create",
            "-n",
            "client",
            "--service-account",
            "a-sa",
            "--state-dir",
        ])
        .arg(m.path("state"))
        .output()
        .expect("token create");
    std::fs::write(&revoked_token, &out.stdout).expect("write");
    let out = std::process::Command::new(entryway())
        .args(["token", "revoke", "--state-dir"])
        .arg(m.path("state"))
        .arg(String::from_utf8_lossy(&out.stdout).trim())
        .output()
        .expect("token revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let results = in_ns_async(&m.lan.hosts[A], || async {
        let cp = ControlPlane::secure(secure.clone(), &root, "istiod.istio-system.svc", None)
            .expect("control plane");
        let mut out = Vec::new();
        for (what, token) in [("bad token", &bad_token), ("revoked token", &revoked_token)] {
            let r = CertificateClient::new(cp.clone(), Some(token.clone()), a_id.clone(), None)
                .request(None)
                .await;
            out.push((what, r.map(|_| ()).map_err(|e| e.to_string())));
        }
        // A certificate from another CA: the TLS handshake fails.
        let foreign = MeshIdentity::self_signed("cluster.local", "client", "a-sa").expect("id");
        let r = CertificateClient::new(
            cp.with_identity(Some(fixed_identity(foreign))),
            None,
            a_id.clone(),
            None,
        )
        .request(Some(fixed_identity(
            MeshIdentity::self_signed("cluster.local", "client", "a-sa").expect("id"),
        )))
        .await;
        out.push((
            "foreign certificate",
            r.map(|_| ()).map_err(|e| e.to_string()),
        ));
        // xDS with no credential at all.
        out.push(("no credential", ads_first_response(&cp, "client").await));
        // From another host, past A's own capture (marked as the agent's connections are):
        // the plaintext port listens on the control plane's loopback only.
        out.push(("plaintext port from another host", {
            tokio::time::timeout(
                Duration::from_secs(2),
                entryway_agent::net::marked_tcp(SocketAddr::from((Lan::addr(CP), 15010))),
            )
            .await
            .map_err(|_| "timeout".to_string())
            .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()))
        }));
        out
    });
    for (what, r) in &results {
        assert!(r.is_err(), "{what} was accepted");
    }
    let reason = |what: &str| {
        results
            .iter()
            .find(|(w, _)| *w == what)
            .and_then(|(_, r)| r.clone().err())
            .unwrap_or_default()
    };
    assert!(
        reason("bad token").contains("does not verify")
            || reason("bad token").contains("malformed"),
        "{}",
        reason("bad token")
    );
    assert!(
        reason("revoked token").contains("revoked"),
        "{}",
        reason("revoked token")
    );
    assert!(
        reason("no credential").contains("authenticate"),
        "{}",
        reason("no credential")
    );

    // A valid identity of namespace client claiming namespace shop: refused by name.
    let claims = in_ns_async(&m.lan.hosts[A], || async {
        let cp = ControlPlane::secure(secure.clone(), &root, "istiod.istio-system.svc", None)
            .expect("control plane");
        let good = m.path("join-a/istio-token");
        let id = CertificateClient::new(cp.clone(), Some(good), a_id.clone(), None)
            .request(None)
            .await
            .expect("a valid join token signs");
        ads_first_response(&cp.with_identity(Some(fixed_identity(id))), "shop").await
    });
    let e = claims.expect_err("namespace claim refused");
    assert!(
        e.contains("authorization failed") && e.contains("shop"),
        "{e}"
    );

    let syncz = admin(&m.lan.hosts[CP], 15014, "/debug/syncz");
    for needle in [
        "\"refused\"",
        "revoked",
        "authorization failed",
        "request authenticate failure",
    ] {
        assert!(
            syncz.contains(needle),
            "/debug/syncz lacks {needle}: {syncz}"
        );
    }
    // The refusals disturbed nobody: A still reaches B.
    let (code, body, err) = curl(&m.lan.hosts[A], &["http://b.shop.mesh/after"]);
    assert_eq!((code, body.as_str()), (0, B_BODY), "after refusals: {err}");
}

/// Opens an ADS stream as a proxy of `namespace` and returns the first response or the
/// stream's error.
async fn ads_first_response(cp: &ControlPlane, namespace: &str) -> Result<(), String> {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let node = entryway_agent::nds::node(
        &format!("sidecar~10.77.0.2~probe.{namespace}~{namespace}.svc.cluster.local"),
        &[("NAMESPACE".to_string(), namespace.to_string())].into(),
    );
    let mut client = AggregatedDiscoveryServiceClient::new(cp.channel());
    let req = DiscoveryRequest {
        node: Some(node),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..Default::default()
    };
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::iter(vec![req]))
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err("stream closed".into()),
        Ok(Err(s)) => Err(s.to_string()),
        Err(_) => Err("no response".into()),
    }
}

/// No private key (the CA's, either workload's) in any log, debug endpoint or config dump.
fn no_private_keys(m: &ThreeHosts) {
    // The workload keys as Envoy got them, straight from each agent's SDS socket.
    let mut keys = vec![std::fs::read_to_string(m.path("state/ca/ca-key.pem")).expect("CA key")];
    for work in ["work-a", "work-b"] {
        keys.push(sds_key(&m.path(&format!("{work}/sds.sock"))));
    }
    // The lines of base64 inside each key.
    let secrets: Vec<String> = keys
        .iter()
        .flat_map(|k| {
            k.lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 20)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(secrets.len() >= 3, "key material found: {}", secrets.len());
    let mut haystacks = vec![
        ("cp log", m.cp.log()),
        ("a log", m.a.log()),
        ("b log", m.b.log()),
    ];
    for path in [
        "/debug/syncz",
        "/debug/configz",
        "/debug/registryz",
        "/metrics",
    ] {
        haystacks.push((path, admin(&m.lan.hosts[CP], 15014, path)));
    }
    for (name, host) in [("a", A), ("b", B)] {
        haystacks.push((
            name,
            admin(&m.lan.hosts[host], 15000, "/config_dump?include_eds"),
        ));
    }
    for (what, text) in &haystacks {
        assert!(!text.is_empty() || what.ends_with("log"), "{what} is empty");
        assert!(
            !text.contains("PRIVATE KEY"),
            "{what} contains a PEM private key"
        );
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} contains private key material"
            );
        }
    }
}

/// The `default` secret's private key, fetched from an agent's SDS socket as Envoy would.
fn sds_key(socket: &Path) -> String {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
    use prost::Message;
    let socket = socket.to_path_buf();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let channel = tonic::transport::Endpoint::from_static("http://sds")
                .connect_with_connector(tower::service_fn(move |_| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(socket).await?,
                        ))
                    }
                }))
                .await
                .expect("sds socket");
            let resp = SecretDiscoveryServiceClient::new(channel)
                .fetch_secrets(DiscoveryRequest {
                    resource_names: vec!["default".into()],
                    ..Default::default()
                })
                .await
                .expect("fetch default")
                .into_inner();
            let secret = Secret::decode(resp.resources[0].value.as_slice()).expect("secret");
            let Some(secret::Type::TlsCertificate(c)) = secret.r#type else {
                panic!("not a certificate");
            };
            let Some(
                envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b),
            ) = c.private_key.and_then(|k| k.specifier)
            else {
                panic!("no inline key");
            };
            String::from_utf8_lossy(&b).into_owned()
        })
}

/// Istio's plug-in CA made with openssl as Istio's `tools/certs` does: a root, an
/// intermediate it signs (the signing CA), and the chain.
fn plugin_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("cacerts");
    std::fs::create_dir_all(&ca).expect("cacerts");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(&ca)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e} (apt-get install -y openssl)"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "root-key.pem",
        "-out",
        "root-cert.pem",
        "-days",
        "30",
        "-subj",
        "/O=Istio/CN=Root CA",
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.csr",
        "-subj",
        "/O=Istio/CN=Intermediate CA",
    ]);
    std::fs::write(
        ca.join("ext.cnf"),
        "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n",
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "ca.csr",
        "-CA",
        "root-cert.pem",
        "-CAkey",
        "root-key.pem",
        "-CAcreateserial",
        "-out",
        "ca-cert.pem",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
    ]);
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(ca.join("ca-cert.pem")).expect("ca-cert"),
        std::fs::read_to_string(ca.join("root-cert.pem")).expect("root-cert")
    );
    std::fs::write(ca.join("cert-chain.pem"), chain).expect("chain");
    ca
}

/// Requests from A to B every 50 ms on a thread until told to stop: (sent, failures).
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Traffic {
    fn start(a: &Netns) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let name = a.name().to_string();
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            let mut failures = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &name,
                        "curl",
                        "-sS",
                        "-m",
                        "5",
                        "http://b.shop.mesh/traffic",
                    ])
                    .output();
                sent += 1;
                match out {
                    Ok(o) if o.status.success() && o.stdout == B_BODY.as_bytes() => {}
                    Ok(o) => failures.push(format!(
                        "{}: {} {}",
                        sent,
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )),
                    Err(e) => failures.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (sent, failures)
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

#[test]
fn certificates_rotate_under_traffic_and_survive_a_restart_with_a_plugin_ca() {
    let dir = tempfile::tempdir().expect("tmp");
    let options = MeshOptions {
        ca_dir: Some(plugin_ca(dir.path())),
        // Rotation at half of it: a new certificate every ~3 s per workload.
        cert_ttl: Some("6s".into()),
        ..MeshOptions::default()
    };
    let mut m = ThreeHosts::start(&entryway(), options, dir);
    m.wait_a_reaches_b("/first");
    // The workload certificates chain to the plug-in root through its intermediate.
    let root = std::fs::read_to_string(m.path("cacerts/root-cert.pem")).expect("root");
    assert_eq!(
        std::fs::read_to_string(m.path("join-a/root-cert.pem")).expect("joined root"),
        root,
        "the join directory carries the plug-in root"
    );

    let traffic = Traffic::start(&m.lan.hosts[A]);
    std::thread::sleep(Duration::from_secs(8));
    // A control-plane restart with the CA from files, while traffic flows.
    m.restart_control_plane("cp2.log");
    std::thread::sleep(Duration::from_secs(8));
    let (sent, failures) = traffic.finish();
    assert!(sent > 100, "only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}\n--- a ---\n{}\n--- b ---\n{}",
        failures.len(),
        m.a.log(),
        m.b.log()
    );
    // Each workload rotated its certificate several times, before and after the restart.
    for (name, p) in [("a", &m.a), ("b", &m.b)] {
        let rotations = p.log().matches("rotated the workload certificate").count();
        assert!(
            rotations >= 4,
            "{name} rotated {rotations} times\n{}",
            p.log()
        );
        eprintln!("{name}: {rotations} rotations during {sent} requests, none failed");
    }
    let signed_after_restart = m.cp.log().matches("signed a workload certificate").count();
    assert!(
        signed_after_restart >= 2,
        "the restarted control plane signed {signed_after_restart}\n{}",
        m.cp.log()
    );
    // Both proxies are connected again (and their streams authenticated by certificate).
    let syncz = admin(&m.lan.hosts[CP], 15014, "/debug/syncz");
    for id in [
        "spiffe://cluster.local/ns/client/sa/a-sa",
        "spiffe://cluster.local/ns/shop/sa/b-sa",
    ] {
        assert!(
            syncz.contains(id),
            "{id} not connected after the restart: {syncz}"
        );
    }
    for p in [&mut m.a, &mut m.b, &mut m.cp] {
        let status = p.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "exit: {status:?}\n{}",
            p.log()
        );
    }
}
