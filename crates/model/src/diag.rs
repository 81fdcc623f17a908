//! Diagnostics: field-addressed errors and warnings.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest echo of an input value (a name, a host, a node id) in diagnostics and logs.
/// Valid names and hosts are at most 253 bytes; anything longer is shown as a prefix and
/// its length.
pub const MAX_ECHO: usize = 256;

/// Longest diagnostic message kept whole. A message quoting a huge value (a 4 MiB host name)
/// is cut in the middle, so that both its start (the field, the value's beginning) and its
/// end (usually the reason) survive.
pub const MAX_MESSAGE: usize = 1024;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The longest suffix of `s` of at most `max` bytes that starts on a character boundary.
fn suffix(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `s` when it is at most `max` bytes; otherwise a prefix and the length:
/// `aaaa…(4194304 bytes)`.
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    Cow::Owned(format!("{}…({} bytes)", prefix(s, max), s.len()))
}

/// `s` when it is at most `max` bytes; otherwise its start and end around a note of what was
/// left out: `start…(52428800 bytes, 52427776 left out)…end`.
pub fn bounded_middle(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let head = prefix(s, max * 3 / 4);
    let tail = suffix(s, max / 4);
    Cow::Owned(format!(
        "{head}…({} bytes, {} left out)…{tail}",
        s.len(),
        s.len() - head.len() - tail.len()
    ))
}

/// A [`Display`](fmt::Display) of an input value bounded to [`MAX_ECHO`] bytes (a prefix and
/// the length), for log fields: `warn!(node = %Echo(&id), ...)`.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bounded(self.0, MAX_ECHO))
    }
}

/// One problem with a resource, addressed by field path (`spec.ports[1].number`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// Field path from the document root; empty for the whole object.
    pub path: String,
    /// What is wrong, in Istio's words where Istio has them.
    pub message: String,
}

impl Issue {
    /// The issue with its path bounded to [`MAX_ECHO`] bytes and its message to
    /// [`MAX_MESSAGE`] (paths and messages quote input: map keys, names, hosts).
    pub fn bounded(self) -> Issue {
        let path = match bounded(&self.path, MAX_ECHO) {
            Cow::Borrowed(_) => self.path,
            Cow::Owned(p) => p,
        };
        let message = match bounded_middle(&self.message, MAX_MESSAGE) {
            Cow::Borrowed(_) => self.message,
            Cow::Owned(m) => m,
        };
        Issue { path, message }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Errors and warnings collected while checking one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Problems that make the resource invalid.
    pub errors: Vec<Issue>,
    /// Problems Istio accepts but warns about.
    pub warnings: Vec<Issue>,
}

impl Report {
    /// Records an error at `path`.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    /// True when there are no errors (warnings allowed).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// Appends another report's issues.
    pub fn extend(&mut self, other: Report) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }

    /// Every issue [bounded](Issue::bounded).
    pub fn bounded(self) -> Report {
        Report {
            errors: self.errors.into_iter().map(Issue::bounded).collect(),
            warnings: self.warnings.into_iter().map(Issue::bounded).collect(),
        }
    }

    /// Appends the errors and warnings of a later validation layer, except errors at a path
    /// where this report already has one: the same problem found twice (a port out of range
    /// is both a CRD rule and an Istio rule) is reported once, in the first layer's words,
    /// as Istio's API server reports only the CRD's message.
    pub fn extend_layer(&mut self, later: Report) {
        let seen: std::collections::HashSet<String> =
            self.errors.iter().map(|i| i.path.clone()).collect();
        self.errors
            .extend(later.errors.into_iter().filter(|i| !seen.contains(&i.path)));
        self.warnings.extend(later.warnings);
    }

    /// True when some error message contains `needle` (for tests and tooling).
    pub fn has_error(&self, needle: &str) -> bool {
        self.errors.iter().any(|i| i.message.contains(needle))
    }

    /// True when some warning message contains `needle`.
    pub fn has_warning(&self, needle: &str) -> bool {
        self.warnings.iter().any(|i| i.message.contains(needle))
    }
}

/// Builds field paths: `spec` → `spec.ports` → `spec.ports[1]` → `spec.ports[1].number`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path rooted at `root` (usually `spec`).
    pub fn root(root: &str) -> Self {
        FieldPath(root.to_string())
    }

    /// The path of a named child field.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list item.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry (`labels[app]`).
    pub fn key(&self, k: &str) -> Self {
        FieldPath(format!("{}[{k}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&FieldPath> for String {
    fn from(p: &FieldPath) -> String {
        p.0.clone()
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_to_a_prefix_and_their_length() {
        assert_eq!(bounded("short", 10), "short");
        let long = "é".repeat(100); // 200 bytes
        let b = bounded(&long, 11);
        assert_eq!(b, format!("{}…(200 bytes)", "é".repeat(5)));
        assert_eq!(
            Echo(&"x".repeat(1000)).to_string().len(),
            MAX_ECHO + "…(1000 bytes)".len()
        );
    }

    #[test]
    fn long_messages_keep_their_start_and_end() {
        let msg = format!(
            "invalid host {}: domain name too long",
            "a".repeat(50 << 20)
        );
        let b = bounded_middle(&msg, MAX_MESSAGE);
        assert!(b.len() < MAX_MESSAGE + 100, "{}", b.len());
        assert!(b.starts_with("invalid host aaaa"), "{b}");
        assert!(b.ends_with("aaaa: domain name too long"), "{b}");
        assert!(b.contains(&format!("({} bytes,", msg.len())), "{b}");
        let issue = Issue {
            path: format!("spec.labels[{}]", "k".repeat(10_000)),
            message: msg,
        }
        .bounded();
        assert!(issue.path.len() < MAX_ECHO + 20, "{}", issue.path);
        assert!(issue.message.len() < MAX_MESSAGE + 100);
    }

    #[test]
    fn a_later_layer_adds_no_second_error_at_the_same_path() {
        let mut crd = Report::default();
        crd.error("spec.ports[0].number", "port must be between 1-65535");
        let mut go = Report::default();
        go.error(
            "spec.ports[0].number",
            "port number 0 must be in the range 1..65535",
        );
        go.error("spec.hosts[0]", "invalid host");
        go.warn("spec.ports[0].number", "a warning stays");
        crd.extend_layer(go);
        let errors: Vec<&str> = crd.errors.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(errors, ["port must be between 1-65535", "invalid host"]);
        assert_eq!(crd.warnings.len(), 1);
    }
}
