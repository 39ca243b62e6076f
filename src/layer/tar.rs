//! Deterministic tar: entries sorted by path, ownership and modes as the build says, mtimes
//! from the files or clamped to `SOURCE_DATE_EPOCH`, no user/group names, PAX records for
//! names and link targets too long for ustar, hardlinks and symlinks kept as links (never
//! followed), xattrs as `SCHILY.xattr.*` PAX records.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use tar::{EntryType, Header};

/// What an entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file read from disk (streamed, never loaded whole).
    File(PathBuf),
    /// A regular file with inline bytes (heredocs, generated files).
    Bytes(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link with its target as written.
    Symlink(String),
    /// A hard link to an earlier entry's path.
    Hardlink(String),
    /// A named pipe (`mkfifo`).
    Fifo,
    /// A device node (`mknod`): block or character, with its numbers.
    Device {
        /// Block device when true, character device otherwise.
        block: bool,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

impl Kind {
    /// The kind of a FIFO or device node from its metadata; `None` for sockets (which no
    /// layer can hold) and for files, directories and links (handled by the caller).
    pub fn special(meta: &std::fs::Metadata) -> Option<Kind> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ft = meta.file_type();
        let (major, minor) = (
            rustix::fs::major(meta.rdev()),
            rustix::fs::minor(meta.rdev()),
        );
        if ft.is_fifo() {
            Some(Kind::Fifo)
        } else if ft.is_char_device() || ft.is_block_device() {
            Some(Kind::Device {
                block: ft.is_block_device(),
                major,
                minor,
            })
        } else {
            None
        }
    }

    /// What a cache or member key records for a FIFO or device node.
    pub fn special_key(&self) -> Option<String> {
        match self {
            Kind::Fifo => Some("fifo".into()),
            Kind::Device {
                block,
                major,
                minor,
            } => Some(format!(
                "{} {major}:{minor}",
                if *block { "blockdev" } else { "chardev" }
            )),
            _ => None,
        }
    }
}

/// One file of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the image, relative (`etc/passwd`), no trailing slash.
    pub path: String,
    /// Content.
    pub kind: Kind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Size of a regular file (checked against the bytes streamed).
    pub size: u64,
    /// Extended attributes.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Writes `entries` (sorted here) as a tar stream into `out`; returns `out`.
pub fn write_tar<W: Write>(entries: &mut Vec<Entry>, epoch: Option<u64>, out: W) -> io::Result<W> {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    entries.dedup_by(|b, a| a.path == b.path);
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    for e in entries.iter() {
        append(&mut builder, e, epoch)?;
    }
    builder.into_inner()
}

pub(crate) fn append<W: Write>(
    b: &mut tar::Builder<W>,
    e: &Entry,
    epoch: Option<u64>,
) -> io::Result<()> {
    let mut name = e.path.trim_start_matches('/').to_string();
    if matches!(e.kind, Kind::Dir) {
        name.push('/');
    }
    let mut h = Header::new_ustar();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if h.set_path(&name).is_err() || name.len() > 100 && !fits_ustar(&name) {
        pax.push(("path".into(), name.clone().into_bytes()));
        h.set_path(truncate_name(&name))?;
    }
    let (etype, size) = match &e.kind {
        Kind::File(_) => (EntryType::Regular, e.size),
        Kind::Bytes(d) => (EntryType::Regular, d.len() as u64),
        Kind::Dir => (EntryType::Directory, 0),
        Kind::Fifo => (EntryType::Fifo, 0),
        Kind::Device { block: true, .. } => (EntryType::Block, 0),
        Kind::Device { block: false, .. } => (EntryType::Char, 0),
        Kind::Symlink(t) | Kind::Hardlink(t) => {
            if h.set_link_name(t).is_err() || t.len() > 100 {
                pax.push(("linkpath".into(), t.clone().into_bytes()));
                h.set_link_name("././@LongLink")?;
            }
            (
                if matches!(e.kind, Kind::Symlink(_)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                },
                0,
            )
        }
    };
    if size >= 0o77777777777 {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    for (k, v) in &e.xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    h.set_entry_type(etype);
    h.set_size(size);
    h.set_mode(e.mode & 0o7777);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(epoch.map_or(e.mtime, |ep| e.mtime.min(ep)));
    h.set_username("")?;
    h.set_groupname("")?;
    let (major, minor) = match e.kind {
        Kind::Device { major, minor, .. } => (major, minor),
        _ => (0, 0),
    };
    h.set_device_major(major)?;
    h.set_device_minor(minor)?;
    h.set_cksum();
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    match &e.kind {
        Kind::File(p) => {
            let f = File::open(p)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", p.display())))?;
            let meta = f.metadata()?;
            if meta.len() != size {
                return Err(io::Error::other(format!(
                    "{} changed size while the layer was written",
                    p.display()
                )));
            }
            b.append(&h, f)
        }
        Kind::Bytes(d) => b.append(&h, &d[..]),
        _ => b.append(&h, io::empty()),
    }
}

fn fits_ustar(name: &str) -> bool {
    if name.len() <= 100 {
        return true;
    }
    // ustar splits at a '/' into prefix (≤155) and name (≤100).
    name.char_indices()
        .filter(|(_, c)| *c == '/')
        .any(|(i, _)| i <= 155 && name.len() - i - 1 <= 100 && i > 0)
}

fn truncate_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .rev()
        .take(90)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if s.len() > 99 {
        s = s[s.len() - 99..].to_string();
    }
    format!("PaxHeaders/{s}").chars().take(99).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Bytes(data.to_vec()),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1000,
            size: data.len() as u64,
            xattrs: vec![],
        }
    }

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn sorted_and_byte_identical() {
        let a = write_tar(
            &mut vec![file("b", b"2"), file("a", b"1")],
            None,
            Vec::new(),
        )
        .unwrap();
        let b = write_tar(
            &mut vec![file("a", b"1"), file("b", b"2")],
            None,
            Vec::new(),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(names(&a), vec!["a", "b"]);
    }

    #[test]
    fn long_names_survive() {
        let long = format!("{}/{}", "d".repeat(200), "f".repeat(120));
        let t = write_tar(&mut vec![file(&long, b"x")], None, Vec::new()).unwrap();
        assert_eq!(names(&t), vec![long]);
    }

    #[test]
    fn epoch_clamps_mtime() {
        let t = write_tar(&mut vec![file("a", b"1")], Some(10), Vec::new()).unwrap();
        let mut ar = tar::Archive::new(&t[..]);
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mtime().unwrap(), 10);
    }
}
