//! Damaged and hostile input: truncation at every offset, byte flips, hand-made hostile
//! bytes and kept fuzz crashes. Always an error with an offset, never a panic, never an
//! allocation much larger than the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use redis_migration::check::{walk, Summary};
use redis_migration::pipeline::Plan;
use redis_migration::rdb::{self, Item, Parser};

use crate::util::{testdata, FIXTURES};

/// Tracks the largest single allocation made by the current thread.
struct Tracking;

thread_local! {
    /// The largest allocation on this thread since it was last reset (tests/net.rs reads it too).
    pub(crate) static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(new_size)));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Walks `data` as `check` does; returns the error and the largest allocation made.
/// The same walk cut into one batch per item must find the same things and the same
/// first error: that is what proves the skim finds the record boundaries the decoder does.
fn deep_walk(data: &[u8]) -> (Result<(), rdb::Error>, usize) {
    LARGEST.with(|m| m.set(0));
    let mut summary = Summary::default();
    let r = walk(data, &mut summary, &Plan::sequential());
    let largest = LARGEST.with(|m| m.get());
    let mut batched = Summary::default();
    let rb = walk(data, &mut batched, &Plan { threads: 1, batch_bytes: 1, in_flight: None });
    assert_eq!(r, rb, "batched walk disagrees");
    assert_eq!(summary, batched, "batched walk found other things");
    (r, largest)
}

/// Allocation budget for an input: a small multiple of its size.
fn budget(len: usize) -> usize {
    4 * len + (64 << 10)
}

#[test]
fn truncation_at_every_offset_is_an_error_with_an_offset() {
    std::thread::scope(|s| {
        for (file, _) in FIXTURES {
            s.spawn(move || {
                let data = std::fs::read(testdata(file)).unwrap();
                assert!(deep_walk(&data).0.is_ok(), "{file} itself must be healthy");
                for cut in 0..data.len() {
                    let (r, largest) = deep_walk(&data[..cut]);
                    let e = r.expect_err(&format!("{file} cut at {cut} was accepted"));
                    assert!(e.offset <= cut as u64, "{file} cut at {cut}: error offset {} past the end", e.offset);
                    assert!(e.is_damage(), "{file} cut at {cut}: {e}");
                    assert!(largest <= budget(cut), "{file} cut at {cut}: allocated {largest} bytes");
                }
            });
        }
    });
}

#[test]
fn byte_flips_are_all_caught() {
    std::thread::scope(|s| {
        for (file, _) in FIXTURES {
            s.spawn(move || {
                let data = std::fs::read(testdata(file)).unwrap();
                let mut rng = 0x2545_f491_4f6c_dd1du64 ^ data.len() as u64;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                for _ in 0..3000 {
                    let mut copy = data.clone();
                    let at = (next() % data.len() as u64) as usize;
                    let x = (next() % 255 + 1) as u8;
                    copy[at] ^= x;
                    let (r, largest) = deep_walk(&copy);
                    // Every fixture has a CRC-64: any changed byte is damage `check` must see.
                    let e = r.expect_err(&format!("{file}: byte {at} ^ {x:#04x} went unnoticed"));
                    assert!(!e.to_string().is_empty());
                    assert!(largest <= budget(copy.len()), "{file}: flip at {at}: allocated {largest} bytes");
                }
            });
        }
    });
}

/// Hand-made hostile inputs: lengths that would allocate terabytes if trusted.
#[test]
fn hostile_lengths_do_not_allocate() {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // A string key whose value claims 2^62 bytes.
    let mut huge_string = b"REDIS0009".to_vec();
    huge_string.extend_from_slice(&[0x00, 0x01, b'k', 0x81, 0x40, 0, 0, 0, 0, 0, 0, 0]);
    cases.push(("64-bit string length", huge_string));
    // A list claiming 2^32 elements.
    let mut huge_list = b"REDIS0009".to_vec();
    huge_list.extend_from_slice(&[0x01, 0x01, b'k', 0x80, 0xff, 0xff, 0xff, 0xff, 0x01, b'a']);
    cases.push(("list count", huge_list));
    // An LZF string claiming a 4 GB expansion of 3 bytes.
    let mut lzf = b"REDIS0009".to_vec();
    lzf.extend_from_slice(&[0x00, 0x01, b'k', 0xC3, 0x03, 0x80, 0xff, 0xff, 0xff, 0xff, 0x00, b'a', 0x20]);
    cases.push(("LZF expansion", lzf));
    // A stream claiming 2^60 consumer groups.
    let mut groups = b"REDIS0010".to_vec();
    groups.extend_from_slice(&[19, 0x01, b's', 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    groups.extend_from_slice(&[0x81, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    cases.push(("stream groups", groups));
    for (what, data) in cases {
        let (r, largest) = deep_walk(&data);
        let e = r.expect_err(what);
        assert!(e.is_damage(), "{what}: {e}");
        assert!(largest <= budget(data.len()), "{what}: allocated {largest} bytes");
    }
}

/// Inputs that once crashed a fuzz target (`fuzz/artifacts` minimized and kept in
/// `fuzz/regressions/`): each must now give a clean result.
#[test]
fn fuzz_regressions_replay_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let (_, largest) = deep_walk(&data);
        assert!(largest <= budget(data.len()));
        n += 1;
    }
    assert!(n > 0, "fuzz/regressions is empty");
}

/// KEY_META (Redis 8.6, RDB 13) has no real sample anywhere: these bytes are hand-made
/// from the layout Redis 8.6 reads (`keymeta.c`, `rdbLoadKeyMetadata`: class count, 4-byte
/// class spec, module items, EOF).
#[test]
fn key_meta_hand_made() {
    let mut data = b"REDIS0013".to_vec();
    // KEY_META: 1 class, spec bytes, one UINT item (tag 2, value 7), EOF tag.
    data.extend_from_slice(&[0xF3, 0x01, 0xAA, 0xBB, 0xCC, 0xDD, 0x02, 0x07, 0x00]);
    // then the key it belongs to: string "k" = "v", and a plain key after it.
    data.extend_from_slice(&[0x00, 0x01, b'k', 0x01, b'v']);
    data.extend_from_slice(&[0x00, 0x01, b'j', 0x01, b'w']);
    data.push(0xFF);
    let crc = rdb::crc64(&data);
    data.extend_from_slice(&crc.to_le_bytes());
    let mut p = Parser::new(&data).unwrap();
    let mut metas = Vec::new();
    while let Some(item) = p.next_item().unwrap() {
        if let Item::Record(r) = item {
            metas.push((r.key.bytes().into_owned(), r.key_meta.map(<[u8]>::to_vec)));
        }
    }
    assert_eq!(
        metas,
        vec![(b"k".to_vec(), Some(vec![0x01, 0xAA, 0xBB, 0xCC, 0xDD, 0x02, 0x07, 0x00])), (b"j".to_vec(), None)]
    );
    // The same opcode in a Valkey file is SLOT_IMPORT, not KEY_META.
    let mut valkey = b"VALKEY080".to_vec();
    valkey.extend_from_slice(&[0xF3, 0x03, b'j', b'o', b'b', 0x01, 0x00, 0x05, 0xFF]);
    let crc = rdb::crc64(&valkey);
    valkey.extend_from_slice(&crc.to_le_bytes());
    let mut p = Parser::new(&valkey).unwrap();
    match p.next_item().unwrap() {
        Some(Item::SlotImport { job, ranges }) => {
            assert_eq!(job.bytes().as_ref(), b"job");
            assert_eq!(ranges, vec![(0, 5)]);
        }
        other => panic!("expected SLOT_IMPORT, got {other:?}"),
    }
}

/// A set with the same member twice: Redis refuses to load it, and `check` calls it damage.
#[test]
fn duplicate_members_are_damage() {
    let mut data = b"REDIS0009".to_vec();
    data.extend_from_slice(&[0x02, 0x01, b's', 0x02, 0x01, b'a', 0x01, b'a', 0xFF]);
    let crc = rdb::crc64(&data);
    data.extend_from_slice(&crc.to_le_bytes());
    let e = deep_walk(&data).0.expect_err("duplicate member accepted");
    assert!(e.to_string().contains("duplicate set member \"a\""), "{e}");
}

/// An AOF cut at every offset: complete, or truncated at the last complete command (never
/// damage, never a panic); the same bytes with one byte changed: read or refused, never a
/// panic, and a refusal names an offset inside the data.
#[test]
fn aof_cut_or_flipped() {
    use redis_migration::aof::read_log;
    let data = std::fs::read(testdata("aof/multipart-7.0/appendonlydir/appendonly.aof.4.incr.aof")).unwrap();
    let mut complete = 0;
    for cut in 0..=data.len() {
        match read_log(&data[..cut], false, |_| {}) {
            Ok(_) => complete += 1,
            Err(e) => {
                assert!(e.truncated, "cut {cut}: {e}");
                assert!(e.last_good <= cut && e.at <= cut, "cut {cut}: {e}");
                let tolerated = read_log(&data[..cut], true, |_| {}).unwrap().unwrap();
                assert_eq!(tolerated.at, e.last_good);
            }
        }
    }
    assert!(complete > 10 && complete < data.len() / 10, "{complete} complete prefixes");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut copy = data.clone();
        let at = (rng % data.len() as u64) as usize;
        copy[at] ^= (rng >> 32) as u8 | 1;
        if let Err(e) = read_log(&copy, false, |_| {}) {
            assert!(e.at <= copy.len() && e.last_good <= e.at, "flip at {at}: {e}");
        }
    }
}
