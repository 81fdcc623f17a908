//! Source positions for YAML/JSON documents: which line each field path starts on.
//!
//! `serde_yaml` gives values without positions, so a second, event-level pass over the
//! same text (with `yaml-rust2`) records, for every document of a stream, the line of
//! the document and of every field path in it (`spec.ports[1].number`). Diagnostics use
//! it to point at the offending line, falling back to the nearest parent path.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Lines of one document: its first line and the line of every field path in it.
#[derive(Debug, Clone, Default)]
pub struct DocLines {
    /// 1-based line of the document's first node.
    pub line: usize,
    paths: HashMap<String, usize>,
}

impl DocLines {
    /// A document known only by its first line.
    pub fn at(line: usize) -> Self {
        DocLines {
            line,
            paths: HashMap::new(),
        }
    }

    /// Line of `path`, or of its nearest recorded parent, or of the document.
    pub fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(l) = self.paths.get(p) {
                return *l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.line,
            }
        }
    }

    /// The lines of the sub-document rooted at `prefix` (for items of a Kubernetes `List`),
    /// with paths made relative to it.
    pub fn subtree(&self, prefix: &str) -> DocLines {
        let line = self.line_of(prefix);
        let paths = self
            .paths
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .map(|rest| (rest.to_string(), *v))
            })
            .collect();
        DocLines { line, paths }
    }
}

/// Records, for each document of a YAML stream, the line of every path.
///
/// Returns `None` when the text is not parseable YAML (the caller reports the syntax error
/// from the value parser, which has the better message).
pub fn scan(text: &str) -> Option<Vec<DocLines>> {
    let mut rec = Recorder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut rec, true).ok()?;
    Some(rec.docs)
}

enum Frame {
    /// A mapping: the path of the mapping and the key awaiting its value, if any.
    Map { path: String, key: Option<String> },
    /// A sequence: its path and the index of the next item.
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Recorder {
    docs: Vec<DocLines>,
    stack: Vec<Frame>,
    in_doc: bool,
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl Recorder {
    /// The path of the node that starts now, advancing the parent's cursor.
    /// Returns `None` for a mapping key (keys are not nodes with paths of their own).
    fn node_path(&mut self, key_scalar: Option<&str>, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This node is a key. Record the key's line as the entry's line: errors
                    // about a field point at the line where the field is written.
                    let k = key_scalar.unwrap_or("?").to_string();
                    let full = join(path, &k);
                    if let Some(doc) = self.docs.last_mut() {
                        doc.paths.entry(full).or_insert(line);
                    }
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::DocumentStart => {
                self.in_doc = true;
                self.stack.clear();
                self.docs.push(DocLines::at(line));
            }
            Event::DocumentEnd => self.in_doc = false,
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if !self.in_doc {
                    return;
                }
                let is_map = matches!(ev, Event::MappingStart(..));
                let path = match self.node_path(None, line) {
                    Some(p) => p,
                    // A complex key: give it a throwaway path.
                    None => "?".to_string(),
                };
                if let Some(doc) = self.docs.last_mut() {
                    if path.is_empty() {
                        doc.line = line;
                    } else {
                        doc.paths.entry(path.clone()).or_insert(line);
                    }
                }
                self.stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Scalar(value, ..) => {
                if !self.in_doc {
                    return;
                }
                if let Some(path) = self.node_path(Some(&value), line)
                    && let Some(doc) = self.docs.last_mut()
                {
                    if path.is_empty() {
                        doc.line = line;
                    } else {
                        doc.paths.entry(path).or_insert(line);
                    }
                }
            }
            Event::Alias(_) => {
                let _ = self.node_path(Some("*alias"), line);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_paths_in_two_documents() {
        let text = "\
# leading comment
apiVersion: v1
kind: ServiceEntry
spec:
  hosts:
  - a.com
  ports:
  - number: 80
    name: http
  - number: 443
    name: https
---
kind: Other
spec:
  x: 1
";
        let docs = scan(text).expect("valid yaml");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line, 2);
        assert_eq!(docs[0].line_of("spec.hosts[0]"), 6);
        assert_eq!(docs[0].line_of("spec.ports[1].number"), 10);
        assert_eq!(docs[0].line_of("spec.ports[1].name"), 11);
        assert_eq!(docs[0].line_of("spec.ports[1].missing"), 10);
        assert_eq!(docs[0].line_of("spec.nothere"), 4);
        assert_eq!(docs[0].line_of("metadata"), 2);
        assert_eq!(docs[1].line, 13);
        assert_eq!(docs[1].line_of("spec.x"), 15);
    }

    #[test]
    fn list_items_become_subtrees() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n  spec:\n    hosts: [x]\n- kind: B\n  spec:\n    y: 2\n";
        let docs = scan(text).expect("valid yaml");
        let item = docs[0].subtree("items[1]");
        assert_eq!(item.line, 7);
        assert_eq!(item.line_of("spec.y"), 9);
    }

    #[test]
    fn json_is_scanned_too() {
        let text = "{\n  \"kind\": \"A\",\n  \"spec\": {\n    \"hosts\": [\"a\"]\n  }\n}\n";
        let docs = scan(text).expect("json is yaml");
        assert_eq!(docs[0].line_of("spec.hosts[0]"), 4);
    }

    #[test]
    fn bad_yaml_is_none() {
        assert!(scan("a: [1, 2\nb: c").is_none());
    }
}
