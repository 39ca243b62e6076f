//! Layers as a sequence of gzip members, so a rebuild recompresses only what changed.
//!
//! The sorted entries are cut into groups at points that depend only on the paths (a hash
//! of the path picks about one boundary in 16 files; a group also ends after 1 MiB; a file
//! of 1 MiB or more is a group of its own). Each group's tar bytes become one gzip member
//! (RFC 1952 allows any number of members, and every registry client and `gzip -d` reads
//! them as one stream). A member's key is a digest of what determines its bytes: each
//! entry's header fields and content digest. When a layer is written again, members whose
//! key appears in the previous layer of the same step are copied from that blob instead of
//! compressed — after checking that the copied member's CRC-32 and length (from its gzip
//! trailer) match the bytes just produced, so a stale map can never yield a wrong layer.
//! The tar stream is still produced and hashed in full: the diff_id needs it.
//!
//! Small groups are compressed in parallel batches; a big file streams through
//! [`ParallelGzip`] (one member, all cores), so memory stays flat whatever the file size.
//! Written here because no crate splits tar streams at entry boundaries into members.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::compress::Uncompressed;
use super::pgzip::ParallelGzip;
use super::tar::{append, Entry, Kind};
use crate::reference::Digest;

/// A file this big or bigger is a member of its own, streamed.
const BIG: u64 = 1 << 20;
/// A group of small files ends once its contents reach this size.
const GROUP_BYTES: u64 = 1 << 20;
/// About one group boundary per this many files.
const SPREAD: u64 = 16;
/// Uncompressed bytes of small groups compressed together in one parallel batch.
const BATCH_BYTES: u64 = 16 << 20;
const LEVEL: u32 = 6;

/// One member of a written layer: its key and where it is in the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// What determines the member's bytes (`None`: unknown content, never reused).
    pub key: Option<Digest>,
    /// Offset in the compressed blob.
    pub offset: u64,
    /// Compressed length.
    pub len: u64,
}

/// What a layer write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The members, in blob order.
    pub members: Vec<Member>,
    /// Uncompressed bytes that were compressed (the rest was copied).
    pub compressed: u64,
    /// Members copied from the previous layer.
    pub reused: usize,
}

/// Members of an earlier layer that may be copied: key → (offset, length) in `blob`.
pub struct Reuse {
    /// The earlier layer's blob.
    pub blob: File,
    /// Its members by key.
    pub members: HashMap<Digest, (u64, u64)>,
}

impl Reuse {
    /// Parses a member map written by [`map_text`].
    pub fn parse(blob: File, text: &str) -> Reuse {
        let members = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let key = Digest::parse(&format!("sha256:{}", f.next()?)).ok()?;
                Some((key, (f.next()?.parse().ok()?, f.next()?.parse().ok()?)))
            })
            .collect();
        Reuse { blob, members }
    }

    /// The compressed member for `key`, if its trailer says it holds `crc`/`len` bytes.
    fn get(&self, key: &Digest, crc: u32, len: u64) -> Option<Vec<u8>> {
        let (off, n) = *self.members.get(key)?;
        if n < 18 {
            return None;
        }
        let mut buf = vec![0u8; n as usize];
        self.blob.read_exact_at(&mut buf, off).ok()?;
        let t = &buf[buf.len() - 8..];
        let ok = buf[..2] == [0x1f, 0x8b]
            && u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == crc
            && u32::from_le_bytes([t[4], t[5], t[6], t[7]]) == len as u32;
        ok.then_some(buf)
    }
}

/// The member map of a layer, one `key offset length` line per reusable member.
pub fn map_text(members: &[Member]) -> String {
    members
        .iter()
        .filter_map(|m| {
            m.key
                .as_ref()
                .map(|k| format!("{} {} {}\n", k.hex(), m.offset, m.len))
        })
        .collect()
}

/// A small group, packed.
struct Packed {
    key: Option<Digest>,
    raw: Vec<u8>,
    z: Vec<u8>,
    reused: bool,
}

enum Group<'a> {
    Small(&'a [Entry]),
    Big(&'a Entry),
}

fn path_hash(p: &str) -> u64 {
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    p.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Cuts sorted `entries` into groups (consecutive runs) as the writer asks for them.
fn groups(entries: &[Entry]) -> impl Iterator<Item = Group<'_>> {
    let mut at = 0;
    let mut pending_big: Option<&Entry> = None;
    std::iter::from_fn(move || {
        if let Some(b) = pending_big.take() {
            return Some(Group::Big(b));
        }
        let start = at;
        let mut bytes = 0u64;
        while at < entries.len() {
            let e = &entries[at];
            at += 1;
            if matches!(e.kind, Kind::File(_)) && e.size >= BIG {
                if at - 1 == start {
                    return Some(Group::Big(e));
                }
                pending_big = Some(e);
                return Some(Group::Small(&entries[start..at - 1]));
            }
            bytes += e.size;
            if path_hash(&e.path).is_multiple_of(SPREAD) || bytes >= GROUP_BYTES {
                return Some(Group::Small(&entries[start..at]));
            }
        }
        (at > start).then(|| Group::Small(&entries[start..at]))
    })
}

fn member_key<F>(entries: &[Entry], epoch: Option<u64>, digest_of: &F) -> Option<Digest>
where
    F: Fn(&Entry) -> Option<String>,
{
    let mut h = Sha256::new();
    h.update(b"rbuild-member-v1\0");
    for e in entries {
        let content = match &e.kind {
            Kind::File(_) => digest_of(e)?,
            Kind::Bytes(b) => crate::content::sha256_digest(b).to_string(),
            Kind::Symlink(t) => format!("symlink {t}"),
            Kind::Hardlink(t) => format!("hardlink {t}"),
            Kind::Dir => "dir".into(),
            special => special.special_key().unwrap_or_default(),
        };
        let mtime = epoch.map_or(e.mtime, |ep| e.mtime.min(ep));
        let line = format!(
            "{}\0{content}\0{:o}\0{}\0{}\0{mtime}\0{}\0",
            e.path, e.mode, e.uid, e.gid, e.size
        );
        h.update((line.len() as u64).to_le_bytes());
        h.update(line.as_bytes());
        for (k, v) in &e.xattrs {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
    }
    Some(Digest::from_sha256(&h.finalize()))
}

/// Passes everything on except the last 1024 bytes, which `tar::Builder` always ends with
/// (the end-of-archive blocks): a group's tar bytes must not carry them.
struct HoldBack<W: Write> {
    inner: W,
    tail: Vec<u8>,
}

impl<W: Write> HoldBack<W> {
    fn new(inner: W) -> Self {
        HoldBack {
            inner,
            tail: Vec::with_capacity(2048),
        }
    }
    fn finish(self) -> io::Result<W> {
        if self.tail.len() != 1024 || self.tail.iter().any(|b| *b != 0) {
            return Err(io::Error::other("tar writer did not end with its trailer"));
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for HoldBack<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tail.extend_from_slice(buf);
        if self.tail.len() > 1024 {
            let n = self.tail.len() - 1024;
            self.inner.write_all(&self.tail[..n])?;
            self.tail.drain(..n);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn tar_bytes<W: Write>(entries: &[Entry], epoch: Option<u64>, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(HoldBack::new(out));
    b.follow_symlinks(false);
    for e in entries {
        append(&mut b, e, epoch)?;
    }
    b.into_inner()?.finish()
}

/// One gzip member (header, raw deflate on a reused per-thread encoder, CRC-32 and size).
fn gzip(data: &[u8], crc: u32) -> io::Result<Vec<u8>> {
    let body = super::pgzip::deflate_block(LEVEL, None, data, true)?;
    let mut out = Vec::with_capacity(body.len() + 18);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(out)
}

/// Counts what passes to the output, so members know their offsets.
struct Counting<W: Write> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes (diff_id, CRC-32) and optionally forwards a big file's tar bytes.
struct Tee<'a, W: Write> {
    diff: &'a mut Sha256,
    crc: crc32fast::Hasher,
    size: u64,
    sink: Option<W>,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(s) = &mut self.sink {
            s.write_all(buf)?;
        }
        self.diff.update(buf);
        self.crc.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How small groups become members: tar bytes, then a copied member or a compressed one.
struct Packer<'a, F> {
    epoch: Option<u64>,
    digest_of: &'a F,
    reuse: Option<&'a Reuse>,
}

impl<F: Fn(&Entry) -> Option<String> + Sync> Packer<'_, F> {
    /// Packs a batch of small groups on the pool (read, tar, copy or compress).
    fn pack(&self, batch: &[&[Entry]]) -> io::Result<Vec<Packed>> {
        batch
            .par_iter()
            .map(|g| {
                let key = member_key(g, self.epoch, self.digest_of);
                let raw = tar_bytes(g, self.epoch, Vec::new())?;
                let crc = crc32fast::hash(&raw);
                let found = key
                    .as_ref()
                    .and_then(|k| self.reuse.and_then(|r| r.get(k, crc, raw.len() as u64)));
                let (z, reused) = match found {
                    Some(z) => (z, true),
                    None => (gzip(&raw, crc)?, false),
                };
                Ok(Packed {
                    key,
                    raw,
                    z,
                    reused,
                })
            })
            .collect()
    }
}

/// The write side: the blob, the diff_id hash, the uncompressed size, the member map.
struct Sink<W: Write> {
    out: Counting<W>,
    diff: Sha256,
    size: u64,
    report: Report,
}

impl<W: Write> Sink<W> {
    /// Hashes and writes packed members in order.
    fn emit(&mut self, packed: Vec<Packed>) -> io::Result<()> {
        for p in packed {
            self.diff.update(&p.raw);
            self.size += p.raw.len() as u64;
            if p.reused {
                self.report.reused += 1;
            } else {
                self.report.compressed += p.raw.len() as u64;
            }
            self.report.members.push(Member {
                key: p.key,
                offset: self.out.n,
                len: p.z.len() as u64,
            });
            self.out.write_all(&p.z)?;
        }
        Ok(())
    }
}

/// Small groups waiting: the batch being filled and the batch packed but not yet written.
/// A batch is packed on the pool while the previous one is hashed and written, in order.
struct Pipeline<'a, W: Write, F> {
    packer: Packer<'a, F>,
    sink: Sink<W>,
    batch: Vec<&'a [Entry]>,
    batch_bytes: u64,
    ready: Option<Vec<Packed>>,
}

impl<'a, W: Write + Send, F: Fn(&Entry) -> Option<String> + Sync> Pipeline<'a, W, F> {
    /// Adds a small group; packs the batch once it is big enough.
    fn push(&mut self, group: &'a [Entry]) -> io::Result<()> {
        self.batch_bytes += group.iter().map(|e| e.size + 512).sum::<u64>();
        self.batch.push(group);
        if self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Packs the current batch while writing the one packed before.
    fn flush(&mut self) -> io::Result<()> {
        let prev = self.ready.take();
        let (packer, batch, sink) = (&self.packer, &self.batch, &mut self.sink);
        let (next, written) = rayon::join(
            || packer.pack(batch),
            || match prev {
                Some(p) => sink.emit(p),
                None => Ok(()),
            },
        );
        written?;
        self.batch.clear();
        self.batch_bytes = 0;
        self.ready = Some(next?);
        Ok(())
    }

    /// Writes out everything batched or packed (before a big file, and at the end).
    fn drain(&mut self) -> io::Result<()> {
        self.flush()?;
        match self.ready.take() {
            Some(p) => self.sink.emit(p),
            None => Ok(()),
        }
    }

    /// A big file as one member of its own: copied when the previous layer has it (checked
    /// against the bytes just produced), else streamed through the parallel compressor.
    fn big(&mut self, e: &Entry) -> io::Result<()> {
        let one = std::slice::from_ref(e);
        let epoch = self.packer.epoch;
        let key = member_key(one, epoch, self.packer.digest_of);
        let sink = &mut self.sink;
        let offset = sink.out.n;
        let reusable = key
            .as_ref()
            .and_then(|k| self.packer.reuse.filter(|r| r.members.contains_key(k)));
        let len = match reusable {
            Some(r) => {
                // Produce the bytes for the diff_id only; copy the member if its trailer
                // matches them.
                let t = tar_bytes(
                    one,
                    epoch,
                    Tee::<io::Sink> {
                        diff: &mut sink.diff,
                        crc: crc32fast::Hasher::new(),
                        size: 0,
                        sink: None,
                    },
                )?;
                let (crc, n) = (t.crc.finalize(), t.size);
                sink.size += n;
                match r.get(key.as_ref().expect("reusable has a key"), crc, n) {
                    Some(z) => {
                        sink.report.reused += 1;
                        sink.out.write_all(&z)?;
                        z.len() as u64
                    }
                    None => {
                        // The map was stale: compress after all (reads the file again; rare).
                        sink.report.compressed += n;
                        let mut gz = ParallelGzip::new(&mut sink.out, LEVEL);
                        tar_bytes(one, epoch, &mut gz)?;
                        gz.finish()?;
                        sink.out.n - offset
                    }
                }
            }
            None => {
                let mut gz = ParallelGzip::new(&mut sink.out, LEVEL);
                let t = tar_bytes(
                    one,
                    epoch,
                    Tee {
                        diff: &mut sink.diff,
                        crc: crc32fast::Hasher::new(),
                        size: 0,
                        sink: Some(&mut gz),
                    },
                )?;
                sink.size += t.size;
                sink.report.compressed += t.size;
                gz.finish()?;
                sink.out.n - offset
            }
        };
        sink.report.members.push(Member { key, offset, len });
        Ok(())
    }
}

/// Writes `entries` as a tar layer of gzip members into `out`; `digest_of` gives a file's
/// content id (for member keys), `reuse` an earlier layer to copy members from. `entries`
/// are left sorted and without duplicate paths, as the layer holds them, for the caller to
/// keep without a copy.
pub fn write_members<W, F>(
    entries: &mut Vec<Entry>,
    epoch: Option<u64>,
    digest_of: &F,
    reuse: Option<&Reuse>,
    out: W,
) -> io::Result<(Uncompressed, W, Report)>
where
    W: Write + Send,
    F: Fn(&Entry) -> Option<String> + Sync,
{
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    entries.dedup_by(|b, a| a.path == b.path);
    let mut p = Pipeline {
        packer: Packer {
            epoch,
            digest_of,
            reuse,
        },
        sink: Sink {
            out: Counting { inner: out, n: 0 },
            diff: Sha256::new(),
            size: 0,
            report: Report::default(),
        },
        batch: Vec::new(),
        batch_bytes: 0,
        ready: None,
    };
    let entries: &[Entry] = entries;
    for g in groups(entries) {
        match g {
            Group::Small(list) => p.push(list)?,
            Group::Big(e) => {
                p.drain()?;
                p.big(e)?;
            }
        }
    }
    p.drain()?;
    let mut sink = p.sink;
    // The end-of-archive blocks, as a member of their own.
    let trailer = [0u8; 1024];
    sink.diff.update(trailer);
    sink.size += 1024;
    let z = gzip(&trailer, crc32fast::hash(&trailer))?;
    sink.report.members.push(Member {
        key: None,
        offset: sink.out.n,
        len: z.len() as u64,
    });
    sink.out.write_all(&z)?;
    sink.out.flush()?;
    Ok((
        Uncompressed {
            diff_id: Digest::from_sha256(&sink.diff.finalize()),
            size: sink.size,
        },
        sink.out.inner,
        sink.report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn files(n: usize, changed: Option<usize>) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let mut data = format!("file {i} ").repeat(200).into_bytes();
                if changed == Some(i) {
                    data.extend_from_slice(b"changed");
                }
                Entry {
                    path: format!("app/f{i:04}.js"),
                    size: data.len() as u64,
                    kind: Kind::Bytes(data),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 1,
                    xattrs: vec![],
                }
            })
            .collect()
    }

    fn plain_tar(mut entries: Vec<Entry>) -> Vec<u8> {
        super::super::tar::write_tar(&mut entries, None, Vec::new()).unwrap()
    }

    #[test]
    fn members_decode_to_the_same_tar_and_reuse_what_did_not_change() {
        let none = |_: &Entry| None;
        let (u1, blob1, r1) =
            write_members(&mut files(400, None), None, &none, None, Vec::new()).unwrap();
        let mut dec = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob1[..])
            .read_to_end(&mut dec)
            .unwrap();
        assert_eq!(dec, plain_tar(files(400, None)));
        assert_eq!(u1.diff_id, crate::content::sha256_digest(&dec));
        assert!(r1.members.len() > 10, "{} members", r1.members.len());

        let path = std::env::temp_dir().join(format!("rbuild-members-{}", std::process::id()));
        std::fs::write(&path, &blob1).unwrap();
        let reuse = Reuse::parse(File::open(&path).unwrap(), &map_text(&r1.members));
        let (u2, blob2, r2) = write_members(
            &mut files(400, Some(7)),
            None,
            &none,
            Some(&reuse),
            Vec::new(),
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut dec = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob2[..])
            .read_to_end(&mut dec)
            .unwrap();
        assert_eq!(dec, plain_tar(files(400, Some(7))));
        assert_eq!(u2.diff_id, crate::content::sha256_digest(&dec));
        assert_eq!(
            r2.reused,
            r1.members.len() - 2,
            "all but the changed group and the trailer"
        );
        assert!(r2.compressed < r1.compressed / 10);
    }

    #[test]
    fn boundaries_depend_on_paths_only() {
        let (fa, fb) = (files(300, None), files(300, Some(3)));
        let a: Vec<usize> = groups(&fa)
            .map(|g| match g {
                Group::Small(v) => v.len(),
                Group::Big(_) => 1,
            })
            .collect();
        let b: Vec<usize> = groups(&fb)
            .map(|g| match g {
                Group::Small(v) => v.len(),
                Group::Big(_) => 1,
            })
            .collect();
        assert_eq!(a, b);
    }
}
