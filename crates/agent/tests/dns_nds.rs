//! The name table end to end: a real control plane (Store over a temp dir + the ADS
//! server) → the agent's NDS client (SotW, Envoy's node identity) → the DNS proxy. Editing
//! a ServiceEntry file changes the DNS answer live; removing it sends the name upstream
//! (a local fake resolver, never the machine's).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use entryway_agent::XdsAddress;
use entryway_agent::dns::{DnsOptions, DnsProxy};
use entryway_agent::nds::{self, NdsClient};
use entryway_agent::node_meta::NodeMeta;
use entryway_server::ads;
use entryway_server::store::{Store, StoreOptions};
use entryway_testkit::poll::eventually;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

const BOUND: Duration = Duration::from_secs(10);

fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Option<Message> {
    let mut m = Message::new();
    m.set_id(fastrand_id()).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).ok()?, qtype));
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.send_to(&m.to_vec().ok()?, server).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

fn fastrand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The A answers as `name data`, or `rcode` when there are none.
fn a_answers(server: SocketAddr, name: &str) -> Vec<String> {
    match ask(server, name, RecordType::A) {
        None => vec!["<no answer>".into()],
        Some(r) if r.answers().is_empty() => vec![format!("{:?}", r.response_code())],
        Some(r) => r
            .answers()
            .iter()
            .map(|a| format!("{} {}", a.name(), a.data()))
            .collect(),
    }
}

fn se(name: &str, host: &str, addresses: &[&str], resolution: &str) -> String {
    let addrs = if addresses.is_empty() {
        String::new()
    } else {
        format!("  addresses: [{}]\n", addresses.join(", "))
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{host}]\n{addrs}  ports:\n  - number: 5432\n    name: tcp\n    protocol: TCP\n  resolution: {resolution}\n"
    )
}

#[test]
fn name_table_follows_config_edits_live() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("db.yaml"),
        se("db", "db.example.com", &["10.0.0.1"], "STATIC"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("api.yaml"),
        se("api", "api.example.com", &[], "DNS"),
    )
    .expect("write");
    let (mut store, shared) =
        Store::open(StoreOptions::new(vec![dir.path().to_path_buf()])).expect("open store");
    assert!(store.state().rejections().is_empty());

    // Fake upstream resolver: NXDOMAIN for everything.
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("bind upstream");
    let upstream_addr = upstream.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = upstream.recv_from(&mut buf) {
            if let Ok(req) = Message::from_vec(&buf[..n]) {
                let mut r = Message::new();
                r.set_id(req.id())
                    .set_message_type(MessageType::Response)
                    .set_response_code(ResponseCode::NXDomain);
                r.add_queries(req.queries().iter().cloned());
                if let Ok(b) = r.to_vec() {
                    let _ = upstream.send_to(&b, peer);
                }
            }
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (client, dns) = rt.block_on(async {
        let listener = ads::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind xDS");
        let xds_addr = listener.local_addr().expect("addr");
        tokio::spawn(ads::serve(listener, Arc::clone(&shared), async move {
            let _ = stop_rx.await;
        }));
        // The node Envoy would send: namespace default, DNS capture on.
        let meta = NodeMeta {
            namespace: Some("default".into()),
            dns_capture: true,
            instance_ips: vec!["127.0.0.1".parse().expect("ip")],
            ..NodeMeta::default()
        };
        let node = nds::node(
            "sidecar~127.0.0.1~app.default~default.svc.cluster.local",
            &meta.to_metadata(),
        );
        let client = NdsClient::start(&XdsAddress::new("127.0.0.1", xds_addr.port()), node);
        let dns = DnsProxy::start(
            DnsOptions {
                addr: "127.0.0.1:0".parse().expect("addr"),
                upstreams: vec![upstream_addr],
                search: vec!["default.svc.cluster.local".into()],
                proxy_namespace: "default".into(),
                proxy_domain: "default.svc.cluster.local".into(),
                upstream_timeout: Duration::from_secs(2),
            },
            client.table(),
        )
        .await
        .expect("start DNS proxy");
        (client, dns)
    });
    let addr = dns.local_addr();

    // The explicit address, and an auto-allocated one for the DNS entry (capture is on).
    let got = eventually(BOUND, || {
        let a = a_answers(addr, "db.example.com.");
        (a == vec!["db.example.com. 10.0.0.1"]).then_some(a)
    });
    assert!(
        got.is_ok(),
        "db.example.com: {:?}",
        a_answers(addr, "db.example.com.")
    );
    let api = a_answers(addr, "api.example.com.");
    assert_eq!(api.len(), 1, "{api:?}");
    assert!(api[0].starts_with("api.example.com. 240.240."), "{api:?}");
    let table = client.table().get().expect("a table");
    assert_eq!(
        table.table.keys().cloned().collect::<Vec<_>>(),
        vec!["api.example.com", "db.example.com"]
    );
    assert_eq!(table.table["db.example.com"].registry, "External");

    // Edit the file: the answer changes without restarting anything.
    std::fs::write(
        dir.path().join("db.yaml"),
        se("db", "db.example.com", &["10.0.0.2"], "STATIC"),
    )
    .expect("rewrite");
    let o = {
        let _rt = rt.enter();
        store.reload()
    };
    assert!(o.published.is_some(), "{o:?}");
    eventually(BOUND, || {
        (a_answers(addr, "db.example.com.") == vec!["db.example.com. 10.0.0.2"]).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "answer did not change: {e}; now {:?}",
            a_answers(addr, "db.example.com.")
        )
    });

    // Remove it: the name is no longer ours and goes upstream (NXDOMAIN there).
    std::fs::remove_file(dir.path().join("db.yaml")).expect("remove");
    let o = {
        let _rt = rt.enter();
        store.reload()
    };
    assert!(o.published.is_some(), "{o:?}");
    eventually(BOUND, || {
        (a_answers(addr, "db.example.com.") == vec!["NXDomain"]).then_some(())
    })
    .unwrap_or_else(|e| panic!("still answered locally: {e}"));

    let stats = client.stats();
    assert!(stats.tables >= 3, "{stats:?}");
    assert_eq!(stats.rejected, 0);
    assert_eq!(stats.connects, 1);
    let _ = stop_tx.send(());
}
