//! Where a command's keys are: a table after Redis's key specs (`COMMAND INFO`), for the
//! commands an AOF holds. Replay shards by these keys; a command whose keys cannot be
//! known (module commands, EVAL without keys, commands that act on whole databases) is
//! reported as such, never guessed.

/// The keys of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys<'a> {
    /// A command that touches no key and no data (PING).
    None,
    /// These keys, in the command's own db.
    Some(Vec<&'a [u8]>),
    /// The command acts on whole databases or on server state (FLUSHALL, SWAPDB,
    /// FUNCTION, SCRIPT, MOVE, COPY … DB, EVAL with no keys).
    Global,
    /// A command this table does not know (a module's, or a newer Redis's).
    Unknown,
}

/// How the keys are laid out after the command name.
enum Spec {
    /// No keys, harmless.
    Nothing,
    /// Acts on the server as a whole.
    Global,
    /// Keys at argv[first], argv[first + step]… up to argv[len - 1 - from_end].
    Range { first: usize, step: usize, from_end: usize },
    /// Keys at argv[first .. first + count].
    Fixed { first: usize, count: usize },
    /// argv[at] holds a count of keys that follow it (EVAL, ZUNIONSTORE's sources…);
    /// `before`: keys at argv[1..1 + before] in front of the count.
    Counted { at: usize, before: usize },
}

fn spec(name: &[u8]) -> Option<Spec> {
    let mut upper = [0u8; 24];
    if name.len() > upper.len() {
        return None;
    }
    for (u, c) in upper.iter_mut().zip(name) {
        *u = c.to_ascii_uppercase();
    }
    use Spec::*;
    let one = Fixed { first: 1, count: 1 };
    let two = Fixed { first: 1, count: 2 };
    let all = Range { first: 1, step: 1, from_end: 0 };
    Some(match &upper[..name.len()] {
        b"PING" | b"ECHO" | b"MULTI" | b"EXEC" | b"DISCARD" => Nothing,
        b"FLUSHALL" | b"FLUSHDB" | b"SWAPDB" | b"FUNCTION" | b"SCRIPT" | b"SELECT" | b"MOVE" | b"PUBLISH"
        | b"SPUBLISH" => Global,
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" | b"MGET" | b"WATCH" | b"PFCOUNT" | b"PFMERGE" | b"SINTERSTORE"
        | b"SUNIONSTORE" | b"SDIFFSTORE" | b"SINTER" | b"SUNION" | b"SDIFF" => all,
        b"MSET" | b"MSETNX" => Range { first: 1, step: 2, from_end: 0 },
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => Range { first: 1, step: 1, from_end: 1 },
        b"RENAME" | b"RENAMENX" | b"RPOPLPUSH" | b"LMOVE" | b"BLMOVE" | b"BRPOPLPUSH" | b"SMOVE" | b"ZRANGESTORE"
        | b"GEOSEARCHSTORE" | b"LCS" => two,
        b"BITOP" => Range { first: 2, step: 1, from_end: 0 },
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => Counted { at: 2, before: 0 },
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => Counted { at: 2, before: 1 },
        b"LMPOP" | b"ZMPOP" | b"SINTERCARD" | b"ZINTERCARD" | b"ZUNION" | b"ZINTER" | b"ZDIFF" => {
            Counted { at: 1, before: 0 }
        }
        b"XGROUP" => Fixed { first: 2, count: 1 },
        // COPY src dst [DB n]: with DB it writes another database (see `keys`).
        b"COPY" => two,
        b"SET" | b"SETEX" | b"PSETEX" | b"SETNX" | b"SETRANGE" | b"SETBIT" | b"GETSET" | b"GETDEL" | b"GETEX"
        | b"GET" | b"APPEND" | b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY" | b"INCRBYFLOAT" | b"BITFIELD" | b"STRLEN"
        | b"GETRANGE" | b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" | b"PERSIST" | b"TTL" | b"PTTL"
        | b"TYPE" | b"DUMP" | b"RESTORE" | b"RESTORE-ASKING" | b"OBJECT" | b"HSET" | b"HSETNX" | b"HMSET" | b"HDEL"
        | b"HINCRBY" | b"HINCRBYFLOAT" | b"HGET" | b"HGETALL" | b"HEXPIRE" | b"HPEXPIRE" | b"HEXPIREAT"
        | b"HPEXPIREAT" | b"HPERSIST" | b"HGETDEL" | b"HGETEX" | b"HSETEX" | b"LPUSH" | b"RPUSH" | b"LPUSHX"
        | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LSET" | b"LTRIM" | b"LREM" | b"LINSERT" | b"LRANGE" | b"LLEN" | b"SADD"
        | b"SREM" | b"SPOP" | b"SMEMBERS" | b"SCARD" | b"ZADD" | b"ZINCRBY" | b"ZREM" | b"ZREMRANGEBYSCORE"
        | b"ZREMRANGEBYRANK" | b"ZREMRANGEBYLEX" | b"ZPOPMIN" | b"ZPOPMAX" | b"ZRANGE" | b"ZCARD" | b"ZSCORE"
        | b"PFADD" | b"GEOADD" | b"XADD" | b"XDEL" | b"XTRIM" | b"XSETID" | b"XCLAIM" | b"XAUTOCLAIM" | b"XACK"
        | b"XLEN" | b"XRANGE" | b"SORT" | b"HSTRLEN" | b"HEXISTS" | b"HLEN" | b"HKEYS" | b"HVALS" | b"HMGET"
        | b"SISMEMBER" | b"SMISMEMBER" | b"SRANDMEMBER" | b"ZRANK" | b"ZREVRANK" | b"ZCOUNT" | b"LINDEX" | b"LPOS"
        | b"GETBIT" | b"BITCOUNT" | b"BITPOS" | b"XREADGROUP" => one,
        _ => return None,
    })
}

/// The keys of `argv` (`argv[0]` is the command name).
pub fn keys<'a>(argv: &[&'a [u8]]) -> Keys<'a> {
    let Some(name) = argv.first() else { return Keys::Unknown };
    let n = argv.len();
    let Some(spec) = spec(name) else { return Keys::Unknown };
    let picked: Option<Vec<&[u8]>> = match spec {
        Spec::Nothing => return Keys::None,
        Spec::Global => return Keys::Global,
        Spec::Fixed { first, count } => argv.get(first..first + count).map(<[_]>::to_vec),
        Spec::Range { first, step, from_end } => {
            let end = n.saturating_sub(from_end);
            (first < end).then(|| (first..end).step_by(step).map(|i| argv[i]).collect())
        }
        Spec::Counted { at, before } => {
            let count = argv.get(at).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse::<usize>().ok());
            match count {
                Some(0) if before == 0 => return Keys::Global, // EVAL with no keys: anything
                Some(c) if at + 1 + c <= n => {
                    let mut v: Vec<&[u8]> = argv[1..1 + before].to_vec();
                    v.extend_from_slice(&argv[at + 1..at + 1 + c]);
                    Some(v)
                }
                _ => None,
            }
        }
    };
    // SORT … STORE dest writes a second key; COPY … DB n writes another database.
    if name.eq_ignore_ascii_case(b"SORT") && argv.iter().any(|a| a.eq_ignore_ascii_case(b"STORE")) {
        return Keys::Unknown;
    }
    if name.eq_ignore_ascii_case(b"COPY") && argv.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"DB")) {
        return Keys::Global;
    }
    match picked {
        Some(v) if !v.is_empty() => Keys::Some(v),
        _ => Keys::Unknown, // too few arguments: the server will refuse it anyway
    }
}

/// CRC16/XMODEM (polynomial 0x1021), as Redis Cluster hashes keys.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The Redis Cluster slot of a key: CRC16 of its hash tag (the bytes between the first
/// `{` and the next `}`, when not empty) or of the whole key, mod 16384.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(tagged) & 16383
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn key_positions() {
        assert_eq!(keys(&argv("set a 1")), Keys::Some(vec![b"a"]));
        assert_eq!(keys(&argv("MSET a 1 b 2")), Keys::Some(vec![b"a", b"b"]));
        assert_eq!(keys(&argv("del a b c")), Keys::Some(vec![b"a", b"b", b"c"]));
        assert_eq!(keys(&argv("eval s 2 a b x")), Keys::Some(vec![b"a", b"b"]));
        assert_eq!(keys(&argv("eval s 0 x")), Keys::Global);
        assert_eq!(keys(&argv("zunionstore d 2 a b WEIGHTS 1 2")), Keys::Some(vec![b"d", b"a", b"b"]));
        assert_eq!(keys(&argv("xgroup CREATE s g $")), Keys::Some(vec![b"s"]));
        assert_eq!(keys(&argv("copy a b DB 3")), Keys::Global);
        assert_eq!(keys(&argv("flushall")), Keys::Global);
        assert_eq!(keys(&argv("graph.query g q")), Keys::Unknown);
        assert_eq!(keys(&argv("set")), Keys::Unknown);
        assert_eq!(keys(&argv("ping")), Keys::None);
    }

    #[test]
    fn slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 16383);
        assert_eq!(slot(b"{bar}x"), slot(b"bar"));
    }
}
