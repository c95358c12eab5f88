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

/// The key types a Kubernetes `podCertificate` projection may ask for
/// (KEP-4317's `keyType`), made with openssl: `ring` (and so rcgen) can
/// neither generate nor sign with P-521, and openssl is what a user would
/// check such files with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodKeyType {
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
}

impl PodKeyType {
    pub const ALL: [Self; 6] = [
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::Ed25519,
    ];

    /// The `keyType` value of the projection.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rsa3072 => "RSA3072",
            Self::Rsa4096 => "RSA4096",
            Self::EcdsaP256 => "ECDSAP256",
            Self::EcdsaP384 => "ECDSAP384",
            Self::EcdsaP521 => "ECDSAP521",
            Self::Ed25519 => "ED25519",
        }
    }

    fn genpkey(self) -> &'static [&'static str] {
        match self {
            Self::Rsa3072 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            Self::Rsa4096 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            Self::EcdsaP256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Self::EcdsaP384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Self::EcdsaP521 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            Self::Ed25519 => &["-algorithm", "ED25519"],
        }
    }

    /// The digest a signer with this key signs with, as Go's crypto/x509
    /// picks it (none for Ed25519).
    fn digest(self) -> &'static [&'static str] {
        match self {
            Self::Rsa3072 | Self::Rsa4096 | Self::EcdsaP256 => &["-sha256"],
            Self::EcdsaP384 => &["-sha384"],
            Self::EcdsaP521 => &["-sha512"],
            Self::Ed25519 => &[],
        }
    }
}

/// Runs `openssl ARGS` in `dir`, returning stdout; panics with stderr on
/// failure.
pub fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("openssl prints text")
}

/// A new private key of `kind`, PKCS#8 PEM (`PRIVATE KEY`), as the kubelet
/// writes it.
#[must_use]
pub fn pod_key(dir: &std::path::Path, kind: PodKeyType) -> String {
    let mut args = vec!["genpkey"];
    args.extend(kind.genpkey());
    openssl(dir, &args)
}

/// A pod-certificate signer made with openssl: a self-signed CA whose key
/// is of `kind`, kept in its own directory.
pub struct PodSigner {
    dir: std::path::PathBuf,
    pub kind: PodKeyType,
    /// The digest it signs with (`-sha512`), or none (Ed25519).
    digest: &'static [&'static str],
    /// The CA certificate, PEM: what a `clusterTrustBundle` carries.
    pub ca_pem: String,
}

impl PodSigner {
    #[must_use]
    pub fn new(parent: &std::path::Path, name: &str, kind: PodKeyType) -> Self {
        Self::with_digest(parent, name, kind, kind.digest())
    }

    /// A signer that signs with `digest` (e.g. `["-sha256"]`) rather than
    /// the one Go would pick for its key.
    #[must_use]
    pub fn with_digest(
        parent: &std::path::Path,
        name: &str,
        kind: PodKeyType,
        digest: &'static [&'static str],
    ) -> Self {
        let dir = parent.join(format!("signer-{name}"));
        std::fs::create_dir_all(&dir).expect("signer directory");
        std::fs::write(dir.join("ca.key"), pod_key(&dir, kind)).expect("write the CA key");
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-x509", "-new", "-key", "ca.key"];
        args.extend(digest);
        args.extend([
            "-subj",
            &subject,
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out",
            "ca.crt",
        ]);
        openssl(&dir, &args);
        let ca_pem = std::fs::read_to_string(dir.join("ca.crt")).expect("read the CA");
        Self {
            dir,
            kind,
            digest,
            ca_pem,
        }
    }

    /// A leaf for `key_pem` (PKCS#8 PEM), valid from now for `days`, with
    /// the client-auth usage pod certificates carry; PEM.
    #[must_use]
    pub fn issue(&self, key_pem: &str, days: u32) -> String {
        std::fs::write(self.dir.join("leaf.key"), key_pem).expect("write the leaf key");
        std::fs::write(
            self.dir.join("leaf.ext"),
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        )
        .expect("write the extensions");
        openssl(
            &self.dir,
            &[
                "req", "-new", "-key", "leaf.key", "-subj", "/CN=pod", "-out", "leaf.csr",
            ],
        );
        let days = days.to_string();
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "leaf.ext",
            "-days",
            &days,
            "-out",
            "leaf.crt",
        ];
        args.extend(self.digest);
        openssl(&self.dir, &args);
        std::fs::read_to_string(self.dir.join("leaf.crt")).expect("read the leaf")
    }
}
