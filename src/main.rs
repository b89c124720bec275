//! The `redis-migration` binary: parse arguments, run, map errors to exit codes.

use clap::Parser;
use redis_migration::cli::{self, Cli};

fn main() {
    let args = cli::normalize_args(std::env::args_os());
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { cli::EXIT_FAILED } else { cli::EXIT_OK });
        }
    };
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(cli::EXIT_FAILED);
        }
    }
}
