#!/usr/bin/env bash
# storehook's test command, on a fresh machine or a used one:
#
#     bash scripts/test.sh [extra `cargo test` arguments, e.g. -p storehook-tests provision]
#
# 1. creates/reuses .venv (python3 -m venv) with the pinned Python tools: moto (local AWS),
#    cfn-lint, aws-sam-cli and cargo-lambda (+ ziglang); pip is skipped when .venv/.storehook-pins
#    says these pins are installed,
# 2. starts moto_server on a free loopback port (stopped again on exit, whatever happens),
# 2b. installs Debian's chromium and tests/browser's playwright-core when missing (console test),
# 3. lints template.yaml (cfn-lint + scripts/check_template.py), checks events/ is generated,
# 4. runs cargo test --workspace --all-features with AWS_ENDPOINT_URL / STOREHOOK_TEST_AWS_ENDPOINT
#    pointing at moto,
# and exits non-zero when any step failed.
#
# Environment: STOREHOOK_VENV (default .venv), STOREHOOK_SKIP_PIP=1 (use the venv as it is).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=${STOREHOOK_VENV:-$ROOT/.venv}
RUN_DIR=$ROOT/target/test-run
mkdir -p "$RUN_DIR"

# Pinned tools (PyPI). Bump together; the marker below makes pip run again.
PY_PINS=(
  "moto[server]==5.2.5"
  "cfn-lint==1.58.0"
  "aws-sam-cli==1.170.0"
  "cargo-lambda==1.9.2"
)

T0=$(date +%s)
FAILED=()
section() { printf '\n==> %s  (+%ss)\n' "$*" "$(($(date +%s) - T0))"; }
step() { # step NAME CMD...: runs CMD, records a failure, never exits
  local name=$1 t=$(date +%s) rc
  shift
  "$@"
  rc=$?
  if [ $rc -ne 0 ]; then
    FAILED+=("$name (exit $rc)")
    printf -- '--- %s FAILED (exit %s) in %ss\n' "$name" "$rc" "$(($(date +%s) - t))"
  else
    printf -- '--- %s ok in %ss\n' "$name" "$(($(date +%s) - t))"
  fi
  return 0
}

# ------------------------------------------------------------------ 1. Python tools
section "python tools in ${VENV#"$ROOT"/}"
t=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || { echo "test.sh: python3 -m venv failed" >&2; exit 1; }
fi
MARKER=$VENV/.storehook-pins
WANT=$(printf '%s\n' "${PY_PINS[@]}" "$("$VENV/bin/python" -V 2>&1)" | sha256sum | cut -d' ' -f1)
if [ "${STOREHOOK_SKIP_PIP:-0}" = 1 ]; then
  echo "STOREHOOK_SKIP_PIP=1: using the venv as it is"
elif [ "$(cat "$MARKER" 2>/dev/null)" = "$WANT" ]; then
  echo "pins already installed (marker $MARKER)"
else
  echo "installing ${PY_PINS[*]}"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PY_PINS[@]}" ||
    { echo "test.sh: pip install failed" >&2; exit 1; }
  echo "$WANT" >"$MARKER"
fi
echo "python tools ready in $(($(date +%s) - t))s"
# One venv, its bin first: sam finds cargo-lambda, and `python3 -m ziglang` works for cargo-lambda.
export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0

# ------------------------------------------------------------------ 2. moto
section "moto_server"
MOTO_PID=
stop_moto() {
  if [ -n "$MOTO_PID" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null
    wait "$MOTO_PID" 2>/dev/null
    echo "moto_server (pid $MOTO_PID) stopped"
  fi
}
trap stop_moto EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
MOTO_LOG=$RUN_DIR/moto-$PORT.log
t_moto=$(date +%s%N)
moto_server -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
ENDPOINT=http://127.0.0.1:$PORT
ready=0
for _ in $(seq 1 300); do # up to 30 s
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then break; fi
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$ENDPOINT/moto-api/" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ $ready != 1 ]; then
  echo "test.sh: moto_server did not answer on $ENDPOINT; its log:" >&2
  cat "$MOTO_LOG" >&2
  exit 1
fi
echo "moto_server pid $MOTO_PID ready on $ENDPOINT in $((($(date +%s%N) - t_moto) / 1000000)) ms (log: ${MOTO_LOG#"$ROOT"/})"

export AWS_ENDPOINT_URL=$ENDPOINT
export STOREHOOK_TEST_AWS_ENDPOINT=$ENDPOINT
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN

# ------------------------------------------------------------------ 2b. the browser
# The console's browser test (cli/tests/console.rs) drives Debian's chromium through
# playwright-core (tests/browser, pinned in its package-lock.json). Installed when missing
# (apt-get as root; npm ci); without them that test fails under CI and is skipped elsewhere.
section "browser: chromium + playwright-core"
if ! command -v chromium >/dev/null 2>&1 && [ -z "${STOREHOOK_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (Debian)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
      >"$RUN_DIR/apt.log" 2>&1 || echo "test.sh: chromium could not be installed (log: ${RUN_DIR#"$ROOT"/}/apt.log)" >&2
  else
    echo "test.sh: no chromium and no apt-get as root: the console browser test is skipped" >&2
  fi
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent) || echo "test.sh: npm ci in tests/browser failed" >&2
fi
if [ -z "${STOREHOOK_CHROMIUM:-}" ] && command -v chromium >/dev/null 2>&1; then
  export STOREHOOK_CHROMIUM=$(command -v chromium)
fi
echo "chromium: ${STOREHOOK_CHROMIUM:-none}; playwright-core: $(cd tests/browser && node -p 'require("./node_modules/playwright-core/package.json").version' 2>/dev/null || echo none)"

# ------------------------------------------------------------------ 3. template + events
section "cfn-lint template.yaml"
step cfn-lint cfn-lint template.yaml
section "scripts/check_template.py"
step check_template python3 scripts/check_template.py
section "events/ up to date (scripts/gen_events.py --check)"
step gen_events python3 scripts/gen_events.py --check

# ------------------------------------------------------------------ 4. cargo test
section "cargo test --workspace --all-features $*"
step "cargo test" cargo test --workspace --all-features --no-fail-fast "$@"

# ------------------------------------------------------------------ summary
section "done in $(($(date +%s) - T0))s"
if [ ${#FAILED[@]} -ne 0 ]; then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "all test steps passed"
