//! The watcher over real files (inotify): edit → snapshot latency, editors that save by
//! rename, deletion, new subdirectories, bursts, invalid edits. Waits are bounded polls.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entryway_server::shared::Shared;
use entryway_server::snapshot::Snapshot;
use entryway_server::store::{Store, StoreOptions};
use entryway_server::watch::{self, WatchOptions};
use tokio::sync::{oneshot, watch as tokio_watch};
use tokio::task::JoinHandle;

/// Generous bound for every wait: the figures printed are the point, not this.
const BOUND: Duration = Duration::from_secs(2);

fn se(name: &str, host: &str, port: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n  hosts: [{host}]\n  ports:\n  - number: {port}\n    name: http\n    protocol: HTTP\n  resolution: DNS\n"
    )
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn port_of(snap: &Snapshot, host: &str) -> Option<u32> {
    snap.registry
        .services
        .iter()
        .find(|s| s.hostname == host)
        .and_then(|s| s.ports.first())
        .map(|p| p.number)
}

struct Running {
    rx: tokio_watch::Receiver<Arc<Snapshot>>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Store, watch::WatchError>>,
}

impl Running {
    fn start(dir: &Path) -> Running {
        let (store, shared) =
            Store::open(StoreOptions::new(vec![dir.to_path_buf()])).expect("open store");
        let rx = store.subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(watch::run(store, WatchOptions::default(), async move {
            let _ = stopped.await;
        }));
        Running {
            rx,
            shared,
            stop: Some(stop),
            task,
        }
    }

    /// Waits (bounded) until the published snapshot satisfies `f`; returns the time taken.
    async fn until(&mut self, what: &str, f: impl Fn(&Snapshot) -> bool) -> Duration {
        let start = Instant::now();
        let wait = async {
            loop {
                if f(&self.rx.borrow_and_update()) {
                    return;
                }
                if self.rx.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(BOUND, wait).await.is_err() {
            panic!("timed out after {BOUND:?} waiting for: {what}");
        }
        start.elapsed()
    }

    async fn stop(mut self) -> Store {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task
            .await
            .expect("watch task")
            .expect("watch returned an error")
    }
}

/// Edits applied by the watcher once it runs (the first reload follows the watch setup).
async fn warmed_up(dir: &Path) -> Running {
    write(
        &dir.join("warmup.yaml"),
        &se("warmup", "warmup.example.com", 1),
    );
    let mut r = Running::start(dir);
    std::fs::remove_file(dir.join("warmup.yaml")).expect("rm");
    r.until("warm-up file removal", |s| {
        port_of(s, "warmup.example.com").is_none()
    })
    .await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_edits_reach_the_snapshot_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    write(&a, &se("a", "a.example.com", 1000));
    let mut r = warmed_up(dir.path()).await;

    let mut samples = Vec::new();
    for i in 1..=20u32 {
        let port = 1000 + i;
        let t0 = Instant::now();
        write(&a, &se("a", "a.example.com", port));
        r.until("edited port", |s| port_of(s, "a.example.com") == Some(port))
            .await;
        samples.push(t0.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    eprintln!(
        "edit -> snapshot published: median {:.1} ms, max {:.1} ms, min {:.1} ms (n={})",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0,
        samples[0].as_secs_f64() * 1000.0,
        samples.len()
    );
    assert!(max < BOUND);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_that_save_by_rename_are_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    write(&a, &se("a", "a.example.com", 80));
    let mut r = warmed_up(dir.path()).await;

    // vim/IDE style: write a temporary file, then rename it over the original.
    let tmp = dir.path().join(".a.yaml.swp");
    write(&tmp, &se("a", "a.example.com", 81));
    std::fs::rename(&tmp, &a).expect("rename");
    let took = r
        .until("renamed-over file", |s| {
            port_of(s, "a.example.com") == Some(81)
        })
        .await;
    eprintln!(
        "rename-over save -> snapshot: {:.1} ms",
        took.as_secs_f64() * 1000.0
    );

    // Backup-then-write style: move the original away, write a new file.
    std::fs::rename(&a, dir.path().join("a.yaml~")).expect("rename away");
    write(&a, &se("a", "a.example.com", 82));
    r.until("rewritten file", |s| {
        port_of(s, "a.example.com") == Some(82)
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_new_subdirectories_are_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), &se("a", "a.example.com", 80));
    let mut r = warmed_up(dir.path()).await;

    let deep = dir.path().join("teams/payments/egress.yaml");
    write(&deep, &se("pay", "pay.example.com", 443));
    let took = r
        .until("file in a new subdirectory", |s| {
            port_of(s, "pay.example.com") == Some(443)
        })
        .await;
    eprintln!(
        "new file in new subdirectory -> snapshot: {:.1} ms",
        took.as_secs_f64() * 1000.0
    );

    // A later edit inside the new subdirectory is watched too.
    write(&deep, &se("pay", "pay.example.com", 8443));
    r.until("edit in the new subdirectory", |s| {
        port_of(s, "pay.example.com") == Some(8443)
    })
    .await;

    std::fs::remove_file(dir.path().join("a.yaml")).expect("rm");
    r.until("deleted file", |s| port_of(s, "a.example.com").is_none())
        .await;
    std::fs::remove_dir_all(dir.path().join("teams")).expect("rm -r");
    r.until("deleted directory", |s| s.registry.services.is_empty())
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_coalesce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    write(&a, &se("a", "a.example.com", 2000));
    let mut r = warmed_up(dir.path()).await;
    let before = r.rx.borrow().version;

    const WRITES: u32 = 50;
    for i in 1..=WRITES {
        write(&a, &se("a", "a.example.com", 2000 + i));
    }
    r.until("last write of the burst", |s| {
        port_of(s, "a.example.com") == Some(2000 + WRITES)
    })
    .await;
    let published = r.rx.borrow().version - before;
    eprintln!("burst of {WRITES} writes -> {published} snapshot(s) published");
    assert!(
        published < u64::from(WRITES) / 2,
        "{published} snapshots for {WRITES} writes"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_edit_is_rejected_and_last_good_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    write(&a, &se("a", "a.example.com", 80));
    write(&dir.path().join("b.yaml"), &se("b", "b.example.com", 81));
    let mut r = warmed_up(dir.path()).await;

    // One file: a broken document next to a good edit of another resource.
    write(
        &a,
        &format!(
            "{}---\n{}",
            se("a", "a.example.com", 0),
            se("c", "c.example.com", 90)
        ),
    );
    r.until("good document next to a broken one", |s| {
        port_of(s, "c.example.com") == Some(90)
    })
    .await;
    let snap = r.rx.borrow().clone();
    assert_eq!(port_of(&snap, "a.example.com"), Some(80), "last good kept");
    assert_eq!(port_of(&snap, "b.example.com"), Some(81));
    let status = r.shared.config_status();
    assert_eq!(status.rejected.len(), 1);
    assert!(status.rejected[0].rejection.kept_last_good);
    assert_eq!(status.rejected[0].rejection.name, "a");
    r.stop().await;
}
