//! Raw command-line arguments (clap only; no logic).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rbuild: build OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Show the parts of an image reference, with Docker's defaults marked.
    #[command(name = "inspect-ref")]
    InspectRef(InspectRefArgs),
    /// Check a Dockerfile's syntax and print its instructions as BuildKit's parser sees them.
    Parse(ParseArgs),
}

/// `rbuild inspect-ref`.
#[derive(Debug, Args)]
pub struct InspectRefArgs {
    /// The reference, e.g. `nginx`, `ghcr.io/org/app:1.2`, `localhost:5000/x@sha256:...`.
    pub reference: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `rbuild parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile (`-` reads standard input).
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: PathBuf,
}
