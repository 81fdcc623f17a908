//! Watching the config paths and debouncing changes into [`Store::reload`]s.
//!
//! Change notification comes from inotify (through the `notify` crate), with a polling
//! watcher as the fallback where inotify is unavailable (no support, or the per-user watch
//! limit is reached). Directories are watched recursively (new subdirectories included);
//! a file named on its own is watched through its parent directory, so editors that save
//! by writing a temporary file and renaming it over the original are seen.
//!
//! Every event except reads counts: also hidden names, because a Kubernetes ConfigMap
//! volume updates by swapping a hidden `..data` symlink and touches no `*.yaml` name.
//! Spurious reloads are cheap: unchanged files are not re-validated (the store caches
//! checks by file text) and nothing is published unless the accepted set changed.
//!
//! Debounce: after the first event, wait until the paths have been quiet for
//! [`WatchOptions::quiet`], but no longer than [`WatchOptions::max_delay`] after that first
//! event; then reload. A burst of writes (a `git checkout`, a `cp -r`) becomes one reload,
//! and a single edit reaches the store about `quiet` after it was written. istiod waits
//! for 100 ms of quiet (`PILOT_DEBOUNCE_AFTER`); local files are written in far less.
//!
//! A watched directory that comes back after being removed is debounced like any event,
//! so a directory re-created and then filled is read once it is quiet, not half-filled.
//!
//! Reading is bounded: the files are read on a blocking thread ([`Store::reader`]), and a
//! read that takes longer than [`WatchOptions::read_timeout`] (a hung network file system)
//! is abandoned — the configuration in force stays, `/debug/configz`, `/ready` and
//! `entryway_config_reload_failures_total` say so, and the watcher keeps working (it
//! retries; no second read starts while the abandoned one is still stuck). Shutdown is
//! never held up by a read.
//!
//! A held withdrawal ([`crate::withdrawal`]) is re-announced every
//! [`WatchOptions::reminder`] until it is confirmed ([`Store::confirmation`]) or resolved.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::store::{ReadSet, ReloadOutcome, Store, StoreOptions};

/// Debounce and fallback timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Reload once the paths have been quiet this long.
    pub quiet: Duration,
    /// Reload at the latest this long after the first event of a burst.
    pub max_delay: Duration,
    /// Interval of the polling watcher used when inotify is unavailable, and of the checks
    /// for a watched directory that was removed to come back.
    pub poll_interval: Duration,
    /// Longest a reload may spend reading files before it is abandoned (and retried after
    /// as long again).
    pub read_timeout: Duration,
    /// How often a held withdrawal is logged again.
    pub reminder: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            quiet: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            poll_interval: Duration::from_millis(100),
            read_timeout: Duration::from_secs(10),
            reminder: Duration::from_secs(60),
        }
    }
}

/// Why watching stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Neither inotify nor the polling watcher could be started.
    #[error("cannot watch the config paths: {0}")]
    Watcher(#[from] notify::Error),
    /// The blocking reload task failed (it panicked or the runtime is shutting down).
    #[error("config reload task failed: {0}")]
    Reload(String),
}

/// What the event handler tells the debounce loop.
#[derive(Debug, Clone, Copy)]
struct Signal {
    /// Something was removed or renamed, or events were lost: re-check the watches.
    recheck: bool,
}

/// Forwards relevant events from the watcher's thread to the debounce loop.
#[derive(Debug, Clone)]
struct Forward(mpsc::UnboundedSender<Signal>, Removed);

/// Paths of removal events since the last recheck: a watched directory removed and quickly
/// re-created (even with the same inode number) must be watched again, and a check of the
/// path alone cannot tell.
type Removed = std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>;

impl notify::EventHandler for Forward {
    fn handle_event(&mut self, event: notify::Result<Event>) {
        let signal = match event {
            Ok(ev) => match classify(&ev) {
                Some(s) => {
                    if matches!(ev.kind, EventKind::Remove(_))
                        && let Ok(mut r) = self.1.lock()
                        && r.len() < 1024
                    {
                        r.extend(ev.paths.iter().cloned());
                    }
                    s
                }
                None => return,
            },
            Err(e) => {
                warn!(error = %e, "config watcher error; reloading");
                Signal { recheck: true }
            }
        };
        // The receiver is gone only when `run` has returned.
        let _ = self.0.send(signal);
    }
}

/// Whether an event may change what the store reads. Reads (including the store's own)
/// are ignored; a finished write counts.
fn classify(ev: &Event) -> Option<Signal> {
    match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return None,
        _ => {}
    }
    let recheck = ev.need_rescan()
        || matches!(
            ev.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
    Some(Signal { recheck })
}

/// A path the watcher watches.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    path: PathBuf,
    mode: RecursiveMode,
    active: bool,
    /// Device and inode of the directory watched: a directory removed and re-created under
    /// the same name is another one, which the old watch does not see.
    inode: Option<(u64, u64)>,
}

fn inode_of(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// Directories to watch for `options`: each directory recursively, and the parent directory
/// of each file (editors replace files by rename, which a watch on the file would miss).
fn targets(options: &StoreOptions) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let files = options.paths.iter().chain(options.mesh_file.as_ref());
    for p in files {
        let (path, mode) = if p.is_dir() {
            (p.clone(), RecursiveMode::Recursive)
        } else {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), RecursiveMode::NonRecursive)
        };
        match out.iter_mut().find(|t| t.path == path) {
            Some(t) => {
                if mode == RecursiveMode::Recursive {
                    t.mode = mode;
                }
            }
            None => out.push(Target {
                path,
                mode,
                active: false,
                inode: None,
            }),
        }
    }
    out
}

/// The watcher in use and what it watches.
struct Watches {
    watcher: Box<dyn Watcher + Send>,
    targets: Vec<Target>,
}

impl Watches {
    /// Starts inotify on every target, or the polling watcher if inotify cannot watch them.
    fn start(
        options: &StoreOptions,
        poll_interval: Duration,
        fwd: Forward,
    ) -> Result<Watches, WatchError> {
        let targets = targets(options);
        match RecommendedWatcher::new(fwd.clone(), notify::Config::default()) {
            Ok(w) => {
                let mut watches = Watches {
                    watcher: Box::new(w),
                    targets: targets.clone(),
                };
                match watches.activate() {
                    Ok(()) => {
                        info!(
                            targets = watches.targets.len(),
                            "watching config paths (inotify)"
                        );
                        return Ok(watches);
                    }
                    Err(e) => {
                        warn!(error = %e, "inotify cannot watch the config paths; polling instead")
                    }
                }
            }
            Err(e) => warn!(error = %e, "inotify unavailable; polling the config paths instead"),
        }
        let config = notify::Config::default().with_poll_interval(poll_interval);
        let mut watches = Watches {
            watcher: Box::new(PollWatcher::new(fwd, config)?),
            targets,
        };
        watches.activate()?;
        info!(
            targets = watches.targets.len(),
            interval_ms = poll_interval.as_millis() as u64,
            "watching config paths (polling)"
        );
        Ok(watches)
    }

    /// Watches every inactive target that exists. Only watcher errors other than a missing
    /// path fail (the limit of inotify watches, for instance).
    fn activate(&mut self) -> Result<(), notify::Error> {
        for t in &mut self.targets {
            if t.active || !t.path.is_dir() {
                continue;
            }
            match self.watcher.watch(&t.path, t.mode) {
                Ok(()) => {
                    t.active = true;
                    t.inode = inode_of(&t.path);
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Marks targets that no longer exist, were removed (`removed`: paths of removal
    /// events), or were replaced by another directory, as inactive (their watch died with
    /// them).
    fn deactivate_missing(&mut self, removed: &[PathBuf]) {
        for t in &mut self.targets {
            let gone = removed.iter().any(|r| r == &t.path)
                || !t.path.is_dir()
                || inode_of(&t.path) != t.inode;
            if t.active && gone {
                let _ = self.watcher.unwatch(&t.path);
                t.active = false;
                warn!(path = %t.path.display(), "watched config directory is gone; waiting for it to return");
            }
        }
    }

    fn any_inactive(&self) -> bool {
        self.targets.iter().any(|t| !t.active)
    }

    /// Re-watches targets that came back. Returns true if any did.
    fn reactivate(&mut self) -> bool {
        let before = self.targets.iter().filter(|t| t.active).count();
        if let Err(e) = self.activate() {
            warn!(error = %e, "cannot watch a config directory");
        }
        self.targets.iter().filter(|t| t.active).count() > before
    }
}

/// How a bounded reload ended.
enum Reloaded {
    /// Applied (or abandoned, with the store's status saying so).
    Done(Store),
    /// Abandoned because its read did not finish in time: retry later.
    Abandoned(Store),
    /// Shutdown was requested while reading.
    Shutdown(Store),
}

/// Reads with a time bound on a blocking thread, then applies on another one.
async fn reload<F: Future>(
    mut store: Store,
    options: &WatchOptions,
    stuck: &mut Option<JoinHandle<ReadSet>>,
    shutdown: &mut Pin<&mut F>,
) -> Result<Reloaded, WatchError> {
    if let Some(h) = stuck.as_ref() {
        if !h.is_finished() {
            store.note_abandoned(format!(
                "an earlier read of the config files is still stuck (more than {} ms); not starting another",
                options.read_timeout.as_millis()
            ));
            return Ok(Reloaded::Abandoned(store));
        }
        *stuck = None;
    }
    let reader = store.reader();
    let mut read = tokio::task::spawn_blocking(move || reader.read());
    let set = tokio::select! {
        _ = shutdown.as_mut() => {
            *stuck = Some(read);
            return Ok(Reloaded::Shutdown(store));
        }
        r = tokio::time::timeout(options.read_timeout, &mut read) => match r {
            Ok(Ok(set)) => set,
            Ok(Err(e)) => return Err(WatchError::Reload(e.to_string())),
            Err(_) => {
                store.note_abandoned(format!(
                    "reading the config files took longer than {} ms; abandoned",
                    options.read_timeout.as_millis()
                ));
                *stuck = Some(read);
                return Ok(Reloaded::Abandoned(store));
            }
        },
    };
    let (store, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = store.apply_read(set);
        (store, outcome)
    })
    .await
    .map_err(|e| WatchError::Reload(e.to_string()))?;
    log_outcome(&outcome);
    Ok(Reloaded::Done(store))
}

fn log_outcome(o: &ReloadOutcome) {
    debug!(
        published = o.published,
        new_rejections = o.new_rejections,
        files = o.files,
        held = o.held,
        elapsed_ms = o.elapsed.as_secs_f64() * 1000.0,
        "config reloaded"
    );
}

/// Watches the store's paths and reloads it after each (debounced) change, until
/// `shutdown` completes; then returns the store.
///
/// Reloads once right after the watches are in place, so edits made between
/// [`Store::open`] and this call are not lost.
pub async fn run(
    store: Store,
    options: WatchOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Store, WatchError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let removed: Removed = Default::default();
    let mut watches = Watches::start(
        store.options(),
        options.poll_interval,
        Forward(tx, std::sync::Arc::clone(&removed)),
    )?;
    let confirmation = store.confirmation();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut stuck = None;
    // A reload to do at once (the first one, or one a recheck asked for), without
    // waiting for an event.
    let mut pending = Some(Signal { recheck: false });
    let mut retry_at: Option<Instant> = None;
    let mut reminder =
        tokio::time::interval_at(Instant::now() + options.reminder, options.reminder);
    let mut store = store;

    loop {
        let first = match pending.take() {
            Some(s) => s,
            None => tokio::select! {
                _ = &mut shutdown => return Ok(store),
                s = rx.recv() => match s {
                    Some(s) => s,
                    None => return Ok(store),
                },
                _ = tokio::time::sleep(options.poll_interval), if watches.any_inactive() => {
                    if !watches.reactivate() {
                        continue;
                    }
                    // Came back: debounced like any change (it may still be filling up).
                    Signal { recheck: false }
                }
                _ = confirmation.confirmed() => {
                    if store.held_withdrawal().is_none() {
                        store.discard_confirmation();
                        info!("withdrawal confirmation received, but no withdrawal is held");
                        continue;
                    }
                    info!("withdrawal confirmation received; reloading");
                    Signal { recheck: false }
                }
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    Signal { recheck: true }
                }
                _ = reminder.tick() => {
                    if let Some(h) = store.held_withdrawal() {
                        warn!(reason = %h.reason, resources = h.resources, "config withdrawal still held: confirm it (SIGHUP) or restore the files");
                    }
                    continue;
                }
            },
        };

        let mut recheck = first.recheck;
        let deadline = Instant::now() + options.max_delay;
        loop {
            let until = (Instant::now() + options.quiet).min(deadline);
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(s)) => {
                    recheck |= s.recheck;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }

        retry_at = None;
        store = match reload(store, &options, &mut stuck, &mut shutdown).await? {
            Reloaded::Done(s) => s,
            Reloaded::Abandoned(s) => {
                retry_at = Some(Instant::now() + options.read_timeout);
                s
            }
            Reloaded::Shutdown(s) => return Ok(s),
        };
        // A root the reload found missing is re-watched once it is back, even when no
        // removal event was seen (it went while the watch was being set up).
        let gone = store.roots_missing_now();
        if recheck || !gone.is_empty() {
            let mut removed: Vec<PathBuf> = removed
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            removed.extend(gone);
            watches.deactivate_missing(&removed);
            if watches.reactivate() {
                pending = Some(Signal { recheck: false });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RemoveKind};

    fn event(kind: EventKind) -> Event {
        Event::new(kind).add_path(PathBuf::from("/cfg/a.yaml"))
    }

    #[test]
    fn reads_are_ignored_writes_and_renames_count() {
        assert!(classify(&event(EventKind::Access(AccessKind::Open(AccessMode::Any)))).is_none());
        assert!(
            classify(&event(EventKind::Access(AccessKind::Close(
                AccessMode::Read
            ))))
            .is_none()
        );
        let close_write = classify(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Write,
        ))));
        assert!(close_write.is_some_and(|s| !s.recheck));
        let create = classify(&event(EventKind::Create(CreateKind::File)));
        assert!(create.is_some_and(|s| !s.recheck));
        let rename = classify(&event(EventKind::Modify(ModifyKind::Name(
            notify::event::RenameMode::Both,
        ))));
        assert!(rename.is_some_and(|s| s.recheck));
        let remove = classify(&event(EventKind::Remove(RemoveKind::Folder)));
        assert!(remove.is_some_and(|s| s.recheck));
    }

    #[test]
    fn files_are_watched_through_their_directory() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub)?;
        let file = dir.path().join("mesh.yaml");
        std::fs::write(&file, "")?;
        let mut options = StoreOptions::new(vec![sub.clone(), dir.path().join("a.yaml")]);
        options.mesh_file = Some(file);
        let got = targets(&options);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].path, sub);
        assert_eq!(got[0].mode, RecursiveMode::Recursive);
        assert_eq!(got[1].path, dir.path());
        assert_eq!(got[1].mode, RecursiveMode::NonRecursive);
        let rel = targets(&StoreOptions::new(vec![PathBuf::from("x.yaml")]));
        assert_eq!(rel[0].path, PathBuf::from("."));
        Ok(())
    }
}
