//! Redis's on-disk numbers, in one place and under Redis's own names: the type bytes of
//! values, the opcodes of the RDB opcode loop, the length and string encodings, the
//! tags of module items, quicklist node containers and stream entry flags. Each says
//! where Redis (or Valkey, where its numbers differ) defines it; the decoders import
//! them from here and define none of their own.

// ---- Versions ------------------------------------------------------------------------

/// Highest Redis RDB version this reader knows: `RDB_VERSION` in `rdb.h` of Redis 8.6.
pub const RDB_VERSION_MAX: u32 = 13;
/// Valkey 9's RDB version (`VALKEY080`): `RDB_VERSION` in Valkey's `rdb.h`, whose
/// versions from 80 on are apart from Redis's ("foreign" range).
pub const VALKEY_RDB_VERSION: u32 = 80;

// ---- Lengths (`rdb.h`; read by `rdb.c`, `rdbLoadLenByRef`) ---------------------------

/// The two high bits of a length byte: the length is the other 6 bits.
pub const RDB_6BITLEN: u8 = 0;
/// The two high bits of a length byte: the other 6 bits and the next byte, big-endian.
pub const RDB_14BITLEN: u8 = 1;
/// A whole length byte: a 32-bit big-endian length follows.
pub const RDB_32BITLEN: u8 = 0x80;
/// A whole length byte: a 64-bit big-endian length follows.
pub const RDB_64BITLEN: u8 = 0x81;
/// The two high bits of a length byte: not a length but a string encoding (`RDB_ENC_*`)
/// in the other 6 bits.
pub const RDB_ENCVAL: u8 = 3;

// ---- String encodings (`rdb.h`; read by `rdb.c`, `rdbGenericLoadStringObject`) -------

/// An 8-bit signed integer (`rdbLoadIntegerObject`).
pub const RDB_ENC_INT8: u8 = 0;
/// A 16-bit signed integer, little-endian (`rdbLoadIntegerObject`).
pub const RDB_ENC_INT16: u8 = 1;
/// A 32-bit signed integer, little-endian (`rdbLoadIntegerObject`).
pub const RDB_ENC_INT32: u8 = 2;
/// An LZF-compressed string (`rdbLoadLzfStringObject`).
pub const RDB_ENC_LZF: u8 = 3;

// ---- Value types (`rdb.h`; read by `rdb.c`, `rdbLoadObject`) -------------------------

pub const RDB_TYPE_STRING: u8 = 0;
/// A linked list of strings (Redis before 3.2).
pub const RDB_TYPE_LIST: u8 = 1;
pub const RDB_TYPE_SET: u8 = 2;
/// Scores as strings (Redis before 4.0).
pub const RDB_TYPE_ZSET: u8 = 3;
pub const RDB_TYPE_HASH: u8 = 4;
/// Scores as binary doubles (`rdbLoadBinaryDoubleValue`).
pub const RDB_TYPE_ZSET_2: u8 = 5;
/// Module values of the 4.0 release candidates: no item tags, unreadable without the module.
pub const RDB_TYPE_MODULE_PRE_GA: u8 = 6;
/// Module values whose items carry `RDB_MODULE_OPCODE_*` tags.
pub const RDB_TYPE_MODULE_2: u8 = 7;
pub const RDB_TYPE_HASH_ZIPMAP: u8 = 9;
pub const RDB_TYPE_LIST_ZIPLIST: u8 = 10;
pub const RDB_TYPE_SET_INTSET: u8 = 11;
pub const RDB_TYPE_ZSET_ZIPLIST: u8 = 12;
pub const RDB_TYPE_HASH_ZIPLIST: u8 = 13;
/// A quicklist of ziplist nodes (Redis 3.2 to 6.2).
pub const RDB_TYPE_LIST_QUICKLIST: u8 = 14;
/// Streams v1 (Redis 5.0 to 6.2).
pub const RDB_TYPE_STREAM_LISTPACKS: u8 = 15;
pub const RDB_TYPE_HASH_LISTPACK: u8 = 16;
pub const RDB_TYPE_ZSET_LISTPACK: u8 = 17;
/// A quicklist whose nodes are listpacks or plain strings (`QUICKLIST_NODE_CONTAINER_*`).
pub const RDB_TYPE_LIST_QUICKLIST_2: u8 = 18;
/// Streams v2: first ID, max-deleted ID, entries-added, group entries-read (Redis 7.0).
pub const RDB_TYPE_STREAM_LISTPACKS_2: u8 = 19;
pub const RDB_TYPE_SET_LISTPACK: u8 = 20;
/// Streams v3: consumer active times (Redis 7.2).
pub const RDB_TYPE_STREAM_LISTPACKS_3: u8 = 21;
/// Hash with field TTLs, without the minimum expiry in front (Redis 7.4 release candidates).
pub const RDB_TYPE_HASH_METADATA_PRE_GA: u8 = 22;
/// Listpack hash with field TTLs, without the minimum expiry (Redis 7.4 release candidates).
pub const RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: u8 = 23;
/// Hash with field TTLs, the minimum expiry in front (Redis 7.4).
pub const RDB_TYPE_HASH_METADATA: u8 = 24;
/// Listpack hash with field TTLs, the minimum expiry in front (Redis 7.4).
pub const RDB_TYPE_HASH_LISTPACK_EX: u8 = 25;
/// Streams v4: the idempotent-producer state (`rdb.h` of Redis 8.6).
pub const RDB_TYPE_STREAM_LISTPACKS_4: u8 = 26;
/// Valkey 9's hash with per-field expiry (`RDB_TYPE_HASH_2` in Valkey's `rdb.h`): the
/// same byte as Redis's [`RDB_TYPE_HASH_METADATA_PRE_GA`], another layout.
pub const VALKEY_RDB_TYPE_HASH_2: u8 = 22;

// ---- Opcodes (`rdb.h`; read by `rdb.c`, `rdbLoadRioWithLoadingCtx`) -----------------

/// Module metadata of the key that follows (`rdb.h` of Redis 8.6; read by `keymeta.c`,
/// `rdbLoadKeyMetadata`).
pub const RDB_OPCODE_KEY_META: u8 = 243;
/// A slot migration job (`RDB_OPCODE_SLOT_IMPORT` in Valkey 9's `rdb.h`): the same byte
/// as Redis's [`RDB_OPCODE_KEY_META`].
pub const RDB_OPCODE_SLOT_IMPORT: u8 = 243;
/// A slot's key counts (cluster mode).
pub const RDB_OPCODE_SLOT_INFO: u8 = 244;
/// A function library (Redis 7.0).
pub const RDB_OPCODE_FUNCTION2: u8 = 245;
/// A single function (Redis 7.0 release candidates 1 and 2).
pub const RDB_OPCODE_FUNCTION_PRE_GA: u8 = 246;
/// A module's auxiliary data.
pub const RDB_OPCODE_MODULE_AUX: u8 = 247;
/// The LRU idle time of the key that follows.
pub const RDB_OPCODE_IDLE: u8 = 248;
/// The LFU counter of the key that follows.
pub const RDB_OPCODE_FREQ: u8 = 249;
/// An AUX field (name and value).
pub const RDB_OPCODE_AUX: u8 = 250;
/// Hash table sizes of the db that follows.
pub const RDB_OPCODE_RESIZEDB: u8 = 251;
/// The expiry of the key that follows, in ms.
pub const RDB_OPCODE_EXPIRETIME_MS: u8 = 252;
/// The expiry of the key that follows, in seconds (old files).
pub const RDB_OPCODE_EXPIRETIME: u8 = 253;
/// The db of the keys that follow.
pub const RDB_OPCODE_SELECTDB: u8 = 254;
/// The end of the file; the CRC-64 follows (RDB 5 and later).
pub const RDB_OPCODE_EOF: u8 = 255;

// ---- Module items (`rdb.h`; walked by `rdb.c`, `rdbLoadCheckModuleValue`) ------------

pub const RDB_MODULE_OPCODE_EOF: u64 = 0;
pub const RDB_MODULE_OPCODE_SINT: u64 = 1;
pub const RDB_MODULE_OPCODE_UINT: u64 = 2;
pub const RDB_MODULE_OPCODE_FLOAT: u64 = 3;
pub const RDB_MODULE_OPCODE_DOUBLE: u64 = 4;
pub const RDB_MODULE_OPCODE_STRING: u64 = 5;

// ---- Quicklist nodes (`quicklist.h`; read by `rdb.c`, `rdbLoadObject`) ---------------

/// A node holding one element as a plain string (a large element).
pub const QUICKLIST_NODE_CONTAINER_PLAIN: u64 = 1;
/// A node holding a listpack.
pub const QUICKLIST_NODE_CONTAINER_PACKED: u64 = 2;

// ---- Stream entries (`t_stream.c`) ---------------------------------------------------

/// The entry is deleted: skipped by readers.
pub const STREAM_ITEM_FLAG_DELETED: i64 = 1;
/// The entry has the master entry's fields: only its values are stored.
pub const STREAM_ITEM_FLAG_SAMEFIELDS: i64 = 2;

// ---- Hash field expiry (`ebuckets.h`) ------------------------------------------------

/// Largest field expiry Redis accepts (`EB_EXPIRE_TIME_MAX`, 2^48 - 1 ms).
pub const EB_EXPIRE_TIME_MAX: i64 = (1 << 48) - 1;
