//! The validated configuration. Built once from the command line; every
//! check that can fail before the gate starts waiting happens here, and
//! fails with exit code 2 and a message saying what to change.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::check::{Format, Key, TlsPolicy};
use crate::cli::{self, Cli, Command, LogFormat, LogLevel, SelectionArgs};
use crate::safe::SafeIdMatcher;

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// Where the diagnosis is written on a non-zero exit, if anywhere.
    pub termination_log: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Mode {
    Watch(WatchConfig),
    Check(Selection),
    Safe(Box<SafeConfig>),
}

/// Which secret files to check, and what they must hold.
#[derive(Debug, Clone)]
pub struct Selection {
    pub mount: PathBuf,
    pub layout: Layout,
    pub keys: Vec<Key>,
    pub max_file_size: u64,
    /// How long a file that could be cut short and still parse must stay
    /// unchanged before it counts.
    pub settle: Duration,
    /// Without `--file`: `Auto` (PEM by extension, else raw), `Raw` or `Pem`.
    pub key_format: Format,
    /// What PEM files must satisfy beyond parsing.
    pub tls: TlsPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Named files, each of which must parse; keys may be in any of them.
    Files(Vec<FileSpec>),
    /// No `--file`: each key is a file directly under the mount.
    KeyPerFile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Relative to the mount; never absolute, never with `..`.
    pub name: PathBuf,
    /// Already resolved: never `Auto`.
    pub format: Format,
}

impl Selection {
    /// The names of the files to read, for messages.
    #[must_use]
    pub fn file_names(&self) -> Vec<String> {
        self.files()
            .iter()
            .map(|f| f.name.display().to_string())
            .collect()
    }

    /// The format of a key file (no `--file`): PEM when `--format pem`,
    /// when named by `--key-pair` or `--ca-file`, or by extension with
    /// `auto`; otherwise raw.
    fn key_file_format(&self, name: &str) -> Format {
        let tls_named = self.tls.ca_file.as_deref() == Some(name)
            || self.tls.pairs.iter().any(|(c, k)| c == name || k == name);
        match self.key_format {
            Format::Pem => Format::Pem,
            Format::Auto if tls_named => Format::Pem,
            Format::Auto => match Format::Auto.resolve(Path::new(name)) {
                Format::Pem => Format::Pem,
                _ => Format::Raw,
            },
            _ => Format::Raw,
        }
    }

    /// The files to read, with their formats, in order.
    #[must_use]
    pub fn files(&self) -> Vec<FileSpec> {
        match &self.layout {
            Layout::Files(files) => files.clone(),
            Layout::KeyPerFile => self
                .keys
                .iter()
                .map(|k| FileSpec {
                    name: PathBuf::from(k.as_str()),
                    format: self.key_file_format(k.as_str()),
                })
                .collect(),
        }
    }
}

#[derive(Debug)]
pub struct WatchConfig {
    pub selection: Selection,
    /// `None` waits forever.
    pub timeout: Option<Duration>,
    pub poll_interval: Duration,
    pub poll_only: bool,
}

#[derive(Debug)]
pub struct SafeConfig {
    pub keys: Vec<Key>,
    /// `Auto` means: sniff the content (see `--help`).
    pub format: Format,
    pub output: Option<Output>,
    pub timeout: Option<Duration>,
    pub endpoint_socket: String,
    pub secrets_url: http::Uri,
    pub safe_id: SafeIdMatcher,
    /// With `--format pem`: time each end-entity certificate must have left.
    pub min_validity: Duration,
    /// The Safe's ID must also be a VSecM workload ID.
    pub workload_id: SafeIdMatcher,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
    pub max_body_size: u64,
    pub wait_before_exit: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    File { path: PathBuf, mode: u32 },
    Dir { path: PathBuf, mode: u32 },
}

/// A configuration error: printed, written to the termination log, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Where logs go and how verbose they are.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: LogLevel,
}

impl LogConfig {
    #[must_use]
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            format: cli.log_format,
            level: cli.log_level,
        }
    }
}

impl Config {
    /// The termination log path alone, so even a configuration error can be
    /// written there.
    #[must_use]
    pub fn termination_log_of(cli: &Cli) -> Option<PathBuf> {
        let given = match &cli.command {
            Command::Watch(a) => a.report.termination_log.clone(),
            Command::Check(a) => a.report.termination_log.clone(),
            Command::Safe(a) => a.report.termination_log.clone(),
        };
        given.or_else(default_termination_log)
    }

    pub fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
        let mode = match &cli.command {
            Command::Watch(a) => {
                if a.poll_interval < Duration::from_millis(10) {
                    return Err(bad("--poll-interval must be at least 10ms"));
                }
                Mode::Watch(WatchConfig {
                    selection: selection(&a.selection)?,
                    timeout: nonzero(a.timeout),
                    poll_interval: a.poll_interval,
                    poll_only: a.poll_only,
                })
            }
            Command::Check(a) => Mode::Check(selection(&a.selection)?),
            Command::Safe(a) => Mode::Safe(Box::new(safe(a)?)),
        };
        Ok(Self {
            mode,
            termination_log: Self::termination_log_of(cli),
        })
    }
}

/// The largest `--max-backoff` accepted.
pub const MAX_BACKOFF_LIMIT: Duration = Duration::from_secs(30);

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// `/dev/termination-log` when it exists and can be written without
/// waiting (see [`crate::report::open_termination_log`]).
#[must_use]
pub fn default_termination_log() -> Option<PathBuf> {
    let path = Path::new("/dev/termination-log");
    crate::report::open_termination_log(path, false)
        .ok()
        .map(|_| path.to_path_buf())
}

fn keys(text: Option<&str>) -> Result<Vec<Key>, ConfigError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let mut keys = Key::parse_list(text).map_err(|e| bad(format!("--required-keys: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.as_str().to_owned()));
    Ok(keys)
}

fn selection(args: &SelectionArgs) -> Result<Selection, ConfigError> {
    if args.mount_path.as_os_str().is_empty() {
        return Err(bad(
            "--mount-path is empty: give the directory the secrets volume is mounted at",
        ));
    }
    let mut keys = keys(args.required_keys.as_deref())?;
    let mut tls = tls_policy(args)?;
    let layout = if args.files.is_empty() {
        if keys.is_empty() && tls_names(&tls).is_empty() {
            return Err(bad(
                "nothing to wait for: give --file NAME (repeatable) or --required-keys K1,K2 (one file per key)",
            ));
        }
        if !matches!(args.format, Format::Auto | Format::Raw | Format::Pem) {
            return Err(bad(format!(
                "--format {} needs --file: without --file each required key is a file \
                 that only has to be non-empty (or, with pem, hold valid PEM)",
                args.format.name()
            )));
        }
        // Files named by --key-pair or --ca-file are required too.
        for name in tls_names(&tls) {
            if !keys.iter().any(|k| k.as_str() == name) {
                keys.push(Key::Name(name.to_owned()));
            }
        }
        if args.format == Format::Raw && !tls_names(&tls).is_empty() {
            return Err(bad(
                "--key-pair and --ca-file name PEM files, but --format raw reads every key file as raw: \
                 drop --format raw",
            ));
        }
        // The conventional pairs of a kubernetes.io/tls Secret and of
        // spiffe-helper, when both halves are required.
        if args.format != Format::Raw {
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
        Layout::KeyPerFile
    } else {
        let mut files: Vec<FileSpec> = Vec::new();
        for name in &args.files {
            // `SECRET_GATE_FILE="a.json, b.env"`: spaces around a name are
            // list formatting, not part of it.
            let trimmed = name
                .to_str()
                .map_or_else(|| name.clone(), |s| PathBuf::from(s.trim()));
            let name = relative_name(&trimmed)?;
            if files.iter().all(|f| f.name != name) {
                let format = args.format.resolve(&name);
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
        for name in tls_names(&tls) {
            let name = PathBuf::from(name);
            match files.iter_mut().find(|f| f.name == name) {
                None => files.push(FileSpec {
                    name,
                    format: Format::Pem,
                }),
                Some(f) if f.format == Format::Pem => {}
                Some(f) if args.format == Format::Auto => f.format = Format::Pem,
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
        Layout::Files(files)
    };
    Ok(Selection {
        mount: args.mount_path.clone(),
        layout,
        keys,
        max_file_size: args.max_file_size,
        settle: args.settle_time,
        key_format: args.format,
        tls,
    })
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
fn relative_name(name: &Path) -> Result<PathBuf, ConfigError> {
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

fn safe(a: &cli::SafeArgs) -> Result<SafeConfig, ConfigError> {
    let keys = keys(a.required_keys.as_deref())?;
    let output = match (&a.output, &a.output_dir) {
        (Some(path), None) => Some(Output::File {
            path: path.clone(),
            mode: a.file_mode,
        }),
        (None, Some(path)) => Some(Output::Dir {
            path: path.clone(),
            mode: a.file_mode,
        }),
        _ => None,
    };
    let format = a.format;
    if !keys.is_empty() && !format.has_keys() {
        return Err(bad(format!(
            "--required-keys cannot be found in a {} secret: pass --format json, yaml or env",
            format.name()
        )));
    }
    if matches!(output, Some(Output::Dir { .. }))
        && matches!(format, Format::Raw | Format::Env | Format::Pem)
    {
        return Err(bad(format!(
            "--output-dir writes one file per top-level key, which needs --format json, yaml or auto (got {format})"
        )));
    }
    if a.poll_interval.is_zero() {
        return Err(bad(
            "VSECM_INIT_CONTAINER_POLL_INTERVAL / --poll-interval must be more than 0",
        ));
    }
    if a.attempt_timeout.is_zero() {
        return Err(bad("--attempt-timeout must be more than 0"));
    }
    if !a.spiffe_endpoint_socket.starts_with("unix:")
        && !a.spiffe_endpoint_socket.starts_with("tcp:")
    {
        return Err(bad(format!(
            "SPIFFE_ENDPOINT_SOCKET {:?} must be a unix:///path or tcp://ip:port address",
            a.spiffe_endpoint_socket
        )));
    }
    let secrets_url = secrets_url(&a.safe_endpoint_url)?;
    let matcher = |variable, prefix: &str| {
        SafeIdMatcher::new(variable, prefix, &a.trust_domain).map_err(|e| bad(e.to_string()))
    };
    let safe_id = matcher("VSECM_SPIFFEID_PREFIX_SAFE", &a.safe_spiffeid_prefix)?;
    let workload_id = matcher(
        "VSECM_SPIFFEID_PREFIX_WORKLOAD",
        &a.workload_spiffeid_prefix,
    )?;
    if a.max_backoff > MAX_BACKOFF_LIMIT {
        return Err(bad(format!(
            "--max-backoff {} is over the 30s limit: a gate that waits longer between attempts \
             notices a newly registered secret too late",
            humantime::format_duration(a.max_backoff)
        )));
    }
    Ok(SafeConfig {
        keys,
        format,
        output,
        timeout: nonzero(a.timeout),
        endpoint_socket: a.spiffe_endpoint_socket.clone(),
        secrets_url,
        safe_id,
        min_validity: a.min_validity,
        workload_id,
        poll_interval: a.poll_interval,
        // Never below the base: a VSecM pod spec with a long interval keeps it.
        max_backoff: a.max_backoff.max(a.poll_interval),
        attempt_timeout: a.attempt_timeout,
        max_body_size: a.max_body_size,
        wait_before_exit: a.wait_before_exit,
    })
}

/// Joins the Safe's base URL with `workload/v1/secrets`.
///
/// A URL with a user name or password is refused without being echoed:
/// it may hold a credential, and the message goes to logs and the
/// termination log.
fn secrets_url(base: &str) -> Result<http::Uri, ConfigError> {
    if base.contains('@') {
        return Err(bad(
            "VSECM_SAFE_ENDPOINT_URL has a user name or password in it (`user:password@host`), \
             which secret-gate never sends and does not show: remove it (the Safe knows this pod by \
             its SVID), e.g. https://vsecm-safe.vsecm-system.svc.cluster.local:8443/",
        ));
    }
    let invalid = |why: &str| {
        bad(format!(
            "VSECM_SAFE_ENDPOINT_URL {base:?} {why}: write e.g. https://vsecm-safe.vsecm-system.svc.cluster.local:8443/"
        ))
    };
    let uri: http::Uri = base.trim().parse().map_err(|_| invalid("is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid("must use https (the Safe accepts only mTLS)"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("must not have a query"));
    }
    let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
    if let Some(port) = port_text(&authority) {
        if !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(invalid(&format!(
                "has port {port:?}, which is not a number from 1 to 65535"
            )));
        }
    }
    let path = uri.path().trim_end_matches('/');
    format!("https://{authority}{path}/workload/v1/secrets")
        .parse()
        .map_err(|_| invalid("cannot be joined with /workload/v1/secrets"))
}

/// The text after the host's `:`, if the authority has one (`[::1]:8443`
/// and `host:8443` give `8443`; `[::1]` and `host` give none).
fn port_text(authority: &str) -> Option<&str> {
    let after_host = match authority.strip_prefix('[') {
        Some(rest) => &rest[rest.find(']').map_or(rest.len(), |i| i + 1)..],
        None => authority.find(':').map_or("", |i| &authority[i..]),
    };
    after_host.strip_prefix(':')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{relative_name, secrets_url};
    use std::path::Path;

    #[test]
    fn secrets_url_joins_cleanly() {
        let table = [
            (
                "https://safe:8443/",
                "https://safe:8443/workload/v1/secrets",
            ),
            ("https://safe:8443", "https://safe:8443/workload/v1/secrets"),
            (
                "https://127.0.0.1:1/base/",
                "https://127.0.0.1:1/base/workload/v1/secrets",
            ),
        ];
        for (base, want) in table {
            assert_eq!(secrets_url(base).unwrap().to_string(), want);
        }
        for bad in [
            "http://safe/",
            "safe:8443",
            "https:///x",
            "https://s/?a=b",
            "https://safe:99999/",
            "https://safe:abc/",
            "https://safe:0/",
            "https://safe:/",
            "https://[::1]:70000/",
        ] {
            let err = secrets_url(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert_eq!(
            secrets_url("https://[::1]:8443/").unwrap().to_string(),
            "https://[::1]:8443/workload/v1/secrets"
        );
    }

    #[test]
    fn secrets_url_with_credentials_is_refused_and_not_echoed() {
        for bad in [
            "https://admin:PW-CANARY@safe:8443/",
            "https://admin@safe/",
            "https://admin:P/W-CANARY@safe/",
        ] {
            let err = secrets_url(bad).unwrap_err().to_string();
            assert!(!err.contains("CANARY") && !err.contains("admin"), "{err}");
            assert!(err.contains("user name or password"), "{err}");
        }
    }

    fn selection_of(args: &[&str]) -> Result<super::Selection, String> {
        use clap::Parser;
        let line = ["secret-gate", "check", "--mount-path", "/m"];
        let cli = crate::cli::Cli::try_parse_from(line.iter().chain(args)).unwrap();
        match super::Config::from_cli(&cli)
            .map_err(|e| e.to_string())?
            .mode
        {
            super::Mode::Check(s) => Ok(s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pem_files_pairs_and_ca_file() {
        use crate::check::Format;
        let formats = |s: &super::Selection| -> Vec<(String, Format)> {
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
