//! The store over real files: first load, last good config across edits, syntax errors,
//! deletions, publishing only on change, metrics and the rejection log line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use entryway_server::snapshot::Snapshot;
use entryway_server::store::{Store, StoreError, StoreOptions};

fn se(name: &str, host: &str, port: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: web\nspec:\n  hosts: [{host}]\n  ports:\n  - number: {port}\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n"
    )
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// Host → first port number, from the registry of a snapshot.
fn ports(snap: &Snapshot) -> Vec<(String, u32)> {
    snap.registry
        .services
        .iter()
        .map(|s| (s.hostname.clone(), s.ports.first().map_or(0, |p| p.number)))
        .collect()
}

fn open(dir: &Path) -> (Store, Arc<entryway_server::shared::Shared>) {
    Store::open(StoreOptions::new(vec![dir.to_path_buf()])).expect("open store")
}

#[test]
fn first_load_publishes_version_one_and_reloads_publish_only_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), &se("a", "a.example.com", 80));
    write(
        &dir.path().join("sub/b.yaml"),
        &se("b", "b.example.com", 81),
    );
    let (mut store, shared) = open(dir.path());
    let rx = store.subscribe();
    assert_eq!(rx.borrow().version, 1);
    assert_eq!(
        ports(&rx.borrow()),
        vec![("a.example.com".into(), 80), ("b.example.com".into(), 81)]
    );

    // Nothing changed: no new version.
    let o = store.reload();
    assert_eq!(o.published, None);
    assert_eq!(rx.borrow().version, 1);

    // Same objects, different text (a comment): still no new version.
    write(
        &dir.path().join("a.yaml"),
        &format!("# edited\n{}", se("a", "a.example.com", 80)),
    );
    assert_eq!(store.reload().published, None);

    write(&dir.path().join("a.yaml"), &se("a", "a.example.com", 8080));
    assert_eq!(store.reload().published, Some(2));
    assert_eq!(ports(&rx.borrow())[0], ("a.example.com".into(), 8080));
    assert_eq!(
        shared
            .metrics
            .config_versions
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn invalid_edit_keeps_last_good_and_counts_rejection_by_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    write(&a, &se("a", "a.example.com", 80));
    write(&dir.path().join("b.yaml"), &se("b", "b.example.com", 81));
    let (mut store, shared) = open(dir.path());
    let rx = store.subscribe();

    // a becomes invalid while b changes: b's change applies, a keeps port 80.
    write(&a, &se("a", "a.example.com", 0));
    write(&dir.path().join("b.yaml"), &se("b", "b.example.com", 82));
    assert_eq!(store.reload().published, Some(2));
    assert_eq!(
        ports(&rx.borrow()),
        vec![("a.example.com".into(), 80), ("b.example.com".into(), 82)]
    );
    let snap = rx.borrow().clone();
    assert_eq!(snap.rejected.len(), 1);
    let r = &snap.rejected[0];
    assert_eq!(r.file, a.display().to_string());
    assert_eq!(
        (r.kind.as_str(), r.namespace.as_str(), r.name.as_str()),
        ("ServiceEntry", "web", "a")
    );
    assert_eq!(r.errors[0].path, "spec.ports[0].number");
    assert!(r.kept_last_good);
    assert_eq!(
        shared.metrics.rejected_configs.values().get("ServiceEntry"),
        Some(&1)
    );

    // The same rejection again is not counted twice.
    assert_eq!(store.reload().new_rejections, 0);
    assert_eq!(
        shared.metrics.rejected_configs.values().get("ServiceEntry"),
        Some(&1)
    );

    let status = shared.config_status();
    assert_eq!(status.version, 2);
    let kept: Vec<_> = status
        .accepted
        .iter()
        .map(|c| (c.name.as_str(), c.last_good))
        .collect();
    assert_eq!(kept, vec![("a", true), ("b", false)]);
    assert_eq!(status.rejected[0].error_lines.first(), Some(&9));
}

#[test]
fn rejection_only_changes_update_status_without_waking_subscribers() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), &se("a", "a.example.com", 80));
    let (mut store, shared) = open(dir.path());
    let mut rx = store.subscribe();
    rx.borrow_and_update();

    // A brand-new invalid resource changes nothing that is accepted.
    write(&dir.path().join("new.yaml"), &se("new", "n.example.com", 0));
    let o = store.reload();
    assert_eq!(o.published, None);
    assert_eq!(o.new_rejections, 1);
    assert!(!rx.has_changed().expect("sender alive"));
    // ...but readers of the current snapshot and the status see it.
    assert_eq!(rx.borrow().rejected.len(), 1);
    assert!(!rx.borrow().rejected[0].kept_last_good);
    assert_eq!(shared.config_status().rejected.len(), 1);
}

#[test]
fn syntax_error_keeps_the_file_and_deletion_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    write(
        &a,
        &format!(
            "{}---\n{}",
            se("a", "a.example.com", 80),
            se("c", "c.example.com", 90)
        ),
    );
    write(&dir.path().join("b.yaml"), &se("b", "b.example.com", 81));
    let (mut store, _shared) = open(dir.path());
    let rx = store.subscribe();

    write(&a, "apiVersion: networking.istio.io/v1\nkind: [oops\n");
    assert_eq!(store.reload().published, None, "nothing accepted changed");
    assert_eq!(ports(&rx.borrow()).len(), 3);
    let r = rx.borrow().rejected[0].clone();
    assert!(r.kept_last_good);
    assert!(r.line >= 2, "syntax error line: {r:?}");
    assert!(r.errors[0].message.contains("syntax error"), "{r:?}");

    std::fs::remove_file(&a).expect("rm");
    assert_eq!(store.reload().published, Some(2));
    assert_eq!(ports(&rx.borrow()), vec![("b.example.com".into(), 81)]);
    assert!(rx.borrow().rejected.is_empty());
}

#[test]
fn order_is_stable_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, name) in ["z", "m", "a", "q"].iter().enumerate() {
        write(
            &dir.path().join(format!("{name}.yaml")),
            &se(name, &format!("{name}.example.com"), 80 + i as u32),
        );
    }
    let first = {
        let (store, _) = open(dir.path());
        ports(&store.subscribe().borrow())
    };
    let second = {
        let (store, _) = open(dir.path());
        ports(&store.subscribe().borrow())
    };
    assert_eq!(first, second);
    let hosts: Vec<&str> = first.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        hosts,
        vec![
            "a.example.com",
            "m.example.com",
            "q.example.com",
            "z.example.com"
        ]
    );
}

#[test]
fn missing_path_and_bad_mesh_fail_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    assert!(matches!(
        Store::open(StoreOptions::new(vec![missing])),
        Err(StoreError::Path { .. })
    ));
    let mesh = dir.path().join("mesh.yaml");
    write(&mesh, "outboundTrafficPolicy: [\n");
    let mut options = StoreOptions::new(vec![dir.path().to_path_buf()]);
    options.mesh_file = Some(mesh);
    assert!(matches!(Store::open(options), Err(StoreError::Mesh { .. })));
}

#[test]
fn mesh_config_changes_publish_and_bad_edits_keep_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cfg");
    write(&cfg.join("a.yaml"), &se("a", "a.example.com", 80));
    let mesh = dir.path().join("mesh.yaml");
    write(&mesh, "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n");
    let mut options = StoreOptions::new(vec![cfg]);
    options.mesh_file = Some(mesh.clone());
    let (mut store, _) = Store::open(options).expect("open");
    let rx = store.subscribe();

    write(&mesh, "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n");
    assert_eq!(store.reload().published, Some(2));
    let registry_only = rx.borrow().mesh.clone();

    write(&mesh, "outboundTrafficPolicy: [\n");
    assert_eq!(store.reload().published, None);
    assert_eq!(rx.borrow().mesh, registry_only);
    let r = rx.borrow().rejected.clone();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, "MeshConfig");
    assert!(r[0].kept_last_good);
}

/// The process-wide log, captured (installed on first use).
fn global_log() -> &'static Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        captured
    })
}

/// A `tracing` writer collecting everything into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

#[test]
fn rejection_is_logged_once_with_file_line_resource_field_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a: PathBuf = dir.path().join("a.yaml");
    write(&a, &se("a", "a.example.com", 80));
    let (mut store, _) = open(dir.path());
    write(&a, &se("a", "a.example.com", 0));

    // A process-wide subscriber: with a thread-scoped one (`with_default`), a test on another
    // thread that reaches the same log callsite at the same moment can leave it cached as
    // disabled, and nothing is captured (seen as a flaky failure). Other tests log into it
    // too, so only lines naming this test's file count.
    let captured = global_log();
    store.reload();
    store.reload();
    let log = captured.text();
    let file = a.display().to_string();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("config rejected") && l.contains(&file))
        .collect();
    assert_eq!(lines.len(), 1, "one line per new rejection:\n{log}");
    let line = lines[0];
    for needle in [
        &format!("{}:9", a.display()),
        "ServiceEntry web/a",
        "spec.ports[0].number",
        "65535",
        "kept_last_good=true",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line}");
    }
    let _ = std::io::stderr().write_all(format!("log line: {line}\n").as_bytes());
}
