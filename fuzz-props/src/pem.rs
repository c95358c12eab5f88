//! The PEM, certificate, key-pair and `--ca-file` chain checks.
//!
//! The input is up to three PEM files separated by NUL bytes: a
//! certificate file, a key file paired with it (`--key-pair`) and a CA
//! bundle (`--ca-file`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secret_gate::check::{self, pem::parse_bundle, tls, Format, TlsPolicy};

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
    let parts = split_nul(data, NAMES.len());
    for part in &parts {
        let bundle = parse_bundle(part);
        let parsed = check::parse(Format::Pem, part);
        // The format check and the bundle agree (blank and `<no value>`
        // files stop earlier, as every format does).
        if bundle.is_ok() {
            assert!(parsed.is_ok(), "a bundle that parses is not valid PEM");
        }
        match (&bundle, &parsed) {
            (Err(err), _) => check_text(data, &err.to_string()),
            (Ok(bundle), _) => {
                check_text(data, &format!("{bundle:?}"));
                for i in 0..bundle.certs.len() {
                    let _ = bundle.cert_name(i);
                }
            }
        }
        if let Err(err) = parsed {
            check_text(data, &err.to_string());
        }
    }
    let files: Vec<(&str, &[u8])> = NAMES.iter().copied().zip(parts).collect();
    let policy = TlsPolicy {
        min_validity: Duration::from_secs(30 * 24 * 3600),
        pairs: vec![(NAMES[0].to_owned(), NAMES[1].to_owned())],
        ca_file: Some(NAMES[2].to_owned()),
    };
    let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    let report = tls::check(&files, &policy, now);
    for problem in &report.problems {
        check_text(data, &problem.to_string());
    }
    if let Some(next) = report.next_change {
        assert!(
            next <= Duration::from_secs(24 * 3600 + 1),
            "next look at the certificates is {next:?} away, past the one-day horizon"
        );
    }
    // The clock at the edges of time.
    for at in [
        UNIX_EPOCH,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40),
    ] {
        let _ = tls::check(&files, &policy, at);
    }
}

/// No message repeats the canary or a line of base64 (key material, a
/// certificate body) from the input.
fn check_text(data: &[u8], text: &str) {
    assert_no_canary("a PEM diagnosis", text);
    for line in data.split(|b| *b == b'\n' || *b == 0) {
        let line = line.trim_ascii();
        let base64 = line.len() >= 16
            && line
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if base64 {
            let line = String::from_utf8_lossy(line);
            assert!(
                !text.contains(line.as_ref()),
                "a PEM diagnosis repeats base64 from the file: {text:?}"
            );
        }
    }
}
