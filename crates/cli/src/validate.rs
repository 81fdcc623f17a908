//! `entryway validate`: compiler-style diagnostics for Istio networking files.

use std::io::{Read, Write};
use std::path::PathBuf;

use entryway_model::api::MeshConfig;
use entryway_model::check::{Checked, check_text};
use entryway_model::decode::Format;
use serde_json::json;

/// Arguments of `entryway validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Files or directories (recursive: *.yaml, *.yml, *.json); `-` reads standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Mesh config file (defaults to Istio's).
    #[arg(long)]
    pub mesh: Option<PathBuf>,
    /// Namespace for documents that name none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Largest file read (bytes); a larger one is reported unreadable.
    #[arg(long, default_value_t = entryway_server::files::DEFAULT_MAX_FILE_BYTES, value_name = "BYTES")]
    pub max_file_bytes: u64,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// `file:line: Kind namespace/name: field: message`, then a summary line.
    Human,
    /// A JSON array with one object per document.
    Json,
}

/// Exit status: every document valid.
pub const EXIT_VALID: u8 = 0;
/// Exit status: some document invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit status: some file unreadable or not YAML/JSON.
pub const EXIT_UNREADABLE: u8 = 2;

/// The verdict on one file.
#[derive(Debug)]
pub struct FileVerdict {
    /// The name shown for the file.
    pub file: String,
    /// Its documents, or why it could not be read or parsed.
    pub result: Result<Vec<Checked>, String>,
}

/// Reads and checks every file named by `paths` (files within the default size bound).
pub fn check_paths(paths: &[PathBuf], namespace: &str, mesh: &MeshConfig) -> Vec<FileVerdict> {
    check_paths_within(
        paths,
        namespace,
        mesh,
        entryway_server::files::DEFAULT_MAX_FILE_BYTES,
    )
}

/// Reads and checks every file named by `paths`: regular files of at most `max_bytes`
/// (a FIFO, a device or an over-long file is reported unreadable, never read).
pub fn check_paths_within(
    paths: &[PathBuf],
    namespace: &str,
    mesh: &MeshConfig,
    max_bytes: u64,
) -> Vec<FileVerdict> {
    let mut verdicts = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut bytes = Vec::new();
            let limit = max_bytes.saturating_add(1);
            let result = match std::io::stdin().lock().take(limit).read_to_end(&mut bytes) {
                Ok(n) if n as u64 > max_bytes => Err(format!(
                    "standard input is more than the limit of {max_bytes} bytes (--max-file-bytes)"
                )),
                Ok(_) => match String::from_utf8(bytes) {
                    Ok(text) => check_one(&text, sniff_format(&text), namespace, mesh),
                    Err(e) => Err(format!(
                        "standard input is not UTF-8 text (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    )),
                },
                Err(e) => Err(format!("cannot read standard input: {e}")),
            };
            verdicts.push(FileVerdict {
                file: "<stdin>".to_string(),
                result,
            });
            continue;
        }
        let listing = match entryway_server::files::list(std::slice::from_ref(p)) {
            Ok(l) => l,
            Err(e) => {
                verdicts.push(FileVerdict {
                    file: p.display().to_string(),
                    result: Err(e.to_string()),
                });
                continue;
            }
        };
        for s in listing.skipped {
            verdicts.push(FileVerdict {
                file: s.path.display().to_string(),
                result: Err(format!("not read: {}", s.reason)),
            });
        }
        for f in listing.files {
            let name = f.display().to_string();
            let result = match entryway_server::files::read_config_file(&f, max_bytes) {
                Ok(text) => check_one(&text, Format::from_file_name(&name), namespace, mesh),
                Err(e) => Err(format!("cannot read file: {e}")),
            };
            verdicts.push(FileVerdict { file: name, result });
        }
    }
    verdicts
}

fn check_one(
    text: &str,
    format: Format,
    namespace: &str,
    mesh: &MeshConfig,
) -> Result<Vec<Checked>, String> {
    check_text(text, format, namespace, mesh)
        .map_err(|e| format!("{}:{}: syntax error: {}", e.line, e.column, e.message))
}

/// JSON when the first meaningful character opens a JSON value, YAML otherwise.
fn sniff_format(text: &str) -> Format {
    match text.trim_start().chars().next() {
        Some('{') | Some('[') => Format::Json,
        _ => Format::Yaml,
    }
}

/// Runs `entryway validate`, writing the report to `out` and problems reading files to
/// `err`. Returns the exit status.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mesh = match crate::load_mesh(args.mesh.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            return EXIT_UNREADABLE;
        }
    };
    let verdicts = check_paths_within(&args.paths, &args.namespace, &mesh, args.max_file_bytes);
    let status = exit_status(&verdicts);
    let written = match args.output {
        Output::Human => write_human(&verdicts, out, err),
        Output::Json => write_json(&verdicts, out, err),
    };
    if let Err(e) = written {
        let _ = writeln!(err, "error: writing output: {e}");
        return EXIT_UNREADABLE;
    }
    status
}

/// 2 if any file failed to read or parse, else 1 if any document is invalid, else 0.
pub fn exit_status(verdicts: &[FileVerdict]) -> u8 {
    if verdicts.iter().any(|v| v.result.is_err()) {
        EXIT_UNREADABLE
    } else if verdicts.iter().any(|v| {
        v.result
            .as_ref()
            .is_ok_and(|docs| docs.iter().any(|d| !d.is_valid()))
    }) {
        EXIT_INVALID
    } else {
        EXIT_VALID
    }
}

fn object_name(c: &Checked) -> String {
    let kind = if c.doc.kind.is_empty() {
        "<unknown kind>"
    } else {
        &c.doc.kind
    };
    let name = if c.doc.name.is_empty() {
        "<unnamed>"
    } else {
        &c.doc.name
    };
    format!("{kind} {}/{name}", c.doc.namespace)
}

fn write_human(
    verdicts: &[FileVerdict],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    let (mut docs, mut invalid, mut skipped, mut errors, mut warnings, mut unreadable) =
        (0, 0, 0, 0, 0, 0);
    for v in verdicts {
        match &v.result {
            Err(e) => {
                unreadable += 1;
                writeln!(err, "{}:{e}", v.file)?;
            }
            Ok(checked) => {
                for c in checked {
                    docs += 1;
                    let who = object_name(c);
                    if let Some(why) = &c.skipped {
                        skipped += 1;
                        writeln!(out, "{}:{}: warning: skipped: {why}", v.file, c.doc.line())?;
                        continue;
                    }
                    if !c.is_valid() {
                        invalid += 1;
                    }
                    for i in &c.report.errors {
                        errors += 1;
                        writeln!(
                            out,
                            "{}:{}: {who}: {i}",
                            v.file,
                            c.doc.lines.line_of(&i.path)
                        )?;
                    }
                    for i in &c.report.warnings {
                        warnings += 1;
                        writeln!(
                            out,
                            "{}:{}: warning: {who}: {i}",
                            v.file,
                            c.doc.lines.line_of(&i.path)
                        )?;
                    }
                }
            }
        }
    }
    let valid = docs - invalid - skipped;
    let mut summary = format!(
        "{docs} document(s) in {} file(s): {valid} valid, {invalid} invalid, {skipped} skipped; {errors} error(s), {warnings} warning(s)",
        verdicts.len()
    );
    if unreadable > 0 {
        summary.push_str(&format!("; {unreadable} file(s) unreadable"));
    }
    writeln!(out, "{summary}")
}

fn write_json(
    verdicts: &[FileVerdict],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    let mut arr = Vec::new();
    for v in verdicts {
        match &v.result {
            Err(e) => writeln!(err, "{}:{e}", v.file)?,
            Ok(checked) => {
                for c in checked {
                    let issues = |list: &[entryway_model::diag::Issue]| {
                        list.iter()
                            .map(|i| json!({"path": i.path, "message": i.message}))
                            .collect::<Vec<_>>()
                    };
                    let mut warnings = issues(&c.report.warnings);
                    if let Some(why) = &c.skipped {
                        warnings.push(json!({"path": "", "message": format!("skipped: {why}")}));
                    }
                    arr.push(json!({
                        "file": v.file,
                        "index": c.doc.index,
                        "line": c.doc.line(),
                        "kind": c.doc.kind,
                        "namespace": c.doc.namespace,
                        "name": c.doc.name,
                        "valid": c.is_valid(),
                        "errors": issues(&c.report.errors),
                        "warnings": warnings,
                    }));
                }
            }
        }
    }
    serde_json::to_writer_pretty(&mut *out, &arr).map_err(std::io::Error::other)?;
    writeln!(out)
}
