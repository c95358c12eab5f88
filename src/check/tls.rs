//! Checks on PEM files that need the clock or more than one file:
//! validity and `--min-validity`, key pairs, and the chain to `--ca-file`.
//!
//! Both sources call [`check`] with bytes they already read and that
//! already parsed as [`Format::Pem`](super::Format::Pem). Messages name
//! files and block numbers and may show a `notAfter`/`notBefore` time;
//! they never show key material, certificate bodies or serial numbers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, UnixTime};

use super::pem::{parse_bundle, Bundle, Cert};
use crate::problem::{Kind, Problem};

/// What the TLS checks require beyond each file parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Time each end-entity certificate must still have left.
    pub min_validity: Duration,
    /// `(certificate file, key file)`: the key must match the first
    /// certificate of the certificate file.
    pub pairs: Vec<(String, String)>,
    /// The bundle every other file's end-entity certificate must chain to.
    pub ca_file: Option<String>,
}

/// The outcome of [`check`].
#[derive(Debug, Default)]
pub struct TlsReport {
    /// Empty means every PEM file passed.
    pub problems: Vec<Problem>,
    /// How soon a certificate's state changes by itself (it becomes valid,
    /// drops under `--min-validity`, or expires): when to look again.
    pub next_change: Option<Duration>,
}

/// Looks no further ahead than this for the next change, so a far-off
/// date never becomes an overflowing timer.
const HORIZON: Duration = Duration::from_secs(24 * 3600);

/// Checks the PEM files `files` (name, bytes) against `policy` at `now`.
/// A file that does not parse is skipped: the format check reports it.
#[must_use]
pub fn check(files: &[(&str, &[u8])], policy: &TlsPolicy, now: SystemTime) -> TlsReport {
    let bundles: Vec<(&str, Bundle)> = files
        .iter()
        .filter_map(|(name, bytes)| parse_bundle(bytes).ok().map(|b| (*name, b)))
        .collect();
    check_bundles(&bundles, policy, now)
}

/// [`check`] on files already parsed ([`super::parse_pem`]), so that a
/// scan parses each PEM file once.
#[must_use]
pub fn check_bundles<N: AsRef<str>>(
    bundles: &[(N, Bundle)],
    policy: &TlsPolicy,
    now: SystemTime,
) -> TlsReport {
    let bundles: Vec<(&str, &Bundle)> = bundles.iter().map(|(n, b)| (n.as_ref(), b)).collect();
    let mut report = TlsReport::default();
    let now_secs = unix_seconds(now);
    let mut next: Option<i64> = None;
    let mut soonest = |at: i64| next = Some(next.map_or(at, |n| n.min(at)));
    let mut out_of_date: Vec<&str> = Vec::new();

    for (name, bundle) in &bundles {
        let is_ca_file = policy.ca_file.as_deref() == Some(*name);
        for (index, cert) in bundle.certs.iter().enumerate() {
            let which = bundle.cert_name(index);
            let problem = validity(cert, &which, now_secs, policy, is_ca_file, &mut soonest);
            if let Some((kind, what)) = problem {
                if kind != Kind::ExpiresSoon {
                    out_of_date.push(name);
                }
                report
                    .problems
                    .push(Problem::new(*name, kind, what).about(cert.block.to_string()));
            }
        }
        // A combined PEM: every key in it goes with its first certificate.
        if let Some(leaf) = bundle.certs.first() {
            for key in &bundle.keys {
                if key.spki.as_ref().is_some_and(|k| *k != leaf.spki) {
                    let what = format!(
                        "the private key in PEM block {} does not match the certificate in \
                         PEM block {} (a key and certificate from different rotations?)",
                        key.block, leaf.block
                    );
                    let p = Problem::new(*name, Kind::KeyMismatch, what);
                    report.problems.push(p.about(key.block.to_string()));
                }
            }
        }
    }

    let find = |name: &str| bundles.iter().find(|(n, _)| *n == name).map(|(_, b)| b);
    for (cert_name, key_name) in &policy.pairs {
        let (Some(certs), Some(keys)) = (find(cert_name), find(key_name)) else {
            continue;
        };
        report
            .problems
            .extend(pair(cert_name, certs, key_name, keys));
    }

    if let Some(ca_name) = &policy.ca_file {
        if let Some(ca) = find(ca_name) {
            if ca.certs.is_empty() {
                report.problems.push(Problem::new(
                    ca_name.as_str(),
                    Kind::Chain,
                    "holds no certificate, but --ca-file names it as the CA bundle",
                ));
            } else if !out_of_date.contains(&ca_name.as_str()) {
                for (name, bundle) in &bundles {
                    let leaf_ok = bundle.certs.first().is_some_and(|c| !c.is_ca);
                    if *name == ca_name.as_str() || !leaf_ok || out_of_date.contains(name) {
                        continue;
                    }
                    if let Err(why) = chain(name, bundle, ca_name, ca, now) {
                        report.problems.push(Problem::new(
                            *name,
                            Kind::Chain,
                            format!("does not chain to --ca-file {ca_name}: {why}"),
                        ));
                    }
                }
            }
        }
    }

    // Certificate times are whole seconds: wake just after the instant.
    report.next_change = next.map(|at| {
        let wake = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
        wake.duration_since(now).unwrap_or_default().min(HORIZON) + Duration::from_millis(5)
    });
    report
}

/// The validity problem of one certificate, if any. Feeds `soonest` the
/// next instant at which its state changes by itself.
fn validity(
    cert: &Cert,
    which: &str,
    now: i64,
    policy: &TlsPolicy,
    is_ca_file: bool,
    soonest: &mut impl FnMut(i64),
) -> Option<(Kind, String)> {
    if now < cert.not_before {
        soonest(cert.not_before);
        return Some((
            Kind::NotYetValid,
            format!(
                "{which} is not valid yet: valid from {} (in {}; is the clock of the issuer or of this node off?)",
                show_time(cert.not_before),
                show_secs(cert.not_before - now)
            ),
        ));
    }
    if now > cert.not_after {
        return Some((
            Kind::Expired,
            format!(
                "{which} expired {} ago (notAfter {}); renew it",
                show_secs(now - cert.not_after),
                show_time(cert.not_after)
            ),
        ));
    }
    soonest(cert.not_after.saturating_add(1));
    let min = i64::try_from(policy.min_validity.as_secs()).unwrap_or(i64::MAX);
    if min == 0 || cert.is_ca || is_ca_file {
        return None;
    }
    let left = cert.not_after - now;
    if left < min {
        return Some((
            Kind::ExpiresSoon,
            format!(
                "{which} expires in {} (notAfter {}), less than --min-validity {}",
                show_secs(left),
                show_time(cert.not_after),
                humantime::format_duration(policy.min_validity)
            ),
        ));
    }
    soonest(cert.not_after.saturating_sub(min).saturating_add(1));
    None
}

/// The key file's first key must match the certificate file's first
/// certificate.
fn pair(cert_name: &str, certs: &Bundle, key_name: &str, keys: &Bundle) -> Option<Problem> {
    let Some(leaf) = certs.certs.first() else {
        return Some(Problem::new(
            cert_name,
            Kind::NoCertificate,
            format!("holds no certificate, but it is paired with the key {key_name}"),
        ));
    };
    let Some(key) = keys.keys.first() else {
        return Some(Problem::new(
            key_name,
            Kind::NoKey,
            format!("holds no private key, but it is paired with the certificate {cert_name}"),
        ));
    };
    let spki = key.spki.as_ref()?;
    (*spki != leaf.spki).then(|| {
        Problem::new(
            key_name,
            Kind::KeyMismatch,
            format!(
                "does not match the certificate in {cert_name} \
                 (a key and certificate from different rotations?)"
            ),
        )
        .about(cert_name)
    })
}

/// Verifies `bundle`'s first certificate, with the rest of the file as
/// intermediates, against the certificates of `ca` as trust anchors.
/// On failure, says which link broke.
fn chain(
    name: &str,
    bundle: &Bundle,
    ca_name: &str,
    ca: &Bundle,
    now: SystemTime,
) -> Result<(), String> {
    let anchors: Vec<_> = ca
        .certs
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(&c.der).ok())
        .collect();
    if anchors.is_empty() {
        return Err(format!("no certificate in {ca_name} can be a trust anchor"));
    }
    let leaf = &bundle.certs[0];
    let intermediates: Vec<CertificateDer<'_>> =
        bundle.certs[1..].iter().map(|c| c.der.clone()).collect();
    let time = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let ee = webpki::EndEntityCert::try_from(&leaf.der).map_err(|e| reason(&e))?;
    let verify = |usage: webpki::KeyUsage| {
        ee.verify_for_usage(
            &super::nist_p521::VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            usage,
            None,
            None,
        )
        .map(|_| ())
    };
    let result = match verify(webpki::KeyUsage::server_auth()) {
        Err(webpki::Error::RequiredEkuNotFoundContext(_)) => {
            verify(webpki::KeyUsage::client_auth())
        }
        other => other,
    };
    result.map_err(|err| broken_link(name, bundle, ca_name, ca, &err))
}

/// Follows the chain by issuer name from the leaf, to say which link is
/// missing or does not verify.
fn broken_link(
    name: &str,
    bundle: &Bundle,
    ca_name: &str,
    ca: &Bundle,
    err: &webpki::Error,
) -> String {
    let role = |i: usize| {
        if i == 0 {
            format!("the leaf ({})", bundle.cert_name(0))
        } else {
            format!("the intermediate {}", bundle.cert_name(i))
        }
    };
    let mut current = 0;
    let mut visited = vec![0];
    loop {
        let cert = &bundle.certs[current];
        if let Some(j) = ca.certs.iter().position(|c| c.subject == cert.issuer) {
            return format!(
                "{} names {} of {ca_name} as its issuer, but {}",
                role(current),
                ca.cert_name(j),
                reason(err)
            );
        }
        let next = bundle
            .certs
            .iter()
            .enumerate()
            .position(|(i, c)| !visited.contains(&i) && c.subject == cert.issuer);
        if let Some(i) = next {
            visited.push(i);
            current = i;
        } else {
            let hint = if bundle.certs.len() == 1 {
                format!(": issued by another CA, or an intermediate missing from {name}")
            } else {
                String::new()
            };
            return format!(
                "{} was issued by a CA that is neither in {ca_name} nor in {name}{hint}",
                role(current)
            );
        }
    }
}

/// webpki's verdict in words, without any certificate content.
fn reason(err: &webpki::Error) -> String {
    use webpki::Error as E;
    match err {
        E::InvalidSignatureForPublicKey => {
            "the signature does not verify with that CA's key (another CA with the same name?)"
                .to_owned()
        }
        E::UnknownIssuer => "no path to a trusted CA was found".to_owned(),
        E::CaUsedAsEndEntity => "the leaf is a CA certificate".to_owned(),
        E::EndEntityUsedAsCa => "a certificate that is not a CA signed another".to_owned(),
        E::CertExpired { .. } => "a certificate in the chain has expired".to_owned(),
        E::CertNotValidYet { .. } => "a certificate in the chain is not valid yet".to_owned(),
        E::RequiredEkuNotFoundContext(_) => {
            "the leaf's extended key usage allows neither TLS server nor client use".to_owned()
        }
        E::PathLenConstraintViolated => "a CA's path length limit is exceeded".to_owned(),
        other => {
            // Only the variant's name: its fields may hold names from the certificate.
            let debug = format!("{other:?}");
            let variant: String = debug
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            format!("the chain is invalid ({variant})")
        }
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A certificate time, RFC 3339 in UTC.
fn show_time(secs: i64) -> String {
    u64::try_from(secs).map_or_else(
        |_| format!("{secs} s since 1970"),
        |s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string(),
    )
}

fn show_secs(secs: i64) -> String {
    humantime::format_duration(Duration::from_secs(secs.unsigned_abs())).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{check, TlsPolicy};
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    };
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const DAY: i64 = 86_400;

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn leaf_params(from: i64, until: i64) -> CertificateParams {
        let mut p = CertificateParams::new(vec!["app.test".into()]).unwrap();
        p.not_before = at(from);
        p.not_after = at(until);
        p
    }

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = at(0);
        p.not_after = at(4_000_000_000);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }
    const NOW: i64 = 1_800_000_000;

    fn classes(files: &[(&str, &str)], policy: &TlsPolicy) -> Vec<String> {
        let bytes: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_bytes())).collect();
        check(&bytes, policy, now())
            .problems
            .iter()
            .map(|p| format!("{} {:?}", p.subject, p.kind))
            .collect()
    }

    #[test]
    fn validity_table() {
        let key = KeyPair::generate().unwrap();
        let pem = |from, until| leaf_params(from, until).self_signed(&key).unwrap().pem();
        let hour = TlsPolicy {
            min_validity: Duration::from_secs(3600),
            ..TlsPolicy::default()
        };
        let none = TlsPolicy::default();
        let table: &[(i64, i64, &TlsPolicy, &[&str])] = &[
            (NOW - DAY, NOW + DAY, &none, &[]),
            (NOW - DAY, NOW - 1, &none, &["c Expired"]),
            (NOW + 5, NOW + DAY, &none, &["c NotYetValid"]),
            (NOW - DAY, NOW + 600, &none, &[]),
            (NOW - DAY, NOW + 600, &hour, &["c ExpiresSoon"]),
            (NOW - DAY, NOW + 7200, &hour, &[]),
        ];
        for (from, until, policy, want) in table {
            let got = classes(&[("c", &pem(*from, *until))], policy);
            assert_eq!(&got, want, "{from} {until}");
        }
    }

    #[test]
    fn next_change_is_the_nearest_instant() {
        let key = KeyPair::generate().unwrap();
        let soon = leaf_params(NOW + 3, NOW + DAY)
            .self_signed(&key)
            .unwrap()
            .pem();
        let r = check(&[("c", soon.as_bytes())], &TlsPolicy::default(), now());
        let d = r.next_change.unwrap();
        assert!(
            d >= Duration::from_secs(3) && d < Duration::from_secs(4),
            "{d:?}"
        );

        let short = leaf_params(NOW - DAY, NOW + 7200)
            .self_signed(&key)
            .unwrap()
            .pem();
        let policy = TlsPolicy {
            min_validity: Duration::from_secs(3600),
            ..TlsPolicy::default()
        };
        let r = check(&[("c", short.as_bytes())], &policy, now());
        assert!(r.problems.is_empty());
        let d = r.next_change.unwrap();
        assert!(
            d > Duration::from_secs(3600) && d < Duration::from_secs(3602),
            "{d:?}"
        );

        let far = leaf_params(NOW + 400 * DAY, NOW + 800 * DAY)
            .self_signed(&key)
            .unwrap()
            .pem();
        let r = check(&[("c", far.as_bytes())], &TlsPolicy::default(), now());
        assert!(r.next_change.unwrap() <= Duration::from_secs(86_401));
    }

    /// (name, content) of each file.
    type Files<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn pairs_table() {
        let k1 = KeyPair::generate().unwrap();
        let k2 = KeyPair::generate().unwrap();
        let c1 = leaf_params(NOW - DAY, NOW + DAY)
            .self_signed(&k1)
            .unwrap()
            .pem();
        let (p1, p2) = (k1.serialize_pem(), k2.serialize_pem());
        let pairs = TlsPolicy {
            pairs: vec![("tls.crt".into(), "tls.key".into())],
            ..TlsPolicy::default()
        };
        let combined_bad = format!("{c1}{p2}");
        let table: &[(Files, &TlsPolicy, &[&str])] = &[
            (&[("tls.crt", &c1), ("tls.key", &p1)], &pairs, &[]),
            (
                &[("tls.crt", &c1), ("tls.key", &p2)],
                &pairs,
                &["tls.key KeyMismatch"],
            ),
            (
                &[("tls.crt", &c1), ("tls.key", &c1)],
                &pairs,
                &["tls.key NoKey"],
            ),
            (
                &[("tls.crt", &p1), ("tls.key", &p1)],
                &pairs,
                &["tls.crt NoCertificate"],
            ),
            // The key file not parsed (yet): its own problem says so.
            (&[("tls.crt", &c1)], &pairs, &[]),
            (
                &[("a.pem", &format!("{p1}{c1}"))],
                &TlsPolicy::default(),
                &[],
            ),
            (
                &[("a.pem", &combined_bad)],
                &TlsPolicy::default(),
                &["a.pem KeyMismatch"],
            ),
        ];
        for (files, policy, want) in table {
            assert_eq!(&classes(files, policy), want, "{files:?}");
        }
    }

    #[test]
    fn chain_table() {
        let root = ca("Root");
        let other = ca("Other");
        let inter = {
            let mut p = CertificateParams::default();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "Inter");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            p.not_before = at(0);
            p.not_after = at(4_000_000_000);
            CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root).unwrap()
        };
        let key = KeyPair::generate().unwrap();
        let leaf = |issuer: &CertifiedIssuer<'static, KeyPair>| {
            leaf_params(NOW - DAY, NOW + DAY)
                .signed_by(&key, issuer)
                .unwrap()
                .pem()
        };
        let policy = TlsPolicy {
            ca_file: Some("ca.crt".into()),
            ..TlsPolicy::default()
        };
        let with_inter = format!("{}{}", leaf(&inter), inter.pem());
        let root_pem = root.pem();
        let shown = |files: &[(&str, &str)]| {
            let bytes: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_bytes())).collect();
            check(&bytes, &policy, now())
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert!(shown(&[("tls.crt", &leaf(&root)), ("ca.crt", &root_pem)]).is_empty());
        assert!(shown(&[("tls.crt", &with_inter), ("ca.crt", &root_pem)]).is_empty());
        let got = shown(&[("tls.crt", &leaf(&inter)), ("ca.crt", &root_pem)]);
        assert_eq!(
            got,
            ["tls.crt: does not chain to --ca-file ca.crt: the leaf (certificate) was issued by \
              a CA that is neither in ca.crt nor in tls.crt: issued by another CA, or an \
              intermediate missing from tls.crt"]
        );
        let got = shown(&[("tls.crt", &leaf(&other)), ("ca.crt", &root_pem)]);
        assert_eq!(got.len(), 1, "{got:?}");
        // Same name, different key: the signature is what fails.
        let impostor = ca("Root");
        let got = shown(&[("tls.crt", &leaf(&impostor)), ("ca.crt", &root_pem)]);
        assert!(got[0].contains("the signature does not verify"), "{got:?}");
    }
}
