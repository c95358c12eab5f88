//! `watch` and `check`: the selection of files, keys and certificate
//! checks, validated.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::check::{Format, Key, Schema, TlsPolicy};
use crate::cli::SelectionArgs;
use crate::volume::{FileSpec, KeyFormat, Layout, SchemaRule, Selection};

use super::{bad, entries, keys, ConfigError};

pub(super) fn selection(args: &SelectionArgs) -> Result<Selection, ConfigError> {
    if args.mount_path.as_os_str().is_empty() {
        return Err(bad(
            "--mount-path is empty: give the directory the secrets volume is mounted at",
        ));
    }
    let mut keys = keys(args.required_keys.as_deref())?;
    let mut tls = tls_policy(args)?;
    let layout = if args.files.is_empty() {
        key_per_file(args, &mut keys, &mut tls)?
    } else {
        named_files(args, &keys, &tls)?
    };
    let schemas = schemas(args, &layout)?;
    Ok(Selection {
        mount: args.mount_path.clone(),
        layout,
        keys,
        max_file_size: args.max_file_size,
        settle: args.settle_time,
        tls,
        schemas,
    })
}

/// `--schema [FILE=]SCHEMA`: each schema read and compiled once, here, and
/// tied to the files it applies to.
fn schemas(args: &SelectionArgs, layout: &Layout) -> Result<Vec<SchemaRule>, ConfigError> {
    let entries = entries(&args.schemas);
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let Layout::Files(files) = layout else {
        return Err(bad(
            "--schema needs --file: a schema checks the content of a JSON, YAML or env file, \
             and without --file each required key is a file that only has to be non-empty",
        ));
    };
    let with_keys: Vec<&FileSpec> = files.iter().filter(|f| f.format.has_keys()).collect();
    let mut rules: Vec<SchemaRule> = Vec::new();
    for entry in entries {
        let (file, path) = match entry.split_once('=') {
            Some((file, path)) => (Some(file.trim()), path.trim()),
            None => (None, entry),
        };
        if path.is_empty() {
            return Err(bad(format!(
                "--schema {entry:?}: give the schema file, as FILE=SCHEMA or SCHEMA"
            )));
        }
        let targets: Vec<PathBuf> = match file {
            Some(file) => {
                let name = relative_name(Path::new(file))?;
                let Some(spec) = files.iter().find(|f| f.name == name) else {
                    return Err(bad(format!(
                        "--schema {entry:?}: {file} is not one of the --file names; \
                         add --file {file}, or drop `{file}=` to check every file"
                    )));
                };
                if !spec.format.has_keys() {
                    return Err(bad(format!(
                        "--schema {entry:?}: {file} is read as {}, which has no tree to check; \
                         a schema applies to JSON, YAML and env files",
                        spec.format
                    )));
                }
                vec![name]
            }
            None if with_keys.is_empty() => {
                return Err(bad(format!(
                    "--schema {entry:?}: no --file is JSON, YAML or env (by its extension or \
                     --format), so there is nothing for a schema to check"
                )));
            }
            None => with_keys.iter().map(|f| f.name.clone()).collect(),
        };
        if args.schemas_elsewhere {
            // A command line for a manifest: the schema is a path in the
            // pod, read by the gate there.
            continue;
        }
        let schema = Arc::new(Schema::load(Path::new(path)).map_err(bad)?);
        for file in targets {
            rules.push(SchemaRule {
                file,
                schema: Arc::clone(&schema),
            });
        }
    }
    Ok(rules)
}

/// No `--file`: each required key (and each file `--key-pair` and
/// `--ca-file` name, which become required keys) is a file directly under
/// the mount. Conventional certificate and key pairs are paired.
fn key_per_file(
    args: &SelectionArgs,
    keys: &mut Vec<Key>,
    tls: &mut TlsPolicy,
) -> Result<Layout, ConfigError> {
    if keys.is_empty() && tls_names(tls).is_empty() {
        return Err(bad(
            "nothing to wait for: give --file NAME (repeatable) or --required-keys K1,K2 (one file per key)",
        ));
    }
    if !matches!(args.format.given(), None | Some(Format::Raw | Format::Pem)) {
        return Err(bad(format!(
            "--format {} needs --file: without --file each required key is a file \
             that only has to be non-empty (or, with pem, hold valid PEM)",
            args.format.name()
        )));
    }
    // Files named by --key-pair or --ca-file are required too.
    for name in tls_names(tls) {
        if !keys.iter().any(|k| k.as_str() == name) {
            keys.push(Key::Name(name.to_owned()));
        }
    }
    if args.format.given() == Some(Format::Raw) && !tls_names(tls).is_empty() {
        return Err(bad(
            "--key-pair and --ca-file name PEM files, but --format raw reads every key file as raw: \
             drop --format raw",
        ));
    }
    // The conventional pairs of a kubernetes.io/tls Secret and of
    // spiffe-helper, when both halves are required.
    if args.format.given() != Some(Format::Raw) {
        for (cert, key) in [("tls.crt", "tls.key"), ("svid.pem", "svid_key.pem")] {
            let required = |n: &str| keys.iter().any(|k| k.as_str() == n);
            let paired = tls.pairs.iter().any(|(c, k)| c == cert || k == key);
            if required(cert) && required(key) && !paired {
                tls.pairs.push((cert.to_owned(), key.to_owned()));
            }
        }
    }
    if let Some(k) = keys.iter().find(|k| !k.is_plain_name()) {
        return Err(bad(format!(
            "--required-keys {:?}: without --file each key names a file directly under --mount-path, \
             so it cannot contain `/` or be `.` or `..`; to look inside a document, add --file NAME \
             (--key-pair and --ca-file names count as required keys here)",
            k.as_str()
        )));
    }
    Ok(Layout::KeyPerFile(match args.format.given() {
        None => KeyFormat::ByExtension,
        Some(Format::Pem) => KeyFormat::Pem,
        // Other formats were refused above.
        Some(_) => KeyFormat::Raw,
    }))
}

/// `--file NAME...`: each file in the given format, or by its extension;
/// files `--key-pair` and `--ca-file` name are read as PEM.
fn named_files(args: &SelectionArgs, keys: &[Key], tls: &TlsPolicy) -> Result<Layout, ConfigError> {
    let mut files: Vec<FileSpec> = Vec::new();
    for name in &args.files {
        // `SECRET_GATE_FILE="a.json, b.env"`: spaces around a name are
        // list formatting, not part of it.
        let trimmed = name
            .to_str()
            .map_or_else(|| name.clone(), |s| PathBuf::from(s.trim()));
        let name = relative_name(&trimmed)?;
        if files.iter().all(|f| f.name != name) {
            let format = args
                .format
                .given()
                .unwrap_or_else(|| Format::by_extension(&name));
            files.push(FileSpec { name, format });
        }
    }
    if !keys.is_empty() && files.iter().all(|f| !f.format.has_keys()) {
        return Err(bad(format!(
            "--required-keys needs a format with keys, but {} is {} (by its extension or \
             --format); pass --format json, yaml or env",
            files[0].name.display(),
            files[0].format.name()
        )));
    }
    // Files named by --key-pair or --ca-file are read as PEM.
    for name in tls_names(tls) {
        let name = PathBuf::from(name);
        match files.iter_mut().find(|f| f.name == name) {
            None => files.push(FileSpec {
                name,
                format: Format::Pem,
            }),
            Some(f) if f.format == Format::Pem => {}
            Some(f) if args.format.given().is_none() => f.format = Format::Pem,
            Some(f) => {
                return Err(bad(format!(
                    "{} is named by --key-pair or --ca-file, so it must be PEM, \
                     but --format {} reads it otherwise",
                    f.name.display(),
                    args.format.name()
                )))
            }
        }
    }
    Ok(Layout::Files(files))
}

/// `--min-validity`, `--key-pair` and `--ca-file`, with names checked.
fn tls_policy(args: &SelectionArgs) -> Result<TlsPolicy, ConfigError> {
    let name = |flag: &str, text: &str| {
        relative_name(Path::new(text.trim()))
            .map(|p| p.display().to_string())
            .map_err(|_| {
                bad(format!(
                    "{flag} {text:?}: give a file name relative to --mount-path, without `..`"
                ))
            })
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in &args.key_pairs {
        let Some((cert, key)) = pair.split_once('=') else {
            return Err(bad(format!(
                "--key-pair {pair:?}: write CERT=KEY, e.g. --key-pair tls.crt=tls.key"
            )));
        };
        let (cert, key) = (name("--key-pair", cert)?, name("--key-pair", key)?);
        if cert == key {
            return Err(bad(format!(
                "--key-pair {pair:?}: for a certificate and key in one file, drop --key-pair: \
                 a combined PEM file is always checked"
            )));
        }
        if !pairs.contains(&(cert.clone(), key.clone())) {
            pairs.push((cert, key));
        }
    }
    let ca_file = args
        .ca_file
        .as_ref()
        .map(|p| name("--ca-file", &p.to_string_lossy()))
        .transpose()?;
    Ok(TlsPolicy {
        min_validity: args.min_validity,
        pairs,
        ca_file,
    })
}

/// Every file name `--key-pair` and `--ca-file` mention, once each.
fn tls_names(tls: &TlsPolicy) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let all = tls
        .pairs
        .iter()
        .flat_map(|(c, k)| [c.as_str(), k.as_str()])
        .chain(tls.ca_file.as_deref());
    for name in all {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Accepts `secrets.json` or `sub/secrets.json`; refuses what escapes the mount.
pub(super) fn relative_name(name: &Path) -> Result<PathBuf, ConfigError> {
    let mut clean = PathBuf::new();
    for part in name.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(bad(format!(
                    "--file {}: give a path relative to --mount-path, without `..`",
                    name.display()
                )));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(bad("--file is empty: give a file name under --mount-path"));
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::relative_name;
    use crate::check::Format;
    use crate::config::{Config, Mode};
    use crate::volume::Selection;
    use std::path::Path;

    fn selection_of(args: &[&str]) -> Result<Selection, String> {
        let line = ["secret-gate", "check", "--mount-path", "/m"];
        let cli = crate::cli::parse_from(line.iter().chain(args)).unwrap();
        match Config::from_cli(&cli, None)
            .map_err(|e| e.to_string())?
            .mode
        {
            Mode::Check(s) => Ok(s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pem_files_pairs_and_ca_file() {
        let formats = |s: &Selection| -> Vec<(String, Format)> {
            s.files()
                .into_iter()
                .map(|f| (f.name.display().to_string(), f.format))
                .collect()
        };
        // Without --file: PEM by extension, conventional pairs when both are required.
        let s = selection_of(&["--required-keys", "tls.crt,tls.key,password,svid.pem"]).unwrap();
        assert_eq!(
            formats(&s),
            [
                ("tls.crt".into(), Format::Pem),
                ("tls.key".into(), Format::Pem),
                ("password".into(), Format::Raw),
                ("svid.pem".into(), Format::Pem),
            ]
        );
        assert_eq!(s.tls.pairs, [("tls.crt".into(), "tls.key".into())]);
        // --ca-file and --key-pair files are required, and PEM.
        let s = selection_of(&["--key-pair", "cert=key", "--ca-file", "bundle"]).unwrap();
        assert_eq!(
            formats(&s),
            [
                ("cert".into(), Format::Pem),
                ("key".into(), Format::Pem),
                ("bundle".into(), Format::Pem)
            ]
        );
        let s = selection_of(&["--file", "a.json", "--ca-file", "./ca.crt"]).unwrap();
        assert_eq!(formats(&s)[1], ("ca.crt".into(), Format::Pem));
        assert_eq!(s.tls.ca_file.as_deref(), Some("ca.crt"));
        // --format raw opts out of PEM without --file.
        let s = selection_of(&["--required-keys", "tls.crt,tls.key", "--format", "raw"]).unwrap();
        assert!(s.tls.pairs.is_empty());
        assert_eq!(formats(&s)[0].1, Format::Raw);
        for bad in [
            &["--key-pair", "tls.crt"][..],
            &["--key-pair", "../a=b"],
            &["--key-pair", "a=a"],
            &["--file", "a.pem", "--format", "json", "--ca-file", "a.pem"],
            &[
                "--required-keys",
                "x",
                "--format",
                "raw",
                "--ca-file",
                "ca.crt",
            ],
        ] {
            assert!(selection_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auto_picks_by_extension_and_a_given_format_wins() {
        let formats = |args: &[&str]| -> Vec<Format> {
            selection_of(args)
                .unwrap()
                .files()
                .into_iter()
                .map(|f| f.format)
                .collect()
        };
        assert_eq!(formats(&["--file", "x.yaml"]), [Format::Yaml]);
        assert_eq!(
            formats(&["--file", "x.yaml", "--format", "json"]),
            [Format::Json]
        );
        assert_eq!(
            formats(&["--required-keys", "password,ca.pem", "--format", "pem"]),
            [Format::Pem, Format::Pem]
        );
    }

    #[test]
    fn a_manifests_schema_is_checked_for_shape_but_not_read() {
        let line = |extra: &[&str]| {
            let base = [
                "secret-gate",
                "check",
                "--mount-path",
                "/m",
                "--file",
                "a.json",
            ];
            let cli = crate::cli::parse_from_ignoring_env(base.iter().chain(extra)).unwrap();
            Config::from_cli(&cli, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(line(&["--schema", "/etc/schema/in-the-pod.json"]).is_ok());
        assert!(line(&["--schema", "a.json=/etc/schema/s.json"]).is_ok());
        let err = line(&["--schema", "b.json=/etc/schema/s.json"]).unwrap_err();
        assert!(
            err.contains("b.json is not one of the --file names"),
            "{err}"
        );
        // The gate itself reads the file at start.
        let cli = crate::cli::parse_from([
            "secret-gate",
            "check",
            "--mount-path",
            "/m",
            "--file",
            "a.json",
            "--schema",
            "/nonexistent/schema.json",
        ])
        .unwrap();
        let err = Config::from_cli(&cli, None).unwrap_err().to_string();
        assert!(err.contains("cannot be read"), "{err}");
    }

    #[test]
    fn file_names_stay_under_the_mount() {
        assert_eq!(
            relative_name(Path::new("./a/b.json")).unwrap(),
            Path::new("a/b.json")
        );
        for bad in ["../x", "/etc/passwd", "a/../../b", "."] {
            assert!(relative_name(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
