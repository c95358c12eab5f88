//! End to end in a real pod: the `localhost/secret-gate:dev` image as an
//! init container in front of a busybox "app", run by `podman kube play`.
//!
//! Run with `make e2e` (it builds the image first), or by hand:
//!
//! ```sh
//! make image
//! cargo test --all-features --test e2e_pod -- --ignored --test-threads=1
//! ```
//!
//! Every test starts with [`preflight`], which panics, saying why, when
//! podman cannot run containers or the image is missing: these tests never
//! skip themselves and never pass without a pod having run.
//!
//! Where podman 4.3 differs from a kubelet, and what the tests do about it:
//!
//! - **`restartPolicy: Never`.** With the default (`Always`) podman 4.3
//!   was seen re-running an init container that had finished. `Never` is
//!   also what makes a failed gate final, as (b) needs.
//! - **No native sidecars.** An init container with `restartPolicy: Always`
//!   runs as an ordinary one, so nothing in the pod can fill the volume
//!   while the gate waits: the test writes into a `hostPath` instead; and
//!   the keep-running gate of (d) runs as one of the pod's containers.
//! - **No termination messages.** podman ignores `terminationMessagePath`
//!   and shows no `state.terminated.message`, so the gate writes its
//!   diagnosis with `--termination-log` to a `hostPath` the test reads.
//! - **A finished init container is removed** (podman's "once" init
//!   containers), taking its logs with it; the order of starts and exits is
//!   read from `podman events` instead.
//! - **The restricted security context works as is**, including
//!   `seccompProfile: RuntimeDefault` (podman's default profile): no
//!   workaround was needed.
//!
//! podman reads [`tests/e2e/containers.conf`](e2e/containers.conf) through
//! `CONTAINERS_CONF`, unless the environment already names a file.

#[path = "common/bounded.rs"]
mod bounded;
mod common;
#[path = "common/fake.rs"]
#[expect(
    clippy::expect_used,
    reason = "the fake Safe's helpers fail the test with expect(); they are test code, not the product"
)]
mod fake;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::{symlink, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{assert_no_canary, chmod, pause, Gate, Running, CANARY};
use fake::FakeSafe;
use serde_json::{json, Value};

/// The gate's image, built by `make image`.
const IMAGE: &str = "localhost/secret-gate:dev";

/// A `FROM scratch` image holding the host's static busybox: the app.
const BUSYBOX_IMAGE: &str = "localhost/secret-gate-e2e-busybox:dev";

/// The host's static busybox (`apt-get install busybox-static`).
const HOST_BUSYBOX: &str = "/bin/busybox";

/// The uid and gid every container runs as, as in `manifests/`.
const NON_ROOT: u32 = 65_532;

/// How long `podman kube play` may take before the test kills it.
const PLAY_LIMIT: Duration = Duration::from_secs(120);

/// How long any other podman command may take.
const PODMAN_LIMIT: Duration = Duration::from_secs(60);

/// How long a started container may take to reach a state.
const STATE_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Running podman, always bounded.

/// The podman configuration: `CONTAINERS_CONF` from the environment if set,
/// else the one shipped beside this file.
fn containers_conf() -> OsString {
    std::env::var_os("CONTAINERS_CONF")
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/containers.conf").into())
}

fn podman_command(args: &[&str]) -> Gate {
    Gate::program("podman")
        .args(args)
        .env("CONTAINERS_CONF", containers_conf())
}

/// A finished (or killed) command.
struct Ran {
    /// `None` when it did not exit within its limit and was killed, or
    /// could not be started.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status.map_or_else(
                || "killed at its time limit, or not started".into(),
                |s| s.to_string()
            ),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd`, killing it after `limit`. Never panics on the command's
/// account (a command that cannot start is reported in the result):
/// cleanup code uses it too.
fn run_limited(cmd: Gate, limit: Duration) -> Ran {
    let mut running = match cmd.try_spawn() {
        Ok(running) => running,
        Err(e) => return not_started(&format!("cannot start podman: {e}")),
    };
    let status = running.exit_within(limit);
    if status.is_none() {
        running.kill();
    }
    Ran {
        status,
        stdout: running.stdout(),
        stderr: running.stderr(),
    }
}

fn not_started(why: &str) -> Ran {
    Ran {
        status: None,
        stdout: String::new(),
        stderr: why.to_owned(),
    }
}

/// `podman <args>`, bounded by [`PODMAN_LIMIT`].
fn podman(args: &[&str]) -> Ran {
    run_limited(podman_command(args), PODMAN_LIMIT)
}

/// `podman <args>`; panics with its output unless it succeeds.
fn podman_ok(args: &[&str]) -> String {
    let ran = podman(args);
    assert!(
        ran.ok(),
        "{}",
        ran.describe(&format!("podman {}", args.join(" ")))
    );
    ran.stdout
}

// ---------------------------------------------------------------------------
// Preflight.

/// Panics, saying why, unless podman can run containers here, the gate's
/// image exists and the busybox image is built. The checks run once per
/// test process; every test calls this first.
fn preflight() {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = RESULT.get_or_init(check_and_build) {
        panic!("{why}");
    }
}

fn check_and_build() -> Result<(), String> {
    let conf = containers_conf();
    let cannot = |ran: &Ran| {
        format!(
            "podman cannot run containers here: {} (CONTAINERS_CONF={})",
            ran.stderr.trim(),
            Path::new(&conf).display()
        )
    };
    let info = podman(&["info", "--format", "{{.Host.OCIRuntime.Name}}"]);
    if !info.ok() {
        return Err(cannot(&info));
    }
    if !podman(&["image", "exists", IMAGE]).ok() {
        return Err(format!(
            "image {IMAGE} not found: build it with `make image` (`make e2e` does)"
        ));
    }
    // `podman info` works even where the runtime cannot start a container
    // (in this sandbox, without the ulimits in containers.conf), so start one.
    let version = podman(&["run", "--rm", IMAGE, "--version"]);
    if !version.ok() {
        return Err(cannot(&version));
    }
    build_busybox_image()
}

/// Builds [`BUSYBOX_IMAGE`]: the host's static busybox and a few applet
/// links, `FROM scratch`. Idempotent (podman's layer cache makes a rebuild
/// of the same binary instant).
fn build_busybox_image() -> Result<(), String> {
    if !Path::new(HOST_BUSYBOX).is_file() {
        return Err(format!(
            "{HOST_BUSYBOX} not found: install it with `apt-get install -y busybox-static`"
        ));
    }
    let io = |e: std::io::Error| format!("busybox build context: {e}");
    let ctx = tempfile::tempdir().map_err(io)?;
    let bin = ctx.path().join("bin");
    fs::create_dir(&bin).map_err(io)?;
    fs::copy(HOST_BUSYBOX, bin.join("busybox")).map_err(io)?;
    for applet in ["sh", "cat", "echo", "ls", "id", "sleep"] {
        symlink("busybox", bin.join(applet)).map_err(io)?;
    }
    fs::write(
        ctx.path().join("Containerfile"),
        "FROM scratch\nCOPY bin/ /bin/\n",
    )
    .map_err(io)?;
    let context = ctx.path().to_string_lossy().into_owned();
    let built = podman(&["build", "-q", "-t", BUSYBOX_IMAGE, &context]);
    if built.ok() {
        Ok(())
    } else {
        Err(built.describe(&format!("podman build -t {BUSYBOX_IMAGE}")))
    }
}

// ---------------------------------------------------------------------------
// Pod specs.

/// The restricted security context of `manifests/`.
fn restricted() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": NON_ROOT,
        "runAsGroup": NON_ROOT,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// `(volume, mountPath, readOnly)` triples.
fn mounts(list: &[(&str, &str, bool)]) -> Value {
    list.iter()
        .map(|(name, path, read_only)| json!({ "name": name, "mountPath": path, "readOnly": read_only }))
        .collect()
}

/// The gate as an init container.
fn gate(args: &[&str], env: &[(&str, &str)], volume_mounts: &[(&str, &str, bool)]) -> Value {
    let env: Value = env
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    json!({
        "name": "gate",
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "args": args,
        "env": env,
        "volumeMounts": mounts(volume_mounts),
        "securityContext": restricted(),
    })
}

/// The busybox app, running `script` with `sh -c`.
fn app(script: &str, volume_mounts: &[(&str, &str, bool)]) -> Value {
    json!({
        "name": "app",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        "volumeMounts": mounts(volume_mounts),
        "securityContext": restricted(),
    })
}

/// A Pod with one init container (the gate) and one app container; every
/// volume a `hostPath` directory.
fn pod(
    name: &str,
    gate: &Value,
    app: &Value,
    volumes: &[(&str, &Path)],
    host_network: bool,
) -> Value {
    let volumes: Value = volumes
        .iter()
        .map(|(name, path)| json!({ "name": name, "hostPath": { "path": path, "type": "Directory" } }))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            // Under the default `Always`, podman 4.3 was seen re-running a
            // finished init container.
            "restartPolicy": "Never",
            "hostNetwork": host_network,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": NON_ROOT,
                "runAsGroup": NON_ROOT,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "initContainers": [gate],
            "containers": [app],
            "volumes": volumes,
        },
    })
}

/// The pod as YAML, checked field by field against the Kubernetes types so
/// that a misspelt field fails here instead of being ignored by podman.
#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn to_yaml(pod: &Value) -> String {
    let yaml = serde_yaml_ng::to_string(pod).expect("pod to YAML");
    let mut unknown = Vec::new();
    let _: k8s_openapi::api::core::v1::Pod =
        serde_ignored::deserialize(serde_yaml_ng::Deserializer::from_str(&yaml), |path| {
            unknown.push(path.to_string());
        })
        .unwrap_or_else(|e| panic!("the test's pod spec is not a Pod: {e}\n{yaml}"));
    assert!(unknown.is_empty(), "unknown pod fields {unknown:?}\n{yaml}");
    yaml
}

// ---------------------------------------------------------------------------
// A pod being played, removed on drop.

/// The state of one container, from `podman inspect`.
#[derive(Debug)]
struct State {
    status: String,
    /// When it started, in Unix ns; `None` if it never did.
    started_ns: Option<u128>,
    exit_code: i32,
}

/// One line of `podman events`.
#[derive(Debug)]
struct Event {
    ns: u128,
    name: String,
    status: String,
}

/// A pod started with `podman kube play`. Dropping it kills `kube play` if
/// it still runs and removes the pod with everything in it, pass or fail.
struct Pod {
    name: String,
    dir: PathBuf,
    play: Running,
    started: Instant,
    /// A second before `kube play` started, for `podman events --since`.
    since_unix_s: u64,
}

impl Pod {
    /// Writes `spec` to `<dir>/pod.yaml` and starts `podman kube play
    /// --replace` on it.
    #[expect(
        clippy::expect_used,
        reason = "test helper: a panic fails the calling test"
    )]
    fn play(spec: &Value, dir: &Path) -> Self {
        let name = spec["metadata"]["name"]
            .as_str()
            .expect("pod name")
            .to_owned();
        let yaml_path = dir.join("pod.yaml");
        fs::write(&yaml_path, to_yaml(spec)).expect("write pod.yaml");
        let since_unix_s = unix_ns(SystemTime::now()) / 1_000_000_000 - 1;
        let yaml_arg = yaml_path.to_string_lossy().into_owned();
        let play = podman_command(&["kube", "play", "--replace", &yaml_arg])
            .try_spawn()
            .unwrap_or_else(|e| {
                panic!("podman cannot run containers here: cannot start podman: {e}")
            });
        Self {
            name,
            dir: dir.to_path_buf(),
            play,
            started: Instant::now(),
            since_unix_s: u64::try_from(since_unix_s).expect("time"),
        }
    }

    fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    /// True while `podman kube play` has not exited.
    fn playing(&mut self) -> bool {
        self.play.is_running()
    }

    /// How `podman kube play` exited; `None` while it runs.
    fn play_status(&mut self) -> Option<ExitStatus> {
        self.play.exit_within(Duration::ZERO)
    }

    /// Waits for `podman kube play` to exit, at most [`PLAY_LIMIT`] after
    /// it started; on a hang, kills it and panics with a report.
    fn wait_play(&mut self) -> ExitStatus {
        let left = PLAY_LIMIT.saturating_sub(self.started.elapsed());
        if let Some(status) = self.play.exit_within(left) {
            return status;
        }
        self.play.kill();
        panic!(
            "podman kube play did not finish within {PLAY_LIMIT:?}; killed it\n{}",
            self.report()
        );
    }

    fn play_output(&self) -> String {
        format!(
            "--- kube play stdout ---\n{}\n--- kube play stderr ---\n{}",
            self.play.stdout().trim_end(),
            self.play.stderr().trim_end()
        )
    }

    /// The container's state; `None` if there is no such container.
    #[expect(
        clippy::expect_used,
        reason = "test helper: a panic fails the calling test"
    )]
    fn state(&self, container: &str) -> Option<State> {
        let name = self.container(container);
        let ran = podman(&[
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Status}} {{.State.StartedAt.Unix}} {{.State.StartedAt.UnixNano}} {{.State.ExitCode}}",
            &name,
        ]);
        if !ran.ok() {
            assert!(
                ran.stderr.contains("no such"),
                "{}",
                ran.describe(&format!("podman inspect {name}"))
            );
            return None;
        }
        let fields: Vec<&str> = ran.stdout.split_whitespace().collect();
        let [status, seconds, nanos, exit_code] = fields[..] else {
            panic!("podman inspect {name}: unexpected output {:?}", ran.stdout);
        };
        let started = seconds.parse::<i64>().expect("StartedAt.Unix") > 0;
        Some(State {
            status: status.to_owned(),
            started_ns: started.then(|| nanos.parse().expect("StartedAt.UnixNano")),
            exit_code: exit_code.parse().expect("ExitCode"),
        })
    }

    /// Panics unless `container` has never started.
    fn assert_not_started(&self, container: &str, when: &str) {
        if let Some(state) = self.state(container) {
            assert!(
                state.started_ns.is_none() && state.status == "created",
                "the {container} container started {when}: {state:?}\n{}",
                self.report()
            );
        }
    }

    /// Waits until `container` is in `status` (`running`, `exited`); panics
    /// with a report after [`STATE_LIMIT`], or if `kube play` fails first.
    fn wait_for(&mut self, container: &str, status: &str) -> State {
        let start = Instant::now();
        loop {
            let exists = match self.state(container) {
                Some(state) if state.status == status => return state,
                state => state.is_some(),
            };
            let playing = self.playing();
            let play_status = self.play_status();
            assert!(
                playing || play_status.is_some_and(|s| s.success()),
                "podman kube play failed ({play_status:?}) before {container} was {status}\n{}",
                self.report()
            );
            // podman removes an init container once it has exited 0.
            assert!(
                playing || exists,
                "{container} is gone, never seen {status}: it ran and exited 0 \
                 before the test looked\n{}",
                self.report()
            );
            assert!(
                start.elapsed() < STATE_LIMIT,
                "{container} was not {status} within {STATE_LIMIT:?}\n{}",
                self.report()
            );
            pause(50);
        }
    }

    fn logs(&self, container: &str) -> Ran {
        podman(&["logs", &self.container(container)])
    }

    /// This pod's container events since just before `kube play`.
    fn events(&self) -> Vec<Event> {
        let since = self.since_unix_s.to_string();
        let out = podman_ok(&[
            "events",
            "--stream=false",
            "--since",
            &since,
            "--filter",
            "type=container",
            "--format",
            "{{.Time.UnixNano}} {{.Name}} {{.Status}}",
        ]);
        let prefix = format!("{}-", self.name);
        out.lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let ns = parts.next()?.parse().ok()?;
                let name = parts.next()?;
                let status = parts.next()?;
                name.starts_with(&prefix).then(|| Event {
                    ns,
                    name: name.to_owned(),
                    status: status.to_owned(),
                })
            })
            .collect()
    }

    /// Times of `status` events of `container`, oldest first.
    fn event_times(events: &[Event], container: &str, status: &str) -> Vec<u128> {
        events
            .iter()
            .filter(|e| e.name == container && e.status == status)
            .map(|e| e.ns)
            .collect()
    }

    /// Everything worth seeing when a test fails.
    fn report(&self) -> String {
        let ps = podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("pod={}", self.name),
            "--format",
            "{{.Names}} {{.Status}}",
        ]);
        let yaml = fs::read_to_string(self.dir.join("pod.yaml")).unwrap_or_default();
        let mut report = format!(
            "--- pod.yaml ---\n{yaml}{}\n--- podman ps -a ---\n{}{}",
            self.play_output(),
            ps.stdout,
            ps.stderr
        );
        for container in ["gate", "app"] {
            let logs = self.logs(container);
            let _ = writeln!(
                report,
                "--- {container} logs ---\n{}{}",
                logs.stdout, logs.stderr
            );
        }
        let log = fs::read_to_string(self.dir.join("out/termination-log")).unwrap_or_default();
        let _ = write!(report, "--- out/termination-log ---\n{log}");
        report
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.play.kill();
        let removed = podman(&["pod", "rm", "--force", "--time", "0", &self.name]);
        if !removed.ok() && !removed.stderr.contains("no pod with name") {
            eprintln!(
                "{}",
                removed.describe(&format!("cleanup: podman pod rm -f {}", self.name))
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Test directories and small helpers.

/// `secret-gate-e2e.<random>/` holding `secrets/` (the watched volume,
/// read-only in the pod) and `out/` (writable by uid 65532: the termination
/// log, the app's output, safe mode's files).
struct TestDir {
    root: tempfile::TempDir,
}

impl TestDir {
    #[expect(
        clippy::expect_used,
        reason = "test helper: a panic fails the calling test"
    )]
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("secret-gate-e2e.")
            .tempdir()
            .expect("temp dir");
        chmod(root.path(), 0o755);
        let dir = Self { root };
        fs::create_dir(dir.secrets()).expect("mkdir secrets");
        chmod(&dir.secrets(), 0o755);
        fs::create_dir(dir.out()).expect("mkdir out");
        // The containers run as 65532, not as the owner (root).
        chmod(&dir.out(), 0o777);
        dir
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn secrets(&self) -> PathBuf {
        self.path().join("secrets")
    }

    fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    fn read_out(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.out().join(name)).ok()
    }
}

/// A pod name unique to this test and process, so that concurrent runs do
/// not replace each other's pods.
fn pod_name(test: &str) -> String {
    format!("secret-gate-e2e-{test}-{}", std::process::id())
}

#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

// ---------------------------------------------------------------------------
// The tests.

/// The watch-mode pod of (a) and (b): the gate waits for
/// `/secrets/secrets.json` with `username` and `password`, at most
/// `timeout`; the app copies what it finds to `/out/app-saw`.
fn watch_pod(test: &str, dir: &TestDir, timeout: &str) -> Value {
    let volume_mounts = [("secrets", "/secrets", true), ("out", "/out", false)];
    let gate_args = [
        "watch",
        "--mount-path",
        "/secrets",
        "--file",
        "secrets.json",
        "--required-keys",
        "username,password",
        "--timeout",
        timeout,
        // podman ignores terminationMessagePath (it keeps no
        // `state.terminated.message` to read back), so the diagnosis goes to
        // a file on a hostPath instead of /dev/termination-log.
        "--termination-log",
        "/out/termination-log",
    ];
    pod(
        &pod_name(test),
        &gate(&gate_args, &[], &volume_mounts),
        &app(
            "cat /secrets/secrets.json > /out/app-saw; echo started",
            &volume_mounts,
        ),
        &[("secrets", &dir.secrets()), ("out", &dir.out())],
        false,
    )
}

/// What [`torn_write`] wrote, and when.
struct TornWrite {
    path: PathBuf,
    document: String,
    /// Just before the file was created (truncated).
    first: SystemTime,
    /// Just before the last piece was written.
    last: SystemTime,
}

/// Writes `secrets.json` the way a sidecar without `rename` does: create
/// (truncate), half the document, a pause, the rest. Checks between the
/// steps that the app has not started and `kube play` still waits.
#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn torn_write(pod: &mut Pod, dir: &TestDir) -> TornWrite {
    let head = r#"{"username":"admin","pass"#;
    let tail = r#"word":"e2e-pw"}"#;
    let path = dir.secrets().join("secrets.json");
    let first = SystemTime::now();
    let mut file = File::create(&path).expect("create secrets.json");
    chmod(&path, 0o644);
    file.sync_all().expect("sync");
    pause(300);
    pod.assert_not_started("app", "after an empty secrets.json");
    file.write_all(head.as_bytes()).expect("write head");
    file.sync_all().expect("sync");
    pause(1000);
    pod.assert_not_started("app", "while secrets.json was half-written");
    assert!(
        pod.playing(),
        "kube play ended on a half-written secrets.json\n{}",
        pod.report()
    );
    assert!(
        dir.read_out("app-saw").is_none(),
        "the app ran early\n{}",
        pod.report()
    );
    let last = SystemTime::now();
    file.write_all(tail.as_bytes()).expect("write tail");
    file.sync_all().expect("sync");
    TornWrite {
        path,
        document: format!("{head}{tail}"),
        first,
        last,
    }
}

/// (a) The app does not start until the gate passes: the gate waits out a
/// torn write (truncate, half a document, a pause, the rest) made from
/// outside the pod, and the app starts only after the last byte is there.
#[test]
#[ignore = "requires podman and the image; run with make e2e"]
fn app_starts_only_after_the_torn_write_completes() {
    preflight();
    let dir = TestDir::new();
    let mut pod = Pod::play(&watch_pod("watch", &dir, "60s"), dir.path());

    // `kube play` blocks on the init container; the gate is waiting.
    pod.wait_for("gate", "running");
    pause(1000);
    pod.assert_not_started("app", "before anything was written");
    let write = torn_write(&mut pod, &dir);

    assert_app_ran_after(&mut pod, &dir, &write, "gate");
}

/// After a torn write made with [`torn_write`]: `kube play` succeeded, the
/// app saw the whole document and started after the last byte, after the
/// init container `gate` exited; the gate ran once and wrote no
/// termination log.
#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn assert_app_ran_after(pod: &mut Pod, dir: &TestDir, write: &TornWrite, gate: &str) {
    let status = pod.wait_play();
    assert!(
        status.success(),
        "kube play failed: {status}\n{}",
        pod.report()
    );
    let app_state = pod.wait_for("app", "exited");
    assert_eq!(app_state.exit_code, 0, "the app failed\n{}", pod.report());

    // The app saw the whole document, never a part of it.
    assert_eq!(
        dir.read_out("app-saw").unwrap_or_default(),
        write.document,
        "what the app read\n{}",
        pod.report()
    );
    assert!(
        pod.logs("app").stdout.contains("started"),
        "the app did not print 'started'\n{}",
        pod.report()
    );
    assert!(
        dir.read_out("termination-log").is_none(),
        "a gate that passed wrote a termination log\n{}",
        pod.report()
    );

    // Order: the gate started before the first write and exited after the
    // last one; the app started after the gate exited, and after the last
    // write by the host's clock (podman stamps events and states with it).
    let events = pod.events();
    let gate_started = Pod::event_times(&events, &pod.container(gate), "start");
    let gate_died = Pod::event_times(&events, &pod.container(gate), "died");
    let app_started = Pod::event_times(&events, &pod.container("app"), "start");
    let context = || format!("events: {events:#?}\n{}", pod.report());
    assert_eq!(gate_started.len(), 1, "the gate ran once\n{}", context());
    assert_eq!(gate_died.len(), 1, "the gate exited once\n{}", context());
    assert_eq!(app_started.len(), 1, "the app ran once\n{}", context());
    assert!(gate_started[0] < unix_ns(write.first), "{}", context());
    assert!(gate_died[0] > unix_ns(write.last), "{}", context());
    assert!(app_started[0] > gate_died[0], "{}", context());
    let app_started_at = app_state.started_ns.expect("the app started");
    assert!(
        app_started_at > unix_ns(write.last),
        "the app started at {app_started_at} ns, before the last write at {} ns\n{}",
        unix_ns(write.last),
        pod.report()
    );
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).expect("mtime");
    assert!(mtime(&dir.out().join("app-saw")) >= mtime(&write.path));
}

/// (e) The injector writes the gate into a pod that has none: the plain
/// pod (an app that reads a secret file, opted in by annotations) goes
/// through `secret-gate-injector inject --image localhost/secret-gate:dev`,
/// and the pod it prints is played as is. The app starts only after the
/// torn write is complete, as in (a). Init mode only: podman 4.3 runs a
/// native sidecar (`restartPolicy: Always`) as an ordinary init container,
/// so a `--keep-running` gate there would never let the app start.
#[test]
#[ignore = "requires podman and the image; run with make e2e"]
fn injected_gate_holds_the_app_until_the_torn_write_completes() {
    preflight();
    let dir = TestDir::new();
    let volume_mounts = [("secrets", "/secrets", true), ("out", "/out", false)];
    let mut plain = pod(
        &pod_name("inject"),
        &Value::Null,
        &app(
            "cat /secrets/secrets.json > /out/app-saw; echo started",
            &volume_mounts,
        ),
        &[("secrets", &dir.secrets()), ("out", &dir.out())],
        false,
    );
    plain["spec"]
        .as_object_mut()
        .map(|spec| spec.remove("initContainers"));
    plain["metadata"]["annotations"] = json!({
        "secret-gate.dev/inject": "true",
        "secret-gate.dev/mount-path": "/secrets",
        "secret-gate.dev/file": "secrets.json",
        "secret-gate.dev/required-keys": "username,password",
        "secret-gate.dev/timeout": "60s",
    });
    let injected = inject(&to_yaml(&plain), dir.path());
    assert_eq!(
        injected["spec"]["initContainers"][0]["image"], IMAGE,
        "the injector did not add the gate\n{injected:#}"
    );

    let mut pod = Pod::play(&injected, dir.path());
    pod.wait_for("secret-gate", "running");
    pause(1000);
    pod.assert_not_started("app", "before anything was written");
    let write = torn_write(&mut pod, &dir);
    assert_app_ran_after(&mut pod, &dir, &write, "secret-gate");
}

/// Runs the real `secret-gate-injector inject` on `yaml` and returns the
/// pod it printed; panics with its report if it did not exit 0 or
/// reported anything but one injected pod.
#[expect(
    clippy::expect_used,
    reason = "test helper: a panic fails the calling test"
)]
fn inject(yaml: &str, dir: &Path) -> Value {
    static INJECTOR: OnceLock<PathBuf> = OnceLock::new();
    let injector =
        INJECTOR.get_or_init(|| fake::build_bin("secret-gate-injector", "secret-gate-injector"));
    let input = dir.join("plain.yaml");
    fs::write(&input, yaml).expect("write plain.yaml");
    let out = std::process::Command::new(injector)
        .arg("inject")
        .arg("-f")
        .arg(&input)
        .args(["--image", IMAGE])
        .output()
        .expect("run secret-gate-injector");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "secret-gate-injector inject failed ({}): {report}",
        out.status
    );
    assert!(
        report.contains("injected (init, watch)"),
        "unexpected report: {report}"
    );
    serde_yaml_ng::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the injector's output is not YAML: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// (b) A gate that times out keeps the app from ever starting, and leaves
/// its diagnosis where the test can read it.
#[test]
#[ignore = "requires podman and the image; run with make e2e"]
fn a_gate_that_times_out_keeps_the_app_from_ever_starting() {
    preflight();
    let dir = TestDir::new();
    let mut pod = Pod::play(&watch_pod("timeout", &dir, "3s"), dir.path());
    let status = pod.wait_play();
    let waited = pod.started.elapsed();

    // podman 4.3 exits 125: "init container <id> exited with code 1".
    assert!(
        !status.success(),
        "kube play succeeded without a secret\n{}",
        pod.report()
    );
    let play_stderr = pod.play.stderr();
    assert!(
        play_stderr.contains("exited with code 1"),
        "kube play should report the gate's exit code 1 (not ready)\n{}",
        pod.report()
    );
    assert!(
        waited >= Duration::from_secs(3),
        "the gate gave up early\n{}",
        pod.report()
    );
    let gate_state = pod.state("gate").expect("a failed init container stays");
    assert_eq!(gate_state.exit_code, 1, "{gate_state:?}\n{}", pod.report());

    // Nothing starts the app later either (restartPolicy: Never).
    pause(2000);
    pod.assert_not_started("app", "after the gate failed");
    assert!(
        dir.read_out("app-saw").is_none(),
        "the app ran\n{}",
        pod.report()
    );
    let events = pod.events();
    let context = || format!("events: {events:#?}\n{}", pod.report());
    assert!(
        Pod::event_times(&events, &pod.container("app"), "start").is_empty(),
        "the app started\n{}",
        context()
    );
    assert_eq!(
        Pod::event_times(&events, &pod.container("gate"), "start").len(),
        1,
        "the gate ran more than once\n{}",
        context()
    );

    // The diagnosis names what is missing.
    let log = dir.read_out("termination-log").unwrap_or_default();
    assert!(
        log.contains("secrets.json") && log.contains("missing"),
        "the termination log should name the missing file, got {log:?}\n{}",
        pod.report()
    );
}

/// (c) Safe mode in the pod: the gate fetches from the real `fake-safe` on
/// the host over SPIFFE mTLS, waits while the secret is not registered,
/// writes one file per key, and the app reads them.
#[test]
#[ignore = "requires podman and the image; run with make e2e"]
fn safe_mode_gate_fetches_from_the_fake_safe_before_the_app_starts() {
    preflight();
    let fake = FakeSafe::start(&[]);
    // The container runs as 65532: open the state directory (0700 from
    // tempfile) and the Workload API socket to it. The fake's Workload API
    // does not attest the caller, unlike a SPIRE agent.
    chmod(fake.dir(), 0o755);
    chmod(&fake.path("agent.sock"), 0o777);
    let dir = TestDir::new();
    let spec = pod(
        &pod_name("safe"),
        &gate(
            &[
                "safe",
                "--required-keys",
                "username,password",
                "--output-dir",
                "/out/secrets",
                "--timeout",
                "60s",
                "--termination-log",
                "/out/termination-log",
            ],
            &[
                (
                    "SPIFFE_ENDPOINT_SOCKET",
                    "unix:///spire-agent-socket-dir/agent.sock",
                ),
                // https://127.0.0.1:<port>/: reachable because the pod
                // shares the host's network namespace (hostNetwork).
                ("VSECM_SAFE_ENDPOINT_URL", fake.safe_url()),
            ],
            &[
                ("spire-agent-socket-dir", "/spire-agent-socket-dir", true),
                ("out", "/out", false),
            ],
        ),
        &app(
            "echo \"$(cat /out/secrets/username):$(cat /out/secrets/password)\" > /out/app-saw; echo started",
            &[("out", "/out", false)],
        ),
        &[
            ("spire-agent-socket-dir", fake.dir()),
            ("out", &dir.out()),
        ],
        true,
    );
    let mut pod = Pod::play(&spec, dir.path());

    pod.wait_for("gate", "running");
    pause(2000);
    pod.assert_not_started("app", "before the secret was registered");
    assert!(
        !dir.out().join("secrets").exists(),
        "the gate wrote output before the secret existed\n{}",
        pod.report()
    );
    let registered = SystemTime::now();
    fake.register("example", r#"{"username":"admin","password":"e2e-pw"}"#);

    let status = pod.wait_play();
    assert!(
        status.success(),
        "kube play failed: {status}\n{}\n--- fake-safe stderr ---\n{}",
        pod.report(),
        fake.stderr()
    );
    let app_state = pod.wait_for("app", "exited");
    assert_eq!(app_state.exit_code, 0, "the app failed\n{}", pod.report());

    assert_eq!(
        dir.read_out("app-saw").as_deref(),
        Some("admin:e2e-pw\n"),
        "what the app read\n{}",
        pod.report()
    );
    assert!(app_state.started_ns.expect("started") > unix_ns(registered));
    for key in ["username", "password"] {
        let meta = fs::metadata(dir.out().join("secrets").join(key)).expect("per-key file");
        assert_eq!(meta.uid(), NON_ROOT, "{key} is owned by the gate's user");
        assert_eq!(
            meta.mode() & 0o777,
            0o440,
            "{key} has the default --file-mode"
        );
    }

    // The gate asked while the secret was missing (404), then got it (200).
    let requests = fake.requests();
    let statuses: Vec<u16> = requests.iter().map(|(_, status)| *status).collect();
    assert!(
        statuses.first() == Some(&404) && statuses.last() == Some(&200),
        "Safe requests: {statuses:?}\n{}",
        fake.stderr()
    );
}

/// A GET from the host over plain HTTP/1.0: the status, or `None` if
/// nothing answered.
fn http_status(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read as _;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Waits (bounded by [`STATE_LIMIT`]) until `GET path` answers `want`.
fn wait_http(pod: &Pod, port: u16, path: &str, want: u16) {
    let start = Instant::now();
    while http_status(port, path).map(|(s, _)| s) != Some(want) {
        assert!(
            start.elapsed() < STATE_LIMIT,
            "GET {path} never answered {want}\n{}",
            pod.report()
        );
        pause(100);
    }
}

/// (d) A gate that keeps running, probed from the host: `/readyz` turns 503
/// when the secret breaks and 200 when it is fixed, `/livez` and
/// `/metrics` answer. podman 4.3 runs no native sidecars (an init
/// container with `restartPolicy: Always` would block the pod), so here
/// the keep-running gate is one of the pod's containers; the pod shares
/// the host's network, so the host reaches `--listen` on loopback.
#[test]
#[ignore = "requires podman and the image; run with make e2e"]
fn keep_running_gate_answers_probes_from_the_host() {
    preflight();
    let dir = TestDir::new();
    let secrets = dir.secrets();
    let write = |text: &str| {
        let tmp = secrets.join(".secrets.json.tmp");
        fs::write(&tmp, text).expect("write");
        chmod(&tmp, 0o644);
        fs::rename(&tmp, secrets.join("secrets.json")).expect("rename");
    };
    write(&format!(r#"{{"username":"admin","password":"{CANARY}"}}"#));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let volume_mounts = [("secrets", "/secrets", true), ("out", "/out", false)];
    let gate_args = [
        "watch",
        "--mount-path",
        "/secrets",
        "--file",
        "secrets.json",
        "--required-keys",
        "username,password",
        "--timeout",
        "60s",
        "--keep-running",
        "--listen",
        &listen,
        "--termination-log",
        "/out/termination-log",
    ];
    let mut spec = pod(
        &pod_name("keep"),
        &gate(&gate_args, &[], &volume_mounts),
        &app("echo started; exec sleep 600", &volume_mounts),
        &[("secrets", &secrets), ("out", &dir.out())],
        true,
    );
    let gate_container = spec["spec"]["initContainers"][0].clone();
    spec["spec"]
        .as_object_mut()
        .expect("pod spec")
        .remove("initContainers");
    spec["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(gate_container);
    let mut pod = Pod::play(&spec, dir.path());
    pod.wait_for("gate", "running");

    wait_http(&pod, port, "/readyz", 200);
    assert_eq!(http_status(port, "/livez").map(|(s, _)| s), Some(200));
    assert_eq!(http_status(port, "/other").map(|(s, _)| s), Some(404));
    write(r#"{"username":"admin"}"#);
    wait_http(&pod, port, "/readyz", 503);
    write(&format!(
        r#"{{"username":"admin","password":"{CANARY}-2"}}"#
    ));
    wait_http(&pod, port, "/readyz", 200);
    let (status, metrics) = http_status(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("secret_gate_ready 1"), "{metrics}");
    assert_no_canary(&metrics, "/metrics", "");
    let logs = pod.logs("gate");
    let text = format!("{}{}", logs.stdout, logs.stderr);
    assert!(
        text.contains("not ready any more"),
        "{}",
        logs.describe("podman logs gate")
    );
    assert_no_canary(&text, "the gate's logs", &logs.describe("podman logs gate"));
}
