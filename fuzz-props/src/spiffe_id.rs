//! VSecM's SPIFFE-ID rule: a prefix variable is a regular expression when
//! it starts with `^spiffe://<trust domain>/`, a literal prefix otherwise.
//!
//! The input is NUL-separated: the variable's value, the trust domain,
//! then the IDs to match.

use secret_gate::spiffe_id::SpiffeIdMatcher;

use crate::{limited, split_nul};

/// The property.
pub fn spiffe_id(data: &[u8]) {
    limited(|| check_rule(data));
}

fn check_rule(data: &[u8]) {
    let parts: Vec<String> = split_nul(data, 8)
        .into_iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let (Some(prefix), Some(domain)) = (parts.first(), parts.get(1)) else {
        return;
    };
    let ids = &parts[2..];
    match SpiffeIdMatcher::new("VSECM_SPIFFEID_PREFIX_SAFE", prefix, domain) {
        Err(err) => assert!(!err.to_string().is_empty()),
        Ok(matcher) => {
            let described = matcher.describe();
            let literal = described.starts_with("prefix ");
            for id in ids {
                let hit = matcher.matches(id);
                if literal {
                    assert_eq!(
                        hit,
                        id.starts_with(prefix.trim()),
                        "a literal prefix rule must match exactly the IDs that start with it"
                    );
                } else {
                    assert!(
                        prefix.trim().starts_with(&format!("^spiffe://{domain}/")),
                        "a rule not starting ^spiffe://<trust domain>/ was read as a regex"
                    );
                }
            }
        }
    }
}
