//! Which SPIFFE IDs count as VSecM Safe, by VSecM's own rule.

use regex::Regex;

/// VSecM's default `VSECM_SPIFFEID_PREFIX_WORKLOAD`: which SPIFFE IDs count
/// as VSecM workloads (`--workload-spiffeid-prefix`'s default). The fake
/// Safe (`fake-safe/`) accepts the same clients, in its own trust domain.
pub const DEFAULT_WORKLOAD_SPIFFEID_PREFIX: &str =
    "^spiffe://vsecm.com/workload/[^/]+/ns/[^/]+/sa/[^/]+/n/[^/]+$";

/// Matches a SPIFFE ID against one of VSecM's prefix variables
/// (`VSECM_SPIFFEID_PREFIX_SAFE`, `VSECM_SPIFFEID_PREFIX_WORKLOAD`).
///
/// VSecM's rule: a value that starts with `^spiffe://<trust domain>/` is a
/// regular expression; anything else is a literal string prefix.
#[derive(Debug, Clone)]
pub struct SafeIdMatcher {
    /// The variable the rule came from, for messages.
    pub variable: &'static str,
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Regex(Regex),
    Prefix(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("{0} is empty: set it to a SPIFFE ID prefix or regex")]
    Empty(&'static str),
    #[error("{0} is not a valid regular expression: {1}")]
    BadRegex(&'static str, String),
}

impl SafeIdMatcher {
    pub fn new(
        variable: &'static str,
        prefix: &str,
        trust_domain: &str,
    ) -> Result<Self, MatcherError> {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(MatcherError::Empty(variable));
        }
        let rule = if prefix.starts_with(&format!("^spiffe://{trust_domain}/")) {
            Rule::Regex(
                Regex::new(prefix).map_err(|e| MatcherError::BadRegex(variable, e.to_string()))?,
            )
        } else {
            Rule::Prefix(prefix.to_owned())
        };
        Ok(Self { variable, rule })
    }

    #[must_use]
    pub fn matches(&self, id: &str) -> bool {
        match &self.rule {
            Rule::Regex(re) => re.is_match(id),
            Rule::Prefix(p) => id.starts_with(p.as_str()),
        }
    }

    /// The rule as text, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.rule {
            Rule::Regex(re) => format!("regex {}", re.as_str()),
            Rule::Prefix(p) => format!("prefix {p}"),
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
            let m = SafeIdMatcher::new("VSECM_SPIFFEID_PREFIX_SAFE", prefix, td).unwrap();
            assert_eq!(m.matches(id), want, "{prefix} {td} {id}");
        }
    }

    #[test]
    fn bad_input_is_rejected() {
        let v = "VSECM_SPIFFEID_PREFIX_SAFE";
        assert!(SafeIdMatcher::new(v, "", "vsecm.com").is_err());
        assert!(SafeIdMatcher::new(v, "^spiffe://vsecm.com/(", "vsecm.com").is_err());
    }
}
