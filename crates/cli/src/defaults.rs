//! The embedded default config: the files of `examples/`, compiled into the binary so that
//! `entryway up` works on a fresh machine without arguments. They are written to a directory
//! (so the user can edit them and watch traffic change) only when that directory does not
//! exist yet; an existing directory is used as it is.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Directory used when no `--config` is given.
pub const DEFAULT_CONFIG_DIR: &str = "entryway-config";

/// (file name, contents) of the embedded default config.
pub const DEFAULT_CONFIG: &[(&str, &str)] = &[
    (
        "resolution-dns-http.yaml",
        include_str!("../../../examples/resolution-dns-http.yaml"),
    ),
    (
        "resolution-dns-round-robin.yaml",
        include_str!("../../../examples/resolution-dns-round-robin.yaml"),
    ),
    (
        "resolution-none-wildcard.yaml",
        include_str!("../../../examples/resolution-none-wildcard.yaml"),
    ),
    (
        "resolution-static-vip.yaml",
        include_str!("../../../examples/resolution-static-vip.yaml"),
    ),
    (
        "seed-external-svc-https.yaml",
        include_str!("../../../examples/seed-external-svc-https.yaml"),
    ),
    (
        "seed-mongocluster.yaml",
        include_str!("../../../examples/seed-mongocluster.yaml"),
    ),
    (
        "workload-selector.yaml",
        include_str!("../../../examples/workload-selector.yaml"),
    ),
];

/// `./entryway-config`.
pub fn default_config_dir() -> PathBuf {
    PathBuf::from(DEFAULT_CONFIG_DIR)
}

/// Writes the embedded default config into `dir` unless `dir` exists; returns `dir`.
pub fn ensure_default_config(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in DEFAULT_CONFIG {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "wrote the default config ({} files) to {}; edit it and the proxies follow",
        DEFAULT_CONFIG.len(),
        dir.display()
    );
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_examples_dir() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut on_disk: Vec<String> = std::fs::read_dir(&examples)
            .expect("examples dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = DEFAULT_CONFIG.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(embedded, on_disk, "add new examples to DEFAULT_CONFIG");
    }

    #[test]
    fn writes_only_into_a_missing_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cfg");
        ensure_default_config(&dir).expect("write");
        assert_eq!(
            std::fs::read_dir(&dir).expect("read").count(),
            DEFAULT_CONFIG.len()
        );
        std::fs::remove_file(dir.join(DEFAULT_CONFIG[0].0)).expect("rm");
        ensure_default_config(&dir).expect("reuse");
        assert_eq!(
            std::fs::read_dir(&dir).expect("read").count(),
            DEFAULT_CONFIG.len() - 1,
            "an existing dir is left as it is"
        );
    }
}
