//! `rbuild parse`: syntax check and BuildKit-style dump of a Dockerfile.

use std::io::Read;

use crate::frontend::instructions::Dockerfile;

use super::args::ParseArgs;
use super::error::{CliError, ExitKind};

/// The largest Dockerfile read: buildx refuses remote ones over 2 MB and BuildKit's gRPC
/// messages stop at 16 MiB, so a larger input is the wrong file (`-f /dev/zero`), not a
/// Dockerfile, and reading it whole would only exhaust memory.
pub const MAX_DOCKERFILE: u64 = 16 << 20;

/// Reads a Dockerfile from a path or `-` (stdin), at most [`MAX_DOCKERFILE`] bytes.
pub(super) fn read_dockerfile(path: &std::path::Path) -> Result<(String, String), CliError> {
    let (name, reader): (String, Box<dyn Read>) = if path.as_os_str() == "-" {
        ("<stdin>".into(), Box::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
        (path.display().to_string(), Box::new(f))
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_DOCKERFILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path, e))?;
    if bytes.len() as u64 > MAX_DOCKERFILE {
        return Err(CliError::new(
            ExitKind::Dockerfile,
            format!("Dockerfile {name} is larger than 16 MiB"),
        )
        .hinted("check that `-f` names the Dockerfile; split a generated one into smaller files"));
    }
    Ok((name, String::from_utf8_lossy(&bytes).into_owned()))
}

fn unreadable(path: &std::path::Path, e: std::io::Error) -> CliError {
    if path.as_os_str() == "-" {
        return CliError::new(
            ExitKind::Failure,
            format!("reading the Dockerfile from standard input: {e}"),
        );
    }
    CliError::new(
        ExitKind::Dockerfile,
        format!("cannot read Dockerfile {}: {e}", path.display()),
    )
    .hinted(
        "pass the right file with `-f PATH`, or run from the directory that holds the Dockerfile",
    )
}

/// Turns a frontend error into a located CLI error.
pub(super) fn frontend_error(
    name: &str,
    e: crate::frontend::instructions::FrontendError,
) -> CliError {
    let mut err = CliError::new(
        ExitKind::Dockerfile,
        format!("{name}:{}: {}", e.line(), e.message()),
    );
    if let Some(h) = e.hint() {
        err = err.hinted(h);
    }
    err
}

pub(super) fn run(a: ParseArgs) -> Result<(), CliError> {
    let (name, text) = read_dockerfile(&a.file)?;
    let df = Dockerfile::parse(&text).map_err(|e| frontend_error(&name, e))?;
    for w in &df.parsed.warnings {
        eprintln!("warning: {name}:{}: {}", w.line, w.short);
    }
    print!("{}", df.parsed.dump());
    Ok(())
}
