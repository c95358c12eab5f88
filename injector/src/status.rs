//! `secret-gate.dev/status`: what the injector added to a pod template and
//! a hash of its inputs. A re-run removes exactly what it lists before it
//! injects again, so changing an annotation replaces the gate and never
//! duplicates it, and the same inputs give the same bytes.

use serde_yaml_ng::Value;

use crate::annotations::STATUS;
use crate::value::{get_mut, path_mut};

/// The status annotation's content. Its text is short on purpose,
/// `v1;h=<hash>[;new=<lists>][;vol=<volumes>]`, at most 63 characters:
/// `podman kube play` (4.3) refuses a pod whose annotation values are longer
/// (as if they were labels), and a kubelet-free test run of an injected pod
/// is worth keeping. `new` holds one letter per list the injector created
/// (`i`: `initContainers`, `v`: `volumes`); the container is always
/// [`gate::CONTAINER`](crate::gate::CONTAINER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The injected init container's name.
    pub container: String,
    /// Volumes the injector added (not ones the pod already had).
    pub volumes: Vec<String>,
    /// Lists the injector created (`initContainers`, `volumes`), removed
    /// again when they become empty.
    pub created: Vec<String>,
    /// FNV-1a 64 of the inputs: the template without the injection, the
    /// image and the injector's version.
    pub inputs: String,
}

/// The lists the injector may create, and their letters in `new=`.
const LISTS: [(char, &str); 2] = [('i', "initContainers"), ('v', "volumes")];

impl Status {
    /// Reads the annotation's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| {
            format!(
                "{STATUS} is not one this injector wrote ({why}): it is written by the injector \
                 only; remove it, and remove by hand whatever it injected"
            )
        };
        let mut fields = text.split(';');
        if fields.next() != Some("v1") {
            return Err(refuse("it does not start with v1;"));
        }
        let mut status = Self {
            container: crate::gate::CONTAINER.to_owned(),
            volumes: Vec::new(),
            created: Vec::new(),
            inputs: String::new(),
        };
        for field in fields {
            match field.split_once('=') {
                Some(("h", hash))
                    if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    hash.clone_into(&mut status.inputs);
                }
                Some(("new", letters)) => {
                    for letter in letters.chars() {
                        let (_, list) = LISTS
                            .iter()
                            .find(|(l, _)| *l == letter)
                            .ok_or_else(|| refuse("unknown list letter"))?;
                        status.created.push((*list).to_owned());
                    }
                }
                Some(("vol", names)) => {
                    status.volumes.extend(
                        names
                            .split(',')
                            .filter(|n| !n.is_empty())
                            .map(str::to_owned),
                    );
                }
                _ => return Err(refuse("unknown field")),
            }
        }
        if status.inputs.is_empty() {
            return Err(refuse("no h= hash"));
        }
        Ok(status)
    }

    /// The annotation's text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = format!("v1;h={}", self.inputs);
        let letters: String = LISTS
            .iter()
            .filter(|(_, list)| self.created.iter().any(|c| c == list))
            .map(|(letter, _)| *letter)
            .collect();
        if !letters.is_empty() {
            text.push_str(";new=");
            text.push_str(&letters);
        }
        if !self.volumes.is_empty() {
            text.push_str(";vol=");
            text.push_str(&self.volumes.join(","));
        }
        text
    }

    /// Removes from `template` (a pod template: `metadata` and `spec`)
    /// what this status says was injected, and the status itself.
    pub fn strip(&self, template: &mut Value) {
        if let Some(spec) = get_mut(template, "spec").and_then(Value::as_mapping_mut) {
            if let Some(list) = spec
                .get_mut("initContainers")
                .and_then(Value::as_sequence_mut)
            {
                list.retain(|c| crate::value::str_at(c, "name") != Some(self.container.as_str()));
            }
            if let Some(list) = spec.get_mut("volumes").and_then(Value::as_sequence_mut) {
                list.retain(|v| {
                    !crate::value::str_at(v, "name")
                        .is_some_and(|n| self.volumes.iter().any(|x| x == n))
                });
            }
            for key in &self.created {
                let empty = spec
                    .get(key.as_str())
                    .is_some_and(|v| v.as_sequence().is_some_and(Vec::is_empty));
                if empty {
                    spec.remove(key.as_str());
                }
            }
        }
        if let Some(annotations) =
            path_mut(template, &["metadata", "annotations"]).and_then(Value::as_mapping_mut)
        {
            annotations.remove(STATUS);
        }
    }
}

/// FNV-1a 64 over parts that each end in a `0xff` byte: a stable
/// fingerprint (not a security hash). Parts are written with
/// [`std::io::Write`], so a value can be serialised straight into it.
#[derive(Debug, Clone)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// Ends the part written so far.
    pub fn end_part(&mut self) {
        self.byte(0xff);
    }

    /// The hash, as 16 hex digits.
    #[must_use]
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }

    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
}

impl std::io::Write for Fingerprint {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            self.byte(b);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_round_trips_and_fits_podman() {
        let full = Status {
            container: crate::gate::CONTAINER.to_owned(),
            volumes: vec![crate::gate::SPIFFE_VOLUME.to_owned()],
            created: vec!["initContainers".to_owned(), "volumes".to_owned()],
            inputs: "0123456789abcdef".to_owned(),
        };
        let text = full.to_text();
        assert_eq!(text, "v1;h=0123456789abcdef;new=iv;vol=spire-agent-socket");
        assert!(text.len() <= 63, "{text} is over 63 characters");
        assert_eq!(Status::parse(&text), Ok(full));
    }

    #[test]
    fn foreign_texts_are_refused() {
        for text in [
            "",
            "v2;h=0123456789abcdef",
            "v1",
            "v1;h=xyz",
            "v1;h=0123456789abcdef;new=q",
            "{\"container\":\"x\"}",
        ] {
            assert!(Status::parse(text).is_err(), "{text:?} was accepted");
        }
    }
}
