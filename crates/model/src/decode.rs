//! Decoding: text (multi-document YAML, JSON, Kubernetes `List`) into [`Config`] objects.
//!
//! Decoding is strict, like the Kubernetes API server's strict field validation: an unknown
//! field is an error naming its path. A document that fails to decode is reported on its
//! own; the other documents of the file still decode. Only text that is not YAML/JSON at
//! all fails the whole file ([`SyntaxError`]).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api;
use crate::config::{Config, GROUP, Kind, ObjectMeta, SECURITY_GROUP, Spec};
use crate::diag::{Issue, Report};
use crate::linemap::{self, DocLines};

/// Input syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, possibly several `---`-separated documents.
    Yaml,
    /// JSON, one or more concatenated values.
    Json,
}

impl Format {
    /// The format implied by a file name (`.json` → JSON, anything else YAML).
    pub fn from_file_name(name: &str) -> Format {
        if name.to_ascii_lowercase().ends_with(".json") {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// The text is not YAML/JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The parser's message.
    pub message: String,
}

/// One document of a file, decoded or not.
#[derive(Debug, Clone)]
pub struct Document {
    /// Position of the document in the file, from 0 (items of a `List` count one each).
    pub index: usize,
    /// Lines of the document and its fields.
    pub lines: DocLines,
    /// `kind` as written, if any.
    pub kind: String,
    /// Namespace (defaulted), if known.
    pub namespace: String,
    /// Name, if known.
    pub name: String,
    /// What came of it.
    pub outcome: Outcome,
}

impl Document {
    /// 1-based first line of the document.
    pub fn line(&self) -> usize {
        self.lines.line
    }
}

/// What decoding made of a document.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A decoded Istio object (not yet semantically validated).
    Config(Box<Config>),
    /// A document of a kind Entryway does not read; skipped with the reason.
    Skipped(String),
    /// A document of a kind Entryway reads that failed to decode.
    Invalid(Report),
}

/// Decodes all documents of `text`. Documents without a namespace get `default_namespace`.
pub fn decode_str(
    text: &str,
    format: Format,
    default_namespace: &str,
) -> Result<Vec<Document>, SyntaxError> {
    let values = match format {
        Format::Yaml => parse_yaml_stream(text)?,
        Format::Json => parse_json_stream(text)?,
    };
    // Positions are best effort: if the event scan disagrees, fall back to line 1.
    let lines = linemap::scan(text).unwrap_or_default();
    let mut docs = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let doc_lines = lines.get(i).cloned().unwrap_or_else(|| DocLines::at(1));
        if value.is_null() {
            continue; // an empty document, as kubectl skips them
        }
        if is_list(&value) {
            let items = match value {
                Value::Object(mut m) => m.remove("items"),
                _ => None,
            };
            match items {
                Some(Value::Array(items)) => {
                    for (j, item) in items.into_iter().enumerate() {
                        let item_lines = doc_lines.subtree(&format!("items[{j}]"));
                        docs.push(decode_value(
                            item,
                            docs.len(),
                            item_lines,
                            default_namespace,
                        ));
                    }
                }
                Some(Value::Null) | None => {}
                Some(_) => {
                    let mut r = Report::default();
                    r.error("items", "List items must be an array");
                    docs.push(invalid_doc(docs.len(), doc_lines, "List", r));
                }
            }
            continue;
        }
        docs.push(decode_value(
            value,
            docs.len(),
            doc_lines,
            default_namespace,
        ));
    }
    Ok(docs)
}

fn is_list(v: &Value) -> bool {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    kind == "List" || (kind.ends_with("List") && v.get("items").is_some_and(Value::is_array))
}

fn parse_yaml_stream(text: &str) -> Result<Vec<Value>, SyntaxError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        match Value::deserialize(doc) {
            Ok(v) => out.push(v),
            Err(e) => {
                // A YAML syntax error has a location; a value that is YAML but not
                // representable as JSON (e.g. a non-string key) is also fatal for the file.
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                return Err(SyntaxError {
                    line,
                    column,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

fn parse_json_stream(text: &str) -> Result<Vec<Value>, SyntaxError> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match v {
            Ok(v) => out.push(v),
            Err(e) => {
                return Err(SyntaxError {
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

fn invalid_doc(index: usize, lines: DocLines, kind: &str, report: Report) -> Document {
    Document {
        index,
        lines,
        kind: kind.to_string(),
        namespace: String::new(),
        name: String::new(),
        outcome: Outcome::Invalid(report),
    }
}

/// Decodes one object (already parsed to a JSON value).
pub fn decode_value(
    value: Value,
    index: usize,
    lines: DocLines,
    default_namespace: &str,
) -> Document {
    let Value::Object(mut obj) = value else {
        let mut r = Report::default();
        r.error(
            "",
            "document is not an object (expected apiVersion, kind, metadata, spec)",
        );
        return invalid_doc(index, lines, "", r);
    };
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind_name = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let meta_guess = peek_meta(&obj, default_namespace);
    let mut doc = Document {
        index,
        lines,
        kind: kind_name.clone(),
        namespace: meta_guess.0,
        name: meta_guess.1,
        outcome: Outcome::Skipped(String::new()),
    };

    let mut report = Report::default();
    if kind_name.is_empty() {
        report.error("kind", "Required value: kind is required");
    }
    if api_version.is_empty() {
        report.error("apiVersion", "Required value: apiVersion is required");
    }
    if !report.is_valid() {
        doc.outcome = Outcome::Invalid(report);
        return doc;
    }
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    let Some(kind) = Kind::parse(&kind_name).filter(|k| k.group() == group) else {
        doc.outcome = Outcome::Skipped(format!(
            "{api_version} {kind_name} is not a kind entryway reads (ServiceEntry, WorkloadEntry, VirtualService, DestinationRule, Sidecar of {GROUP}; PeerAuthentication of {SECURITY_GROUP})"
        ));
        return doc;
    };
    if !kind.versions().contains(&version) {
        report.error(
            "apiVersion",
            format!(
                "Unsupported value: \"{api_version}\": supported values: \"{}\"",
                kind.versions()
                    .iter()
                    .map(|v| format!("{}/{v}", kind.group()))
                    .collect::<Vec<_>>()
                    .join("\", \"")
            ),
        );
    }

    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            report.error(key.as_str(), format!("unknown field \"{key}\""));
        }
    }

    let meta: Option<ObjectMeta> = match obj.remove("metadata") {
        None | Some(Value::Null) => {
            report.error("metadata.name", "Required value: name is required");
            None
        }
        Some(v) => typed::<ObjectMeta>(v, "metadata", &mut report),
    };
    let spec_value = obj.remove("spec").unwrap_or(Value::Object(Map::new()));
    let spec_value = if spec_value.is_null() {
        Value::Object(Map::new())
    } else {
        spec_value
    };
    let spec = match kind {
        Kind::ServiceEntry => typed::<api::ServiceEntry>(spec_value, "spec", &mut report)
            .map(|s| Spec::ServiceEntry(Box::new(s))),
        Kind::WorkloadEntry => typed::<api::WorkloadEntry>(spec_value, "spec", &mut report)
            .map(|s| Spec::WorkloadEntry(Box::new(s))),
        Kind::VirtualService => typed::<api::VirtualService>(spec_value, "spec", &mut report)
            .map(|s| Spec::VirtualService(Box::new(s))),
        Kind::DestinationRule => typed::<api::DestinationRule>(spec_value, "spec", &mut report)
            .map(|s| Spec::DestinationRule(Box::new(s))),
        Kind::Sidecar => typed::<api::Sidecar>(spec_value, "spec", &mut report)
            .map(|s| Spec::Sidecar(Box::new(s))),
        Kind::PeerAuthentication => {
            typed::<api::PeerAuthentication>(spec_value, "spec", &mut report)
                .map(|s| Spec::PeerAuthentication(Box::new(s)))
        }
    };

    if let Some(meta) = &meta {
        crate::validate::meta::check(meta, &mut report);
    }
    match (meta, spec) {
        (Some(mut meta), Some(spec)) if report.is_valid() => {
            if meta.namespace.is_empty() {
                meta.namespace = default_namespace.to_string();
            }
            doc.outcome = Outcome::Config(Box::new(Config {
                api_version,
                meta,
                spec,
            }));
        }
        _ => doc.outcome = Outcome::Invalid(report),
    }
    doc
}

/// Namespace and name as far as they can be read, for reporting undecodable documents.
fn peek_meta(obj: &Map<String, Value>, default_namespace: &str) -> (String, String) {
    let m = obj.get("metadata");
    let ns = m
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(default_namespace);
    let name = m
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    (ns.to_string(), name.to_string())
}

/// Decodes `value` into `T`, reporting the first error at its field path under `root`.
fn typed<T: DeserializeOwned>(value: Value, root: &str, report: &mut Report) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.inner().to_string();
            let mut path = root.to_string();
            let sub = e.path().to_string();
            if sub != "." && !sub.is_empty() {
                path.push('.');
                path.push_str(&sub);
            }
            report.errors.push(serde_issue(path, &inner));
            None
        }
    }
}

/// Rewrites serde's messages into Kubernetes-like ones.
fn serde_issue(mut path: String, msg: &str) -> Issue {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        if !path.ends_with(field) {
            path = format!("{path}.{field}");
        }
        return Issue {
            path,
            message: format!("unknown field \"{field}\""),
        };
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        return Issue {
            path: format!("{path}.{field}"),
            message: "Required value".to_string(),
        };
    }
    Issue {
        path,
        message: msg.replace('`', "\""),
    }
}

/// Decodes a mesh config: Istio's `mesh` YAML/JSON (as in the `istio` ConfigMap's
/// `data.mesh`), or a whole ConfigMap carrying it. An empty text gives Istio's defaults.
pub fn mesh_from_str(text: &str) -> Result<api::MeshConfig, String> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let value = match value {
        Value::Null => return Ok(api::MeshConfig::default()),
        Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("ConfigMap") => {
            let mesh = m
                .get("data")
                .and_then(|d| d.get("mesh"))
                .and_then(Value::as_str)
                .ok_or("ConfigMap has no data.mesh")?;
            return mesh_from_str(mesh);
        }
        v => v,
    };
    serde_path_to_error::deserialize::<_, api::MeshConfig>(value).map_err(|e| {
        let issue = serde_issue(e.path().to_string(), &e.inner().to_string());
        issue.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Document {
        let mut docs = decode_str(text, Format::Yaml, "default").expect("yaml");
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    fn errors(doc: &Document) -> Vec<Issue> {
        match &doc.outcome {
            Outcome::Invalid(r) => r.errors.clone(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn unknown_metadata_field_is_reported_with_its_path() {
        let doc = one(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: a\n  nmae: b\nspec:\n  hosts: [a.com]\n",
        );
        let errs = errors(&doc);
        assert_eq!(errs[0].path, "metadata.nmae", "{errs:?}");
        assert_eq!(errs[0].message, "unknown field \"nmae\"");
        assert_eq!(doc.lines.line_of(&errs[0].path), 5);
    }

    #[test]
    fn unknown_top_level_field() {
        let doc = one(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspecs: {}\n",
        );
        assert!(errors(&doc).iter().any(|i| i.path == "specs"));
    }

    #[test]
    fn other_kinds_are_skipped() {
        let doc = one("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n");
        assert!(matches!(doc.outcome, Outcome::Skipped(_)));
        let doc = one("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\n");
        assert!(matches!(doc.outcome, Outcome::Skipped(_)));
    }

    #[test]
    fn bad_version_is_an_error() {
        let doc = one(
            "apiVersion: networking.istio.io/v2\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.com]}\n",
        );
        assert_eq!(errors(&doc)[0].path, "apiVersion");
    }

    #[test]
    fn documents_lists_and_defaults() {
        let text = "\
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [a.com]}
---
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1alpha3
  kind: WorkloadEntry
  metadata: {name: w, namespace: ns1}
  spec: {address: 1.2.3.4}
- apiVersion: networking.istio.io/v1
  kind: Sidecar
  metadata: {name: s}
  spec: {}
";
        let docs = decode_str(text, Format::Yaml, "dflt").expect("yaml");
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs.iter().map(|d| d.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(docs[0].line(), 2);
        assert_eq!(docs[1].line(), 11);
        assert_eq!(docs[2].line(), 15);
        let Outcome::Config(c) = &docs[0].outcome else {
            panic!("{:?}", docs[0])
        };
        assert_eq!(c.meta.namespace, "dflt");
        let Outcome::Config(c) = &docs[1].outcome else {
            panic!("{:?}", docs[1])
        };
        assert_eq!(c.meta.namespace, "ns1");
        assert_eq!(c.kind(), Kind::WorkloadEntry);
    }

    #[test]
    fn json_stream() {
        let text = r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a"},"spec":{"hosts":["a.com"]}}
{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"b"},"spec":{"hosts":["b.com"]}}"#;
        let docs = decode_str(text, Format::Json, "default").expect("json");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].name, "b");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = decode_str("a: [1, 2\nb: c\n", Format::Yaml, "default").expect_err("bad yaml");
        assert!(e.line >= 1);
        let e = decode_str("{\"a\": }", Format::Json, "default").expect_err("bad json");
        assert_eq!((e.line, e.column), (1, 7));
    }
}
