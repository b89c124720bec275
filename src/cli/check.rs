//! `redis-migration check FILE…`: each file checked for itself (see [`crate::check`]).
//! Exit 0 healthy, 1 damaged, 2 could not run.

use std::io::Write;

use crate::input::{InputError, Inputs};

/// Check the integrity of RDB files and summarize their contents
#[derive(clap::Args, Debug)]
#[command(after_help = "Exit status: 0 every file is healthy, 1 damage found (file, byte offset and what was \
expected are printed), 2 a file could not be read.")]
pub struct Args {
    #[command(flatten)]
    pub input: super::InputArgs,
    /// Print only problems
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.input.until.is_some() {
        anyhow::bail!("--until selects commands to print or replay; check reads the whole AOF");
    }
    // Each file is checked for itself: one that cannot be opened or is damaged does not
    // stop the others.
    let spec = crate::input::Spec { allow_truncated: false, until: None, ..args.input.spec() };
    let plan = args.threads.plan();
    let mut worst = super::EXIT_OK;
    for file in Inputs::list(&spec)? {
        let inputs = match Inputs::single(file, spec.no_mmap) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: {e}");
                worst = worst.max(super::EXIT_FAILED);
                continue;
            }
        };
        let report = crate::check::check_input(&inputs, &plan, args.quiet);
        // A reader that stopped reading (`| head`) is not an error of ours.
        let mut out = std::io::stdout().lock();
        match out.write_all(report.text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(worst),
            other => other?,
        }
        if let Some(e) = report.problem {
            eprintln!("error: {e}");
            worst = worst.max(match e {
                InputError::Open { .. } => super::EXIT_FAILED,
                _ => super::EXIT_PROBLEMS,
            });
        }
    }
    Ok(worst)
}
