//! Workload certificates signed per second by the mesh CA (issue 9), on the product's path:
//! the secure port exactly as `entryway serve` runs it ([`ads::serve_ports`] with the TLS
//! listener and `IstioCertificateService`), called the way the agent calls it
//! ([`CertificateClient::request`]: a key made on the client, a CSR, a new TLS connection,
//! a join token).
//!
//! Baseline, measured in the same run: [`MeshCa::sign_csr`] alone on pre-made CSRs (the
//! signing floor). Printed: certificates per second at 1 and 4 concurrent clients, and the
//! ratio to the floor.
//!
//! Run: `cargo bench -p entryway-server --bench ca_sign`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use entryway_agent::XdsAddress;
use entryway_agent::mesh::{CertificateClient, ControlPlane};
use entryway_contract::SpiffeId;
use entryway_server::ads::{self, AdsOptions, SecurePort};
use entryway_server::ca::service::CaService;
use entryway_server::ca::tokens::TokenStore;
use entryway_server::ca::{CaOptions, CaSource, DEFAULT_WORKLOAD_TTL, MAX_WORKLOAD_TTL, MeshCa};
use entryway_server::secure::{Authenticator, SecureListener, SecureOptions};
use entryway_server::shared::Shared;
use entryway_server::snapshot::Snapshot;

const ROUND: Duration = Duration::from_secs(3);

fn main() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Arc::new(
        MeshCa::load(CaOptions {
            source: CaSource::SelfSigned(dir.path().join("ca")),
            trust_domain: "cluster.local".into(),
            default_ttl: DEFAULT_WORKLOAD_TTL,
            max_ttl: MAX_WORKLOAD_TTL,
        })
        .expect("ca"),
    );
    let id = SpiffeId::new("cluster.local", "bench", "sa");

    // The floor: signing pre-made CSRs in process.
    let csrs: Vec<String> = (0..200)
        .map(|_| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::default();
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.serialize_request(&key)
                .and_then(|c| c.pem())
                .expect("csr")
        })
        .collect();
    let start = Instant::now();
    let mut signed = 0usize;
    while start.elapsed() < ROUND {
        ca.sign_csr(&csrs[signed % csrs.len()], &id, DEFAULT_WORKLOAD_TTL)
            .expect("sign");
        signed += 1;
    }
    let floor = signed as f64 / start.elapsed().as_secs_f64();
    println!("sign_csr alone (1 thread):           {floor:>8.0} certificates/s");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tokens = TokenStore::new(dir.path().join("tokens"));
        let (token, _) = tokens
            .issue("bench", "sa", Duration::from_secs(3600))
            .expect("token");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).expect("token file");
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::empty(Default::default())));
        let shared = Shared::new(rx);
        let auth = Authenticator::new("cluster.local", tokens);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let options = SecureOptions::istiod_like(addr.ip(), &[]);
        let tls = Arc::new(SecureListener::new(&ca, &options).expect("tls"));
        let port = SecurePort {
            listener,
            tls,
            ca: CaService::new(Arc::clone(&ca), auth.clone(), Arc::clone(&shared)),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(ads::serve_ports(
            None,
            Some(port),
            Arc::clone(&shared),
            AdsOptions {
                authenticator: Some(auth),
                ..Default::default()
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        let cp = ControlPlane::secure(
            XdsAddress::new("127.0.0.1", addr.port()),
            &ca.root_pem(),
            entryway_contract::DEFAULT_CONTROL_PLANE_NAME,
            None,
        )
        .expect("control plane");
        let client = CertificateClient::new(cp, Some(token_file), id.clone(), None);
        client.request(None).await.expect("a first certificate");
        for clients in [1usize, 4] {
            let start = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let c = client.clone();
                    tokio::spawn(async move {
                        let mut n = 0usize;
                        while start.elapsed() < ROUND {
                            c.request(None).await.expect("certificate");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.expect("client");
            }
            let rate = total as f64 / start.elapsed().as_secs_f64();
            println!(
                "CreateCertificate over TLS, {clients} client(s): {rate:>8.0} certificates/s ({:.2}x the floor)",
                rate / floor
            );
        }
        let _ = stop_tx.send(());
        let _ = server.await;
    });
}
