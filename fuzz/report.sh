#!/usr/bin/env bash
# Writes a fuzz row (one target's run, from fuzz/run.sh) into
# docs/benchmarks.md between <!-- BEGIN fuzz --> and <!-- END fuzz -->,
# replacing that target's previous row and keeping the others. `make
# bench` keeps the section verbatim (tests/bench/report.rs).
#   report.sh ROW CPUS
set -euo pipefail
cd "$(dirname "$0")/.."
row=$1 cpus=$2
# Two campaigns may finish at once: one writer at a time.
exec 9>"${TMPDIR:-/tmp}/secret-gate-fuzz-report.lock"
flock 9
target=$(echo "$row" | cut -d'|' -f2 | tr -d ' ')
doc=docs/benchmarks.md
old=$(mktemp) new=$(mktemp)
trap 'rm -f "$old" "$new" "$new.section"' EXIT
# The rows already there, by target, minus the ones run now.
if grep -q '<!-- BEGIN fuzz -->' "$doc"; then
  sed -n '/<!-- BEGIN fuzz -->/,/<!-- END fuzz -->/p' "$doc" | grep '^| [a-z_]* | ' | grep -v '^| target ' >"$old" || true
fi
{
  echo '<!-- BEGIN fuzz -->'
  echo '## Fuzzing'
  echo
  echo "Written by \`make fuzz\` (fuzz/run.sh), not by \`make bench\`, which keeps this section as it is."
  echo "Each row is the last run of its target, by the command in its row: libFuzzer with AddressSanitizer"
  echo "and debug assertions on the nightly toolchain at \`nice -n 19\` (one target at a time per \`make fuzz\`; at times two"
  echo "campaigns ran side by side), on a machine with $cpus CPUs shared with other builds (so the rates are lower bounds)."
  echo "A timeout is an input that runs longer than 1 s; an OOM an input that grows the heap past 64 MiB"
  echo "(see docs/fuzzing.md). Goal: at least 10,000,000 executions per target, with 0 crashes, 0 timeouts and 0 OOMs."
  echo
  echo '| target | executions | time | executions/s | crashes | timeouts | OOMs | finished (UTC) | command |'
  echo '|---|---|---|---|---|---|---|---|---|'
  { grep -v -F "| $target |" "$old" || true; echo "$row"; } | sort
  echo '<!-- END fuzz -->'
} >"$new.section"
if grep -q '<!-- BEGIN fuzz -->' "$doc"; then
  awk -v f="$new.section" '
    /<!-- BEGIN fuzz -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
    /<!-- END fuzz -->/ { skip = 0; next }
    !skip' "$doc" >"$doc.tmp"
  mv "$doc.tmp" "$doc"
else
  { echo; cat "$new.section"; } >>"$doc"
fi
rm -f "$new.section"
echo "fuzz: wrote the fuzz section of $doc"
