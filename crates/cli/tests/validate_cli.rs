//! `entryway validate` end to end: the shipped examples are valid, a broken copy of them
//! reports every problem with file, line, resource, field path and message, and the exit
//! status follows the contract (0 valid, 1 invalid, 2 unreadable or not YAML/JSON).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use entryway::validate::{Args, Output, run};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn validate(paths: &[PathBuf], output: Output) -> (u8, String, String) {
    let args = Args {
        paths: paths.to_vec(),
        output,
        mesh: None,
        namespace: "default".into(),
        max_file_bytes: entryway_server::files::DEFAULT_MAX_FILE_BYTES,
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = run(&args, &mut out, &mut err);
    (
        status,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Copies `examples/` and applies `(file, from, to)` text edits, each of which must apply.
fn broken_copy(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(examples_dir()).expect("examples dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    for (file, from, to) in edits {
        let p = dir.path().join(file);
        let text = std::fs::read_to_string(&p).expect("read copy");
        assert!(text.contains(from), "{file} should contain {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).expect("write copy");
    }
    dir
}

#[test]
fn examples_are_valid() {
    let (status, out, err) = validate(&[examples_dir()], Output::Human);
    assert_eq!(status, 0, "examples should be valid:\n{out}\n{err}");
    assert!(out.contains(" 0 invalid"), "{out}");
    assert!(out.contains(" 0 error(s)"), "{out}");
}

const EDITS: &[(&str, &str, &str)] = &[
    // Decode: an unknown field, as the API server's strict decoding reports it.
    (
        "seed-external-svc-https.yaml",
        "  location: MESH_EXTERNAL",
        "  location: MESH_EXTERNAL\n  hostz: [x]",
    ),
    // Decode: an enum value Istio does not know.
    (
        "seed-mongocluster.yaml",
        "resolution: STATIC",
        "resolution: STATICK",
    ),
    // Validation: duplicate port number.
    (
        "resolution-static-vip.yaml",
        "  - number: 3306\n    name: mysql\n    protocol: TCP",
        "  - number: 3306\n    name: mysql\n    protocol: TCP\n  - number: 3306\n    name: mysql2\n    protocol: TCP",
    ),
    // Validation: a wildcard host with DNS resolution and no endpoints.
    (
        "resolution-dns-http.yaml",
        "resolution: DNS",
        "resolution: DNS\n  exportTo: [\"*\", \".\"]",
    ),
];

#[test]
fn broken_copy_reports_file_line_resource_path_and_message() {
    let dir = broken_copy(EDITS);
    let (status, out, _err) = validate(&[dir.path().to_path_buf()], Output::Human);
    assert_eq!(status, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let find = |needle: &str| -> &str {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .copied()
            .unwrap_or_else(|| panic!("no line containing {needle:?} in:\n{out}"))
    };

    let unknown = find("hostz");
    assert!(
        unknown.contains(
            "seed-external-svc-https.yaml:12: ServiceEntry default/external-svc-https: spec.hostz:"
        ),
        "{unknown}"
    );
    assert!(unknown.contains("unknown field"), "{unknown}");

    let bad_enum = find("STATICK");
    assert!(bad_enum.contains("seed-mongocluster.yaml:"), "{bad_enum}");
    assert!(bad_enum.contains("spec.resolution"), "{bad_enum}");

    let dup = find("service entry port 3306 already defined");
    assert!(
        dup.contains(
            "resolution-static-vip.yaml:17: ServiceEntry shop/orders-db: spec.ports[1].number:"
        ) || dup
            .contains("resolution-static-vip.yaml:17: ServiceEntry shop/orders-db: spec.ports[1]:"),
        "{dup}"
    );

    let export = find("cannot have both public (*) and non-public exportTo values");
    assert!(export.contains("resolution-dns-http.yaml:"), "{export}");
    assert!(export.contains("spec.exportTo"), "{export}");

    let summary = lines.last().copied().unwrap_or_default();
    assert!(summary.contains("4 invalid"), "summary: {summary}");
}

#[test]
fn broken_copy_as_json() {
    let dir = broken_copy(EDITS);
    let (status, out, _err) = validate(&[dir.path().to_path_buf()], Output::Json);
    assert_eq!(status, 1);
    let docs: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    let docs = docs.as_array().expect("array");
    let invalid: Vec<&serde_json::Value> = docs.iter().filter(|d| d["valid"] == false).collect();
    assert_eq!(invalid.len(), 4, "{out}");
    let vip = docs
        .iter()
        .find(|d| {
            d["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("resolution-static-vip.yaml"))
        })
        .expect("vip doc");
    assert_eq!(vip["index"], 0);
    assert_eq!(
        vip["line"], 3,
        "line of the document's first line (after comments)"
    );
    assert_eq!(vip["kind"], "ServiceEntry");
    assert_eq!(vip["namespace"], "shop");
    assert_eq!(vip["name"], "orders-db");
    let errors = vip["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("spec.ports[1]"))
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("3306 already defined"))),
        "{vip}"
    );
    // Every object carries the documented keys.
    for d in docs {
        for key in [
            "file",
            "index",
            "line",
            "kind",
            "namespace",
            "name",
            "valid",
            "errors",
            "warnings",
        ] {
            assert!(d.get(key).is_some(), "missing {key} in {d}");
        }
    }
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_entryway"))
}

#[test]
fn exit_status_two_for_syntax_errors_with_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: [unclosed\n",
    )
    .expect("write");
    let out = binary()
        .arg("validate")
        .arg(&p)
        .output()
        .expect("run entryway");
    assert_eq!(out.status.code(), Some(2));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("bad.yaml:"), "{text}");
    assert!(
        text.contains("line 4") || text.contains("bad.yaml:4") || text.contains("bad.yaml:3"),
        "{text}"
    );

    let missing = binary()
        .arg("validate")
        .arg(dir.path().join("nope.yaml"))
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn stdin_is_read_with_dash() {
    use std::io::Write as _;
    let mut child = binary()
        .args(["validate", "-o", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: x, namespace: a}\nspec:\n  hosts: []\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(docs[0]["name"], "x");
    assert_eq!(docs[0]["valid"], false);
}

#[test]
fn special_and_oversized_files_in_a_directory_are_reported_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        examples_dir().join("seed-external-svc-https.yaml"),
        dir.path().join("ok.yaml"),
    )
    .expect("copy");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("fifo.yaml"))
        .status()
        .expect("mkfifo (coreutils) must be installed");
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).expect("symlink");
    std::fs::write(dir.path().join("big.yaml"), vec![b'#'; 9 << 20]).expect("big");
    let started = std::time::Instant::now();
    let (status, out, err) = validate(&[dir.path().to_path_buf()], Output::Human);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, entryway::validate::EXIT_UNREADABLE, "{out}\n{err}");
    let all = format!("{out}{err}");
    for needle in [
        "fifo.yaml",
        "a FIFO",
        "zero.yaml",
        "a character device",
        "big.yaml",
        "more than the limit",
    ] {
        assert!(all.contains(needle), "{needle}: {all}");
    }
}
