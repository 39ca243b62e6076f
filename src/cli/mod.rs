//! The command line: argument definitions ([`args`]), one function per subcommand, and the
//! rendering of errors with hints and exit codes ([`error`]). The only module that prints.

pub mod args;
pub mod error;
mod inspect_ref;
mod parse;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Commands};
use error::CliError;

/// Runs the command line and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            ExitCode::from(e.code())
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Commands::InspectRef(a) => inspect_ref::run(a),
        Commands::Parse(a) => parse::run(a),
    }
}
