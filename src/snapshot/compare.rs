//! A RUN's change set without overlay: the tree's stat data before the command, compared
//! with the tree after it. A path is changed when its type, mode, owner, size, mtime, ctime
//! or inode differ (ctime catches a rewrite that kept size and mtime); a path that is gone
//! becomes a whiteout, once, at the highest deleted directory. Costs a walk of the whole root
//! twice, which is why the overlay mode (only the upper directory is read) is preferred.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::layer::apply::WHITEOUT;
use crate::layer::tar::{Entry, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

/// Stat data of every path under a root (relative, slash-separated).
#[derive(Debug, Default)]
pub struct Tree(HashMap<String, Stamp>);

/// Records the tree under `root`, leaving out `skip` (and what is below them).
pub fn scan(root: &Path, skip: &[&str]) -> std::io::Result<Tree> {
    let mut t = HashMap::new();
    super::walk_tree(root, skip, |rel, m, _| {
        t.insert(
            rel,
            Stamp {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                ino: m.ino(),
            },
        );
        Ok(())
    })?;
    Ok(Tree(t))
}

/// What changed under `root` since `before` was taken, as layer entries (files point into
/// `root`, so it must outlive the layer write).
pub fn changes(before: &Tree, root: &Path, skip: &[&str]) -> std::io::Result<Vec<Entry>> {
    let after = scan(root, skip)?;
    let mut out = Vec::new();
    let mut inodes: HashMap<u64, String> = HashMap::new();
    super::walk_tree(root, skip, |rel, m, path| {
        let stamp = after.0.get(&rel);
        if before.0.get(&rel) == stamp && m.nlink() <= 1 {
            return Ok(());
        }
        if before.0.get(&rel) == stamp {
            // Unchanged, but remember hard-linked inodes so new links to them are links.
            inodes.entry(m.ino()).or_insert(rel);
            return Ok(());
        }
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(t) => Kind::Symlink(t.to_string_lossy().into_owned()),
                Err(_) => return Ok(()), // gone meanwhile
            }
        } else if ft.is_file() {
            match (m.nlink() > 1)
                .then(|| inodes.get(&m.ino()).cloned())
                .flatten()
            {
                Some(first) => Kind::Hardlink(first),
                None => {
                    if m.nlink() > 1 {
                        inodes.insert(m.ino(), rel.clone());
                    }
                    Kind::File(path.to_path_buf())
                }
            }
        } else if let Some(kind) = Kind::special(m) {
            kind
        } else {
            return Ok(()); // sockets: no layer format holds them (as BuildKit)
        };
        out.push(Entry {
            size: if matches!(kind, Kind::File(_)) {
                m.len()
            } else {
                0
            },
            path: rel,
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid() as u64,
            gid: m.gid() as u64,
            mtime: m.mtime().max(0) as u64,
            xattrs: vec![],
        });
        Ok(())
    })?;
    // Deletions: one whiteout at the highest deleted path whose parent still is a directory.
    let gone: HashSet<&String> = before
        .0
        .keys()
        .filter(|p| !after.0.contains_key(*p))
        .collect();
    let mut deleted: Vec<&String> = gone
        .iter()
        .copied()
        .filter(|p| match p.rsplit_once('/') {
            Some((parent, _)) => !gone.contains(&parent.to_string()),
            None => true,
        })
        .collect();
    deleted.sort();
    for p in deleted {
        let (parent, name) = match p.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, p.as_str()),
        };
        let parent_is_dir = match parent {
            None => true,
            Some(d) => after
                .0
                .get(d)
                .is_some_and(|s| s.mode & 0o170000 == 0o040000),
        };
        if !parent_is_dir {
            continue;
        }
        out.push(Entry {
            path: match parent {
                Some(d) => format!("{d}/{WHITEOUT}{name}"),
                None => format!("{WHITEOUT}{name}"),
            },
            kind: Kind::Bytes(Vec::new()),
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            xattrs: vec![],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_modified_deleted_and_replaced() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("keep/sub")).unwrap();
        std::fs::write(r.join("keep/same"), "1").unwrap();
        std::fs::write(r.join("keep/edit"), "1").unwrap();
        std::fs::create_dir_all(r.join("gone/deep")).unwrap();
        std::fs::write(r.join("gone/deep/f"), "1").unwrap();
        std::fs::write(r.join("dev-skip"), "x").unwrap();
        let before = scan(r, &["dev-skip"]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(15));
        std::fs::write(r.join("keep/edit"), "2").unwrap();
        std::fs::write(r.join("keep/sub/new"), "n").unwrap();
        std::fs::remove_dir_all(r.join("gone")).unwrap();
        std::fs::write(r.join("dev-skip"), "y").unwrap();
        let mut paths: Vec<String> = changes(&before, r, &["dev-skip"])
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            vec![".wh.gone", "keep/edit", "keep/sub", "keep/sub/new"]
        );
    }
}
