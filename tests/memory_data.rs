//! Keys of every type and size class for the memory model's tests, written the way
//! `print --format resp` writes them (RPUSH and SADD with 256 elements per command, ZADD
//! and HSET with 128 pairs, one XADD per entry, SET then APPEND in 4 MiB chunks), so
//! that the commands model and the server build the same structures.

use redis_migration::version::Version;

type Con = redis::Connection;

fn run(con: &mut Con, cmd: &mut redis::Cmd) {
    let _: redis::Value = cmd.query(con).unwrap();
}

fn chunks(con: &mut Con, name: &str, key: &str, args: &[Vec<u8>], per: usize) {
    for c in args.chunks(per) {
        run(con, redis::cmd(name).arg(key).arg(c));
    }
}

fn list(con: &mut Con, key: &str, items: &[Vec<u8>]) {
    chunks(con, "RPUSH", key, items, 256);
}

fn set(con: &mut Con, key: &str, items: &[Vec<u8>]) {
    chunks(con, "SADD", key, items, 256);
}

fn zset(con: &mut Con, key: &str, pairs: &[(f64, Vec<u8>)]) {
    let args: Vec<Vec<u8>> = pairs.iter().flat_map(|(s, m)| [format!("{s}").into_bytes(), m.clone()]).collect();
    chunks(con, "ZADD", key, &args, 256);
}

fn hash(con: &mut Con, key: &str, pairs: &[(Vec<u8>, Vec<u8>)]) {
    let args: Vec<Vec<u8>> = pairs.iter().flat_map(|(f, v)| [f.clone(), v.clone()]).collect();
    chunks(con, "HSET", key, &args, 256);
}

fn text(n: usize, fill: u8) -> Vec<u8> {
    vec![fill; n]
}

fn numbered(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{prefix}{i}").into_bytes()).collect()
}

/// Writes the keys into db 0 of an empty server of `version`.
pub(crate) fn write(con: &mut Con, version: Version) {
    strings(con);
    lists(con);
    sets(con);
    zsets(con);
    hashes(con, version);
    streams(con, version);
}

fn strings(con: &mut Con) {
    for v in [0i64, 7, 9999, 10000, -1, 123_456_789, i64::MAX] {
        run(con, redis::cmd("SET").arg(format!("s:int:{v}")).arg(v));
    }
    for n in [0, 1, 10, 20, 30, 40, 44, 45, 60, 100, 1000, 5000, 100_000] {
        run(con, redis::cmd("SET").arg(format!("s:{n}")).arg(text(n, b'v')));
        // Longer keys move the line between an embedded value and a raw one on 8.2.
        run(con, redis::cmd("SET").arg(format!("s:key-of-forty-bytes-for-the-kvobj:{n:05}")).arg(text(n, b'v')));
        run(con, redis::cmd("SET").arg(format!("s:ttl:{n}")).arg(text(n, b't')).arg("PX").arg(3_600_000));
    }
    run(con, redis::cmd("SET").arg("s:text:007").arg("007"));
    run(con, redis::cmd("SET").arg("s:float").arg("3.14"));
    let long_key = format!("s:long-key:{}", "k".repeat(130));
    run(con, redis::cmd("SET").arg(&long_key).arg("12"));
    run(con, redis::cmd("SET").arg(format!("{long_key}:emb")).arg("short value"));
    run(con, redis::cmd("SET").arg(format!("{long_key}:raw")).arg(text(300, b'r')));
    // Over one chunk: SET 4 MiB, then APPEND the rest.
    let chunk = 4 << 20;
    run(con, redis::cmd("SET").arg("s:big").arg(text(chunk, b'b')));
    run(con, redis::cmd("APPEND").arg("s:big").arg(text(1 << 20, b'c')));
}

fn lists(con: &mut Con) {
    for count in [1usize, 10, 100, 1000, 10_000] {
        for size in [3usize, 20, 200] {
            if count * size > 1 << 21 {
                continue;
            }
            let items: Vec<Vec<u8>> = (0..count).map(|i| format!("{i:0size$}x").into_bytes()).collect();
            list(con, &format!("l:{count}:{size}"), &items);
        }
    }
    list(con, "l:ints", &numbered("", 1000));
    list(con, "l:big-elements", &(0..5).map(|i| text(10_000, b'a' + i)).collect::<Vec<_>>());
    list(
        con,
        "l:mixed",
        &(0..300).map(|i| if i % 3 == 0 { text(i, b'm') } else { format!("{i}").into_bytes() }).collect::<Vec<_>>(),
    );
}

fn sets(con: &mut Con) {
    for n in [10usize, 512, 513, 2000] {
        set(con, &format!("set:ints:{n}"), &numbered("", n));
    }
    set(con, "set:wide-ints", &(0..50).map(|i| format!("{}", (i as i64) << 40).into_bytes()).collect::<Vec<_>>());
    for n in [10usize, 128, 129, 1000] {
        set(con, &format!("set:strings:{n}"), &numbered("member-", n));
    }
    let mut mixed = numbered("", 100);
    mixed.push(b"not-a-number".to_vec());
    set(con, "set:mixed", &mixed);
    set(con, "set:long", &(0..10).map(|i| text(100, b'a' + i)).collect::<Vec<_>>());
}

fn zsets(con: &mut Con) {
    for n in [10usize, 128, 129, 200, 2000] {
        let pairs: Vec<(f64, Vec<u8>)> = (0..n).map(|i| (i as f64, format!("m{i}").into_bytes())).collect();
        zset(con, &format!("z:{n}"), &pairs);
    }
    let fractions: Vec<(f64, Vec<u8>)> = (0..50).map(|i| (i as f64 / 7.0, format!("f{i}").into_bytes())).collect();
    zset(con, "z:fractions", &fractions);
    let big_fractions: Vec<(f64, Vec<u8>)> = (0..500).map(|i| (i as f64 / 7.0, format!("f{i}").into_bytes())).collect();
    zset(con, "z:fractions:500", &big_fractions);
    zset(con, "z:long", &[(1.0, text(100, b'l')), (2.0, b"short".to_vec())]);
}

fn hashes(con: &mut Con, version: Version) {
    for n in [10usize, 512, 513, 1000] {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            (0..n).map(|i| (format!("field-{i}").into_bytes(), format!("value-{i}").into_bytes())).collect();
        hash(con, &format!("h:{n}"), &pairs);
    }
    let ints: Vec<(Vec<u8>, Vec<u8>)> =
        (0..100).map(|i| (format!("{i}").into_bytes(), format!("{}", i * 1000).into_bytes())).collect();
    hash(con, "h:ints", &ints);
    let mut long: Vec<(Vec<u8>, Vec<u8>)> = (0..10).map(|i| (format!("f{i}").into_bytes(), b"v".to_vec())).collect();
    long.push((b"long".to_vec(), text(100, b'L')));
    hash(con, "h:long-value", &long);
    if version >= Version(7, 4) {
        // Field TTLs: a listpack with TTLs, and a hash table with some.
        let small: Vec<(Vec<u8>, Vec<u8>)> = (0..10).map(|i| (format!("f{i}").into_bytes(), b"v".to_vec())).collect();
        hash(con, "h:ttl:small", &small);
        run(
            con,
            redis::cmd("HPEXPIRE").arg("h:ttl:small").arg(3_600_000).arg("FIELDS").arg(3).arg("f1").arg("f2").arg("f3"),
        );
        let big: Vec<(Vec<u8>, Vec<u8>)> =
            (0..600).map(|i| (format!("field-{i}").into_bytes(), format!("value-{i}").into_bytes())).collect();
        hash(con, "h:ttl:big", &big);
        let fields: Vec<String> = (0..100).map(|i| format!("field-{i}")).collect();
        run(con, redis::cmd("HPEXPIRE").arg("h:ttl:big").arg(3_600_000).arg("FIELDS").arg(100).arg(&fields));
    }
}

fn streams(con: &mut Con, version: Version) {
    for n in [1u64, 10, 150, 1000] {
        let key = format!("x:{n}");
        for i in 1..=n {
            run(
                con,
                redis::cmd("XADD")
                    .arg(&key)
                    .arg(format!("{}-{}", 1_700_000_000_000 + i / 3, i % 3))
                    .arg("temp")
                    .arg(i)
                    .arg("city")
                    .arg("paris"),
            );
        }
    }
    for i in 1..=50u64 {
        let field = format!("field-{}", i % 4);
        run(con, redis::cmd("XADD").arg("x:varied").arg(format!("{i}-0")).arg(&field).arg(text(i as usize, b'z')));
    }
    // A group with pending entries, and a consumer with none.
    for i in 1..=60u64 {
        run(con, redis::cmd("XADD").arg("x:group").arg(format!("{i}-1")).arg("n").arg(i));
    }
    run(con, redis::cmd("XGROUP").arg("CREATE").arg("x:group").arg("g").arg("0"));
    run(
        con,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("alice")
            .arg("COUNT")
            .arg(20)
            .arg("STREAMS")
            .arg("x:group")
            .arg(">"),
    );
    if version >= Version(6, 2) {
        run(con, redis::cmd("XGROUP").arg("CREATECONSUMER").arg("x:group").arg("g").arg("bob"));
    }
    run(con, redis::cmd("XADD").arg("x:empty").arg("MAXLEN").arg("0").arg("5-5").arg("x").arg("y"));
}
