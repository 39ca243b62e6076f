//! A RUN step's change set: the overlay upper directory walked once and turned into layer
//! entries. Overlay whiteouts (character devices 0:0) become `.wh.NAME` files and opaque
//! directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry — the OCI layer format.
//! Only the upper directory is read, never the whole root filesystem.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::layer::apply::{OPAQUE, WHITEOUT};
use crate::layer::tar::{Entry, Kind};

fn entry(path: String, kind: Kind, meta: &std::fs::Metadata, size: u64) -> Entry {
    Entry {
        path,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid() as u64,
        gid: meta.gid() as u64,
        mtime: meta.mtime().max(0) as u64,
        size,
        xattrs: vec![],
    }
}

/// The entries of `upper`. `skip` lists paths to leave out (mount points the sandbox made
/// that the lower layers do not have).
pub fn upper_entries(upper: &Path, skip: &[String]) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
    super::walk_tree(upper, &skip, |rel, meta, path| {
        let ft = meta.file_type();
        let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
        let parent = rel.rsplit_once('/').map(|(p, _)| p.to_string());
        let join = |n: &str| match &parent {
            Some(p) => format!("{p}/{n}"),
            None => n.to_string(),
        };
        if ft.is_char_device() && meta.rdev() == 0 {
            out.push(entry(
                join(&format!("{WHITEOUT}{name}")),
                Kind::Bytes(Vec::new()),
                meta,
                0,
            ));
            return Ok(());
        }
        if ft.is_dir() {
            out.push(entry(rel.clone(), Kind::Dir, meta, 0));
            let opaque =
                rustix::fs::lgetxattr(path, crate::exec::rootless::opaque_xattr(), &mut [0u8; 4])
                    .ok()
                    .is_some_and(|n| n == 1);
            if opaque {
                out.push(entry(
                    format!("{rel}/{OPAQUE}"),
                    Kind::Bytes(Vec::new()),
                    meta,
                    0,
                ));
            }
        } else if ft.is_symlink() {
            let t = std::fs::read_link(path)?;
            out.push(entry(
                rel,
                Kind::Symlink(t.to_string_lossy().into_owned()),
                meta,
                0,
            ));
        } else if ft.is_file() {
            let kind = if meta.nlink() > 1 {
                match inodes.get(&(meta.dev(), meta.ino())) {
                    Some(first) => Kind::Hardlink(first.clone()),
                    None => {
                        inodes.insert((meta.dev(), meta.ino()), rel.clone());
                        Kind::File(path.to_path_buf())
                    }
                }
            } else {
                Kind::File(path.to_path_buf())
            };
            let size = if matches!(kind, Kind::File(_)) {
                meta.len()
            } else {
                0
            };
            out.push(entry(rel, kind, meta, size));
        } else if let Some(kind) = Kind::special(meta) {
            out.push(entry(rel, kind, meta, 0));
        }
        // Sockets made by a RUN are not kept: no layer format holds them (as BuildKit).
        Ok(())
    })?;
    Ok(out)
}
