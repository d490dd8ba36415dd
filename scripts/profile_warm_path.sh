#!/usr/bin/env bash
# Where the warm App Store path's time goes, in instructions and allocations (repeatable on a
# noisy machine, unlike wall time): the `appstore` bench binary in its profile mode
# (STOREHOOK_PROFILE=warm|cold|floor, STOREHOOK_ITERS=N) under valgrind's callgrind and DHAT,
# each at two iteration counts so the setup cancels out: per iteration = (run(N2) - run(N1)) /
# (N2 - N1). Prints instructions and allocations per notification for warm, cold and the floor
# (the three P-256 verifications alone), and the warm path's top functions (inclusive).
#
#   bash scripts/profile_warm_path.sh            # N1=20, N2=120
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-20}
N2=${N2:-120}
out=$(mktemp -d)
bin=$(cargo bench -p storehook-shared --bench appstore --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="appstore" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "bench binary not found" >&2; exit 1; }

ir() { # mode iters -> total instructions
  STOREHOOK_PROFILE=$1 STOREHOOK_ITERS=$2 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1.$2" \
    "$bin" >/dev/null 2>"$out/cg.$1.$2.log"
  grep -E '^summary:|^totals:' "$out/cg.$1.$2" | head -1 | awk '{print $2}'
}
allocs() { # mode iters -> "blocks bytes"
  STOREHOOK_PROFILE=$1 STOREHOOK_ITERS=$2 valgrind --tool=dhat --dhat-out-file="$out/dh.$1.$2" \
    "$bin" >/dev/null 2>"$out/dh.$1.$2.log"
  python3 - "$out/dh.$1.$2.log" <<'PY'
import re,sys
t=open(sys.argv[1]).read()
m=re.search(r"Total:\s+([\d,]+) bytes in ([\d,]+) blocks",t)
print(m.group(2).replace(",",""), m.group(1).replace(",",""))
PY
}

printf "%-6s %14s %12s %12s\n" path "instructions" "allocations" "bytes"
for mode in floor warm cold; do
  a=$(ir $mode "$N1"); b=$(ir $mode "$N2")
  read -r ab aB < <(allocs $mode "$N1"); read -r bb bB < <(allocs $mode "$N2")
  d=$((N2 - N1))
  printf "%-6s %14d %12d %12d\n" $mode $(((b - a) / d)) $(((bb - ab) / d)) $(((bB - aB) / d))
done
echo
echo "warm path, top functions by inclusive instructions ($N2 iterations, setup included):"
callgrind_annotate --inclusive=yes "$out/cg.warm.$N2" 2>/dev/null | sed -n '1,200p' |
  grep -E '^\s*[0-9,]+ ' | head -25
echo "(raw files: $out)"
