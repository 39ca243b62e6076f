//! COPY and ADD: which files a step writes and where, following Docker's rules (trailing
//! slashes, directory contents vs the directory, missing parents, WORKDIR-relative
//! destinations), from the context, an earlier stage, or an image; `--exclude`, `--parents`,
//! `--chown`, `--chmod`, heredoc sources, and ADD's unpacking of local tar archives.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use super::context::{join_dest, Context, ContextError};
use super::{base, fetch, owner, parent_dirs, BuildError, StageState};
use crate::content::{Store, TempDir};
use crate::frontend::dockerignore::{clean_path, glob_match, Matcher};
use crate::frontend::instructions::{CopyCmd, Dockerfile};
use crate::layer::apply::apply_layer;
use crate::layer::read::{decoder, looks_like_tar, Format};
use crate::layer::tar::{Entry, Kind};

/// What a COPY can read besides the step itself.
pub(super) struct Sources<'a> {
    pub store: &'a Store,
    pub ctx: &'a Context,
    pub df: &'a Dockerfile,
    pub done: &'a std::collections::BTreeMap<usize, StageState>,
    pub named_contexts: &'a std::collections::BTreeMap<String, String>,
    pub platform: Option<&'a str>,
    pub registry: &'a Option<std::sync::Arc<crate::registry::Client>>,
    pub pull: base::PullPolicy,
    /// Unpacked archives and images live here until the layer is written.
    pub temps: &'a mut Vec<TempDir>,
}

/// How selected files are placed.
struct Placement<'a> {
    dest: &'a str,
    dest_is_dir: bool,
    owner: Option<(u64, u64)>,
    chmod: Option<u32>,
    excludes: &'a Matcher,
    parents: bool,
}

fn parse_chmod(s: &str, line: usize) -> Result<u32, BuildError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            BuildError::step(
                line,
                format!("invalid chmod parameter {s:?}"),
                Some("give an octal mode such as `0644` or `755`"),
            )
        })
}

fn ctx_err(line: usize) -> impl Fn(ContextError) -> BuildError {
    move |source| BuildError::Context { line, source }
}

/// The layer entries of a COPY or ADD step.
pub(super) fn copy_entries(
    c: &CopyCmd,
    is_add: bool,
    state: &StageState,
    src: &mut Sources<'_>,
    line: usize,
) -> Result<Vec<Entry>, BuildError> {
    let cfg = &state.config.config;
    let owner = match &c.chown {
        Some(s) => Some(owner::resolve_owner(s, line, &mut |p| {
            state.read_file(src.store, p)
        })?),
        None => None,
    };
    let chmod = c
        .chmod
        .as_deref()
        .map(|m| parse_chmod(m, line))
        .transpose()?;
    let excludes = Matcher::new(&c.excludes).map_err(|e| {
        BuildError::step(
            line,
            format!("invalid --exclude pattern: {e}"),
            Some("use .dockerignore-style patterns such as `*.md` or `**/test`"),
        )
    })?;
    if let Some(s) = c
        .sources
        .iter()
        .find(|s| (s.contains("://") && !fetch::is_url(s)) || s.starts_with("git@"))
    {
        return Err(BuildError::step(
            line,
            format!("ADD from {s:?}: git repositories and other schemes are not supported"),
            Some("use an http(s) URL, or clone into the context and COPY"),
        ));
    }
    if !is_add && c.sources.iter().any(|s| fetch::is_url(s)) {
        return Err(BuildError::step(
            line,
            "COPY cannot download URLs",
            Some("use ADD for URLs (with --checksum=sha256:... to pin the content)"),
        ));
    }
    if c.checksum.is_some() && !c.sources.iter().all(|s| fetch::is_url(s)) {
        return Err(BuildError::step(
            line,
            "--checksum can only be used with http(s) sources",
            None,
        ));
    }
    let dest_abs = if c.dest.starts_with('/') {
        c.dest.clone()
    } else {
        format!("{}/{}", cfg.working_dir.trim_end_matches('/'), c.dest)
    };
    let dest_is_dir = c.dest.ends_with('/')
        || c.sources.len() + c.inline.len() > 1
        || c.dest == "."
        || c.dest.ends_with("/.")
        || c.parents;
    let dest = clean_path(&dest_abs).trim_start_matches('/').to_string();
    let place = Placement {
        dest: &dest,
        dest_is_dir,
        owner,
        chmod,
        excludes: &excludes,
        parents: c.parents,
    };
    let default_owner = owner.unwrap_or((0, 0));
    let mut entries = Vec::new();
    for f in &c.inline {
        entries.push(Entry {
            path: if dest_is_dir {
                join_dest(&dest, &f.name)
            } else {
                dest.clone()
            },
            kind: Kind::Bytes(f.data.clone().into_bytes()),
            mode: chmod.unwrap_or(0o644),
            uid: default_owner.0,
            gid: default_owner.1,
            mtime: 0,
            size: f.data.len() as u64,
            xattrs: vec![],
        });
    }
    match &c.from {
        Some(from) => from_other(c, from, &place, src, line, &mut entries)?,
        None => {
            for s in &c.sources {
                if fetch::is_url(s) {
                    let path = if dest_is_dir {
                        let name = fetch::url_file_name(s).ok_or_else(|| {
                            BuildError::step(
                                line,
                                format!("cannot tell a file name from the URL {s:?}"),
                                Some("give a destination file path instead of a directory"),
                            )
                        })?;
                        join_dest(&dest, &name)
                    } else {
                        dest.clone()
                    };
                    let got = fetch::fetch(
                        src.store,
                        s,
                        c.checksum.as_deref(),
                        path,
                        chmod.unwrap_or(0o600),
                        default_owner,
                    )
                    .map_err(|m| {
                        BuildError::step(
                            line,
                            m,
                            Some("check the URL and the network; pin content with --checksum"),
                        )
                    })?;
                    entries.push(got.entry);
                    src.temps.push(got.dir);
                    continue;
                }
                let unpack = is_add && c.unpack != Some(false);
                let found = select(src.ctx, s, &place, Some(default_owner), unpack, src)
                    .map_err(ctx_err(line))?;
                entries.extend(found);
            }
        }
    }
    // Missing parents of the destination are created (owned by root, like Docker).
    // A directory destination takes the copy's owner; a file destination's parents stay root's.
    let mut dirs = if dest_is_dir {
        parent_dirs(&dest, true, default_owner)
    } else {
        parent_dirs(&dest, false, (0, 0))
    };
    if c.parents {
        let below: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| e.path.rsplit_once('/').map(|(p, _)| p.to_string()))
            .collect();
        for p in below {
            dirs.extend(parent_dirs(&p, true, (0, 0)));
        }
    }
    // Without --link the copy lands on the stage's filesystem: directories that exist there
    // keep their mode and owner. With --link the layer stands alone and carries its parents.
    if !c.link {
        dirs = state.parent_entries(src.store, dirs, false)?;
    }
    let mut present: BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    dirs.retain(|d| present.insert(d.path.clone()));
    drop(present);
    // Exactly: on 200,000 files a doubled capacity is tens of MB.
    entries.reserve_exact(dirs.len());
    entries.extend(dirs);
    Ok(entries)
}

/// `COPY --from=`: an earlier stage (files it wrote, then its base image's) or an image.
fn from_other(
    c: &CopyCmd,
    from: &str,
    place: &Placement<'_>,
    src: &mut Sources<'_>,
    line: usize,
    entries: &mut Vec<Entry>,
) -> Result<(), BuildError> {
    let stage = src.df.stage(from).map(|s| s.index).or_else(|| {
        from.parse::<usize>()
            .ok()
            .filter(|i| *i < src.df.stages.len())
    });
    let (files, root) = match stage {
        Some(i) => {
            let st = src.done.get(&i).ok_or_else(|| {
                BuildError::step(
                    line,
                    format!("COPY --from={from} refers to a stage that is defined later"),
                    Some("move the stage above this step"),
                )
            })?;
            (Some(&st.files), st.base_root(src.store)?)
        }
        None => {
            let spec = src
                .named_contexts
                .get(from)
                .cloned()
                .unwrap_or_else(|| from.to_string());
            let img = base::load(
                &spec,
                src.store,
                src.platform,
                src.registry.as_deref(),
                src.pull,
            )
            .map_err(|e| match e {
                base::BaseError::Unsupported(_) => BuildError::step(
                    line,
                    format!("COPY --from={from}: no stage named {from:?}, and {e}"),
                    e.hint().as_deref(),
                ),
                other => BuildError::Base(other),
            })?;
            let remote = match (&img.remote, src.registry) {
                (Some(r), Some(c)) => img
                    .layers
                    .iter()
                    .map(|l| (l.digest.clone(), (c.clone(), r.clone())))
                    .collect(),
                _ => std::collections::BTreeMap::new(),
            };
            let root = super::unpack_image(
                src.store,
                &img.layers,
                &img.config.rootfs.diff_ids,
                &remote,
                from,
            )?;
            (None, Some(root))
        }
    };
    for s in &c.sources {
        let before = entries.len();
        if let Some(files) = files {
            entries.extend(from_files(files, s, place));
        }
        let written: BTreeSet<String> = entries[before..].iter().map(|e| e.path.clone()).collect();
        if let Some(root) = &root {
            let ctx = Context::new(root.clone(), None).map_err(ctx_err(line))?;
            match select(&ctx, s, place, place.owner, false, src) {
                Ok(found) => {
                    entries.extend(found.into_iter().filter(|e| !written.contains(&e.path)))
                }
                Err(ContextError::NotFound { .. }) if entries.len() > before => {}
                Err(ContextError::NotFound { .. }) => {
                    return Err(BuildError::step(
                        line,
                        format!(
                            "COPY --from={from}: {s:?} not found in that {}",
                            if stage.is_some() { "stage" } else { "image" }
                        ),
                        None,
                    ))
                }
                Err(e) => return Err(ctx_err(line)(e)),
            }
        } else if entries.len() == before && clean_path(&format!("/{s}")) != "/" {
            // `/` of a stage exists even when the stage wrote nothing (BuildKit copies it).
            return Err(BuildError::step(
                line,
                format!("COPY --from={from}: {s:?} not found in that stage"),
                None,
            ));
        }
    }
    Ok(())
}

/// Files this build wrote into a stage that `src` selects.
fn from_files(
    files: &std::collections::BTreeMap<String, Entry>,
    src: &str,
    place: &Placement<'_>,
) -> Vec<Entry> {
    let named = clean_path(&format!("/{src}"))
        .trim_start_matches('/')
        .to_string();
    let key = follow_link(files, &named);
    let matched: Vec<&Entry> = files
        .values()
        .filter(|e| {
            key.is_empty()
                || e.path == key
                || e.path.starts_with(&format!("{key}/"))
                || glob_match(&key, &e.path).unwrap_or(false)
        })
        .collect();
    let single_file =
        matched.len() == 1 && matched[0].path == key && !matches!(matched[0].kind, Kind::Dir);
    let mut out = Vec::new();
    for e in matched {
        let rel = if single_file {
            if place.dest_is_dir {
                named.rsplit('/').next().unwrap_or(&e.path).to_string()
            } else {
                String::new()
            }
        } else if place.parents {
            e.path.clone()
        } else {
            e.path
                .strip_prefix(&key)
                .unwrap_or(&e.path)
                .trim_start_matches('/')
                .to_string()
        };
        let probe = if rel.is_empty() {
            e.path.rsplit('/').next().unwrap_or("")
        } else {
            &rel
        };
        if !place.excludes.is_empty() && place.excludes.excludes(probe).unwrap_or(false) {
            continue;
        }
        let mut n = e.clone();
        n.path = join_dest(place.dest, &rel);
        if let Some(o) = place.owner {
            n.uid = o.0;
            n.gid = o.1;
        }
        if let (Some(m), false) = (place.chmod, matches!(n.kind, Kind::Symlink(_))) {
            n.mode = m;
        }
        if !n.path.is_empty() {
            out.push(n);
        }
    }
    out
}

/// Where a source naming a symlink this build wrote leads, inside the stage (BuildKit follows
/// a named link); `key` itself when it is no link or leads nowhere this build wrote.
fn follow_link(files: &std::collections::BTreeMap<String, Entry>, key: &str) -> String {
    let mut at = key.to_string();
    for _ in 0..40 {
        match files.get(&at).map(|e| &e.kind) {
            Some(Kind::Symlink(t)) => {
                let dir = at.rsplit_once('/').map_or("", |(d, _)| d);
                let next = if t.starts_with('/') {
                    clean_path(t)
                } else {
                    clean_path(&format!("/{dir}/{t}"))
                };
                at = next.trim_start_matches('/').to_string();
            }
            Some(_) => return at,
            None => break,
        }
    }
    key.to_string()
}

/// Entries for one source path of a directory tree (the context, or a stage/image root).
fn select(
    ctx: &Context,
    s: &str,
    place: &Placement<'_>,
    owner: Option<(u64, u64)>,
    unpack: bool,
    src: &mut Sources<'_>,
) -> Result<Vec<Entry>, ContextError> {
    let (selected, is_dir) = ctx.select(s)?;
    let wildcard = s.contains(['*', '?', '[']);
    let single_file = !is_dir && selected.len() == 1 && !wildcard;
    // `--parents`: keep the source's path from the context root, or from a `/./` pivot.
    let pivot = s.split_once("/./").map(|(a, _)| {
        clean_path(&format!("/{a}"))
            .trim_start_matches('/')
            .to_string()
    });
    let mut kept = Vec::new();
    for mut sel in selected {
        let probe = if sel.dest_rel.is_empty() {
            sel.rel.rsplit('/').next().unwrap_or(&sel.rel).to_string()
        } else {
            sel.dest_rel.clone()
        };
        if !place.excludes.is_empty() && place.excludes.excludes(&probe)? {
            continue;
        }
        if place.parents {
            sel.dest_rel = match &pivot {
                Some(p) if !p.is_empty() => sel
                    .rel
                    .strip_prefix(p.as_str())
                    .unwrap_or(&sel.rel)
                    .trim_start_matches('/')
                    .to_string(),
                _ => sel.rel.clone(),
            };
        } else if single_file {
            // Named as the source says, which for a followed link is the link's name.
            sel.dest_rel = if place.dest_is_dir {
                let named = clean_path(&format!("/{s}"));
                named.rsplit('/').next().unwrap_or(&sel.rel).to_string()
            } else {
                String::new()
            };
        }
        kept.push(sel);
    }
    if unpack {
        let mut plain = Vec::new();
        let mut out = Vec::new();
        for sel in kept {
            let path = ctx.root.join(&sel.rel);
            match archive_format(&path) {
                Some(format) if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) => {
                    out.extend(unpack_archive(&path, format, place, owner, src)?);
                }
                _ => plain.push(sel),
            }
        }
        out.extend(ctx.entries(&plain, place.dest, owner, place.chmod)?);
        return Ok(out);
    }
    ctx.entries(&kept, place.dest, owner, place.chmod)
}

/// The compression of `path` when it is a tar archive (possibly compressed), as ADD unpacks.
fn archive_format(path: &std::path::Path) -> Option<Format> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .ok()?
        .take(512)
        .read_to_end(&mut head)
        .ok()?;
    let format = Format::sniff(&head);
    let mut dec = decoder(std::fs::File::open(path).ok()?, format).ok()?;
    let mut block = vec![0u8; 512];
    dec.read_exact(&mut block).ok()?;
    looks_like_tar(&block).then_some(format)
}

/// Unpacks a local archive (safely, as a layer without whiteout semantics being needed) into a
/// temp dir and returns its entries below the destination directory.
fn unpack_archive(
    path: &std::path::Path,
    format: Format,
    place: &Placement<'_>,
    owner: Option<(u64, u64)>,
    src: &mut Sources<'_>,
) -> Result<Vec<Entry>, ContextError> {
    let io = |e: std::io::Error| ContextError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let tmp = src
        .store
        .temp_dir("add")
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let file = std::fs::File::open(path).map_err(io)?;
    apply_layer(tmp.path(), decoder(file, format).map_err(io)?)
        .map_err(|e| io(std::io::Error::other(format!("unpacking archive: {e}"))))?;
    let ctx = Context::new(PathBuf::from(tmp.path()), None)?;
    let (sel, _) = ctx.select("")?;
    let entries = ctx.entries(
        &sel,
        place.dest,
        place.owner.or(owner_for_archive(owner)),
        place.chmod,
    )?;
    src.temps.push(tmp);
    Ok(entries)
}

/// Archive members keep their own owners unless `--chown` is given (as BuildKit does), which
/// needs root to have been preserved on unpacking; otherwise they become root's.
fn owner_for_archive(default: Option<(u64, u64)>) -> Option<(u64, u64)> {
    if rustix::process::geteuid().is_root() {
        None
    } else {
        default
    }
}
