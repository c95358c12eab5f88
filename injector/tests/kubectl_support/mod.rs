//! Reads a manifest file as the cluster's clients do: `kubectl annotate
//! --local -o json` decodes it with `sigs.k8s.io/yaml` (go-yaml v2, YAML
//! 1.1) and needs no cluster. `List` items come out flattened, as kubectl
//! does. Shared by the reader and runner tests.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The objects of `file` as kubectl reads them, or kubectl's error.
#[expect(
    clippy::expect_used,
    reason = "test helper: a missing kubectl fails the calling test, saying so"
)]
pub fn read(file: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new("kubectl")
        .args(["annotate", "--local", "-o", "json", "-f"])
        .arg(file)
        .arg("tests.secret-gate.dev/probe=x")
        .stdin(Stdio::null())
        .output()
        .expect(
            "kubectl is needed to read manifests as the cluster's clients do (it comes with the \
             Google Cloud CLI packages): install it",
        );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("kubectl printed something that is not JSON: {e}"))
}
