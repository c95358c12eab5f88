//! The fake's PKI, generated fresh on every start with rcgen: a CA for the
//! trust domain, the workload's X.509-SVID and the Safe's server SVID.
//!
//! The shapes follow what SPIRE issues and what the spiffe crate accepts:
//! the CA has `BasicConstraints` CA and the URI SAN `spiffe://<td>`; each
//! leaf has `BasicConstraints` `CA:false` (spiffe rejects a leaf without it),
//! the `DigitalSignature` key usage, the `ServerAuth` and `ClientAuth` EKUs
//! and exactly one URI SAN.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// One leaf certificate and its key.
pub(crate) struct Leaf {
    /// The SPIFFE ID in the URI SAN.
    pub spiffe_id: String,
    /// The leaf, DER.
    pub cert: CertificateDer<'static>,
    /// The key, PKCS#8 DER.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Leaf {
    /// The key in the form rustls takes.
    pub fn rustls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// Everything `serve` needs.
pub(crate) struct Pki {
    /// The trust domain's CA: the bundle handed out and trusted for clients.
    pub ca: CertificateDer<'static>,
    /// The CA in PEM, for `bundle.pem`.
    pub ca_pem: String,
    /// The workload's SVID, handed out by the Workload API.
    pub workload: Leaf,
    /// The Safe's server certificate.
    pub safe: Leaf,
    /// The CA's key, to issue the workload a new SVID when the agent
    /// restarts.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new SVID for the same workload ID, signed by the same CA, valid
    /// until `not_after` (`None`: rcgen's far-off default).
    pub fn reissue_workload(
        &self,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<Leaf, rcgen::Error> {
        issue_leaf(
            &self.issuer,
            &self.workload.spiffe_id,
            "fake-safe workload",
            false,
            not_after,
        )
    }
}

/// What to issue.
pub(crate) struct PkiSpec<'a> {
    pub trust_domain: &'a str,
    pub workload_id: &'a str,
    pub safe_id: &'a str,
    /// Sign the Safe's certificate with a second CA that is not in the
    /// bundle, so clients must reject it.
    pub safe_signed_by_untrusted_ca: bool,
    /// When the workload SVID expires (`None`: rcgen's far-off default).
    pub workload_not_after: Option<std::time::SystemTime>,
}

/// Issues the CA and both leaves.
pub(crate) fn generate(spec: &PkiSpec<'_>) -> Result<Pki, rcgen::Error> {
    let ca = new_ca(spec.trust_domain, "fake-safe CA")?;
    let workload = issue_leaf(
        &ca,
        spec.workload_id,
        "fake-safe workload",
        false,
        spec.workload_not_after,
    )?;
    let safe = if spec.safe_signed_by_untrusted_ca {
        let rogue = new_ca(spec.trust_domain, "fake-safe untrusted CA")?;
        issue_leaf(&rogue, spec.safe_id, "fake-safe safe", true, None)?
    } else {
        issue_leaf(&ca, spec.safe_id, "fake-safe safe", true, None)?
    };
    Ok(Pki {
        ca: ca.der().clone(),
        ca_pem: ca.pem(),
        workload,
        safe,
        issuer: ca,
    })
}

fn new_ca(
    trust_domain: &str,
    name: &str,
) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "secret-gate fake-safe");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

fn issue_leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    spiffe_id: &str,
    name: &str,
    server_names: bool,
    not_after: Option<std::time::SystemTime>,
) -> Result<Leaf, rcgen::Error> {
    let mut params = CertificateParams::default();
    if let Some(at) = not_after {
        // Valid from a minute before now, so only the end matters.
        params.not_before =
            (std::time::SystemTime::now() - std::time::Duration::from_secs(60)).into();
        params.not_after = at.into();
    }
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "secret-gate fake-safe");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
    if server_names {
        // Convenience only: clients must authorise the Safe by SPIFFE ID.
        params
            .subject_alt_names
            .push(SanType::DnsName("localhost".try_into()?));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(Leaf {
        spiffe_id: spiffe_id.to_owned(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const TD: &str = "vsecm.com";
    const WORKLOAD: &str = "spiffe://vsecm.com/workload/example/ns/default/sa/example/n/pod";
    const SAFE: &str =
        "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/vsecm-safe-0";

    fn pki(untrusted: bool) -> Pki {
        generate(&PkiSpec {
            trust_domain: TD,
            workload_id: WORKLOAD,
            safe_id: SAFE,
            safe_signed_by_untrusted_ca: untrusted,
            workload_not_after: None,
        })
        .unwrap()
    }

    #[test]
    fn the_spiffe_crate_accepts_the_workload_svid() {
        let pki = pki(false);
        let svid = spiffe::X509Svid::parse_from_der(
            &pki.workload.cert,
            pki.workload.key.secret_pkcs8_der(),
        )
        .unwrap();
        assert_eq!(svid.spiffe_id().to_string(), WORKLOAD);
        let bundle =
            spiffe::X509Bundle::parse_from_der(spiffe::TrustDomain::new(TD).unwrap(), &pki.ca)
                .unwrap();
        assert_eq!(bundle.authorities().len(), 1);
        assert_eq!(
            spiffe::cert::spiffe_id_from_der(&pki.safe.cert)
                .unwrap()
                .to_string(),
            SAFE
        );
    }

    #[test]
    fn leaves_chain_to_the_ca_unless_untrusted() {
        for (untrusted, ok) in [(false, true), (true, false)] {
            let pki = pki(untrusted);
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                rustls::crypto::ring::default_provider().into(),
            )
            .build()
            .unwrap();
            let now = rustls::pki_types::UnixTime::now();
            assert!(verifier
                .verify_client_cert(&pki.workload.cert, &[], now)
                .is_ok());
            assert_eq!(
                verifier
                    .verify_client_cert(&pki.safe.cert, &[], now)
                    .is_ok(),
                ok
            );
        }
    }
}
