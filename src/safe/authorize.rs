//! Which SPIFFE IDs count as VSecM Safe, by VSecM's own rule.

use regex::Regex;

/// Matches the Safe's SPIFFE ID against `VSECM_SPIFFEID_PREFIX_SAFE`.
///
/// VSecM's rule: a value that starts with `^spiffe://<trust domain>/` is a
/// regular expression; anything else is a literal string prefix.
#[derive(Debug, Clone)]
pub enum SafeIdMatcher {
    Regex(Regex),
    Prefix(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("VSECM_SPIFFEID_PREFIX_SAFE is empty: set it to the Safe's SPIFFE ID prefix or regex")]
    Empty,
    #[error("VSECM_SPIFFEID_PREFIX_SAFE is not a valid regular expression: {0}")]
    BadRegex(String),
}

impl SafeIdMatcher {
    pub fn new(prefix: &str, trust_domain: &str) -> Result<Self, MatcherError> {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(MatcherError::Empty);
        }
        if prefix.starts_with(&format!("^spiffe://{trust_domain}/")) {
            Regex::new(prefix)
                .map(Self::Regex)
                .map_err(|e| MatcherError::BadRegex(e.to_string()))
        } else {
            Ok(Self::Prefix(prefix.to_owned()))
        }
    }

    #[must_use]
    pub fn matches(&self, id: &str) -> bool {
        match self {
            Self::Regex(re) => re.is_match(id),
            Self::Prefix(p) => id.starts_with(p.as_str()),
        }
    }

    /// The rule as text, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Regex(re) => format!("regex {}", re.as_str()),
            Self::Prefix(p) => format!("prefix {p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::SafeIdMatcher;

    const SAFE: &str =
        "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/vsecm-safe-0";
    const EVIL: &str = "spiffe://vsecm.com/workload/evil/ns/default/sa/evil/n/evil-0";

    #[test]
    fn vsecm_rule_table() {
        let default_regex =
            "^spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/[^/]+$";
        let literal = "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/";
        // (prefix, trust domain, id, matches)
        let table = [
            (default_regex, "vsecm.com", SAFE, true),
            (default_regex, "vsecm.com", EVIL, false),
            (default_regex, "vsecm.com", &format!("{SAFE}/extra"), false),
            (literal, "vsecm.com", SAFE, true),
            (literal, "vsecm.com", EVIL, false),
            // A regex-looking value for another trust domain is a literal.
            (default_regex, "example.org", SAFE, false),
            // Perl classes work in user regexes.
            (
                r"^spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/vsecm-safe-\d+$",
                "vsecm.com",
                SAFE,
                true,
            ),
        ];
        for (prefix, td, id, want) in table {
            let m = SafeIdMatcher::new(prefix, td).unwrap();
            assert_eq!(m.matches(id), want, "{prefix} {td} {id}");
        }
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(SafeIdMatcher::new("", "vsecm.com").is_err());
        assert!(SafeIdMatcher::new("^spiffe://vsecm.com/(", "vsecm.com").is_err());
    }
}
