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
    let files = Inputs::list(&spec)?;
    let several = files.len() > 1;
    for file in files {
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
    // Keys in two snapshot files of the job (a folder of shard snapshots), once every
    // file is healthy.
    if several && worst == super::EXIT_OK {
        worst = worst.max(duplicates(&spec, &plan, args.quiet)?);
    }
    Ok(worst)
}

/// Looks for keys found in more than one snapshot file: a problem (exit 1) unless
/// `--on-duplicate` says which copy wins.
fn duplicates(spec: &crate::input::Spec, plan: &crate::pipeline::Plan, quiet: bool) -> anyhow::Result<i32> {
    use crate::duplicates::{self, OnDuplicate};
    // The snapshot files alone (an AOF given beside them is no part of this, and opening
    // it with them could be refused: `-rdb` with an AOF that has its own snapshot).
    let snapshots: Vec<std::path::PathBuf> = Inputs::list(spec)?
        .into_iter()
        .filter(|f| f.last_of_set && !f.from_aof_flag && f.path.extension().is_some_and(|x| x == "rdb"))
        .map(|f| f.path)
        .collect();
    if snapshots.len() < 2 {
        return Ok(super::EXIT_OK);
    }
    let spec = crate::input::Spec { files: snapshots, rdb: Vec::new(), aof: Vec::new(), ..spec.clone() };
    let inputs = Inputs::open(&spec)?;
    if !duplicates::participants(&inputs).contains(&true) {
        return Ok(super::EXIT_OK);
    }
    let filter = crate::filter::Filter::default();
    let found = duplicates::find(&inputs, plan, &filter, spec.on_duplicate)?;
    if found.is_empty() {
        if !quiet {
            println!("no key is in more than one snapshot file");
        }
        return Ok(super::EXIT_OK);
    }
    let which = match spec.on_duplicate {
        OnDuplicate::Refuse => {
            eprintln!(
                "error: {} keys are in more than one snapshot file: {} (replay refuses them unless --on-duplicate first|last)",
                found.count,
                found.message()
            );
            return Ok(super::EXIT_PROBLEMS);
        }
        OnDuplicate::First => "first",
        OnDuplicate::Last => "last",
    };
    if !quiet {
        println!(
            "{} keys are in more than one snapshot file, the {which} file's copy wins (--on-duplicate): {}",
            found.count,
            found.message()
        );
    }
    Ok(super::EXIT_OK)
}
