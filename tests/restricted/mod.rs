//! The restricted Pod Security Standard, as the examples in `manifests/`
//! follow it, and as every pod template the injector writes must: no host
//! namespaces, only the allowed volume types, and every container non-root
//! (65532), seccomp RuntimeDefault, no privilege escalation, a read-only
//! root filesystem, all capabilities dropped, requests no higher than
//! limits, `FallbackToLogsOnError`, a tagged image and `IfNotPresent`.
//! Shared by `tests/manifests.rs` and the injector's tests.

use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec};

/// The user every container runs as (distroless "nonroot").
pub const NONROOT: i64 = 65532;

/// Checks one pod spec; `origin` names it in the failure.
pub fn check_pod(origin: &str, spec: &PodSpec) {
    let psc = spec.security_context.clone().unwrap_or_default();
    for flag in [spec.host_network, spec.host_pid, spec.host_ipc] {
        assert_ne!(flag, Some(true), "{}: host namespaces", origin);
    }
    for v in spec.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        assert!(
            allowed,
            "{}: volume {} is not allowed under restricted",
            origin, v.name
        );
    }
    for (list, c) in all_containers(spec) {
        let at = format!("{} {list}/{}", origin, c.name);
        check_security(&at, &psc, c);
        check_resources(&at, c);
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError"),
            "{at}: terminationMessagePolicy"
        );
        assert!(
            c.image.as_deref().is_some_and(|i| i.contains(':')),
            "{at}: image without a tag"
        );
        assert_eq!(
            c.image_pull_policy.as_deref(),
            Some("IfNotPresent"),
            "{at}: imagePullPolicy"
        );
    }
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = (&'static str, &Container)> {
    spec.init_containers
        .iter()
        .flatten()
        .map(|c| ("initContainers", c))
        .chain(spec.containers.iter().map(|c| ("containers", c)))
}

pub fn check_security(at: &str, psc: &PodSecurityContext, c: &Container) {
    let sc = c.security_context.clone().unwrap_or_default();
    let non_root = sc.run_as_non_root.or(psc.run_as_non_root);
    assert_eq!(non_root, Some(true), "{at}: runAsNonRoot");
    let user = sc.run_as_user.or(psc.run_as_user);
    assert_eq!(user, Some(NONROOT), "{at}: runAsUser");
    let seccomp = sc
        .seccomp_profile
        .as_ref()
        .or(psc.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"), "{at}: seccompProfile");
    assert_eq!(
        sc.allow_privilege_escalation,
        Some(false),
        "{at}: allowPrivilegeEscalation"
    );
    assert_ne!(sc.privileged, Some(true), "{at}: privileged");
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "{at}: readOnlyRootFilesystem"
    );
    let caps = sc.capabilities.unwrap_or_default();
    assert!(
        caps.drop.unwrap_or_default().iter().any(|d| d == "ALL"),
        "{at}: capabilities.drop must hold ALL"
    );
    assert!(
        caps.add.unwrap_or_default().is_empty(),
        "{at}: capabilities.add"
    );
}

pub fn check_resources(at: &str, c: &Container) {
    let r = c
        .resources
        .clone()
        .unwrap_or_else(|| panic!("{at}: no resources"));
    let requests = r
        .requests
        .unwrap_or_else(|| panic!("{at}: no resource requests"));
    let limits = r
        .limits
        .unwrap_or_else(|| panic!("{at}: no resource limits"));
    for (name, parse) in [("cpu", millicores as fn(&str) -> u64), ("memory", bytes)] {
        let req = requests
            .get(name)
            .unwrap_or_else(|| panic!("{at}: no {name} request"));
        let lim = limits
            .get(name)
            .unwrap_or_else(|| panic!("{at}: no {name} limit"));
        assert!(
            parse(&req.0) <= parse(&lim.0),
            "{at}: {name} request {} is above its limit {}",
            req.0,
            lim.0
        );
    }
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn millicores(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => q.parse::<u64>().unwrap() * 1000,
    }
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a panic fails the calling test"
)]
fn bytes(q: &str) -> u64 {
    for (suffix, scale) in [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * scale;
        }
    }
    q.parse()
        .unwrap_or_else(|_| panic!("memory quantity {q}: use Ki, Mi or Gi"))
}
