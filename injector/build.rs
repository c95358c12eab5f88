//! The injector's default gate image: this release's, by tag, or by digest
//! when `SECRET_GATE_IMAGE_DIGEST` (`sha256:` and 64 hex digits) is set at
//! build time, as the release workflow does once the gate's image is
//! pushed. A malformed digest fails the build rather than ship an image
//! reference that cannot be pulled.

fn main() {
    println!("cargo:rerun-if-env-changed=SECRET_GATE_IMAGE_DIGEST");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let mut image = format!("ghcr.io/secret-gate/secret-gate:{version}");
    if let Ok(digest) = std::env::var("SECRET_GATE_IMAGE_DIGEST") {
        if !digest.is_empty() {
            let hex = digest.strip_prefix("sha256:").unwrap_or_default();
            let valid = hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            assert!(
                valid,
                "SECRET_GATE_IMAGE_DIGEST is {digest:?}: give sha256: and 64 lower-case hex digits"
            );
            image = format!("{image}@{digest}");
        }
    }
    println!("cargo:rustc-env=SECRET_GATE_DEFAULT_IMAGE={image}");
}
