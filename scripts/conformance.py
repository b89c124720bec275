#!/usr/bin/env python3
"""Corpus conformance: every RDB in the shared corpus, run through `check` and `print`.

  scripts/conformance.py [CORPUS_DIR]     (default: $REDISMIGRATION_CORPUS or ../shared/corpus)

- Files real Redis 8.2 accepts (REDIS-8.2-VERDICTS.tsv) must pass `check` and `print`.
- Files meant to be corrupt or unsupported must give a clean error naming a byte offset.
- Other files Redis refuses (Valkey 9, 7.0-rc functions, RDB 13) may pass or fail cleanly.
- No file may crash the tool (a panic exits 101).
- Where HDT3213/rdb or badboy/rdb-rs ship expected JSON, our keys and values must agree.
Exit status 0 when everything conforms, 1 otherwise.
"""
import base64
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("REDISMIGRATION_BIN", os.path.join(ROOT, "target", "release", "redis-migration"))

# Refused by Redis and meant to be refused by us, with a clean error.
MUST_FAIL = {
    "redis_librdb/test/dumps/invalid_chksum_v8.rdb",
    "redis_librdb/test/dumps/future_v19.rdb",
    "redis_librdb/test/dumps/redis_ent_opcode_ram_lru.rdb",
    "redis_redis/tests/assets/corrupt_ziplist.rdb",
    "valkey-io_valkey/tests/assets/corrupt_ziplist.rdb",
    "HDT3213_rdb/cases/zipmap_big_len.rdb",
    "leonchen83_redis-replicator/src/test/resources/module.rdb",
    "maplestoria_redis-event/tests/rdb/module.rdb",
    "valkey-io_valkey__via_nexcache_fork/tests/assets/encodings-rdb75-unknown-types.rdb",
    "valkey-io_valkey__via_nexcache_fork/tests/assets/encodings-rdb987-unknown-types.rdb",
    "valkey-io_valkey__via_nexcache_fork/tests/assets/encodings-rdb987.rdb",
}


def run(args):
    p = subprocess.run([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def b(v):
    if isinstance(v, dict):
        return base64.b64decode(v["base64"])
    return v.encode()


def ours_by_key(path):
    rc, out, err = run(["print", "--format", "json", "--keep-expired", "-q", path])
    if rc != 0:
        raise RuntimeError(err.strip())
    keys = {}
    for line in out.splitlines():
        j = json.loads(line)
        if "key" in j:
            keys[(j["db"], b(j["key"]))] = j
    return keys


def score(x):
    return float(x)


def compare_hdt(path, expected_path):
    """Compares with HDT3213/rdb's JSON; returns a list of differences."""
    expected = json.load(open(expected_path))
    ours = ours_by_key(path)
    diffs = []
    theirs = {}
    for e in expected:
        if e.get("type") in ("aux", "functions", "module_aux", "db_size", "slot_info", None):
            continue
        theirs[(e["db"], e["key"].encode())] = e
    if set(theirs) != set(ours):
        diffs.append(f"key sets differ: only ours {sorted(set(ours) - set(theirs))[:5]}, "
                     f"only theirs {sorted(set(theirs) - set(ours))[:5]}")
    for k, e in theirs.items():
        o = ours.get(k)
        if o is None:
            continue
        t = e["type"]
        if t != o["type"]:
            diffs.append(f"{k}: type {o['type']} vs {t}")
            continue
        v = o["value"]
        if t == "string":
            # Their JSON replaces invalid UTF-8 with U+FFFD: compare the same lossy text.
            ok = b(v).decode("utf-8", "replace") == e["value"]
        elif t == "list":
            ok = [b(x) for x in v] == [x.encode() for x in e["values"]]
        elif t == "set":
            ok = sorted(b(x) for x in v) == sorted(x.encode() for x in e["members"])
        elif t == "zset":
            ok = sorted((b(m), score(s)) for m, s in v) == sorted((x["member"].encode(), float(x["score"])) for x in e["entries"])
        elif t == "hash":
            ok = {b(p[0]): b(p[1]) for p in v} == {f.encode(): x.encode() for f, x in e["hash"].items()}
            if ok and "expire" in e:
                ok = {b(p[0]): (p[2] if len(p) > 2 else 0) for p in v} == {f.encode(): x for f, x in e["expire"].items()}
        elif t == "stream":
            msgs = [m for node in e["entries"] for m in node["msgs"] if not m.get("deleted")]
            ok = [(x["id"], {b(f): b(val) for f, val in x["fields"]}) for x in v["entries"]] == \
                 [(m["id"], {f.encode(): val.encode() for f, val in m["fields"].items()}) for m in msgs]
        else:
            ok = True
        if not ok:
            diffs.append(f"{k}: {t} value differs")
    return diffs


def bb(v):
    return b(v)


def text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def compare_badboy(path, expected_path):
    """Compares with badboy/rdb-rs's JSON: one object per database (in file order); byte
    strings as text when valid UTF-8, else one char per byte; lists and sets are arrays,
    hashes and zsets objects. Our bytes are rendered the same way before comparing."""
    expected = json.load(open(expected_path))
    ours = ours_by_key(path)
    dbs = sorted({db for db, _ in ours})
    diffs = []
    if len(dbs) != len([d for d in expected if d]):
        return [f"{len(dbs)} databases vs {len(expected)}"]
    lat = lambda x: x
    for db, objs in zip(dbs, [d for d in expected if d]):
        theirs = {lat(k): v for k, v in objs.items()}
        mine = {text(k): j for (d, k), j in ours.items() if d == db}
        if set(theirs) != set(mine):
            diffs.append(f"db {db}: key sets differ")
            continue
        for k, j in mine.items():
            v, t = j["value"], j["type"]
            e = theirs[k]
            b = lambda x: text(bb(x))
            if t == "string":
                ok = b(v) == lat(e)
            elif t == "list":
                ok = [b(x) for x in v] == [lat(x) for x in e]
            elif t == "set":
                ok = sorted(b(x) for x in v) == sorted(lat(x) for x in e)
            elif t == "hash":
                ok = {b(p[0]): b(p[1]) for p in v} == {lat(f): lat(x) for f, x in e.items()}
            elif t == "zset":
                ok = {b(m): score(sc) for m, sc in v} == {lat(m): float(sc) for m, sc in e.items()}
            else:
                ok = True
            if not ok:
                diffs.append(f"db {db} key {k!r}: {t} value differs")
    return diffs


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "REDISMIGRATION_CORPUS", os.path.join(ROOT, "..", "shared", "corpus"))
    verdicts = {}
    for line in open(os.path.join(corpus, "REDIS-8.2-VERDICTS.tsv")):
        if line.startswith("#") or not line.strip():
            continue
        status, _why, rel = line.rstrip("\n").split("\t")
        verdicts[rel] = status
    failures = []
    counts = {"accepted": 0, "must-fail": 0, "other": 0, "json": 0}
    for rel, status in sorted(verdicts.items()):
        path = os.path.join(corpus, rel)
        crc, _, cerr = run(["check", "-q", "--threads", "1", path])
        prc, pout, perr = run(["print", "--format", "json", "-q", "--keep-expired", "--threads", "1", path])
        # Cut into 200-byte batches on 2 threads: the same output and the same verdict.
        brc, _, berr = run(["check", "-q", "--threads", "2", "--batch-bytes", "200", path])
        bprc, bpout, bperr = run(["print", "--format", "json", "-q", "--keep-expired", "--threads", "2",
                                  "--batch-bytes", "200", path])
        if 101 in (crc, prc, brc, bprc) or "panicked" in cerr + perr + berr + bperr:
            failures.append(f"{rel}: crashed: {cerr}{perr}{berr}{bperr}")
        elif (crc, cerr, prc, pout, perr) != (brc, berr, bprc, bpout, bperr):
            failures.append(f"{rel}: batched on 2 threads differs: check {crc}/{brc} print {prc}/{bprc} {berr}")
        elif rel in MUST_FAIL:
            counts["must-fail"] += 1
            if crc not in (1, 2) or prc != 2 or "at byte" not in cerr:
                failures.append(f"{rel}: should fail cleanly, check={crc} print={prc} {cerr.strip()}")
        elif status == "accepted":
            counts["accepted"] += 1
            if crc != 0 or prc != 0:
                failures.append(f"{rel}: Redis accepts it, we said check={crc} print={prc}: {cerr.strip()} {perr.strip()}")
        else:
            counts["other"] += 1
            if crc != 0 and "at byte" not in cerr:
                failures.append(f"{rel}: unclear error: {cerr.strip()}")
        expected = os.path.splitext(path)[0] + ".json"
        if rel.startswith("HDT3213_rdb/") and os.path.exists(expected) and crc == 0:
            counts["json"] += 1
            for d in compare_hdt(path, expected):
                failures.append(f"{rel}: vs HDT3213 JSON: {d}")
        if rel.startswith("badboy_rdb-rs/tests/dumps/") and crc == 0:
            expected = os.path.join(os.path.dirname(path), "json", os.path.basename(path)[:-4] + ".json")
            if os.path.exists(expected):
                counts["json"] += 1
                for d in compare_badboy(path, expected):
                    failures.append(f"{rel}: vs badboy/rdb-rs JSON: {d}")
    for f in failures:
        print("FAIL", f)
    print(f"corpus: {counts['accepted']} accepted by Redis pass, {counts['must-fail']} corrupt/unsupported "
          f"fail cleanly, {counts['other']} others, {counts['json']} compared with expected JSON")
    print(f"{len(verdicts) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
