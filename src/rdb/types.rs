//! What the decoder produces: records that borrow from the input where they can.

use std::borrow::Cow;

/// A Redis string: borrowed from the file, owned (decompressed), an integer that the
/// file stored in integer form (its logical value is the canonical decimal text), or
/// LZF-compressed bytes of the file, already validated, expanded only when read (so a
/// deep check never spends time producing bytes nobody looks at).
#[derive(Debug, Clone)]
pub enum Str<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    Int(i64),
    Lzf {
        data: &'a [u8],
        len: usize,
    },
    /// A range of an expanded (LZF-compressed) container that its elements share.
    Shared(std::rc::Rc<Vec<u8>>, std::ops::Range<usize>),
}

/// Equal when the logical bytes are.
impl PartialEq for Str<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Str::Int(a), Str::Int(b)) => a == b,
            _ => self.len() == other.len() && self.bytes() == other.bytes(),
        }
    }
}

impl<'a> Str<'a> {
    /// The logical bytes (integers rendered as decimal text).
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Str::Borrowed(b) => Cow::Borrowed(b),
            Str::Owned(v) => Cow::Borrowed(v),
            Str::Shared(v, r) => Cow::Borrowed(&v[r.clone()]),
            Str::Int(i) => Cow::Owned(itoa::Buffer::new().format(*i).as_bytes().to_vec()),
            Str::Lzf { .. } => {
                let mut v = Vec::new();
                self.append_to(&mut v);
                Cow::Owned(v)
            }
        }
    }

    /// The bytes, when they are at hand without expansion or formatting.
    #[inline]
    pub fn as_slice(&self) -> Option<&[u8]> {
        match self {
            Str::Borrowed(b) => Some(b),
            Str::Owned(v) => Some(v),
            Str::Shared(v, r) => Some(&v[r.clone()]),
            Str::Int(_) | Str::Lzf { .. } => None,
        }
    }

    /// Appends the logical bytes to `out`.
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        match self {
            Str::Borrowed(b) => out.extend_from_slice(b),
            Str::Owned(v) => out.extend_from_slice(v),
            Str::Shared(v, r) => out.extend_from_slice(&v[r.clone()]),
            Str::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Str::Lzf { data, len } => {
                let start = out.len();
                // Validated when read, so expansion succeeds; should it not, the bytes
                // written so far are taken back rather than left half-done.
                if super::lzf::decompress_append(data, *len, out).is_err() {
                    out.truncate(start);
                }
            }
        }
    }

    /// Length of the logical bytes.
    pub fn len(&self) -> usize {
        match self {
            Str::Borrowed(b) => b.len(),
            Str::Owned(v) => v.len(),
            Str::Shared(_, r) => r.len(),
            Str::Int(i) => decimal_len(*i),
            Str::Lzf { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How many bytes `i` takes as decimal text (a sign included).
#[inline]
fn decimal_len(i: i64) -> usize {
    let mut n = i.unsigned_abs();
    let mut len = 1 + (i < 0) as usize;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// A stream ID `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry<'a> {
    pub id: StreamId,
    pub fields: Vec<(Str<'a>, Str<'a>)>,
}

/// A pending entry of a consumer group (the group PEL), with the consumer that owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consumer<'a> {
    pub name: Str<'a>,
    pub seen_time_ms: i64,
    /// RDB ≥ 11 (stream v3) only.
    pub active_time_ms: Option<i64>,
    /// IDs of the group's pending entries this consumer owns.
    pub pending: Vec<StreamId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroup<'a> {
    pub name: Str<'a>,
    pub last_delivered_id: StreamId,
    /// Stream v2+; `None` where the file has none or stores "unknown" (-1).
    pub entries_read: Option<u64>,
    pub pending: Vec<PendingEntry>,
    pub consumers: Vec<Consumer<'a>>,
}

/// Idempotent-producer state of a stream (Redis 8.6, stream v4).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamIdmp<'a> {
    pub duration_s: u64,
    pub max_entries: u64,
    pub producers: Vec<(Str<'a>, Vec<(Str<'a>, StreamId)>)>,
    pub iids_added: u64,
    pub iids_duplicates: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stream<'a> {
    pub entries: Vec<StreamEntry<'a>>,
    /// Number of live entries as the file states it.
    pub length: u64,
    pub last_id: StreamId,
    /// Stream v2+ fields; `None` for v1 streams (RDB 9), which do not store them.
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
    pub groups: Vec<ConsumerGroup<'a>>,
    pub idmp: Option<StreamIdmp<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HashField<'a> {
    pub field: Str<'a>,
    pub value: Str<'a>,
    /// Absolute expiry of this field (hash-field TTLs, Redis 7.4+ / Valkey 9).
    pub expire_at_ms: Option<i64>,
}

/// A module value kept opaque: the module's name, its encoding version and the raw
/// value bytes (module id and tagged items through the terminating EOF item).
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleValue<'a> {
    pub name: String,
    pub encver: u64,
    pub raw: &'a [u8],
}

/// The logical value of a key, independent of the encoding it was stored in.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    String(Str<'a>),
    List(Vec<Str<'a>>),
    Set(Vec<Str<'a>>),
    ZSet(Vec<(Str<'a>, f64)>),
    Hash(Vec<HashField<'a>>),
    Stream(Box<Stream<'a>>),
    Module(ModuleValue<'a>),
}

/// The logical types a filter can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueType {
    String,
    List,
    Set,
    ZSet,
    Hash,
    Stream,
    Module,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::List => "list",
            ValueType::Set => "set",
            ValueType::ZSet => "zset",
            ValueType::Hash => "hash",
            ValueType::Stream => "stream",
            ValueType::Module => "module",
        }
    }
}

impl Value<'_> {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::List(_) => ValueType::List,
            Value::Set(_) => ValueType::Set,
            Value::ZSet(_) => ValueType::ZSet,
            Value::Hash(_) => ValueType::Hash,
            Value::Stream(_) => ValueType::Stream,
            Value::Module(_) => ValueType::Module,
        }
    }
}

/// One key of the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub db: u64,
    pub key: Str<'a>,
    /// Absolute expiry; expired keys are kept (sinks decide what to do with them).
    pub expire_at_ms: Option<i64>,
    /// LRU idle time in seconds (IDLE opcode).
    pub idle_s: Option<u64>,
    /// LFU counter (FREQ opcode).
    pub freq: Option<u8>,
    /// The RDB type byte the value was stored with.
    pub rdb_type: u8,
    pub value: Value<'a>,
    /// The raw value bytes as stored in the file (after the key): with the type byte
    /// they form a DUMP payload body.
    pub raw_value: &'a [u8],
    /// Redis 8.6 KEY_META block that preceded the key, raw.
    pub key_meta: Option<&'a [u8]>,
}

/// One key of the snapshot with its value undecoded (see `Parser::raw`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord<'a> {
    pub db: u64,
    pub key: Str<'a>,
    pub expire_at_ms: Option<i64>,
    pub rdb_type: u8,
    /// The value's bytes as stored (after the key).
    pub raw_value: &'a [u8],
}

/// A function library (FUNCTION2) or a 7.0-rc single function (FUNCTION_PRE_GA).
#[derive(Debug, Clone, PartialEq)]
pub enum Function<'a> {
    Library { code: Str<'a> },
    PreGa { name: Str<'a>, engine: Str<'a>, description: Option<Str<'a>>, code: Str<'a> },
}

/// How the trailer's checksum turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// RDB < 5 has no checksum.
    Absent,
    /// Stored as 0: the server saved with `rdbchecksum no`.
    Disabled,
    /// Verified.
    Ok(u64),
    /// Not verified (the caller asked not to): the stored value.
    Skipped(u64),
}

/// Everything the decoder emits, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    Aux {
        key: Str<'a>,
        value: Str<'a>,
    },
    SelectDb(u64),
    ResizeDb {
        db_size: u64,
        expires_size: u64,
    },
    SlotInfo {
        slot: u64,
        size: u64,
        expires_size: u64,
    },
    ModuleAux {
        name: String,
        encver: u64,
        when: u64,
        raw: &'a [u8],
    },
    Function(Function<'a>),
    /// Valkey 9 SLOT_IMPORT: an atomic slot migration job in progress.
    SlotImport {
        job: Str<'a>,
        ranges: Vec<(u64, u64)>,
    },
    Record(Record<'a>),
    /// A collection with no elements: Redis skips such keys when loading; so do we.
    EmptyKey {
        db: u64,
        key: Str<'a>,
        rdb_type: u8,
    },
    /// A record stepped over in skim mode.
    Skimmed,
    /// A record in raw mode: its value stepped over, its stored bytes at hand.
    Raw(RawRecord<'a>),
    /// The EOF opcode; `trailing` bytes follow the checksum (an AOF tail, an EOF mark).
    End {
        checksum: Checksum,
        trailing: usize,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_lengths() {
        for i in [0i64, 1, 9, 10, 99, 100, -1, -9, -10, 12345, i64::MAX, i64::MIN] {
            assert_eq!(super::decimal_len(i), i.to_string().len(), "{i}");
        }
    }
}
