//! RUN without namespaces or mounts (`--isolation chroot`), for places that forbid them: an
//! unprivileged Kubernetes pod (uid 0 with Docker's default capabilities — no CAP_SYS_ADMIN,
//! so no mount, no overlay, no new mount namespace — under the default seccomp profile, the
//! kaniko case) and some nested containers.
//!
//! The stage's layers are unpacked into a scratch root, the command runs `chroot`ed into it
//! (CAP_SYS_CHROOT is in Docker's default set) as the image's user, and the change is found
//! by comparing the tree before and after ([`crate::snapshot::compare`]). What this mode
//! cannot give: `/proc` and `/sys` inside (no mounts; device nodes are made with mknod where
//! CAP_MKNOD allows), a private PID, network or hostname namespace, and `RUN --mount` types
//! other than `tmpfs` (an empty directory here). Its cost: every RUN unpacks the stage's
//! layers and walks the whole tree twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ExecError;

/// How RUN steps are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Namespaces and overlay when the process may use them, else chroot.
    #[default]
    Auto,
    /// Mount, PID, UTS, IPC (and network) namespaces over an overlay.
    Namespaces,
    /// chroot into an unpacked copy, changes found by comparing trees.
    Chroot,
}

impl Isolation {
    /// Parses `--isolation` (`oci` is buildah's name for the namespace mode).
    pub fn parse(s: &str) -> Option<Isolation> {
        Some(match s {
            "auto" | "default" => Isolation::Auto,
            "namespaces" | "oci" | "sandbox" => Isolation::Namespaces,
            "chroot" => Isolation::Chroot,
            _ => return None,
        })
    }

    /// The mode to use here: `Auto` becomes `Chroot` without CAP_SYS_ADMIN in the effective set.
    pub fn resolve(self) -> Isolation {
        match self {
            Isolation::Auto if has_capability(CAP_SYS_ADMIN) => Isolation::Namespaces,
            Isolation::Auto => Isolation::Chroot,
            other => other,
        }
    }
}

/// Capability numbers (linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
/// See [`CAP_SYS_ADMIN`].
pub const CAP_SYS_CHROOT: u32 = 18;

/// Whether the effective capability set holds `cap`.
pub fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1u64 << cap) != 0)
}

/// One RUN in chroot mode.
#[derive(Debug, Clone)]
pub struct ChrootSpec {
    /// The unpacked root.
    pub root: PathBuf,
    /// The command.
    pub argv: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Resource limits (`--ulimit`).
    pub ulimits: Vec<super::limits::Ulimit>,
}

/// Files of the host placed into the root for the command and taken out before the diff.
pub const HOST_FILES: [&str; 2] = ["etc/resolv.conf", "etc/hosts"];

/// Device nodes made in `dev/` when CAP_MKNOD allows (major, minor).
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Prepares the root (devices, host files, working directory); returns what to restore.
/// `extra_hosts` are `/etc/hosts` lines added after the host's (`--add-host`).
pub fn prepare(root: &Path, cwd: &str, extra_hosts: &[String]) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let dev = root.join("dev");
    let _ = std::fs::create_dir_all(&dev);
    let _ = std::fs::create_dir_all(root.join("proc"));
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        if std::fs::symlink_metadata(&p).is_err() {
            let _ = rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o666),
                rustix::fs::makedev(major, minor),
            );
        }
    }
    let mut restore = Vec::new();
    for f in HOST_FILES {
        let inside = root.join(f);
        // Never write through a symlink in the image.
        if std::fs::symlink_metadata(&inside).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        let Ok(mut host) = std::fs::read(Path::new("/").join(f)) else {
            continue;
        };
        if f == "etc/hosts" && !extra_hosts.is_empty() {
            host = super::hosts_with(host, extra_hosts);
        }
        restore.push((inside.clone(), std::fs::read(&inside).ok()));
        if let Some(d) = inside.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(&inside, host);
    }
    let _ = std::fs::create_dir_all(root.join(cwd.trim_start_matches('/')));
    restore
}

/// Puts back what [`prepare`] replaced.
pub fn restore(saved: Vec<(PathBuf, Option<Vec<u8>>)>) {
    for (p, old) in saved {
        match old {
            Some(b) => {
                let _ = std::fs::write(&p, b);
            }
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Runs the command chroot'ed into `spec.root`; output streams to stderr.
pub fn run(spec: &ChrootSpec, shown: &str, out: &super::OutputSink) -> Result<(), ExecError> {
    if !has_capability(CAP_SYS_CHROOT) {
        return Err(ExecError::Setup(
            "chroot isolation needs CAP_SYS_CHROOT, which this process lacks".into(),
        ));
    }
    let program = spec
        .argv
        .first()
        .ok_or(ExecError::Setup("empty command".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for kv in &spec.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let root = std::ffi::CString::new(spec.root.as_os_str().as_encoded_bytes())
        .map_err(|_| ExecError::Setup("NUL in the root path".into()))?;
    let cwd = std::ffi::CString::new(if spec.cwd.is_empty() { "/" } else { &spec.cwd })
        .map_err(|_| ExecError::Setup("NUL in WORKDIR".into()))?;
    let (uid, gid) = (spec.uid, spec.gid);
    let rootless = super::rootless::active();
    let limits = super::limits::prepare(&spec.ulimits);
    // SAFETY: the closure runs in the forked child and only makes system calls on data
    // prepared before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            use rustix::fs::{Gid, Uid};
            use rustix::process::{chdir, set_parent_process_death_signal, Signal};
            set_parent_process_death_signal(Some(Signal::KILL))?;
            rustix::process::chroot(root.as_c_str())?;
            chdir(c"/")?;
            chdir(cwd.as_c_str())?;
            super::limits::apply(&limits)?;
            if !rootless {
                rustix::thread::set_thread_groups(&[])?;
            }
            let g = Gid::from_raw_unchecked(gid);
            rustix::thread::set_thread_res_gid(g, g, g)?;
            let u = Uid::from_raw_unchecked(uid);
            rustix::thread::set_thread_res_uid(u, u, u)?;
            Ok(())
        });
    }
    super::supervise(cmd, shown, "the command", out)
}
