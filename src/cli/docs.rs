//! `man` and `completions`: generated from the clap definitions, so they never drift
//! from `--help` (the checked-in `man/` pages are tested to be current).

use std::path::PathBuf;

use clap::CommandFactory;

/// Write man pages (one for the tool, one per subcommand)
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into; without it, the main page goes to stdout
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Print a shell completion script
#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The man pages as (file name, contents).
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let cmd = super::Cli::command();
    let mut pages = Vec::new();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    pages.push(("redis-migration.1".to_string(), buf));
    for sub in cmd.get_subcommands() {
        let name = format!("redis-migration-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf)?;
        pages.push((format!("{name}.1"), buf));
    }
    Ok(pages)
}

pub fn run_man(args: ManArgs) -> anyhow::Result<i32> {
    let pages = man_pages()?;
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (name, page) in pages {
                std::fs::write(dir.join(name), page)?;
            }
        }
        None => {
            use std::io::Write;
            std::io::stdout().lock().write_all(&pages[0].1)?;
        }
    }
    Ok(super::EXIT_OK)
}

pub fn run_completions(args: CompletionArgs) -> anyhow::Result<i32> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "redis-migration", &mut std::io::stdout());
    Ok(super::EXIT_OK)
}
