//! Bounded polling and port helpers. Tests wait with these, never with bare sleeps.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// First pause between attempts; doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(2);
/// Longest pause between attempts.
const MAX_INTERVAL: Duration = Duration::from_millis(50);

/// A condition did not hold within its deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition not met after {waited:?} ({attempts} attempts){}", LastError(.last_error))]
pub struct Timeout {
    /// How long was waited.
    pub waited: Duration,
    /// How many times the condition was evaluated.
    pub attempts: u32,
    /// The last error of [`eventually_ok`], if any.
    pub last_error: Option<String>,
}

struct LastError<'a>(&'a Option<String>);

impl fmt::Display for LastError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) => write!(f, "; last error: {e}"),
            None => Ok(()),
        }
    }
}

/// Calls `f` until it returns `Some`, for at most `timeout` (at least once), with a short
/// exponential back-off between attempts (2 ms doubling to 50 ms).
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, Timeout> {
    eventually_ok(timeout, || f().ok_or("not yet"))
}

/// Like [`eventually`] for a fallible check: retries while `f` returns `Err`, and reports the
/// last error on timeout (which is usually the useful part of a failure message).
pub fn eventually_ok<T, E: fmt::Display>(
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, Timeout> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut interval = FIRST_INTERVAL;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e.to_string(),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Timeout {
                waited: now - start,
                attempts,
                last_error: Some(last).filter(|e| e != "not yet"),
            });
        }
        std::thread::sleep(interval.min(deadline - now));
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// A currently free TCP port on 127.0.0.1.
///
/// The port is released before returning, so another process may take it first; prefer
/// binding to port 0 and asking for the real address where the API allows it (Envoy admin:
/// [`crate::EnvoyProcess::admin_addr`]; Envoy listeners:
/// [`crate::EnvoyProcess::listener_address`]).
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn eventually_returns_first_success() {
        let mut n = 0;
        let v = eventually(Duration::from_secs(1), || {
            n += 1;
            (n == 3).then_some(n)
        })
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn eventually_times_out_with_last_error() {
        let err = eventually_ok(Duration::from_millis(20), || Err::<(), _>("nope")).unwrap_err();
        assert!(err.attempts >= 2);
        assert!(err.waited >= Duration::from_millis(20));
        assert_eq!(err.last_error.as_deref(), Some("nope"));
        assert!(err.to_string().contains("last error: nope"), "{err}");
    }

    #[test]
    fn zero_timeout_still_tries_once() {
        assert_eq!(eventually(Duration::ZERO, || Some(1)), Ok(1));
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
