//! Test certificates and keys, generated at test time: rcgen for
//! certificates and ECDSA/Ed25519 keys, the rsa crate for RSA keys (ring
//! cannot generate them), in PKCS#8, PKCS#1 or SEC1 PEM.
//!
//! Include with `#[path = "common/pki.rs"] mod pki;`.
#![allow(dead_code)] // each user takes a part of these helpers
#![expect(
    clippy::expect_used,
    reason = "test fixtures: a certificate that cannot be made fails the calling test"
)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::PrivatePkcs8KeyDer;

/// A key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EcdsaP256,
    Ed25519,
    Rsa(usize),
}

/// How a private key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `PRIVATE KEY`
    Pkcs8,
    /// `RSA PRIVATE KEY` (RSA only)
    Pkcs1,
    /// `EC PRIVATE KEY` (ECDSA only)
    Sec1,
}

/// A key pair: what rcgen signs with, and its PKCS#8 DER.
pub struct Key {
    pub alg: Alg,
    pub pair: KeyPair,
    pkcs1_pem: Option<String>,
}

impl Key {
    #[must_use]
    pub fn new(alg: Alg) -> Self {
        match alg {
            Alg::EcdsaP256 => Self {
                alg,
                pair: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key"),
                pkcs1_pem: None,
            },
            Alg::Ed25519 => Self {
                alg,
                pair: KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key"),
                pkcs1_pem: None,
            },
            Alg::Rsa(bits) => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::EncodePrivateKey;
                let key =
                    rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).expect("RSA key");
                let pkcs8 = key.to_pkcs8_der().expect("RSA PKCS#8");
                let der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
                let pair = KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
                    .expect("rcgen takes the RSA key");
                let pkcs1 = key
                    .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                    .expect("RSA PKCS#1");
                Self {
                    alg,
                    pair,
                    pkcs1_pem: Some(pkcs1.as_str().to_owned()),
                }
            }
        }
    }

    /// The private key in PEM, in `encoding`.
    #[must_use]
    pub fn pem(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Pkcs8 => self.pair.serialize_pem(),
            Encoding::Pkcs1 => self.pkcs1_pem.clone().expect("PKCS#1 is for RSA keys"),
            Encoding::Sec1 => {
                // PKCS#8 wraps the SEC1 ECPrivateKey in its third field.
                let der = self.pair.serialize_der();
                let (_, info) = x509_parser::der_parser::parse_der(&der).expect("PKCS#8 DER");
                let fields = info.as_sequence().expect("PKCS#8 SEQUENCE");
                let sec1 = fields[2].as_slice().expect("privateKey OCTET STRING");
                pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.to_vec()))
            }
        }
    }
}

/// Now plus `secs` (negative for the past).
#[must_use]
pub fn from_now(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::seconds(secs)
}

/// A CA that can issue; `issuer` signs it, or it is self-signed.
#[must_use]
pub fn ca(
    name: &str,
    issuer: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = from_now(-3600);
    p.not_after = from_now(10 * 365 * 86_400);
    let key = KeyPair::generate().expect("CA key");
    match issuer {
        Some(issuer) => CertifiedIssuer::signed_by(p, key, issuer).expect("CA signed"),
        None => CertifiedIssuer::self_signed(p, key).expect("CA self-signed"),
    }
}

/// A leaf for `app.example.test`, valid from `from` to `until` seconds
/// from now, signed by `issuer` or self-signed; PEM.
#[must_use]
pub fn leaf(
    key: &Key,
    issuer: Option<&CertifiedIssuer<'static, KeyPair>>,
    from: i64,
    until: i64,
) -> String {
    let mut p = CertificateParams::new(vec!["app.example.test".into()]).expect("params");
    p.distinguished_name
        .push(DnType::CommonName, "app.example.test");
    p.is_ca = IsCa::ExplicitNoCa;
    p.not_before = from_now(from);
    p.not_after = from_now(until);
    match issuer {
        Some(issuer) => p.signed_by(&key.pair, issuer).expect("leaf signed").pem(),
        None => p.self_signed(&key.pair).expect("leaf self-signed").pem(),
    }
}

/// A leaf valid from an hour ago for 90 days.
#[must_use]
pub fn valid_leaf(key: &Key, issuer: Option<&CertifiedIssuer<'static, KeyPair>>) -> String {
    leaf(key, issuer, -3600, 90 * 86_400)
}
