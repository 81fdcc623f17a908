//! Envoy's own log lines, re-emitted as `tracing` events of the agent.
//!
//! The supervisor starts Envoy with `--log-format` [`ENVOY_LOG_FORMAT`] (`[level][logger]
//! message`): the agent's subscriber adds its own timestamp, so Envoy's would be noise, and a
//! fixed shape lets each line keep its level. Every line becomes one event with target
//! `envoy` (so `RUST_LOG=envoy=warn` filters Envoy independently of the agent), the message
//! `envoy: [logger] message` and a `pid` field. Lines not in that shape (a message that
//! spans lines, a crash report) keep the level of the previous line of the same stream, or
//! `info` at first.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The `--log-format` the supervisor passes to Envoy.
pub const ENVOY_LOG_FORMAT: &str = "[%l][%n] %v";

/// An Envoy log level (spdlog's names as Envoy prints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EnvoyLogLevel {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warning`
    Warning,
    /// `error`
    Error,
    /// `critical`
    Critical,
}

impl EnvoyLogLevel {
    /// Parses spdlog's level name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warning" | "warn" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            _ => return None,
        })
    }
}

/// One parsed line of Envoy output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyLogLine<'a> {
    /// Its level (inherited for continuation lines).
    pub level: EnvoyLogLevel,
    /// Envoy's logger name (`main`, `config`, `upstream`, ...); empty for continuation lines.
    pub logger: &'a str,
    /// The message.
    pub message: &'a str,
}

/// Parses a line printed with [`ENVOY_LOG_FORMAT`]; other lines get `fallback` as level.
pub fn parse_line(line: &str, fallback: EnvoyLogLevel) -> EnvoyLogLine<'_> {
    let parsed = line.strip_prefix('[').and_then(|rest| {
        let (level, rest) = rest.split_once("][")?;
        let (logger, message) = rest.split_once("] ")?;
        let level = EnvoyLogLevel::parse(level)?;
        (!logger.contains(char::is_whitespace)).then_some(EnvoyLogLine {
            level,
            logger,
            message,
        })
    });
    parsed.unwrap_or(EnvoyLogLine {
        level: fallback,
        logger: "",
        message: line,
    })
}

/// Emits one line as a `tracing` event (target `envoy`).
pub fn emit(line: &EnvoyLogLine<'_>, pid: u32) {
    let logger = line.logger;
    let message = line.message;
    macro_rules! event {
        ($level:expr) => {
            if logger.is_empty() {
                tracing::event!(target: "envoy", $level, pid, "envoy: {message}")
            } else {
                tracing::event!(target: "envoy", $level, pid, "envoy: [{logger}] {message}")
            }
        };
    }
    match line.level {
        EnvoyLogLevel::Trace => event!(tracing::Level::TRACE),
        EnvoyLogLevel::Debug => event!(tracing::Level::DEBUG),
        EnvoyLogLevel::Info => event!(tracing::Level::INFO),
        EnvoyLogLevel::Warning => event!(tracing::Level::WARN),
        EnvoyLogLevel::Error | EnvoyLogLevel::Critical => event!(tracing::Level::ERROR),
    }
}

/// Reads `reader` (Envoy's stdout or stderr) to its end, emitting every line.
pub(crate) async fn forward_lines<R: AsyncRead + Unpin>(reader: R, pid: u32) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut last_level = EnvoyLogLevel::Info;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim_end_matches(['\n', '\r']);
                if text.is_empty() {
                    continue;
                }
                let line = parse_line(text, last_level);
                last_level = line.level;
                emit(&line, pid);
            }
            Err(error) => {
                tracing::warn!(pid, %error, "reading Envoy output failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_configured_format() {
        assert_eq!(
            parse_line(
                "[warning][config] gRPC config stream closed: 14, no healthy upstream",
                EnvoyLogLevel::Info
            ),
            EnvoyLogLine {
                level: EnvoyLogLevel::Warning,
                logger: "config",
                message: "gRPC config stream closed: 14, no healthy upstream",
            }
        );
        assert_eq!(
            parse_line("[info][main] [x.cc:1] a] b", EnvoyLogLevel::Info).message,
            "[x.cc:1] a] b"
        );
    }

    #[test]
    fn other_lines_inherit_the_level() {
        for line in [
            "  continuation of a multi-line message",
            "[bogus][main] x",
            "[info][two words] x",
            "[2026-11-25 10:00:00.000][1][info][main] default format",
        ] {
            assert_eq!(
                parse_line(line, EnvoyLogLevel::Error),
                EnvoyLogLine {
                    level: EnvoyLogLevel::Error,
                    logger: "",
                    message: line
                },
                "{line}"
            );
        }
    }
}
