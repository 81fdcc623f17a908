//! No input panics: random text, mutated example YAML/JSON and structurally mutated
//! resources all go through decode and validate, which must return (Ok or a syntax error)
//! without panicking.
//!
//! Case counts default to a CI-friendly number; set `ENTRYWAY_FUZZ_CASES` to run more
//! (each of the four properties runs that many inputs).

use entryway_model::api::MeshConfig;
use entryway_model::check::check_text;
use entryway_model::decode::Format;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::Value;

const SEEDS: &[&str] = &[
    include_str!("../../../examples/seed-external-svc-https.yaml"),
    include_str!("../../../examples/seed-mongocluster.yaml"),
    include_str!("../../../examples/resolution-none-wildcard.yaml"),
    include_str!("../../../examples/resolution-static-vip.yaml"),
    include_str!("../../../examples/resolution-dns-http.yaml"),
    include_str!("../../../examples/resolution-dns-round-robin.yaml"),
    include_str!("../../../examples/workload-selector.yaml"),
    include_str!("fixtures/rich.yaml"),
];

/// YAML fragments that tend to break parsers and validators.
const TOKENS: &[&str] = &[
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "*",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "null",
    "~",
    "-1",
    "0",
    "65536",
    "4294967296",
    "1e400",
    "0x10",
    "\t",
    "\n",
    "\n  ",
    "\n- ",
    "---\n",
    "...\n",
    "#",
    "%",
    "@",
    "|",
    ">",
    "?",
    ",",
    "hosts:",
    "ports:",
    "resolution: DNS",
    "resolution: STATIC",
    "endpoints: []",
    "workloadSelector: {}",
    "exportTo: [\"~\"]",
    "addresses: [\"10.0.0.0/8\"]",
    "number: 0",
    "name: \"\"",
    "kind: List",
    "items:",
    "apiVersion: networking.istio.io/v1",
    "kind: ServiceEntry",
    "metadata: {}",
    "spec: {}",
    "1.2.3.4",
    "::1",
    "*.example.com",
    "..",
    "-10s",
    "1h",
    "99999999999s",
    "0.0000001s",
    "\u{0}",
    "\u{feff}",
    "é",
    "☃",
    "\r\n",
];

fn cases() -> u32 {
    std::env::var("ENTRYWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

fn run_all(text: &str) {
    let mesh = MeshConfig::default();
    for format in [Format::Yaml, Format::Json] {
        if let Ok(docs) = check_text(text, format, "default", &mesh) {
            for d in docs {
                // Touch everything the CLI prints.
                let _ = d.doc.line();
                let _ = d.report.errors.len() + d.report.warnings.len();
            }
        }
    }
}

fn runner() -> TestRunner {
    TestRunner::new(PtConfig {
        cases: cases(),
        failure_persistence: None,
        ..PtConfig::default()
    })
}

#[test]
fn random_text_never_panics() {
    let strategy = prop_oneof![
        any::<String>(),
        "[ -~\n\t]{0,200}",
        proptest::collection::vec(proptest::sample::select(TOKENS), 0..40).prop_map(|v| v.concat()),
    ];
    runner()
        .run(&strategy, |text| {
            run_all(&text);
            Ok(())
        })
        .expect("decode/validate panicked on random text");
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, &'static str),
    Delete(usize, usize),
    DupLine(usize),
    DropLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), proptest::sample::select(TOKENS)).prop_map(|(p, t)| Edit::Insert(p, t)),
        (any::<usize>(), 0usize..20).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<usize>().prop_map(Edit::DupLine),
        any::<usize>().prop_map(Edit::DropLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0usize..5).prop_map(|(a, n)| Edit::Indent(a, n)),
    ]
}

fn char_boundary(s: &str, p: usize) -> usize {
    let mut p = p % (s.len() + 1);
    while !s.is_char_boundary(p) {
        p -= 1;
    }
    p
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match *edit {
        Edit::Insert(p, t) => {
            let p = char_boundary(text, p);
            format!("{}{}{}", &text[..p], t, &text[p..])
        }
        Edit::Delete(p, len) => {
            let a = char_boundary(text, p);
            let b = char_boundary(text, a.saturating_add(len).min(text.len()));
            format!("{}{}", &text[..a], &text[b.max(a)..])
        }
        Edit::DupLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
            lines.join("\n")
        }
        Edit::DropLine(i) => {
            lines.remove(i % n);
            lines.join("\n")
        }
        Edit::SwapLines(a, b) => {
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Edit::Indent(i, k) => {
            let l = &mut lines[i % n];
            *l = format!("{}{}", " ".repeat(k), l.trim_start());
            lines.join("\n")
        }
    }
}

#[test]
fn mutated_examples_never_panic() {
    let strategy = (
        proptest::sample::select(SEEDS),
        proptest::collection::vec(edit_strategy(), 1..6),
    );
    runner()
        .run(&strategy, |(seed, edits)| {
            let mut text = seed.to_owned();
            for e in &edits {
                text = apply(&text, e);
            }
            run_all(&text);
            Ok(())
        })
        .expect("decode/validate panicked on mutated YAML");
}

/// Replacement values of every JSON type, including ones that are out of range for the
/// typed fields.
fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(TOKENS).prop_map(|s| Value::String(s.to_owned())),
        "[a-zA-Z0-9.*/:_~-]{0,30}".prop_map(Value::String),
        (0u32..70000).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every node of a JSON tree, as a path of steps.
fn node_count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(node_count).sum(),
        Value::Object(o) => o.values().map(node_count).sum(),
        _ => 0,
    }
}

/// Replaces the `k`-th node (pre-order) with `with`; may also delete it from its parent.
fn replace_nth(v: &mut Value, k: &mut usize, with: &Value, delete: bool) -> bool {
    if *k == 0 {
        *v = with.clone();
        return true;
    }
    *k -= 1;
    match v {
        Value::Array(a) => {
            for i in 0..a.len() {
                if *k == 0 && delete {
                    a.remove(i);
                    return true;
                }
                if replace_nth(&mut a[i], k, with, delete) {
                    return true;
                }
            }
        }
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for key in keys {
                if *k == 0 && delete {
                    o.remove(&key);
                    return true;
                }
                if let Some(child) = o.get_mut(&key)
                    && replace_nth(child, k, with, delete)
                {
                    return true;
                }
            }
        }
        _ => {}
    }
    false
}

#[test]
fn structurally_mutated_resources_never_panic() {
    let docs: Vec<Value> = SEEDS
        .iter()
        .flat_map(|s| {
            serde_yaml::Deserializer::from_str(s)
                .filter_map(|d| serde::Deserialize::deserialize(d).ok())
                .collect::<Vec<Value>>()
        })
        .filter(|v: &Value| !v.is_null())
        .collect();
    assert!(docs.len() >= 10, "seed documents should parse");
    let strategy = (
        proptest::sample::select(docs),
        proptest::collection::vec((any::<usize>(), value_strategy(), any::<bool>()), 1..5),
        any::<bool>(),
    );
    runner()
        .run(&strategy, |(mut doc, muts, as_json)| {
            for (at, with, delete) in &muts {
                // Keep apiVersion/kind mostly intact so the typed validators are reached.
                let n = node_count(&doc);
                let mut k = 3 + at % n.max(4);
                replace_nth(&mut doc, &mut k, with, *delete);
            }
            let text = if as_json {
                serde_json::to_string(&doc).unwrap_or_default()
            } else {
                serde_yaml::to_string(&doc).unwrap_or_default()
            };
            run_all(&text);
            Ok(())
        })
        .expect("decode/validate panicked on a structurally mutated resource");
}

#[test]
fn deeply_nested_and_huge_inputs_do_not_panic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    run_all(&deep);
    let deep_map = "a:\n".to_owned()
        + &(1..300)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect::<String>();
    run_all(&deep_map);
    let laughs = "a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    run_all(laughs);
}
