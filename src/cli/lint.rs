//! `rbuild lint`: best-practice findings for a Dockerfile, as text, JSON or SARIF; and the
//! same findings as warnings during `rbuild build` (`--check` stops after them).

use std::path::Path;

use crate::frontend::instructions::Dockerfile;
use crate::lint::{lint, ContextFacts, Finding, LARGE_CONTEXT};

use super::args::LintArgs;
use super::error::{CliError, ExitKind};
use super::parse::{frontend_error, read_dockerfile};

/// The build's `.dockerignore` text; a file that exists but cannot be read stops the command,
/// since going on without its rules would copy what they exclude.
pub(super) fn ignore_rules(
    context: &Path,
    dockerfile: Option<&Path>,
) -> Result<Option<String>, CliError> {
    crate::build::context::ignore_file(context, dockerfile).map_err(|e| {
        CliError::new(ExitKind::Failure, e.to_string())
            .hinted("make the .dockerignore readable (a text file of patterns), or remove it")
    })
}

/// What checks need to know about the context: whether it has a `.dockerignore`, and the
/// size when there is none (walked only then, and only up to the warning's threshold).
pub(super) fn context_facts(context: &Path, has_dockerignore: bool) -> ContextFacts {
    let size = (!has_dockerignore).then(|| {
        let mut total = 0u64;
        for e in walkdir::WalkDir::new(context).into_iter().flatten() {
            if e.file_type().is_file() {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
                if total >= LARGE_CONTEXT {
                    break;
                }
            }
        }
        total
    });
    ContextFacts {
        has_dockerignore,
        size,
    }
}

/// Findings as `Dockerfile:LINE Check: message` lines with the fix below.
pub(super) fn text(name: &str, findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{name}:{} {}: {}\n  fix: {}\n",
                f.line, f.check, f.message, f.fix
            )
        })
        .collect()
}

fn sarif(name: &str, findings: &[Finding]) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = crate::lint::CHECKS
        .iter()
        .map(|c| serde_json::json!({"id": c, "name": c}))
        .collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "ruleId": f.check,
                "level": "warning",
                "message": {"text": format!("{} Fix: {}", f.message, f.fix)},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": name},
                    "region": {"startLine": f.line}
                }}]
            })
        })
        .collect();
    serde_json::json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{"tool": {"driver": {"name": "rbuild", "rules": rules}}, "results": results}]
    })
}

pub(super) fn run(a: LintArgs) -> Result<(), CliError> {
    let df_path = a
        .file
        .clone()
        .unwrap_or_else(|| a.context.join("Dockerfile"));
    let (name, src) = read_dockerfile(&df_path)?;
    let df = Dockerfile::parse(&src).map_err(|e| frontend_error(&name, e))?;
    let file = a.file.as_deref().filter(|f| f.as_os_str() != "-");
    let facts = context_facts(&a.context, ignore_rules(&a.context, file)?.is_some());
    let mut findings = lint(&df, &src, &facts);
    if a.fix {
        let changes = crate::lint::fixes(&df, &src, &findings);
        if !changes.is_empty() {
            let new = super::pin::rewrite_lines(&src, &changes);
            for (line, old, new) in &changes {
                println!("{name}:{line}\n-{old}\n+{new}");
            }
            if df_path.as_os_str() == "-" {
                print!("{new}");
            } else {
                crate::content::write_atomic(&df_path, new.as_bytes()).map_err(|e| {
                    CliError::new(ExitKind::Failure, format!("writing {name}: {e}"))
                })?;
            }
            let df = Dockerfile::parse(&new).map_err(|e| frontend_error(&name, e))?;
            findings = lint(&df, &new, &facts);
        }
    }
    match a.format.as_str() {
        "text" => print!("{}", text(&name, &findings)),
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&findings).expect("serialisable")
        ),
        "sarif" => println!(
            "{}",
            serde_json::to_string_pretty(&sarif(&name, &findings)).expect("serialisable")
        ),
        other => {
            return Err(
                CliError::new(ExitKind::Usage, format!("unknown --format {other:?}"))
                    .hinted("use text, json or sarif"),
            )
        }
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(
            ExitKind::Failure,
            format!(
                "{} finding{} in {name}",
                findings.len(),
                if findings.len() == 1 { "" } else { "s" }
            ),
        )
        .hinted("fix them, or skip a check with `# check=skip=NAME` at the top of the Dockerfile"))
    }
}
