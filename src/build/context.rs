//! The build context: which files a COPY/ADD source selects (paths, wildcards, directory
//! contents), after `.dockerignore`, never outside the context; symlinks inside a copied
//! directory are kept as links, a source naming a link is followed (inside the context only).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::frontend::dockerignore::{clean_path, glob_match, Matcher};
use crate::layer::tar::{Entry, Kind};

/// Context selection failures.
#[derive(Debug, Error)]
pub enum ContextError {
    /// The source names a path outside the context.
    #[error("{src:?} is outside the build context")]
    Outside {
        /// The source as written.
        src: String,
    },
    /// Nothing matched.
    #[error("{src:?} not found in the build context{}", if *.ignored { " (it is excluded by .dockerignore)" } else { "" })]
    NotFound {
        /// The source as written.
        src: String,
        /// True when the file exists but `.dockerignore` excludes it.
        ignored: bool,
    },
    /// Reading the context failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A bad pattern in `.dockerignore`.
    #[error(".dockerignore: {0}")]
    Ignore(#[from] crate::frontend::dockerignore::PatternError),
}

/// A context directory with its ignore rules, and the hasher that digests its files (fed
/// the stat data taken while selecting, so no file is stat-ed twice).
#[derive(Clone)]
pub struct Context {
    /// The context root.
    pub root: PathBuf,
    ignore: Matcher,
    /// Content digests of this context's files.
    pub hasher: std::sync::Arc<crate::cache::stat::FileHasher>,
}

/// One file selected by a source: where it is and its path relative to the copy's base.
#[derive(Debug, Clone)]
pub struct Selected {
    /// Path relative to the context root (slash-separated).
    pub rel: String,
    /// Path below the destination (for directory sources: relative to that directory).
    pub dest_rel: String,
}

impl Context {
    /// Opens a context; `ignore_text` is the `.dockerignore` content, if any.
    pub fn new(root: PathBuf, ignore_text: Option<&str>) -> Result<Context, ContextError> {
        let patterns = ignore_text
            .map(crate::frontend::dockerignore::read_patterns)
            .unwrap_or_default();
        Ok(Context {
            hasher: std::sync::Arc::new(crate::cache::stat::FileHasher::open(&root, None)),
            root,
            ignore: Matcher::new(&patterns)?,
        })
    }

    /// The same context with a hasher whose stat cache persists in `store`.
    pub fn with_store(mut self, store: &crate::content::Store) -> Context {
        self.hasher = std::sync::Arc::new(crate::cache::stat::FileHasher::open(
            &self.root,
            Some(store),
        ));
        self
    }

    fn excluded(&self, rel: &str) -> Result<bool, ContextError> {
        if self.ignore.is_empty() {
            return Ok(false);
        }
        Ok(self.ignore.excludes(rel)?)
    }

    /// Cleans a source path; refuses anything that climbs out of the context, and resolves
    /// symlinks among its parent directories inside the root (never out of it).
    fn clean_src(&self, src: &str) -> Result<String, ContextError> {
        let c = clean_path(&format!("/{src}"));
        if src.split('/').any(|s| s == "..") && clean_path(src).starts_with("..") {
            return Err(ContextError::Outside {
                src: src.to_string(),
            });
        }
        let c = c.trim_start_matches('/');
        if c.contains(['*', '?', '[']) {
            return Ok(c.to_string());
        }
        resolve_parents(&self.root, c).ok_or_else(|| ContextError::Outside {
            src: src.to_string(),
        })
    }

    /// The files (and directories) a source selects, in path order.
    pub fn select(&self, src: &str) -> Result<(Vec<Selected>, bool), ContextError> {
        let cleaned = self.clean_src(src)?;
        let has_wildcard = cleaned.contains(['*', '?', '[']);
        let mut out = Vec::new();
        let mut any_ignored = false;
        if !has_wildcard {
            let is_dir = self.collect(&cleaned, "", &mut out, &mut any_ignored)?;
            if out.is_empty() && !is_dir {
                return Err(ContextError::NotFound {
                    src: src.to_string(),
                    ignored: any_ignored,
                });
            }
            return Ok((out, is_dir));
        }
        // Wildcards: match path components against every path of the same depth.
        let comps: Vec<&str> = cleaned.split('/').collect();
        let mut matches = Vec::new();
        self.glob(&comps, String::new(), &mut matches)?;
        for m in &matches {
            let name = m.rsplit('/').next().unwrap_or(m).to_string();
            self.collect(m, &name, &mut out, &mut any_ignored)?;
        }
        if out.is_empty() {
            return Err(ContextError::NotFound {
                src: src.to_string(),
                ignored: any_ignored,
            });
        }
        Ok((out, false))
    }

    fn glob(
        &self,
        comps: &[&str],
        prefix: String,
        out: &mut Vec<String>,
    ) -> Result<(), ContextError> {
        let Some((first, rest)) = comps.split_first() else {
            out.push(prefix);
            return Ok(());
        };
        let dir = self.root.join(&prefix);
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => return Ok(()),
        };
        names.sort();
        for n in names {
            if glob_match(first, &n).unwrap_or(false) {
                let p = if prefix.is_empty() {
                    n
                } else {
                    format!("{prefix}/{n}")
                };
                if rest.is_empty()
                    || std::fs::symlink_metadata(self.root.join(&p)).is_ok_and(|m| m.is_dir())
                {
                    self.glob(rest, p, out)?;
                }
            }
        }
        Ok(())
    }

    /// Adds `rel` (a file, or a directory's tree) to `out` with `dest_rel` as its name below
    /// the destination; returns whether `rel` is a directory.
    fn collect(
        &self,
        rel: &str,
        dest_rel: &str,
        out: &mut Vec<Selected>,
        ignored: &mut bool,
    ) -> Result<bool, ContextError> {
        let path = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => return Ok(false),
        };
        if !rel.is_empty() && self.excluded(rel)? {
            *ignored = true;
            if !(meta.is_dir() && self.ignore.has_exclusions()) {
                return Ok(false);
            }
        }
        if meta.is_symlink() {
            // A source that names a link (directly or by a wildcard) is followed, inside the
            // context only; links met while walking a directory are copied as links.
            return match resolve_all(&self.root, rel) {
                Some(target) if std::fs::metadata(self.root.join(&target)).is_ok() => {
                    self.collect(&target, dest_rel, out, ignored)
                }
                _ => Ok(false),
            };
        }
        if !meta.is_dir() {
            out.push(Selected {
                rel: rel.to_string(),
                dest_rel: dest_rel.to_string(),
            });
            return Ok(false);
        }
        if !(dest_rel.is_empty() || rel.is_empty() || self.excluded(rel)?) {
            out.push(Selected {
                rel: rel.to_string(),
                dest_rel: dest_rel.to_string(),
            });
        }
        let walker = walkdir::WalkDir::new(&path)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name();
        let mut it = walker.into_iter();
        while let Some(e) = it.next() {
            let e = e.map_err(|err| ContextError::Io {
                path: path.clone(),
                source: err
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            })?;
            let sub = e
                .path()
                .strip_prefix(&self.root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            if self.excluded(&sub)? {
                *ignored = true;
                if e.file_type().is_dir() && !self.ignore.has_exclusions() {
                    it.skip_current_dir();
                }
                continue;
            }
            let below = e
                .path()
                .strip_prefix(&path)
                .expect("under dir")
                .to_string_lossy()
                .into_owned();
            let d = if dest_rel.is_empty() {
                below
            } else {
                format!("{dest_rel}/{below}")
            };
            out.push(Selected {
                rel: sub,
                dest_rel: d,
            });
        }
        Ok(true)
    }

    /// Turns selected files into layer entries under `dest` (an image path without leading
    /// slash), with ownership and an optional mode override; hard links are kept.
    pub fn entries(
        &self,
        selected: &[Selected],
        dest: &str,
        owner: Option<(u64, u64)>,
        chmod: Option<u32>,
    ) -> Result<Vec<Entry>, ContextError> {
        let mut out = Vec::with_capacity(selected.len());
        let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
        // Stat in parallel (a context of 100,000 files is mostly path lookups), then
        // assemble in order so hard links point at the first path.
        use rayon::prelude::*;
        let metas: Vec<(PathBuf, std::io::Result<std::fs::Metadata>)> = selected
            .par_iter()
            .map(|s| {
                let path = self.root.join(&s.rel);
                let m = std::fs::symlink_metadata(&path);
                (path, m)
            })
            .collect();
        self.hasher.prime(
            metas
                .iter()
                .filter_map(|(p, m)| m.as_ref().ok().filter(|m| m.is_file()).map(|m| (p, m))),
        );
        for (s, (path, meta)) in selected.iter().zip(metas) {
            let meta = meta.map_err(|source| ContextError::Io {
                path: path.clone(),
                source,
            })?;
            let target = join_dest(dest, &s.dest_rel);
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&path).map_err(|source| ContextError::Io {
                    path: path.clone(),
                    source,
                })?;
                Kind::Symlink(t.to_string_lossy().into_owned())
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    if let Some(first) = inodes.get(&(meta.dev(), meta.ino())) {
                        Kind::Hardlink(first.clone())
                    } else {
                        inodes.insert((meta.dev(), meta.ino()), target.clone());
                        Kind::File(path.clone())
                    }
                } else {
                    Kind::File(path.clone())
                }
            } else if let Some(kind) = Kind::special(&meta) {
                kind // FIFOs and device nodes are copied as nodes, as BuildKit does
            } else {
                continue; // sockets are not copied: no layer format holds them
            };
            let mode = match (&kind, chmod) {
                (Kind::Symlink(_), _) => 0o777,
                (_, Some(m)) => m,
                _ => meta.mode() & 0o7777,
            };
            let size = if matches!(kind, Kind::File(_)) {
                meta.len()
            } else {
                0
            };
            out.push(Entry {
                path: target,
                kind,
                mode,
                uid: owner.map_or(meta.uid() as u64, |o| o.0),
                gid: owner.map_or(meta.gid() as u64, |o| o.1),
                mtime: meta.mtime().max(0) as u64,
                size,
                xattrs: vec![],
            });
        }
        Ok(out)
    }
}

/// Resolves symlinks in the parent directories of `rel` as if `root` were `/` (an absolute
/// link restarts at `root`, `..` stops at `root`), so a source path can never reach outside
/// the root. The last component is kept as is. `None` after too many links (a loop).
pub fn resolve_parents(root: &Path, rel: &str) -> Option<String> {
    resolve_in_root(root, rel, false)
}

/// Like [`resolve_parents`], and follows a symlink in the last component too (within the
/// root): what BuildKit does with a COPY source that names a link.
pub fn resolve_all(root: &Path, rel: &str) -> Option<String> {
    resolve_in_root(root, rel, true)
}

fn resolve_in_root(root: &Path, rel: &str, follow_last: bool) -> Option<String> {
    let mut todo: std::collections::VecDeque<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        if todo.is_empty() && !follow_last {
            out.push(c);
            break;
        }
        let here = root.join(out.join("/")).join(&c);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let target = std::fs::read_link(&here).ok()?;
                let t = target.to_string_lossy();
                if t.starts_with('/') {
                    out.clear();
                }
                for part in t.split('/').rev().filter(|p| !p.is_empty()) {
                    todo.push_front(part.to_string());
                }
            }
            _ => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// `dest` joined with a relative path, no leading slash.
pub fn join_dest(dest: &str, rel: &str) -> String {
    let d = dest.trim_matches('/');
    match (d.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => d.to_string(),
        (false, false) => format!("{d}/{rel}"),
    }
}

/// The largest `.dockerignore` read: a pattern file past this is the wrong file, not rules.
pub const MAX_IGNORE_FILE: u64 = 16 << 20;

/// Reads the ignore file for a build: `<Dockerfile>.dockerignore` next to a custom
/// Dockerfile wins over `<context>/.dockerignore`. Only a missing file means "no rules": an
/// unreadable one is an error, since building without the rules would copy what they exclude.
pub fn ignore_file(
    context: &Path,
    dockerfile: Option<&Path>,
) -> Result<Option<String>, ContextError> {
    if let Some(df) = dockerfile {
        let mut name = df.as_os_str().to_owned();
        name.push(".dockerignore");
        if let Some(t) = read_ignore(&PathBuf::from(name))? {
            return Ok(Some(t));
        }
    }
    read_ignore(&context.join(".dockerignore"))
}

/// One ignore file, lossily decoded like Go strings; `None` when it does not exist.
fn read_ignore(path: &Path) -> Result<Option<String>, ContextError> {
    use std::io::Read;
    let io = |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_IGNORE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_IGNORE_FILE {
        return Err(io(std::io::Error::other(
            "larger than 16 MiB; it is not a .dockerignore",
        )));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}
