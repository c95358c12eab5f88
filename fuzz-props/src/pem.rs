//! The PEM, certificate, key-pair and `--ca-file` chain checks.
//!
//! The input is up to three PEM files separated by NUL bytes: a
//! certificate file, a key file paired with it (`--key-pair`) and a CA
//! bundle (`--ca-file`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secret_gate::check::{self, tls, Format, TlsPolicy};

use crate::{assert_no_canary, limited, split_nul};

/// The clock the checks run at: 2027-06-01T00:00:00Z, inside the
/// validity of the committed seed certificates, so that the pair and chain
/// checks run on them and do not wait on the day the fuzzer runs.
pub const NOW_UNIX: u64 = 1_811_808_000;

const NAMES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// The property.
pub fn pem(data: &[u8]) {
    limited(|| check_pem(data));
}

fn check_pem(data: &[u8]) {
    let base64 = base64_lines(data);
    let check_text = |text: &str| check_text(&base64, text);
    let parts = split_nul(data, NAMES.len());
    let mut bundles = Vec::new();
    for (name, part) in NAMES.iter().zip(&parts) {
        // As the gate reads a PEM file (volume and safe mode): `parse_pem`
        // keeps the bundle for the TLS checks.
        let bundle = check::parse_pem(part);
        let parsed = check::parse(Format::Pem, part);
        // The format check and the bundle agree (blank and `<no value>`
        // files stop earlier, as every format does).
        assert_eq!(
            bundle.is_ok(),
            parsed.is_ok(),
            "parse_pem and parse(Format::Pem) disagree"
        );
        if let Err(err) = parsed {
            check_text(&err.to_string());
        }
        match bundle {
            Err(err) => check_text(&err.to_string()),
            Ok(bundle) => {
                check_text(&format!("{bundle:?}"));
                for i in 0..bundle.certs.len() {
                    let _ = bundle.cert_name(i);
                }
                bundles.push((*name, bundle));
            }
        }
    }
    let files: Vec<(&str, &[u8])> = NAMES.iter().copied().zip(parts).collect();
    let policy = TlsPolicy {
        min_validity: Duration::from_secs(30 * 24 * 3600),
        pairs: vec![(NAMES[0].to_owned(), NAMES[1].to_owned())],
        ca_file: Some(NAMES[2].to_owned()),
    };
    // The gate's own path: the TLS checks on the bundles parsed above.
    let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    let report = tls::check_bundles(&bundles, &policy, now);
    for problem in &report.problems {
        check_text(&problem.to_string());
    }
    if let Some(next) = report.next_change {
        assert!(
            next <= Duration::from_secs(24 * 3600 + 1),
            "next look at the certificates is {next:?} away, past the one-day horizon"
        );
    }
    // The clock at the edges of time; `tls::check` (which parses the files
    // itself) once, `check_bundles` again.
    let _ = tls::check(&files, &policy, UNIX_EPOCH);
    let _ = tls::check_bundles(
        &bundles,
        &policy,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40),
    );
}

/// The lines of `data` that look like base64 (key material, a certificate
/// body): at least 16 characters of the base64 alphabet.
fn base64_lines(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == b'\n' || *b == 0)
        .map(<[u8]>::trim_ascii)
        .filter(|line| {
            line.len() >= 16
                && line
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        })
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

/// No message repeats the canary or a line of base64 (key material, a
/// certificate body) from the input ([`base64_lines`]).
fn check_text(base64: &[String], text: &str) {
    assert_no_canary("a PEM diagnosis", text);
    for line in base64 {
        assert!(
            !text.contains(line.as_str()),
            "a PEM diagnosis repeats base64 from the file: {text:?}"
        );
    }
}
