//! What twemproxy (nutcracker 0.5) takes. It answers the commands it knows and closes
//! the connection on any other (no error reply), so replay refuses those commands before
//! sending them. It has no SELECT and no MULTI; of the commands with several keys it
//! splits only DEL, UNLINK, EXISTS, MGET and MSET across its backends: the others would run
//! on the first key's backend whatever the others' are, so they are refused too.

/// True when twemproxy forwards `name` (any case) with the keys of `argv` correctly.
pub fn takes(argv: &[&[u8]]) -> bool {
    let Some(name) = argv.first() else { return false };
    let mut upper = [0u8; 20];
    if name.len() > upper.len() {
        return false;
    }
    for (u, c) in upper.iter_mut().zip(name.iter()) {
        *u = c.to_ascii_uppercase();
    }
    let name = &upper[..name.len()];
    if SPLIT.contains(&name) {
        return true;
    }
    if !SINGLE.contains(&name) {
        return false;
    }
    // EVAL/EVALSHA are routed by their first key: only with exactly one key.
    if name == b"EVAL" || name == b"EVALSHA" {
        return argv.get(2).is_some_and(|n| *n == b"1");
    }
    true
}

/// Multi-key commands twemproxy splits by key.
const SPLIT: &[&[u8]] = &[b"DEL", b"UNLINK", b"EXISTS", b"MGET", b"MSET", b"PING"];

/// Single-key commands it forwards (from nutcracker 0.5's request parser).
const SINGLE: &[&[u8]] = &[
    b"DUMP",
    b"EXPIRE",
    b"EXPIREAT",
    b"PERSIST",
    b"PEXPIRE",
    b"PEXPIREAT",
    b"PTTL",
    b"RESTORE",
    b"TTL",
    b"TYPE",
    b"TOUCH",
    b"APPEND",
    b"BITCOUNT",
    b"BITPOS",
    b"DECR",
    b"DECRBY",
    b"GET",
    b"GETBIT",
    b"GETRANGE",
    b"GETSET",
    b"INCR",
    b"INCRBY",
    b"INCRBYFLOAT",
    b"PSETEX",
    b"SET",
    b"SETBIT",
    b"SETEX",
    b"SETNX",
    b"SETRANGE",
    b"STRLEN",
    b"HDEL",
    b"HEXISTS",
    b"HGET",
    b"HGETALL",
    b"HINCRBY",
    b"HINCRBYFLOAT",
    b"HKEYS",
    b"HLEN",
    b"HMGET",
    b"HMSET",
    b"HSET",
    b"HSETNX",
    b"HVALS",
    b"HSTRLEN",
    b"LINDEX",
    b"LINSERT",
    b"LLEN",
    b"LPOP",
    b"LPUSH",
    b"LPUSHX",
    b"LRANGE",
    b"LREM",
    b"LSET",
    b"LTRIM",
    b"RPOP",
    b"RPUSH",
    b"RPUSHX",
    b"SADD",
    b"SCARD",
    b"SISMEMBER",
    b"SMEMBERS",
    b"SPOP",
    b"SRANDMEMBER",
    b"SREM",
    b"ZADD",
    b"ZCARD",
    b"ZCOUNT",
    b"ZINCRBY",
    b"ZLEXCOUNT",
    b"ZRANGE",
    b"ZRANGEBYLEX",
    b"ZRANGEBYSCORE",
    b"ZRANK",
    b"ZREM",
    b"ZREMRANGEBYLEX",
    b"ZREMRANGEBYRANK",
    b"ZREMRANGEBYSCORE",
    b"ZREVRANGE",
    b"ZREVRANGEBYLEX",
    b"ZREVRANGEBYSCORE",
    b"ZREVRANK",
    b"ZSCORE",
    b"PFADD",
    b"PFCOUNT",
    b"GEOADD",
    b"EVAL",
    b"EVALSHA",
];

#[cfg(test)]
mod tests {
    #[test]
    fn what_goes_through() {
        let t = |s: &str| super::takes(&s.split(' ').map(str::as_bytes).collect::<Vec<_>>());
        assert!(t("set k v") && t("RPUSH l a") && t("del a b") && t("eval s 1 k"));
        assert!(!t("xadd s * f v") && !t("select 1") && !t("multi") && !t("eval s 0") && !t("smove a b m"));
        assert!(!t("function load x") && !t("hpexpireat h 1 FIELDS 1 f"));
    }
}
