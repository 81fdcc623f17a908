//! `Config::to_document` is read back by the decoder to an equal object, for every valid
//! document of the repository's examples and test data (the control plane persists its last
//! good configuration in this form and re-reads it at start).

use std::path::{Path, PathBuf};

use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::{Format, Outcome, decode_value};
use entryway_model::linemap::DocLines;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_valid_document_round_trips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["examples", "testdata/xds", "crates/model/tests/fixtures"] {
        yaml_files(&root.join(dir), &mut files);
    }
    let mesh = MeshConfig::default();
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        let Ok(docs) = check_text(&text, Format::Yaml, "default", &mesh) else {
            continue;
        };
        for c in docs {
            let Some(config) = c.config() else { continue };
            let doc = config.to_document().expect("encodes");
            let back = decode_value(doc.clone(), 0, DocLines::at(1), "default");
            match back.outcome {
                Outcome::Config(b) => assert_eq!(
                    *b,
                    *config,
                    "{}: {} changed in the round trip\n{doc:#}",
                    f.display(),
                    config.key()
                ),
                other => panic!(
                    "{}: {} did not decode back: {other:?}\n{doc:#}",
                    f.display(),
                    config.key()
                ),
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 30,
        "only {checked} documents found under {}",
        root.display()
    );
}
