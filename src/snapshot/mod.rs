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
    materialize(&store.root().join("snapshots/flat"), &name, |tmp| {
        apply_layers(store, layers, Some(diff_ids), tmp, Whiteouts::Delete)
    })
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
    let tmp = area.join(format!(".tmp-{name}-{}", std::process::id()));
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
