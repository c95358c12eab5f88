//! Certificates and keys, end to end: the real binary against real
//! directories holding PEM files generated at test time (rcgen, and the
//! rsa crate for RSA keys), and unrendered templates (`<no value>`).
//!
//! Every run has a `--timeout` or is a `check`, and every wait in the test
//! is bounded. Nothing asserts speed.

#[path = "common/bounded.rs"]
mod bounded;
mod common;
#[path = "common/pki.rs"]
mod pki;

use std::time::Duration;

use common::{
    assert_log_contains, assert_log_lacks, pause, AtomicWriter, Fixture, TornWriter, HANG_LIMIT,
    READY_TIMEOUT,
};
use pki::{ca, leaf, pod_key, valid_leaf, Alg, Encoding, Key, PodKeyType, PodSigner};

/// How long a writer leaves the gate alone between two steps.
const STEP_MS: u64 = 300;

fn p256() -> Key {
    Key::new(Alg::EcdsaP256)
}

// ---------------------------------------------------------------------------
// Key pairs
// ---------------------------------------------------------------------------

/// A `kubernetes.io/tls` Secret updated by the kubelet: the new
/// certificate arrives with the key of another rotation (the race users
/// hit), then a matching pair.
#[test]
fn kubelet_tls_secret_with_key_from_another_rotation_waits_for_the_matching_pair() {
    let fx = Fixture::new();
    let (old, new) = (p256(), p256());
    let new_cert = valid_leaf(&new, None);
    let mut writer = AtomicWriter::new(&fx.mount);
    let mut gate = fx
        .watch()
        .args(["--required-keys", "tls.crt,tls.key"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    writer.write(&[
        ("tls.crt", new_cert.as_bytes()),
        ("tls.key", old.pem(Encoding::Pkcs8).as_bytes()),
    ]);
    gate.expect_stderr("tls.key: does not match the certificate in tls.crt");
    pause(STEP_MS);
    gate.assert_running("while the key is from another rotation");

    writer.write(&[
        ("tls.crt", new_cert.as_bytes()),
        ("tls.key", new.pem(Encoding::Pkcs8).as_bytes()),
    ]);
    gate.wait(HANG_LIMIT).assert_code(0);
}

/// Every key algorithm and encoding: the matching key passes, a key of
/// the same kind from another pair is named.
#[test]
fn keys_of_each_algorithm_and_encoding_are_checked_against_the_certificate() {
    let table = [
        (Alg::EcdsaP256, Encoding::Pkcs8),
        (Alg::EcdsaP256, Encoding::Sec1),
        (Alg::Ed25519, Encoding::Pkcs8),
        (Alg::Rsa(2048), Encoding::Pkcs8),
        (Alg::Rsa(2048), Encoding::Pkcs1),
    ];
    for (alg, encoding) in table {
        let (key, other) = (Key::new(alg), Key::new(alg));
        let fx = Fixture::new();
        fx.write("server.crt", valid_leaf(&key, None));
        fx.write("server.key", key.pem(encoding));
        let args = [
            "--file",
            "server.crt",
            "--key-pair",
            "server.crt=server.key",
        ];
        let args = [&args[..], &["--settle-time", "0"]].concat();
        let run = fx.check().args(&args).run();
        assert_eq!(run.code(), Some(0), "{alg:?} {encoding:?}\n{}", run.dump());

        fx.write("server.key", other.pem(encoding));
        let run = fx.check().args(&args).run();
        run.assert_code(1);
        assert_log_contains(
            &fx,
            "- server.key: does not match the certificate in server.crt",
            &run,
        );
    }
}

/// The env variable takes a comma-separated list of pairs.
#[test]
fn key_pairs_from_the_environment() {
    let fx = Fixture::new();
    let (a, b) = (p256(), p256());
    fx.write("a.crt", valid_leaf(&a, None));
    fx.write("a.key", a.pem(Encoding::Pkcs8));
    fx.write("b.crt", valid_leaf(&b, None));
    fx.write("b.key", a.pem(Encoding::Pkcs8));
    let run = fx
        .check()
        .env("SECRET_GATE_KEY_PAIRS", "a.crt=a.key, b.crt=b.key")
        .env("SECRET_GATE_SETTLE_TIME", "0")
        .args(["--file", "a.crt"])
        .run();
    run.assert_code(1);
    assert_log_contains(
        &fx,
        "- b.key: does not match the certificate in b.crt",
        &run,
    );
    assert_log_lacks(&fx, "a.key", &run);

    let run = fx
        .check()
        .args(["--file", "a.crt", "--key-pair", "a.crt"])
        .run();
    run.assert_code(2).assert_stderr("write CERT=KEY");
}

/// A certificate and key in one file (a combined PEM) must match.
#[test]
fn combined_pem_key_must_match_its_certificate() {
    let fx = Fixture::new();
    let (a, b) = (p256(), p256());
    fx.write(
        "app.pem",
        format!("{}{}", valid_leaf(&a, None), b.pem(Encoding::Pkcs8)),
    );
    let run = fx
        .check()
        .args(["--file", "app.pem", "--settle-time", "0"])
        .run();
    run.assert_code(1);
    assert_log_contains(
        &fx,
        "- app.pem: the private key in PEM block 2 does not match the certificate in PEM block 1",
        &run,
    );
    fx.write(
        "app.pem",
        format!("{}{}", valid_leaf(&a, None), a.pem(Encoding::Pkcs8)),
    );
    fx.check()
        .args(["--file", "app.pem", "--settle-time", "0"])
        .run()
        .assert_code(0);
}

// ---------------------------------------------------------------------------
// Torn writes
// ---------------------------------------------------------------------------

/// A combined PEM written in pieces, each cut inside a block: never ready
/// until the last piece, and the diagnosis names the block.
#[test]
fn combined_pem_torn_mid_block_is_never_ready_until_complete() {
    let fx = Fixture::new();
    let key = p256();
    let whole = format!("{}{}", valid_leaf(&key, None), key.pem(Encoding::Pkcs8));
    let cert_len = whole.find("-----BEGIN PRIVATE KEY").unwrap();
    let cuts = [cert_len / 2, cert_len + 40, whole.len() - 30, whole.len()];

    // What `check` says about a file cut inside its second block.
    fx.write("app.pem", &whole[..cuts[2]]);
    let run = fx.check().args(["--file", "app.pem"]).run();
    run.assert_code(1);
    assert_log_contains(
        &fx,
        &format!(
            "- app.pem: PEM block 2 of 2 ends early (file is {} bytes; still being written?)",
            cuts[2]
        ),
        &run,
    );

    let path = fx.path("app.pem");
    std::fs::remove_file(&path).unwrap();
    // At debug level every check is logged: at info level a check that
    // still finds the file invalid is not, and the gate may have caught the
    // writer's empty file first (also invalid) before any torn block.
    let mut gate = fx
        .watch()
        .args(["--file", "app.pem", "--timeout", READY_TIMEOUT])
        .args(["--log-level", "debug"])
        .spawn();
    gate.expect_stderr("app.pem: missing");
    let mut writer = TornWriter::truncate(&path);
    let mut written = 0;
    for cut in &cuts[..3] {
        writer.piece(&whole.as_bytes()[written..*cut]);
        written = *cut;
        pause(STEP_MS);
        gate.assert_running(&format!("with {written} of {} bytes written", whole.len()));
    }
    writer.piece(&whole.as_bytes()[written..]);
    let run = gate.wait(HANG_LIMIT);
    run.assert_code(0).assert_stderr("ends early");
}

/// Broken content is named by block, never quoted.
#[test]
fn broken_pem_is_named_by_block() {
    let fx = Fixture::new();
    let key = p256();
    let cert = valid_leaf(&key, None);
    let mut garbled = cert.clone();
    garbled.replace_range(70..74, "%%%%");
    let table = [
        ("", "- tls.crt: empty (still being written?)"),
        (
            "MIIBszCCAVmgAwIBAgIU",
            "- tls.crt: holds no PEM block (no -----BEGIN line)",
        ),
        (
            garbled.as_str(),
            "- tls.crt: PEM block 1 of 1 is not valid base64",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "- tls.crt: PEM block 1 of 1 (CERTIFICATE) is not a valid X.509 certificate",
        ),
    ];
    for (content, line) in table {
        fx.write("tls.crt", content);
        let run = fx
            .check()
            .args(["--required-keys", "tls.crt", "--settle-time", "0"])
            .run();
        run.assert_code(1);
        assert_log_contains(&fx, line, &run);
    }
}

// ---------------------------------------------------------------------------
// Validity
// ---------------------------------------------------------------------------

#[test]
fn expired_certificate_exits_1_at_the_deadline_named_as_expired() {
    let fx = Fixture::new();
    let key = p256();
    fx.write("tls.crt", leaf(&key, None, -7200, -60));
    let run = fx
        .watch()
        .args(["--file", "tls.crt", "--timeout", "1s"])
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "watch: not ready after 1s (--timeout)", &run);
    assert_log_contains(&fx, "- tls.crt: certificate expired 1m", &run);
}

#[test]
fn min_validity_longer_than_the_remaining_life_is_named() {
    let fx = Fixture::new();
    let key = p256();
    fx.write("tls.crt", leaf(&key, None, -3600, 590));
    let run = fx
        .check()
        .args([
            "--file",
            "tls.crt",
            "--min-validity",
            "1h",
            "--settle-time",
            "0",
        ])
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "- tls.crt: certificate expires in 9m", &run);
    assert_log_contains(&fx, "less than --min-validity 1h", &run);

    // From the environment, and a shorter requirement passes.
    fx.check()
        .env("SECRET_GATE_MIN_VALIDITY", "5m")
        .args(["--file", "tls.crt", "--settle-time", "0"])
        .run()
        .assert_code(0);
}

/// `notBefore` a few seconds ahead: `watch` wakes up by itself when the
/// certificate becomes valid, with no file event and no poll due; `check`
/// says "not valid yet" at once instead of waiting.
#[test]
fn certificate_that_becomes_valid_soon_passes_without_any_file_event() {
    let fx = Fixture::new();
    let key = p256();
    fx.write("tls.crt", leaf(&key, None, 3, 86_400));
    fx.write("tls.key", key.pem(Encoding::Pkcs8));

    let run = fx
        .check()
        .args(["--required-keys", "tls.crt,tls.key"])
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "- tls.crt: certificate is not valid yet", &run);
    assert!(run.elapsed < Duration::from_secs(2), "{}", run.dump());

    let mut gate = fx
        .watch()
        .args(["--required-keys", "tls.crt,tls.key"])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr("not valid yet");
    let run = gate.wait(HANG_LIMIT);
    run.assert_code(0);
    assert!(run.elapsed < Duration::from_secs(15), "{}", run.dump());
}

// ---------------------------------------------------------------------------
// Chain
// ---------------------------------------------------------------------------

#[test]
fn ca_file_names_the_link_that_fails() {
    let root = ca("Test Root", None);
    let other = ca("Other Root", None);
    let inter = ca("Test Intermediate", Some(&root));
    let key = p256();
    let from_other = valid_leaf(&key, Some(&other));
    let from_inter = valid_leaf(&key, Some(&inter));
    let with_inter = format!("{from_inter}{}", inter.pem());
    let from_root = valid_leaf(&key, Some(&root));

    let fx = Fixture::new();
    fx.write("ca.crt", root.pem());
    fx.write("tls.key", key.pem(Encoding::Pkcs8));
    let check = |cert: &str| {
        fx.write("tls.crt", cert);
        fx.check()
            .args(["--required-keys", "tls.crt,tls.key", "--ca-file", "ca.crt"])
            .args(["--settle-time", "0"])
            .run()
    };
    let run = check(&from_other);
    run.assert_code(1);
    assert_log_contains(
        &fx,
        "- tls.crt: does not chain to --ca-file ca.crt: the leaf (certificate) was issued by a CA \
         that is neither in ca.crt nor in tls.crt: issued by another CA, or an intermediate \
         missing from tls.crt",
        &run,
    );
    let run = check(&from_inter);
    run.assert_code(1);
    assert_log_contains(&fx, "does not chain to --ca-file ca.crt", &run);

    check(&with_inter).assert_code(0);
    check(&from_root).assert_code(0);
}

// ---------------------------------------------------------------------------
// Unrendered templates
// ---------------------------------------------------------------------------

#[test]
fn no_value_counts_as_missing_in_every_format() {
    let fx = Fixture::new();
    let table = [
        ("s.json", r#"{"password":"<no value>"}"#, "password"),
        ("s.yaml", "password: <no value>\n", "password"),
        ("s.env", "PASSWORD=<no value>\n", "PASSWORD"),
    ];
    for (file, content, key) in table {
        fx.write(file, content);
        let run = fx
            .check()
            .args(["--file", file, "--required-keys", key, "--settle-time", "0"])
            .run();
        run.assert_code(1);
        assert_log_contains(&fx, &format!("- {file}: key \"{key}\" missing"), &run);
    }
    for file in ["s.json", "s.yaml", "s.env"] {
        fx.write(file, "<no value>\n");
        let run = fx
            .check()
            .args(["--file", file, "--settle-time", "0"])
            .run();
        run.assert_code(1);
        assert_log_contains(&fx, &format!("- {file}: holds only `<no value>`"), &run);
    }
    // A raw key file (no --file).
    fx.write("password", "<no value>");
    let run = fx
        .check()
        .args(["--required-keys", "password", "--settle-time", "0"])
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "- password: holds only `<no value>`", &run);
}

// ---------------------------------------------------------------------------
// No secret in any output
// ---------------------------------------------------------------------------

/// At `--log-level trace`, through a mismatched pair, a torn key and a
/// garbled key, no piece of a private key reaches stdout, stderr or the
/// termination log.
#[test]
fn private_key_bytes_never_appear_in_any_output_at_trace() {
    let fx = Fixture::new();
    let (key, other) = (p256(), Key::new(Alg::Rsa(2048)));
    let pems = [key.pem(Encoding::Pkcs8), other.pem(Encoding::Pkcs1)];
    fx.write("tls.crt", valid_leaf(&key, None));
    let mut garbled = pems[1].clone();
    garbled.replace_range(100..104, "****");
    let variants = [
        pems[1].clone(),
        pems[0][..pems[0].len() - 40].to_owned(),
        garbled,
        format!("{}{}", valid_leaf(&key, None), pems[1]),
    ];
    for content in &variants {
        fx.write("tls.key", content);
        let run = fx
            .watch()
            .args(["--required-keys", "tls.crt,tls.key", "--log-level", "trace"])
            .args(["--timeout", "700ms", "--poll-interval", "100ms"])
            .run();
        run.assert_code(1);
        let out = format!("{}{}{}", run.stdout, run.stderr, fx.log());
        assert!(out.contains("tls.key"), "{out}");
        for pem in &pems {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            // Every 12-character piece, overlapping: a leak cannot hide
            // across a chunk boundary.
            for window in body.as_bytes().windows(12) {
                let piece = std::str::from_utf8(window).unwrap();
                assert!(
                    piece.len() < 12 || !out.contains(piece),
                    "key material {piece:?} in the output\n{}",
                    run.dump()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Kubernetes pod certificates (KEP-4317)
// ---------------------------------------------------------------------------

/// The signers the pod-certificate tests issue with: a P-256 one, and a
/// P-521 one, whose ECDSA-with-SHA-512 signatures ring cannot verify.
fn pod_signers(dir: &std::path::Path) -> Vec<PodSigner> {
    [PodKeyType::EcdsaP256, PodKeyType::EcdsaP521]
        .into_iter()
        .map(|kind| PodSigner::new(dir, kind.name(), kind))
        .collect()
}

/// A `clusterTrustBundle`: the signer's CA and, as during a signer
/// rotation, another CA.
fn trust_bundle(signer: &PodSigner, other: &PodSigner) -> String {
    format!("{}{}", other.ca_pem, signer.ca_pem)
}

/// Every key type a pod certificate may have, from a P-256 and a P-521
/// signer, in both layouts the kubelet writes (through its atomic writer,
/// with the `clusterTrustBundle` projected into the same volume): the
/// credential bundle (key first, then the chain) and the key and chain
/// files. Each passes parse, validity, `--min-validity`, key-matches-leaf
/// and the chain to the trust bundle as `--ca-file`.
#[test]
fn pod_certificates_of_every_key_type_pass_in_both_layouts() {
    let fx = Fixture::new();
    let keys_dir = fx.root.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    let signers = pod_signers(fx.root.path());
    let mut writer = AtomicWriter::new(&fx.mount);
    for kind in PodKeyType::ALL {
        let key = pod_key(&keys_dir, kind);
        for (signer, other) in [(&signers[0], &signers[1]), (&signers[1], &signers[0])] {
            let chain = signer.issue(&key, 1);
            let ca = trust_bundle(signer, other);
            let what = format!("{} leaf from a {} signer", kind.name(), signer.kind.name());
            writer.write(&[
                ("credentialbundle.pem", format!("{key}{chain}").as_bytes()),
                ("tls.key", key.as_bytes()),
                ("tls.crt", chain.as_bytes()),
                ("ca.crt", ca.as_bytes()),
            ]);
            let layouts: [&[&str]; 2] = [
                &["--file", "credentialbundle.pem"],
                &["--key-pair", "tls.crt=tls.key"],
            ];
            for layout in layouts {
                let run = fx
                    .check()
                    .args(layout)
                    .args(["--ca-file", "ca.crt", "--min-validity", "1h"])
                    .run();
                assert_eq!(run.code(), Some(0), "{what} {layout:?}\n{}", run.dump());
            }
            // --min-validity beyond the certificate's day of life is named.
            let run = fx
                .check()
                .args(["--file", "credentialbundle.pem", "--min-validity", "48h"])
                .run();
            run.assert_code(1);
            assert_log_contains(&fx, "- credentialbundle.pem: certificate expires in", &run);
        }
    }
}

/// The mid-rotation mismatch the Kubernetes docs warn about: a key from
/// one refresh and a chain from the next are "not yet", never a pass, in
/// both layouts and for every key type (P-521 keys included, which the
/// gate could not load before).
#[test]
fn a_pod_certificate_key_and_chain_from_different_refreshes_are_not_yet() {
    let fx = Fixture::new();
    let keys_dir = fx.root.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    let signer = PodSigner::new(fx.root.path(), "signer", PodKeyType::EcdsaP521);
    let mut writer = AtomicWriter::new(&fx.mount);
    for kind in PodKeyType::ALL {
        let (old, new) = (pod_key(&keys_dir, kind), pod_key(&keys_dir, kind));
        let new_chain = signer.issue(&new, 1);
        writer.write(&[
            (
                "credentialbundle.pem",
                format!("{old}{new_chain}").as_bytes(),
            ),
            ("tls.key", old.as_bytes()),
            ("tls.crt", new_chain.as_bytes()),
            ("ca.crt", signer.ca_pem.as_bytes()),
        ]);
        let run = fx
            .check()
            .args(["--file", "credentialbundle.pem", "--ca-file", "ca.crt"])
            .run();
        run.assert_code(1);
        assert_log_contains(
            &fx,
            "- credentialbundle.pem: the private key in PEM block 1 does not match the \
             certificate in PEM block 2",
            &run,
        );
        let run = fx
            .check()
            .args(["--key-pair", "tls.crt=tls.key", "--ca-file", "ca.crt"])
            .run();
        run.assert_code(1);
        assert_log_contains(
            &fx,
            "- tls.key: does not match the certificate in tls.crt",
            &run,
        );
    }
}

/// `watch` on the two-file layout across a refresh: the kubelet swaps in a
/// version whose key is from the old refresh, then the matching one; the
/// gate waits through the first and passes on the second.
#[test]
fn watch_waits_through_a_pod_certificate_refresh_caught_mid_rotation() {
    let fx = Fixture::new();
    let signer = PodSigner::new(fx.root.path(), "signer", PodKeyType::EcdsaP521);
    let (old, new) = (
        pod_key(fx.root.path(), PodKeyType::EcdsaP521),
        pod_key(fx.root.path(), PodKeyType::EcdsaP521),
    );
    let new_chain = signer.issue(&new, 1);
    let mut writer = AtomicWriter::new(&fx.mount);
    writer.write(&[
        ("tls.key", old.as_bytes()),
        ("tls.crt", new_chain.as_bytes()),
        ("ca.crt", signer.ca_pem.as_bytes()),
    ]);
    let mut gate = fx
        .watch()
        .args(["--key-pair", "tls.crt=tls.key", "--ca-file", "ca.crt"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr("tls.key: does not match the certificate in tls.crt");
    pause(STEP_MS);
    gate.assert_running("while the key is from the previous refresh");
    writer.write(&[
        ("tls.key", new.as_bytes()),
        ("tls.crt", new_chain.as_bytes()),
        ("ca.crt", signer.ca_pem.as_bytes()),
    ]);
    gate.wait(HANG_LIMIT).assert_code(0);
}

/// A P-521 signer may sign with SHA-256 or SHA-384 rather than SHA-512
/// (openssl lets it): those chains verify too.
#[test]
fn p521_signatures_over_every_sha2_digest_verify() {
    let fx = Fixture::new();
    let key = pod_key(fx.root.path(), PodKeyType::EcdsaP256);
    let digests: [&'static [&'static str]; 3] = [&["-sha256"], &["-sha384"], &["-sha512"]];
    for digest in digests {
        let signer =
            PodSigner::with_digest(fx.root.path(), digest[0], PodKeyType::EcdsaP521, digest);
        fx.write(
            "credentialbundle.pem",
            format!("{key}{}", signer.issue(&key, 1)),
        );
        fx.write("ca.crt", &signer.ca_pem);
        let run = fx
            .check()
            .args(["--file", "credentialbundle.pem", "--ca-file", "ca.crt"])
            .args(["--settle-time", "0"])
            .run();
        assert_eq!(run.code(), Some(0), "{digest:?}\n{}", run.dump());
    }
}

/// A leaf signed by another P-521 CA of the same name does not verify: the
/// P-521 signature check is real, not a pass-through.
#[test]
fn a_p521_signature_by_another_key_does_not_verify() {
    let fx = Fixture::new();
    let real = PodSigner::new(fx.root.path(), "signer", PodKeyType::EcdsaP521);
    let impostor_dir = fx.root.path().join("impostor");
    std::fs::create_dir(&impostor_dir).unwrap();
    let impostor = PodSigner::new(&impostor_dir, "signer", PodKeyType::EcdsaP521);
    let key = pod_key(fx.root.path(), PodKeyType::EcdsaP256);
    fx.write(
        "credentialbundle.pem",
        format!("{key}{}", impostor.issue(&key, 1)),
    );
    fx.write("ca.crt", &real.ca_pem);
    let run = fx
        .check()
        .args(["--file", "credentialbundle.pem", "--ca-file", "ca.crt"])
        .args(["--settle-time", "0"])
        .run();
    run.assert_code(1);
    assert_log_contains(
        &fx,
        "the signature does not verify with that CA's key",
        &run,
    );
}

// ---------------------------------------------------------------------------
// Safe mode
// ---------------------------------------------------------------------------

#[path = "common/fake.rs"]
#[expect(
    clippy::expect_used,
    reason = "the fake Safe's helpers fail the test with expect(); they are test code, not the product"
)]
mod fake;

mod safe {
    use super::common::{assert_log_contains, Fixture, Gate};
    use super::fake::FakeSafe;
    use super::p256;
    use super::pki::{leaf, valid_leaf, Encoding};

    fn gate(fake: &FakeSafe, fx: &Fixture) -> Gate {
        Gate::new("safe")
            .env("SPIFFE_ENDPOINT_SOCKET", fake.spiffe_endpoint())
            .env("VSECM_SAFE_ENDPOINT_URL", fake.safe_url())
            .env("VSECM_INIT_CONTAINER_POLL_INTERVAL", "50")
            .args(["--max-backoff", "200ms", "--termination-log"])
            .arg(&fx.log)
    }

    /// Registers a value that starts with `-` (PEM), as `--value=...`.
    fn register(fake: &FakeSafe, value: &str) {
        let value = format!("--value={value}");
        let out = fake.cli("register", &["--workload", "example", &value]);
        assert!(out.status.success(), "register failed: {out:?}");
    }

    #[test]
    fn no_value_in_a_safe_secret_is_not_ready() {
        let fake = FakeSafe::start(&[]);
        let fx = Fixture::new();
        fake.register("example", r#"{"password":"<no value>"}"#);
        let run = gate(&fake, &fx)
            .args(["--required-keys", "password", "--timeout", "1s"])
            .run();
        run.assert_code(1);
        assert_log_contains(&fx, "- Safe: key \"password\" missing", &run);

        fake.register("example", "<no value>");
        let run = gate(&fake, &fx).args(["--timeout", "1s"]).run();
        run.assert_code(1);
        assert_log_contains(&fx, "`<no value>`", &run);
    }

    #[test]
    fn pem_secret_is_checked_like_a_pem_file() {
        let fake = FakeSafe::start(&[]);
        let fx = Fixture::new();
        let key = p256();
        let good = format!("{}{}", valid_leaf(&key, None), key.pem(Encoding::Pkcs8));
        register(&fake, &good);
        gate(&fake, &fx)
            .args(["--format", "pem", "--timeout", "20s"])
            .run()
            .assert_code(0);

        let short = format!("{}{}", leaf(&key, None, -60, 600), key.pem(Encoding::Pkcs8));
        register(&fake, &short);
        let run = gate(&fake, &fx)
            .args(["--format", "pem", "--min-validity", "1h", "--timeout", "1s"])
            .run();
        run.assert_code(1);
        assert_log_contains(&fx, "- Safe: certificate expires in", &run);
    }
}
