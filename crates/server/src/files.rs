//! Reading configuration from the file system: which files a set of paths names, and their
//! text within a size bound.
//!
//! Only regular files (and symbolic links to them) are read. Anything else that carries a
//! config file name — a FIFO, a socket, a device such as a symbolic link to `/dev/zero` —
//! is reported as unreadable instead: opening a FIFO for reading blocks until a writer
//! comes, and a device can be endless, so either would stall every later reload (and, at
//! start, the whole control plane). Files are opened with `O_NONBLOCK` and checked on the
//! open descriptor, so a file swapped for a FIFO between listing and reading cannot block
//! either. A file larger than the bound is refused before it is parsed.
//!
//! Directory walks follow symbolic links to directories (a Kubernetes ConfigMap volume is
//! made of them) but never read one directory twice, so a link loop ends the walk of that
//! branch with a report instead of recursing until the path is too long.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Default largest config file read (per file). Ten thousand ServiceEntries in one file are
/// about 3 MiB of YAML; a file beyond this is much more likely a mistake (a log, a dump, a
/// link to a device) than configuration.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 8 << 20;

/// Deepest directory nesting walked under a config path.
pub const MAX_DEPTH: usize = 32;

/// True for the file names Entryway reads: `*.yaml`, `*.yml`, `*.json`.
pub fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yaml" | "yml" | "json")
    )
}

/// What a set of paths names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Config files in load order: the paths as given, each directory sorted.
    pub files: Vec<PathBuf>,
    /// Directories that were not walked, with the reason.
    pub skipped: Vec<SkippedPath>,
}

/// A path left out of a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPath {
    /// The path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Expands files and directories (recursively) into the config files they name, sorted
/// within each directory so that loading order is deterministic. A file named explicitly
/// is taken whatever its extension; hidden entries (`.git`, editor swap files) under a
/// directory are skipped. Fails when a path cannot be listed (it does not exist, or a
/// directory cannot be read).
pub fn list(paths: &[PathBuf]) -> io::Result<Listing> {
    let mut out = Listing::default();
    let mut seen_dirs = HashSet::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        if meta.is_dir() {
            walk(p, &meta, 0, &mut seen_dirs, &mut out)?;
        } else {
            out.files.push(p.clone());
        }
    }
    Ok(out)
}

/// [`list`], files only.
pub fn expand_paths(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    list(paths).map(|l| l.files)
}

fn walk(
    dir: &Path,
    meta: &std::fs::Metadata,
    depth: usize,
    seen_dirs: &mut HashSet<(u64, u64)>,
    out: &mut Listing,
) -> io::Result<()> {
    if !seen_dirs.insert((meta.dev(), meta.ino())) {
        out.skipped.push(SkippedPath {
            path: dir.to_path_buf(),
            reason: "directory already read through another path (a symbolic link loop?)"
                .to_string(),
        });
        return Ok(());
    }
    if depth > MAX_DEPTH {
        out.skipped.push(SkippedPath {
            path: dir.to_path_buf(),
            reason: format!("nested deeper than {MAX_DEPTH} directories"),
        });
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        // `metadata` follows symbolic links; a dangling one falls through to the file case
        // (when it has a config name), where reading it reports it.
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => match walk(&p, &m, depth + 1, seen_dirs, out) {
                Ok(()) => {}
                // A subdirectory removed while walking, or one we may not read: the rest
                // of the tree is still good.
                Err(e) => out.skipped.push(SkippedPath {
                    path: p.clone(),
                    reason: format!("cannot list directory: {e}"),
                }),
            },
            _ if is_config_file(&p) => out.files.push(p),
            _ => {}
        }
    }
    Ok(())
}

/// Why a config file's text could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file no longer exists (removed between listing and reading).
    #[error("no such file")]
    Gone,
    /// A symbolic link whose target does not exist.
    #[error("dangling symbolic link")]
    DanglingLink,
    /// Not a regular file.
    #[error("not a regular file ({0}); only regular files are read")]
    NotRegular(&'static str),
    /// Larger than the bound.
    #[error("file is {size} bytes, more than the limit of {limit} bytes (--max-file-bytes)")]
    TooLarge {
        /// Size found (at least `limit + 1`).
        size: u64,
        /// The bound.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("not UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// Any other I/O error (permissions, ...).
    #[error("{0}")]
    Io(io::Error),
}

/// What kind of file `t` is, in words.
fn describe_type(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads `path` as UTF-8 text, if it is a regular file of at most `max_bytes` bytes. Never
/// blocks on a FIFO or reads from a device.
pub fn read_config_file(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for
    // one; for regular files the flag changes nothing.
    let nonblock = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nonblock)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => ReadError::DanglingLink,
                _ => ReadError::Gone,
            });
        }
        Err(e) => return Err(ReadError::Io(e)),
    };
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(describe_type(meta.file_type())));
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit: max_bytes,
        });
    }
    // Read one byte past the bound: a file growing while it is read is still caught.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > max_bytes {
        return Err(ReadError::TooLarge {
            size: read.max(meta.len()),
            limit: max_bytes,
        });
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(root: &Path, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .map(|p| {
                p.strip_prefix(root)
                    .map(|r| r.display().to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn walks_directories_recursively_and_sorted() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper"))?;
        std::fs::create_dir_all(root.join(".git"))?;
        for f in [
            "b.yaml",
            "a.yml",
            "c.json",
            "notes.txt",
            "sub/deeper/d.yaml",
            ".git/x.yaml",
            "sub/.swp.yaml",
        ] {
            std::fs::write(root.join(f), "")?;
        }
        let got = list(&[root.to_path_buf()])?;
        assert_eq!(
            rel(root, &got.files),
            vec!["a.yml", "b.yaml", "c.json", "sub/deeper/d.yaml"]
        );
        assert!(got.skipped.is_empty(), "{:?}", got.skipped);
        Ok(())
    }

    #[test]
    fn a_symlink_loop_is_reported_not_followed_forever() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir(root.join("sub"))?;
        std::fs::write(root.join("sub/a.yaml"), "")?;
        std::os::unix::fs::symlink("..", root.join("sub/up"))?;
        let got = list(&[root.to_path_buf()])?;
        assert_eq!(rel(root, &got.files), vec!["sub/a.yaml"]);
        assert_eq!(got.skipped.len(), 1, "{:?}", got.skipped);
        assert!(got.skipped[0].path.ends_with("sub/up"), "{:?}", got.skipped);
        assert!(got.skipped[0].reason.contains("loop"), "{:?}", got.skipped);
        Ok(())
    }

    #[test]
    fn only_regular_files_within_the_bound_are_read() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let ok = root.join("ok.yaml");
        std::fs::write(&ok, "kind: x\n")?;
        assert_eq!(
            read_config_file(&ok, 100).map_err(io::Error::other)?,
            "kind: x\n"
        );

        let fifo = root.join("fifo.yaml");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(status.success(), "mkfifo (coreutils) must be installed");
        let started = std::time::Instant::now();
        let err = read_config_file(&fifo, 100).expect_err("a FIFO is not read");
        assert!(matches!(err, ReadError::NotRegular("a FIFO")), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));

        let zero = root.join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero)?;
        let err = read_config_file(&zero, 100).expect_err("a device is not read");
        assert!(
            matches!(err, ReadError::NotRegular("a character device")),
            "{err}"
        );

        let big = root.join("big.yaml");
        std::fs::write(&big, vec![b'a'; 101])?;
        let err = read_config_file(&big, 100).expect_err("too large");
        assert!(
            matches!(
                err,
                ReadError::TooLarge {
                    size: 101,
                    limit: 100
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("101 bytes"), "{err}");

        let dangling = root.join("dangling.yaml");
        std::os::unix::fs::symlink(root.join("nowhere"), &dangling)?;
        assert!(matches!(
            read_config_file(&dangling, 100),
            Err(ReadError::DanglingLink)
        ));
        assert!(matches!(
            read_config_file(&root.join("absent.yaml"), 100),
            Err(ReadError::Gone)
        ));

        let latin1 = root.join("latin1.yaml");
        std::fs::write(&latin1, b"name: caf\xe9\n")?;
        assert!(matches!(
            read_config_file(&latin1, 100),
            Err(ReadError::NotUtf8(9))
        ));

        // Every one of them is listed (so it is reported), none blocks the listing.
        let got = list(&[root.to_path_buf()])?;
        assert_eq!(
            rel(root, &got.files),
            vec![
                "big.yaml",
                "dangling.yaml",
                "fifo.yaml",
                "latin1.yaml",
                "ok.yaml",
                "zero.yaml"
            ]
        );
        Ok(())
    }
}
