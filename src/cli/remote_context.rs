//! Remote build contexts, as `docker build URL` takes them: a Git repository
//! (`https://host/repo.git`, `git://...`, `git@host:repo`, `github.com/owner/repo`, with an
//! optional `#REF:SUBDIR`) is cloned with the `git` program, so the user's own credentials,
//! SSH keys and proxies apply; any other `http(s)://` URL is downloaded and read like
//! standard input (a tar archive is the context, plain text is a Dockerfile).

use std::process::Command;

use crate::content::Store;

use super::error::{CliError, ExitKind};
use super::stdin_context::TempContext;

/// What a context argument names when it is not a local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Remote {
    /// A Git repository: clone URL, ref (branch, tag or commit) and subdirectory.
    Git {
        /// What `git fetch` is given.
        url: String,
        /// `#REF`; the default branch when empty.
        reference: String,
        /// `#REF:DIR`; the repository root when empty.
        subdir: String,
    },
    /// A file over HTTP(S): an archive or a Dockerfile.
    Http(String),
}

/// Classifies a context argument as Docker does (`None`: a local path).
pub(super) fn classify(arg: &str) -> Option<Remote> {
    let is_http = arg.starts_with("http://") || arg.starts_with("https://");
    let (base, fragment) = arg.split_once('#').unwrap_or((arg, ""));
    let git = (is_http && base.ends_with(".git"))
        || ["git://", "git@", "github.com/", "ssh://"]
            .iter()
            .any(|p| arg.starts_with(p));
    if git {
        let url = if base.starts_with("github.com/") {
            format!("https://{base}")
        } else {
            base.to_string()
        };
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        return Some(Remote::Git {
            url,
            reference: reference.to_string(),
            subdir: subdir.trim_matches('/').to_string(),
        });
    }
    is_http.then(|| Remote::Http(arg.to_string()))
}

fn failed(arg: &str, what: impl std::fmt::Display, hint: &str) -> CliError {
    CliError::new(
        ExitKind::Failure,
        format!("fetching the build context {arg}: {what}"),
    )
    .hinted(hint)
}

/// Fetches a remote context into the store's scratch space.
pub(super) fn fetch(
    store: &Store,
    arg: &str,
    remote: &Remote,
    file: Option<&std::path::Path>,
) -> Result<TempContext, CliError> {
    match remote {
        Remote::Http(url) => {
            let client = crate::net::client(&[])
                .map_err(|e| failed(arg, e, "check SSL_CERT_FILE and the proxy settings"))?;
            let resp = crate::net::get(&client, url)
                .map_err(|e| failed(arg, e, "check the URL and that the server is reachable"))?;
            super::stdin_context::read_from(store, resp, file, url)
        }
        Remote::Git {
            url,
            reference,
            subdir,
        } => clone(store, arg, url, reference, subdir, file),
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> Result<(), String> {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

fn clone(
    store: &Store,
    arg: &str,
    url: &str,
    reference: &str,
    subdir: &str,
    file: Option<&std::path::Path>,
) -> Result<TempContext, CliError> {
    let hint =
        "check the URL, the ref after #, and your git credentials (the `git` program is used)";
    // A ref is handed to git as an argument: one that looks like an option is refused.
    if reference.starts_with('-')
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CliError::new(
            ExitKind::Usage,
            format!("{arg}: {reference:?} is not a Git ref"),
        )
        .hinted("write #BRANCH, #TAG or #COMMIT after the URL, optionally :DIR"));
    }
    let dir = store
        .temp_dir("git-context")
        .map_err(|e| failed(arg, e, hint))?;
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).map_err(|e| failed(arg, e, hint))?;
    let want = if reference.is_empty() {
        "HEAD"
    } else {
        reference
    };
    git(&repo, &["init", "-q"]).map_err(|e| failed(arg, e, hint))?;
    git(&repo, &["remote", "add", "origin", url]).map_err(|e| failed(arg, e, hint))?;
    // A shallow fetch of the ref; a commit id some servers refuse shallowly is fetched whole.
    if git(&repo, &["fetch", "-q", "--depth", "1", "origin", want]).is_err() {
        git(&repo, &["fetch", "-q", "origin"]).map_err(|e| failed(arg, e, hint))?;
        git(&repo, &["checkout", "-q", want]).map_err(|e| failed(arg, e, hint))?;
    } else {
        git(&repo, &["checkout", "-q", "FETCH_HEAD"]).map_err(|e| failed(arg, e, hint))?;
    }
    if repo.join(".gitmodules").is_file() {
        git(
            &repo,
            &[
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth",
                "1",
            ],
        )
        .map_err(|e| failed(arg, e, hint))?;
    }
    // The repository's history is not part of the context (as BuildKit's default).
    let _ = std::fs::remove_dir_all(repo.join(".git"));
    let context = match crate::build::context::resolve_parents(&repo, subdir) {
        Some(rel) if repo.join(&rel).is_dir() => repo.join(rel),
        _ => {
            return Err(failed(
                arg,
                format!("the repository has no directory {subdir:?}"),
                "write #REF:DIR with a directory of the repository",
            ))
        }
    };
    TempContext::found(
        dir,
        context,
        file,
        arg,
        "name the Dockerfile with -f PATH inside the repository (or its #REF:DIR)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_arguments_are_classified_as_docker_does() {
        let git = |url: &str, r: &str, d: &str| {
            Some(Remote::Git {
                url: url.into(),
                reference: r.into(),
                subdir: d.into(),
            })
        };
        assert_eq!(
            classify("https://github.com/docker/rootfs.git#container:docker"),
            git(
                "https://github.com/docker/rootfs.git",
                "container",
                "docker"
            )
        );
        assert_eq!(
            classify("github.com/owner/repo"),
            git("https://github.com/owner/repo", "", "")
        );
        assert_eq!(
            classify("git@github.com:owner/repo.git#v1.2"),
            git("git@github.com:owner/repo.git", "v1.2", "")
        );
        assert_eq!(
            classify("git://127.0.0.1:9418/r.git#:sub/dir/"),
            git("git://127.0.0.1:9418/r.git", "", "sub/dir")
        );
        assert_eq!(
            classify("https://example.com/ctx.tar.gz"),
            Some(Remote::Http("https://example.com/ctx.tar.gz".into()))
        );
        assert_eq!(classify("."), None);
        assert_eq!(classify("./github.com/x"), None);
        assert_eq!(classify("dir.git"), None);
    }
}
