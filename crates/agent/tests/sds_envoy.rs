//! The agent's SDS server against real Envoy (and an in-process gRPC client).
//!
//! Envoy gets a static bootstrap with the `sds-grpc` cluster to the server's Unix socket and
//! static clusters whose upstream TLS contexts name SDS secrets the way the generated
//! clusters do (`file-root:<path>`, `file-root:system`, `file-cert:<cert>~<key>`, `default`
//! and `ROOTCA`), every one with `initial_fetch_timeout: 0s` (wait forever): Envoy reaching
//! `LIVE` proves every secret arrived. Traffic goes through `tcp_proxy` listeners to small
//! rustls servers in this process, so TLS origination is checked end to end: the right CA
//! passes, a wrong CA fails verification, and the mesh identity works for mutual TLS.
//!
//! Waiting is bounded polling ([`EnvoyProcess::wait_for`], `poll::eventually`), never sleeps.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use entryway_agent::bootstrap::{BootstrapOptions, SDS_CLUSTER_NAME, socket_address};
use entryway_agent::sds::{MeshIdentity, SdsHandle, SdsOptions, SdsServer};
use entryway_testkit::{EnvoyHarness, EnvoyProcess, poll};
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use prost::Message;
use rcgen::{CertificateParams, CertifiedIssuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(20);
const MESH_SERVER_ID: &str = "spiffe://cluster.local/ns/test/sa/server";
const WORKLOAD_ID: &str = "spiffe://cluster.local/ns/test/sa/default";

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// A throw-away CA.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and key issued by a [`TestCa`].
struct Leaf {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    key_der: Vec<u8>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn issue(&self, sans: Vec<SanType>) -> Leaf {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn uri(id: &str) -> SanType {
    SanType::URI(id.try_into().unwrap())
}

// ---------------------------------------------------------------------------------------
// A small TLS server (rustls, one thread): after the handshake it writes a greeting that
// says how many client certificates it verified, then closes.
// ---------------------------------------------------------------------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_server(name: &'static str, leaf: &Leaf, client_ca: Option<&TestCa>) -> SocketAddr {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = Arc::new(
        builder
            .with_single_cert(
                vec![leaf.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut handshake = Ok(());
            while tls.conn.is_handshaking() && handshake.is_ok() {
                handshake = tls.conn.complete_io(&mut tls.sock).map(|_| ());
            }
            if handshake.is_err() {
                continue; // e.g. Envoy rejected our certificate: the client sees a close
            }
            let client_certs = tls.conn.peer_certificates().map_or(0, <[_]>::len);
            let _ = writeln!(tls, "hello from {name}; client certs {client_certs}");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------
// Envoy configuration
// ---------------------------------------------------------------------------------------

/// An `SdsSecretConfig` to `sds-grpc` as the generator writes it, waiting forever.
fn sds(name: &str) -> Value {
    json!({
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [ { "envoy_grpc": { "cluster_name": SDS_CLUSTER_NAME } } ],
            },
            "resource_api_version": "V3",
            "initial_fetch_timeout": "0s",
        },
    })
}

/// A static cluster to `endpoint` originating TLS with SNI `sni`, trusting the SDS secret
/// `root`, presenting the SDS secret `cert` if any, and requiring `san` if any (as the
/// generator's combined validation context does).
fn tls_cluster(
    name: &str,
    endpoint: SocketAddr,
    sni: &str,
    root: &str,
    cert: Option<&str>,
    san: Option<&str>,
) -> Value {
    let mut common = json!({});
    let default_validation = match san {
        Some(san) => json!({ "match_typed_subject_alt_names": [ {
            "san_type": "URI", "matcher": { "exact": san }
        } ] }),
        None => json!({}),
    };
    common["combined_validation_context"] = json!({
        "default_validation_context": default_validation,
        "validation_context_sds_secret_config": sds(root),
    });
    if let Some(cert) = cert {
        common["tls_certificate_sds_secret_configs"] = json!([sds(cert)]);
    }
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [ { "lb_endpoints": [ {
                "endpoint": { "address": socket_address(&endpoint.ip().to_string(), endpoint.port()) }
            } ] } ],
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": sni,
                "common_tls_context": common,
            },
        },
    })
}

/// A `tcp_proxy` listener `name` on a kernel-chosen loopback port to `cluster`.
fn tcp_listener(name: &str, cluster: &str) -> Value {
    json!({
        "name": name,
        "address": socket_address("127.0.0.1", 0),
        "enable_reuse_port": false,
        "filter_chains": [ { "filters": [ {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": name,
                "cluster": cluster,
            },
        } ] } ],
    })
}

/// Connects to `addr` and reads until the peer closes.
fn read_all(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn server_state(envoy: &EnvoyProcess) -> String {
    envoy.server_info().unwrap()["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `SecretsConfigDump` of `config_dump`.
fn secrets_dump(envoy: &EnvoyProcess) -> Value {
    let dump = envoy.config_dump().unwrap();
    dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("SecretsConfigDump"))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

fn secret_names(dump: &Value, list: &str) -> Vec<String> {
    let mut names: Vec<String> = dump[list]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_sds(rt: &tokio::runtime::Runtime, socket: PathBuf, identity: MeshIdentity) -> SdsHandle {
    let _guard = rt.enter();
    SdsServer::start_with(
        socket,
        identity,
        SdsOptions {
            refresh_interval: Duration::from_millis(100),
            ..SdsOptions::default()
        },
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn envoy_gets_file_and_mesh_secrets_and_originates_tls_with_them() {
    let harness = EnvoyHarness::require();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The CA an origination target uses, and an unrelated one.
    let web_ca = TestCa::new("web ca");
    let other_ca = TestCa::new("other ca");
    write(&d.join("web-ca.pem"), &web_ca.pem());
    write(&d.join("other-ca.pem"), &other_ca.pem());
    // The mesh: a CA standing in for the shared one, the workload identity it issues, a
    // mesh server, and a client certificate in files for file-cert:.
    let mesh_ca = TestCa::new("mesh ca");
    let workload = mesh_ca.issue(vec![uri(WORKLOAD_ID)]);
    let identity = MeshIdentity::from_pem(
        WORKLOAD_ID,
        &workload.cert_pem,
        &workload.key_pem,
        mesh_ca.pem(),
    )
    .unwrap();
    let file_client = mesh_ca.issue(vec![uri("spiffe://cluster.local/ns/test/sa/files")]);
    write(&d.join("client.pem"), &file_client.cert_pem);
    write(&d.join("client-key.pem"), &file_client.key_pem);

    let web = tls_server("web", &web_ca.issue(vec![dns("web.example.com")]), None);
    let mesh = tls_server(
        "mesh",
        &mesh_ca.issue(vec![uri(MESH_SERVER_ID)]),
        Some(&mesh_ca),
    );

    let rt = runtime();
    let sds = start_sds(&rt, d.join("sds.sock"), identity);

    let file_root = format!("file-root:{}", d.join("web-ca.pem").display());
    let wrong_root = format!("file-root:{}", d.join("other-ca.pem").display());
    let file_cert = format!(
        "file-cert:{}~{}",
        d.join("client.pem").display(),
        d.join("client-key.pem").display()
    );
    let bootstrap = BootstrapOptions::new("sds-test", "sds-test")
        .with_admin_port(0)
        .with_sds_socket(sds.socket_path())
        .with_static_cluster(tls_cluster(
            "web-file-root",
            web,
            "web.example.com",
            &file_root,
            None,
            None,
        ))
        .with_static_cluster(tls_cluster(
            "web-wrong-ca",
            web,
            "web.example.com",
            &wrong_root,
            None,
            None,
        ))
        .with_static_cluster(tls_cluster(
            "mesh-mtls",
            mesh,
            "mesh.test.svc.cluster.local",
            "ROOTCA",
            Some("default"),
            Some(MESH_SERVER_ID),
        ))
        .with_static_cluster(tls_cluster(
            "mesh-file-cert",
            mesh,
            "mesh",
            "ROOTCA",
            Some(&file_cert),
            Some(MESH_SERVER_ID),
        ))
        .with_static_cluster(tls_cluster(
            "system-roots",
            web,
            "web.example.com",
            "file-root:system",
            None,
            None,
        ))
        .with_static_listener(tcp_listener("to-web", "web-file-root"))
        .with_static_listener(tcp_listener("to-web-wrong-ca", "web-wrong-ca"))
        .with_static_listener(tcp_listener("to-mesh", "mesh-mtls"))
        .with_static_listener(tcp_listener("to-mesh-file-cert", "mesh-file-cert"))
        .with_static_listener(tcp_listener("to-web-system-roots", "system-roots"));
    let started = Instant::now();
    let envoy = harness.start(&bootstrap.render()).unwrap();

    // Every secret waits forever (initial_fetch_timeout 0s): LIVE means all arrived and the
    // static clusters finished initialising.
    envoy
        .wait_for("Envoy LIVE with every SDS secret", WAIT, |e| {
            let state = server_state(e);
            if state == "LIVE" {
                Ok(())
            } else {
                Err(entryway_testkit::envoy::HarnessError::Io {
                    context: format!("server state {state}"),
                    source: std::io::Error::other("not LIVE"),
                })
            }
        })
        .unwrap();
    eprintln!(
        "Envoy LIVE with 6 SDS secrets {} ms after start",
        started.elapsed().as_millis()
    );
    let dump = secrets_dump(&envoy);
    let mut expected = vec![
        "ROOTCA".to_owned(),
        "default".to_owned(),
        "file-root:system".to_owned(),
        file_cert.clone(),
        file_root.clone(),
        wrong_root.clone(),
    ];
    expected.sort();
    assert_eq!(secret_names(&dump, "dynamic_active_secrets"), expected);
    assert!(
        secret_names(&dump, "dynamic_warming_secrets").is_empty(),
        "{dump:#}"
    );
    for s in dump["dynamic_active_secrets"].as_array().unwrap() {
        assert!(
            !s["version_info"].as_str().unwrap_or_default().is_empty(),
            "{s:#}"
        );
    }
    // The static clusters are initialised (Envoy lists them with their host).
    let clusters = envoy.clusters().unwrap();
    for name in [
        "web-file-root",
        "web-wrong-ca",
        "mesh-mtls",
        "mesh-file-cert",
        "system-roots",
    ] {
        assert!(
            clusters["cluster_statuses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == name && c["host_statuses"].as_array().is_some()),
            "{name} missing from /clusters"
        );
    }

    // TLS origination with the CA from file-root: verifies the server.
    let to_web = envoy.wait_listener("to-web", WAIT).unwrap();
    assert_eq!(read_all(to_web), "hello from web; client certs 0\n");
    assert_eq!(
        envoy.stat("cluster.web-file-root.ssl.handshake").unwrap(),
        Some(1)
    );

    // A wrong CA: the handshake fails verification and nothing reaches the client.
    let to_wrong = envoy.wait_listener("to-web-wrong-ca", WAIT).unwrap();
    assert_eq!(read_all(to_wrong), "");
    let fails = envoy
        .wait_for("a verification failure on web-wrong-ca", WAIT, |e| match e
            .stat("cluster.web-wrong-ca.ssl.fail_verify_error")?
        {
            Some(n) if n > 0 => Ok(n),
            other => Err(entryway_testkit::envoy::HarnessError::Io {
                context: format!("fail_verify_error {other:?}"),
                source: std::io::Error::other("no failure yet"),
            }),
        })
        .unwrap();
    assert_eq!(fails, 1);

    // The system roots do not include our test CA either.
    let to_system = envoy.wait_listener("to-web-system-roots", WAIT).unwrap();
    assert_eq!(read_all(to_system), "");

    // Mutual TLS with the mesh identity (default + ROOTCA): the server verified our
    // certificate, we verified its SPIFFE id against ROOTCA.
    let to_mesh = envoy.wait_listener("to-mesh", WAIT).unwrap();
    assert_eq!(read_all(to_mesh), "hello from mesh; client certs 1\n");
    // And with a client certificate from files (DestinationRule MUTUAL).
    let to_mesh_files = envoy.wait_listener("to-mesh-file-cert", WAIT).unwrap();
    assert_eq!(read_all(to_mesh_files), "hello from mesh; client certs 1\n");

    let stats = sds.stats();
    eprintln!("SDS server: {stats:?}");
    assert!(stats.streams >= 1, "{stats:?}");
    assert!(stats.responses >= 6, "{stats:?}");
    // Envoy opens a stream per secret here; each got exactly one response: ACKs and the
    // refreshes of unchanged files sent nothing more.
    assert_eq!(stats.responses, stats.streams, "{stats:?}");
    assert_eq!(stats.nacks, 0, "{stats:?}");
    assert_eq!(stats.unservable, 0, "{stats:?}");

    envoy.shutdown().unwrap();
    rt.block_on(sds.shutdown()).unwrap();
}

#[test]
fn a_missing_file_keeps_envoy_waiting_until_it_appears_and_a_rewrite_is_re_served() {
    let harness = EnvoyHarness::require();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let web_ca = TestCa::new("web ca");
    let other_ca = TestCa::new("other ca");
    let web = tls_server("web", &web_ca.issue(vec![dns("web.example.com")]), None);
    let ca_file = d.join("late-ca.pem");

    let rt = runtime();
    let identity = MeshIdentity::self_signed("cluster.local", "test", "default").unwrap();
    let sds = start_sds(&rt, d.join("sds.sock"), identity);
    let root = format!("file-root:{}", ca_file.display());
    let bootstrap = BootstrapOptions::new("sds-test", "sds-test")
        .with_admin_port(0)
        .with_sds_socket(sds.socket_path())
        .with_static_cluster(tls_cluster(
            "web",
            web,
            "web.example.com",
            &root,
            None,
            None,
        ))
        .with_static_listener(tcp_listener("to-web", "web"));
    let envoy = harness.start(&bootstrap.render()).unwrap();

    // The server saw the request and could not serve it; Envoy waits for the secret.
    poll::eventually(WAIT, || (sds.stats().unservable >= 1).then_some(())).unwrap();
    envoy
        .wait_for("the secret listed as warming", WAIT, |e| {
            let names = secret_names(&secrets_dump(e), "dynamic_warming_secrets");
            if names == [root.clone()] {
                Ok(())
            } else {
                Err(entryway_testkit::envoy::HarnessError::Io {
                    context: format!("warming secrets {names:?}"),
                    source: std::io::Error::other("not yet"),
                })
            }
        })
        .unwrap();
    assert_ne!(server_state(&envoy), "LIVE");
    assert_eq!(sds.stats().responses, 0);

    // The wrong CA appears first: Envoy goes LIVE, origination fails verification.
    write(&ca_file, &other_ca.pem());
    envoy.wait_ready(WAIT).unwrap();
    assert_eq!(
        secret_names(&secrets_dump(&envoy), "dynamic_active_secrets"),
        [root.as_str()]
    );
    let to_web = envoy.wait_listener("to-web", WAIT).unwrap();
    assert_eq!(read_all(to_web), "");

    // The file is rewritten with the right CA: the refresh pushes it and origination works.
    write(&ca_file, &web_ca.pem());
    let greeting = poll::eventually(WAIT, || {
        let out = read_all(to_web);
        (!out.is_empty()).then_some(out)
    })
    .unwrap();
    assert_eq!(greeting, "hello from web; client certs 0\n");
    assert!(sds.stats().responses >= 2, "{:?}", sds.stats());

    envoy.shutdown().unwrap();
    rt.block_on(sds.shutdown()).unwrap();
}

fn secret_of(any: &envoy_types::pb::google::protobuf::Any) -> Secret {
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    );
    Secret::decode(any.value.as_slice()).unwrap()
}

/// The inline `trusted_ca` of a validation-context secret, as text.
fn trusted_ca(s: &Secret) -> String {
    match &s.r#type {
        Some(secret::Type::ValidationContext(v)) => {
            match v.trusted_ca.as_ref().and_then(|d| d.specifier.as_ref()) {
                Some(Specifier::InlineBytes(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("trusted_ca {other:?}"),
            }
        }
        other => panic!("not a validation context: {other:?}"),
    }
}

fn names_of(r: &DiscoveryResponse) -> Vec<String> {
    r.resources.iter().map(|a| secret_of(a).name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_stream_serves_what_it_can_acks_quietly_and_pushes_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("a");
    let ca2 = TestCa::new("b");
    let ca_file = d.join("ca.pem");
    write(&ca_file, &ca.pem());
    let identity = MeshIdentity::self_signed("cluster.local", "shop", "default").unwrap();
    let root_pem = identity.root_pem().to_owned();
    let sds = SdsServer::start_with(
        d.join("run").join("sds.sock"),
        identity,
        SdsOptions {
            refresh_interval: Duration::from_millis(50),
            ..SdsOptions::default()
        },
    )
    .unwrap();
    assert!(sds.socket_path().exists());

    let endpoint = format!("unix://{}", sds.socket_path().display());
    let mut client = SecretDiscoveryServiceClient::connect(endpoint.clone())
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut responses = client
        .stream_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let file_root = format!("file-root:{}", ca_file.display());
    let request = |names: &[&str], nonce: &str| DiscoveryRequest {
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    tx.send(request(
        &[
            "ROOTCA",
            &file_root,
            "kubernetes://nope",
            "file-root:/no/such/ca.pem",
            "default",
        ],
        "",
    ))
    .await
    .unwrap();
    let first = responses.next().await.unwrap().unwrap();
    assert_eq!(names_of(&first), ["ROOTCA", "default", file_root.as_str()]);
    assert_eq!(trusted_ca(&secret_of(&first.resources[0])), root_pem);
    assert_eq!(trusted_ca(&secret_of(&first.resources[2])), ca.pem());
    assert_eq!(sds.stats().unservable, 2);

    // ACK, then the file changes: the next response is the refresh with the new content
    // (an ACK that had been answered would have arrived first, with the old content).
    tx.send(request(
        &["ROOTCA", &file_root, "kubernetes://nope", "default"],
        &first.nonce,
    ))
    .await
    .unwrap();
    write(&ca_file, &ca2.pem());
    let second = tokio::time::timeout(WAIT, responses.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(second.nonce, first.nonce);
    assert_ne!(second.version_info, first.version_info);
    assert_eq!(trusted_ca(&secret_of(&second.resources[2])), ca2.pem());

    // Fewer names: answered with only those (a NACK of the previous version is counted).
    let mut nack = request(&["ROOTCA"], &second.nonce);
    nack.error_detail = Some(envoy_types::pb::google::rpc::Status {
        code: 3,
        message: "test rejects it".into(),
        ..Default::default()
    });
    tx.send(nack).await.unwrap();
    let third = responses.next().await.unwrap().unwrap();
    assert_eq!(names_of(&third), ["ROOTCA"]);
    assert_eq!(sds.stats().nacks, 1);

    // FetchSecrets and DeltaSecrets.
    let fetched = client
        .fetch_secrets(request(&["ROOTCA", "nope"], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names_of(&fetched), ["ROOTCA"]);
    let err = client
        .fetch_secrets(request(&["kubernetes://x"], ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("kubernetes://x"), "{err}");
    let (_dtx, drx) = mpsc::channel(1);
    let err = client
        .delta_secrets(ReceiverStream::new(drx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // Shutdown ends the open stream and removes the socket.
    let socket = sds.socket_path().to_owned();
    tokio::time::timeout(WAIT, sds.shutdown())
        .await
        .unwrap()
        .unwrap();
    let end = tokio::time::timeout(WAIT, responses.next()).await.unwrap();
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    assert!(!socket.exists());
}

#[tokio::test]
async fn binding_replaces_a_stale_socket_and_refuses_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let identity = MeshIdentity::self_signed("cluster.local", "default", "default").unwrap();
    let path = dir.path().join("sds.sock");
    // A socket left behind by a previous agent.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let sds = SdsServer::start(&path, identity.clone()).unwrap();
    let mut client = SecretDiscoveryServiceClient::connect(format!("unix://{}", path.display()))
        .await
        .unwrap();
    let r = client
        .fetch_secrets(DiscoveryRequest {
            resource_names: vec!["default".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names_of(&r), ["default"]);
    sds.shutdown().await.unwrap();

    let file = dir.path().join("not-a-socket");
    write(&file, "data");
    let err = SdsServer::start(&file, identity).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
}
