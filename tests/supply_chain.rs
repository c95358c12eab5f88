//! Supply chain: what a platform team's scanners and auditors read from a
//! release (docs/verifying-a-release.md).
//!
//! Run by `cargo test` (and so `make test`): `--version` names the commit;
//! the Containerfile's stages, arguments and labels; the musl target it
//! picks from `TARGETARCH` (its own shell snippet, run by `sh`); the
//! local Containerfile's labels and SBOM; and the offline CycloneDX schema
//! validator, on documents that must pass and must fail.
//!
//! Ignored by a plain `cargo test`, run by `make supply` (and so by CI,
//! `.ci/run`), because they read build artifacts that `make supply` builds
//! first: the crate list `cargo auditable` embeds in each static binary,
//! and each SBOM against the CycloneDX 1.5 schema. The shipped binaries
//! are the Makefile's `BINS`.

#[path = "common/bounded.rs"]
mod bounded;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use auditable_info::{audit_info_from_file, Limits};
use bounded::Gate;
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// `make static`'s target.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The spec version `make sbom` asks for, and the vendored schema.
const SCHEMA: &str = "bom-1.5.schema.json";
/// Crates that only the tests or the fake Safe use: none may be compiled
/// into a shipped binary, nor listed in its SBOM (see [`test_only`]).
///
/// `jsonschema` is not here: the gate validates `--schema` with it.
const TEST_ONLY: [&str; 7] = [
    "rcgen",
    "rsa",
    "clap_mangen",
    "k8s-openapi",
    "auditable-info",
    "fake-safe",
    "tonic-prost-build",
];
/// [`TEST_ONLY`] for one binary: the injector validates what it writes
/// with k8s-openapi's typed structs, so that one is its own; the gate,
/// which runs in every pod, must not carry it.
fn test_only(bin: &str) -> impl Iterator<Item = &'static str> + '_ {
    TEST_ONLY
        .into_iter()
        .filter(move |name| !(bin == "secret-gate-injector" && *name == "k8s-openapi"))
}

/// OCI labels every image carries.
const LABELS: [&str; 5] = [
    "org.opencontainers.image.source",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.version",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.created",
];

fn read(path: impl AsRef<Path>) -> String {
    let path = Path::new(ROOT).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped binaries: the Makefile's `BINS := ...` and `BINS += ...`.
fn bins() -> Vec<String> {
    let makefile = read("Makefile");
    let bins: Vec<String> = makefile
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("BINS")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix(":=").or_else(|| r.strip_prefix("+=")))
        })
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect();
    assert!(
        bins.iter().any(|b| b == "secret-gate"),
        "the Makefile's BINS must list secret-gate, found {bins:?}"
    );
    bins
}

/// The version of `name` in Cargo.lock (the one version, per cargo-deny).
fn locked_version(name: &str) -> String {
    let lock = read("Cargo.lock");
    let header = format!("name = \"{name}\"\nversion = \"");
    let at = lock
        .find(&header)
        .unwrap_or_else(|| panic!("Cargo.lock has no {name}"))
        + header.len();
    lock[at..].split('"').next().unwrap_or_default().to_owned()
}

fn git(args: &[&str]) -> Option<String> {
    let out = Gate::program("git")
        .args(args)
        .current_dir(ROOT)
        .env_remove("GIT_DIR")
        .run();
    (out.code() == Some(0)).then(|| out.stdout.trim().to_owned())
}

/// What `--version` must say about the commit: this checkout's HEAD, or
/// `unknown` where the sources are not a git work tree of their own.
fn expected_commit() -> String {
    if let Ok(given) = std::env::var("SECRET_GATE_COMMIT") {
        if !given.trim().is_empty() {
            return given.trim().to_owned();
        }
    }
    let top = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let ours = top.is_some_and(|t| t.canonicalize().ok() == Path::new(ROOT).canonicalize().ok());
    if ours {
        git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
    } else {
        "unknown".to_owned()
    }
}

#[test]
fn version_names_the_release_and_the_commit() {
    let want = format!(
        "secret-gate {} (commit {})\n",
        env!("CARGO_PKG_VERSION"),
        expected_commit()
    );
    for flag in ["--version", "-V"] {
        let out = Gate::program(env!("CARGO_BIN_EXE_secret-gate"))
            .arg(flag)
            .env_remove("SECRET_GATE_COMMIT")
            .run();
        out.assert_code(0);
        assert_eq!(out.stdout, want, "secret-gate {flag}");
    }
}

// ---- Containerfiles -------------------------------------------------------

/// One instruction: its keyword (upper case) and the rest, continuation
/// lines joined, comments dropped.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    rest: String,
}

/// A build stage: `FROM image [AS name]` and what follows.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    body: Vec<Instruction>,
}

impl Stage {
    fn args(&self) -> BTreeSet<String> {
        self.body
            .iter()
            .filter(|i| i.keyword == "ARG")
            .map(|i| {
                i.rest
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .collect()
    }

    fn all(&self, keyword: &str) -> Vec<&str> {
        self.body
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.rest.as_str())
            .collect()
    }

    /// The `LABEL key="value"` pairs of this stage.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for rest in self.all("LABEL") {
            let mut text = rest.trim();
            while let Some((key, after)) = text.split_once("=\"") {
                let Some((value, tail)) = after.split_once('"') else {
                    break;
                };
                labels.insert(key.trim().to_owned(), value.to_owned());
                text = tail.trim_start();
            }
        }
        labels
    }

    fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.image.clone())
    }
}

/// The preamble's `ARG`s (before the first `FROM`) and the stages.
fn parse_containerfile(file: &str) -> (Vec<Instruction>, Vec<Stage>) {
    let text = read(file);
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            rest: rest.trim().to_owned(),
        });
        current.clear();
    }
    let mut preamble = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i
                .rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => None,
            };
            stages.push(Stage {
                image: words.first().copied().unwrap_or_default().to_owned(),
                name,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(i);
        } else {
            preamble.push(i);
        }
    }
    (preamble, stages)
}

/// Labels, user, entry point and the files of a final `scratch` stage for
/// `bin`, whose binary and SBOM come from `binary` and `sbom`.
fn check_final_stage(file: &str, stage: &Stage, bin: &str, binary: &str, sbom: &str) {
    let what = format!("{file}, stage {}", stage.label());
    assert_eq!(stage.image, "scratch", "{what}: the image is FROM scratch");
    let labels = stage.labels();
    let args = stage.args();
    for key in LABELS {
        let value = labels
            .get(key)
            .unwrap_or_else(|| panic!("{what}: no LABEL {key}; labels: {labels:?}"));
        assert!(!value.is_empty(), "{what}: LABEL {key} is empty");
        // A value taken from a build argument needs the ARG in this stage:
        // an ARG before FROM is out of scope after it, and would be empty.
        if let Some(arg) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            assert!(
                args.contains(arg),
                "{what}: LABEL {key} uses ${{{arg}}}, which this stage does not declare (ARG {arg})"
            );
        }
    }
    for (key, arg) in [
        ("org.opencontainers.image.revision", "REVISION"),
        ("org.opencontainers.image.version", "VERSION"),
        ("org.opencontainers.image.created", "CREATED"),
    ] {
        assert_eq!(
            labels[key],
            format!("${{{arg}}}"),
            "{what}: {key} comes from the {arg} build argument (the Makefile and the workflow set it)"
        );
    }
    let copies = stage.all("COPY");
    for (from, to) in [
        (binary, format!("/{bin}")),
        (sbom, format!("/{bin}.cdx.json")),
    ] {
        assert!(
            copies.iter().any(|c| c.ends_with(&format!("{from} {to}"))),
            "{what}: no COPY of {from} to {to}; COPY lines: {copies:?}"
        );
    }
    assert_eq!(stage.all("USER"), ["65532:65532"], "{what}: runs as 65532");
    assert_eq!(
        stage.all("ENTRYPOINT"),
        [format!("[\"/{bin}\"]")],
        "{what}: the entry point is the binary"
    );
}

/// The workspace members named in Cargo.toml's `members = [...]`.
#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn workspace_members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("Cargo.toml has a [workspace] members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn containerfile_builds_every_binary_in_a_builder_stage_and_one_scratch_stage_each() {
    let (preamble, stages) = parse_containerfile("Containerfile");
    assert!(
        preamble.iter().any(|i| i.keyword == "ARG"
            && i.rest.starts_with("RUST_IMAGE=")
            && i.rest.contains("-alpine")),
        "Containerfile: ARG RUST_IMAGE=...-alpine before the first FROM; found {preamble:?}"
    );
    let builder = stages.first().expect("Containerfile has stages");
    assert_eq!(builder.image, "${RUST_IMAGE}");
    assert_eq!(builder.name.as_deref(), Some("builder"));

    // Everything cargo needs to load the workspace, including each member.
    let copies = builder.all("COPY");
    assert!(
        copies.contains(&"Cargo.toml Cargo.lock build.rs ./"),
        "the builder copies the manifest, the lock file and build.rs; COPY lines: {copies:?}"
    );
    assert!(copies.contains(&"src ./src"), "the builder copies src/");
    for member in workspace_members() {
        assert!(
            copies.contains(&format!("{member} ./{member}").as_str()),
            "workspace member {member} is not copied into the builder (COPY {member} ./{member}): \
             cargo cannot load the workspace without it"
        );
    }

    // The build: locked, auditable, for the target TARGETARCH chose, with
    // the commit and the date from build arguments, and an SBOM each.
    let args = builder.args();
    for arg in ["TARGETARCH", "BINS", "REVISION", "SOURCE_DATE_EPOCH"] {
        assert!(args.contains(arg), "the builder declares ARG {arg}");
    }
    let runs = builder.all("RUN");
    let build = runs
        .iter()
        .find(|r| r.contains("cargo auditable build"))
        .expect("the builder runs cargo auditable build");
    for needle in [
        "cargo auditable build --locked --release --target \"${target}\"",
        "target=\"$(cat rust-target)\"",
        "SECRET_GATE_COMMIT=\"${REVISION}\"",
        "export SOURCE_DATE_EPOCH",
        "--remap-path-prefix=",
        "for b in ${BINS}",
        "cargo cyclonedx",
        "--spec-version 1.5",
        "--target \"${target}\"",
        "Requesting program interpreter",
    ] {
        assert!(
            build.contains(needle),
            "the build step lacks {needle:?}:\n{build}"
        );
    }
    let bins_default = builder
        .body
        .iter()
        .find(|i| i.keyword == "ARG" && i.rest.starts_with("BINS="))
        .map(|i| {
            i.rest
                .trim_start_matches("BINS=")
                .trim_matches('"')
                .to_owned()
        })
        .unwrap_or_default();

    // One final stage per shipped binary; the gate's is last, the default.
    let bins = bins();
    let finals: Vec<&Stage> = stages[1..].iter().collect();
    for bin in &bins {
        assert!(
            bins_default.split_whitespace().any(|b| b == bin),
            "Containerfile: ARG BINS=\"{bins_default}\" does not build {bin} (the Makefile's BINS)"
        );
        let stage = finals
            .iter()
            .find(|s| s.name.as_deref() == Some(bin.as_str()))
            .unwrap_or_else(|| panic!("Containerfile has no `FROM scratch AS {bin}` stage"));
        check_final_stage(
            "Containerfile",
            stage,
            bin,
            &format!("--from=builder --chown=0:0 --chmod=0555 /out/{bin}"),
            &format!("--from=builder --chown=0:0 --chmod=0444 /out/{bin}.cdx.json"),
        );
    }
    assert_eq!(
        stages.last().and_then(|s| s.name.as_deref()),
        Some("secret-gate"),
        "the last stage, which a build without --target produces, is the gate's"
    );
}

/// The Containerfile's own `case` on `TARGETARCH`, run by `sh`.
#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn rust_target(targetarch: Option<&str>) -> (Option<i32>, String, String) {
    let (_, stages) = parse_containerfile("Containerfile");
    let script = stages[0]
        .all("RUN")
        .into_iter()
        .find(|r| r.contains("TARGETARCH"))
        .expect("a RUN in the builder reads TARGETARCH")
        .to_owned();
    assert!(
        script.contains("> rust-target"),
        "the TARGETARCH step writes ./rust-target, which the build reads: {script}"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut sh = Gate::program("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env_remove("TARGETARCH");
    if let Some(arch) = targetarch {
        sh = sh.env("TARGETARCH", arch);
    }
    let out = sh.run();
    let written = std::fs::read_to_string(dir.path().join("rust-target")).unwrap_or_default();
    (out.code(), written.trim().to_owned(), out.stderr)
}

/// The release builds the images in a called workflow (image.yml), which
/// cannot read the caller's env: both must pin the same toolchain, and the
/// injector's image must be built with the gate image's digest.
#[test]
fn the_release_workflows_pin_one_toolchain_and_inject_the_gate_by_digest() {
    let release = read(".github/workflows/release.yml");
    let image = read(".github/workflows/image.yml");
    let pinned = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("RUST_VERSION: "))
            .map(str::to_owned)
    };
    assert!(pinned(&release).is_some(), "release.yml pins RUST_VERSION");
    assert_eq!(
        pinned(&release),
        pinned(&image),
        "release.yml and image.yml pin different toolchains: make them agree"
    );
    assert!(
        release.contains("gate-digest: ${{ needs.gate-image.outputs.digest }}"),
        "release.yml builds the injector's image with the gate image's digest"
    );
    assert!(
        image.contains("SECRET_GATE_IMAGE_DIGEST=${{ inputs.gate-digest }}"),
        "image.yml passes the digest to the Containerfile"
    );
    assert!(
        read("Containerfile").contains("ARG SECRET_GATE_IMAGE_DIGEST="),
        "the Containerfile takes SECRET_GATE_IMAGE_DIGEST"
    );
}

#[test]
fn containerfile_picks_the_musl_target_from_targetarch() {
    for (arch, target) in [
        ("amd64", "x86_64-unknown-linux-musl"),
        ("arm64", "aarch64-unknown-linux-musl"),
    ] {
        let (code, written, stderr) = rust_target(Some(arch));
        assert_eq!(code, Some(0), "TARGETARCH={arch}: {stderr}");
        assert_eq!(written, target, "TARGETARCH={arch}");
    }
    // A builder that sets no TARGETARCH builds for the machine it runs on.
    let machine = Gate::program("uname").arg("-m").run().stdout;
    let (code, written, stderr) = rust_target(None);
    assert_eq!(code, Some(0), "no TARGETARCH: {stderr}");
    assert_eq!(written, format!("{}-unknown-linux-musl", machine.trim()));
    // Anything else is refused, by name.
    let (code, _, stderr) = rust_target(Some("s390x"));
    assert_eq!(code, Some(1), "TARGETARCH=s390x must fail the build");
    assert!(
        stderr.contains("linux/amd64 and linux/arm64, not s390x"),
        "the refusal names what is supported and what was asked: {stderr:?}"
    );
}

#[test]
fn local_containerfile_carries_the_labels_and_the_sbom() {
    let (_, stages) = parse_containerfile("Containerfile.local");
    let [stage] = stages.as_slice() else {
        panic!("Containerfile.local has one stage, found {}", stages.len());
    };
    check_final_stage(
        "Containerfile.local",
        stage,
        "secret-gate",
        &format!("--chown=0:0 --chmod=0555 target/{STATIC_TARGET}/release/secret-gate"),
        "--chown=0:0 --chmod=0444 target/sbom/secret-gate.cdx.json",
    );
    // docker reads .dockerignore, podman .containerignore: both must let
    // the SBOM and the binary into the build context.
    for ignore in [".dockerignore", ".containerignore"] {
        let text = read(ignore);
        for path in [
            "!target/sbom".to_owned(),
            format!("!target/{STATIC_TARGET}/release/secret-gate"),
        ] {
            assert!(
                text.lines().any(|l| l.trim() == path),
                "{ignore} must re-include {path} (Containerfile.local copies it)"
            );
        }
    }
}

// ---- CycloneDX schema -----------------------------------------------------

/// A validator for the vendored CycloneDX schema, resolving its `$ref`s to
/// the vendored SPDX and JSF schemas; it never fetches anything.
fn cyclonedx_validator() -> jsonschema::Validator {
    let dir = Path::new(ROOT).join("tests/fixtures/cyclonedx");
    let load = |name: &str| -> Value {
        let path = dir.join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let registry = jsonschema::Registry::new()
        .add(
            "http://cyclonedx.org/schema/spdx.schema.json",
            load("spdx.schema.json"),
        )
        .and_then(|r| {
            r.add(
                "http://cyclonedx.org/schema/jsf-0.82.schema.json",
                load("jsf-0.82.schema.json"),
            )
        })
        .and_then(jsonschema::RegistryBuilder::prepare)
        .unwrap_or_else(|e| panic!("the vendored SPDX and JSF schemas: {e}"));
    let schema = load(SCHEMA);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("tests/fixtures/cyclonedx/{SCHEMA}: {e}"))
}

/// The schema errors of `doc`, one a line; empty if it is valid.
fn schema_errors(validator: &jsonschema::Validator, doc: &Value) -> String {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cyclonedx_schema_accepts_a_valid_bom_and_rejects_broken_ones() {
    let validator = cyclonedx_validator();
    let good = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": "2026-01-01T00:00:00Z",
            "component": {"type": "application", "name": "secret-gate", "version": "0.1.0"}
        },
        "components": [{
            "type": "library",
            "bom-ref": "registry+https://github.com/rust-lang/crates.io-index#rustls@0.23.0",
            "name": "rustls",
            "version": "0.23.0",
            "licenses": [{"license": {"id": "MIT"}}],
            "purl": "pkg:cargo/rustls@0.23.0"
        }]
    });
    assert_eq!(schema_errors(&validator, &good), "", "a valid BOM");

    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut doc = good.clone();
        edit(&mut doc);
        doc
    };
    for (what, doc) in [
        (
            "bomFormat is not CycloneDX",
            broken(&|d| d["bomFormat"] = json!("SPDX")),
        ),
        (
            "no specVersion",
            broken(&|d| {
                d.as_object_mut().map(|o| o.remove("specVersion"));
            }),
        ),
        (
            "an unknown component type",
            broken(&|d| d["components"][0]["type"] = json!("crate")),
        ),
        // Resolved through the vendored spdx.schema.json.
        (
            "a license id that is not SPDX",
            broken(&|d| {
                d["components"][0]["licenses"][0]["license"]["id"] = json!("Not-A-License");
            }),
        ),
        (
            "a timestamp that is not a date-time",
            broken(&|d| {
                d["metadata"]["timestamp"] = json!("yesterday");
            }),
        ),
        (
            "an unknown top-level field",
            broken(&|d| d["extra"] = json!(true)),
        ),
    ] {
        assert_ne!(
            schema_errors(&validator, &doc),
            "",
            "the schema must reject {what}"
        );
    }
}

// ---- Build artifacts (make supply) -----------------------------------------

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(ROOT).join("target"), PathBuf::from)
}

fn artifact(path: PathBuf, made_by: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{}: not found. It is made by `{made_by}`; `make supply` makes it and then runs \
         these tests (installing cargo-auditable and cargo-cyclonedx from crates.io if missing). \
         A plain `cargo test` skips them.",
        path.display()
    );
    path
}

/// `(name, version)` of every crate compiled into the binary's code (not
/// build scripts or proc macros, which only run at build time).
fn embedded_crates(bin: &str) -> (String, BTreeSet<(String, String)>) {
    let path = artifact(
        target_dir().join(format!("{STATIC_TARGET}/release/{bin}")),
        "make static",
    );
    let info = audit_info_from_file(&path, Limits::default()).unwrap_or_else(|e| {
        panic!(
            "{}: no crate list embedded ({e}); `make static` builds with cargo auditable",
            path.display()
        )
    });
    let root = info
        .packages
        .iter()
        .find(|p| p.root)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let runtime = info
        .packages
        .iter()
        .filter(|p| p.kind == auditable_serde::DependencyKind::Runtime)
        .map(|p| (p.name.clone(), p.version.to_string()))
        .collect();
    (root, runtime)
}

#[test]
#[ignore = "reads the static binaries: run by `make supply`"]
fn static_binaries_embed_their_crate_list() {
    let rustls = locked_version("rustls");
    for bin in bins() {
        let (root, crates) = embedded_crates(&bin);
        assert_eq!(root, bin, "{bin}: the embedded list's root package");
        assert!(
            crates.contains(&("rustls".to_owned(), rustls.clone())),
            "{bin}: the embedded crate list names rustls {rustls} (Cargo.lock); it has {crates:?}"
        );
        for name in test_only(&bin) {
            assert!(
                !crates.iter().any(|(n, _)| n == name),
                "{bin}: {name} is for the tests or the fake Safe, yet it is compiled in"
            );
        }
    }
    // The static gate says which commit it is, like the debug build.
    let path = target_dir().join(format!("{STATIC_TARGET}/release/secret-gate"));
    let out = Gate::program(&path).arg("--version").run();
    out.assert_code(0);
    assert_eq!(
        out.stdout,
        format!("secret-gate {}\n", secret_gate::cli::VERSION),
        "{}: --version (is it older than the last commit? `make static` rebuilds it)",
        path.display()
    );
}

#[test]
#[ignore = "reads the SBOMs and static binaries: run by `make supply`"]
fn sboms_validate_against_cyclonedx_and_list_every_compiled_crate() {
    let validator = cyclonedx_validator();
    let rustls = locked_version("rustls");
    for bin in bins() {
        let path = artifact(
            Path::new(ROOT).join(format!("target/sbom/{bin}.cdx.json")),
            "make sbom",
        );
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let errors = schema_errors(&validator, &doc);
        assert!(
            errors.is_empty(),
            "{}: not valid CycloneDX 1.5:\n{errors}",
            path.display()
        );
        assert_eq!(doc["specVersion"], "1.5", "{bin}: specVersion");
        assert_eq!(doc["metadata"]["component"]["name"], bin.as_str());
        assert!(
            !text.contains(ROOT),
            "{}: names this checkout's path ({ROOT}); `make sbom` rewrites it to /src",
            path.display()
        );
        let listed: BTreeSet<(String, String)> = doc["components"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                (field("name"), field("version"))
            })
            .collect();
        assert!(
            listed.contains(&("rustls".to_owned(), rustls.clone())),
            "{bin}: the SBOM lists rustls {rustls}"
        );
        for name in test_only(&bin) {
            assert!(
                !listed.iter().any(|(n, _)| n == name),
                "{bin}: the SBOM lists {name}, which only the tests or the fake Safe use"
            );
        }
        // What a scanner reads from the binary and what the SBOM says
        // agree: every crate compiled in is listed, at its version.
        let (_, compiled) = embedded_crates(&bin);
        let missing: Vec<_> = compiled
            .iter()
            .filter(|(name, _)| name != &bin)
            .filter(|c| !listed.contains(c))
            .collect();
        assert!(
            missing.is_empty(),
            "{bin}: compiled in but not in the SBOM: {missing:?}"
        );
    }
}
