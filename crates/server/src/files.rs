//! Reading configuration from the file system: which files a set of paths names.

use std::io;
use std::path::{Path, PathBuf};

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

/// Expands files and directories (recursively) into the config files they name, sorted
/// within each directory so that loading order is deterministic. A file named explicitly
/// is taken whatever its extension; hidden entries (`.git`, editor swap files) under a
/// directory are skipped.
pub fn expand_paths(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
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
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_config_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_recursively_and_sorted() -> io::Result<()> {
        let root = std::env::temp_dir().join(format!("entryway-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
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
        let got = expand_paths(std::slice::from_ref(&root))?;
        let rel: Vec<String> = got
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .map(|r| r.display().to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(rel, vec!["a.yml", "b.yaml", "c.json", "sub/deeper/d.yaml"]);
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }
}
