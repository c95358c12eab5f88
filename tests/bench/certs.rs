//! Figure 7: `secret-gate check` on TLS material against openssl run on
//! the same files in the same run: a 100-certificate bundle, an RSA-4096
//! certificate with its key, and a Kubernetes pod-certificate credential
//! bundle from a P-521 signer. Certificates are generated here (rcgen; the
//! RSA key with the rsa crate; the pod certificate with openssl).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::{self, Alg, Encoding, Key};
use crate::process::{command, stderr_to, Running};
use crate::volume::{ms_between, write_old};
use crate::Bench;

/// One row of figure 7.
#[derive(Debug, Clone)]
pub struct TlsSeries {
    pub label: String,
    /// What the row checks, for the reader.
    pub covers: String,
    /// Processes started per run.
    pub processes: usize,
    pub wall_ms: Vec<f64>,
    pub failures: Vec<String>,
}

/// Figure 7, or why openssl's rows are missing.
#[derive(Debug, Clone)]
pub struct TlsFigure {
    /// Bundle rows first (gate, then openssl), then pair rows.
    pub series: Vec<TlsSeries>,
    pub openssl: Result<String, String>,
}

/// How a case runs: the gate once, or openssl commands in sequence.
enum Runner {
    Gate(Vec<String>),
    /// Each a full command line; all must succeed.
    Sequence(Vec<Vec<String>>),
    /// `x509 -pubkey` and `pkey -pubout` must print the same key.
    CompareKeys {
        cert: String,
        key: String,
    },
}

struct Case {
    series: TlsSeries,
    runner: Runner,
}

fn series(label: &str, covers: &str, processes: usize) -> TlsSeries {
    TlsSeries {
        label: label.to_owned(),
        covers: covers.to_owned(),
        processes,
        wall_ms: Vec::new(),
        failures: Vec::new(),
    }
}

fn arg(p: &Path) -> String {
    p.to_str().expect("scratch paths are UTF-8").to_owned()
}

/// `openssl version`, or why it cannot run.
fn openssl_version() -> Result<String, String> {
    match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(out) => Err(format!("`openssl version` exited {}", out.status)),
        Err(e) => Err(format!("openssl not found ({e})")),
    }
}

/// Figure 7. `runs` runs of each case, interleaved.
#[expect(
    clippy::too_many_lines,
    reason = "figure 7's files and cases in one list, in the order they are reported"
)]
pub fn tls(bench: &Bench, runs: usize) -> TlsFigure {
    let dir = bench.scratch.join("tls");
    std::fs::create_dir_all(&dir).expect("create the TLS directory");
    let log = dir.join("termination-log");

    // 100 leaves, each valid for 90 days, signed by one CA.
    let ca = pki::ca("bench CA", None);
    let key = Key::new(Alg::EcdsaP256);
    let bundle: String = (0..100).map(|_| pki::valid_leaf(&key, Some(&ca))).collect();
    write_old(&dir.join("bundle.pem"), &bundle);
    // An RSA-4096 leaf and its PKCS#8 key.
    let rsa = Key::new(Alg::Rsa(4096));
    write_old(&dir.join("tls.crt"), &pki::valid_leaf(&rsa, Some(&ca)));
    write_old(&dir.join("tls.key"), &rsa.pem(Encoding::Pkcs8));

    let gate = |extra: &[&str]| {
        let mut args: Vec<String> = ["check", "--mount-path", &arg(&dir), "--termination-log"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push(arg(&log));
        // The figure measures the check; outside a kubelet volume a PEM
        // file would first wait the settle time once (figure 5 does too).
        args.extend(["--settle-time".to_owned(), "0s".to_owned()]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Runner::Gate(args)
    };
    let ossl = |args: &[&str]| -> Vec<String> {
        std::iter::once("openssl")
            .chain(args.iter().copied())
            .map(ToOwned::to_owned)
            .collect()
    };
    let (bundle_pem, cert, tls_key) = (
        arg(&dir.join("bundle.pem")),
        arg(&dir.join("tls.crt")),
        arg(&dir.join("tls.key")),
    );
    let checkend = |file: &str| ossl(&["x509", "-checkend", "3600", "-noout", "-in", file]);

    let openssl = openssl_version();
    let mut cases = vec![Case {
        series: series(
            "`secret-gate check`, 100-certificate bundle",
            "all 100: PEM, X.509, valid now and for 1 h",
            1,
        ),
        runner: gate(&["--file", "bundle.pem", "--min-validity", "1h"]),
    }];
    if openssl.is_ok() {
        cases.push(Case {
            series: series(
                "`openssl x509 -checkend 3600`, same bundle",
                "the first certificate only",
                1,
            ),
            runner: Runner::Sequence(vec![checkend(&bundle_pem)]),
        });
    }
    cases.push(Case {
        series: series(
            "`secret-gate check`, RSA-4096 certificate + key",
            "PEM, X.509, valid for 1 h, key parses and matches",
            1,
        ),
        runner: gate(&["--required-keys", "tls.crt,tls.key", "--min-validity", "1h"]),
    });
    if openssl.is_ok() {
        cases.push(Case {
            series: series(
                "`openssl x509 -checkend 3600` + `openssl pkey -noout`, same files",
                "valid for 1 h, key parses; no pair check",
                2,
            ),
            runner: Runner::Sequence(vec![
                checkend(&cert),
                ossl(&["pkey", "-noout", "-in", &tls_key]),
            ]),
        });
        cases.push(Case {
            series: series(
                "… + public keys compared (`x509 -pubkey`, `pkey -pubout`)",
                "valid for 1 h, key parses and matches",
                3,
            ),
            runner: Runner::CompareKeys {
                cert: cert.clone(),
                key: tls_key.clone(),
            },
        });
    }

    cases.extend(pod_certificate_cases(
        &dir,
        openssl.is_ok(),
        &gate,
        &checkend,
        &ossl,
    ));

    for _ in 0..runs {
        for case in &mut cases {
            match run(&case.runner, &bench.gate, &log) {
                Ok(ms) => case.series.wall_ms.push(ms),
                Err(e) => case.series.failures.push(e),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    TlsFigure {
        series: cases.into_iter().map(|c| c.series).collect(),
        openssl,
    }
}

/// Figure 7's pod-certificate rows: the gate on the credential bundle, and
/// the openssl commands that check part of what it checks.
fn pod_certificate_cases(
    dir: &Path,
    openssl: bool,
    gate: &dyn Fn(&[&str]) -> Runner,
    checkend: &dyn Fn(&str) -> Vec<String>,
    ossl: &dyn Fn(&[&str]) -> Vec<String>,
) -> Vec<Case> {
    // A Kubernetes pod certificate (KEP-4317): the credential bundle (the
    // PKCS#8 key first, then the leaf) from a signer with a P-521 key, and
    // that signer's CA as the clusterTrustBundle. openssl makes them: ring
    // cannot sign with P-521.
    let pod = dir.join("pod-signer");
    std::fs::create_dir_all(&pod).expect("create the signer directory");
    let signer = pki::PodSigner::new(&pod, "pod-signer", pki::PodKeyType::EcdsaP521);
    let pod_key = pki::pod_key(&pod, pki::PodKeyType::EcdsaP256);
    let pod_bundle = format!("{pod_key}{}", signer.issue(&pod_key, 1));
    write_old(&dir.join("credentialbundle.pem"), &pod_bundle);
    write_old(&dir.join("ca.crt"), &signer.ca_pem);
    let mut cases = Vec::new();
    let credential_bundle = arg(&dir.join("credentialbundle.pem"));
    let trust_bundle = arg(&dir.join("ca.crt"));
    cases.push(Case {
        series: series(
            "`secret-gate check`, pod-certificate credential bundle (P-521 signer)",
            "PEM, X.509, valid for 1 h, key matches leaf, chains to the trust bundle",
            1,
        ),
        runner: gate(&[
            "--file",
            "credentialbundle.pem",
            "--ca-file",
            "ca.crt",
            "--min-validity",
            "1h",
        ]),
    });
    if openssl {
        cases.push(Case {
            series: series(
                "`openssl x509 -checkend 3600` + `openssl verify -CAfile`, same bundle",
                "valid for 1 h, chains; no pair check",
                2,
            ),
            runner: Runner::Sequence(vec![
                checkend(&credential_bundle),
                ossl(&["verify", "-CAfile", &trust_bundle, &credential_bundle]),
            ]),
        });
        cases.push(Case {
            series: series(
                "… + public keys compared (`x509 -pubkey`, `pkey -pubout`), same bundle",
                "valid for 1 h, key matches; no chain",
                3,
            ),
            runner: Runner::CompareKeys {
                cert: credential_bundle.clone(),
                key: credential_bundle.clone(),
            },
        });
    }

    cases
}

/// One run of a case: wall time from the first spawn to the last exit.
fn run(runner: &Runner, gate: &Path, log: &Path) -> Result<f64, String> {
    let limit = Duration::from_secs(30);
    match runner {
        Runner::Gate(args) => {
            let mut cmd = command(gate);
            cmd.args(args);
            stderr_to(&mut cmd, log);
            let mut p = Running::spawn(&mut cmd);
            match p.wait_timeout(limit) {
                Some((t, s)) if s.success() => Ok(ms_between(p.started, t)),
                Some((_, s)) => Err(format!(
                    "exit {s}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )),
                None => Err("no exit within 30 s".into()),
            }
        }
        Runner::Sequence(lines) => {
            let start = Instant::now();
            for line in lines {
                let mut cmd = command(&line[0]);
                cmd.args(&line[1..]);
                stderr_to(&mut cmd, log);
                let mut p = Running::spawn(&mut cmd);
                match p.wait_timeout(limit) {
                    Some((_, s)) if s.success() => {}
                    Some((_, s)) => return Err(format!("{} exited {s}", line.join(" "))),
                    None => return Err(format!("{} did not exit within 30 s", line.join(" "))),
                }
            }
            Ok(ms_between(start, Instant::now()))
        }
        Runner::CompareKeys { cert, key } => {
            let start = Instant::now();
            let out = |args: &[&str]| {
                let mut cmd = command("openssl");
                cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
                cmd.output().map_err(|e| e.to_string())
            };
            let end = out(&["x509", "-checkend", "3600", "-noout", "-in", cert])?;
            if !end.status.success() {
                return Err("openssl x509 -checkend failed".into());
            }
            let from_cert = out(&["x509", "-pubkey", "-noout", "-in", cert])?;
            let from_key = out(&["pkey", "-pubout", "-in", key])?;
            let done = Instant::now();
            if !from_cert.status.success() || from_cert.stdout != from_key.stdout {
                return Err("openssl: the public keys differ".into());
            }
            Ok(ms_between(start, done))
        }
    }
}
