//! Content digests of context files, remembered across builds by their stat data.
//!
//! A file's digest is reused only when its inode, size, mtime *and* ctime (nanoseconds) are
//! all unchanged, so a file rewritten with the same size and mtime (`touch -d`, or a checkout
//! restoring times) is still seen as changed: ctime cannot be set from user space. Files
//! changed so recently that a later write could keep the same timestamps (timestamps tick
//! coarsely) are hashed but not remembered ("racy" entries, as git does). Files missing from
//! the cache are read and hashed in parallel; sha256 uses the CPU's SHA extensions when
//! Content ids are BLAKE3 (about 3x sha256's speed with SHA extensions, on one core): they
//! only ever feed rbuild's own keys, never an OCI digest.
//!
//! The cache file is one line per file, hand-written because it must load in a few
//! milliseconds for 100,000 files and needs no schema beyond these six fields.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::content::{Store, StoreError};
use rayon::prelude::*;

/// A file's content id (BLAKE3), written `blake3:HEX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// The id of bytes.
    pub fn of(data: &[u8]) -> ContentId {
        ContentId(*blake3::hash(data).as_bytes())
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    fn parse_hex(h: &str) -> Option<ContentId> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(h, &mut b).ok()?;
        Some(ContentId(b))
    }
}

impl std::fmt::Display for ContentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: m.ino(),
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

/// How much work a [`FileHasher`] did (for progress and benchmarks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HashStats {
    /// Files whose digest came from the stat cache.
    pub reused: u64,
    /// Files read and hashed.
    pub hashed: u64,
    /// Bytes read to hash them.
    pub bytes: u64,
}

/// Digests files of one context root, with a persistent stat cache in the store.
pub struct FileHasher {
    /// The root as given and as resolved (callers may pass paths under either).
    roots: [PathBuf; 2],
    file: Option<PathBuf>,
    known: HashMap<String, (Stamp, ContentId)>,
    fresh: Mutex<HashMap<String, (Stamp, ContentId)>>,
    primed: Mutex<HashMap<PathBuf, Stamp>>,
    stats: Mutex<HashStats>,
    started_ns: i128,
}

/// Entries changed less than this long before hashing started are not remembered: more than
/// the kernel's timestamp tick, so a later write always gets a different ctime.
const RACY_NS: i128 = 100_000_000;

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl FileHasher {
    /// A hasher for files under `root` whose cache lives in `store` (`None`: no persistence).
    pub fn open(root: &Path, store: Option<&Store>) -> FileHasher {
        let given = root.to_path_buf();
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let file = store.map(|s| {
            let id = crate::content::sha256_digest(root.as_os_str().as_encoded_bytes());
            s.root().join("cache/stat-v2").join(&id.hex()[..32])
        });
        let known = file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| parse(&t))
            .unwrap_or_default();
        FileHasher {
            roots: [given, root],
            file,
            known,
            fresh: Mutex::new(HashMap::new()),
            primed: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashStats::default()),
            started_ns: now_ns(),
        }
    }

    /// Hands over stat data the caller already has, so [`FileHasher::digest`] need not
    /// stat those files again.
    pub fn prime<'a>(&self, files: impl Iterator<Item = (&'a PathBuf, &'a std::fs::Metadata)>) {
        let mut p = self.primed.lock().expect("primed lock");
        for (path, m) in files {
            p.insert(path.clone(), Stamp::of(m));
        }
    }

    /// What was reused and hashed so far.
    pub fn stats(&self) -> HashStats {
        *self.stats.lock().expect("stats lock")
    }

    /// The content digests of regular files, in the order given (hashed in parallel).
    pub fn digests(&self, paths: &[&Path]) -> std::io::Result<Vec<ContentId>> {
        let out = paths.par_iter().map(|p| self.digest(p)).collect();
        // Primed stats serve one COPY: let their memory go before its layer is written.
        let mut primed = self.primed.lock().expect("primed lock");
        primed.clear();
        primed.shrink_to_fit();
        out
    }

    /// One file's content digest.
    pub fn digest(&self, path: &Path) -> std::io::Result<ContentId> {
        let rel = self
            .roots
            .iter()
            .find_map(|r| path.strip_prefix(r).ok())
            .and_then(|r| r.to_str())
            .filter(|r| !r.contains(['\n', '\t']))
            .map(str::to_string);
        let primed = self.primed.lock().expect("primed lock").get(path).cloned();
        let stamp = match primed {
            Some(s) => s,
            None => Stamp::of(&std::fs::symlink_metadata(path)?),
        };
        if let Some(rel) = &rel {
            let fresh = self.fresh.lock().expect("fresh lock").get(rel).cloned();
            if let Some((s, d)) = fresh.as_ref().or(self.known.get(rel)) {
                if *s == stamp {
                    self.stats.lock().expect("stats lock").reused += 1;
                    return Ok(*d);
                }
            }
        }
        let d = hash_file(path)?;
        {
            let mut st = self.stats.lock().expect("stats lock");
            st.hashed += 1;
            st.bytes += stamp.size;
        }
        let racy = stamp.ctime_ns.max(stamp.mtime_ns) > self.started_ns - RACY_NS;
        if let (Some(rel), false) = (rel, racy) {
            self.fresh
                .lock()
                .expect("fresh lock")
                .insert(rel, (stamp, d));
        }
        Ok(d)
    }

    /// Writes the cache back when files were hashed (entries of files not seen this time are
    /// kept, so builds that copy different parts of a context share one cache).
    pub fn save(&self) -> Result<(), StoreError> {
        let fresh = std::mem::take(&mut *self.fresh.lock().expect("fresh lock"));
        let Some(file) = &self.file else {
            return Ok(());
        };
        if fresh.is_empty() {
            return Ok(());
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(crate::content::io_err("create directory", dir))?;
        }
        // Streamed to a temp file and renamed: no second copy of the cache in memory (on
        // 200,000 files it is tens of MB).
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut w = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&tmp)?);
            let known = self
                .known
                .iter()
                .filter(|(rel, _)| !fresh.contains_key(*rel));
            for (rel, (s, d)) in fresh.iter().chain(known) {
                writeln!(
                    w,
                    "{}\t{}\t{}\t{}\t{}\t{rel}",
                    s.ino,
                    s.size,
                    s.mtime_ns,
                    s.ctime_ns,
                    d.hex()
                )?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, file)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            crate::content::io_err("write", file)(e)
        })
    }
}

fn parse(text: &str) -> HashMap<String, (Stamp, ContentId)> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut f = line.splitn(6, '\t');
        let (Some(ino), Some(size), Some(m), Some(c), Some(hex), Some(rel)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Ok(ino), Ok(size), Ok(mtime_ns), Ok(ctime_ns), Ok(d)) = (
            ino.parse(),
            size.parse(),
            m.parse(),
            c.parse(),
            ContentId::parse_hex(hex).ok_or(()),
        ) else {
            continue;
        };
        out.insert(
            rel.to_string(),
            (
                Stamp {
                    ino,
                    size,
                    mtime_ns,
                    ctime_ns,
                },
                d,
            ),
        );
    }
    out
}

/// The content id of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<ContentId> {
    let mut f = File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(ContentId(*h.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_and_mtime_rewrite_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        let f = ctx.join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let old = FileHasher::open(&ctx, Some(&store));
        let first = old.digest(&f).unwrap();
        old.save().unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::fs::write(&f, "two").unwrap();
        File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let again = FileHasher::open(&ctx, Some(&store));
        assert_ne!(again.digest(&f).unwrap(), first);
    }

    #[test]
    fn cache_file_round_trips() {
        let d = ContentId::of(b"x");
        let line = format!("7\t3\t10\t20\t{}\tdir/a b.txt\n", d.hex());
        let m = parse(&line);
        assert_eq!(m["dir/a b.txt"].1, d);
        assert_eq!(m["dir/a b.txt"].0.ctime_ns, 20);
    }
}
