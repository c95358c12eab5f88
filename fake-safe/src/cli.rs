//! The `fake-safe` command line (clap). Each subcommand turns into one call
//! of the library: [`serve`](super::serve), [`register`](super::register) /
//! [`delete_registration`](super::delete_registration), or
//! [`set_faults`](super::set_faults) / [`clear_faults`](super::clear_faults).

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Parser, Subcommand};

use super::{Faults, ServeOptions, DEFAULT_SAFE_ID, DEFAULT_TRUST_DOMAIN, DEFAULT_WORKLOAD_ID};

/// A fake VSecM Safe and SPIFFE Workload API for tests, demos and CI.
///
/// `serve` runs both as real servers: the Workload API (gRPC) on a unix
/// socket and the Safe (HTTPS, mTLS) on 127.0.0.1. `register` and `fault`
/// change what the running Safe answers, through files in the state
/// directory; they do not need the server running.
#[derive(Debug, Parser)]
#[command(name = "fake-safe", version, after_help = LOG_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const LOG_HELP: &str = "Logs go to stderr and never contain secret values. \
Set FAKE_SAFE_LOG to a tracing filter (default: warn,fake_safe=info) to change them.";

/// The subcommands.
#[derive(Debug, Subcommand)]
#[expect(
    clippy::doc_markdown,
    reason = "doc comments are the --help text, where backticks would show"
)]
pub enum Command {
    /// Run the fake Workload API and Safe until SIGTERM or SIGINT.
    ///
    /// When both listen, writes DIR/bundle.pem (the trusted CA) and DIR/env
    /// (export lines for SPIFFE_ENDPOINT_SOCKET, VSECM_SAFE_ENDPOINT_URL and
    /// SPIFFE_TRUST_DOMAIN), then prints "fake-safe: ready". Every Safe
    /// request appends "<unix µs> <status>" to DIR/requests.log.
    Serve(ServeArgs),
    /// Wait until a `serve` on this state directory is ready: DIR/env
    /// written and both servers accepting connections.
    ///
    /// For scripts, which start `serve` in the background:
    /// `fake-safe serve --state-dir DIR & fake-safe wait --state-dir DIR --pid $!`.
    /// Exits 0 when ready, 1 (saying why) if the server exits first or the
    /// timeout passes.
    Wait(WaitArgs),
    /// Register a workload's secret, or delete it.
    Register(RegisterArgs),
    /// Stop the Workload API, or start it again, as a SPIRE agent restart
    /// does.
    ///
    /// --stop ends its open streams and removes the socket; --start binds
    /// the socket again (a new inode) and hands out a newly issued SVID
    /// (valid for serve's --svid-ttl from now, if it was given one). Waits
    /// until the running fake has done it, then prints the line it added
    /// to DIR/agent.log: "<unix µs> started <inode>" or "<unix µs> stopped".
    Agent(AgentArgs),
    /// Make the Safe misbehave, or behave again (--clear).
    ///
    /// Each call replaces all earlier faults. They apply in order: the
    /// delay, then the status (which wins), then the oversize body.
    Fault(FaultArgs),
}

/// `fake-safe serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The state directory: secrets/, faults.json, requests.log, env, bundle.pem.
    #[arg(long, value_name = "DIR", env = "FAKE_SAFE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// The SPIFFE ID of the SVID the Workload API hands out.
    #[arg(long, value_name = "ID", default_value = DEFAULT_WORKLOAD_ID)]
    pub workload_id: String,
    /// The SPIFFE ID the Safe presents.
    #[arg(long, value_name = "ID", default_value = DEFAULT_SAFE_ID)]
    pub safe_id: String,
    /// The trust domain of the CA and of every ID.
    #[arg(long, value_name = "TD", default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// The Workload API's unix socket [default: DIR/agent.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The Safe's TCP port on 127.0.0.1; 0 picks a free one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub port: u16,
    /// Make the Safe present spiffe://<TD>/workload/evil/ns/default/sa/evil/n/evil-0,
    /// which clients must refuse.
    #[arg(long)]
    pub wrong_safe_id: bool,
    /// Sign the Safe's certificate with a second CA that is not in the
    /// bundle, which clients must refuse.
    #[arg(long)]
    pub untrusted_ca: bool,
    /// Answer every request with 503 "NOK!" for this long after start
    /// (e.g. 10s), as VSecM Safe does while its backing store boots.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub unavailable_for: Option<Duration>,
    /// Send "Retry-After: VALUE" (seconds, or an HTTP date) with every 503
    /// and 429 answer. VSecM Safe sends none.
    #[arg(long, value_name = "VALUE")]
    pub retry_after: Option<String>,
    /// Issue the workload SVID valid for only this long (e.g. 3s) and never
    /// send a new one, as when the SPIRE agent is down longer than the
    /// SVID's life. The Safe then refuses the expired client certificate.
    /// `agent --start` issues a new one, valid this long again.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub svid_ttl: Option<Duration>,
}

impl ServeArgs {
    /// The library options.
    #[must_use]
    pub fn into_options(self) -> ServeOptions {
        ServeOptions {
            state_dir: self.state_dir,
            workload_id: self.workload_id,
            safe_id: self.safe_id,
            trust_domain: self.trust_domain,
            socket: self.socket,
            port: self.port,
            wrong_safe_id: self.wrong_safe_id,
            untrusted_ca: self.untrusted_ca,
            unavailable_for: self.unavailable_for,
            retry_after: self.retry_after,
            svid_ttl: self.svid_ttl,
        }
    }
}

/// `fake-safe wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The state directory of the `serve` to wait for.
    #[arg(long, value_name = "DIR", env = "FAKE_SAFE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// The PID of that `serve` ($! after starting it with &): fail at once
    /// if it exits before it is ready.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Give up after this long, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
}

impl WaitArgs {
    /// Waits, or says why the fake is not ready.
    pub fn run(&self) -> anyhow::Result<()> {
        super::wait_ready(&self.state_dir, self.pid, self.timeout)
    }
}

/// `fake-safe register`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("action").required(true).args(["value", "value_file", "delete"])
))]
pub struct RegisterArgs {
    /// The state directory of the fake.
    #[arg(long, value_name = "DIR", env = "FAKE_SAFE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// The workload name: the <NAME> in spiffe://<td>/workload/<NAME>/ns/….
    #[arg(long, value_name = "NAME")]
    pub workload: String,
    /// The secret value, served as the response's "data".
    #[arg(long, value_name = "TEXT")]
    pub value: Option<String>,
    /// Read the secret value from this file ("-" reads stdin); it must be UTF-8.
    #[arg(long, value_name = "PATH")]
    pub value_file: Option<PathBuf>,
    /// Delete the workload's secret, so the Safe answers 404 again.
    #[arg(long)]
    pub delete: bool,
}

impl RegisterArgs {
    /// Registers or deletes the secret.
    pub fn run(&self) -> anyhow::Result<()> {
        if self.delete {
            let existed = super::delete_registration(&self.state_dir, &self.workload)?;
            tracing::info!(workload = %self.workload, existed, "secret deleted");
            return Ok(());
        }
        let value = match (&self.value, &self.value_file) {
            (Some(value), _) => value.clone(),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut value = String::new();
                std::io::stdin()
                    .read_to_string(&mut value)
                    .context("cannot read the value from stdin (it must be UTF-8)")?;
                value
            }
            (None, Some(path)) => std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the value from {} (it must be UTF-8)",
                    path.display()
                )
            })?,
            (None, None) => anyhow::bail!("give --value, --value-file or --delete"),
        };
        super::register(&self.state_dir, &self.workload, &value)?;
        tracing::info!(workload = %self.workload, bytes = value.len(), "secret registered");
        Ok(())
    }
}

/// `fake-safe agent`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("change").required(true).args(["stop", "start"])
))]
pub struct AgentArgs {
    /// The state directory of the running fake.
    #[arg(long, value_name = "DIR", env = "FAKE_SAFE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Take the Workload API down.
    #[arg(long)]
    pub stop: bool,
    /// Bring it back on a new socket inode, with a new SVID.
    #[arg(long)]
    pub start: bool,
    /// How long to wait for the running fake to act.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

impl AgentArgs {
    /// Stops or starts the agent; prints the fake's `agent.log` line.
    pub fn run(&self) -> anyhow::Result<()> {
        use std::io::Write as _;
        let line = super::set_agent(&self.state_dir, self.start, self.wait)?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        Ok(())
    }
}

/// `fake-safe fault`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("fault").required(true).multiple(true).args(["status", "delay", "oversize", "clear"])
))]
pub struct FaultArgs {
    /// The state directory of the fake.
    #[arg(long, value_name = "DIR", env = "FAKE_SAFE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Answer every request with this status: 503 with body "NOK!", any
    /// other with an empty body.
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(200..=599))]
    pub status: Option<u16>,
    /// Sleep this long before every answer, e.g. 250ms or 3s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Answer 200 with a body of exactly this many bytes (JSON whose "data"
    /// is padding).
    #[arg(long, value_name = "BYTES")]
    pub oversize: Option<usize>,
    /// Remove every fault.
    #[arg(long, conflicts_with_all = ["status", "delay", "oversize"])]
    pub clear: bool,
}

impl FaultArgs {
    /// The faults asked for (empty for `--clear`).
    #[must_use]
    pub fn faults(&self) -> Faults {
        Faults {
            status: self.status,
            delay: self.delay,
            oversize: self.oversize,
        }
    }

    /// Sets or clears the faults.
    pub fn run(&self) -> anyhow::Result<()> {
        if self.clear {
            super::clear_faults(&self.state_dir)?;
            tracing::info!("faults cleared");
        } else {
            let faults = self.faults();
            super::set_faults(&self.state_dir, &faults)?;
            tracing::info!(?faults, "faults set");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fake-safe").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = parse(&["serve", "--state-dir", "/tmp/s"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.into_options(), ServeOptions::new("/tmp/s"));
    }

    #[test]
    fn register_needs_exactly_one_action() {
        let base = ["register", "--state-dir", "/d", "--workload", "w"];
        assert!(parse(&base).is_err());
        assert!(parse(&[&base[..], &["--value", "v"]].concat()).is_ok());
        assert!(parse(&[&base[..], &["--delete"]].concat()).is_ok());
        assert!(parse(&[&base[..], &["--value", "v", "--delete"]].concat()).is_err());
    }

    #[test]
    fn fault_arguments() {
        let base = ["fault", "--state-dir", "/d"];
        assert!(parse(&base).is_err());
        assert!(parse(&[&base[..], &["--status", "100"]].concat()).is_err());
        assert!(parse(&[&base[..], &["--clear", "--status", "503"]].concat()).is_err());
        let cli = parse(&[&base[..], &["--status", "503", "--delay", "250ms"]].concat()).unwrap();
        let Command::Fault(args) = cli.command else {
            panic!("not fault");
        };
        assert_eq!(
            args.faults(),
            Faults {
                status: Some(503),
                delay: Some(Duration::from_millis(250)),
                oversize: None,
            }
        );
    }
}
