#!/usr/bin/env python3
"""Side-by-side speed of redis-migration on an AOF, against redis-check-aof and `cat`.

  python3 scripts/bench_aof.py [AOF] [--runs 5]

AOF defaults to the ~200 MB plain incr file of ../shared/scripts/make_aof.sh
($PERF_ROOT/data/aof/appendonlydir/*.incr.aof). redis-check-aof is the redis-server on
PATH run under that name (Debian's package installs the link). Prints median wall time,
MB/s, our peak anonymous memory and the ratios the AOF issue asks for: `check` against
redis-check-aof (target 5x) and `print --format resp > /dev/null` against
`cat FILE | cat > /dev/null` (target: at least half its speed). Nothing is asserted.
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import PERF_ROOT, ROOT, run_once  # noqa: E402


def main():
    default = sorted(glob.glob(os.path.join(PERF_ROOT, "data", "aof", "appendonlydir", "*.incr.aof")))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("aof", nargs="?", default=default[0] if default else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "redis-migration"))
    a = ap.parse_args()
    if not a.aof or not os.path.exists(a.aof):
        sys.exit("no AOF; make one with: bash ../shared/scripts/make_aof.sh")
    if not os.path.exists(a.bin):
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    f, ours = a.aof, a.bin
    t = {}
    for j in (1, 2):
        t[f"ours check -j{j}"] = (f"'{ours}' check -q -j{j} '{f}'", True)
        t[f"ours print resp -j{j}"] = (f"'{ours}' print -q --format resp -j{j} '{f}' > /dev/null", True)
        t[f"ours print json -j{j}"] = (f"'{ours}' print -q --format json -j{j} '{f}' > /dev/null", True)
    check_aof = shutil.which("redis-check-aof")
    if check_aof:
        t["redis-check-aof"] = (f"'{check_aof}' '{f}' > /dev/null", False)
    else:
        print("redis-check-aof not found (apt-get install redis-server)")
    t["cat | cat"] = (f"cat '{f}' | cat > /dev/null", False)
    size = os.path.getsize(f)
    with open(f, "rb") as fh:
        while fh.read(1 << 24):
            pass
    print(f"file: {f} ({size / 1e6:.1f} MB); {os.cpu_count()} cores; load average before: "
          f"{os.getloadavg()[0]:.2f}; {a.runs} runs each, medians")
    walls = {k: [] for k in t}
    peaks = {k: 0 for k in t}
    for _ in range(a.runs):
        for name, (cmd, sample) in t.items():
            wall, code, peak = run_once(cmd, sample)
            if code != 0:
                sys.exit(f"{name} failed (exit {code}): {cmd}")
            walls[name].append(wall)
            peaks[name] = max(peaks[name], peak)
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"{'tool':24} {'median s':>9} {'MB/s':>8} {'peak RssAnon':>13}")
    for name in t:
        anon = f"{peaks[name] / 1024:.1f} MB" if t[name][1] else ""
        print(f"{name:24} {med[name]:9.3f} {size / 1e6 / med[name]:8.1f} {anon:>13}")
    print("ratios (their time / our time; higher is faster):")
    for j in (1, 2):
        if "redis-check-aof" in med:
            r = med["redis-check-aof"] / med[f"ours check -j{j}"]
            print(f"  ours check -j{j} vs redis-check-aof   {r:6.2f}x  (target 5x)")
        r = med["cat | cat"] / med[f"ours print resp -j{j}"]
        print(f"  ours print resp -j{j} vs cat | cat    {r:6.2f}x  (target 0.5x)")
    for what in ("check", "print resp", "print json"):
        print(f"  {what}: 1 -> 2 threads {med[f'ours {what} -j1'] / med[f'ours {what} -j2']:.2f}x")


if __name__ == "__main__":
    main()
