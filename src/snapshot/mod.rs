//! Snapshots: image layers unpacked on disk, shared by every build that needs them.
//!
//! A flattened root filesystem for a stack of layers lives at
//! `<store>/snapshots/flat/<chain-id>` (the OCI chain ID names exactly that stack). It is
//! unpacked into a temp directory while each layer's uncompressed sha256 is checked against its
//! diff_id, then renamed into place: a crash leaves only a `.tmp-*` directory, never a
//! half-unpacked snapshot under its final name.

pub mod compare;
pub mod diff;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::content::{io_err, Descriptor, Store, StoreError};
use crate::layer::apply::{apply_layer_with, ApplyError, Whiteouts};
use crate::layer::read::{decoder, Format};
use crate::reference::Digest;

/// Snapshot failures.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer could not be applied.
    #[error("layer {digest}: {source}")]
    Apply {
        /// The layer's digest.
        digest: String,
        /// Why.
        #[source]
        source: ApplyError,
    },
    /// A layer's content does not match the diff_id the image config declares.
    #[error("layer {digest} unpacks to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        /// The layer's digest.
        digest: String,
        /// From the config.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A layer media type rbuild cannot read.
    #[error("layer {digest} has media type {media_type:?}, which rbuild cannot unpack")]
    MediaType {
        /// The layer's digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
}

/// The OCI chain ID of a stack of diff_ids (`None` for no layers).
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut it = diff_ids.iter();
    let mut id = it.next()?.clone();
    for d in it {
        id = Digest::from_sha256(&Sha256::digest(format!("{id} {d}").as_bytes())).to_string();
    }
    Some(id)
}

/// Hashes what passes through a reader.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks `layers` in order onto `dest`, checking each against `diff_ids` when given.
pub fn apply_layers(
    store: &Store,
    layers: &[Descriptor],
    diff_ids: Option<&[String]>,
    dest: &Path,
    whiteouts: Whiteouts,
) -> Result<(), SnapshotError> {
    for (i, layer) in layers.iter().enumerate() {
        let apply_err = |source| SnapshotError::Apply {
            digest: layer.digest.clone(),
            source,
        };
        let format =
            Format::from_media_type(&layer.media_type).ok_or_else(|| SnapshotError::MediaType {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            })?;
        let digest = Digest::parse(&layer.digest)
            .map_err(|_| StoreError::BadDigest(layer.digest.clone()))?;
        let dec = decoder(store.open_blob(&digest)?, format)
            .map_err(|e| apply_err(ApplyError::Read(e)))?;
        let mut hr = HashingReader {
            inner: dec,
            hash: Sha256::new(),
        };
        apply_layer_with(dest, &mut hr, whiteouts).map_err(apply_err)?;
        // The tar reader stops at the end-of-archive marker; hash the padding after it too.
        io::copy(&mut hr, &mut io::sink()).map_err(|e| apply_err(ApplyError::Read(e)))?;
        let actual = Digest::from_sha256(&hr.hash.finalize()).to_string();
        if let Some(expected) = diff_ids.and_then(|d| d.get(i)) {
            if &actual != expected {
                return Err(SnapshotError::DiffIdMismatch {
                    digest: layer.digest.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
    }
    Ok(())
}

/// The flattened root filesystem of `layers` (with their `diff_ids`), unpacked once.
pub fn flat_rootfs(
    store: &Store,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<PathBuf, SnapshotError> {
    let name = chain_id(diff_ids)
        .map(|c| c.trim_start_matches("sha256:").to_string())
        .unwrap_or_else(|| "empty".into());
    let lowers: Vec<PathBuf> = diff_ids
        .iter()
        .map(|d| layers_dir(store).join(d.trim_start_matches("sha256:")))
        .collect();
    materialize(&store.root().join("snapshots/flat"), &name, |tmp| {
        // When every layer is already unpacked on its own (a stage that ran RUN steps), the
        // flat root is made of hard links to those snapshots: no decompression.
        if !lowers.is_empty() && lowers.iter().all(|l| l.is_dir()) {
            let linked = flatten_snapshots(tmp, &lowers);
            if linked.is_ok() {
                return Ok(());
            }
            let _ = std::fs::remove_dir_all(tmp);
            let _ = std::fs::create_dir(tmp);
        }
        apply_layers(store, layers, Some(diff_ids), tmp, Whiteouts::Delete)
    })
}

/// Stacks per-layer snapshots (overlay form, bottom first) into `dest` as overlayfs would
/// show them — whiteout devices delete, opaque directories hide what is below — with files
/// hard-linked, not copied. The result is only read (COPY --from, existence checks), never
/// written through.
fn flatten_snapshots(dest: &Path, lowers: &[PathBuf]) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let mut dir_meta: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    let remove = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => Ok(()),
    };
    for layer in lowers {
        walk_tree(layer, &[], |rel, meta, path| {
            let target = dest.join(&rel);
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                return remove(&target);
            }
            if ft.is_dir() {
                let existing = std::fs::symlink_metadata(&target).ok();
                if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                    remove(&target)?;
                }
                let opaque = rustix::fs::lgetxattr(
                    path,
                    crate::exec::rootless::opaque_xattr(),
                    &mut [0u8; 4],
                )
                .is_ok_and(|n| n == 1);
                if opaque && target.is_dir() {
                    std::fs::remove_dir_all(&target)?;
                }
                if !target.is_dir() {
                    std::fs::create_dir(&target)?;
                }
                std::fs::set_permissions(
                    &target,
                    std::fs::Permissions::from_mode(meta.mode() & 0o7777),
                )?;
                if rustix::process::geteuid().is_root() {
                    let _ = std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid()));
                }
                dir_meta.push((target, meta.clone()));
                return Ok(());
            }
            remove(&target)?;
            std::fs::hard_link(path, &target)
        })?;
    }
    // Directory times last (adding entries changed them), deepest first.
    for (d, m) in dir_meta.iter().rev() {
        let ts = rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            d,
            &rustix::fs::Timestamps {
                last_access: ts,
                last_modification: ts,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

/// Where per-layer snapshots live (overlay lower directories, named by diff_id hex).
pub fn layers_dir(store: &Store) -> PathBuf {
    store.root().join("snapshots/layers")
}

/// One layer unpacked on its own in overlayfs form (whiteouts as 0:0 devices, opaque
/// directories marked), usable as an overlay lower directory; made once per diff_id.
pub fn layer_snapshot(
    store: &Store,
    layer: &Descriptor,
    diff_id: &str,
) -> Result<PathBuf, SnapshotError> {
    let name = diff_id.trim_start_matches("sha256:").to_string();
    materialize(&layers_dir(store), &name, |tmp| {
        apply_layers(
            store,
            std::slice::from_ref(layer),
            Some(std::slice::from_ref(&diff_id.to_string())),
            tmp,
            Whiteouts::Overlay,
        )
    })
}

/// The per-layer snapshot of a layer this build just wrote, made from its entries (files
/// copied from the context on all cores) instead of decompressing the blob; what the tar
/// holds — modes, owners, mtimes clamped to `epoch`, links — is what the snapshot gets.
/// Entries that only a tar can express (whiteouts) make it fall back to unpacking.
pub fn layer_snapshot_from_entries(
    store: &Store,
    diff_id: &str,
    entries: &[crate::layer::tar::Entry],
    epoch: Option<u64>,
) -> Result<PathBuf, SnapshotError> {
    use crate::layer::tar::Kind;
    use rayon::prelude::*;
    let name = diff_id.trim_start_matches("sha256:").to_string();
    let bad = |p: &str| {
        p.starts_with('/')
            || p.split('/')
                .any(|c| c == ".." || c.is_empty() || c.starts_with(crate::layer::apply::WHITEOUT))
    };
    // Special files go through the tar path, which knows when a device node needs root.
    if entries
        .iter()
        .any(|e| bad(&e.path) || e.kind.special_key().is_some())
    {
        return Err(SnapshotError::Store(StoreError::Io {
            op: "copy entries of",
            path: PathBuf::from(&e_name(entries)),
            source: std::io::Error::other("not expressible without the tar"),
        }));
    }
    materialize(&layers_dir(store), &name, |tmp| {
        let io = |op: &'static str, p: &Path| {
            let e = io_err(op, p);
            move |source| SnapshotError::Store(e(source))
        };
        let mut sorted: Vec<&crate::layer::tar::Entry> = entries.iter().collect();
        sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        sorted.dedup_by(|b, a| a.path == b.path);
        let own = |p: &Path, e: &crate::layer::tar::Entry| -> std::io::Result<()> {
            if rustix::process::geteuid().is_root() && crate::exec::rootless::maps(e.uid, e.gid) {
                std::os::unix::fs::lchown(p, Some(e.uid as u32), Some(e.gid as u32))?;
            }
            Ok(())
        };
        let mtime = |e: &crate::layer::tar::Entry| {
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(epoch.map_or(e.mtime, |ep| e.mtime.min(ep)))
        };
        for e in &sorted {
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                let d = tmp.join(parent);
                std::fs::create_dir_all(&d).map_err(io("create", &d))?;
            }
            if matches!(e.kind, Kind::Dir) {
                let d = tmp.join(&e.path);
                std::fs::create_dir_all(&d).map_err(io("create", &d))?;
            }
        }
        sorted
            .par_iter()
            .filter(|e| matches!(e.kind, Kind::File(_) | Kind::Bytes(_) | Kind::Symlink(_)))
            .try_for_each(|e| {
                use std::os::unix::fs::PermissionsExt;
                let dest = tmp.join(&e.path);
                match &e.kind {
                    Kind::File(src) => {
                        std::fs::copy(src, &dest).map_err(io("copy", src))?;
                    }
                    Kind::Bytes(b) => std::fs::write(&dest, b).map_err(io("write", &dest))?,
                    Kind::Symlink(t) => {
                        std::os::unix::fs::symlink(t, &dest).map_err(io("symlink", &dest))?;
                        return own(&dest, e).map_err(io("chown", &dest));
                    }
                    _ => {}
                }
                // Owner before mode: chown clears setuid bits.
                own(&dest, e).map_err(io("chown", &dest))?;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(e.mode))
                    .map_err(io("chmod", &dest))?;
                set_mtime(&dest, mtime(e)).map_err(io("set mtime of", &dest))
            })?;
        for e in &sorted {
            if let Kind::Hardlink(target) = &e.kind {
                let dest = tmp.join(&e.path);
                std::fs::hard_link(tmp.join(target), &dest).map_err(io("link", &dest))?;
            }
        }
        // Directories last, deepest first, so creating their children does not undo it.
        for e in sorted.iter().rev().filter(|e| matches!(e.kind, Kind::Dir)) {
            use std::os::unix::fs::PermissionsExt;
            let d = tmp.join(&e.path);
            own(&d, e).map_err(io("chown", &d))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(e.mode))
                .map_err(io("chmod", &d))?;
            set_mtime(&d, mtime(e)).map_err(io("set mtime of", &d))?;
        }
        Ok(())
    })
}

fn set_mtime(p: &Path, t: std::time::SystemTime) -> std::io::Result<()> {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ts = rustix::fs::Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)
}

fn e_name(entries: &[crate::layer::tar::Entry]) -> String {
    entries.first().map(|e| e.path.clone()).unwrap_or_default()
}

/// An empty lower directory (overlay needs at least one).
pub fn empty_layer(store: &Store) -> Result<PathBuf, SnapshotError> {
    materialize(&layers_dir(store), "empty", |_| Ok(()))
}

/// Keeps a RUN's overlay upper directory as the snapshot of the layer made from it, so the
/// next RUN stacks on it without unpacking anything.
pub fn adopt_upper(store: &Store, upper: &Path, diff_id: &str) -> Result<(), SnapshotError> {
    let dir = layers_dir(store);
    std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::Store(io_err("create", &dir)(e)))?;
    let dest = dir.join(diff_id.trim_start_matches("sha256:"));
    if !dest.exists() {
        // Losing a race with another build is fine: the content is the same.
        let _ = std::fs::rename(upper, &dest);
    }
    Ok(())
}

/// Fills a temp directory in `area` with `fill` and renames it to `name`, unless it exists.
fn materialize(
    area: &Path,
    name: &str,
    fill: impl FnOnce(&Path) -> Result<(), SnapshotError>,
) -> Result<PathBuf, SnapshotError> {
    let io = |op, path: &Path| {
        let e = io_err(op, path);
        move |source| SnapshotError::Store(e(source))
    };
    std::fs::create_dir_all(area).map_err(io("create", area))?;
    let dest = area.join(name);
    if dest.is_dir() {
        return Ok(dest);
    }
    // Unique per call: two stages of one build may make the same snapshot at once.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = area.join(format!(".tmp-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io("create", &tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another build made the same snapshot meanwhile: use theirs.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(io("rename into", &dest)(e))
        }
    }
}

/// What a path is in an unpacked root (parents resolved as the container would; the last
/// component not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// Nothing there.
    Missing,
    /// A real directory with its metadata.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
        /// Modification time.
        mtime: u64,
    },
    /// A file, a symlink (even to a directory) or anything else.
    Other,
}

/// What `rel` is inside an unpacked root.
pub fn node_in_root(root: &Path, rel: &str) -> Node {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let Ok(dir) = std::fs::File::open(root) else {
        return Node::Missing;
    };
    let Ok(fd) = openat2(
        &dir,
        rel,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return Node::Missing;
    };
    match rustix::fs::fstat(&fd) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Directory =>
        {
            Node::Dir {
                mode: st.st_mode & 0o7777,
                uid: st.st_uid as u64,
                gid: st.st_gid as u64,
                mtime: st.st_mtime.max(0) as u64,
            }
        }
        Ok(_) => Node::Other,
        Err(_) => Node::Missing,
    }
}

/// Reads `rel` inside an unpacked root, resolving symlinks as the container would (never
/// outside `root`). `None` when it does not exist or is not a readable file.
pub fn read_in_root(root: &Path, rel: &str) -> Option<Vec<u8>> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let dir = std::fs::File::open(root).ok()?;
    let fd = openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let mut f = std::fs::File::from(fd);
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    // /etc/passwd and friends are small; a hostile image's huge file is cut off.
    (&mut f).take(16 << 20).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Walks the tree under `root` in name order, without following links, leaving out the
/// relative paths in `skip` (and what is below them); calls `f(relative path, lstat, path)`.
pub(crate) fn walk_tree(
    root: &Path,
    skip: &[&str],
    mut f: impl FnMut(String, &std::fs::Metadata, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let walk_err = |err: walkdir::Error| {
        err.into_io_error()
            .unwrap_or_else(|| std::io::Error::other("walk failed"))
    };
    let mut it = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(walk_err)?;
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        if skip.iter().any(|s| *s == rel) {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let meta = e.metadata().map_err(walk_err)?;
        f(rel, &meta, e.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn flattening_snapshots_applies_whiteouts_and_opaque_dirs() {
        let d = tempfile::tempdir().unwrap();
        let (l1, l2, out) = (
            d.path().join("l1"),
            d.path().join("l2"),
            d.path().join("out"),
        );
        for p in ["l1/keep", "l1/gone", "l1/opq/old", "l2/opq", "out"] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        std::fs::write(l1.join("keep/a"), "a").unwrap();
        std::fs::write(l1.join("gone/b"), "b").unwrap();
        std::fs::write(l1.join("opq/old/c"), "c").unwrap();
        std::fs::write(l2.join("opq/new"), "n").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            l2.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .expect("mknod (tests run as root)");
        rustix::fs::setxattr(
            l2.join("opq"),
            crate::exec::rootless::opaque_xattr(),
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        flatten_snapshots(&out, &[l1.clone(), l2]).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("keep/a")).unwrap(), "a");
        assert!(!out.join("gone").exists());
        assert!(!out.join("opq/old").exists());
        assert!(out.join("opq/new").exists());
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(out.join("keep/a")).unwrap();
        assert_eq!(
            a.ino(),
            std::fs::metadata(l1.join("keep/a")).unwrap().ino(),
            "linked, not copied"
        );
    }

    use super::*;

    #[test]
    fn chain_id_follows_the_oci_definition() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let expect = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:aaaa sha256:bbbb"))
        );
        assert_eq!(chain_id(&[a, b]), Some(expect));
    }
}
