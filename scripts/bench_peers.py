#!/usr/bin/env python3
"""Side-by-side speed of redis-migration and the peer RDB tools, on one file, in one run.

  python3 scripts/bench_peers.py [RDB] [--runs 3] [--skip-slow] [--tools a,b,...]

RDB defaults to the 100 MB RDB 12 dataset of ../shared/scripts/make_datasets.sh 0.85 82
($PERF_ROOT/data/s0.85/v12/dump.rdb). The peers come from ../shared/scripts/setup.sh:
redis-check-rdb (redis-server 8.2 started under that name), rdb-rs (the `rdb` crate CLI),
rdb-py, rdbtools. A peer that is not installed is left out and said so.

Every command runs --runs times, alternating tools within each round so that all see the
same machine; the file is read once first so that every run reads the page cache. Prints
median wall time, MB/s (10^6 bytes), our peak anonymous memory (RssAnon sampled from
/proc every 5 ms; VmRSS would count the mapped file), and the ratios the speed issue asks
for. Nothing here is asserted: numbers are for reading, on a machine said to be quiet.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERF_ROOT = os.environ.get("PERF_ROOT", os.path.expanduser("~/.cache/redis-migration-bench"))
VENV = os.path.join(PERF_ROOT, "venv")
SHARED_SCRIPTS = os.path.join(ROOT, "..", "shared", "scripts")


def find(path):
    return path if path and os.path.exists(path) else None


def tools(rdb, ours):
    """name -> (shell command, is ours)."""
    check_rdb = find(os.path.join(PERF_ROOT, "bin", "redis-check-rdb-82"))
    rdbrs = find(os.path.join(PERF_ROOT, "tools", "rdb-rs", "bin", "rdb")) or shutil.which("rdb-rs")
    py = find(os.path.join(VENV, "bin", "python"))
    rdbtools = find(os.path.join(VENV, "bin", "rdb"))
    rdbpy_script = find(os.path.join(SHARED_SCRIPTS, "rdbpy_parse.py"))
    t = {}
    for j in (1, 2):
        t[f"ours check -j{j}"] = (f"'{ours}' check -q -j{j} '{rdb}'", True)
        t[f"ours print json -j{j}"] = (f"'{ours}' print -q --format json -j{j} '{rdb}' > /dev/null", True)
        t[f"ours print resp -j{j}"] = (f"'{ours}' print -q --format resp -j{j} '{rdb}' > /dev/null", True)
        t[f"ours print resp restore -j{j}"] = (
            f"'{ours}' print -q --format resp --mode restore -j{j} '{rdb}' > /dev/null", True)
    if check_rdb:
        t["redis-check-rdb"] = (f"'{check_rdb}' '{rdb}' > /dev/null", False)
    if rdbrs:
        t["rdb-rs nil"] = (f"'{rdbrs}' --format nil '{rdb}'", False)
        t["rdb-rs json"] = (f"'{rdbrs}' --format json '{rdb}' > /dev/null", False)
        t["rdb-rs protocol"] = (f"'{rdbrs}' --format protocol '{rdb}' > /dev/null", False)
    if py and rdbpy_script:
        t["rdb-py"] = (f"'{py}' '{rdbpy_script}' '{rdb}' > /dev/null", False)
    if rdbtools:
        t["rdbtools json"] = (f"'{rdbtools}' --command json '{rdb}' > /dev/null", False)
        t["rdbtools protocol"] = (f"'{rdbtools}' --command protocol '{rdb}' > /dev/null", False)
    return t


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(cmd, sample):
    """Wall seconds, exit code, peak RssAnon in KB (of the exec'd process)."""
    start = time.monotonic()
    # A peer's own error output (rdbtools refuses RDB 12 with a traceback) is not ours to show.
    p = subprocess.Popen(["bash", "-c", "exec " + cmd if sample else cmd],
                         stderr=None if sample else subprocess.DEVNULL)
    peak = 0
    while p.poll() is None:
        if sample:
            peak = max(peak, status_kb(p.pid, "RssAnon"))
        time.sleep(0.005)
    return time.monotonic() - start, p.returncode, peak


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(port, *args):
    """One command over a fresh connection; its first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
        out = b"*%d\r\n" % len(args)
        for x in args:
            x = x if isinstance(x, bytes) else str(x).encode()
            out += b"$%d\r\n%s\r\n" % (len(x), x)
        s.sendall(out)
        return s.makefile("rb").readline().strip()


def wait_pong(port, proc, deadline=600):
    t_end = time.monotonic() + deadline
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            sys.exit(f"redis-server on {port} exited")
        try:
            if call(port, "PING") == b"+PONG":
                return
        except OSError:
            pass
        time.sleep(0.002)
    sys.exit(f"redis-server on {port} never answered PONG")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rdb", nargs="?", default=os.path.join(PERF_ROOT, "data", "s0.85", "v12", "dump.rdb"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-slow", action="store_true", help="leave out rdbtools (about 10 MB/s)")
    ap.add_argument("--tools", help="comma-separated names to run (default: all found)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "redis-migration"))
    a = ap.parse_args()
    if not os.path.exists(a.rdb):
        sys.exit(f"{a.rdb}: missing; make it with: bash ../shared/scripts/make_datasets.sh 0.85 82")
    if not os.path.exists(a.bin):
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    size = os.path.getsize(a.rdb)
    t = tools(a.rdb, a.bin)
    if a.skip_slow:
        t = {k: v for k, v in t.items() if not k.startswith("rdbtools")}
    if a.tools:
        wanted = set(a.tools.split(","))
        t = {k: v for k, v in t.items() if k in wanted}
    missing = [p for p in ("redis-check-rdb", "rdb-rs nil", "rdb-py", "rdbtools json") if p not in tools(a.rdb, a.bin)]
    if missing:
        print(f"not installed (run ../shared/scripts/setup.sh): {', '.join(missing)}")
    with open(a.rdb, "rb") as f:
        while f.read(1 << 24):
            pass
    load = os.getloadavg()[0]
    print(f"file: {a.rdb} ({size / 1e6:.1f} MB); {os.cpu_count()} cores; load average before: {load:.2f}; "
          f"{a.runs} runs each, medians")
    walls = {k: [] for k in t}
    peaks = {k: 0 for k in t}
    failed = {}
    for _ in range(a.runs):
        for name, (cmd, ours) in t.items():
            if name in failed:
                continue
            wall, code, peak = run_once(cmd, ours)
            if code != 0:
                failed[name] = code
                continue
            walls[name].append(wall)
            peaks[name] = max(peaks[name], peak)
    med = {k: statistics.median(v) for k, v in walls.items() if k not in failed}
    print(f"{'tool':32} {'median s':>9} {'MB/s':>8} {'peak RssAnon':>13}")
    for name in t:
        if name in failed:
            print(f"{name:32} failed on this file (exit {failed[name]}); left out of the ratios")
            continue
        anon = f"{peaks[name] / 1024:.1f} MB" if t[name][1] else ""
        print(f"{name:32} {med[name]:9.3f} {size / 1e6 / med[name]:8.1f} {anon:>13}")

    def ratio(ours, peer, target):
        if ours in med and peer in med:
            r = med[peer] / med[ours]
            print(f"  {ours:28} vs {peer:18} {r:6.2f}x  (target {target}x)")

    print("ratios (peer time / our time; higher is faster):")
    for j in (1, 2):
        ratio(f"ours check -j{j}", "rdb-rs nil", 3)
        ratio(f"ours check -j{j}", "redis-check-rdb", 6)
        ratio(f"ours print json -j{j}", "rdb-rs json", 4)
        ratio(f"ours print resp -j{j}", "rdb-rs protocol", 20)
        ratio(f"ours print json -j{j}", "rdb-py", 1)
        ratio(f"ours print json -j{j}", "rdbtools json", 1)
        ratio(f"ours print resp -j{j}", "rdbtools protocol", 1)
    for what in ("check", "print json", "print resp"):
        a1, a2 = f"ours {what} -j1", f"ours {what} -j2"
        if a1 in med and a2 in med:
            print(f"  {what}: 1 -> 2 threads {med[a1] / med[a2]:.2f}x")


if __name__ == "__main__":
    main()
