//! The redis.conf settings that decide encodings, their defaults (`config.c`, the
//! `createSizeTConfig` / `createIntConfig` table of each version; the defaults have not
//! changed from 6.2 to 8.x) and a reader of `redis.conf` text for them.

use super::Thresholds;
use crate::version::Version;

/// A `redis.conf` setting that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis.conf line {line}: {name} {value:?}: {reason}")]
pub struct ConfigError {
    pub line: usize,
    pub name: String,
    pub value: String,
    pub reason: &'static str,
}

impl Thresholds {
    /// The defaults of `version` (the same on 6.2, 7.x and 8.x; the listpack settings of
    /// sets exist from 7.2 and are kept for older versions, which ignore them).
    pub fn defaults(version: Version) -> Thresholds {
        let _ = version;
        Thresholds {
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            set_max_listpack_entries: 128,
            set_max_listpack_value: 64,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_max_listpack_size: -2,
            list_compress_depth: 0,
            stream_node_max_bytes: 4096,
            stream_node_max_entries: 100,
        }
    }

    /// The thresholds a server of `version` started with this `redis.conf` text has: the
    /// defaults, then every setting the text names (last one wins, as Redis reads the
    /// file). The listpack names and the ziplist names 6.2 uses (`hash-max-ziplist-entries`,
    /// …) are both taken. Other settings, and `include` lines, are not looked at.
    pub fn from_redis_conf(text: &str, version: Version) -> Result<Thresholds, ConfigError> {
        let mut t = Thresholds::defaults(version);
        for (i, line) in text.lines().enumerate() {
            let args = split_args(line);
            let [name, value] = match args.as_slice() {
                [name, value] => [name.to_ascii_lowercase(), value.clone()],
                _ => continue,
            };
            let err = |reason| ConfigError { line: i + 1, name: name.clone(), value: value.clone(), reason };
            match name.as_str() {
                "hash-max-listpack-entries" | "hash-max-ziplist-entries" => {
                    t.hash_max_listpack_entries = integer(&value).ok_or_else(|| err("not a count"))?
                }
                "hash-max-listpack-value" | "hash-max-ziplist-value" => {
                    t.hash_max_listpack_value = memory(&value).ok_or_else(|| err("not a size"))?
                }
                "set-max-intset-entries" => {
                    t.set_max_intset_entries = integer(&value).ok_or_else(|| err("not a count"))?
                }
                "set-max-listpack-entries" => {
                    t.set_max_listpack_entries = integer(&value).ok_or_else(|| err("not a count"))?
                }
                // An INTEGER_CONFIG in `config.c`, without units.
                "set-max-listpack-value" => {
                    t.set_max_listpack_value = integer(&value).ok_or_else(|| err("not a count"))?
                }
                "zset-max-listpack-entries" | "zset-max-ziplist-entries" => {
                    t.zset_max_listpack_entries = integer(&value).ok_or_else(|| err("not a count"))?
                }
                "zset-max-listpack-value" | "zset-max-ziplist-value" => {
                    t.zset_max_listpack_value = memory(&value).ok_or_else(|| err("not a size"))?
                }
                "list-max-listpack-size" | "list-max-ziplist-size" => {
                    t.list_max_listpack_size = value.parse::<i32>().map(i64::from).map_err(|_| err("not an integer"))?
                }
                "list-compress-depth" => t.list_compress_depth = integer(&value).ok_or_else(|| err("not a count"))?,
                "stream-node-max-bytes" => t.stream_node_max_bytes = memory(&value).ok_or_else(|| err("not a size"))?,
                "stream-node-max-entries" => {
                    t.stream_node_max_entries = integer(&value).ok_or_else(|| err("not a count"))?
                }
                _ => {}
            }
        }
        Ok(t)
    }
}

/// A count: a non-negative decimal integer.
fn integer(s: &str) -> Option<u64> {
    s.parse::<u64>().ok()
}

/// A size with Redis's units (`util.c`, `memtoull`): b, k (1000), kb (1024), m, mb, g,
/// gb, in any case.
fn memory(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// A config line split as `sds.c`, `sdssplitargs`, splits it: words, or quoted strings
/// (double quotes with backslash escapes, single quotes verbatim); `#` starts a comment.
fn split_args(line: &str) -> Vec<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            while let Some(ch) = chars.next() {
                match ch {
                    '\\' if c == '"' => {
                        if let Some(n) = chars.next() {
                            word.push(match n {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            });
                        }
                    }
                    ch if ch == c => break,
                    ch => word.push(ch),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                word.push(ch);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_names_units_and_comments() {
        let conf = "# a comment\n\
                    hash-max-ziplist-entries 128\n\
                    zset-max-listpack-value 1kb\n\
                    ZSET-MAX-LISTPACK-ENTRIES \"256\"\n\
                    list-max-ziplist-size -3\n\
                    set-max-listpack-entries 64\n\
                    maxmemory 1gb\n\
                    include /etc/redis/other.conf\n";
        let t = Thresholds::from_redis_conf(conf, Version(7, 2)).unwrap();
        assert_eq!(t.hash_max_listpack_entries, 128);
        assert_eq!(t.zset_max_listpack_value, 1024);
        assert_eq!(t.zset_max_listpack_entries, 256);
        assert_eq!(t.list_max_listpack_size, -3);
        assert_eq!(t.set_max_listpack_entries, 64);
        assert_eq!(t.hash_max_listpack_value, 64);
    }

    #[test]
    fn refuses_what_redis_would_refuse() {
        let e = Thresholds::from_redis_conf("\nhash-max-listpack-entries lots\n", Version(7, 0)).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.name, "hash-max-listpack-entries");
        assert!(Thresholds::from_redis_conf("zset-max-listpack-value 3x", Version(7, 0)).is_err());
        assert!(Thresholds::from_redis_conf("list-max-listpack-size 99999999999", Version(7, 0)).is_err());
    }

    #[test]
    fn memory_units() {
        assert_eq!(memory("64"), Some(64));
        assert_eq!(memory("2k"), Some(2000));
        assert_eq!(memory("2KB"), Some(2048));
        assert_eq!(memory("1mb"), Some(1 << 20));
        assert_eq!(memory("-1"), None);
    }
}
