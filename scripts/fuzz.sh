#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each for N seconds (default 600), one after
# the other; fails (exit 1) when any target crashes, i.e. panics, fails a check, leaks or times
# out. Crash inputs land in fuzz/artifacts/<target>/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>
#
#     scripts/fuzz.sh            # 600 s per target
#     scripts/fuzz.sh 20         # CI: 20 s per target
#     FUZZ_TARGETS="huawei appstore" scripts/fuzz.sh 60
#     FUZZ_JOBS=2 scripts/fuzz.sh 600   # two targets at a time
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and libFuzzer's toolchain support: on
# stable Rust, RUSTC_BOOTSTRAP=1 (set here) stands in for nightly. Uses its own target dir
# (fuzz/target) because the sanitizer-free fuzz build's flags differ from the workspace's.
# New inputs found are kept in fuzz/target/corpus/<target>/ (the committed seeds in
# fuzz/corpus/<target>/ are only read). A per-target summary (executions, coverage) is printed
# and written to fuzz/target/fuzz-summary.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-600}
JOBS=${FUZZ_JOBS:-1}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$ROOT/fuzz/target"
unset RUSTFLAGS

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2; exit 2; }

TARGETS=${FUZZ_TARGETS:-$(cd fuzz && cargo fuzz list)}
echo "fuzz targets: $(echo $TARGETS)  (${SECONDS_PER_TARGET}s each, $JOBS at a time)"
(cd fuzz && cargo fuzz build -s none -a) || { echo "fuzz build failed" >&2; exit 1; }

LOGS="$ROOT/fuzz/target/logs"
mkdir -p "$LOGS"
run_one() {
  local t=$1 work="$ROOT/fuzz/target/corpus/$1"
  mkdir -p "$work" "$ROOT/fuzz/corpus/$t"
  (cd fuzz && cargo fuzz run -s none -a "$t" "$work" "$ROOT/fuzz/corpus/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) \
      >"$LOGS/$t.log" 2>&1
}

declare -A PID
FAILED=()
for t in $TARGETS; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  echo "== $t"
  run_one "$t" &
  PID[$t]=$!
done
for t in $TARGETS; do
  wait "${PID[$t]}" || FAILED+=("$t")
done

SUMMARY="$ROOT/fuzz/target/fuzz-summary.txt"
: >"$SUMMARY"
for t in $TARGETS; do
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$LOGS/$t.log" | grep -oE '[0-9]+$' | tail -1)
  last=$(grep -E '^#[0-9]+.*(cov|ft):' "$LOGS/$t.log" | tail -1)
  cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+')
  ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+')
  corp=$(echo "$last" | grep -oE 'corp: [0-9]+' | grep -oE '[0-9]+')
  status=ok
  [[ " ${FAILED[*]} " == *" $t "* ]] && status=CRASH
  printf '%-16s %-6s execs=%s cov=%s ft=%s corpus=%s seconds=%s\n' "$t" "$status" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$SECONDS_PER_TARGET" | tee -a "$SUMMARY"
done
if [ ${#FAILED[@]} -ne 0 ]; then
  for t in "${FAILED[@]}"; do
    echo "---- $t (last 40 lines of $LOGS/$t.log)"
    tail -40 "$LOGS/$t.log"
  done
  echo "FUZZING FAILED: ${FAILED[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing passed"
