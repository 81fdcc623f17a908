//! Decode and validate a whole file's text: what `entryway validate` and the config
//! store both run, so that a document is judged the same way everywhere.

use crate::api::MeshConfig;
use crate::config::Config;
use crate::decode::{self, Document, Format, Outcome, SyntaxError};
use crate::diag::Report;
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
pub fn check_text(
    text: &str,
    format: Format,
    default_namespace: &str,
    mesh: &MeshConfig,
) -> Result<Vec<Checked>, SyntaxError> {
    let docs = decode::decode_str(text, format, default_namespace)?;
    Ok(docs
        .into_iter()
        .map(|doc| {
            let (report, skipped) = match &doc.outcome {
                Outcome::Config(c) => (validate::validate(c, mesh), None),
                Outcome::Invalid(r) => (r.clone(), None),
                Outcome::Skipped(why) => (Report::default(), Some(why.clone())),
            };
            Checked {
                doc,
                report,
                skipped,
            }
        })
        .collect())
}
