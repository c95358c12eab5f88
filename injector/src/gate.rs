//! From a request to the gate's container: the command line (validated by
//! the gate's own clap parsing and `Config` code) and the container spec,
//! with the resources, security context, pull policy, probes and
//! termination-message settings of the examples in `manifests/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clap::CommandFactory;
use serde_yaml_ng::Value;

use crate::annotations::{Request, PREFIX};
use crate::settings::{GateMode, Source};
use crate::value::{map, s, seq};

/// The injected container's name.
pub const CONTAINER: &str = "secret-gate";
/// The SPIFFE CSI socket volume added in safe mode (unless the pod has one).
pub const SPIFFE_VOLUME: &str = "spire-agent-socket";
/// Where that socket is mounted, as in `manifests/safe-mode/`.
pub const SPIFFE_MOUNT: &str = "/spire-agent-socket";
/// The probe port of a sidecar-mode gate, unless `secret-gate.dev/listen`
/// names another.
pub const PROBE_PORT: u16 = 8080;
/// `--timeout` when the template sets none: the examples' value, so that a
/// missing secret shows up as a failed init container, not a silent hang.
pub const DEFAULT_TIMEOUT: &str = "5m";
/// The startupProbe's budget when `--timeout` is 0 (wait forever).
const STARTUP_SECONDS_WITHOUT_TIMEOUT: u64 = 300;

/// The gate's command line for a request (without the program name), in a
/// canonical order: subcommand, annotation flags sorted by name, then the
/// flags the mode sets.
pub fn arguments(req: &Request) -> Result<Vec<String>, String> {
    let sub = req.source.subcommand();
    let root = gate_command();
    let subcmd = root
        .find_subcommand(sub)
        .ok_or_else(|| format!("internal error: the gate has no `{sub}` subcommand"))?;
    let mut flags: Vec<&(String, String)> = req.flags.iter().collect();
    flags.sort_by(|a, b| a.0.cmp(&b.0));
    let mut argv = vec![sub.to_owned()];
    for (name, value) in flags {
        let arg = subcmd
            .get_arguments()
            .chain(root.get_arguments())
            .find(|a| a.get_long() == Some(name.as_str()));
        match arg {
            Some(arg) if !arg.get_action().takes_values() => match value.trim() {
                "true" => argv.push(format!("--{name}")),
                "false" => {}
                other => {
                    return Err(format!(
                        "annotation {PREFIX}{name} is {other:?}: --{name} takes no value, so \
                         write \"true\" or \"false\""
                    ))
                }
            },
            // Unknown names go through as they are, so the gate's own parser
            // names the problem in its own words.
            _ => argv.push(format!("--{name}={value}")),
        }
    }
    let has = |n: &str| req.flags.iter().any(|(f, _)| f == n);
    if !has("timeout") {
        argv.push(format!("--timeout={DEFAULT_TIMEOUT}"));
    }
    if !has("log-format") {
        argv.push("--log-format=json".to_owned());
    }
    if req.mode == GateMode::Sidecar {
        argv.push("--keep-running".to_owned());
        if !has("listen") {
            argv.push(format!("--listen=$(POD_IP):{PROBE_PORT}"));
        }
    }
    Ok(argv)
}

/// The gate's clap command, built once: building it costs more than the
/// rest of an injection (about 70 µs against 150 µs for a pod, measured
/// with a release build), and the webhook does it for every review.
fn gate_command() -> &'static clap::Command {
    static COMMAND: OnceLock<clap::Command> = OnceLock::new();
    COMMAND.get_or_init(secret_gate::cli::Cli::command)
}

/// What the gate's own validation says about a command line.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `--timeout`, if not 0.
    pub timeout: Option<Duration>,
    /// `--listen`'s port, with `--keep-running`.
    pub listen_port: Option<u16>,
}

/// How many entries each cache ([`Validator`], [`Containers`]) keeps. A
/// webhook runs for weeks and any pod's author chooses its annotations, so
/// a cache that meets more distinct inputs than this starts afresh rather
/// than grow.
pub const CACHE_ENTRIES: usize = 1024;

/// Inserts into a bounded cache: a full one is emptied first.
fn remember<K: std::hash::Hash + Eq, V>(cache: &Mutex<HashMap<K, V>>, key: K, value: V) {
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, value);
    }
}

/// Validates command lines with the gate's own code, once per distinct
/// command line.
#[derive(Debug, Default)]
pub struct Validator {
    cache: Mutex<HashMap<Vec<String>, Result<Verdict, String>>>,
}

impl Validator {
    /// The gate's verdict on `argv` (without the program name): its own
    /// clap parsing, with every environment variable ignored, then its own
    /// `Config` validation. The error is the gate's message.
    pub fn check(&self, argv: &[String]) -> Result<Verdict, String> {
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(argv).cloned()) {
            return hit;
        }
        let verdict = validate(argv);
        remember(&self.cache, argv.to_vec(), verdict.clone());
        verdict
    }
}

/// What the gate's container is built from, but the verdict, which
/// follows from `argv`. The mounts are keyed by their JSON text: a
/// `Value` mapping hashes each entry with a fresh hasher and compares by
/// key lookups, several times the cost of the bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ContainerKey {
    image: String,
    mode: GateMode,
    source: Source,
    argv: Vec<String>,
    mounts: Vec<u8>,
}

/// The gate's containers, built and checked once per distinct input, as
/// [`Validator`] validates each command line once: a thousand pods with
/// the same annotations get copies of one container.
///
/// The admission webhook drops its Pod once the patch is written, so it
/// hands the container back ([`Self::give_back`]): the next review of the
/// same input takes that copy instead of cloning one. A copy is taken back
/// only if it is still equal to the cached container, and only a few are
/// kept ([`SPARES`] in all).
#[derive(Debug, Default)]
pub struct Containers {
    cache: Mutex<Cached>,
}

/// Spare copies kept across all entries: a copy per review in flight.
pub const SPARES: usize = 8;

#[derive(Debug, Default)]
struct Cached {
    entries: HashMap<Arc<ContainerKey>, Entry>,
    /// The spare copies held, across entries.
    spares: usize,
}

#[derive(Debug)]
struct Entry {
    key: Arc<ContainerKey>,
    container: Value,
    spares: Vec<Value>,
}

/// Where a container from [`Containers::get`] came from, for
/// [`Containers::give_back`].
#[derive(Debug, Clone)]
pub struct Ticket(Arc<ContainerKey>);

impl Containers {
    /// The gate's container ([`container`]), once it has parsed as a
    /// Kubernetes `Container` (k8s-openapi's), and its ticket (`None` for
    /// one that is not cached). An error is the injector's own bug, and
    /// says so.
    pub fn get(&self, parts: Parts<'_>) -> Result<(Value, Option<Ticket>), String> {
        use serde::Deserialize as _;
        let Parts {
            image,
            mode,
            source,
            argv,
            verdict,
            mounts,
        } = parts;
        let mut text = Vec::new();
        let keyed = mounts.iter().try_for_each(|mount| {
            crate::json::append(&mut text, mount)?;
            text.push(b'\n');
            Ok::<_, serde_json::Error>(())
        });
        let (key, argv) = match keyed {
            Ok(()) => {
                let key = ContainerKey {
                    image: image.to_owned(),
                    mode,
                    source,
                    argv,
                    mounts: text,
                };
                if let Ok(mut cache) = self.cache.lock() {
                    let cache = &mut *cache;
                    if let Some(entry) = cache.entries.get_mut(&key) {
                        let copy = match entry.spares.pop() {
                            Some(spare) => {
                                cache.spares -= 1;
                                spare
                            }
                            None => entry.container.clone(),
                        };
                        return Ok((copy, Some(Ticket(Arc::clone(&entry.key)))));
                    }
                }
                let argv = key.argv.clone();
                (Some(key), argv)
            }
            // A mount JSON cannot write: built afresh each time, uncached.
            Err(_) => (None, argv),
        };
        let built = container(Parts {
            image,
            mode,
            source,
            argv,
            verdict,
            mounts,
        });
        k8s_openapi::api::core::v1::Container::deserialize(&built).map_err(|e| {
            format!(
                "internal error: the gate's container is not a valid Kubernetes Container ({e})"
            )
        })?;
        let Some(key) = key else {
            return Ok((built, None));
        };
        let key = Arc::new(key);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.entries.len() >= CACHE_ENTRIES {
                cache.entries.clear();
                cache.spares = 0;
            }
            let entry = Entry {
                key: Arc::clone(&key),
                container: built.clone(),
                spares: Vec::new(),
            };
            if let Some(old) = cache.entries.insert(Arc::clone(&key), entry) {
                cache.spares -= old.spares.len();
            }
        }
        Ok((built, Some(Ticket(key))))
    }

    /// Takes back a container [`Self::get`] handed out, once its Pod is
    /// done with: kept as a spare if it is still the cached container and
    /// there is room, else dropped.
    pub fn give_back(&self, ticket: &Ticket, container: Value) {
        let refused = match self.cache.lock() {
            Ok(mut cache) => {
                let cache = &mut *cache;
                match cache.entries.get_mut(&*ticket.0) {
                    Some(entry)
                        if cache.spares < SPARES
                            && crate::value::same(&container, &entry.container) =>
                    {
                        entry.spares.push(container);
                        cache.spares += 1;
                        None
                    }
                    _ => Some(container),
                }
            }
            Err(_) => Some(container),
        };
        // Dropped outside the lock.
        drop(refused);
    }
}

fn validate(argv: &[String]) -> Result<Verdict, String> {
    // The kubelet expands $(POD_IP) in args; any address stands in for it.
    let expanded = argv.iter().map(|a| a.replace("$(POD_IP)", "0.0.0.0"));
    let full = std::iter::once("secret-gate".to_owned()).chain(expanded);
    let cli = match secret_gate::cli::parse_from_ignoring_env(full) {
        Ok(cli) => cli,
        Err(e) if e.is_help() => {
            return Err("--help and --version are not settings: remove that annotation".to_owned())
        }
        Err(e) => return Err(e.short_text()),
    };
    let config = secret_gate::config::Config::from_cli(&cli, None).map_err(|e| e.to_string())?;
    let listen_port = config
        .after
        .keep_running
        .as_ref()
        .and_then(|k| k.listen)
        .map(|a| a.port());
    Ok(Verdict {
        timeout: config.mode.timeout(),
        listen_port,
    })
}

/// The restricted security context of every container in `manifests/`.
#[must_use]
pub fn security_context() -> Value {
    map([
        ("runAsNonRoot", Value::Bool(true)),
        ("runAsUser", Value::Number(65532.into())),
        ("runAsGroup", Value::Number(65532.into())),
        ("allowPrivilegeEscalation", Value::Bool(false)),
        ("readOnlyRootFilesystem", Value::Bool(true)),
        ("capabilities", map([("drop", seq(vec![s("ALL")]))])),
        ("seccompProfile", map([("type", s("RuntimeDefault"))])),
    ])
}

fn resources() -> Value {
    map([
        ("requests", map([("cpu", s("10m")), ("memory", s("16Mi"))])),
        ("limits", map([("cpu", s("100m")), ("memory", s("32Mi"))])),
    ])
}

fn http_probe(path: &str, period: u64, failures: u64) -> Value {
    map([
        (
            "httpGet",
            map([("path", s(path)), ("port", s(PROBE_PORT_NAME))]),
        ),
        ("periodSeconds", Value::Number(period.into())),
        ("failureThreshold", Value::Number(failures.into())),
    ])
}

/// The name of the probe port (at most 15 characters, unique in the pod).
pub const PROBE_PORT_NAME: &str = "gate-probes";

/// Everything the container needs besides its command line.
#[derive(Debug)]
pub struct Parts<'a> {
    pub image: &'a str,
    pub mode: GateMode,
    pub source: Source,
    pub argv: Vec<String>,
    pub verdict: &'a Verdict,
    /// `volumeMounts` entries.
    pub mounts: Vec<Value>,
}

/// The gate's container.
#[must_use]
pub fn container(p: Parts<'_>) -> Value {
    let mut c = serde_yaml_ng::Mapping::new();
    let mut put = |k: &str, v: Value| {
        c.insert(s(k), v);
    };
    put("name", s(CONTAINER));
    put("image", s(p.image));
    put("imagePullPolicy", s("IfNotPresent"));
    if p.mode == GateMode::Sidecar {
        put("restartPolicy", s("Always"));
    }
    put("args", seq(p.argv.into_iter().map(s).collect()));
    let mut env = Vec::new();
    if p.mode == GateMode::Sidecar {
        env.push(map([
            ("name", s("POD_IP")),
            (
                "valueFrom",
                map([("fieldRef", map([("fieldPath", s("status.podIP"))]))]),
            ),
        ]));
    }
    if p.source == Source::Safe {
        for (name, value) in [
            (
                "SPIFFE_ENDPOINT_SOCKET",
                "unix:///spire-agent-socket/spire-agent.sock",
            ),
            ("SPIFFE_TRUST_DOMAIN", "vsecm.com"),
            (
                "VSECM_SAFE_ENDPOINT_URL",
                "https://vsecm-safe.vsecm-system.svc.cluster.local:8443/",
            ),
            (
                "VSECM_SPIFFEID_PREFIX_SAFE",
                "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/",
            ),
        ] {
            env.push(map([("name", s(name)), ("value", s(value))]));
        }
    }
    if !env.is_empty() {
        put("env", seq(env));
    }
    if p.mode == GateMode::Sidecar {
        let port = p.verdict.listen_port.unwrap_or(PROBE_PORT);
        put(
            "ports",
            seq(vec![map([
                ("name", s(PROBE_PORT_NAME)),
                ("containerPort", Value::Number(port.into())),
            ])]),
        );
        // One probe a second for as long as the gate's own --timeout.
        let startup = p
            .verdict
            .timeout
            .map_or(STARTUP_SECONDS_WITHOUT_TIMEOUT, |t| {
                t.as_secs().max(1) + u64::from(t.subsec_nanos() > 0)
            });
        put("startupProbe", http_probe("/readyz", 1, startup));
        put("readinessProbe", http_probe("/readyz", 5, 1));
        put("livenessProbe", http_probe("/livez", 10, 3));
    }
    put("volumeMounts", seq(p.mounts));
    put("securityContext", security_context());
    put("resources", resources());
    put("terminationMessagePolicy", s("FallbackToLogsOnError"));
    Value::Mapping(c)
}

/// The volume of `secret-gate.dev/schema-configmap`.
pub const SCHEMA_VOLUME: &str = "secret-gate-schema";

/// The schema's `ConfigMap` as a volume (mounted read-only).
#[must_use]
pub fn schema_volume(configmap: &str) -> Value {
    map([
        ("name", s(SCHEMA_VOLUME)),
        ("configMap", map([("name", s(configmap))])),
    ])
}

/// The SPIFFE CSI socket volume, as in `manifests/safe-mode/`.
#[must_use]
pub fn spiffe_volume() -> Value {
    map([
        ("name", s(SPIFFE_VOLUME)),
        (
            "csi",
            map([
                ("driver", s("csi.spiffe.io")),
                ("readOnly", Value::Bool(true)),
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::{remember, Containers, Parts, Verdict, CACHE_ENTRIES, CONTAINER};
    use crate::settings::{GateMode, Source};
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[test]
    fn a_full_cache_starts_afresh_rather_than_grow() {
        let cache = Mutex::new(HashMap::new());
        for i in 0..=CACHE_ENTRIES * 3 {
            remember(&cache, i, i);
            let len = cache.lock().map(|c| c.len()).unwrap_or_default();
            assert!((1..=CACHE_ENTRIES).contains(&len), "{len} entries");
        }
    }

    #[test]
    fn a_cached_container_is_the_container_built_for_the_same_parts() {
        let containers = Containers::default();
        let verdict = Verdict {
            timeout: None,
            listen_port: None,
        };
        let parts = |file: &str| Parts {
            image: "example.com/gate:1",
            mode: GateMode::Sidecar,
            source: Source::Watch,
            argv: vec!["watch".to_owned(), format!("--file={file}")],
            verdict: &verdict,
            mounts: Vec::new(),
        };
        let get = |file: &str| {
            containers
                .get(parts(file))
                .map(|(c, _)| c)
                .unwrap_or_default()
        };
        let first = get("a.json");
        assert_eq!(first.get("name").and_then(|n| n.as_str()), Some(CONTAINER));
        assert_eq!(get("a.json"), first);
        let other = get("b.json");
        assert_ne!(other, first);
        assert_eq!(other, super::container(parts("b.json")));
    }

    #[test]
    fn a_copy_given_back_is_reused_only_if_unchanged_and_spares_are_bounded() {
        let containers = Containers::default();
        let verdict = Verdict {
            timeout: None,
            listen_port: None,
        };
        let parts = || Parts {
            image: "example.com/gate:1",
            mode: GateMode::Init,
            source: Source::Watch,
            argv: vec!["watch".to_owned(), "--file=a.json".to_owned()],
            verdict: &verdict,
            mounts: Vec::new(),
        };
        let spares = || containers.cache.lock().map_or(usize::MAX, |c| c.spares);
        let (built, ticket) = containers.get(parts()).unwrap_or_default();
        let ticket = ticket.unwrap_or_else(|| panic!("a cached container has a ticket"));
        // Changed in the Pod: not taken back, so no later Pod sees it.
        let mut changed = built.clone();
        if let Some(m) = changed.as_mapping_mut() {
            m.insert("image".into(), "other".into());
        }
        containers.give_back(&ticket, changed);
        assert_eq!(spares(), 0);
        for _ in 0..super::SPARES + 3 {
            containers.give_back(&ticket, built.clone());
        }
        assert_eq!(spares(), super::SPARES);
        for _ in 0..super::SPARES + 2 {
            let (copy, _) = containers.get(parts()).unwrap_or_default();
            assert_eq!(copy, built);
        }
        assert_eq!(spares(), 0);
    }
}
