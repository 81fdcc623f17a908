//! The config source against hostile or transient file states (issue 11): a FIFO, a link to
//! `/dev/zero`, a 50 MB file, a read that hangs, a restart with a broken file (last good read
//! back from the state directory), the config root removed and re-created, a duplicate in a
//! file that sorts first, a mass withdrawal and its confirmation. Real files, a real watcher
//! (inotify); every wait is bounded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entryway_server::admin;
use entryway_server::shared::Shared;
use entryway_server::snapshot::Snapshot;
use entryway_server::store::{ReadHook, Store, StoreOptions};
use entryway_server::watch::{self, WatchOptions};
use tokio::sync::{oneshot, watch as tokio_watch};
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(5);

fn se(name: &str, host: &str, port: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n  hosts: [{host}]\n  ports:\n  - number: {port}\n    name: http\n    protocol: HTTP\n  resolution: DNS\n"
    )
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn hosts(snap: &Snapshot) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = snap
        .registry
        .services
        .iter()
        .map(|s| (s.hostname.clone(), s.ports.first().map_or(0, |p| p.number)))
        .collect();
    v.sort();
    v
}

fn configz(shared: &Shared) -> serde_json::Value {
    let r = admin::handle(shared, "/debug/configz");
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.body).expect("configz JSON")
}

fn metric(shared: &Shared, name: &str) -> u64 {
    let text = admin::handle(shared, "/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

struct Running {
    rx: tokio_watch::Receiver<Arc<Snapshot>>,
    shared: Arc<Shared>,
    confirmation: Arc<entryway_server::store::WithdrawalConfirmation>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Store, watch::WatchError>>,
}

impl Running {
    fn start(options: StoreOptions, watch_options: WatchOptions) -> Running {
        let (store, shared) = Store::open(options).expect("open store");
        let rx = store.subscribe();
        let confirmation = store.confirmation();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(watch::run(store, watch_options, async move {
            let _ = stopped.await;
        }));
        Running {
            rx,
            shared,
            confirmation,
            stop: Some(stop),
            task,
        }
    }

    async fn until(&mut self, what: &str, f: impl Fn(&Snapshot) -> bool) {
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
            panic!(
                "timed out after {BOUND:?} waiting for: {what}; now {:?}",
                hosts(&self.rx.borrow())
            );
        }
    }

    /// Polls the shared status until `f` holds.
    async fn status_until(&self, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + BOUND;
        loop {
            let v = configz(&self.shared);
            if f(&v) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for: {what}\n{v:#}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> Store {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("watcher stops promptly")
            .expect("join")
            .expect("watch ok")
    }
}

fn options(dir: &Path) -> StoreOptions {
    StoreOptions::new(vec![dir.to_path_buf()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_and_oversized_files_are_refused_without_blocking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cfg");
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 80));
    // Present at start: the store must open (it used to block forever on the FIFO).
    let fifo = dir.join("fifo.yaml");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) must be installed");
    assert!(ok.success());
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml")).expect("symlink");
    let started = Instant::now();
    let mut r = Running::start(options(&dir), WatchOptions::default());
    assert!(
        started.elapsed() < BOUND,
        "opened in {:?}",
        started.elapsed()
    );
    r.until("a served", |s| hosts(s) == [("a.example.com".into(), 80)])
        .await;
    let v = configz(&r.shared);
    let rejected = v["rejected"].to_string();
    assert!(
        rejected.contains("fifo.yaml") && rejected.contains("a FIFO"),
        "{v:#}"
    );
    assert!(
        rejected.contains("zero.yaml") && rejected.contains("a character device"),
        "{v:#}"
    );

    // Reloads keep working with them present.
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 81));
    r.until("edit applied next to the FIFO", |s| {
        hosts(s) == [("a.example.com".into(), 81)]
    })
    .await;

    // A 50 MB file is refused before it is parsed; the file it replaces keeps its last good.
    let big = format!(
        "{}# {}\n",
        se("b", "b.example.com", 90),
        "x".repeat(50 << 20)
    );
    write(&dir.join("b.yaml"), &se("b", "b.example.com", 90));
    r.until("b served", |s| hosts(s).len() == 2).await;
    write(&dir.join("b.yaml"), &big);
    r.status_until("the 50 MB file rejected", |v| {
        v["rejected"].to_string().contains("more than the limit")
    })
    .await;
    let v = configz(&r.shared);
    assert_eq!(v["last_good"], 1, "{v:#}");
    assert!(
        hosts(&r.rx.borrow()).contains(&("b.example.com".into(), 90)),
        "b keeps its last good version"
    );
    // The body of configz stays small: nothing of the 50 MB is echoed.
    let body = admin::handle(&r.shared, "/debug/configz").body;
    assert!(body.len() < 64 << 10, "configz is {} bytes", body.len());
    assert_eq!(metric(&r.shared, "entryway_last_good_configs"), 1);
    let ready = admin::handle(&r.shared, "/ready");
    assert_eq!(ready.status, 200);
    assert!(
        ready.body.contains("last good") && ready.body.contains("b.yaml"),
        "{}",
        ready.body
    );
    let store = r.stop().await;
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_hangs_is_abandoned_and_the_watcher_keeps_working() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cfg");
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 80));
    write(&dir.join("slow.yaml"), &se("s", "s.example.com", 80));
    // The hook stands for a file system that hangs on one file while `hang` is set.
    let hang = Arc::new(AtomicBool::new(false));
    let released = Arc::new((Mutex::new(()), std::sync::Condvar::new()));
    let mut o = options(&dir);
    {
        let hang = Arc::clone(&hang);
        let released = Arc::clone(&released);
        o.read_hook = Some(ReadHook(Arc::new(move |p: &Path| {
            if p.ends_with("slow.yaml") {
                let (m, cv) = &*released;
                let mut g = m.lock().expect("lock");
                while hang.load(Ordering::SeqCst) {
                    g = cv.wait(g).expect("wait");
                }
            }
        })));
    }
    let wo = WatchOptions {
        read_timeout: Duration::from_millis(300),
        ..WatchOptions::default()
    };
    let mut r = Running::start(o, wo);
    r.until("both served", |s| hosts(s).len() == 2).await;

    hang.store(true, Ordering::SeqCst);
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 81));
    r.status_until("reload abandoned", |v| {
        v["reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("abandoned"))
    })
    .await;
    assert!(metric(&r.shared, "entryway_config_reload_failures_total") >= 1);
    assert!(
        admin::handle(&r.shared, "/ready")
            .body
            .contains("reload abandoned")
    );
    assert_eq!(
        hosts(&r.rx.borrow()),
        [("a.example.com".into(), 80), ("s.example.com".into(), 80)],
        "the config in force stays"
    );

    // The file system recovers: the watcher retries by itself and applies the edit.
    hang.store(false, Ordering::SeqCst);
    released.1.notify_all();
    r.until("edit applied after recovery", |s| {
        hosts(s).contains(&("a.example.com".into(), 81))
    })
    .await;
    r.status_until("error cleared", |v| v["reload_error"].is_null())
        .await;

    // Shutdown is never held up by a hung read.
    hang.store(true, Ordering::SeqCst);
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 82));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let store = r.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    hang.store(false, Ordering::SeqCst);
    released.1.notify_all();
    drop(store);
}

#[test]
fn a_restart_with_a_broken_file_serves_its_last_good_from_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cfg");
    let state = tmp.path().join("state");
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 80));
    write(&dir.join("b.yaml"), &se("b", "b.example.com", 81));
    let mut o = options(&dir);
    o.state_dir = Some(state.clone());
    let first_version = {
        let (store, _) = Store::open(o.clone()).expect("open");
        store.version()
    };
    let saved = state.join("last-good").join("config.json");
    assert!(saved.is_file(), "{} written", saved.display());

    // While it is down: a syntax error in one file, an invalid document in the other.
    write(&dir.join("a.yaml"), "kind: [unclosed\n");
    write(&dir.join("b.yaml"), &se("b", "b.example.com", 0));
    let (store, shared) = Store::open(o.clone()).expect("reopen");
    let snap = store.subscribe().borrow().clone();
    assert_eq!(
        hosts(&snap),
        [("a.example.com".into(), 80), ("b.example.com".into(), 81)],
        "both keep their last good version across the restart"
    );
    assert!(
        snap.version > first_version,
        "versions continue across restarts"
    );
    let v = configz(&shared);
    assert_eq!(v["last_good"], 2, "{v:#}");
    assert_eq!(v["restored"]["resources"], 2, "{v:#}");
    assert!(
        v["accepted"]
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["last_good"] == true))
    );
    assert_eq!(metric(&shared, "entryway_last_good_configs"), 2);
    let ready = admin::handle(&shared, "/ready");
    assert_eq!(ready.status, 200);
    for needle in [
        "2 resource(s) served from their last good version",
        "a.yaml",
        "b.yaml",
    ] {
        assert!(ready.body.contains(needle), "{needle}: {}", ready.body);
    }
    drop(store);

    // Another config path does not pick up this state.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let mut o2 = options(&other);
    o2.state_dir = Some(state);
    let (store, _) = Store::open(o2).expect("open other");
    assert!(hosts(&store.subscribe().borrow()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_config_root_keeps_the_last_good_until_it_returns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cfg");
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 80));
    write(&dir.join("b.yaml"), &se("b", "b.example.com", 81));
    let mut r = Running::start(options(&dir), WatchOptions::default());
    // An edit seen proves the watches are in place before the root goes.
    write(&dir.join("b.yaml"), &se("b", "b.example.com", 82));
    r.until("the watcher is live", |s| {
        hosts(s).contains(&("b.example.com".into(), 82))
    })
    .await;
    let before = hosts(&r.rx.borrow());

    std::fs::remove_dir_all(&dir).expect("rm -rf");
    r.status_until("withdrawal held", |v| !v["withdrawal_held"].is_null())
        .await;
    assert_eq!(hosts(&r.rx.borrow()), before, "nothing withdrawn");
    assert_eq!(metric(&r.shared, "entryway_withheld_configs"), 2);
    assert!(
        admin::handle(&r.shared, "/ready")
            .body
            .contains("withdrawal of 2 resource(s) held")
    );

    // Re-created empty, then filled a moment later: still nothing withdrawn in between.
    std::fs::create_dir(&dir).expect("mkdir");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        hosts(&r.rx.borrow()),
        before,
        "an empty re-created root withdraws nothing"
    );
    write(&dir.join("a.yaml"), &se("a", "a.example.com", 80));
    r.until("a alone once the root is back with files", |s| {
        hosts(s) == [("a.example.com".into(), 80)]
    })
    .await;
    r.status_until("held withdrawal resolved", |v| {
        v["withdrawal_held"].is_null()
    })
    .await;

    // Removing it again and confirming (SIGHUP in `entryway serve`) withdraws it.
    std::fs::remove_dir_all(&dir).expect("rm -rf");
    r.status_until("held again", |v| !v["withdrawal_held"].is_null())
        .await;
    r.confirmation.confirm();
    r.until("confirmed withdrawal", |s| hosts(s).is_empty())
        .await;
    drop(r.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_withdrawal_is_held_and_a_sorted_first_duplicate_never_serves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cfg");
    std::fs::create_dir(&dir).expect("mkdir");
    let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    for n in &names {
        write(
            &dir.join(format!("{n}.yaml")),
            &se(n, &format!("{n}.example.com"), 80),
        );
    }
    let mut r = Running::start(options(&dir), WatchOptions::default());
    r.until("ten", |s| hosts(s).len() == 10).await;

    // A copy of s5 with another port in a file that sorts first.
    write(&dir.join("0copy.yaml"), &se("s5", "s5.example.com", 9999));
    r.status_until("duplicate rejected", |v| {
        v["rejected"].to_string().contains("0copy.yaml")
            && v["rejected"].to_string().contains("duplicate")
    })
    .await;
    assert!(
        hosts(&r.rx.borrow()).contains(&("s5.example.com".into(), 80)),
        "the version in force keeps serving"
    );
    std::fs::remove_file(dir.join("0copy.yaml")).expect("rm");

    // Seven of ten files gone at once: held.
    let gone: Vec<PathBuf> = names[..7]
        .iter()
        .map(|n| dir.join(format!("{n}.yaml")))
        .collect();
    for p in &gone {
        std::fs::remove_file(p).expect("rm");
    }
    r.status_until("mass withdrawal held", |v| {
        v["withdrawal_held"]["resources"] == 7
    })
    .await;
    assert_eq!(hosts(&r.rx.borrow()).len(), 10);
    r.confirmation.confirm();
    r.until("confirmed", |s| hosts(s).len() == 3).await;
    drop(r.stop().await);
}
