//! `rbuild pin`: every registry `FROM` rewritten to `name:tag@sha256:...` (the digest the tag
//! points to now, an index for multi-platform images), or `--check` that they all are.

use crate::frontend::instructions::Dockerfile;
use crate::reference::Reference;

use super::args::PinArgs;
use super::error::{CliError, ExitKind};
use super::parse::{frontend_error, read_dockerfile};

/// A FROM whose image is not pinned: its line and the image as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpinned {
    /// 1-based line.
    pub line: usize,
    /// The image as written.
    pub image: String,
}

/// The FROMs that name a registry image without a digest (not scratch, not a stage, not a
/// variable, not an OCI layout).
pub fn unpinned(df: &Dockerfile) -> Vec<Unpinned> {
    df.stages
        .iter()
        .filter(|s| {
            let b = s.base.as_str();
            b != "scratch"
                && !b.contains('$')
                && !b.starts_with("oci-layout://")
                && !b.contains('@')
                && !df.stages[..s.index]
                    .iter()
                    .any(|p| p.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(b)))
        })
        .map(|s| Unpinned {
            line: s.span.start,
            image: s.base.clone(),
        })
        .collect()
}

/// `text` with whole lines replaced: (line, old, new), kept only where the line still reads
/// `old`.
pub fn rewrite_lines(text: &str, changes: &[(usize, String, String)]) -> String {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            let body = l.strip_suffix('\n').unwrap_or(l);
            match changes
                .iter()
                .find(|(n, old, _)| *n == i + 1 && old == body)
            {
                Some((_, _, new)) => format!("{new}{}", &l[body.len()..]),
                None => l.to_string(),
            }
        })
        .collect()
}

/// `text` with the image on each given line replaced (the first whole word equal to it).
pub fn rewrite(text: &str, changes: &[(usize, String, String)]) -> String {
    let mut out = String::with_capacity(text.len() + changes.len() * 80);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        match changes.iter().find(|(l, _, _)| *l == i + 1) {
            Some((_, old, new)) => {
                let mut done = false;
                let rebuilt: Vec<String> = line
                    .split(' ')
                    .map(|w| {
                        let (word, tail) = match w.strip_suffix('\n') {
                            Some(x) => (x, "\n"),
                            None => (w, ""),
                        };
                        if !done && word == old {
                            done = true;
                            format!("{new}{tail}")
                        } else {
                            w.to_string()
                        }
                    })
                    .collect();
                out.push_str(&rebuilt.join(" "));
            }
            None => out.push_str(line),
        }
    }
    out
}

pub(super) fn run(a: PinArgs) -> Result<(), CliError> {
    let (name, text) = read_dockerfile(&a.file)?;
    let df = Dockerfile::parse(&text).map_err(|e| frontend_error(&name, e))?;
    let todo = unpinned(&df);
    if a.check {
        for u in &todo {
            println!(
                "{name}:{} FROM {} is not pinned to a digest",
                u.line, u.image
            );
        }
        if todo.is_empty() {
            return Ok(());
        }
        return Err(CliError::new(
            ExitKind::Failure,
            format!(
                "{} base image{} not pinned",
                todo.len(),
                if todo.len() == 1 { "" } else { "s" }
            ),
        )
        .hinted("run `rbuild pin` to rewrite them"));
    }
    let client = super::registry::client(&a.registry);
    let mut changes = Vec::new();
    for u in &todo {
        let r = Reference::parse_docker(&u.image).map_err(|e| {
            CliError::new(
                ExitKind::InvalidReference,
                format!("{name}:{} FROM {}: {e}", u.line, u.image),
            )
            .hinted(e.hint())
        })?;
        let digest = crate::registry::pull::tag_digest(&client, &r.clone().with_default_tag())?;
        let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        let repo = u.image.split('@').next().unwrap_or(&u.image);
        let repo = match repo.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => n,
            _ => repo,
        };
        let pinned = format!("{repo}:{tag}@{digest}");
        eprintln!("{name}:{} {} → {pinned}", u.line, u.image);
        changes.push((u.line, u.image.clone(), pinned));
    }
    if changes.is_empty() {
        eprintln!("{name}: every base image is pinned already");
        return Ok(());
    }
    let new = rewrite(&text, &changes);
    if a.file.as_os_str() == "-" {
        print!("{new}");
        return Ok(());
    }
    crate::content::write_atomic(&a.file, new.as_bytes())
        .map_err(|e| CliError::new(ExitKind::Failure, format!("writing {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unpinned_registry_bases_and_rewrites_only_them() {
        let text = "ARG V=1\nFROM node:20 AS build\nFROM build\nFROM alpine@sha256:aa\nFROM scratch\nFROM --platform=$BUILDPLATFORM golang AS g\n";
        let df = Dockerfile::parse(text).unwrap();
        let u = unpinned(&df);
        assert_eq!(
            u,
            vec![
                Unpinned {
                    line: 2,
                    image: "node:20".into()
                },
                Unpinned {
                    line: 6,
                    image: "golang".into()
                },
            ]
        );
        let out = rewrite(
            text,
            &[
                (2, "node:20".into(), "node:20@sha256:bb".into()),
                (6, "golang".into(), "golang:latest@sha256:cc".into()),
            ],
        );
        assert!(out.contains("FROM node:20@sha256:bb AS build\n"));
        assert!(out.contains("FROM --platform=$BUILDPLATFORM golang:latest@sha256:cc AS g\n"));
        assert!(out.contains("FROM alpine@sha256:aa\n"));
    }
}
