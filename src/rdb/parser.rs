//! The opcode loop: header, AUX/SELECTDB/RESIZEDB/expiry/LRU/LFU/module/function opcodes,
//! keys and values, EOF and the CRC-64 trailer. `Parser::next_item` yields items in file
//! order; per-key state (expiry, idle, freq, key metadata) applies to the next key only.

use super::constants::*;
use super::crc64;
use super::cursor::Cursor;
use super::error::{Error, ErrorKind, Result};
use super::module::{module_name, skip_items};
use super::skim::skip_value;
use super::string::{read_len, read_str, skip_str};
use super::types::{Checksum, Function, Item, RawRecord, Record};
use super::value::{read_value, type_name};

/// Who wrote the file: type 22 and opcodes 0xF2/0xF3 mean different things for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Redis,
    Valkey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub vendor: Vendor,
    pub version: u32,
}

impl Header {
    pub const SIZE: usize = 9;

    pub fn magic(&self) -> String {
        match self.vendor {
            Vendor::Redis => format!("REDIS{:04}", self.version),
            Vendor::Valkey => format!("VALKEY{:03}", self.version),
        }
    }
}

/// Reads and checks the 9-byte header: `REDIS` + 4 digits or `VALKEY` + 3 digits.
pub fn parse_header(data: &[u8]) -> Result<Header> {
    let head = data.get(..Header::SIZE).ok_or_else(|| {
        if data.is_empty()
            || b"REDIS".starts_with(&data[..data.len().min(5)])
            || b"VALKEY".starts_with(&data[..data.len().min(6)])
        {
            Error::truncated(data.len() as u64, "the 9-byte RDB header")
        } else {
            Error::corrupt(0, "not an RDB file: expected \"REDIS\" or \"VALKEY\" at the start")
        }
    })?;
    let (vendor, digits) = if head.starts_with(b"REDIS") {
        (Vendor::Redis, &head[5..])
    } else if head.starts_with(b"VALKEY") {
        (Vendor::Valkey, &head[6..])
    } else {
        return Err(Error::corrupt(0, "not an RDB file: expected \"REDIS\" or \"VALKEY\" at the start"));
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::corrupt(0, format!("RDB version {:?} is not a number", String::from_utf8_lossy(digits))));
    }
    let version: u32 = digits.iter().fold(0, |v, d| v * 10 + (d - b'0') as u32);
    let known = match vendor {
        Vendor::Redis => (1..=RDB_VERSION_MAX).contains(&version),
        Vendor::Valkey => version == VALKEY_RDB_VERSION,
    };
    if !known {
        let magic = String::from_utf8_lossy(head);
        return Err(Error::unsupported(
            0,
            format!("RDB version {version} ({magic}): this reader knows REDIS0001-REDIS{RDB_VERSION_MAX:04} and VALKEY{VALKEY_RDB_VERSION:03}"),
        ));
    }
    Ok(Header { vendor, version })
}

/// What the opcode loop carries from one item to the next: the selected db and the
/// per-key opcodes read for the key that comes next. A parser can resume from it at any
/// item boundary, which is how batches are decoded in parallel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct State<'a> {
    pub db: u64,
    expire_at_ms: Option<i64>,
    idle_s: Option<u64>,
    freq: Option<u8>,
    key_meta: Option<&'a [u8]>,
}

/// Iterates over the items of an RDB held in memory.
pub struct Parser<'a> {
    cur: Cursor<'a>,
    header: Header,
    state: State<'a>,
    verify_checksum: bool,
    skim: bool,
    /// Records come as `Item::Raw`.
    raw: bool,
    /// String records (type 0) come as `Item::Raw`, the others decoded.
    raw_strings: bool,
    /// Values come whole (off for `check`, see [`Parser::contents`]).
    contents: bool,
    done: bool,
}

impl<'a> Parser<'a> {
    pub fn new(data: &'a [u8]) -> Result<Parser<'a>> {
        let header = parse_header(data)?;
        // The header is whole (`parse_header` read it): the items start after it.
        Ok(Parser::resume(data, header, Header::SIZE, State::default()))
    }

    /// A parser that continues at `pos` (an item boundary some other parser reached,
    /// with the state it had there).
    pub fn resume(data: &'a [u8], header: Header, pos: usize, state: State<'a>) -> Parser<'a> {
        let mut cur = Cursor::new(data);
        // `pos` came from a parser over the same data, so it is in range.
        let _ = cur.skip(pos as u64, "a resume position");
        Parser {
            cur,
            header,
            state,
            verify_checksum: true,
            skim: false,
            raw: false,
            raw_strings: false,
            contents: true,
            done: false,
        }
    }

    /// Skim mode: records are stepped over by their length headers and come back as
    /// `Item::Skimmed` (no LZF expansion, no container walk, no checksum).
    pub fn skim(mut self, yes: bool) -> Self {
        self.skim = yes;
        self.verify_checksum = !yes;
        self
    }

    /// Raw mode: records come back as `Item::Raw`, their values stepped over by their
    /// length headers (no value decoded or validated beyond its framing; the checksum
    /// is still verified at the end).
    pub fn raw(mut self, yes: bool) -> Self {
        self.raw = yes;
        self
    }

    /// With `false`, the parts of values that a caller which only checks the file never
    /// looks at are validated as fully as ever but not kept: `Stream::entries` comes back
    /// empty, and a list holds its first element only (enough to show it is not empty).
    /// Set, zset and hash members are always kept: `check` looks for duplicates.
    pub fn contents(mut self, keep: bool) -> Self {
        self.contents = keep;
        self
    }

    /// Raw mode for string records only (type 0): they come as `Item::Raw`, every other
    /// record decoded.
    pub fn raw_strings(mut self, yes: bool) -> Self {
        self.raw_strings = yes;
        self
    }

    /// LZF-compressed strings expanded as they are read (see [`Cursor::expand_strings`]).
    pub fn expand_strings(mut self, yes: bool) -> Self {
        self.cur.expand_strings(yes);
        self
    }

    /// The state to resume from at the current position.
    pub fn state(&self) -> State<'a> {
        self.state
    }

    /// Skip CRC verification (the trailer is still read).
    pub fn verify_checksum(mut self, yes: bool) -> Self {
        self.verify_checksum = yes;
        self
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// Offset of the next byte to be read.
    pub fn offset(&self) -> u64 {
        self.cur.offset()
    }

    /// The next item, `Ok(None)` after the EOF item.
    pub fn next_item(&mut self) -> Result<Option<Item<'a>>> {
        if self.done {
            return Ok(None);
        }
        loop {
            let at = self.cur.offset();
            let op = self.cur.read_u8("an opcode or type byte (the file has no EOF opcode)")?;
            match op {
                RDB_OPCODE_EOF => {
                    self.done = true;
                    return self.read_trailer().map(Some);
                }
                RDB_OPCODE_SELECTDB => {
                    self.state.db = read_len(&mut self.cur, "a database number")?;
                    return Ok(Some(Item::SelectDb(self.state.db)));
                }
                RDB_OPCODE_EXPIRETIME => {
                    self.state.expire_at_ms = Some(self.cur.read_i32_le("an expiry time (seconds)")? as i64 * 1000);
                }
                RDB_OPCODE_EXPIRETIME_MS => {
                    self.state.expire_at_ms = Some(self.cur.read_i64_le("an expiry time (ms)")?);
                }
                RDB_OPCODE_RESIZEDB => {
                    let db_size = read_len(&mut self.cur, "a RESIZEDB size")?;
                    let expires_size = read_len(&mut self.cur, "a RESIZEDB size")?;
                    return Ok(Some(Item::ResizeDb { db_size, expires_size }));
                }
                RDB_OPCODE_AUX => {
                    let key = read_str(&mut self.cur)?;
                    let value = read_str(&mut self.cur)?;
                    return Ok(Some(Item::Aux { key, value }));
                }
                RDB_OPCODE_FREQ => self.state.freq = Some(self.cur.read_u8("an LFU counter")?),
                RDB_OPCODE_IDLE => self.state.idle_s = Some(read_len(&mut self.cur, "an LRU idle time")?),
                RDB_OPCODE_MODULE_AUX => return self.read_module_aux().map(Some),
                RDB_OPCODE_FUNCTION_PRE_GA => {
                    let name = read_str(&mut self.cur)?;
                    let engine = read_str(&mut self.cur)?;
                    let description = match read_len(&mut self.cur, "a function description flag")? {
                        0 => None,
                        _ => Some(read_str(&mut self.cur)?),
                    };
                    let code = read_str(&mut self.cur)?;
                    return Ok(Some(Item::Function(Function::PreGa { name, engine, description, code })));
                }
                RDB_OPCODE_FUNCTION2 => {
                    let code = read_str(&mut self.cur)?;
                    return Ok(Some(Item::Function(Function::Library { code })));
                }
                RDB_OPCODE_SLOT_INFO => {
                    let slot = read_len(&mut self.cur, "a slot number")?;
                    let size = read_len(&mut self.cur, "a slot size")?;
                    let expires_size = read_len(&mut self.cur, "a slot expires size")?;
                    return Ok(Some(Item::SlotInfo { slot, size, expires_size }));
                }
                RDB_OPCODE_SLOT_IMPORT if self.header.vendor == super::Vendor::Valkey => {
                    let job = read_str(&mut self.cur)?;
                    let n = read_len(&mut self.cur, "a slot range count")?;
                    let mut ranges = Vec::with_capacity(super::cursor::bounded_capacity(n, self.cur.remaining(), 2));
                    for _ in 0..n {
                        let start = read_len(&mut self.cur, "a slot range start")?;
                        let end = read_len(&mut self.cur, "a slot range end")?;
                        ranges.push((start, end));
                    }
                    return Ok(Some(Item::SlotImport { job, ranges }));
                }
                RDB_OPCODE_KEY_META => {
                    let start = self.cur.pos();
                    let n = read_len(&mut self.cur, "a key metadata class count")?;
                    if n > 7 {
                        return Err(Error::corrupt(at, format!("{n} key metadata classes, at most 7 exist")));
                    }
                    for _ in 0..n {
                        self.cur.skip(4, "a key metadata class spec")?;
                        skip_items(&mut self.cur)?;
                    }
                    self.state.key_meta = Some(&self.cur.data()[start..self.cur.pos()]);
                }
                t if self.skim => return self.skip_record(at, t).map(Some),
                t if self.raw || (self.raw_strings && t == RDB_TYPE_STRING) => return self.raw_record(at, t).map(Some),
                t => return self.read_record(at, t),
            }
        }
    }

    fn check_type(&self, at: u64, t: u8) -> Result<()> {
        if type_name(self.header.vendor, t).is_none() {
            let what = if t >= 0xF2 { "opcode" } else { "value type" };
            return Err(Error::unsupported(at, format!("{what} {t} (not a type or opcode this reader knows)")));
        }
        Ok(())
    }

    fn skip_record(&mut self, at: u64, t: u8) -> Result<Item<'a>> {
        self.check_type(at, t)?;
        skip_str(&mut self.cur)?;
        skip_value(&mut self.cur, self.header.vendor, t)?;
        self.state = State { db: self.state.db, ..State::default() };
        Ok(Item::Skimmed)
    }

    fn raw_record(&mut self, at: u64, t: u8) -> Result<Item<'a>> {
        self.check_type(at, t)?;
        let key = read_str(&mut self.cur)?;
        let start = self.cur.pos();
        skip_value(&mut self.cur, self.header.vendor, t).map_err(|e| e.with_key(&key.bytes()))?;
        let raw_value = &self.cur.data()[start..self.cur.pos()];
        let expire_at_ms = self.state.expire_at_ms.take();
        self.state = State { db: self.state.db, ..State::default() };
        Ok(Item::Raw(RawRecord { db: self.state.db, key, expire_at_ms, rdb_type: t, raw_value }))
    }

    /// Reads a record; the result comes wrapped as `next_item` returns it, so that the
    /// 160-byte item is built where it is returned instead of being moved twice.
    fn read_record(&mut self, at: u64, t: u8) -> Result<Option<Item<'a>>> {
        self.check_type(at, t)?;
        let key = read_str(&mut self.cur)?;
        let start = self.cur.pos();
        let value =
            read_value(&mut self.cur, self.header.vendor, t, self.contents).map_err(|e| e.with_key(&key.bytes()))?;
        let raw_value = &self.cur.data()[start..self.cur.pos()];
        let expire_at_ms = self.state.expire_at_ms.take();
        let idle_s = self.state.idle_s.take();
        let freq = self.state.freq.take();
        let key_meta = self.state.key_meta.take();
        Ok(Some(match value {
            Some(value) => Item::Record(Record {
                db: self.state.db,
                key,
                expire_at_ms,
                idle_s,
                freq,
                rdb_type: t,
                value,
                raw_value,
                key_meta,
            }),
            None => Item::EmptyKey { db: self.state.db, key, rdb_type: t },
        }))
    }

    fn read_module_aux(&mut self) -> Result<Item<'a>> {
        let start = self.cur.pos();
        let id = read_len(&mut self.cur, "a module type id")?;
        let (name, encver) = module_name(id);
        let at = self.cur.offset();
        let when_op = read_len(&mut self.cur, "a module aux 'when' tag")?;
        if when_op != RDB_MODULE_OPCODE_UINT {
            return Err(Error::corrupt(at, format!("module aux 'when' tag {when_op}, expected 2 (unsigned integer)")));
        }
        let when = read_len(&mut self.cur, "a module aux 'when'")?;
        skip_items(&mut self.cur)?;
        Ok(Item::ModuleAux { name, encver, when, raw: &self.cur.data()[start..self.cur.pos()] })
    }

    fn read_trailer(&mut self) -> Result<Item<'a>> {
        let end = self.cur.pos();
        let checksum = if self.header.version < 5 {
            Checksum::Absent
        } else {
            let stored = self.cur.read_u64_le("the 8-byte CRC-64 after the EOF opcode")?;
            if stored == 0 {
                Checksum::Disabled
            } else if !self.verify_checksum {
                Checksum::Skipped(stored)
            } else {
                let computed = crc64(&self.cur.data()[..end]);
                if computed != stored {
                    return Err(Error::new(end as u64, ErrorKind::Checksum { stored, computed }));
                }
                Checksum::Ok(stored)
            }
        };
        Ok(Item::End { checksum, trailing: self.cur.remaining() })
    }
}
