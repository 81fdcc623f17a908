//! Maintenance tool: regenerates `src/envoy_types_descriptor.bin.gz` from envoy-types'
//! `src/generated/types.bin` (its path is the one argument): drops source info, gzips.
//!
//! `cargo run -p entryway-xds --example regen_descriptor -- ~/.cargo/registry/src/*/envoy-types-X.Y.Z/src/generated/types.bin`
//! then update `DESCRIPTOR_SET_ENVOY_TYPES_VERSION` in `src/json.rs`.

use std::io::Write;
use std::process::ExitCode;

use prost::Message;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: regen_descriptor <path to envoy-types src/generated/types.bin>");
        return ExitCode::from(2);
    };
    match regenerate(&path) {
        Ok(out) => {
            println!("wrote {out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("regen_descriptor: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn regenerate(path: &str) -> Result<&'static str, Box<dyn std::error::Error>> {
    let raw = std::fs::read(path)?;
    let mut set = prost_reflect::prost_types::FileDescriptorSet::decode(raw.as_slice())?;
    for file in &mut set.file {
        file.source_code_info = None;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&set.encode_to_vec())?;
    let out = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/envoy_types_descriptor.bin.gz"
    );
    std::fs::write(out, gz.finish()?)?;
    Ok(out)
}
