//! Figure 4, reproducibility: what `make repro` left in
//! `target/repro/result.json`. The bench does not rebuild (two clean
//! release builds take minutes); it reports the last `make repro`, and
//! says when that was run on another commit than the one benched.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One `make repro` run.
#[derive(Debug, Clone)]
pub struct Repro {
    pub binary: String,
    pub target: String,
    pub commit: String,
    pub uncommitted: bool,
    pub rustc: String,
    pub sha256: [String; 2],
    pub seconds: [u64; 2],
    pub identical: bool,
    /// When it finished, Unix seconds.
    pub finished: u64,
}

/// Where `make repro` writes its result (tests/scripts/repro.sh).
pub fn result_path() -> PathBuf {
    Path::new(crate::MANIFEST_DIR).join("target/repro/result.json")
}

/// The last `make repro`, or why there is none.
pub fn read() -> Result<Repro, String> {
    let path = result_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|_| "not run: `make repro` writes target/repro/result.json".to_owned())?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not JSON ({e}); re-run `make repro`", path.display()))?;
    let text_of = |k: &str| doc[k].as_str().unwrap_or_default().to_owned();
    let num = |k: &str| doc[k].as_u64().unwrap_or(0);
    Ok(Repro {
        binary: text_of("binary"),
        target: text_of("target"),
        commit: text_of("commit"),
        uncommitted: doc["uncommitted_changes"].as_bool().unwrap_or(true),
        rustc: text_of("rustc"),
        sha256: [text_of("sha256_a"), text_of("sha256_b")],
        seconds: [num("seconds_a"), num("seconds_b")],
        identical: doc["identical"].as_bool().unwrap_or(false),
        finished: num("finished_unix"),
    })
}

/// The reproducibility paragraph and table. `benched` is the commit the
/// bench runs on (`git rev-parse --short HEAD`, maybe with a note).
pub fn render(out: &mut String, repro: &Result<Repro, String>, benched: &str) {
    let _ = writeln!(
        out,
        "Reproducibility: `make repro` builds the static binary twice, each time from an empty \
         target directory at a different path, and compares their SHA-256 \
         ([verifying a release](verifying-a-release.md)). The bench reports its last run.\n"
    );
    let r = match repro {
        Ok(r) => r,
        Err(why) => {
            let _ = writeln!(out, "| reproducible build | {why} |\n|---|---|\n");
            return;
        }
    };
    let same_commit = benched
        .split_whitespace()
        .next()
        .is_some_and(|short| !short.is_empty() && r.commit.starts_with(short));
    let when = crate::utc(r.finished);
    let provenance = match (same_commit, r.uncommitted) {
        (true, false) => format!("commit {}, the one benched", short(&r.commit)),
        (true, true) => format!(
            "commit {} with uncommitted changes, the one benched",
            short(&r.commit)
        ),
        (false, _) => format!(
            "commit {}, not the one benched ({benched}): re-run `make repro`",
            short(&r.commit)
        ),
    };
    let _ = writeln!(
        out,
        "| build | SHA-256 of `{}` ({}) | seconds |\n|---|---|---|",
        r.binary, r.target
    );
    for (i, side) in ["first", "second"].iter().enumerate() {
        let _ = writeln!(out, "| {side} | `{}` | {} |", r.sha256[i], r.seconds[i]);
    }
    let _ = writeln!(
        out,
        "\n{} — {}; {}; run {when}.\n",
        if r.identical {
            "**identical**"
        } else {
            "**different**"
        },
        provenance,
        r.rustc
    );
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `BENCH_ONLY=repro`: this part of figure 4 alone, printed.
pub fn only(benched: &str) {
    let mut out = String::new();
    render(&mut out, &read(), benched);
    println!("{out}");
}
