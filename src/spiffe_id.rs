//! Which SPIFFE IDs a VSecM prefix variable allows, by VSecM's own rule.
//! Used for the Safe's ID in safe mode, and by the fake Safe for workload
//! IDs.
//!
//! A leaf module: it depends on nothing else in the crate.

use regex::{Regex, RegexBuilder};

/// The most memory a prefix regex may compile to. VSecM's rules compile
/// to a few KiB; the regex crate's default (10 MiB) let a rule such as
/// `(a{1000}){1000}` take seconds to refuse (found by fuzzing).
const REGEX_SIZE_LIMIT: usize = 256 << 10;

/// VSecM's default `VSECM_SPIFFEID_PREFIX_SAFE`.
pub const DEFAULT_SAFE_ID: &str =
    "^spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/[^/]+$";

/// VSecM's default `VSECM_SPIFFEID_PREFIX_WORKLOAD`.
pub const DEFAULT_WORKLOAD_ID: &str =
    "^spiffe://vsecm.com/workload/[^/]+/ns/[^/]+/sa/[^/]+/n/[^/]+$";

/// VSecM's workload-ID rule for any trust domain (the default of
/// `VSECM_SPIFFEID_PREFIX_WORKLOAD` is this for `vsecm.com`).
#[must_use]
pub fn workload_id_pattern(trust_domain: &str) -> String {
    format!(
        "^spiffe://{}/workload/[^/]+/ns/[^/]+/sa/[^/]+/n/[^/]+$",
        regex::escape(trust_domain)
    )
}

/// Matches a SPIFFE ID against one of VSecM's prefix variables
/// (`VSECM_SPIFFEID_PREFIX_SAFE`, `VSECM_SPIFFEID_PREFIX_WORKLOAD`).
///
/// VSecM's rule: a value that starts with `^spiffe://<trust domain>/` is a
/// regular expression; anything else is a literal string prefix.
#[derive(Debug, Clone)]
pub struct SpiffeIdMatcher {
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

impl SpiffeIdMatcher {
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
                RegexBuilder::new(prefix)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| MatcherError::BadRegex(variable, e.to_string()))?,
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
    use super::{workload_id_pattern, SpiffeIdMatcher, DEFAULT_SAFE_ID, DEFAULT_WORKLOAD_ID};

    const SAFE: &str =
        "spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/vsecm-safe-0";
    const EVIL: &str = "spiffe://vsecm.com/workload/evil/ns/default/sa/evil/n/evil-0";

    #[test]
    fn vsecm_rule_table() {
        let default_regex = DEFAULT_SAFE_ID;
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
        assert_eq!(
            workload_id_pattern("vsecm.com").replace('\\', ""),
            DEFAULT_WORKLOAD_ID
        );
        for (prefix, td, id, want) in table {
            let m = SpiffeIdMatcher::new("VSECM_SPIFFEID_PREFIX_SAFE", prefix, td).unwrap();
            assert_eq!(m.matches(id), want, "{prefix} {td} {id}");
        }
    }

    #[test]
    fn bad_input_is_rejected() {
        let v = "VSECM_SPIFFEID_PREFIX_SAFE";
        assert!(SpiffeIdMatcher::new(v, "", "vsecm.com").is_err());
        assert!(SpiffeIdMatcher::new(v, "^spiffe://vsecm.com/(", "vsecm.com").is_err());
    }

    /// Found by fuzzing: a huge rule is refused at once, naming the
    /// variable, instead of compiling for seconds.
    #[test]
    fn a_rule_that_compiles_huge_is_refused() {
        let rule = "^spiffe://vsecm.com/(a{1000}){1000}";
        let err = SpiffeIdMatcher::new("VSECM_SPIFFEID_PREFIX_SAFE", rule, "vsecm.com")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("VSECM_SPIFFEID_PREFIX_SAFE is not a valid regular expression")
                && err.contains("size limit"),
            "{err}"
        );
    }
}
