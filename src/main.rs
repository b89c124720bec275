//! The `redis-migration` binary: parse arguments, run, map errors to exit codes.

use clap::Parser;
use redis_migration::cli::{self, Cli};

/// Large buffers (decoded batches, big keys' commands) go straight to the kernel and
/// back when freed. glibc otherwise raises its mmap threshold after the first large free
/// and keeps freed buffers in per-thread arenas: replay's anonymous memory on a 1 GB RDB
/// then varied between 115 and 146 MB from run to run, against 65 MB of live heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn steady_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TOP_PAD: i32 = -2;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only sets a tunable of the C allocator; it is called first thing in
    // main, before any other thread exists, and takes no pointers.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
        // Grow (and trim) heaps 16 MB at a time: with the default 128 KB, decoding gave
        // pages back and faulted them in again for every batch (check of a 1 GB RDB:
        // 3.1-3.3 s, a third of it in the kernel; 2.5 s with this). Pages the pad
        // reserves are not touched, so they add nothing to the resident set.
        mallopt(M_TOP_PAD, 16 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn steady_allocator() {}

/// SIGTERM and SIGINT ask a capture to stop: it finishes the command it is writing,
/// makes the files durable, writes its state and reports (`replica::STOP`).
fn stop_on_signals() {
    extern "C" fn on_signal(_: i32) {
        // An atomic store is async-signal-safe.
        redis_migration::replica::STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    }
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    // SAFETY: the handler only stores to a static atomic; signal() takes no pointers but
    // the handler's address, valid for the whole run.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
}

fn main() {
    steady_allocator();
    let args = cli::normalize_args(std::env::args_os());
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { cli::EXIT_FAILED } else { cli::EXIT_OK });
        }
    };
    if matches!(cli.command, cli::Command::Capture(_) | cli::Command::Migrate(_)) {
        stop_on_signals();
    }
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(cli::EXIT_FAILED);
        }
    }
}
