#!/usr/bin/env python3
"""bench_cluster.py: `replay` into a Redis Cluster side by side with the same replay into
one standalone server and with `redis-cli --cluster import` (SCAN + MIGRATE) from a
server holding the same data; one RDB's db 0, in one run, rounds alternating, medians.

  python3 scripts/bench_cluster.py [--rdb FILE] [--server REDIS_SERVER] [--runs 3]
                                   [-n CONNECTIONS] [--masters 3] [--no-import]

Rows (fresh servers on 127.0.0.1, --save '' and no AOF):
  standalone     redis-migration replay --db 0 into one empty server
  cluster        redis-migration replay --db 0 into an empty cluster of --masters
                 masters (no replicas), given one node
  cluster import redis-cli --cluster import into an empty cluster from a server that
                 loaded the RDB (redis-cli --cluster import copies db 0: SCAN + MIGRATE),
                 once (it is slow)
Every run is checked: the masters together hold the keys of db 0.
Defaults: the 100 MB RDB 9 of `../shared/scripts/make_datasets.sh 0.85 …`, the Debian
redis-server 7.0 (its redis-cli has --cluster).
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

P = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
P.add_argument("--rdb", default=os.path.join(PERF, "data/s0.85/v9/dump.rdb"))
P.add_argument("--server", default="/usr/bin/redis-server")
P.add_argument("--runs", type=int, default=3)
P.add_argument("-n", "--connections", type=int, default=None, help="default: the tool's own")
P.add_argument("--masters", type=int, default=3)
P.add_argument("--no-import", action="store_true")
P.add_argument("--bin", default=os.path.join(ROOT, "target/release/redis-migration"))
A = P.parse_args()

if not os.path.exists(A.bin):
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def free_port(cluster=False):
    """A free port; for a cluster node one whose bus port (+10000) is free too."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if not cluster:
            return p
        if p + 10000 <= 65535:
            b = socket.socket()
            try:
                b.bind(("127.0.0.1", p + 10000))
                return p
            except OSError:
                pass
            finally:
                b.close()


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


class Server:
    def __init__(self, rdb=None, cluster=False):
        self.dir = tempfile.mkdtemp(prefix="bench-cluster-")
        self.port = free_port(cluster)
        args = [A.server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        if rdb:
            args += ["--dir", os.path.dirname(os.path.abspath(rdb)), "--dbfilename", os.path.basename(rdb)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                sys.exit(f"redis-server on {self.port} exited")
            try:
                if call(self.port, "PING") == b"+PONG":
                    return
            except OSError:
                pass
            time.sleep(0.01)
        sys.exit(f"redis-server on {self.port} never answered PONG")

    def db0(self):
        return int(call(self.port, "DBSIZE")[1:])

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["rm", "-rf", self.dir])


class Cluster:
    def __init__(self, masters):
        self.nodes = [Server(cluster=True) for _ in range(masters)]
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-yes"], stdout=subprocess.DEVNULL, check=True)
        t_end = time.monotonic() + 60
        while not all(b"cluster_state:ok" in call(n.port, "CLUSTER", "INFO") for n in self.nodes):
            if time.monotonic() > t_end:
                sys.exit("the cluster did not become ready")
            time.sleep(0.05)
        # A cluster just created is still gossiping and saving nodes.conf (with fsync) on
        # every change: let it settle, as a production cluster has.
        time.sleep(2)

    def db0(self):
        return sum(n.db0() for n in self.nodes)

    def stop(self):
        for n in self.nodes:
            n.stop()


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}: {p.stdout.decode()[-2000:]}{p.stderr.decode()[-2000:]}")
    return wall


conn_args = ["-n", str(A.connections)] if A.connections else []


def main():
    size = os.path.getsize(A.rdb)
    print(f"# {A.rdb}: {size / 1e6:.1f} MB; {A.server}; {A.masters} masters; connections: "
          f"{A.connections or 'default'}; {os.cpu_count()} cores; {A.runs} rounds")
    subprocess.run(["cat", A.rdb], stdout=subprocess.DEVNULL)
    src = Server(A.rdb)
    want = src.db0()
    print(f"# db 0 holds {want} keys")
    rows = {}
    for r in range(A.runs):
        s = Server()
        w = timed([A.bin, "replay", "-q", "--db", "0", *conn_args, "-dport", str(s.port), A.rdb])
        assert s.db0() == want, f"standalone: {s.db0()} keys, want {want}"
        rows.setdefault("replay --db 0, standalone", []).append(w)
        s.stop()
        c = Cluster(A.masters)
        w = timed([A.bin, "replay", "-q", "--db", "0", *conn_args, "-dport", str(c.nodes[0].port), A.rdb])
        assert c.db0() == want, f"cluster: {c.db0()} keys, want {want}"
        rows.setdefault(f"replay --db 0, cluster ({A.masters} masters)", []).append(w)
        c.stop()
    if not A.no_import:
        c = Cluster(A.masters)
        w = timed(["redis-cli", "--cluster", "import", f"127.0.0.1:{c.nodes[0].port}", "--cluster-from",
                   f"127.0.0.1:{src.port}", "--cluster-copy", "--cluster-replace"])
        assert c.db0() == want, f"redis-cli --cluster import: {c.db0()} keys, want {want}"
        rows.setdefault("redis-cli --cluster import", []).append(w)
        c.stop()
    src.stop()

    print(f"\n{'':42} {'median s':>9} {'MB/s':>7}")
    med = {}
    for name, v in rows.items():
        m = statistics.median(v)
        med[name] = m
        print(f"{name:42} {m:9.3f} {size / 1e6 / m:7.1f}  (runs: {', '.join(f'{x:.2f}' for x in v)})")
    print()
    d = med["replay --db 0, standalone"]
    c = med[f"replay --db 0, cluster ({A.masters} masters)"]
    print(f"cluster / standalone:                {c / d:.2f}x (target <= 1.3)")
    if not A.no_import:
        i = med["redis-cli --cluster import"]
        print(f"redis-cli --cluster import / ours:   {i / c:.1f}x (target >= 20)")


main()
