//! The command line, as clap types. The only module that uses clap: it
//! parses ([`parse`]), and maps its own value enums into the core types
//! once. [`crate::config`] turns the result into a validated
//! [`crate::config::Config`]; nothing past it sees these types. The doc
//! comments here are the `--help` text.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::check::Format;
use crate::spiffe_id::{DEFAULT_SAFE_ID, DEFAULT_WORKLOAD_ID};

/// What `--version` prints after the name: the release and the git commit
/// the binary was built from (`unknown` when built without git and without
/// `SECRET_GATE_COMMIT`; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SECRET_GATE_COMMIT"),
    ")"
);

/// Hold a pod back until its secrets exist, parse and carry their keys.
///
/// Run it as an init container. It exits 0 once every required secret is
/// ready, 1 if the deadline passes first, 2 on a usage error, and 143/130 on
/// SIGTERM/SIGINT. On any non-zero exit it writes a diagnosis to the
/// termination log, which `kubectl describe pod` shows.
///
/// `watch` and `safe` can also exec the app once ready (`-- CMD [ARGS...]`;
/// 127 if CMD is not found, 126 if it cannot be executed), or keep running
/// as a native sidecar (`--keep-running`) that serves probes and metrics and
/// notifies the app when the secret changes.
#[derive(Debug, Parser)]
#[command(name = "secret-gate", version = VERSION, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub logging: LoggingArgs<GateLogging>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wait until the secret files under a mounted directory are ready.
    ///
    /// Watches the directory with inotify (never the files themselves, so the
    /// kubelet's `..data` swap is seen), re-checks by path after every event,
    /// and re-checks every --poll-interval as a safety net.
    Watch(WatchArgs),
    /// Check the secret files once and exit: 0 if ready, 1 if not. A file
    /// written moments ago is first given its --settle-time.
    // `check` has no --keep-running: its --settle-time help leaves out the
    // sentence about it.
    #[command(mut_arg("settle_time", |arg| arg.help(SETTLE_TIME_HELP_CHECK)))]
    Check(CheckArgs),
    /// Poll VSecM Safe over SPIFFE mTLS until this workload's secret is ready.
    ///
    /// Configured by VSecM's own environment variables, so a pod written for
    /// vsecm-ist-init-container works unchanged.
    Safe(SafeArgs),
}

/// `--settle-time`'s help as `check` shows it...
macro_rules! settle_time_help {
    () => {
        "How long a YAML, env, raw or PEM file (or a JSON scalar) must stay unchanged, as the \
         gate itself observed it (same inode, size and change time), before it counts: such \
         files can be cut short by a writer and still parse. JSON objects and arrays cannot, and \
         files the kubelet swaps in through `..data` are complete, so neither waits"
    };
}
const SETTLE_TIME_HELP_CHECK: &str = settle_time_help!();
/// ...and as `watch` shows it, with --keep-running's use of it.
const SETTLE_TIME_HELP: &str = concat!(
    settle_time_help!(),
    ". With --keep-running, a changed version is also notified only once it has stayed the \
     same this long (and at least 10ms)"
);

/// Which files to check and what they must contain.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// The mounted directory that holds the secrets. It may not exist yet.
    #[arg(long, env = "SECRET_GATE_MOUNT_PATH", value_name = "DIR")]
    pub mount_path: PathBuf,

    /// A file under the mount that must exist and parse (repeatable; the
    /// env var takes a comma-separated list). Without --file, each required
    /// key names a file directly under the mount that must be non-empty.
    #[arg(
        long = "file",
        env = "SECRET_GATE_FILE",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,

    /// Comma-separated keys that must be present in one of the files: a
    /// top-level name or an RFC 6901 JSON Pointer such as /db/password. A
    /// key whose value is null, "" or `<no value>` does not count.
    #[arg(long, env = "SECRET_GATE_REQUIRED_KEYS", value_name = "K1,K2,...")]
    pub required_keys: Option<String>,

    /// A JSON Schema the parsed content must satisfy: FILE=SCHEMA for one
    /// --file, or SCHEMA for every JSON, YAML and env --file (repeatable; the
    /// env var takes a comma-separated list). SCHEMA is a JSON (or .yaml)
    /// file read once at start, e.g. from a mounted config map; an env file is an
    /// object of strings. A violation names the file, the JSON Pointer and
    /// the rule, never the value.
    #[arg(
        long = "schema",
        env = "SECRET_GATE_SCHEMA",
        value_name = "[FILE=]SCHEMA",
        value_delimiter = ','
    )]
    pub schemas: Vec<String>,

    /// True when the command line is being validated for a manifest
    /// ([`parse_from_ignoring_env`]): the schema files it names are paths
    /// in the pod, not on this machine, so they are checked for shape but
    /// not read.
    #[arg(skip)]
    pub schemas_elsewhere: bool,

    /// Format of the files; auto picks by extension (.json, .yaml/.yml, .env, .pem/.crt/.cer/.key, else raw).
    ///
    /// Without --file, auto makes key files pem by extension and raw otherwise.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto, env = "SECRET_GATE_FORMAT")]
    pub format: FormatArg,

    #[arg(long, help = SETTLE_TIME_HELP, default_value = "250ms", value_parser = parse_duration, env = "SECRET_GATE_SETTLE_TIME", value_name = "DURATION")]
    pub settle_time: Duration,

    /// Largest file the gate will read; a bigger one is a diagnosis. Accepts
    /// B, KiB, MiB suffixes.
    #[arg(long, default_value = "1MiB", value_parser = parse_size, env = "SECRET_GATE_MAX_FILE_SIZE", value_name = "BYTES")]
    pub max_file_size: u64,

    /// PEM files: how long each end-entity certificate must still be valid
    /// (0: only not expired). watch also wakes up when a certificate becomes
    /// valid or drops under this, without a file event.
    #[arg(long, default_value = "0", value_parser = parse_duration, env = "SECRET_GATE_MIN_VALIDITY", value_name = "DURATION", help_heading = "Certificates (PEM files)")]
    pub min_validity: Duration,

    /// The private key in KEY must match the first certificate in CERT, both
    /// PEM files under the mount (repeatable; the env var takes a
    /// comma-separated list). Without --file, `tls.crt=tls.key` and
    /// `svid.pem=svid_key.pem` are paired when both are required keys.
    #[arg(
        long = "key-pair",
        env = "SECRET_GATE_KEY_PAIRS",
        value_name = "CERT=KEY",
        value_delimiter = ',',
        help_heading = "Certificates (PEM files)"
    )]
    pub key_pairs: Vec<String>,

    /// A PEM bundle under the mount (e.g. ca.crt) that the first certificate
    /// of every other PEM file holding an end-entity certificate must chain
    /// to; the rest of that file serves as intermediates.
    #[arg(
        long,
        env = "SECRET_GATE_CA_FILE",
        value_name = "NAME",
        help_heading = "Certificates (PEM files)"
    )]
    pub ca_file: Option<PathBuf>,
}

/// Where the diagnosis goes on a non-zero exit.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Where to write the diagnosis on a non-zero exit: a regular file or a
    /// character device; /dev/stderr is the gate's own stderr, appended to
    /// [default: /dev/termination-log if it exists and is writable].
    #[arg(long, env = "SECRET_GATE_TERMINATION_LOG", value_name = "PATH")]
    pub termination_log: Option<PathBuf>,
}

/// What happens after the first ready: exec a command, or keep running as
/// a native sidecar with probes, metrics and change notifications.
#[derive(Debug, Args)]
pub struct AfterArgs {
    /// After the first ready, do not exit: keep checking, flip ready and
    /// not-ready as the secret changes, until SIGTERM or SIGINT. --timeout
    /// then bounds only the first ready. For a native sidecar (an init
    /// container with restartPolicy: Always).
    #[arg(long, env = "SECRET_GATE_KEEP_RUNNING", help_heading = "Keep running")]
    pub keep_running: bool,

    /// With --keep-running: serve GET /readyz (200 ready, 503 not), /livez
    /// and /metrics (Prometheus) over HTTP on this address, e.g.
    /// 0.0.0.0:8080 for kubelet probes on the pod IP.
    #[arg(
        long,
        env = "SECRET_GATE_LISTEN",
        value_name = "ADDR:PORT",
        help_heading = "Keep running"
    )]
    pub listen: Option<String>,

    /// With --listen: at most this many open connections to the port. At
    /// the cap, the oldest idle or half-sent connection is closed to make
    /// room, so a probe still gets through. The default keeps the gate's
    /// memory near 16 MiB under any number of hostile connections (see
    /// docs/sidecar-mode.md).
    #[arg(
        long,
        env = "SECRET_GATE_MAX_CONNECTIONS",
        default_value = "1024",
        value_name = "N",
        help_heading = "Keep running"
    )]
    pub max_connections: usize,

    /// Whether --max-connections was given (on the command line or in its
    /// env var) rather than left at its default: it needs --listen.
    #[arg(skip)]
    pub max_connections_given: bool,

    /// With --keep-running: POST to this http:// URL when the secret
    /// changed and the new version passes the check (repeatable; the env
    /// var takes a comma-separated list). Success is a 2xx answer; failures
    /// are retried with jittered back-off.
    #[arg(
        long,
        env = "SECRET_GATE_ON_CHANGE_URL",
        value_name = "URL",
        value_delimiter = ',',
        help_heading = "Keep running"
    )]
    pub on_change_url: Vec<String>,

    /// With --keep-running: send this signal (e.g. SIGHUP or HUP) to every
    /// process named --signal-process when the secret changed and passes.
    /// Needs shareProcessNamespace: true and the same user as the target.
    #[arg(
        long,
        env = "SECRET_GATE_ON_CHANGE_SIGNAL",
        value_name = "SIGNAL",
        requires = "signal_process",
        help_heading = "Keep running"
    )]
    pub on_change_signal: Option<String>,

    /// The process name (as in /proc/PID/comm, at most 15 characters) that
    /// --on-change-signal goes to.
    #[arg(
        long,
        env = "SECRET_GATE_SIGNAL_PROCESS",
        value_name = "NAME",
        requires = "on_change_signal",
        help_heading = "Keep running"
    )]
    pub signal_process: Option<String>,

    /// Time allowed for one POST of --on-change-url.
    #[arg(long, env = "SECRET_GATE_ON_CHANGE_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Keep running")]
    pub on_change_timeout: Duration,

    /// How many times a failed POST is retried, with jittered exponential
    /// back-off, before it is counted as failed.
    #[arg(
        long,
        env = "SECRET_GATE_ON_CHANGE_RETRIES",
        default_value = "5",
        value_name = "N",
        help_heading = "Keep running"
    )]
    pub on_change_retries: u32,

    /// Once ready, exec this command in place of the gate (same PID, same
    /// environment, signals go straight to it). Give it last, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,

    /// Give up after this long and exit 1 (e.g. 500ms, 30s, 10m); 0 waits forever.
    #[arg(long, default_value = "0", value_parser = parse_duration, env = "SECRET_GATE_TIMEOUT", value_name = "DURATION")]
    pub timeout: Duration,

    /// How often to re-check even without events; the only trigger when
    /// inotify cannot be used.
    #[arg(long, default_value = "1s", value_parser = parse_duration, env = "SECRET_GATE_POLL_INTERVAL", value_name = "DURATION")]
    pub poll_interval: Duration,

    /// Do not use inotify; only re-check every --poll-interval (for network
    /// filesystems, which deliver no events).
    #[arg(long, env = "SECRET_GATE_POLL_ONLY")]
    pub poll_only: bool,

    #[command(flatten)]
    pub report: ReportArgs,

    #[command(flatten)]
    pub after: AfterArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,

    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct SafeArgs {
    /// Comma-separated keys the secret must carry (names or JSON Pointers);
    /// the secret must then parse in --format.
    #[arg(long, env = "SECRET_GATE_REQUIRED_KEYS", value_name = "K1,K2,...")]
    pub required_keys: Option<String>,

    /// Format of the secret. auto: without --required-keys or --output-dir
    /// any non-empty secret is ready, as in VSecM; with them, the secret is
    /// JSON if it starts with { or [, else YAML. pem: certificates and keys
    /// (see --min-validity).
    #[arg(long, value_enum, default_value_t = FormatArg::Auto, env = "SECRET_GATE_FORMAT")]
    pub format: FormatArg,

    /// With --format pem: how long the secret's end-entity certificates must
    /// still be valid (0: only not expired).
    #[arg(long, default_value = "0", value_parser = parse_duration, env = "SECRET_GATE_MIN_VALIDITY", value_name = "DURATION")]
    pub min_validity: Duration,

    /// A JSON Schema the secret must satisfy (repeatable; the env var takes
    /// a comma-separated list). SCHEMA is a JSON (or .yaml) file read once
    /// at start; the secret is then parsed in --format (auto: JSON if it
    /// starts with { or [, else YAML; env: an object of strings). A
    /// violation names the JSON Pointer and the rule, never the value.
    #[arg(
        long = "schema",
        env = "SECRET_GATE_SCHEMA",
        value_name = "SCHEMA",
        value_delimiter = ','
    )]
    pub schemas: Vec<String>,

    /// True when the command line is being validated for a manifest
    /// ([`parse_from_ignoring_env`]): the schema files are paths in the
    /// pod, so they are checked for shape but not read.
    #[arg(skip)]
    pub schemas_elsewhere: bool,

    /// Write the secret to this file, atomically, once it is ready.
    #[arg(
        long,
        env = "SECRET_GATE_OUTPUT",
        value_name = "FILE",
        conflicts_with = "output_dir"
    )]
    pub output: Option<PathBuf>,

    /// Write one file per top-level key of the (JSON or YAML) secret into
    /// this directory, atomically, once it is ready.
    #[arg(long, env = "SECRET_GATE_OUTPUT_DIR", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Octal mode of the files written by --output and --output-dir
    /// (permission bits only: no setuid, setgid or sticky bit).
    #[arg(long, default_value = "0440", value_parser = parse_mode, env = "SECRET_GATE_FILE_MODE", value_name = "MODE")]
    pub file_mode: u32,

    /// Give up after this long and exit 1 (e.g. 30s, 10m); 0 waits forever.
    #[arg(long, default_value = "0", value_parser = parse_duration, env = "SECRET_GATE_TIMEOUT", value_name = "DURATION")]
    pub timeout: Duration,

    /// The SPIFFE Workload API socket.
    #[arg(
        long,
        env = "SPIFFE_ENDPOINT_SOCKET",
        default_value = "unix:///spire-agent-socket/spire-agent.sock",
        value_name = "URI"
    )]
    pub spiffe_endpoint_socket: String,

    /// The SPIFFE trust domain; decides whether --safe-spiffeid-prefix is a regex.
    #[arg(
        long,
        env = "SPIFFE_TRUST_DOMAIN",
        default_value = "vsecm.com",
        value_name = "DOMAIN"
    )]
    pub trust_domain: String,

    /// VSecM Safe's base URL.
    #[arg(
        long,
        env = "VSECM_SAFE_ENDPOINT_URL",
        default_value = "https://vsecm-safe.vsecm-system.svc.cluster.local:8443/",
        value_name = "URL"
    )]
    pub safe_endpoint_url: String,

    /// Which SPIFFE IDs the Safe may present: a regex if it starts with
    /// ^spiffe://<trust domain>/, else a literal prefix.
    #[arg(
        long,
        env = "VSECM_SPIFFEID_PREFIX_SAFE",
        default_value = DEFAULT_SAFE_ID,
        value_name = "PREFIX"
    )]
    pub safe_spiffeid_prefix: String,

    /// Which SPIFFE IDs count as VSecM workloads; the Safe's own ID must
    /// match too, as in VSecM. Same regex-or-prefix rule.
    #[arg(
        long,
        env = "VSECM_SPIFFEID_PREFIX_WORKLOAD",
        default_value = DEFAULT_WORKLOAD_ID,
        value_name = "PREFIX"
    )]
    pub workload_spiffeid_prefix: String,

    /// Steady pace while the Safe has no secret for this pod yet, or is
    /// booting (503): the first attempt is immediate, the next in the
    /// interval after VSecM's first tick (at random, so a fleet spreads
    /// out), then one every 90-100% of the interval. Also the base of the
    /// back-off on failures. A bare number is milliseconds, as in VSecM.
    #[arg(long, env = "VSECM_INIT_CONTAINER_POLL_INTERVAL", default_value = "5000", value_parser = parse_millis_or_duration, value_name = "MS|DURATION")]
    pub poll_interval: Duration,

    /// Longest wait between two attempts after failures (the back-off cap,
    /// also the limit on a Safe's Retry-After), at most 30s; raised to the
    /// poll interval if lower.
    #[arg(long, env = "SECRET_GATE_MAX_BACKOFF", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_backoff: Duration,

    /// Time allowed for one attempt: for the first Workload API sync, and
    /// then for connect, TLS handshake and response together.
    #[arg(long, env = "SECRET_GATE_ATTEMPT_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub attempt_timeout: Duration,

    /// Largest response body accepted from the Safe.
    #[arg(long, env = "SECRET_GATE_MAX_BODY_SIZE", default_value = "1MiB", value_parser = parse_size, value_name = "BYTES")]
    pub max_body_size: u64,

    /// Sleep this long after success, before exiting 0; a bare number is
    /// milliseconds, as in VSecM.
    #[arg(long, env = "VSECM_INIT_CONTAINER_WAIT_BEFORE_EXIT", default_value = "0", value_parser = parse_millis_or_duration, value_name = "MS|DURATION")]
    pub wait_before_exit: Duration,

    /// With --keep-running: how often to poll the Safe once ready (with
    /// jitter); a bare number is milliseconds, as in VSecM Sidecar.
    #[arg(long, env = "VSECM_SIDECAR_POLL_INTERVAL", default_value = "20000", value_parser = parse_millis_or_duration, value_name = "MS|DURATION", help_heading = "Keep running")]
    pub sync_interval: Duration,

    /// With --keep-running: what to do when the Safe answers 404 after it
    /// had served the secret. keep: keep the last good files and turn
    /// not-ready; remove: also remove the files written.
    #[arg(long, env = "SECRET_GATE_ON_DELETE", value_enum, default_value_t = OnDelete::Keep, value_name = "WHAT", help_heading = "Keep running")]
    pub on_delete: OnDelete,

    #[command(flatten)]
    pub report: ReportArgs,

    #[command(flatten)]
    pub after: AfterArgs,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// watch and check: pick by extension (`.json`, `.yaml`/`.yml`, `.env`,
    /// `.pem`/`.crt`/`.cer`/`.key`, anything else `raw`); safe: see above.
    Auto,
    /// A JSON object; also VSecM's older JSON array of strings, and any
    /// other non-empty JSON value (which has no keys).
    Json,
    /// A YAML document; keys and pointers work as for JSON.
    Yaml,
    /// `KEY=VALUE` lines; `#` comments, blank lines and `export ` are allowed.
    Env,
    /// Any bytes: ready unless empty, whitespace only or `<no value>`. Has no
    /// keys.
    Raw,
    /// PEM blocks: every certificate parses as X.509 and is valid now, every
    /// private key parses and matches its certificate. Has no keys.
    Pem,
}

impl FormatArg {
    /// The format given, or `None` for `auto` (chosen per file by
    /// extension, or sniffed from the secret).
    #[must_use]
    pub const fn given(self) -> Option<Format> {
        match self {
            Self::Auto => None,
            Self::Json => Some(Format::Json),
            Self::Yaml => Some(Format::Yaml),
            Self::Env => Some(Format::Env),
            Self::Raw => Some(Format::Raw),
            Self::Pem => Some(Format::Pem),
        }
    }

    /// The name used in messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self.given() {
            None => "auto",
            Some(format) => format.name(),
        }
    }
}

/// `--on-delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnDelete {
    /// Keep the last good files; turn not-ready.
    Keep,
    /// Remove the files written; turn not-ready.
    Remove,
}

impl From<OnDelete> for crate::sidecar::OnDelete {
    fn from(value: OnDelete) -> Self {
        match value {
            OnDelete::Keep => Self::Keep,
            OnDelete::Remove => Self::Remove,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What differs between the binaries that take [`LoggingArgs`]: the env
/// vars, the `--log-level` help, and where the flags sit in `--help`.
pub trait LoggingFlags {
    /// The env var behind `--log-format`.
    const FORMAT_ENV: &'static str;
    /// The env var behind `--log-level`.
    const LEVEL_ENV: &'static str;
    /// `--log-level`'s help: whose events it sets.
    const LEVEL_HELP: &'static str;
    /// The `--help` heading of both flags (`None`: with the other options).
    const HEADING: Option<&'static str>;
    /// Whether the flags are accepted after a subcommand too.
    const GLOBAL: bool;
}

/// The gate's logging flags: `SECRET_GATE_LOG_*`, global, under "Logging".
#[derive(Debug, Clone, Copy)]
pub struct GateLogging;

impl LoggingFlags for GateLogging {
    const FORMAT_ENV: &'static str = "SECRET_GATE_LOG_FORMAT";
    const LEVEL_ENV: &'static str = "SECRET_GATE_LOG_LEVEL";
    const LEVEL_HELP: &'static str = "Log level of secret-gate's own events; libraries log warnings only. Secret values are never logged, at any level";
    const HEADING: Option<&'static str> = Some("Logging");
    const GLOBAL: bool = true;
}

/// `--log-format` and `--log-level`, one definition for the gate and the
/// injector's webhook; `F` names each binary's env vars and help.
#[derive(Debug, Clone, Copy, Args)]
pub struct LoggingArgs<F: LoggingFlags> {
    /// Log format on stderr.
    #[arg(
        long,
        global = F::GLOBAL,
        value_enum,
        default_value_t = LogFormat::Text,
        env = F::FORMAT_ENV,
        value_name = "FORMAT",
        help_heading = F::HEADING
    )]
    pub log_format: LogFormat,

    #[arg(
        long,
        global = F::GLOBAL,
        value_enum,
        default_value_t = LogLevel::Info,
        env = F::LEVEL_ENV,
        value_name = "LEVEL",
        help = F::LEVEL_HELP,
        help_heading = F::HEADING
    )]
    pub log_level: LogLevel,

    #[arg(skip)]
    flags: std::marker::PhantomData<F>,
}

impl<F: LoggingFlags> LoggingArgs<F> {
    /// `--log-format` and `--log-level`, for [`crate::logging::init`].
    #[must_use]
    pub const fn settings(&self) -> crate::logging::Settings {
        use crate::logging::{Format, Level};
        crate::logging::Settings {
            format: match self.log_format {
                LogFormat::Text => Format::Text,
                LogFormat::Json => Format::Json,
            },
            level: match self.log_level {
                LogLevel::Error => Level::Error,
                LogLevel::Warn => Level::Warn,
                LogLevel::Info => Level::Info,
                LogLevel::Debug => Level::Debug,
                LogLevel::Trace => Level::Trace,
                LogLevel::Off => Level::Off,
            },
        }
    }
}

impl Cli {
    /// `--log-format` and `--log-level`, for [`crate::logging::init`].
    #[must_use]
    pub const fn logging(&self) -> crate::logging::Settings {
        self.logging.settings()
    }

    /// `--termination-log` (or `SECRET_GATE_TERMINATION_LOG`), if given.
    #[must_use]
    pub const fn termination_log(&self) -> Option<&PathBuf> {
        match &self.command {
            Command::Watch(a) => a.report.termination_log.as_ref(),
            Command::Check(a) => a.report.termination_log.as_ref(),
            Command::Safe(a) => a.report.termination_log.as_ref(),
        }
    }
}

/// Why the command line could not be parsed, or `--help`/`--version`.
#[derive(Debug)]
pub struct UsageError {
    error: clap::Error,
}

impl UsageError {
    /// Prints clap's own message (or the help text) to stderr or stdout.
    pub fn print(&self) {
        let _ = self.error.print();
    }

    /// `--help` or `--version`: not an error at all.
    #[must_use]
    pub fn is_help(&self) -> bool {
        !self.error.use_stderr()
    }

    /// The error for the termination log: one or two lines, not a usage
    /// dump.
    #[must_use]
    pub fn short_text(&self) -> String {
        use clap::error::ErrorKind;
        if matches!(
            self.error.kind(),
            ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            return "a subcommand is missing: use `secret-gate watch`, `secret-gate check` or \
                    `secret-gate safe` (see --help)"
                .to_owned();
        }
        let rendered = self.error.render().to_string();
        let text = rendered.trim_start_matches("error: ").trim_end();
        text.trim_end_matches("For more information, try '--help'.")
            .trim_end()
            .to_owned()
    }
}

/// Parses this process's command line (arguments need not be UTF-8).
pub fn parse() -> Result<Cli, UsageError> {
    use clap::CommandFactory;
    let matches = Cli::command()
        .try_get_matches()
        .map_err(|error| UsageError { error })?;
    from_matches(&matches)
}

/// The [`Cli`] of parsed matches, with what only the matches know: which
/// defaulted flags were given.
fn from_matches(matches: &clap::ArgMatches) -> Result<Cli, UsageError> {
    use clap::parser::ValueSource;
    use clap::FromArgMatches;
    let mut cli = Cli::from_arg_matches(matches).map_err(|error| UsageError { error })?;
    let after = match &mut cli.command {
        Command::Watch(a) => &mut a.after,
        Command::Safe(a) => &mut a.after,
        Command::Check(_) => return Ok(cli),
    };
    after.max_connections_given = matches.subcommand().is_some_and(|(_, sub)| {
        matches!(
            sub.value_source("max_connections"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    });
    Ok(cli)
}

/// Parses `args` (the first is the program name), as [`parse`] does.
pub fn parse_from<I, T>(args: I) -> Result<Cli, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::CommandFactory;
    let matches = Cli::command()
        .try_get_matches_from(args)
        .map_err(|error| UsageError { error })?;
    from_matches(&matches)
}

/// Parses `args` as [`parse_from`] does, but reads no environment
/// variable at all: every `env = ...` fallback is switched off, so only the
/// arguments count. For tools that validate a gate command line written
/// into a manifest (the injector), whose own environment must not change
/// the verdict; the `--schema` files it names are paths in the pod, so
/// they are not read. The gate itself never calls this.
pub fn parse_from_ignoring_env<I, T>(args: I) -> Result<Cli, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::CommandFactory;
    fn without_env(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.mut_args(|arg| arg.env(None));
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        names
            .iter()
            .fold(cmd, |cmd, name| cmd.mut_subcommand(name, without_env))
    }
    let matches = without_env(Cli::command())
        .try_get_matches_from(args)
        .map_err(|error| UsageError { error })?;
    let mut cli = from_matches(&matches)?;
    match &mut cli.command {
        Command::Watch(a) => a.selection.schemas_elsewhere = true,
        Command::Check(a) => a.selection.schemas_elsewhere = true,
        Command::Safe(a) => a.schemas_elsewhere = true,
    }
    Ok(cli)
}

/// `--termination-log` (or `SECRET_GATE_TERMINATION_LOG`) on a command
/// line that clap could not parse: `--termination-log PATH` or
/// `--termination-log=PATH`, else the variable.
#[must_use]
pub fn raw_termination_log(args: &[OsString]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        let bytes = arg.as_bytes();
        if let Some(value) = bytes.strip_prefix(b"--termination-log=") {
            return Some(PathBuf::from(std::ffi::OsStr::from_bytes(value)));
        }
        (bytes == b"--termination-log")
            .then(|| args.get(i + 1).map(PathBuf::from))
            .flatten()
    });
    from_args.or_else(|| std::env::var_os("SECRET_GATE_TERMINATION_LOG").map(PathBuf::from))
}

/// VSecM's variables whose empty or unparsable values VSecM itself
/// ignores (falling back to its default), with the parser that decides.
type DurationParser = fn(&str) -> Result<Duration, String>;
const VSECM_LENIENT: &[(&str, Option<DurationParser>)] = &[
    ("SPIFFE_ENDPOINT_SOCKET", None),
    ("SPIFFE_TRUST_DOMAIN", None),
    ("VSECM_SAFE_ENDPOINT_URL", None),
    ("VSECM_SPIFFEID_PREFIX_SAFE", None),
    ("VSECM_SPIFFEID_PREFIX_WORKLOAD", None),
    (
        "VSECM_INIT_CONTAINER_POLL_INTERVAL",
        Some(parse_millis_or_duration),
    ),
    (
        "VSECM_INIT_CONTAINER_WAIT_BEFORE_EXIT",
        Some(parse_millis_or_duration),
    ),
    (
        "VSECM_SIDECAR_POLL_INTERVAL",
        Some(parse_millis_or_duration),
    ),
    ("VSECM_SIDECAR_SECRETS_PATH", None),
];

/// Treats VSecM's variables the way VSecM does: an empty value, or a
/// number that does not parse, means "use the default". Such variables are
/// removed from this process's environment before the command line is
/// parsed, so a pod spec written for VSecM's init container works
/// unchanged. Returns one warning per variable dropped (the values are
/// configuration, not secrets).
#[must_use]
pub fn drop_vsecm_env_values_vsecm_ignores() -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, parser) in VSECM_LENIENT {
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let text = value.to_string_lossy();
        let why = if text.trim().is_empty() {
            Some("is empty".to_owned())
        } else {
            parser.and_then(|p| p(&text).err())
        };
        if let Some(why) = why {
            std::env::remove_var(name);
            warnings.push(format!("{name} {why}; using the default, as VSecM does"));
        }
    }
    warnings
}

/// A human duration (`500ms`, `30s`, `10m`, `1h 30m`); a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        return Err(format!(
            "{text:?} has no unit: write e.g. {text}s or {text}ms"
        ));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}): write e.g. 500ms, 30s or 10m"))
}

/// Like [`parse_duration`], but a bare number is milliseconds (VSecM's convention).
pub fn parse_millis_or_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    match trimmed.parse::<u64>() {
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => parse_duration(trimmed),
    }
}

/// A byte size: `1048576`, `512KiB`, `1MiB`, `1M` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{t:?} is not a size: write e.g. 65536, 512KiB or 1MiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB or GiB"
            ))
        }
    };
    let size = n
        .checked_mul(scale)
        .ok_or_else(|| format!("{t:?} is too large"))?;
    if size == 0 {
        return Err("size must be more than 0".into());
    }
    Ok(size)
}

/// An octal file mode such as `0440` or `600`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{t:?} is not an octal mode: write e.g. 0440"))?;
    if mode > 0o7777 {
        return Err(format!("{t:?} is not a file mode (at most 7777)"));
    }
    if mode & 0o7000 != 0 {
        return Err(format!(
            "mode {t} sets the setuid, setgid or sticky bit, which a secret file must not have; \
             use permission bits only, e.g. 0440"
        ));
    }
    if mode & 0o400 == 0 {
        return Err(format!(
            "mode {t} does not let the owner read the file; use e.g. 0440"
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{parse_duration, parse_millis_or_duration, parse_mode, parse_size, Cli};
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn logging_flags_go_before_or_after_the_subcommand() {
        use crate::logging::{Format, Level, Settings};
        let default = Settings {
            format: Format::Text,
            level: Level::Info,
        };
        let debug_json = Settings {
            format: Format::Json,
            level: Level::Debug,
        };
        let table: [(&[&str], Settings); 3] = [
            (&["secret-gate", "check", "--mount-path", "/m"], default),
            (
                &[
                    "secret-gate",
                    "--log-level",
                    "debug",
                    "--log-format=json",
                    "check",
                    "--mount-path",
                    "/m",
                ],
                debug_json,
            ),
            (
                &[
                    "secret-gate",
                    "check",
                    "--mount-path",
                    "/m",
                    "--log-format",
                    "json",
                    "--log-level=debug",
                ],
                debug_json,
            ),
        ];
        for (args, want) in table {
            let cli = super::parse_from_ignoring_env(args).unwrap();
            assert_eq!(cli.logging(), want, "{args:?}");
        }
    }

    #[test]
    fn durations() {
        let ok = [
            ("0", 0),
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1m 30s", 90_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(ms),
                "{text}"
            );
        }
        for bad in ["30", "", "soon", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_millis_or_duration("5000").unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            parse_millis_or_duration("2s").unwrap(),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn sizes() {
        let ok = [
            ("1", 1),
            ("1MiB", 1 << 20),
            ("512KiB", 512 << 10),
            ("2M", 2 << 20),
        ];
        for (text, n) in ok {
            assert_eq!(parse_size(text).unwrap(), n, "{text}");
        }
        for bad in ["0", "MiB", "1 TB", "x", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0440").unwrap(), 0o440);
        assert_eq!(parse_mode("600").unwrap(), 0o600);
        for bad in [
            "0040", "999", "rw", "77777", "4755", "2440", "1644", "0o4400",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }
}
