//! The baseline of figure 11 in `make bench`: a plain round trip of a
//! multi-document YAML file by the crate the injector edits with, and
//! nothing else. Every document is parsed into a `serde_yaml_ng::Value`
//! and emitted again to stdout; no injection, no validation.
//!
//! `cargo run --release -p secret-gate-injector --example yaml-roundtrip -- FILE`

use std::io::Write as _;

use serde::Deserialize as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: yaml-roundtrip FILE")?;
    let text = std::fs::read_to_string(path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_yaml_ng::Value::deserialize(document)?;
        out.write_all(b"---\n")?;
        out.write_all(serde_yaml_ng::to_string(&value)?.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
