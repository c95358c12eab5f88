//! The stable driver of the fuzz properties: each target's property runs
//! on every committed seed (`fuzz/corpus/<target>/`), every regression
//! input (`fuzz/regressions/<target>/`: each crash, timeout or
//! out-of-memory libFuzzer found), and a bounded number of inputs that
//! `arbitrary` derives from a fixed-seed random stream by mutating the
//! seeds with the target's dictionary (`fuzz/dict/<target>.dict`).
//!
//! `FUZZ_PROPS_CASES` sets the number of derived inputs per target (default
//! 500) and `FUZZ_PROPS_SEED` the random seed (default 1), so a run is
//! repeatable. A failing input is saved under
//! `target/fuzz-props-failures/` and named in the failure.

use std::path::{Path, PathBuf};

use arbitrary::Unstructured;
use secret_gate_fuzz_props::{Property, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    files.sort();
    files
}

/// The tokens of a libFuzzer dictionary: `name="value"` or `"value"`
/// lines, with `\\`, `\"` and `\xNN` escapes.
fn dictionary(path: &Path) -> Vec<Vec<u8>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let start = l.find('"')?;
            let end = l.rfind('"')?;
            (end > start).then(|| unescape(&l[start + 1..end]))
        })
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'x' && i + 3 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
            out.push(bytes[i + 1]);
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// One input derived from the seeds by `u`: a seed (or nothing), then up
/// to four edits, each an inserted dictionary token, a spliced piece of
/// another seed, arbitrary bytes, a cut, or a repeated piece.
fn derive(
    u: &mut Unstructured<'_>,
    seeds: &[Vec<u8>],
    dict: &[Vec<u8>],
) -> arbitrary::Result<Vec<u8>> {
    let mut data = if seeds.is_empty() || u.ratio(1, 10)? {
        u.arbitrary::<Vec<u8>>()?
    } else {
        u.choose(seeds)?.clone()
    };
    for _ in 0..u.int_in_range(0..=4)? {
        let at = u.int_in_range(0..=data.len())?;
        match u.int_in_range(0..=4)? {
            0 if !dict.is_empty() => {
                let token = u.choose(dict)?;
                data.splice(at..at, token.iter().copied());
            }
            1 if !seeds.is_empty() => {
                let other = u.choose(seeds)?;
                let from = u.int_in_range(0..=other.len())?;
                data.splice(at..at, other[from..].iter().copied());
            }
            2 => {
                let bytes: Vec<u8> = u.arbitrary()?;
                data.splice(at..at, bytes);
            }
            3 => {
                let end = u.int_in_range(at..=data.len())?;
                data.drain(at..end);
            }
            _ => {
                let end = u.int_in_range(at..=data.len().min(at + 64))?;
                let piece = data[at..end].to_vec();
                for _ in 0..u.int_in_range(1..=8)? {
                    data.splice(at..at, piece.iter().copied());
                }
            }
        }
    }
    Ok(data)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `property` on `data`; on a panic, saves the input and fails naming
/// it.
fn run_one(target: &str, what: &str, property: Property, data: &[u8]) {
    let outcome = std::panic::catch_unwind(|| property(data));
    if let Err(panic) = outcome {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-props-failures");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{target}-{}", what.replace('/', "_")));
        let _ = std::fs::write(&file, data);
        eprintln!(
            "fuzz property {target} failed on {what}; input saved to {} \
             (replay: cargo fuzz run {target} {})",
            file.display(),
            file.display()
        );
        std::panic::resume_unwind(panic);
    }
}

/// Every seed, every regression input and the derived inputs of `target`.
fn drive(target: &str) {
    let property = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map_or_else(|| panic!("no fuzz target named {target}"), |(_, f)| *f);
    let dir = fuzz_dir();
    let corpus = inputs(&dir.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ holds no seed: every target needs a few"
    );
    for (name, data) in &corpus {
        run_one(target, &format!("corpus/{name}"), property, data);
    }
    for (name, data) in inputs(&dir.join("regressions").join(target)) {
        run_one(target, &format!("regressions/{name}"), property, &data);
    }
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, d)| d).collect();
    let dict = dictionary(&dir.join("dict").join(format!("{target}.dict")));
    let cases = env_number("FUZZ_PROPS_CASES", 500);
    let mut rng = fastrand::Rng::with_seed(env_number("FUZZ_PROPS_SEED", 1));
    let mut stream = vec![0u8; 4096];
    for case in 0..cases {
        for b in &mut stream {
            *b = rng.u8(..);
        }
        let mut u = Unstructured::new(&stream);
        let Ok(data) = derive(&mut u, &seeds, &dict) else {
            continue;
        };
        run_one(target, &format!("case-{case}"), property, &data);
    }
}

#[test]
fn every_target_is_driven_here() {
    let here = include_str!("props.rs");
    for (name, _) in TARGETS {
        assert!(
            here.contains(&format!("fn {name}() {{")),
            "target {name} has no test in fuzz-props/tests/props.rs"
        );
        let target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(
            target.is_file(),
            "target {name} has no {}",
            target.display()
        );
    }
}

#[test]
fn format_json() {
    drive("format_json");
}

#[test]
fn format_yaml() {
    drive("format_yaml");
}

#[test]
fn format_env() {
    drive("format_env");
}

#[test]
fn pem() {
    drive("pem");
}

#[test]
fn safe_response() {
    drive("safe_response");
}

#[test]
fn spiffe_id() {
    drive("spiffe_id");
}

#[test]
fn cli() {
    drive("cli");
}

#[test]
fn inject() {
    drive("inject");
}

/// The PEM seeds reach the pair and chain checks at the harness's clock:
/// one set passes them all, another fails the pair.
#[test]
fn pem_seeds_reach_the_pair_and_chain_checks() {
    use secret_gate::check::{tls, TlsPolicy};
    use std::time::{Duration, UNIX_EPOCH};
    let now = UNIX_EPOCH + Duration::from_secs(secret_gate_fuzz_props::pem::NOW_UNIX);
    let policy = TlsPolicy {
        min_validity: Duration::from_secs(3600),
        pairs: vec![("tls.crt".into(), "tls.key".into())],
        ca_file: Some("ca.crt".into()),
    };
    let mut kinds = Vec::new();
    for (_, data) in inputs(&fuzz_dir().join("corpus/pem")) {
        let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
        if parts.len() != 3 {
            continue;
        }
        let files = [
            ("tls.crt", parts[0]),
            ("tls.key", parts[1]),
            ("ca.crt", parts[2]),
        ];
        let report = tls::check(&files, &policy, now);
        kinds.push(
            report
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        kinds.iter().any(Vec::is_empty),
        "no PEM seed passes: {kinds:?}"
    );
    assert!(
        kinds.iter().flatten().any(|p| p.contains("does not match")),
        "no PEM seed fails the pair check: {kinds:?}"
    );
    assert!(
        kinds.iter().flatten().any(|p| p.contains("does not chain")),
        "no PEM seed fails the chain check: {kinds:?}"
    );
}

/// `name version` of every package in a Cargo.lock.
fn locked_versions(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            out.push((n, v.trim_matches('"').to_owned()));
        }
    }
    out
}

/// libFuzzer fuzzes what ships: every package that fuzz/Cargo.lock shares
/// with the root Cargo.lock is at a version the root one locks.
#[test]
fn the_fuzz_workspace_locks_the_shipped_versions() {
    let root = locked_versions(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"));
    let fuzz = locked_versions(&fuzz_dir().join("Cargo.lock"));
    assert!(!fuzz.is_empty(), "fuzz/Cargo.lock is missing");
    let drifted: Vec<String> = fuzz
        .iter()
        .filter(|(name, _)| root.iter().any(|(n, _)| n == name))
        .filter(|entry| !root.contains(entry))
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    assert!(
        drifted.is_empty(),
        "fuzz/Cargo.lock locks versions the gate does not ship: {drifted:?}; \
         run `cargo update --manifest-path fuzz/Cargo.toml -p NAME --precise VERSION` \
         with the root Cargo.lock's version"
    );
}
