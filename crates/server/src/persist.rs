//! The last good configuration on disk, so that it survives a restart of the control plane.
//!
//! After every published snapshot the store writes the resources in force (with the file
//! and line each came from, and the snapshot version) to
//! `<state-dir>/`[`LAST_GOOD_DIR`]`/`[`STATE_FILE`]: written to a temporary file in the same
//! directory, flushed to disk, renamed over the old one, and the directory flushed, so a
//! crash at any point leaves either the old or the new file, never half of one.
//!
//! At start the store reads it back before reading the config files. A file that is broken
//! or unreadable then keeps the resources it held — its last good versions — exactly as
//! when it breaks while the control plane runs, instead of being withdrawn from every proxy.
//!
//! Each resource is stored as its Kubernetes manifest ([`Config::to_document`]) and decoded
//! and validated again when read back, so a state file written by another version of
//! Entryway, or edited by hand, cannot bring in a resource the current rules reject (such a
//! resource is dropped with a warning). The file also records the config paths it was
//! written for: a control plane started on other paths ignores it.
//!
//! [`Config::to_document`]: entryway_model::config::Config::to_document

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use entryway_model::api::MeshConfig;
use entryway_model::decode::{Outcome, decode_value};
use entryway_model::diag::{Echo, MAX_MESSAGE, bounded_middle};
use entryway_model::linemap::DocLines;
use serde::{Deserialize, Serialize};

use crate::store::AcceptedConfig;

/// Subdirectory of the state directory holding the last good configuration.
pub const LAST_GOOD_DIR: &str = "last-good";
/// File name of the last good configuration.
pub const STATE_FILE: &str = "config.json";
/// Format marker; another value is not read.
const FORMAT: &str = "entryway.last-good/v1";
/// Largest state file read back (a 10,000-entry mesh is about 10 MB).
const MAX_STATE_BYTES: u64 = 512 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    format: String,
    version: u64,
    paths: Vec<String>,
    saved_unix_seconds: u64,
    resources: Vec<StoredResource>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredResource {
    file: String,
    line: usize,
    document: serde_json::Value,
}

/// What [`LastGood::load`] found.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The state file.
    pub path: PathBuf,
    /// Snapshot version it was written at.
    pub version: u64,
    /// The resources (none marked last good yet: the first reload decides).
    pub accepted: Vec<Arc<AcceptedConfig>>,
    /// Resources that could not be read back, with why.
    pub dropped: Vec<String>,
}

/// The state file of one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastGood {
    dir: PathBuf,
}

/// `paths` in the form the state file compares them: absolute, symbolic links resolved
/// when they exist.
pub fn canonical_paths(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
        .collect()
}

impl LastGood {
    /// The last good configuration under `state_dir`.
    pub fn new(state_dir: &Path) -> LastGood {
        LastGood {
            dir: state_dir.join(LAST_GOOD_DIR),
        }
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Writes `accepted` as the configuration in force at `version` for `paths`, atomically.
    pub fn save(
        &self,
        version: u64,
        paths: &[String],
        accepted: &[Arc<AcceptedConfig>],
    ) -> io::Result<()> {
        let mut resources = Vec::with_capacity(accepted.len());
        for a in accepted {
            let document = a
                .config
                .to_document()
                .map_err(|e| io::Error::other(format!("encoding {}: {e}", a.key())))?;
            resources.push(StoredResource {
                file: a.file.clone(),
                line: a.line,
                document,
            });
        }
        let state = StateFile {
            format: FORMAT.to_string(),
            version,
            paths: paths.to_vec(),
            saved_unix_seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            resources,
        };
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        {
            let mut w = io::BufWriter::new(tmp.as_file_mut());
            serde_json::to_writer(&mut w, &state).map_err(io::Error::other)?;
            w.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(self.path()).map_err(|e| e.error)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Reads the last good configuration written for `paths`. `Ok(None)` when there is none
    /// (first start) or it was written for other paths; `Err` when the file exists but
    /// cannot be used (the caller warns and starts without it).
    pub fn load(
        &self,
        paths: &[String],
        default_namespace: &str,
        mesh: &MeshConfig,
    ) -> Result<Option<Restored>, String> {
        let path = self.path();
        let text = match crate::files::read_config_file(&path, MAX_STATE_BYTES) {
            Ok(t) => t,
            Err(crate::files::ReadError::Gone) => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let state: StateFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a last good configuration: {}",
                path.display(),
                bounded_middle(&e.to_string(), MAX_MESSAGE)
            )
        })?;
        if state.format != FORMAT {
            return Err(format!(
                "{}: format {:?}, expected {FORMAT:?}",
                path.display(),
                Echo(&state.format).to_string()
            ));
        }
        if state.paths != paths {
            tracing::info!(
                state = %path.display(),
                written_for = %Echo(&state.paths.join(",")),
                "the last good configuration on disk is for other config paths; not using it"
            );
            return Ok(None);
        }
        let mut accepted = Vec::with_capacity(state.resources.len());
        let mut dropped = Vec::new();
        for r in state.resources {
            let doc = decode_value(r.document, 0, DocLines::at(r.line), default_namespace);
            let what = format!(
                "{}:{} {} {}/{}",
                Echo(&r.file),
                r.line,
                Echo(&doc.kind),
                Echo(&doc.namespace),
                Echo(&doc.name)
            );
            let config = match doc.outcome {
                Outcome::Config(c) => c,
                Outcome::Invalid(report) => {
                    let why = report
                        .bounded()
                        .errors
                        .first()
                        .map(|i| i.to_string())
                        .unwrap_or_default();
                    dropped.push(format!("{what}: {why}"));
                    continue;
                }
                Outcome::Skipped(why) => {
                    dropped.push(format!("{what}: {}", bounded_middle(&why, MAX_MESSAGE)));
                    continue;
                }
            };
            let report = entryway_model::validate::validate(&config, mesh).bounded();
            if let Some(e) = report.errors.first() {
                dropped.push(format!("{what}: {e}"));
                continue;
            }
            let key = config.key();
            accepted.push(Arc::new(AcceptedConfig {
                kind: key.kind,
                namespace: key.namespace,
                name: key.name,
                file: r.file,
                line: r.line,
                last_good: false,
                withheld: false,
                config: *config,
            }));
        }
        Ok(Some(Restored {
            path,
            version: state.version,
            accepted,
            dropped,
        }))
    }
}
