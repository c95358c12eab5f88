//! The `pem` format: PEM blocks, X.509 certificates and private keys.
//!
//! [`parse_bundle`] splits a file into its PEM blocks, decodes each with
//! `rustls-pki-types`, parses certificates with `x509-parser` and loads
//! private keys with rustls' ring provider, which also yields the key's
//! public half for pair checks. What it keeps is public: validity times,
//! whether a certificate is a CA, and public keys (SPKI). Private key
//! bytes are dropped (and zeroized by `rustls-pki-types`) once loaded.
//!
//! Errors name a block number and what is wrong with it; they never quote
//! the data. The cross-file checks (validity against the clock, key pairs,
//! the chain to `--ca-file`) are in [`super::tls`].

use std::fmt;

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

/// What `auto` resolves to `pem` for.
pub const EXTENSIONS: &[&str] = &["pem", "crt", "cer", "key"];

/// One parsed X.509 certificate: only what the checks need.
#[derive(Clone, PartialEq, Eq)]
pub struct Cert {
    /// 1-based PEM block number in its file.
    pub block: usize,
    /// The whole certificate, DER (public data), for chain verification.
    pub der: CertificateDer<'static>,
    /// `notBefore` and `notAfter`, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// The DER `SubjectPublicKeyInfo`.
    pub spki: Vec<u8>,
    /// The raw DER subject and issuer names, to follow a chain by name.
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
}

impl fmt::Debug for Cert {
    // No body, no serial, no names: only what messages may show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert")
            .field("block", &self.block)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("is_ca", &self.is_ca)
            .finish_non_exhaustive()
    }
}

/// One private key: its block and, when the gate can load its algorithm
/// (ring's, and ECDSA P-521), its public key. Never the private bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub block: usize,
    /// `None` for a well-formed key of an algorithm the gate cannot load
    /// (RSA under 2048 or over 4096 bits, other curves): its pair cannot be
    /// checked.
    pub spki: Option<Vec<u8>>,
}

/// The certificates and keys of one PEM file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    pub certs: Vec<Cert>,
    pub keys: Vec<Key>,
}

impl Bundle {
    /// "certificate" when the file holds one, "certificate 2 of 3" (by
    /// order among the certificates) otherwise.
    #[must_use]
    pub fn cert_name(&self, index: usize) -> String {
        if self.certs.len() == 1 {
            "certificate".to_owned()
        } else {
            format!("certificate {} of {}", index + 1, self.certs.len())
        }
    }
}

/// Why a PEM file is not (yet) valid. Never carries file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("holds no PEM block (no -----BEGIN line)")]
    NoBlocks,
    #[error("holds no certificate or private key block")]
    NothingUseful,
    #[error("PEM block {block} of {of} ends early")]
    Truncated { block: usize, of: usize },
    #[error("PEM block {block} of {of} has a malformed -----BEGIN line")]
    BadBegin { block: usize, of: usize },
    #[error("PEM block {block} of {of} is not valid base64")]
    BadBase64 { block: usize, of: usize },
    #[error("PEM block {block} of {of} (CERTIFICATE) is not a valid X.509 certificate")]
    BadCertificate { block: usize, of: usize },
    #[error("PEM block {block} of {of} ({label}) is not a valid private key")]
    BadKey {
        block: usize,
        of: usize,
        label: &'static str,
    },
}

impl PemError {
    /// True when a writer still at work could explain it.
    #[must_use]
    pub const fn maybe_partial(&self) -> bool {
        matches!(
            self,
            Self::NoBlocks | Self::Truncated { .. } | Self::BadBegin { .. }
        )
    }
}

const BEGIN: &[u8] = b"-----BEGIN ";

/// Splits `bytes` at every line that starts with `-----BEGIN `: each
/// piece holds one block (and whatever text follows its END line).
fn split_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(BEGIN) {
            starts.push(at);
        }
        match bytes[at..].iter().position(|b| *b == b'\n') {
            Some(newline) => at += newline + 1,
            None => break,
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, start)| &bytes[*start..starts.get(i + 1).copied().unwrap_or(bytes.len())])
        .collect()
}

const fn label(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        _ => "other",
    }
}

/// Parses every block of a PEM file. Blocks with other labels (`EC
/// PARAMETERS`, `X509 CRL`, ...) are allowed and skipped; text outside
/// blocks is ignored, as RFC 7468 allows.
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle, PemError> {
    let pieces = split_blocks(bytes);
    let of = pieces.len();
    if of == 0 {
        return Err(PemError::NoBlocks);
    }
    let mut bundle = Bundle::default();
    for (index, piece) in pieces.into_iter().enumerate() {
        let block = index + 1;
        let section = match <(SectionKind, Vec<u8>)>::pem_slice_iter(piece).next() {
            // A well-formed block with a label rustls-pki-types does not know.
            None => continue,
            Some(Ok(section)) => section,
            Some(Err(pem::Error::MissingSectionEnd { .. })) => {
                return Err(PemError::Truncated { block, of })
            }
            Some(Err(pem::Error::IllegalSectionStart { .. })) => {
                return Err(PemError::BadBegin { block, of })
            }
            Some(Err(_)) => return Err(PemError::BadBase64 { block, of }),
        };
        match section {
            (SectionKind::Certificate, der) => {
                let cert = parse_cert(block, der).ok_or(PemError::BadCertificate { block, of })?;
                bundle.certs.push(cert);
            }
            (
                kind @ (SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey),
                der,
            ) => {
                let spki = load_key(kind, der).map_err(|NotAKey| PemError::BadKey {
                    block,
                    of,
                    label: label(kind),
                })?;
                bundle.keys.push(Key { block, spki });
            }
            _ => {}
        }
    }
    if bundle.certs.is_empty() && bundle.keys.is_empty() {
        return Err(PemError::NothingUseful);
    }
    Ok(bundle)
}

fn parse_cert(block: usize, der: Vec<u8>) -> Option<Cert> {
    let fields = {
        let (rest, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let validity = cert.validity();
        (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
            cert.is_ca(),
            cert.public_key().raw.to_vec(),
            cert.subject().as_raw().to_vec(),
            cert.issuer().as_raw().to_vec(),
        )
    };
    let (not_before, not_after, is_ca, spki, subject, issuer) = fields;
    Some(Cert {
        block,
        der: CertificateDer::from(der),
        not_before,
        not_after,
        is_ca,
        spki,
        subject,
        issuer,
    })
}

/// A private-key block that holds no key.
struct NotAKey;

/// Loads a private key. `Ok(Some(spki))` when ring (or, for P-521,
/// [`super::nist_p521`]) loads it; `Ok(None)` when it is well-formed DER of
/// an algorithm neither supports.
fn load_key(kind: SectionKind, der: Vec<u8>) -> Result<Option<Vec<u8>>, NotAKey> {
    let key: PrivateKeyDer<'static> = match kind {
        SectionKind::RsaPrivateKey => PrivatePkcs1KeyDer::from(der).into(),
        SectionKind::EcPrivateKey => PrivateSec1KeyDer::from(der).into(),
        _ => PrivatePkcs8KeyDer::from(der).into(),
    };
    if let Ok(signing) = rustls::crypto::ring::sign::any_supported_type(&key) {
        return Ok(signing.public_key().map(|spki| spki.as_ref().to_vec()));
    }
    // ECDSA P-521, which ring cannot load (a pod certificate's ECDSAP521).
    if let Some(spki) = super::nist_p521::public_key(key.secret_der()) {
        return Ok(Some(spki));
    }
    // Not loadable by ring: accept it if it is one complete DER SEQUENCE.
    let der = key.secret_der();
    match x509_parser::der_parser::parse_der(der) {
        Ok((rest, obj)) if rest.is_empty() && obj.as_sequence().is_ok_and(|s| s.len() >= 2) => {
            Ok(None)
        }
        _ => Err(NotAKey),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{parse_bundle, split_blocks, PemError};
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};

    fn cert_and_key(alg: &'static rcgen::SignatureAlgorithm) -> (String, String, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let cert = CertificateParams::new(vec!["example.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), key)
    }

    #[test]
    fn blocks_split_at_begin_lines() {
        let text = b"junk\n-----BEGIN A-----\nx\n-----END A-----\n-----BEGIN B-----\ny";
        let got = split_blocks(text);
        assert_eq!(got.len(), 2);
        assert!(got[1].ends_with(b"y"));
        assert!(split_blocks(b"no markers").is_empty());
    }

    /// (certificates, keys) found, or the error.
    type Counts = Result<(usize, usize), PemError>;

    #[test]
    fn bundle_table() {
        let (cert, key, _) = cert_and_key(&PKCS_ECDSA_P256_SHA256);
        let (cert2, key2, _) = cert_and_key(&PKCS_ED25519);
        let combined = format!("{cert}{key}");
        let half = &combined[..combined.len() - 40];
        let begin_cut = format!("{cert}-----BEGIN PRIV");
        let mut bad_b64 = cert.clone();
        bad_b64.replace_range(40..44, "!!!!");
        let not_x509 = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let not_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let params =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        let only_params = params.to_owned();
        let with_params = format!("{params}{key}");
        let explained = format!("subject=CN = x\n{cert}\n");
        let chain_and_key = format!("{cert}{cert2}{key2}");
        // (content, certs, keys) or the error
        let table: Vec<(&str, Counts)> = vec![
            (&cert, Ok((1, 0))),
            (&key, Ok((0, 1))),
            (&combined, Ok((1, 1))),
            (&chain_and_key, Ok((2, 1))),
            (&with_params, Ok((0, 1))),
            (&explained, Ok((1, 0))),
            ("just some text", Err(PemError::NoBlocks)),
            ("TUlJQmtUQ0NBVGVnQXdJQkFnSVVBZ", Err(PemError::NoBlocks)),
            (&only_params, Err(PemError::NothingUseful)),
            (half, Err(PemError::Truncated { block: 2, of: 2 })),
            (
                &cert[..cert.len() / 2],
                Err(PemError::Truncated { block: 1, of: 1 }),
            ),
            (&begin_cut, Err(PemError::BadBegin { block: 2, of: 2 })),
            (&bad_b64, Err(PemError::BadBase64 { block: 1, of: 1 })),
            (not_x509, Err(PemError::BadCertificate { block: 1, of: 1 })),
            (
                not_key,
                Err(PemError::BadKey {
                    block: 1,
                    of: 1,
                    label: "PRIVATE KEY",
                }),
            ),
        ];
        for (content, want) in table {
            let got = parse_bundle(content.as_bytes()).map(|b| (b.certs.len(), b.keys.len()));
            assert_eq!(got, want, "{content}");
        }
    }

    #[test]
    fn keys_yield_the_certificates_public_key() {
        for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ED25519] {
            let (cert, key, _) = cert_and_key(alg);
            let b = parse_bundle(format!("{key}{cert}").as_bytes()).unwrap();
            assert_eq!(b.keys[0].block, 1);
            assert_eq!(b.certs[0].block, 2);
            assert_eq!(b.keys[0].spki.as_deref(), Some(b.certs[0].spki.as_slice()));
        }
    }

    #[test]
    fn errors_never_quote_content() {
        let (_, key, _) = cert_and_key(&PKCS_ECDSA_P256_SHA256);
        let body_line = key.lines().nth(1).unwrap();
        for cut in [key.len() / 3, key.len() / 2, key.len() - 30] {
            let err = parse_bundle(&key.as_bytes()[..cut]).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&body_line[..16]), "{shown}");
        }
    }
}
