//! The content-addressed store: one root directory laid out as an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) plus rbuild's tag index (`tags.json`).
//!
//! Every blob is streamed to a temp file under `<root>/ingest`, hashed while written, fsynced,
//! checked against the expected digest, and renamed into place (then the directory is
//! fsynced): readers never see a partial blob, and a crash leaves only temp files, which
//! [`Store::open`] removes when no other process holds the store. Metadata files are replaced
//! atomically the same way. A file lock serialises writers of the tag index.

pub mod verify;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::reference::Digest;

/// Store failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Content did not hash to what was expected; nothing was committed.
    #[error("digest mismatch: expected {expected}, got {actual} ({size} bytes)")]
    DigestMismatch {
        /// What the caller said.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
        /// How many bytes were received.
        size: u64,
    },
    /// A blob the store should have is missing.
    #[error("blob {0} is not in the store")]
    Missing(Digest),
    /// A descriptor carries a malformed digest.
    #[error("malformed digest {0:?}")]
    BadDigest(String),
    /// A metadata file is not valid JSON.
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Wraps an I/O error with the operation and path (for `map_err`).
pub fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// A blob's identity: digest, size and media type (an OCI descriptor without extras).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Content digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (ordered, so serialisation is canonical).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// One entry of the tag index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEntry {
    /// The manifest's descriptor.
    pub manifest: Descriptor,
    /// When the tag was written (RFC 3339).
    pub created: String,
    /// Where blobs of this image that the store may not hold can be fetched from
    /// (digest → `registry/repository`): layers of registry bases, pulled lazily.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub sources: BTreeMap<String, String>,
}

/// The local store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp name inside a directory of the store.
fn temp_name(dir: &Path, hint: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!(".{hint}.{}.{n}.{nanos}.tmp", std::process::id()))
}

/// Writes `data` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(dir, "write");
    let res = (|| {
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        // Absolute, as the RUN sandbox changes directory before it mounts snapshots.
        let root = std::path::absolute(&root).unwrap_or(root);
        let store = Store { root };
        for d in [store.root.join("blobs/sha256"), store.ingest_dir()] {
            fs::create_dir_all(&d).map_err(io_err("create directory", &d))?;
        }
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.root.join("index.json");
        if !index.exists() {
            write_atomic(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether the blob is present.
    pub fn has(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// A fresh scratch directory under `<root>/tmp` (unpacked archives and the like).
    pub fn temp_dir(&self, hint: &str) -> Result<TempDir, StoreError> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let path = temp_name(&dir, hint);
        fs::create_dir(&path).map_err(io_err("create directory", &path))?;
        Ok(TempDir { path })
    }

    /// Starts writing a blob.
    pub fn ingest(&self) -> Result<Ingest, StoreError> {
        let path = temp_name(&self.ingest_dir(), "blob");
        let file = File::create(&path).map_err(io_err("create", &path))?;
        Ok(Ingest {
            store: self.clone(),
            path,
            file: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Stores bytes and returns their descriptor.
    pub fn put(&self, media_type: &str, data: &[u8]) -> Result<Descriptor, StoreError> {
        let digest = sha256_digest(data);
        if !self.has(&digest) {
            let mut w = self.ingest()?;
            w.write_all(data)
                .map_err(io_err("write", &w.path.clone()))?;
            w.commit(Some(&digest))?;
        }
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size: data.len() as u64,
            annotations: BTreeMap::new(),
        })
    }

    /// Reads a whole blob, verifying its digest.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        let data = fs::read(&p).map_err(|e| missing_or_io(e, d, "read", &p))?;
        let actual = sha256_digest(&data);
        if &actual != d {
            return Err(StoreError::DigestMismatch {
                expected: d.clone(),
                actual,
                size: data.len() as u64,
            });
        }
        Ok(data)
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| missing_or_io(e, d, "open", &p))
    }

    /// Takes the store's exclusive lock for metadata updates (held until dropped).
    pub fn lock(&self) -> Result<File, StoreError> {
        self.lock_file("lock", true)
    }

    /// Held (shared) by every build and (exclusive) by prune, so prune never deletes what a
    /// running build is about to reference: one of the two waits.
    pub fn gc_lock(&self, exclusive: bool) -> Result<File, StoreError> {
        self.lock_file("gc.lock", exclusive)
    }

    fn lock_file(&self, name: &str, exclusive: bool) -> Result<File, StoreError> {
        let p = self.root.join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        if exclusive {
            f.lock().map_err(io_err("lock", &p))?;
        } else {
            f.lock_shared().map_err(io_err("lock", &p))?;
        }
        Ok(f)
    }

    fn tags_path(&self) -> PathBuf {
        self.root.join("tags.json")
    }

    /// All tags.
    pub fn tags(&self) -> Result<BTreeMap<String, TagEntry>, StoreError> {
        let p = self.tags_path();
        match fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| StoreError::Corrupt { path: p, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(StoreError::Io {
                op: "read",
                path: p,
                source: e,
            }),
        }
    }

    /// Points `tag` at a manifest already in the store (and lists it in `index.json`).
    pub fn set_tag(
        &self,
        tag: &str,
        manifest: &Descriptor,
        created: &str,
    ) -> Result<(), StoreError> {
        self.set_tag_with_sources(tag, manifest, created, BTreeMap::new())
    }

    /// Points `tag` at a manifest whose blobs may partly live in registries (`sources`).
    pub fn set_tag_with_sources(
        &self,
        tag: &str,
        manifest: &Descriptor,
        created: &str,
        sources: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let digest = Digest::parse(&manifest.digest)
            .map_err(|_| StoreError::BadDigest(manifest.digest.clone()))?;
        if !self.has(&digest) {
            return Err(StoreError::Missing(digest));
        }
        let _lock = self.lock()?;
        let mut tags = self.tags()?;
        let mut m = manifest.clone();
        m.annotations.clear();
        let entry_now = tags.get(tag);
        if entry_now
            .is_some_and(|e| e.manifest == m && e.created == created && e.sources == sources)
        {
            // Unchanged (a no-change rebuild): no rewrite, no fsync.
            return Ok(());
        }
        tags.insert(
            tag.to_string(),
            TagEntry {
                manifest: m,
                created: created.to_string(),
                sources,
            },
        );
        self.write_tags(&tags)
    }

    /// Removes a tag; returns whether it existed.
    pub fn remove_tag(&self, tag: &str) -> Result<bool, StoreError> {
        let _lock = self.lock()?;
        let mut tags = self.tags()?;
        let existed = tags.remove(tag).is_some();
        if existed {
            self.write_tags(&tags)?;
        }
        Ok(existed)
    }

    fn write_tags(&self, tags: &BTreeMap<String, TagEntry>) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(tags).expect("serialisable");
        write_atomic(&self.tags_path(), &data)?;
        // index.json mirrors the tags so the root is a valid OCI layout for skopeo/umoci.
        let manifests: Vec<Descriptor> = tags
            .iter()
            .map(|(name, e)| {
                let mut d = e.manifest.clone();
                d.annotations
                    .insert("org.opencontainers.image.ref.name".into(), name.clone());
                d
            })
            .collect();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
        write_atomic(
            &self.root.join("index.json"),
            &serde_json::to_vec(&index).expect("json"),
        )
    }
}

/// A missing blob is [`StoreError::Missing`]; any other failure keeps its OS error.
fn missing_or_io(e: io::Error, d: &Digest, op: &'static str, path: &Path) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::Missing(d.clone())
    } else {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// The sha256 digest of bytes.
pub fn sha256_digest(data: &[u8]) -> Digest {
    Digest::from_sha256(&Sha256::digest(data))
}

/// Passes bytes through to an inner writer, hashing (sha256) and counting them on the way.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> Digest {
        Digest::from_sha256(&self.hasher.clone().finalize())
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and size of what was written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (
            Digest::from_sha256(&self.hasher.finalize()),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A scratch directory inside the store (same filesystem as the blobs), removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A blob being written: hashes while writing, becomes visible only on [`Ingest::commit`].
pub struct Ingest {
    store: Store,
    path: PathBuf,
    file: HashingWriter<io::BufWriter<File>>,
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.file.count()
    }

    /// Verifies (when `expected` is given), syncs and renames into place.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let actual = self.file.digest();
        let size = self.file.count();
        if let Some(exp) = expected {
            if exp != &actual {
                return Err(StoreError::DigestMismatch {
                    expected: exp.clone(),
                    actual,
                    size,
                });
            }
        }
        let file = self.file.get_mut();
        file.flush().map_err(io_err("write", &self.path))?;
        file.get_ref()
            .sync_all()
            .map_err(io_err("sync", &self.path))?;
        let dest = self.store.blob_path(&actual);
        fs::rename(&self.path, &dest).map_err(io_err("rename into", &dest))?;
        sync_dir(dest.parent().expect("blob dir"))?;
        Ok((actual, size))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Not committed (or committed: then the path no longer exists): never leave temp data.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_content_addressed_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put("application/octet-stream", b"hello").unwrap();
        let dg = Digest::parse(&d.digest).unwrap();
        assert_eq!(s.read(&dg).unwrap(), b"hello");
        fs::write(s.blob_path(&dg), b"tampered").unwrap();
        assert!(matches!(
            s.read(&dg),
            Err(StoreError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn failed_ingest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut w = s.ingest().unwrap();
        w.write_all(b"abc").unwrap();
        let wrong = sha256_digest(b"other");
        assert!(w.commit(Some(&wrong)).is_err());
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}
