//! `redis-migration print FILE…`: every selected key as JSON lines (lossless), text, or
//! RESP commands (see [`crate::print`]), written to stdout.

use clap::ValueEnum;

use crate::input::Inputs;
use crate::print::{self, Job, PrintError};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    /// One JSON object per key (see the README for the shapes)
    Json,
    /// One line per key, for people
    Text,
    /// Commands that recreate the keys, as RESP (for `redis-cli --pipe`)
    Resp,
}

impl From<FormatArg> for print::Format {
    fn from(f: FormatArg) -> print::Format {
        match f {
            FormatArg::Json => print::Format::Json,
            FormatArg::Text => print::Format::Text,
            FormatArg::Resp => print::Format::Resp,
        }
    }
}

/// Print the keys of RDB files as JSON lines, text, or RESP commands for redis-cli --pipe
#[derive(clap::Args, Debug)]
#[command(after_help = "Functions and Lua scripts (the `lua` AUX field) are printed as \
{\"function\":…} and {\"script\":…} lines in JSON when no key filter is given.\n\
Exit status: 0 success, 2 a file could not be read or decoded.")]
pub struct Args {
    #[command(flatten)]
    pub input: super::InputArgs,
    #[command(flatten)]
    pub filter: super::FilterArgs,
    /// Output format [default: text on a terminal, json otherwise]
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<FormatArg>,
    /// No summary on stderr
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
    #[command(flatten)]
    pub translate: super::TranslateArgs,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut filter = args.filter.to_filter()?;
    let format = args.format.map(print::Format::from).unwrap_or_else(|| {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            print::Format::Text
        } else {
            print::Format::Json
        }
    });
    let mut translate = None;
    if format == print::Format::Resp {
        translate = Some(args.translate.to_config(filter.keep_expired, filter.now_ms)?);
        // The translator decides about expired keys (it knows --expire-margin).
        filter.keep_expired = true;
    }
    let job = Job { format, filter, translate, plan: args.threads.plan() };
    // Every file is opened before anything is printed: a missing part of a multi-part AOF
    // stops the job before it starts.
    if args.input.on_duplicate.is_some() {
        anyhow::bail!(
            "--on-duplicate is for replay and check; this command reads every file's keys as they are \
             (a key in two files shows twice)"
        );
    }
    let inputs = Inputs::open(&args.input.spec())?;
    let stdout = std::io::stdout();
    let printed = match print::run(&inputs, &job, stdout.lock()) {
        Ok(p) => p,
        Err(PrintError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
        Err(e) => return Err(e.into()),
    };
    for note in &printed.notes {
        eprintln!("{note}");
    }
    for line in printed.report(&job, args.quiet) {
        eprintln!("{line}");
    }
    Ok(printed.exit_code(&job))
}
