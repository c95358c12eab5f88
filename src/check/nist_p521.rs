//! ECDSA on NIST P-521, which ring (the gate's crypto provider) neither
//! verifies nor loads: the pure-Rust `p521` crate fills that one gap.
//!
//! - [`VERIFICATION_ALGS`]: every algorithm webpki verifies with ring, plus
//!   ECDSA P-521 with SHA-256, SHA-384 and SHA-512, so a chain whose issuer
//!   signs with a P-521 key (a Kubernetes pod-certificate signer may) is
//!   verified like any other.
//! - [`public_key`]: the public half (as a DER `SubjectPublicKeyInfo`) of a
//!   P-521 private key, PKCS#8 or SEC1, for the key-pair check.
//!
//! Only public data leaves this module; the secret scalar is zeroized by
//! `p521` when dropped.

use std::sync::LazyLock;

use p521::ecdsa::signature::hazmat::PrehashVerifier;
use p521::ecdsa::{Signature, VerifyingKey};
use rustls::pki_types::SignatureVerificationAlgorithm;
use rustls::pki_types::{alg_id, AlgorithmIdentifier, InvalidSignature};
use sha2::Digest;

/// Which hash an ECDSA P-521 signature is over.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// ECDSA with a P-521 key and one hash, for webpki.
#[derive(Debug)]
struct EcdsaP521(Hash);

impl SignatureVerificationAlgorithm for EcdsaP521 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature = Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        let digest: Vec<u8> = match self.0 {
            Hash::Sha256 => sha2::Sha256::digest(message).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(message).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(message).to_vec(),
        };
        // A digest shorter than the curve is taken as a number as it is
        // (FIPS 186-5 6.4.2); `p521` wants at least half the 66-byte field
        // (SHA-256 is 32 bytes), so pad on the left to the field size,
        // which leaves the number unchanged.
        let mut prehash = vec![0u8; 66usize.saturating_sub(digest.len())];
        prehash.extend_from_slice(&digest);
        key.verify_prehash(&prehash, &signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match self.0 {
            Hash::Sha256 => alg_id::ECDSA_SHA256,
            Hash::Sha384 => alg_id::ECDSA_SHA384,
            Hash::Sha512 => alg_id::ECDSA_SHA512,
        }
    }
}

static P521_SHA256: EcdsaP521 = EcdsaP521(Hash::Sha256);
static P521_SHA384: EcdsaP521 = EcdsaP521(Hash::Sha384);
static P521_SHA512: EcdsaP521 = EcdsaP521(Hash::Sha512);

/// webpki's ring algorithms and the P-521 ones: what a chain is verified
/// with.
pub static VERIFICATION_ALGS: LazyLock<Vec<&'static dyn SignatureVerificationAlgorithm>> =
    LazyLock::new(|| {
        let mut algs: Vec<&'static dyn SignatureVerificationAlgorithm> =
            webpki::ALL_VERIFICATION_ALGS.to_vec();
        algs.extend([
            &P521_SHA512 as &dyn SignatureVerificationAlgorithm,
            &P521_SHA384,
            &P521_SHA256,
        ]);
        algs
    });

/// The DER `SubjectPublicKeyInfo` of a P-521 private key in PKCS#8 or
/// SEC1 DER; `None` if it is not one.
#[must_use]
pub fn public_key(der: &[u8]) -> Option<Vec<u8>> {
    use p521::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let secret = p521::SecretKey::from_pkcs8_der(der)
        .or_else(|_| p521::SecretKey::from_sec1_der(der))
        .ok()?;
    let spki = secret.public_key().to_public_key_der().ok()?;
    Some(spki.as_bytes().to_vec())
}
