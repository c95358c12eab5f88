//! The baseline of figure 11 in `make bench`: a plain round trip of a
//! multi-document YAML file through the injector's own reader and writer
//! (`secret_gate_injector::yaml`: YAML 1.1 as kubectl reads it), and
//! nothing else. Every document is split off, parsed into a value and
//! emitted again to stdout; no injection, no validation.
//!
//! `cargo run --release -p secret-gate-injector --example yaml-roundtrip -- FILE`

use std::io::Write as _;

use secret_gate_injector::{document, yaml};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: yaml-roundtrip FILE")?;
    let text = std::fs::read_to_string(path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for piece in document::split_yaml(&text) {
        if let Some(value) = yaml::load(piece)? {
            out.write_all(b"---\n")?;
            out.write_all(yaml::to_string(&value).as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}
