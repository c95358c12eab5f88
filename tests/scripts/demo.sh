#!/usr/bin/env bash
# `make demo`: watch secret-gate hold back until secrets are really there.
#   1. volume mode: a writer fills a temp dir after a pause, first with a
#      torn (half-written) file, as VSecM Sidecar does; the gate waits.
#   2. safe mode: the bundled fake VSecM Safe starts empty; the secret is
#      registered two seconds later; the gate fetches it over SPIFFE mTLS and
#      writes one file per key.
#   3. keep running: `safe --keep-running` as a native sidecar would run it,
#      with /readyz and /metrics on loopback; the secret is rotated in the
#      fake Safe, the gate switches its --output-dir to the new version in
#      one rename and sends SIGHUP to the "app", which reloads.
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
bg_pids=()
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
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
"$FAKE" wait --state-dir "$work/safe" --pid "$fake_pid" --timeout 10s \
  || { echo "fake-safe did not start:" >&2; cat "$work/fake.log" >&2; exit 1; }
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

say "== 3. keep running: the gate stays, a rotation is swapped in, the app is notified"
# The "app": a copy of bash under its own name, so --signal-process finds
# it and nothing else; it reloads on SIGHUP. (In a pod: shareProcessNamespace.)
cp "$(command -v bash)" "$work/demo-app"
# A shell cannot trap a signal that was ignored when it started (as under
# nohup): start the app with SIGHUP at its default, where env can.
reset_hup=()
if env --default-signal=HUP true 2>/dev/null; then reset_hup=(env --default-signal=HUP); fi
${reset_hup[@]+"${reset_hup[@]}"} "$work/demo-app" -c 'trap "echo \"[app] SIGHUP received: reloading the secret files\"" HUP
  for _ in $(seq 600); do sleep 0.1; done' > "$work/app.log" &
bg_pids+=($!)
VSECM_INIT_CONTAINER_POLL_INTERVAL=500 VSECM_SIDECAR_POLL_INTERVAL=500 \
  "$GATE" safe --keep-running --listen 127.0.0.1:0 --required-keys username,password \
  --output-dir "$work/live" --on-change-signal HUP --signal-process demo-app \
  --timeout 30s --termination-log "$work/termination-log" 2> "$work/gate.log" &
gate_pid=$!
bg_pids+=("$gate_pid")
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/.*serving .*addr=\([0-9.:]*\).*/\1/p' "$work/gate.log" | head -1)
  [ -n "$addr" ] && grep -q "ready; keeping running" "$work/gate.log" && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "the gate did not come up:" >&2; cat "$work/gate.log" >&2; exit 1; }
http_get() { # plain HTTP over bash's /dev/tcp: no curl needed
  exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"
  printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
  cat <&3
  exec 3<&-
}
say "gate running, probes on $addr: GET /readyz -> $(http_get /readyz | head -1 | tr -d '\r')"
say "the output dir, kubelet-style (..data -> one version, one link per key):"
ls -la "$work/live"
say "sentinel: rotating the secret in the Safe"
"$FAKE" register --state-dir "$work/safe" --workload example \
  --value '{"username":"admin","password":"demo-only-value-2"}'
for _ in $(seq 100); do grep -q SIGHUP "$work/app.log" && break; sleep 0.1; done
cat "$work/app.log"
grep -q SIGHUP "$work/app.log" || { echo "the app was not notified:" >&2; cat "$work/gate.log" >&2; exit 1; }
say "the gate's log (values never shown):"
grep -E "wrote a new version|changed|sent SIGHUP" "$work/gate.log" | cut -c1-160
say "new version in place, old one removed:"
ls -la "$work/live"
say "metrics:"
http_get /metrics | grep -E '^secret_gate_(ready|notifications_sent_total|safe_requests_total)'
kill -TERM "$gate_pid"
rc=0; wait "$gate_pid" || rc=$?
say "SIGTERM: the gate exited $rc at once (143 = 128 + SIGTERM)"
say "done"
