#!/usr/bin/env bash
# Runs the fuzz targets under libFuzzer with AddressSanitizer, one at a
# time, then prints (and with FUZZ_REPORT=1 writes to docs/benchmarks.md)
# one row per target: executions, rate, crashes, timeouts, OOMs.
#
#   FUZZ_SECONDS  seconds per target (default 60)
#   FUZZ_RUNS     stop a target once it reaches this many executions
#                 (0: no such stop); FUZZ_SECONDS still caps its time
#   FUZZ_TARGETS  space-separated targets (default: every target)
#   FUZZ_SEED     libFuzzer's -seed, for a repeatable run (default: random)
#   FUZZ_REPORT   1: write the rows into docs/benchmarks.md's fuzz section
#   FUZZ_NICE     niceness of the campaign (default 19: builds go first)
#
# Limits, per input: a run longer than 1 s is a timeout (-timeout=1); a
# heap that grows past 64 MiB is an out-of-memory. That is measured by
# fuzz-props' allocator cap on the Rust heap (every allocation of the
# product goes through it), not by RSS: AddressSanitizer's shadow memory
# and quarantine inflate the RSS. libFuzzer's -malloc_limit_mb=64 also
# fails any single allocation over 64 MiB; -rss_limit_mb=2048 is only a
# backstop for the process. A timeout counts only if the input also
# times out when re-run alone (a loaded machine can slow a fast input past
# 1 s); one that does not is reported and set aside in fuzz/work/.
#
# Without a nightly toolchain libFuzzer cannot build: the script says so
# and runs the same properties on stable (cargo test -p
# secret-gate-fuzz-props) instead, so they are never skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-0}
nice_level=${FUZZ_NICE:-19}
all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^secret-gate-fuzz$')
targets=${FUZZ_TARGETS:-$all_targets}

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain here, so libFuzzer cannot run;"
  echo "fuzz: running the same properties on stable instead (cargo test -p secret-gate-fuzz-props)"
  exec cargo test --locked -p secret-gate-fuzz-props
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi

echo "== fuzz: building the targets (nightly, AddressSanitizer)"
nice -n "$nice_level" cargo +nightly fuzz build

count() { ls "fuzz/artifacts/$1" | grep -c "^$2-" || true; }
status=0
for target in $targets; do
  mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
  log="fuzz/work/$target.log"
  args=(-timeout=1 -malloc_limit_mb=64 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="fuzz/artifacts/$target/")
  args+=(-max_total_time="$seconds")
  [ "$runs" -gt 0 ] && args+=(-runs="$runs")
  [ -n "${FUZZ_SEED:-}" ] && args+=(-seed="$FUZZ_SEED")
  [ -f "fuzz/dict/$target.dict" ] && args+=(-dict="fuzz/dict/$target.dict")
  echo "== fuzz $target (at most ${seconds}s$([ "$runs" -gt 0 ] && echo " or $runs executions"))"
  before=$(ls "fuzz/artifacts/$target" | wc -l)
  crashes0=$(count "$target" crash); timeouts0=$(count "$target" timeout); ooms0=$(count "$target" oom)
  start=$(date +%s)
  set +e
  nice -n "$nice_level" cargo +nightly fuzz run "$target" \
    "fuzz/work/$target" "fuzz/corpus/$target" -- "${args[@]}" >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  found=$(ls "fuzz/artifacts/$target" | wc -l)
  crashes=$(( $(count "$target" crash) - crashes0 ))
  timeouts=$(( $(count "$target" timeout) - timeouts0 ))
  ooms=$(( $(count "$target" oom) - ooms0 ))
  # A timeout is a finding only if the input is slow on its own. Under a
  # loaded machine a fast input can miss the 1 s limit; re-run each new
  # timeout input alone (one execution, same limits, normal priority) and
  # set aside the ones that pass, so they fail neither this run nor the next.
  if [ "$timeouts" -gt 0 ] && [ "$crashes" -eq 0 ] && [ "$ooms" -eq 0 ]; then
    for input in $(ls -t "fuzz/artifacts/$target" | grep '^timeout-' | head -n "$timeouts"); do
      if cargo +nightly fuzz run "$target" "fuzz/artifacts/$target/$input" -- \
          -timeout=1 -malloc_limit_mb=64 -rss_limit_mb=2048 -runs=1 >>"$log" 2>&1; then
        mkdir -p "fuzz/work/$target.unreproduced"
        mv "fuzz/artifacts/$target/$input" "fuzz/work/$target.unreproduced/"
        timeouts=$(( timeouts - 1 ))
        echo "fuzz: $target: $input timed out under load but runs within 1 s alone;" \
          "not a finding (kept in fuzz/work/$target.unreproduced/)"
      else
        echo "fuzz: $target: $input times out alone too: a slow input"
      fi
    done
    found=$(ls "fuzz/artifacts/$target" | wc -l)
    # libFuzzer stopped at the timeout; with none left, the run passed.
    [ "$timeouts" -eq 0 ] && rc=0
  fi
  if [ "$rc" -ne 0 ] || [ "$found" -gt "$before" ]; then
    status=1
    echo "fuzz: $target FAILED (exit $rc); the input is in fuzz/artifacts/$target/, the log in $log:"
    grep -E 'ERROR|panicked|SUMMARY|failed' "$log" | head -20 || true
  fi
  echo "fuzz: $target: ${execs:-?} executions in ${took}s (${rate:-?}/s), crashes $crashes, timeouts $timeouts, OOMs $ooms"
  if [ "${FUZZ_REPORT:-0}" = 1 ]; then
    # One row per target, written as soon as it is done.
    command="make fuzz FUZZ_TARGETS=$target${FUZZ_RUNS:+ FUZZ_RUNS=$FUZZ_RUNS} FUZZ_SECONDS=$seconds FUZZ_REPORT=1"
    row="| $target | ${execs:-?} | ${took} s | ${rate:-?} | $crashes | $timeouts | $ooms | $(date -u '+%F %H:%M') | \`$command\` |"
    bash fuzz/report.sh "$row" "$(nproc)"
  fi
done
exit $status
