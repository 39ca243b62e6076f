//! `rbuild parse`: syntax check and BuildKit-style dump of a Dockerfile.

use std::io::Read;

use crate::frontend::instructions::Dockerfile;

use super::args::ParseArgs;
use super::error::{CliError, ExitKind};

/// Reads a Dockerfile from a path or `-` (stdin).
pub(super) fn read_dockerfile(path: &std::path::Path) -> Result<(String, String), CliError> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            CliError::new(
                ExitKind::Failure,
                format!("reading the Dockerfile from standard input: {e}"),
            )
        })?;
        return Ok(("<stdin>".into(), s));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        CliError::new(ExitKind::Dockerfile, format!("cannot read Dockerfile {}: {e}", path.display()))
            .hinted("pass the right file with `-f PATH`, or run from the directory that holds the Dockerfile")
    })?;
    Ok((
        path.display().to_string(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
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
