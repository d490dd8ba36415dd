#!/usr/bin/env python3
"""storehook translate side by side with Apple's App Store Server Library (Node).

Both verify the same App Store notifications fully (x5c chain to Apple Root CA - G3, ES256, the
nested signedTransactionInfo and signedRenewalInfo; Apple's with one SignedDataVerifier per app and
environment, online checks off) and are timed as whole processes, process start included,
interleaved round by round so both see the same machine:

- "one process per notification": each tool is started once per notification;
- "one process for all": each tool is started once for the whole set (storehook: many inputs in one
  `translate`; Apple: one `node verify.mjs` over all files); per notification = wall / count.

Usage (from the repository root; builds `storehook` with the bench profile and runs `npm ci`):
    python3 scripts/bench_vs_apple.py [--rounds 5] [--repeat 10] [BODY_OR_FIXTURE.json ...]
Inputs default to tests/fixtures/appstore/*.json; a fixture ({"body": {...}}) or a bare body
({"signedPayload": ...}) per file. `--repeat N` repeats the set N times in the "all" runs.
Prints a table and a JSON summary line.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "vs-apple")
PEM = os.path.join(ROOT, "shared", "certs", "AppleRootCA-G3.pem")


def wall(cmd, stdin=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return time.perf_counter() - t0, p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "storehook"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("inputs", nargs="*")
    a = ap.parse_args()

    if not a.no_build:
        subprocess.run(["cargo", "build", "--profile", "bench", "-p", "storehook-cli", "--bin", "storehook"],
                       cwd=ROOT, check=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=BENCH, check=True)

    files = a.inputs or sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "appstore", "*.json")))
    tmp = tempfile.mkdtemp(prefix="storehook-vs-apple-")
    bodies = []
    for i, f in enumerate(files):
        v = json.load(open(f))
        body = v.get("body", v)
        path = os.path.join(tmp, f"{i:04d}.json")
        with open(path, "w") as out:
            json.dump(body, out)
        bodies.append(path)
    n = len(bodies)
    if n == 0:
        sys.exit("no inputs")

    storehook = lambda paths: [a.bin, "translate", "--store", "appstore", *paths]
    apple = lambda paths: ["node", os.path.join(BENCH, "verify.mjs"), PEM, *paths]

    # Both must accept every input, or the comparison means nothing.
    for name, cmd in (("storehook", storehook(bodies)), ("apple", apple(bodies))):
        _, p = wall(cmd)
        if p.returncode != 0:
            sys.exit(f"{name} refused some inputs:\n{p.stderr.decode()[-2000:]}")

    every = bodies * a.repeat
    rows = []
    for r in range(a.rounds):
        row = {"round": r + 1}
        # one process per notification, interleaved notification by notification
        s_each, a_each = [], []
        for b in bodies:
            t, p = wall(storehook([b]))
            assert p.returncode == 0, p.stderr
            s_each.append(t)
            t, p = wall(apple([b]))
            assert p.returncode == 0, p.stderr
            a_each.append(t)
        row["storehook_each_ms"] = 1000 * statistics.median(s_each)
        row["apple_each_ms"] = 1000 * statistics.median(a_each)
        # one process for all
        t, p = wall(storehook(every))
        assert p.returncode == 0, p.stderr
        row["storehook_all_us"] = 1e6 * t / len(every)
        t, p = wall(apple(every))
        assert p.returncode == 0, p.stderr
        row["apple_all_us"] = 1e6 * t / len(every)
        rows.append(row)

    print(f"{n} notifications ({len(every)} in the one-process runs), {a.rounds} interleaved rounds")
    print("round | storehook, one process each (ms) | Apple Node, one process each (ms) | ratio |"
          " storehook, one process for all (µs/notification) | Apple Node, one process for all (µs/notification) | ratio")
    for row in rows:
        print(f"{row['round']} | {row['storehook_each_ms']:.2f} | {row['apple_each_ms']:.2f} | "
              f"{row['apple_each_ms'] / row['storehook_each_ms']:.1f}× | {row['storehook_all_us']:.0f} | "
              f"{row['apple_all_us']:.0f} | {row['apple_all_us'] / row['storehook_all_us']:.1f}×")
    med = lambda k: statistics.median(r[k] for r in rows)
    summary = {
        "notifications": n,
        "rounds": a.rounds,
        "storehook_each_ms": round(med("storehook_each_ms"), 3),
        "apple_each_ms": round(med("apple_each_ms"), 3),
        "ratio_each": round(med("apple_each_ms") / med("storehook_each_ms"), 1),
        "storehook_all_us": round(med("storehook_all_us"), 1),
        "apple_all_us": round(med("apple_all_us"), 1),
        "ratio_all": round(med("apple_all_us") / med("storehook_all_us"), 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
