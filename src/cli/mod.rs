//! The command line: argument definitions ([`args`]), one function per subcommand, and the
//! rendering of errors with hints and exit codes ([`error`]). The only module that prints.

pub mod args;
mod build;
pub mod error;
mod inspect;
mod inspect_ref;
mod lint;
mod parse;
mod pin;
mod progress;
mod registry;
mod remote_context;
mod stdin_context;
mod store;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Commands};
use error::CliError;

/// Runs the command line and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse_from(with_default_subcommand(std::env::args_os().collect())) {
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

/// `rbuild -t app:v1 .` means `rbuild build -t app:v1 .`.
fn with_default_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const SUBCOMMANDS: &[&str] = &[
        "build",
        "images",
        "rmi",
        "prune",
        "check",
        "inspect-ref",
        "parse",
        "lint",
        "pin",
        "inspect",
        "pull",
        "push",
        "tag",
        "login",
        "logout",
        "help",
    ];
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        let known =
            SUBCOMMANDS.contains(&first) || matches!(first, "-h" | "--help" | "-V" | "--version");
        if !known {
            args.insert(1, "build".into());
        }
    }
    args
}

fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Commands::Build(a) => build::run(*a),
        Commands::Images(a) => store::images(a),
        Commands::Rmi(a) => store::rmi(a),
        Commands::Prune(a) => store::prune(a),
        Commands::Check(a) => store::check(a),
        Commands::InspectRef(a) => inspect_ref::run(a),
        Commands::Parse(a) => parse::run(a),
        Commands::Lint(a) => lint::run(a),
        Commands::Pin(a) => pin::run(a),
        Commands::Inspect(a) => inspect::run(a),
        Commands::Pull(a) => registry::pull_cmd(a),
        Commands::Push(a) => registry::push_cmd(a),
        Commands::Tag(a) => registry::tag_cmd(a),
        Commands::Login(a) => registry::login_cmd(a),
        Commands::Logout(a) => registry::logout_cmd(a),
    }
}

/// A `--platform` flag as a platform (this machine's when absent); a value that names no
/// platform is a usage error.
fn platform_flag(flag: Option<&str>) -> Result<crate::image::Platform, CliError> {
    let host = crate::frontend::expand::host_platform();
    match flag {
        None => Ok(crate::image::Platform::parse(&host)),
        Some(p) => crate::image::Platform::from_specifier(p, &host).map_err(|e| {
            CliError::new(error::ExitKind::Usage, format!("--platform: {e}"))
                .hinted("use os/arch[/variant], one per build, e.g. --platform linux/arm64")
        }),
    }
}
