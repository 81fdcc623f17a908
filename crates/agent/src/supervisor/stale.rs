//! Envoys left behind by an earlier agent of the same work directory, and the lock that
//! keeps two live agents off one work directory.
//!
//! An agent that was killed without a chance to stop its Envoy (SIGKILL without the
//! parent-death shim, an agent built into another program) leaves Envoy running, holding
//! its admin port and listeners: the next agent's Envoy would then fail to bind. So before
//! starting Envoy, the supervisor looks for processes running Envoy on this work
//! directory's bootstrap (`-c <work_dir>/envoy-bootstrap.json`, read from `/proc/<pid>/cmdline`)
//! and stops them (SIGTERM, SIGKILL after a timeout).
//!
//! That is only safe when no live agent uses the directory, so the supervisor first takes
//! an exclusive `flock` on `<work_dir>/agent.lock` for its whole run; the kernel releases it
//! when the agent dies, however it dies.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// Lock file in the work directory.
pub const LOCK_FILE: &str = "agent.lock";

/// The work directory's lock, held while it lives.
#[derive(Debug)]
pub struct WorkDirLock {
    _file: std::fs::File,
}

/// Takes the work directory's lock, or says which agent holds it.
pub fn lock_work_dir(work_dir: &Path) -> std::io::Result<WorkDirLock> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(work_dir)?;
    let path = work_dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "work directory {} is in use by another agent (pid {}); give each agent its own --work-dir",
                    work_dir.display(),
                    holder.trim()
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(WorkDirLock { _file: file })
}

/// Whether `cmdline` (NUL-separated arguments) runs with `-c <bootstrap>`.
fn runs_bootstrap(cmdline: &[u8], bootstrap: &OsStr) -> bool {
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(a) = args.next() {
        if a == b"-c" || a == b"--config-path" {
            if args.next() == Some(bootstrap.as_bytes()) {
                return true;
            }
        } else if let Some(path) = a.strip_prefix(b"--config-path=")
            && path == bootstrap.as_bytes()
        {
            return true;
        }
    }
    false
}

/// Whether process `pid` is gone or a zombie (exited, not yet reaped by its parent).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| matches!(state, 'Z' | 'X')),
    }
}

/// Processes (other than this one) running with `-c <bootstrap>`.
pub fn find(bootstrap: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| runs_bootstrap(&c, bootstrap.as_os_str()))
        })
        .filter(|pid| !gone(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Stops every stale Envoy of `bootstrap`: SIGTERM, SIGKILL after `term_timeout`. Returns
/// the pids stopped.
pub async fn stop(bootstrap: &Path, term_timeout: Duration) -> Vec<u32> {
    let pids = find(bootstrap);
    for pid in &pids {
        tracing::warn!(
            pid,
            bootstrap = %bootstrap.display(),
            "stopping a stale Envoy left running by an earlier agent of this work directory"
        );
        signal(*pid, rustix::process::Signal::TERM);
    }
    let deadline = tokio::time::Instant::now() + term_timeout;
    let mut left: Vec<u32> = pids.clone();
    while !left.is_empty() {
        left.retain(|pid| !gone(*pid));
        if left.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            for pid in &left {
                tracing::warn!(pid, "stale Envoy ignored SIGTERM; killing it");
                signal(*pid, rustix::process::Signal::KILL);
            }
            // SIGKILL cannot be ignored; give the kernel a moment to tear it down.
            for _ in 0..100 {
                left.retain(|pid| !gone(*pid));
                if left.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_matched_on_the_bootstrap_argument() {
        let b = OsStr::new("/w/envoy-bootstrap.json");
        assert!(runs_bootstrap(
            b"envoy\0-c\0/w/envoy-bootstrap.json\0-l\0info\0",
            b
        ));
        assert!(runs_bootstrap(
            b"envoy\0--config-path=/w/envoy-bootstrap.json\0",
            b
        ));
        assert!(!runs_bootstrap(b"envoy\0-c\0/w2/envoy-bootstrap.json\0", b));
        assert!(!runs_bootstrap(b"vim\0/w/envoy-bootstrap.json\0", b));
        assert!(!runs_bootstrap(b"envoy\0-c\0", b));
    }

    #[test]
    fn the_lock_admits_one_holder() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = lock_work_dir(dir.path())?;
        let err = lock_work_dir(dir.path()).expect_err("held");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        // A process forked by a test running alongside shares the descriptor until its
        // `exec` closes it (close-on-exec): give that a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match lock_work_dir(dir.path()) {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    #[tokio::test]
    async fn a_stale_process_of_the_bootstrap_is_stopped() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let bootstrap = dir.path().join("envoy-bootstrap.json");
        // Stands in for a stale Envoy: `sh -c 'sleep 60' -c <bootstrap>` carries the
        // bootstrap argument on its command line.
        let mut child = std::process::Command::new("sh")
            // Two commands: the shell cannot replace itself with `sleep`.
            .args(["-c", "sleep 60; true", "-c"])
            .arg(&bootstrap)
            .spawn()?;
        let pid = child.id();
        let found = find(&bootstrap);
        assert_eq!(found, vec![pid]);
        let stopped = stop(&bootstrap, Duration::from_secs(5)).await;
        assert_eq!(stopped, vec![pid]);
        let status = child.wait()?;
        assert!(!status.success(), "{status:?}");
        assert!(find(&bootstrap).is_empty());
        Ok(())
    }
}
