#!/usr/bin/env bash
# make repro: builds the static gate binary twice, each time from an empty
# target directory at a different path, and compares the SHA-256 of the two.
# Writes target/repro/result.json (read by `make bench`, figure 4) and keeps
# both binaries there; the two target dirs are removed once built.
#
#   REPRO_BIN     the binary to check (default secret-gate)
#   TARGET        the Rust target (default x86_64-unknown-linux-gnu, as `make static`)
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${REPRO_BIN:-secret-gate}
target=${TARGET:-x86_64-unknown-linux-gnu}
out=target/repro
rm -rf "$out"
mkdir -p "$out"

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=false
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  dirty=true
fi

# Both builds take the commit from here: a commit made while they run
# must not change what the second one embeds (build.rs would read HEAD).
export SECRET_GATE_COMMIT=$commit

declare -A secs sha
for side in a b; do
  echo "== repro: build $side of 2 ($bin, $target) in $out/$side, from empty"
  start=$(date +%s)
  make --no-print-directory static TARGET_DIR="$out/$side" BINS="$bin" TARGET="$target"
  secs[$side]=$(( $(date +%s) - start ))
  cp "$out/$side/$target/release/$bin" "$out/$bin.$side"
  rm -rf "${out:?}/$side"
  sha[$side]=$(sha256sum "$out/$bin.$side" | cut -d' ' -f1)
  echo "== repro: build $side took ${secs[$side]} s: sha256 ${sha[$side]}"
done

identical=false
[ "${sha[a]}" = "${sha[b]}" ] && identical=true
# The binary `make static` left in target/, if any: the same bytes when it
# was built from this commit, since target dirs are remapped to /target.
static_sha=null
if [ -f "target/$target/release/$bin" ]; then
  static_sha="\"$(sha256sum "target/$target/release/$bin" | cut -d' ' -f1)\""
fi

cat > "$out/result.json" <<JSON
{
  "binary": "$bin",
  "target": "$target",
  "commit": "$commit",
  "uncommitted_changes": $dirty,
  "rustc": "$(rustc --version)",
  "sha256_a": "${sha[a]}",
  "sha256_b": "${sha[b]}",
  "identical": $identical,
  "seconds_a": ${secs[a]},
  "seconds_b": ${secs[b]},
  "finished_unix": $(date +%s),
  "make_static_sha256": $static_sha
}
JSON
echo "== repro: wrote $out/result.json"
if [ "$identical" != true ]; then
  echo "make repro: the two builds differ ($out/$bin.a, $out/$bin.b)." >&2
  echo "  Compare them with diffoscope to find what leaks in (a path, a timestamp)." >&2
  exit 1
fi
echo "make repro: identical, sha256 ${sha[a]}"
