#!/usr/bin/env bash
# `make demo`: watch secret-gate hold back until secrets are really there.
#   1. volume mode: a writer fills a temp dir after a pause, first with a
#      torn (half-written) file, as VSecM Sidecar does; the gate waits.
#   2. safe mode: the bundled fake VSecM Safe starts empty; the secret is
#      registered two seconds later; the gate fetches it over SPIFFE mTLS and
#      writes one file per key.
# Secret values are demo values, and even so the gate never prints them.
set -euo pipefail
cd "$(dirname "$0")/../.."
GATE=${GATE:-target/debug/secret-gate}
FAKE=${FAKE:-target/debug/fake-safe}
for bin in "$GATE" "$FAKE"; do
  [ -x "$bin" ] || { echo "missing $bin: run 'make build' first" >&2; exit 2; }
done

work=$(mktemp -d)
fake_pid=
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
t0=${EPOCHREALTIME/./}
say() {
  local ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
  printf '\033[1m[demo %3d.%03ds] %s\033[0m\n' $((ms / 1000)) $((ms % 1000)) "$*"
}

say "== 1. volume mode: gate waits for $work/secrets/secrets.json with keys username,password"
(
  sleep 2
  mkdir -p "$work/secrets"
  say "writer: the volume appears, and a first, torn write lands: {\"username\":\"admin\",\"pass"
  printf '%s' '{"username":"admin","pass' > "$work/secrets/secrets.json"
  sleep 1.5
  say "writer: the rest of the file lands"
  printf '%s' 'word":"demo-only-value"}' >> "$work/secrets/secrets.json"
) &
writer=$!
rc=0
"$GATE" watch --mount-path "$work/secrets" --file secrets.json \
  --required-keys username,password --timeout 30s --termination-log "$work/termination-log" || rc=$?
if [ "$rc" -ne 0 ]; then
  say "gate exited $rc: the app would NOT start. Diagnosis:"; cat "$work/termination-log"; exit 1
fi
say "gate exited 0: ready, the app may start now"
wait "$writer"

say "== 2. safe mode: fake VSecM Safe + fake SPIFFE Workload API on loopback"
"$FAKE" serve --state-dir "$work/safe" > "$work/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/safe/env" ] && break; sleep 0.1; done
[ -s "$work/safe/env" ] || { echo "fake-safe did not start:" >&2; cat "$work/fake.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/safe/env"
say "fake Safe at $VSECM_SAFE_ENDPOINT_URL, Workload API at $SPIFFE_ENDPOINT_SOCKET; nothing registered yet"
(
  sleep 2
  say "sentinel: registering the secret for workload 'example'"
  "$FAKE" register --state-dir "$work/safe" --workload example \
    --value '{"username":"admin","password":"demo-only-value"}'
) &
sentinel=$!
# A short back-off base for the demo; the default is VSecM's 5000 ms.
rc=0
VSECM_INIT_CONTAINER_POLL_INTERVAL=500 \
  "$GATE" safe --required-keys username,password --output-dir "$work/out" \
  --timeout 30s --termination-log "$work/termination-log" || rc=$?
if [ "$rc" -ne 0 ]; then
  say "gate exited $rc. Diagnosis:"; cat "$work/termination-log"; exit 1
fi
say "gate exited 0 and wrote one file per key (values not shown):"
ls -l "$work/out"
wait "$sentinel"
say "done"
