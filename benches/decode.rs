//! In-process decode speed: `cargo bench` (or `BENCH_RDB=path cargo bench`).
//!
//! Times the library's deep walk (`check`) on 1 and 2 threads over an RDB: by default the
//! fixtures in `testdata/` repeated until about 64 MB have been read, or the file in
//! `BENCH_RDB` (e.g. the 100 MB dataset of `../shared/scripts/make_datasets.sh 0.85 82`).
//! Prints the median of 5 runs in MB/s. The peer comparison is `scripts/bench_peers.py`.

use std::time::Instant;

use redis_migration::check::{walk, Summary};
use redis_migration::pipeline::Plan;

fn median_mbps(data: &[u8], plan: &Plan, repeat: usize) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..repeat {
                let mut s = Summary::default();
                walk(data, &mut s, plan).expect("the benchmark input must be healthy");
            }
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (data.len() * repeat) as f64 / 1e6 / times[2]
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<std::path::PathBuf> = match std::env::var_os("BENCH_RDB") {
        Some(p) => vec![p.into()],
        None => {
            ["redis-6.2.rdb", "redis-7.0.rdb", "redis-8.2.rdb"].iter().map(|f| root.join("testdata").join(f)).collect()
        }
    };
    for f in files {
        let data = std::fs::read(&f).expect("read the benchmark input");
        let repeat = ((64 << 20) / data.len().max(1)).max(1);
        for threads in [1, 2] {
            // Small inputs in small batches, so that two threads have work to share.
            let plan =
                Plan { threads, batch_bytes: (data.len() / 16).clamp(4096, Plan::DEFAULT_BATCH), in_flight: None };
            let mbps = median_mbps(&data, &plan, repeat);
            println!("check {} ({} bytes × {repeat}), {threads} thread(s): {mbps:.0} MB/s", f.display(), data.len());
        }
    }
}
