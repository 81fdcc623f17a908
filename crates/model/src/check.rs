//! Decode and validate a whole file's text: what `entryway validate` and the config
//! store both run, so that a document is judged the same way everywhere.

use crate::api::MeshConfig;
use crate::config::Config;
use crate::decode::{self, Document, Format, Outcome, SyntaxError};
use crate::diag::{MAX_ECHO, MAX_MESSAGE, Report, bounded, bounded_middle};
use crate::validate;

/// The verdict on one document.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The document (index, lines, kind, namespace, name).
    pub doc: Document,
    /// Decode and validation problems together.
    pub report: Report,
    /// Why the document was skipped, when it is not a kind Entryway reads.
    pub skipped: Option<String>,
}

impl Checked {
    /// The decoded object, when the document is a valid Istio object.
    pub fn config(&self) -> Option<&Config> {
        match &self.doc.outcome {
            Outcome::Config(c) if self.report.is_valid() => Some(c),
            _ => None,
        }
    }

    /// True when the document may be applied (valid, or skipped as not ours).
    pub fn is_valid(&self) -> bool {
        self.report.is_valid()
    }
}

/// Decodes every document of `text` and validates each Istio object in it.
///
/// Everything the verdicts echo of the input is bounded: field paths and identifiers to
/// [`MAX_ECHO`] bytes, messages to [`MAX_MESSAGE`] (see [`crate::diag::bounded`]), so a
/// document quoting a 4 MiB value yields diagnostics of a few hundred bytes wherever they
/// are shown (`validate`, the control plane's log, `/debug/configz`).
pub fn check_text(
    text: &str,
    format: Format,
    default_namespace: &str,
    mesh: &MeshConfig,
) -> Result<Vec<Checked>, SyntaxError> {
    let docs = decode::decode_str(text, format, default_namespace).map_err(|mut e| {
        e.message = bounded_middle(&e.message, MAX_MESSAGE).into_owned();
        e
    })?;
    Ok(docs
        .into_iter()
        .map(|mut doc| {
            let (report, skipped) = match &doc.outcome {
                Outcome::Config(c) => (validate::validate(c, mesh), None),
                Outcome::Invalid(r) => (r.clone(), None),
                Outcome::Skipped(why) => (
                    Report::default(),
                    Some(bounded_middle(why, MAX_MESSAGE).into_owned()),
                ),
            };
            // Only invalid or skipped documents can carry over-long identifiers (a valid
            // name is at most 253 bytes), so valid keys are never altered.
            for id in [&mut doc.kind, &mut doc.namespace, &mut doc.name] {
                if id.len() > MAX_ECHO {
                    *id = bounded(id, MAX_ECHO).into_owned();
                }
            }
            Checked {
                doc,
                report: report.bounded(),
                skipped,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_of_huge_values_are_bounded() {
        let host = "a".repeat(4 << 20);
        let name = "n".repeat(1 << 20);
        let se = |name: &str, host: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: 80, name: http, protocol: HTTP}}\n  resolution: DNS\n"
            )
        };
        let text = format!("{}---\n{}", se(&name, "a.example.com"), se("ok", &host));
        let docs =
            check_text(&text, Format::Yaml, "default", &MeshConfig::default()).expect("parses");
        assert_eq!(docs.len(), 2);
        assert!(docs.iter().all(|c| !c.is_valid()), "both are invalid");
        let named = &docs[0];
        assert!(
            named.doc.name.len() <= MAX_ECHO + 20,
            "{}",
            named.doc.name.len()
        );
        assert!(
            named.doc.name.ends_with(&format!("({} bytes)", 1 << 20)),
            "{}",
            &named.doc.name[MAX_ECHO - 5..]
        );
        for c in &docs {
            assert!(!c.report.errors.is_empty());
            for i in &c.report.errors {
                assert!(i.path.len() <= MAX_ECHO + 20, "{}", i.path.len());
                assert!(
                    i.message.len() <= MAX_MESSAGE + 64,
                    "{} bytes: {}",
                    i.message.len(),
                    &i.message[..200]
                );
            }
        }
        assert!(
            docs[1]
                .report
                .errors
                .iter()
                .any(|i| i.path == "spec.hosts[0]"),
            "{:?}",
            docs[1].report.errors
        );
    }
}
