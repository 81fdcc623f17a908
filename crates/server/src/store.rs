//! The config store: files → validated documents → last good config per resource → snapshots.
//!
//! Every reload reads all config files ([`Reader`]: regular files only, each within a size
//! bound, see [`crate::files`]), checks each document with the same [`check_text`] that
//! `entryway validate` runs, and merges the verdicts with the previous state by the pure
//! function [`apply`]:
//!
//! - a valid document is accepted;
//! - an invalid document is rejected on its own; if the same resource (kind/namespace/name)
//!   had a good version before, that version stays in force (`kept_last_good`);
//! - a file that does not parse at all, cannot be read, is not a regular file or is too
//!   large keeps every resource it held before;
//! - a resource whose document is gone is removed, unless the withdrawal guard holds the
//!   removal ([`crate::withdrawal`]: a config root gone, or too much at once);
//! - the same resource defined twice: the definition in the file that holds the version in
//!   force wins; between new definitions, the first in load order.
//!
//! A new [`Snapshot`] is published only when the accepted set (or the mesh config) changed, so
//! ADS streams wake up only for real changes. Rejections that come and go without changing
//! the accepted set are still visible to `/debug/configz` ([`ConfigStatus`]) and to readers of
//! the current snapshot, but do not wake anyone.
//!
//! With a state directory ([`StoreOptions::state_dir`]), every published configuration is
//! also written to disk ([`crate::persist`]) and read back at the next start before the
//! files, so a file found broken at start keeps its last good resources, as it would while
//! running.
//!
//! Reading (I/O, may block on a sick file system) and applying (CPU) are separate steps
//! ([`Store::reader`], [`Store::apply_read`]), so that the watcher can bound the first and
//! abandon a read that does not finish ([`crate::watch`]); [`Store::reload`] does both.
//!
//! Load order, which is also the order handed to the registry before its creation-time sort,
//! is the order of [`crate::files::list`]: the paths as given, each directory sorted,
//! then document index. Restarts over the same files give identical output.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use entryway_model::api::MeshConfig;
use entryway_model::check::{Checked, check_text};
use entryway_model::config::{Config, ConfigKey, Kind};
use entryway_model::decode::{Format, SyntaxError, mesh_from_str};
use entryway_model::diag::{Echo, Issue};
use entryway_model::registry::{ConfigSet, Registry};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::files::{DEFAULT_MAX_FILE_BYTES, ReadError, SkippedPath, read_config_file};
use crate::persist::{LastGood, canonical_paths};
use crate::shared::Shared;
use crate::snapshot::{Rejection, Snapshot};
use crate::withdrawal::{HeldWithdrawal, WithdrawalPolicy, guard};

/// Namespace given to documents that name none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Kind reported for a mesh config file that does not parse.
pub const MESH_CONFIG_KIND: &str = "MeshConfig";

/// Called with each file's path before it is read (fault injection in tests: a hook that
/// sleeps stands for a file system that hangs).
#[derive(Clone)]
pub struct ReadHook(pub Arc<dyn Fn(&Path) + Send + Sync>);

impl std::fmt::Debug for ReadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadHook")
    }
}

impl PartialEq for ReadHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What the store reads, and how it guards what it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Config files and directories (directories are read recursively).
    pub paths: Vec<PathBuf>,
    /// Mesh config file (YAML or JSON); Istio's defaults when `None`.
    pub mesh_file: Option<PathBuf>,
    /// Namespace for documents without one.
    pub default_namespace: String,
    /// Largest config file read; a larger one is refused (and keeps its last good resources).
    pub max_file_bytes: u64,
    /// Where the last good configuration is kept across restarts
    /// (`<state_dir>/last-good/`); `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
    /// When a reload's withdrawals are held back.
    pub withdrawal: WithdrawalPolicy,
    /// Apply a withdrawal the first reload would hold (an operator's confirmation given at
    /// start).
    pub confirm_withdrawal: bool,
    /// See [`ReadHook`]; `None` in production.
    pub read_hook: Option<ReadHook>,
}

impl StoreOptions {
    /// Options reading `paths` with default mesh config and namespace, the default size
    /// bound and withdrawal policy, and no state directory.
    pub fn new(paths: Vec<PathBuf>) -> StoreOptions {
        StoreOptions {
            paths,
            mesh_file: None,
            default_namespace: DEFAULT_NAMESPACE.to_string(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            state_dir: None,
            withdrawal: WithdrawalPolicy::default(),
            confirm_withdrawal: false,
            read_hook: None,
        }
    }
}

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A config path does not exist or cannot be listed.
    #[error("config path {}: {source}", path.display())]
    Path {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The mesh config cannot be read or parsed.
    #[error("mesh config {}: {message}", path.display())]
    Mesh {
        /// The mesh config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One file's verdict, the input of [`apply`].
#[derive(Debug, Clone)]
pub struct CheckedFile {
    /// The file as named in reports.
    pub path: String,
    /// What reading and checking it gave.
    pub result: FileResult,
}

/// What came of reading and checking one file.
#[derive(Debug, Clone)]
pub enum FileResult {
    /// Parsed; one verdict per document.
    Checked(Arc<Vec<Checked>>),
    /// Not YAML/JSON at all.
    Syntax(SyntaxError),
    /// Could not be read (permissions, not UTF-8, ...).
    Unreadable(String),
}

impl CheckedFile {
    /// Checks `text` as the file `path` would be checked.
    pub fn check(path: &str, text: &str, default_namespace: &str, mesh: &MeshConfig) -> Self {
        let result = match check_text(text, Format::from_file_name(path), default_namespace, mesh) {
            Ok(docs) => FileResult::Checked(Arc::new(docs)),
            Err(e) => FileResult::Syntax(e),
        };
        CheckedFile {
            path: path.to_string(),
            result,
        }
    }
}

/// An accepted object and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedConfig {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// File of the version in force.
    pub file: String,
    /// First line of that version's document.
    pub line: usize,
    /// True when the current document is invalid or unreadable and this is its last good
    /// version.
    pub last_good: bool,
    /// True when its document is gone but the withdrawal is held (see [`crate::withdrawal`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
    /// The object.
    #[serde(skip)]
    pub config: Config,
}

impl AcceptedConfig {
    /// The resource key.
    pub fn key(&self) -> ConfigKey {
        ConfigKey {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// A rejected document with the line of each of its errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// File, first line, kind/namespace/name, errors, whether the last good version stays.
    #[serde(flatten)]
    pub rejection: Rejection,
    /// Line of each error, in the order of `rejection.errors`.
    pub error_lines: Vec<usize>,
}

/// A document skipped because it is not a kind Entryway reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// File.
    pub file: String,
    /// First line of the document.
    pub line: usize,
    /// Kind as written.
    pub kind: String,
    /// Name as written.
    pub name: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The store's state between reloads: accepted objects in load order, rejected and
/// skipped documents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreState {
    /// Objects in force, in load order (file, then document index).
    pub accepted: Vec<Arc<AcceptedConfig>>,
    /// Documents rejected in the current files.
    pub rejected: Vec<Rejected>,
    /// Documents of other kinds.
    pub skipped: Vec<Skipped>,
}

impl StoreState {
    /// True when both states accept the same objects in the same order.
    pub fn same_configs(&self, other: &StoreState) -> bool {
        self.accepted.len() == other.accepted.len()
            && self
                .accepted
                .iter()
                .zip(&other.accepted)
                .all(|(a, b)| a.config == b.config)
    }

    /// The accepted objects as a [`ConfigSet`].
    pub fn config_set(&self) -> ConfigSet {
        ConfigSet::new(self.accepted.iter().map(|a| a.config.clone()).collect())
    }

    /// The rejections as [`Snapshot::rejected`] holds them.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.rejected.iter().map(|r| r.rejection.clone()).collect()
    }
}

/// The resource a document names, when its kind is one Entryway reads and it has a name.
fn document_key(c: &Checked) -> Option<ConfigKey> {
    if let Some(cfg) = c.config() {
        return Some(cfg.key());
    }
    let kind = Kind::parse(&c.doc.kind)?;
    if c.doc.name.is_empty() {
        return None;
    }
    Some(ConfigKey {
        kind,
        namespace: c.doc.namespace.clone(),
        name: c.doc.name.clone(),
    })
}

/// Merges the verdicts on the current files with the previous state (see the module docs
/// for the rules). Pure: the same inputs give the same state.
pub fn apply(prev: &StoreState, files: &[CheckedFile]) -> StoreState {
    let prev_by_key: HashMap<ConfigKey, &Arc<AcceptedConfig>> =
        prev.accepted.iter().map(|a| (a.key(), a)).collect();
    let mut prev_by_file: BTreeMap<&str, Vec<&Arc<AcceptedConfig>>> = BTreeMap::new();
    for a in &prev.accepted {
        prev_by_file.entry(a.file.as_str()).or_default().push(a);
    }

    // A resource in force keeps coming from its file while that file still defines it
    // (validly or not, or the file cannot be read): a definition of the same resource
    // elsewhere is a duplicate, whichever file sorts first, so copying a file never
    // replaces what is serving.
    let mut owner: HashMap<ConfigKey, &str> = HashMap::new();
    for file in files {
        let Some(held) = prev_by_file.get(file.path.as_str()) else {
            continue;
        };
        let claims: Option<HashSet<ConfigKey>> = match &file.result {
            FileResult::Checked(docs) => Some(docs.iter().filter_map(document_key).collect()),
            FileResult::Syntax(_) | FileResult::Unreadable(_) => None,
        };
        for a in held {
            let key = a.key();
            if claims.as_ref().is_none_or(|c| c.contains(&key)) {
                owner.entry(key).or_insert(file.path.as_str());
            }
        }
    }

    let mut next = StoreState::default();
    // Where each resource in force was defined this round: (file, line).
    let mut defined: HashMap<ConfigKey, (String, usize)> = HashMap::new();

    for file in files {
        match &file.result {
            FileResult::Checked(docs) => {
                for c in docs.iter() {
                    apply_document(&file.path, c, &prev_by_key, &owner, &mut defined, &mut next);
                }
            }
            FileResult::Syntax(_) | FileResult::Unreadable(_) => {
                // The file's text is unusable: keep what it held before.
                let mut kept = false;
                for a in prev_by_file.get(file.path.as_str()).into_iter().flatten() {
                    let key = a.key();
                    if defined.contains_key(&key) {
                        continue;
                    }
                    defined.insert(key, (a.file.clone(), a.line));
                    let mut carried = AcceptedConfig::clone(a);
                    carried.last_good = true;
                    carried.withheld = false;
                    next.accepted.push(Arc::new(carried));
                    kept = true;
                }
                let (line, message) = match &file.result {
                    FileResult::Syntax(e) => (
                        e.line,
                        format!("syntax error at column {}: {}", e.column, e.message),
                    ),
                    FileResult::Unreadable(why) => (1, format!("cannot read file: {why}")),
                    FileResult::Checked(_) => (1, String::new()),
                };
                next.rejected.push(Rejected {
                    rejection: Rejection {
                        file: file.path.clone(),
                        line,
                        kind: String::new(),
                        namespace: String::new(),
                        name: String::new(),
                        errors: vec![Issue {
                            path: String::new(),
                            message,
                        }],
                        kept_last_good: kept,
                    },
                    error_lines: vec![line],
                });
            }
        }
    }
    next
}

fn apply_document(
    file: &str,
    c: &Checked,
    prev_by_key: &HashMap<ConfigKey, &Arc<AcceptedConfig>>,
    owner: &HashMap<ConfigKey, &str>,
    defined: &mut HashMap<ConfigKey, (String, usize)>,
    next: &mut StoreState,
) {
    if let Some(reason) = &c.skipped {
        next.skipped.push(Skipped {
            file: file.to_string(),
            line: c.doc.line(),
            kind: c.doc.kind.clone(),
            name: c.doc.name.clone(),
            reason: reason.clone(),
        });
        return;
    }
    let key = document_key(c);
    let reject = |errors: Vec<Issue>, kept: bool| Rejected {
        error_lines: errors
            .iter()
            .map(|i| c.doc.lines.line_of(&i.path))
            .collect(),
        rejection: Rejection {
            file: file.to_string(),
            line: c.doc.line(),
            kind: c.doc.kind.clone(),
            namespace: c.doc.namespace.clone(),
            name: c.doc.name.clone(),
            errors,
            kept_last_good: kept,
        },
    };

    // Another file holds the version in force: this one is a duplicate, valid or not.
    if let Some(k) = key.as_ref()
        && let Some(owner_file) = owner.get(k).filter(|f| **f != file)
    {
        let line = prev_by_key.get(k).map_or(1, |p| p.line);
        let dup = Issue {
            path: "metadata.name".to_string(),
            message: format!(
                "duplicate: {k} is already defined at {owner_file}:{line}, which stays in force"
            ),
        };
        next.rejected.push(reject(vec![dup], false));
        return;
    }

    if let (Some(cfg), Some(key)) = (c.config(), key.as_ref()) {
        if let Some((other_file, other_line)) = defined.get(key) {
            let dup = Issue {
                path: "metadata.name".to_string(),
                message: format!(
                    "duplicate: {key} is already defined at {other_file}:{other_line}"
                ),
            };
            next.rejected.push(reject(vec![dup], false));
            return;
        }
        defined.insert(key.clone(), (file.to_string(), c.doc.line()));
        next.accepted.push(Arc::new(AcceptedConfig {
            kind: key.kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            file: file.to_string(),
            line: c.doc.line(),
            last_good: false,
            withheld: false,
            config: cfg.clone(),
        }));
        return;
    }

    // Invalid: keep the last good version, unless this round already defines the resource.
    let kept = key.as_ref().and_then(|k| {
        if defined.contains_key(k) {
            return None;
        }
        prev_by_key.get(k).map(|prev| (k.clone(), *prev))
    });
    let kept_last_good = kept.is_some();
    if let Some((k, prev)) = kept {
        defined.insert(k, (prev.file.clone(), prev.line));
        let mut carried = AcceptedConfig::clone(prev);
        carried.last_good = true;
        carried.withheld = false;
        next.accepted.push(Arc::new(carried));
    }
    next.rejected
        .push(reject(c.report.errors.clone(), kept_last_good));
}

/// A path that was not walked, as `/debug/configz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedPathStatus {
    /// The path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The last good configuration read from disk at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoredStatus {
    /// The state file.
    pub file: String,
    /// Snapshot version it was written at.
    pub version: u64,
    /// Resources read back.
    pub resources: usize,
    /// Resources that could not be read back, with why.
    pub dropped: Vec<String>,
}

/// The accepted and rejected configuration as `/debug/configz` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConfigStatus {
    /// Version of the snapshot in force.
    pub version: u64,
    /// Files read by the last reload, in load order.
    pub files: Vec<String>,
    /// The mesh config file, if any.
    pub mesh_file: Option<String>,
    /// Objects in force.
    pub accepted: Vec<Arc<AcceptedConfig>>,
    /// Rejected documents with reasons.
    pub rejected: Vec<Rejected>,
    /// Documents of kinds Entryway does not read.
    pub skipped: Vec<Skipped>,
    /// Directories not walked (symbolic link loops, too deep, unreadable).
    pub skipped_paths: Vec<SkippedPathStatus>,
    /// Resources in force from their last good version because their current document or
    /// file is invalid, unreadable, not a regular file or too large.
    pub last_good: usize,
    /// A withdrawal held back, awaiting confirmation.
    pub withdrawal_held: Option<HeldWithdrawal>,
    /// The last good configuration read from disk at start, if any.
    pub restored: Option<RestoredStatus>,
    /// Where the last good configuration is kept, if anywhere.
    pub state_file: Option<String>,
    /// Why the last reload was abandoned (cleared by the next one that completes).
    pub reload_error: Option<String>,
    /// Why the last good configuration could not be written (cleared by the next write).
    pub persist_error: Option<String>,
}

/// What one [`Store::reload`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadOutcome {
    /// The version published, when the accepted set changed.
    pub published: Option<u64>,
    /// Rejections not present in the previous reload.
    pub new_rejections: usize,
    /// Files read.
    pub files: usize,
    /// Time spent.
    pub elapsed: Duration,
    /// The reload was abandoned (a config path could not be listed); the state is unchanged.
    pub aborted: Option<String>,
    /// Resources kept although their documents are gone (a held withdrawal).
    pub held: Option<usize>,
}

/// A cached check of one file, reused while its text is unchanged.
#[derive(Debug)]
struct CachedFile {
    text: String,
    result: FileResult,
}

/// What became of one config path when it was listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootState {
    /// Listed; this many config files.
    Listed(usize),
    /// It does not exist.
    Missing,
}

/// Everything one reload reads from disk (the I/O half of a reload).
#[derive(Debug)]
pub struct ReadSet {
    mesh: Option<Result<String, String>>,
    roots: Vec<(PathBuf, RootState)>,
    files: Vec<(PathBuf, Result<String, ReadError>)>,
    skipped: Vec<SkippedPath>,
    failed: Option<String>,
    elapsed: Duration,
}

impl ReadSet {
    /// Time the read took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// Reads what a store reads; cheap to clone and independent of the store, so it can run on
/// a thread that may be abandoned.
#[derive(Debug, Clone)]
pub struct Reader {
    paths: Vec<PathBuf>,
    mesh_file: Option<PathBuf>,
    max_file_bytes: u64,
    hook: Option<ReadHook>,
}

impl Reader {
    /// Lists the config paths and reads every file (blocking).
    pub fn read(&self) -> ReadSet {
        let started = Instant::now();
        let mesh = self.mesh_file.as_ref().map(|p| {
            if let Some(h) = &self.hook {
                (h.0)(p);
            }
            read_config_file(p, self.max_file_bytes).map_err(|e| e.to_string())
        });
        let mut out = ReadSet {
            mesh,
            roots: Vec::new(),
            files: Vec::new(),
            skipped: Vec::new(),
            failed: None,
            elapsed: Duration::ZERO,
        };
        let mut seen = BTreeSet::new();
        let mut names = Vec::new();
        for p in &self.paths {
            match crate::files::list(std::slice::from_ref(p)) {
                Ok(listing) => {
                    out.roots
                        .push((p.clone(), RootState::Listed(listing.files.len())));
                    for f in listing.files {
                        if seen.insert(f.clone()) {
                            names.push(f);
                        }
                    }
                    out.skipped.extend(listing.skipped);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !p.exists() => {
                    out.roots.push((p.clone(), RootState::Missing));
                }
                Err(e) => {
                    out.failed = Some(e.to_string());
                    break;
                }
            }
        }
        if out.failed.is_none() {
            for f in names {
                if let Some(h) = &self.hook {
                    (h.0)(&f);
                }
                let text = read_config_file(&f, self.max_file_bytes);
                out.files.push((f, text));
            }
        }
        out.elapsed = started.elapsed();
        out
    }
}

/// An operator's confirmation of a held withdrawal, shared between the store and whoever
/// receives it (a SIGHUP handler).
#[derive(Debug, Default)]
pub struct WithdrawalConfirmation {
    pending: AtomicBool,
    notify: Notify,
}

impl WithdrawalConfirmation {
    /// Confirms: the next reload applies the withdrawal it would hold.
    pub fn confirm(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Resolves at the next [`Self::confirm`] (also one made before the call).
    pub async fn confirmed(&self) {
        self.notify.notified().await;
    }

    fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }
}

/// The config store: reads the config paths, keeps the last good version of every resource
/// and publishes [`Snapshot`]s.
#[derive(Debug)]
pub struct Store {
    options: StoreOptions,
    mesh: Arc<MeshConfig>,
    mesh_text: Option<String>,
    mesh_rejection: Option<Rejected>,
    cache: HashMap<PathBuf, CachedFile>,
    state: StoreState,
    version: u64,
    published_once: bool,
    tx: watch::Sender<Arc<Snapshot>>,
    shared: Arc<Shared>,
    last_good: Option<LastGood>,
    canonical_paths: Vec<String>,
    /// Config roots seen missing and not back with files since.
    missing_roots: BTreeSet<PathBuf>,
    /// Config roots the last reload found missing.
    missing_now: Vec<PathBuf>,
    held: Option<HeldWithdrawal>,
    confirmation: Arc<WithdrawalConfirmation>,
    restored: Option<RestoredStatus>,
    persist_error: Option<String>,
    skipped_paths: Vec<SkippedPathStatus>,
    files_read: Vec<String>,
}

impl Store {
    /// Reads the mesh config, the last good configuration on disk (with a state directory)
    /// and the config paths, publishes the first snapshot and returns the store with the
    /// state it shares with ADS and admin.
    ///
    /// Fails when the mesh config is unusable, or a config path does not exist and there
    /// is no last good configuration on disk to serve meanwhile; invalid documents do not
    /// fail it (they are rejected one by one).
    pub fn open(options: StoreOptions) -> Result<(Store, Arc<Shared>), StoreError> {
        let (mesh, mesh_text) = match &options.mesh_file {
            None => (MeshConfig::default(), None),
            Some(path) => {
                let text = read_config_file(path, options.max_file_bytes).map_err(|e| {
                    StoreError::Mesh {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                })?;
                let mesh = mesh_from_str(&text).map_err(|message| StoreError::Mesh {
                    path: path.clone(),
                    message,
                })?;
                (mesh, Some(text))
            }
        };
        let canonical = canonical_paths(&options.paths);
        let last_good = options.state_dir.as_deref().map(LastGood::new);
        let restored = last_good.as_ref().and_then(|lg| {
            match lg.load(&canonical, &options.default_namespace, &mesh) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "cannot use the last good configuration on disk; starting without it");
                    None
                }
            }
        });
        let mut missing = BTreeSet::new();
        for p in &options.paths {
            if let Err(source) = std::fs::metadata(p) {
                if restored.is_none() || source.kind() != io::ErrorKind::NotFound {
                    return Err(StoreError::Path {
                        path: p.clone(),
                        source,
                    });
                }
                warn!(path = %p.display(), "config path is missing; serving the last good configuration from disk until it returns");
                missing.insert(p.clone());
            }
        }
        let (tx, rx) = watch::channel(Arc::new(Snapshot::empty(mesh.clone())));
        let shared = Shared::new(rx);
        let mut state = StoreState::default();
        let mut version = 0;
        let mut restored_status = None;
        if let Some(r) = restored {
            for d in &r.dropped {
                warn!(resource = %d, "a resource of the last good configuration on disk is no longer valid; dropped");
            }
            info!(
                file = %r.path.display(),
                version = r.version,
                resources = r.accepted.len(),
                "read the last good configuration from disk"
            );
            restored_status = Some(RestoredStatus {
                file: r.path.display().to_string(),
                version: r.version,
                resources: r.accepted.len(),
                dropped: r.dropped,
            });
            state.accepted = r.accepted;
            version = r.version;
        }
        let confirmation = Arc::new(WithdrawalConfirmation::default());
        if options.confirm_withdrawal {
            confirmation.pending.store(true, Ordering::SeqCst);
        }
        let mut store = Store {
            options,
            mesh: Arc::new(mesh),
            mesh_text,
            mesh_rejection: None,
            cache: HashMap::new(),
            state,
            version,
            published_once: false,
            tx,
            shared: Arc::clone(&shared),
            last_good,
            canonical_paths: canonical,
            missing_roots: missing,
            missing_now: Vec::new(),
            held: None,
            confirmation,
            restored: restored_status,
            persist_error: None,
            skipped_paths: Vec::new(),
            files_read: Vec::new(),
        };
        let outcome = store.reload();
        // A confirmation given at start is for the first reload only.
        store.confirmation.take();
        if let Some(why) = outcome.aborted {
            return Err(StoreError::Path {
                path: store.options.paths.first().cloned().unwrap_or_default(),
                source: io::Error::other(why),
            });
        }
        Ok((store, shared))
    }

    /// What the store reads.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// A receiver of the snapshots this store publishes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// The state shared with ADS and admin.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The version of the snapshot in force.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The current state.
    pub fn state(&self) -> &StoreState {
        &self.state
    }

    /// The withdrawal held back, if any.
    pub fn held_withdrawal(&self) -> Option<&HeldWithdrawal> {
        self.held.as_ref()
    }

    /// Where to confirm a held withdrawal.
    pub fn confirmation(&self) -> Arc<WithdrawalConfirmation> {
        Arc::clone(&self.confirmation)
    }

    /// The config roots the last reload found missing.
    pub fn roots_missing_now(&self) -> Vec<PathBuf> {
        self.missing_now.clone()
    }

    /// Drops a confirmation given while nothing was held (so that it cannot approve a
    /// later accident). Returns whether there was one.
    pub fn discard_confirmation(&self) -> bool {
        self.confirmation.take()
    }

    /// The reading half of a reload, to run where it may block.
    pub fn reader(&self) -> Reader {
        Reader {
            paths: self.options.paths.clone(),
            mesh_file: self.options.mesh_file.clone(),
            max_file_bytes: self.options.max_file_bytes,
            hook: self.options.read_hook.clone(),
        }
    }

    /// Re-reads every file and publishes a new snapshot if the accepted set changed.
    /// Blocking (file I/O and validation): call it from a blocking context.
    pub fn reload(&mut self) -> ReloadOutcome {
        let read = self.reader().read();
        self.apply_read(read)
    }

    /// Records a reload abandoned before it could apply (its read did not finish in time):
    /// the configuration in force stays, `/debug/configz` and the metrics say why.
    pub fn note_abandoned(&mut self, why: String) {
        warn!(error = %why, "config reload abandoned; previous config stays in force");
        self.shared
            .metrics
            .reload_failures
            .fetch_add(1, Ordering::Relaxed);
        let mut status = ConfigStatus::clone(&self.shared.config_status());
        status.reload_error = Some(why);
        self.shared.set_config_status(status);
    }

    /// The applying half of a reload: checks what `read` holds and publishes a new
    /// snapshot if the accepted set changed. Blocking (validation).
    pub fn apply_read(&mut self, read: ReadSet) -> ReloadOutcome {
        let started = Instant::now();
        let mesh_changed = self.apply_mesh(read.mesh);

        if let Some(why) = read.failed {
            self.note_abandoned(why.clone());
            return ReloadOutcome {
                published: None,
                new_rejections: 0,
                files: 0,
                elapsed: started.elapsed() + read.elapsed,
                aborted: Some(why),
                held: self.held.as_ref().map(|h| h.resources),
            };
        }
        self.missing_now = read
            .roots
            .iter()
            .filter(|(_, s)| *s == RootState::Missing)
            .map(|(r, _)| r.clone())
            .collect();
        for (root, state) in &read.roots {
            match state {
                RootState::Missing => {
                    if self.missing_roots.insert(root.clone()) {
                        warn!(path = %root.display(), "config path is gone; its resources stay in force until it returns or the withdrawal is confirmed");
                    }
                }
                // Back with files: what it holds now is what counts. Back empty (a
                // directory re-created and not yet filled) is still gone.
                RootState::Listed(n) if *n > 0 => {
                    if self.missing_roots.remove(root) {
                        info!(path = %root.display(), "config path is back");
                    }
                }
                RootState::Listed(_) => {}
            }
        }
        let skipped: Vec<SkippedPathStatus> = read
            .skipped
            .iter()
            .map(|s| SkippedPathStatus {
                path: s.path.display().to_string(),
                reason: s.reason.clone(),
            })
            .collect();
        if skipped != self.skipped_paths {
            for s in skipped.iter().filter(|s| !self.skipped_paths.contains(s)) {
                warn!(path = %s.path, reason = %s.reason, "config directory skipped");
            }
            self.skipped_paths = skipped;
        }

        let mut checked = Vec::with_capacity(read.files.len());
        let mut cache = HashMap::with_capacity(read.files.len());
        for (path, text) in read.files {
            let name = path.display().to_string();
            let result = match text {
                // Deleted between listing and reading: the file is gone.
                Err(ReadError::Gone) => continue,
                Err(e) => FileResult::Unreadable(e.to_string()),
                Ok(text) => match self.cache.remove(&path) {
                    Some(c) if c.text == text => {
                        let result = c.result.clone();
                        cache.insert(path, c);
                        result
                    }
                    _ => {
                        let f = CheckedFile::check(
                            &name,
                            &text,
                            &self.options.default_namespace,
                            &self.mesh,
                        );
                        cache.insert(
                            path,
                            CachedFile {
                                text,
                                result: f.result.clone(),
                            },
                        );
                        f.result
                    }
                },
            };
            checked.push(CheckedFile { path: name, result });
        }
        self.cache = cache;

        let mut next = apply(&self.state, &checked);
        let missing: Vec<PathBuf> = self.missing_roots.iter().cloned().collect();
        let held = guard(&self.state, &mut next, &missing, self.options.withdrawal);
        self.held = match held {
            Some(h) if self.confirmation.take() => {
                warn!(reason = %h.reason, resources = h.resources, "withdrawal confirmed; the resources are removed");
                next.accepted.retain(|a| !a.withheld);
                self.missing_roots.clear();
                None
            }
            Some(h) => {
                warn!(
                    reason = %h.reason,
                    resources = h.resources,
                    of = h.of,
                    sample = %h.sample.join(", "),
                    "config withdrawal held: the resources stay in force until their files return or the withdrawal is confirmed (SIGHUP, or --confirm-withdrawal at start)"
                );
                Some(h)
            }
            None => None,
        };
        if let Some(r) = &self.mesh_rejection {
            next.rejected.push(r.clone());
        }

        let new_rejections = self.report_rejections(&next);
        let configs_changed = !next.same_configs(&self.state);
        let rejections_changed = next.rejected != self.state.rejected;
        self.state = next;

        let publish = configs_changed || mesh_changed || !self.published_once;
        let next_version = if publish {
            self.version + 1
        } else {
            self.version
        };
        if publish {
            self.persist(next_version);
        }
        self.files_read = checked.iter().map(|f| f.path.clone()).collect();
        // The status first: whoever sees the new snapshot also sees its status.
        self.shared.set_config_status(self.status(next_version));

        let mut published = None;
        if publish {
            self.version = next_version;
            self.published_once = true;
            let configs = self.state.config_set();
            let registry = Registry::build(&configs, &self.mesh);
            let snapshot = Snapshot {
                version: self.version,
                mesh: Arc::clone(&self.mesh),
                configs: Arc::new(configs),
                registry: Arc::new(registry),
                rejected: Arc::new(self.state.rejections()),
            };
            self.tx.send_replace(Arc::new(snapshot));
            self.shared
                .metrics
                .config_versions
                .fetch_add(1, Ordering::Relaxed);
            published = Some(self.version);
        } else if rejections_changed {
            // Same accepted set: refresh the rejections readers see without waking ADS.
            let rejected = Arc::new(self.state.rejections());
            self.tx.send_if_modified(|s| {
                let mut updated = (**s).clone();
                updated.rejected = rejected;
                *s = Arc::new(updated);
                false
            });
        }

        let elapsed = started.elapsed() + read.elapsed;
        if let Some(version) = published {
            info!(
                version,
                accepted = self.state.accepted.len(),
                rejected = self.state.rejected.len(),
                files = checked.len(),
                elapsed_ms = elapsed.as_secs_f64() * 1000.0,
                "config snapshot published"
            );
        }
        ReloadOutcome {
            published,
            new_rejections,
            files: checked.len(),
            elapsed,
            aborted: None,
            held: self.held.as_ref().map(|h| h.resources),
        }
    }

    fn status(&self, version: u64) -> ConfigStatus {
        ConfigStatus {
            version,
            files: self.files_read.clone(),
            mesh_file: self
                .options
                .mesh_file
                .as_ref()
                .map(|p| p.display().to_string()),
            accepted: self.state.accepted.clone(),
            rejected: self.state.rejected.clone(),
            skipped: self.state.skipped.clone(),
            skipped_paths: self.skipped_paths.clone(),
            last_good: self.state.accepted.iter().filter(|a| a.last_good).count(),
            withdrawal_held: self.held.clone(),
            restored: self.restored.clone(),
            state_file: self
                .last_good
                .as_ref()
                .map(|lg| lg.path().display().to_string()),
            reload_error: None,
            persist_error: self.persist_error.clone(),
        }
    }

    /// Writes the state in force to disk (with a state directory).
    fn persist(&mut self, version: u64) {
        let Some(lg) = &self.last_good else { return };
        match lg.save(version, &self.canonical_paths, &self.state.accepted) {
            Ok(()) => self.persist_error = None,
            Err(e) => {
                let why = format!("{}: {e}", lg.path().display());
                warn!(error = %why, "cannot write the last good configuration; it will be lost at restart");
                self.persist_error = Some(why);
            }
        }
    }

    /// Applies the mesh config file's text. Returns true when the mesh config in force
    /// changed.
    fn apply_mesh(&mut self, read: Option<Result<String, String>>) -> bool {
        let (Some(path), Some(read)) = (self.options.mesh_file.clone(), read) else {
            return false;
        };
        let file = path.display().to_string();
        let text = match read {
            Ok(t) => t,
            Err(e) => {
                self.mesh_rejection =
                    Some(mesh_rejected(&file, 1, format!("cannot read file: {e}")));
                return false;
            }
        };
        if self.mesh_text.as_deref() == Some(text.as_str()) {
            self.mesh_rejection = None;
            return false;
        }
        match mesh_from_str(&text) {
            Ok(mesh) => {
                self.mesh_text = Some(text);
                self.mesh_rejection = None;
                if *self.mesh == mesh {
                    return false;
                }
                self.mesh = Arc::new(mesh);
                // Validation depends on the mesh config (default exportTo, ...).
                self.cache.clear();
                true
            }
            Err(message) => {
                self.mesh_rejection = Some(mesh_rejected(
                    &file,
                    1,
                    entryway_model::diag::bounded_middle(
                        &message,
                        entryway_model::diag::MAX_MESSAGE,
                    )
                    .into_owned(),
                ));
                false
            }
        }
    }

    /// Logs and counts the rejections that are new since the last reload.
    fn report_rejections(&self, next: &StoreState) -> usize {
        let mut new = 0;
        for r in &next.rejected {
            if self.state.rejected.contains(r) {
                continue;
            }
            new += 1;
            let j = &r.rejection;
            let kind = if j.kind.is_empty() {
                "file"
            } else {
                j.kind.as_str()
            };
            self.shared.metrics.rejected_configs.add(kind, 1);
            let line = r.error_lines.first().copied().unwrap_or(j.line);
            warn!(
                location = %format!("{}:{line}", Echo(&j.file)),
                resource = %resource_name(j),
                errors = %describe_errors(r),
                kept_last_good = j.kept_last_good,
                "config rejected"
            );
        }
        new
    }
}

fn mesh_rejected(file: &str, line: usize, message: String) -> Rejected {
    Rejected {
        rejection: Rejection {
            file: file.to_string(),
            line,
            kind: MESH_CONFIG_KIND.to_string(),
            namespace: String::new(),
            name: String::new(),
            errors: vec![Issue {
                path: String::new(),
                message,
            }],
            kept_last_good: true,
        },
        error_lines: vec![line],
    }
}

/// `Kind namespace/name`, with placeholders for what the document does not say.
pub fn resource_name(r: &Rejection) -> String {
    if r.kind.is_empty() && r.name.is_empty() {
        return "(whole file)".to_string();
    }
    let kind = if r.kind.is_empty() {
        "<unknown kind>"
    } else {
        &r.kind
    };
    let name = if r.name.is_empty() {
        "<unnamed>"
    } else {
        &r.name
    };
    if r.namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {}/{name}", r.namespace)
    }
}

/// `field (line N): reason; ...` for every error of a rejection.
pub fn describe_errors(r: &Rejected) -> String {
    r.rejection
        .errors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let line = r.error_lines.get(i).copied().unwrap_or(r.rejection.line);
            if e.path.is_empty() {
                format!("(line {line}): {}", e.message)
            } else {
                format!("{} (line {line}): {}", e.path, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn se(name: &str, host: &str, port: u32) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n  hosts: [{host}]\n  ports:\n  - number: {port}\n    name: http\n    protocol: HTTP\n  resolution: DNS\n"
        )
    }

    fn file(path: &str, text: &str) -> CheckedFile {
        CheckedFile::check(path, text, DEFAULT_NAMESPACE, &MeshConfig::default())
    }

    fn names(s: &StoreState) -> Vec<String> {
        s.accepted
            .iter()
            .map(|a| {
                let port = match &a.config.spec {
                    entryway_model::config::Spec::ServiceEntry(se) => {
                        se.ports.first().map(|p| p.number).unwrap_or(0)
                    }
                    _ => 0,
                };
                format!("{}:{}{}", a.name, port, if a.last_good { "*" } else { "" })
            })
            .collect()
    }

    fn rejected(s: &StoreState) -> Vec<String> {
        s.rejected
            .iter()
            .map(|r| {
                format!(
                    "{}:{} {} kept={}",
                    r.rejection.file,
                    r.rejection.line,
                    resource_name(&r.rejection),
                    r.rejection.kept_last_good
                )
            })
            .collect()
    }

    /// Applies each round of files in turn, starting from the empty state.
    fn rounds(rounds: &[Vec<CheckedFile>]) -> StoreState {
        let mut state = StoreState::default();
        for files in rounds {
            state = apply(&state, files);
        }
        state
    }

    const BAD_PORT: u32 = 0;

    #[test]
    fn last_good_semantics_table() {
        struct Case {
            name: &'static str,
            rounds: Vec<Vec<CheckedFile>>,
            accepted: Vec<&'static str>,
            rejected: Vec<&'static str>,
        }
        let a = |p| file("a.yaml", &se("a", "a.example.com", p));
        let b = |p| file("b.yaml", &se("b", "b.example.com", p));
        let cases = vec![
            Case {
                name: "valid documents are accepted in load order",
                rounds: vec![vec![a(80), b(81)]],
                accepted: vec!["a:80", "b:81"],
                rejected: vec![],
            },
            Case {
                name: "an invalid new resource is rejected, the rest applies",
                rounds: vec![vec![a(BAD_PORT), b(81)]],
                accepted: vec!["b:81"],
                rejected: vec!["a.yaml:1 ServiceEntry default/a kept=false"],
            },
            Case {
                name: "an invalid edit keeps the last good version",
                rounds: vec![vec![a(80), b(81)], vec![a(BAD_PORT), b(82)]],
                accepted: vec!["a:80*", "b:82"],
                rejected: vec!["a.yaml:1 ServiceEntry default/a kept=true"],
            },
            Case {
                name: "last good survives several invalid rounds",
                rounds: vec![vec![a(80)], vec![a(BAD_PORT)], vec![a(BAD_PORT)]],
                accepted: vec!["a:80*"],
                rejected: vec!["a.yaml:1 ServiceEntry default/a kept=true"],
            },
            Case {
                name: "a fixed document replaces the last good version",
                rounds: vec![vec![a(80)], vec![a(BAD_PORT)], vec![a(90)]],
                accepted: vec!["a:90"],
                rejected: vec![],
            },
            Case {
                name: "a removed document removes the resource",
                rounds: vec![vec![a(80), b(81)], vec![b(81)]],
                accepted: vec!["b:81"],
                rejected: vec![],
            },
            Case {
                name: "a removed document removes even a last good version",
                rounds: vec![vec![a(80), b(81)], vec![a(BAD_PORT), b(81)], vec![b(81)]],
                accepted: vec!["b:81"],
                rejected: vec![],
            },
            Case {
                name: "a syntax error keeps everything the file held",
                rounds: vec![
                    vec![a(80), b(81)],
                    vec![file("a.yaml", "kind: [unclosed\n  x: {"), b(81)],
                ],
                accepted: vec!["a:80*", "b:81"],
                rejected: vec!["a.yaml:2 (whole file) kept=true"],
            },
            Case {
                name: "a syntax error in a new file keeps nothing",
                rounds: vec![vec![file("a.yaml", "kind: [unclosed\n  x: {")]],
                accepted: vec![],
                rejected: vec!["a.yaml:2 (whole file) kept=false"],
            },
            Case {
                name: "an unreadable file keeps what it held",
                rounds: vec![
                    vec![a(80)],
                    vec![CheckedFile {
                        path: "a.yaml".into(),
                        result: FileResult::Unreadable("permission denied".into()),
                    }],
                ],
                accepted: vec!["a:80*"],
                rejected: vec!["a.yaml:1 (whole file) kept=true"],
            },
            Case {
                name: "the first of two definitions wins",
                rounds: vec![vec![
                    a(80),
                    file("c.yaml", &se("a", "other.example.com", 90)),
                ]],
                accepted: vec!["a:80"],
                rejected: vec!["c.yaml:1 ServiceEntry default/a kept=false"],
            },
            Case {
                name: "a duplicate in a file sorting first never displaces the one in force",
                rounds: vec![
                    vec![a(80)],
                    vec![file("0copy.yaml", &se("a", "a.example.com", 90)), a(80)],
                ],
                accepted: vec!["a:80"],
                rejected: vec!["0copy.yaml:1 ServiceEntry default/a kept=false"],
            },
            Case {
                name: "nor does it when the one in force becomes invalid",
                rounds: vec![
                    vec![a(80)],
                    vec![
                        file("0copy.yaml", &se("a", "a.example.com", 90)),
                        a(BAD_PORT),
                    ],
                ],
                accepted: vec!["a:80*"],
                rejected: vec![
                    "0copy.yaml:1 ServiceEntry default/a kept=false",
                    "a.yaml:1 ServiceEntry default/a kept=true",
                ],
            },
            Case {
                name: "nor when its file does not parse",
                rounds: vec![
                    vec![a(80)],
                    vec![
                        file("0copy.yaml", &se("a", "a.example.com", 90)),
                        file("a.yaml", "kind: [unclosed\n  x: {"),
                    ],
                ],
                accepted: vec!["a:80*"],
                rejected: vec![
                    "0copy.yaml:1 ServiceEntry default/a kept=false",
                    "a.yaml:2 (whole file) kept=true",
                ],
            },
            Case {
                name: "the copy takes over once the original is gone",
                rounds: vec![
                    vec![a(80)],
                    vec![file("0copy.yaml", &se("a", "a.example.com", 90)), a(80)],
                    vec![file("0copy.yaml", &se("a", "a.example.com", 90))],
                ],
                accepted: vec!["a:90"],
                rejected: vec![],
            },
            Case {
                name: "a resource moved to another file keeps applying",
                rounds: vec![
                    vec![a(80)],
                    vec![file("z.yaml", &se("a", "a.example.com", 80))],
                ],
                accepted: vec!["a:80"],
                rejected: vec![],
            },
            Case {
                name: "an invalid document in a multi-document file is rejected alone",
                rounds: vec![
                    vec![file(
                        "m.yaml",
                        &format!(
                            "{}---\n{}",
                            se("a", "a.example.com", 80),
                            se("b", "b.example.com", 81)
                        ),
                    )],
                    vec![file(
                        "m.yaml",
                        &format!(
                            "{}---\n{}",
                            se("a", "a.example.com", BAD_PORT),
                            se("b", "b.example.com", 82)
                        ),
                    )],
                ],
                accepted: vec!["a:80*", "b:82"],
                rejected: vec!["m.yaml:1 ServiceEntry default/a kept=true"],
            },
            Case {
                name: "a document without a name cannot keep a last good version",
                rounds: vec![
                    vec![a(80)],
                    vec![file(
                        "a.yaml",
                        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {}\nspec:\n  hosts: [a.example.com]\n",
                    )],
                ],
                accepted: vec![],
                rejected: vec!["a.yaml:1 ServiceEntry default/<unnamed> kept=false"],
            },
            Case {
                name: "other kinds are skipped, not rejected",
                rounds: vec![vec![file(
                    "k.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
                )]],
                accepted: vec![],
                rejected: vec![],
            },
        ];
        for case in cases {
            let state = rounds(&case.rounds);
            assert_eq!(names(&state), case.accepted, "accepted: {}", case.name);
            assert_eq!(rejected(&state), case.rejected, "rejected: {}", case.name);
        }
    }

    #[test]
    fn rejection_names_field_and_line() {
        let state = apply(
            &StoreState::default(),
            &[file("a.yaml", &se("a", "a.example.com", BAD_PORT))],
        );
        let r = &state.rejected[0];
        assert_eq!(r.rejection.errors[0].path, "spec.ports[0].number");
        assert_eq!(r.error_lines.first(), Some(&8), "{r:?}");
        let text = describe_errors(r);
        assert!(
            text.starts_with("spec.ports[0].number (line 8): "),
            "{text}"
        );
    }

    #[test]
    fn apply_is_deterministic() {
        let files = vec![
            file("a.yaml", &se("a", "a.example.com", 80)),
            file("b.yaml", &se("b", "b.example.com", BAD_PORT)),
        ];
        let one = apply(&StoreState::default(), &files);
        let two = apply(&StoreState::default(), &files);
        assert_eq!(one, two);
        assert!(one.same_configs(&two));
    }
}
