//! What an allocation costs: jemalloc's size classes (`zmalloc_size`, `zmalloc.c`, is
//! `malloc_usable_size`, which for jemalloc is the size class of the request), the sds
//! allocation of a string (`sds.c`), a dict's bucket arrays as `dict.c` sizes and grows
//! them, and a skiplist node at its expected level (`t_zset.c`, `zslRandomLevel`).

/// jemalloc's size class of a request of `n` bytes, with the smallest quantum `quantum`
/// (8 in Redis's own build, `deps/Makefile`: `--with-lg-quantum=3`; 16 in a distribution's
/// shared jemalloc). Classes are 8, then multiples of the quantum up to 64, then four per
/// doubling (`sc.c`, `sc_data_init`): 80, 96, 112, 128, 160, … 14336, 16384, 20480, …
pub fn size_class(n: u64, quantum: u64) -> u64 {
    let n = n.max(1);
    if n <= 8 {
        return 8;
    }
    if n <= 64 {
        return n.div_ceil(quantum) * quantum;
    }
    // The group of n: (2^k, 2^(k+1)], four classes 2^(k-2) apart.
    let k = 63 - (n - 1).leading_zeros() as u64;
    let step = 1u64 << (k - 2);
    n.div_ceil(step).saturating_mul(step)
}

/// The sds header size of a string of `len` bytes (`sds.c`, `sdsReqType` and
/// `sdsHdrSize`): type 5 below 32 bytes (one byte), type 8 (3), type 16 (5), type 32 (9),
/// type 64 (17). From 8.2 on, a type holds up to its maximum less the header and the
/// terminator (`len <= 2^8 - 3 - 1` for type 8), where older versions allow `< 2^8`.
pub fn sds_header(len: u64, tight: bool) -> u64 {
    let fits = |bits: u32, hdr: u64| if tight { len < (1u64 << bits) - hdr } else { len < (1u64 << bits) };
    if len < 32 {
        1
    } else if fits(8, 3) {
        3
    } else if fits(16, 5) {
        5
    } else if fits(32, 9) {
        9
    } else {
        17
    }
}

/// The bytes `sdsnewlen` asks for a string of `len` bytes: header, bytes, terminator.
/// An empty string is made type 8 (`_sdsnewlen`: "Empty strings are usually created in
/// order to append").
pub fn sds_request(len: u64, tight: bool) -> u64 {
    let hdr = if len == 0 { 3 } else { sds_header(len, tight) };
    hdr + len + 1
}

/// The next power of two at or above `n`, at least 4 (`dict.c`, `_dictNextPower` /
/// `_dictNextExp`, whose smallest table is `DICT_HT_INITIAL_SIZE`).
pub fn dict_table_size(n: u64) -> u64 {
    n.max(4).checked_next_power_of_two().unwrap_or(1 << 63)
}

/// A dict's bucket arrays followed through the operations that size them (`dict.c`:
/// `dictExpand`, `_dictExpandIfNeeded`, `_dictRehashStep`). While a rehash is under way
/// both tables exist and `dictSlots` / `dictBuckets` count both. Each lookup or insert
/// moves one non-empty bucket of the old table; which buckets are empty depends on the
/// server's random hash seed, so the old table is taken to hold its expected number of
/// non-empty buckets, `s·(1 − (1 − 1/s)^used)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DictSim {
    /// `ht[0]`'s size (0 before the first table).
    s0: u64,
    /// `ht[1]`'s size while rehashing, else 0.
    s1: u64,
    used: u64,
    /// Non-empty buckets of `ht[0]` still to move.
    pending: u64,
    /// The latest rehash: whether it is over depends on how many buckets its keys
    /// filled, which [`DictSim::expected_buckets`] weighs.
    last: Option<Rehash>,
}

#[derive(Debug, Clone, Copy)]
struct Rehash {
    old: u64,
    new: u64,
    keys: u64,
    steps: u64,
}

impl DictSim {
    pub fn new() -> DictSim {
        DictSim::default()
    }

    /// `dictExpand(d, n)`: refused while rehashing, below the keys held, or to the size
    /// the table has; an empty dict takes the new table at once, a non-empty one starts
    /// rehashing into it.
    pub fn expand(&mut self, n: u64) {
        if self.s1 != 0 || self.used > n {
            return;
        }
        let size = dict_table_size(n);
        if size == self.s0 {
            return;
        }
        if self.s0 == 0 || self.used == 0 {
            self.s0 = size;
            return;
        }
        self.s1 = size;
        let s = self.s0 as f64;
        let nonempty = s * (1.0 - (1.0 - 1.0 / s).powf(self.used as f64));
        self.pending = nonempty.round().max(1.0) as u64;
        self.last = Some(Rehash { old: self.s0, new: size, keys: self.used, steps: 0 });
    }

    /// One `_dictRehashStep` (any lookup or insert while rehashing).
    pub fn step(&mut self) {
        // Every operation since the last rehash began counts: had the keys filled more
        // buckets than expected, the rehash would still take one step per operation.
        if let Some(r) = self.last.as_mut() {
            r.steps += 1;
        }
        if self.s1 == 0 {
            return;
        }
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            self.s0 = self.s1;
            self.s1 = 0;
        }
    }

    /// `dictFind` (a step while rehashing).
    pub fn find(&mut self) {
        self.step();
    }

    /// `dictAdd` of a new key: a rehash step, then `_dictExpandIfNeeded` (the first table
    /// of 4; doubling when the keys reach the buckets), then the key.
    pub fn add(&mut self) {
        self.step();
        if self.s1 == 0 {
            if self.s0 == 0 {
                self.expand(4);
            } else if self.used >= self.s0 {
                self.expand(self.used + 1);
            }
        }
        self.used += 1;
    }

    /// `dictDelete` on 7.4 on: a rehash step, the key out, then `_dictShrinkIfNeeded`
    /// (a table at most an eighth full, `HASHTABLE_MIN_FILL`, shrinks to fit).
    pub fn delete(&mut self) {
        self.step();
        self.used = self.used.saturating_sub(1);
        if self.s1 == 0 && self.s0 > 4 && self.used * 8 <= self.s0 {
            self.expand(self.used);
        }
    }

    /// Adds `n` keys one by one (while no rehash is under way and the table has room,
    /// many at once: each would only count a step).
    pub fn add_n(&mut self, mut n: u64) {
        while n > 0 {
            let room = if self.s1 == 0 && self.s0 > 0 { self.s0.saturating_sub(self.used) } else { 0 };
            if room > 1 {
                let k = n.min(room - 1);
                self.used += k;
                if let Some(r) = self.last.as_mut() {
                    r.steps += k;
                }
                n -= k;
            } else {
                self.add();
                n -= 1;
            }
        }
    }

    /// `dictSlots` / `dictBuckets`: both tables while rehashing (as the expected number
    /// of non-empty buckets decides it).
    pub fn buckets(&self) -> u64 {
        self.s0 + self.s1
    }

    /// The expected `dictBuckets`: the new table, and the old one as long as the steps
    /// taken since the last rehash began may not have emptied it (the chance that its
    /// keys filled more buckets than that).
    pub fn expected_buckets(&self) -> f64 {
        match self.last {
            Some(r) if self.s0 + self.s1 == r.new || self.s0 + self.s1 == r.old + r.new => {
                r.new as f64 + r.old as f64 * more_filled_than(r.keys, r.old, r.steps)
            }
            _ => self.buckets() as f64,
        }
    }

    pub fn used(&self) -> u64 {
        self.used
    }
}

/// The chance that `keys` keys hashed into `buckets` buckets fill more than `k` of them.
/// Exact (the distribution built key by key) for small tables, else the normal
/// approximation of the occupancy distribution.
fn more_filled_than(keys: u64, buckets: u64, k: u64) -> f64 {
    if k >= keys.min(buckets) {
        return 0.0;
    }
    let s = buckets as f64;
    if buckets <= 256 && keys <= 4096 {
        thread_local! {
            static SEEN: std::cell::RefCell<std::collections::HashMap<(u64, u64, u64), f64>> = Default::default();
        }
        if let Some(p) = SEEN.with(|m| m.borrow().get(&(keys, buckets, k)).copied()) {
            return p;
        }
        // p[j]: the chance that j buckets are filled.
        let mut p = vec![0.0f64; buckets as usize + 1];
        p[0] = 1.0;
        for _ in 0..keys {
            for j in (0..buckets as usize).rev() {
                let moved = p[j] * (s - j as f64) / s;
                p[j + 1] += moved;
                p[j] -= moved;
            }
        }
        let p: f64 = p[k as usize + 1..].iter().sum();
        SEEN.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() < 100_000 {
                m.insert((keys, buckets, k), p);
            }
        });
        return p;
    }
    let u = keys as f64;
    let q1 = (1.0 - 1.0 / s).powf(u);
    let q2 = (1.0 - 2.0 / s).powf(u);
    let mean = s * (1.0 - q1);
    let var = (s * (s - 1.0) * q2 + s * q1 - s * s * q1 * q1).max(1e-9);
    let z = (k as f64 + 0.5 - mean) / var.sqrt();
    1.0 - normal_cdf(z)
}

/// Φ(z), by Abramowitz and Stegun's 7.1.26 (error below 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Skiplist levels: `zslRandomLevel` (`t_zset.c`) adds a level while `random() & 0xFFFF`
/// is below `ZSKIPLIST_P * 0xFFFF` (a chance of 16384/65536 = 1/4), up to
/// `ZSKIPLIST_MAXLEVEL` (32).
const ZSKIPLIST_MAXLEVEL: u32 = 32;

/// The expected allocation of a skiplist node, `zmalloc_size` of
/// `sizeof(zskiplistNode) + level * sizeof(struct zskiplistLevel)` (24 + 16 per level)
/// averaged over the level distribution: the level is random in Redis, so a node costs
/// this much on average and a skiplist of n nodes n times as much.
pub fn expected_skiplist_node(quantum: u64) -> f64 {
    let mut total = 0.0;
    let mut p_reach = 1.0; // chance the level is at least `level`
    for level in 1..=ZSKIPLIST_MAXLEVEL {
        let p_exact = if level == ZSKIPLIST_MAXLEVEL { p_reach } else { p_reach * 0.75 };
        total += p_exact * size_class(24 + 16 * level as u64, quantum) as f64;
        p_reach *= 0.25;
    }
    total
}

/// The skiplist header node, created at the maximum level (`zslCreate`).
pub fn skiplist_header(quantum: u64) -> u64 {
    size_class(24 + 16 * ZSKIPLIST_MAXLEVEL as u64, quantum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jemalloc_classes_with_an_8_byte_quantum() {
        let cases = [
            (0, 8),
            (1, 8),
            (8, 8),
            (9, 16),
            (17, 24),
            (25, 32),
            (33, 40),
            (57, 64),
            (65, 80),
            (81, 96),
            (113, 128),
            (129, 160),
            (161, 192),
            (257, 320),
            (536, 640),
            (4097, 5120),
            (8192, 8192),
            (8193, 10240),
            (14336, 14336),
            (14337, 16384),
            (16385, 20480),
            (65536, 65536),
            (65537, 81920),
            (1 << 20, 1 << 20),
            ((1 << 20) + 1, (1 << 20) + (1 << 18)),
        ];
        for (n, class) in cases {
            assert_eq!(size_class(n, 8), class, "{n}");
        }
    }

    #[test]
    fn jemalloc_classes_with_a_16_byte_quantum() {
        let cases = [(1, 8), (8, 8), (9, 16), (17, 32), (33, 48), (40, 48), (49, 64), (65, 80), (100, 112)];
        for (n, class) in cases {
            assert_eq!(size_class(n, 16), class, "{n}");
        }
    }

    #[test]
    fn every_class_is_its_own_class() {
        for q in [8, 16] {
            let mut n = 1;
            while n < 1 << 24 {
                let c = size_class(n, q);
                assert!(c >= n);
                assert_eq!(size_class(c, q), c);
                n = c + 1;
            }
        }
    }

    #[test]
    fn sds_headers_by_length() {
        assert_eq!(sds_request(0, false), 4);
        assert_eq!(sds_request(1, false), 3);
        assert_eq!(sds_request(31, false), 33);
        assert_eq!(sds_request(32, false), 36);
        assert_eq!(sds_request(255, false), 259);
        assert_eq!(sds_request(256, false), 262);
        assert_eq!(sds_request(65535, false), 65541);
        assert_eq!(sds_request(65536, false), 65546);
        // 8.2's tighter types: 253 bytes no longer fit type 8.
        assert_eq!(sds_header(252, true), 3);
        assert_eq!(sds_header(253, true), 5);
        assert_eq!(sds_header(65530, true), 5);
        assert_eq!(sds_header(65531, true), 9);
    }

    #[test]
    fn dict_tables_are_powers_of_two() {
        assert_eq!(dict_table_size(0), 4);
        assert_eq!(dict_table_size(4), 4);
        assert_eq!(dict_table_size(5), 8);
        assert_eq!(dict_table_size(128), 128);
        assert_eq!(dict_table_size(129), 256);
        // A small dict gets its first table of 4 at the first add (`_dictExpandIfNeeded`).
        let mut d = DictSim::new();
        d.add();
        assert_eq!(d.buckets(), 4);
    }

    #[test]
    fn a_growing_dict_ends_mid_rehash_or_doubled() {
        let mut d = DictSim::new();
        d.add_n(4);
        assert_eq!(d.buckets(), 4);
        // The fifth key starts a rehash into 8 buckets; nothing has moved yet.
        d.add();
        assert_eq!(d.buckets(), 12);
        d.add_n(3);
        assert_eq!(d.buckets(), 8);
        // A presized dict does not rehash.
        let mut p = DictSim::new();
        p.expand(600);
        p.add_n(600);
        assert_eq!(p.buckets(), 1024);
    }

    #[test]
    fn adding_many_is_adding_one_by_one() {
        for n in [0, 1, 3, 4, 5, 9, 100, 1000, 5000] {
            for pre in [0, 4, 100, 4096] {
                let (mut a, mut b) = (DictSim::new(), DictSim::new());
                a.expand(pre);
                b.expand(pre);
                a.add_n(n);
                for _ in 0..n {
                    b.add();
                }
                assert_eq!((a.buckets(), a.used()), (b.buckets(), b.used()), "{n} after {pre}");
                assert_eq!(a.expected_buckets(), b.expected_buckets(), "{n} after {pre}");
            }
        }
    }

    #[test]
    fn occupancy_chances() {
        // Two keys in two buckets: both filled half the time.
        assert!((more_filled_than(2, 2, 1) - 0.5).abs() < 1e-12);
        assert_eq!(more_filled_than(3, 8, 3), 0.0);
        // The exact and the approximate agree near the boundary.
        let exact = more_filled_than(256, 256, 162);
        let approx = {
            let s = 256.0f64;
            let q1 = (1.0 - 1.0 / s).powf(256.0);
            let q2 = (1.0 - 2.0 / s).powf(256.0);
            let var = s * (s - 1.0) * q2 + s * q1 - s * s * q1 * q1;
            1.0 - normal_cdf((162.5 - s * (1.0 - q1)) / var.sqrt())
        };
        assert!((exact - approx).abs() < 0.05, "{exact} {approx}");
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-3);
        // A dict rehashing from 8 into 16 buckets after 5 steps: more likely done than not.
        let mut d = DictSim::new();
        d.add_n(8);
        d.add();
        d.add_n(5);
        let e = d.expected_buckets();
        assert!(e > 16.0 && e < 20.0, "{e}");
    }

    #[test]
    fn expected_node_is_between_the_two_smallest_levels_and_more() {
        let e = expected_skiplist_node(8);
        // 3/4 of nodes are 40 bytes, 3/16 are 56, the rest larger.
        assert!(e > 0.75 * 40.0 + 0.1875 * 56.0 && e < 50.0, "{e}");
        assert_eq!(skiplist_header(8), 640);
    }
}
