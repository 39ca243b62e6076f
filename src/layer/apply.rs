//! Applying a layer tar onto a directory, as a container runtime would see it.
//!
//! Written here because the `tar` crate's unpacker is not safe for image layers (its path check
//! follows symlinks, devices become empty files, whiteouts are ignored). Entries are read with
//! the `tar` crate; every path is resolved beneath the root with `openat2(RESOLVE_IN_ROOT)`, and
//! the final component is always created with `*at` calls on the parent's descriptor without
//! following it. So a symlink in the layer (or in an earlier one) that points at `/etc` or at
//! `../../..` resolves inside the root, as it would inside the container: nothing is ever
//! written outside. Entry names that are absolute or contain `..` are refused outright.
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) delete what lower layers put there ("flatten" mode,
//! used for `COPY --from` of an image and for the chroot fallback of RUN).

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;
use thiserror::Error;

/// The whiteout prefix of the OCI layer format.
pub const WHITEOUT: &str = ".wh.";
/// The opaque-directory marker.
pub const OPAQUE: &str = ".wh..wh..opq";

/// Why a layer could not be applied.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// An entry tries to leave the root or is otherwise refused.
    #[error("layer entry {entry:?} is refused: {reason}")]
    Hostile {
        /// The entry name as stored in the tar.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// The stream is not a valid (compressed) tar.
    #[error("the layer is not a readable tar stream: {0}")]
    Read(#[source] io::Error),
    /// A filesystem operation failed.
    #[error("{op} {entry:?}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// On which entry.
        entry: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// What applying a layer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Entries written (files, directories, links, nodes).
    pub written: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Entries skipped and why (device nodes without privileges, unknown types).
    pub skipped: Vec<String>,
}

/// Splits a tar entry name into clean components, refusing absolute and `..` paths.
pub fn clean_entry_name(raw: &str) -> Result<Vec<String>, ApplyError> {
    let hostile = |reason| ApplyError::Hostile {
        entry: raw.to_string(),
        reason,
    };
    if raw.starts_with('/') {
        return Err(hostile("absolute paths are not allowed in a layer"));
    }
    let mut out = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(hostile("'..' would climb out of the image root")),
            c if c.contains('\0') => return Err(hostile("NUL byte in the name")),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

struct Root {
    fd: OwnedFd,
    privileged: bool,
    /// Owners may be set (root, possibly inside a user namespace).
    ownership: bool,
    /// Last opened parent directory (entries are mostly sorted, so parents repeat).
    last: Option<(Vec<String>, OwnedFd)>,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Maps an OS error of `op` on `entry` (for `map_err`).
fn io_at(op: &'static str, entry: &str) -> impl FnOnce(Errno) -> ApplyError {
    let entry = entry.to_string();
    move |e| ApplyError::Io {
        op,
        entry,
        source: errno(e),
    }
}

impl Root {
    /// Opens directory `comps` beneath the root, creating missing ones when `create`.
    fn dir(&mut self, comps: &[String], create: bool) -> Result<Option<OwnedFd>, Errno> {
        if let Some((p, fd)) = &self.last {
            if p.as_slice() == comps {
                return fd.try_clone().map(Some).map_err(|_| Errno::MFILE);
            }
        }
        let path = if comps.is_empty() {
            ".".to_string()
        } else {
            comps.join("/")
        };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let fd = match rfs::openat2(&self.fd, &path, flags, Mode::empty(), how) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create && !comps.is_empty() => {
                let parent = self
                    .dir(&comps[..comps.len() - 1], true)?
                    .ok_or(Errno::NOENT)?;
                match rfs::mkdirat(&parent, comps[comps.len() - 1].as_str(), Mode::from(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                rfs::openat2(&self.fd, &path, flags, Mode::empty(), how)?
            }
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Ok(c) = fd.try_clone() {
            self.last = Some((comps.to_vec(), c));
        }
        Ok(Some(fd))
    }

    fn forget(&mut self) {
        self.last = None;
    }
}

/// Removes `name` in `dir` (recursively, never following symlinks).
fn remove_all(dir: impl AsFd, name: &str) -> Result<(), Errno> {
    let st = match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rfs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        empty_dir(&sub, &HashSet::new(), &[])?;
        rfs::unlinkat(&dir, name, AtFlags::REMOVEDIR)
    } else {
        rfs::unlinkat(&dir, name, AtFlags::empty())
    }
}

/// Removes the children of `dir` except those whose path (`prefix` + name) is in `keep`.
fn empty_dir(dir: &OwnedFd, keep: &HashSet<Vec<String>>, prefix: &[String]) -> Result<(), Errno> {
    let mut names = Vec::new();
    for ent in rfs::Dir::read_from(dir)? {
        let ent = ent?;
        let n = ent.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    for n in names {
        let mut p = prefix.to_vec();
        p.push(n.clone());
        if !keep.contains(&p) {
            remove_all(dir, &n)?;
        }
    }
    Ok(())
}

struct DirMeta {
    comps: Vec<String>,
    mode: u32,
    mtime: u64,
}

/// What whiteouts do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Delete what lower layers put there (applying onto a flattened root).
    Delete,
    /// Record them the way overlayfs does (a 0:0 character device, `trusted.overlay.opaque`),
    /// so the directory can be an overlay lower layer on its own. Needs root.
    Overlay,
}

/// Copies an entry's data into `file`: errors of the stream (truncated, corrupt compression)
/// are `Read`, errors of the file (disk full) are `Io` naming the entry.
fn copy_entry(
    entry: &mut impl Read,
    file: &mut std::fs::File,
    raw: &str,
) -> Result<u64, ApplyError> {
    use std::io::Write as _;
    let mut buf = [0u8; 1 << 15];
    let mut copied = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ApplyError::Read(e)),
        };
        file.write_all(&buf[..n]).map_err(|e| ApplyError::Io {
            op: "write",
            entry: raw.to_string(),
            source: e,
        })?;
        copied += n as u64;
    }
}

/// Applies the layer tar read from `reader` onto `root` (which must exist).
pub fn apply_layer(root: &Path, reader: impl Read) -> Result<Applied, ApplyError> {
    apply_layer_with(root, reader, Whiteouts::Delete)
}

/// Applies a layer with the given whiteout handling.
pub fn apply_layer_with(
    root: &Path,
    reader: impl Read,
    whiteouts: Whiteouts,
) -> Result<Applied, ApplyError> {
    let fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApplyError::Io {
        op: "open",
        entry: root.display().to_string(),
        source: errno(e),
    })?;
    let mut root = Root {
        fd,
        // In a user namespace real device nodes cannot be made (they are skipped), and
        // owners outside its mapping cannot be set (files stay root's inside).
        privileged: rustix::process::geteuid().is_root() && !crate::exec::rootless::active(),
        ownership: rustix::process::geteuid().is_root(),
        last: None,
    };
    let mut applied = Applied::default();
    let mut created: HashSet<Vec<String>> = HashSet::new();
    let mut dirs: Vec<DirMeta> = Vec::new();
    let mut archive = tar::Archive::new(crate::layer::guard::TarGuard::new(reader));
    for entry in archive.entries().map_err(ApplyError::Read)? {
        let mut entry = entry.map_err(ApplyError::Read)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let comps = clean_entry_name(&raw)?;
        let Some((name, parent)) = comps.split_last() else {
            continue; // the root itself
        };
        let io = |op: &'static str| io_at(op, &raw);
        // Whiteouts.
        if name == OPAQUE && whiteouts == Whiteouts::Overlay {
            let d = root
                .dir(parent, true)
                .map_err(io("open"))?
                .expect("created");
            let d = rfs::openat(
                &d,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io("open"))?;
            rfs::fsetxattr(
                &d,
                crate::exec::rootless::opaque_xattr(),
                b"y",
                rfs::XattrFlags::empty(),
            )
            .map_err(io("mark opaque"))?;
            applied.whiteouts += 1;
            continue;
        }
        if name == OPAQUE {
            if let Some(d) = root.dir(parent, false).map_err(io("open"))? {
                let d = rfs::openat(
                    &d,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io("open"))?;
                empty_dir(&d, &created, parent).map_err(io("apply opaque whiteout in"))?;
                root.forget();
            }
            applied.whiteouts += 1;
            continue;
        }
        if let Some(target) = name.strip_prefix(WHITEOUT) {
            if target.is_empty() || target == "." || target == ".." {
                return Err(ApplyError::Hostile {
                    entry: raw,
                    reason: "malformed whiteout name",
                });
            }
            if whiteouts == Whiteouts::Overlay {
                let d = root
                    .dir(parent, true)
                    .map_err(io("open"))?
                    .expect("created");
                remove_all(&d, target).map_err(io("apply whiteout"))?;
                rfs::mknodat(
                    &d,
                    target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(io("record whiteout"))?;
                root.forget();
            } else if let Some(d) = root.dir(parent, false).map_err(io("open"))? {
                remove_all(&d, target).map_err(io("apply whiteout"))?;
                root.forget();
            }
            applied.whiteouts += 1;
            continue;
        }
        let header = entry.header().clone();
        let etype = header.entry_type();
        let mode = header.mode().map_err(ApplyError::Read)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let pdir = root
            .dir(parent, true)
            .map_err(|e| match e {
                Errno::NOTDIR => ApplyError::Hostile {
                    entry: raw.clone(),
                    reason: "a parent of this entry is not a directory",
                },
                Errno::NOENT => ApplyError::Hostile {
                    entry: raw.clone(),
                    reason: "a parent of this entry is a symlink to nothing inside the image",
                },
                e => io("create parent of")(e),
            })?
            .expect("created");
        let existing = rfs::statat(&pdir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing
            .as_ref()
            .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if existing.is_some() && !(etype.is_dir() && existing_is_dir) {
            remove_all(&pdir, name).map_err(io("replace"))?;
            root.forget();
        }
        let can_own = root.ownership && crate::exec::rootless::maps(uid as u64, gid as u64);
        let owner = |fd: &OwnedFd, n: &str| -> Result<(), Errno> {
            if can_own {
                rfs::chownat(
                    fd,
                    n,
                    Some(rfs::Uid::from_raw_unchecked(uid)),
                    Some(rfs::Gid::from_raw_unchecked(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            Ok(())
        };
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: mtime as i64,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: mtime as i64,
                tv_nsec: 0,
            },
        };
        if etype.is_dir() {
            if !existing_is_dir {
                rfs::mkdirat(&pdir, name.as_str(), Mode::from(0o700))
                    .map_err(io("create directory"))?;
            }
            owner(&pdir, name).map_err(io("chown"))?;
            dirs.push(DirMeta {
                comps: comps.clone(),
                mode,
                mtime,
            });
        } else if etype.is_file() || etype == tar::EntryType::Continuous {
            let fd = rfs::openat(
                &pdir,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from(0o600),
            )
            .map_err(io("create"))?;
            let mut file = std::fs::File::from(fd);
            let declared = header.size().map_err(ApplyError::Read)?;
            let copied = copy_entry(&mut entry, &mut file, &raw)?;
            if copied != declared {
                return Err(ApplyError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{raw:?} declares {declared} bytes but the stream ends after {copied}"),
                )));
            }
            if can_own {
                rfs::fchown(
                    &file,
                    Some(rfs::Uid::from_raw_unchecked(uid)),
                    Some(rfs::Gid::from_raw_unchecked(gid)),
                )
                .map_err(io("chown"))?;
            }
            rfs::fchmod(&file, Mode::from(mode)).map_err(io("chmod"))?;
            if let Ok(Some(exts)) = entry.pax_extensions() {
                for ext in exts.flatten() {
                    let Ok(key) = ext.key() else { continue };
                    if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                        // Only user attributes and file capabilities; never trusted.* (overlay's own).
                        let allowed = attr.starts_with("user.")
                            || (root.privileged && attr == "security.capability");
                        if allowed {
                            let _ = rfs::fsetxattr(
                                &file,
                                attr,
                                ext.value_bytes(),
                                rfs::XattrFlags::empty(),
                            );
                        }
                    }
                }
            }
            rfs::futimens(&file, &times).map_err(io("set times of"))?;
        } else if etype.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            rfs::symlinkat(target.as_str(), &pdir, name.as_str()).map_err(io("create symlink"))?;
            owner(&pdir, name).map_err(io("chown"))?;
            let _ = rfs::utimensat(&pdir, name.as_str(), &times, AtFlags::SYMLINK_NOFOLLOW);
        } else if etype.is_hard_link() {
            let target_raw = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let target = clean_entry_name(&target_raw).map_err(|_| ApplyError::Hostile {
                entry: raw.clone(),
                reason: "hard link target leaves the image root",
            })?;
            let Some((tname, tparent)) = target.split_last() else {
                return Err(ApplyError::Hostile {
                    entry: raw,
                    reason: "hard link to the root",
                });
            };
            let tdir = root
                .dir(tparent, false)
                .map_err(io("open link target of"))?
                .ok_or_else(|| ApplyError::Hostile {
                    entry: raw.clone(),
                    reason: "hard link target does not exist in the layers so far",
                })?;
            rfs::linkat(
                &tdir,
                tname.as_str(),
                &pdir,
                name.as_str(),
                AtFlags::empty(),
            )
            .map_err(io("create hard link"))?;
        } else if etype.is_character_special() || etype.is_block_special() || etype.is_fifo() {
            let ft = if etype.is_fifo() {
                FileType::Fifo
            } else if etype.is_character_special() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            if !etype.is_fifo() && !root.privileged {
                applied
                    .skipped
                    .push(format!("{raw}: device node (needs root)"));
                continue;
            }
            let dev = rfs::makedev(
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            );
            rfs::mknodat(&pdir, name.as_str(), ft, Mode::from(mode), dev)
                .map_err(io("create node"))?;
            owner(&pdir, name).map_err(io("chown"))?;
        } else if etype.is_pax_global_extensions()
            || etype.is_pax_local_extensions()
            || etype.is_gnu_longname()
            || etype.is_gnu_longlink()
        {
            continue;
        } else {
            applied
                .skipped
                .push(format!("{raw}: unsupported entry type {:?}", etype));
            continue;
        }
        created.insert(comps);
        applied.written += 1;
    }
    // Directory modes and times last: creating children changes a directory's mtime, and a
    // read-only directory mode would stop us writing into it.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.comps.len()));
    for d in dirs {
        let (name, parent) = d.comps.split_last().expect("non-empty");
        let raw = d.comps.join("/");
        let io = |op: &'static str| io_at(op, &raw);
        if let Some(p) = root.dir(parent, false).map_err(io("open"))? {
            rfs::chmodat(&p, name.as_str(), Mode::from(d.mode), AtFlags::empty())
                .map_err(io("chmod"))?;
            let t = Timespec {
                tv_sec: d.mtime as i64,
                tv_nsec: 0,
            };
            rfs::utimensat(
                &p,
                name.as_str(),
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io("set times of"))?;
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Tar(tar::Builder<Vec<u8>>);
    impl Tar {
        fn new() -> Self {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn add(mut self, path: &str, t: tar::EntryType, data: &[u8], link: Option<&str>) -> Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(t);
            h.set_mode(if t.is_dir() { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_mtime(1000);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Bypass the crate's own path checks: hostile layers are the point here.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn file(self, p: &str, d: &str) -> Self {
            self.add(p, tar::EntryType::Regular, d.as_bytes(), None)
        }
        fn dir(self, p: &str) -> Self {
            self.add(p, tar::EntryType::Directory, b"", None)
        }
        fn link(self, p: &str, to: &str) -> Self {
            self.add(p, tar::EntryType::Symlink, b"", Some(to))
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    #[test]
    fn whiteouts_remove_lower_files_and_opaque_dirs_keep_this_layer() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let l1 = Tar::new()
            .dir("a")
            .file("a/old", "1")
            .file("a/keep", "1")
            .dir("d")
            .file("d/x", "1")
            .file("gone", "1")
            .bytes();
        apply_layer(r, &l1[..]).unwrap();
        let l2 = Tar::new()
            .file("a/.wh.old", "")
            .dir("d")
            .file("d/.wh..wh..opq", "")
            .file("d/new", "2")
            .file(".wh.gone", "")
            .bytes();
        let got = apply_layer(r, &l2[..]).unwrap();
        assert_eq!(got.whiteouts, 3);
        assert!(!r.join("a/old").exists());
        assert!(r.join("a/keep").exists());
        assert!(!r.join("d/x").exists());
        assert_eq!(fs::read_to_string(r.join("d/new")).unwrap(), "2");
        assert!(!r.join("gone").exists());
    }

    #[test]
    fn dot_dot_and_absolute_names_are_refused() {
        let root = tempfile::tempdir().unwrap();
        for name in ["../evil", "a/../../evil", "/etc/evil"] {
            let l = Tar::new().file(name, "x").bytes();
            let e = apply_layer(root.path(), &l[..]).unwrap_err();
            assert!(matches!(e, ApplyError::Hostile { .. }), "{name}: {e}");
        }
    }

    #[test]
    fn writes_through_symlinks_stay_inside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir(&root).unwrap();
        let victim = outer.path().join("victim");
        fs::create_dir(&victim).unwrap();
        // A relative link climbing out resolves inside the root, where the container sees it.
        let l = Tar::new()
            .dir("victim")
            .link("up", "../../victim")
            .file("up/pwned", "x")
            .bytes();
        apply_layer(&root, &l[..]).unwrap();
        assert!(root.join("victim/pwned").exists());
        // An absolute link to a host directory points nowhere inside the image: refused.
        let l = Tar::new()
            .link("abs", victim.to_str().unwrap())
            .file("abs/pwned2", "x")
            .bytes();
        let e = apply_layer(&root, &l[..]).unwrap_err();
        assert!(matches!(e, ApplyError::Hostile { .. }), "{e}");
        // A hard link to a host file is refused too.
        fs::write(victim.join("secret"), "s").unwrap();
        let l = Tar::new()
            .add("h", tar::EntryType::Link, b"", Some("../victim/secret"))
            .bytes();
        assert!(matches!(
            apply_layer(&root, &l[..]),
            Err(ApplyError::Hostile { .. })
        ));
        assert_eq!(
            fs::read_dir(&victim).unwrap().count(),
            1,
            "nothing written outside"
        );
    }

    #[test]
    fn truncated_stream_is_a_read_error() {
        let l = Tar::new().file("big", &"x".repeat(5000)).bytes();
        let root = tempfile::tempdir().unwrap();
        let e = apply_layer(root.path(), &l[..1200]).unwrap_err();
        assert!(matches!(e, ApplyError::Read(_)), "{e}");
    }
}
