#!/usr/bin/env python3
"""`inspect` side by side with `check` and redis-rdb-tools' memory report, on one file.

  python3 scripts/bench_inspect.py [RDB] [--runs 3] [--no-rdbtools]

RDB defaults to the 100 MB RDB 9 dataset of ../shared/scripts/make_datasets.sh 0.85 62
($PERF_ROOT/data/s0.85/v9/dump.rdb: redis-rdb-tools reads nothing newer). Runs, alternating
within each round: our `check`, `inspect` (report as JSON), `inspect --keys` (one CSV row per
key), and rdbtools' `rdb -c memory` (its per-key CSV; slow, once). Prints median wall
times, our peak anonymous memory and the ratios the inspect issue names (inspect / check
at most 1.5x; rdbtools / inspect at least 30x). Nothing is asserted.
"""
import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import PERF_ROOT, ROOT, VENV, find, run_once  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rdb", nargs="?", default=os.path.join(PERF_ROOT, "data", "s0.85", "v9", "dump.rdb"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-rdbtools", action="store_true")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "redis-migration"))
    a = ap.parse_args()
    if not os.path.exists(a.rdb):
        sys.exit(f"{a.rdb}: missing; make it with: bash ../shared/scripts/make_datasets.sh 0.85 62")
    ours, rdb = a.bin, a.rdb
    t = {
        "check -j2": f"'{ours}' check -q -j2 '{rdb}'",
        "inspect -j2 (json)": f"'{ours}' inspect -j2 --format json '{rdb}' > /dev/null",
        "inspect -j2 --keys": f"'{ours}' inspect -j2 --keys '{rdb}' > /dev/null",
        "check -j1": f"'{ours}' check -q -j1 '{rdb}'",
        "inspect -j1 (json)": f"'{ours}' inspect -j1 --format json '{rdb}' > /dev/null",
    }
    with open(rdb, "rb") as f:
        while f.read(1 << 24):
            pass
    size = os.path.getsize(rdb)
    print(f"file: {rdb} ({size / 1e6:.1f} MB); {os.cpu_count()} cores; {a.runs} runs each, medians")
    walls = {k: [] for k in t}
    peaks = {k: 0 for k in t}
    for _ in range(a.runs):
        for name, cmd in t.items():
            wall, code, peak = run_once(cmd, True)
            if code != 0:
                sys.exit(f"{name}: exit {code}")
            walls[name].append(wall)
            peaks[name] = max(peaks[name], peak)
    med = {k: statistics.median(v) for k, v in walls.items()}
    rdbtools = find(os.path.join(VENV, "bin", "rdb"))
    if rdbtools and not a.no_rdbtools:
        wall, code, _ = run_once(f"'{rdbtools}' -c memory -f /dev/null '{rdb}'", False)
        if code == 0:
            med["rdbtools memory"] = wall
    print(f"{'':28} {'median s':>9} {'MB/s':>8} {'peak RssAnon':>13}")
    for name, m in med.items():
        anon = f"{peaks[name] / 1024:.1f} MB" if name in peaks else ""
        print(f"{name:28} {m:9.3f} {size / 1e6 / m:8.1f} {anon:>13}")
    for j in ("-j1", "-j2"):
        r = med[f"inspect {j} (json)"] / med[f"check {j}"]
        print(f"inspect {j} / check {j}: {r:.2f}x (target <= 1.5)")
    if "rdbtools memory" in med:
        r = med["rdbtools memory"] / med["inspect -j2 --keys"]
        print(f"rdbtools memory / inspect -j2 --keys: {r:.0f}x (target >= 30)")


if __name__ == "__main__":
    main()
