//! RUN as an ordinary user: rbuild enters a user namespace of its own at start (the caller's
//! uid and gid mapped to 0, with a mount namespace it owns), so the namespace sandbox and the
//! overlay work as they do for root — overlay with `userxattr`, opaque directories marked
//! with `user.overlay.opaque`, whiteouts as 0:0 character devices (allowed in a user
//! namespace since Linux 5.8).
//!
//! Only the caller's own id is mapped (no `newuidmap` with `/etc/subuid` ranges yet), so
//! inside RUN every file of the base reads as owned by root, a RUN as a non-root USER and a
//! `chown` to another id fail with a message, and device nodes in base layers are skipped.
//! Layers keep the ownership the image says: COPY --chown and the base layers are written
//! from their metadata, not from the disk.

use std::sync::OnceLock;

/// Enters a new user and mount namespace when not root (before any thread starts); returns
/// whether it did. A system that forbids unprivileged user namespaces leaves rbuild as it
/// was (RUN then says it needs root).
pub fn enter() -> bool {
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    if uid.is_root() {
        return false;
    }
    use rustix::thread::UnshareFlags as F;
    // SAFETY: called first thing in main, while the process has a single thread.
    if unsafe { rustix::thread::unshare_unsafe(F::NEWUSER | F::NEWNS) }.is_err() {
        return false;
    }
    let write = |file: &str, text: String| std::fs::write(file, text).is_ok();
    write("/proc/self/setgroups", "deny".into())
        && write("/proc/self/uid_map", format!("0 {} 1\n", uid.as_raw()))
        && write("/proc/self/gid_map", format!("0 {} 1\n", gid.as_raw()))
}

/// Whether this process runs in a user namespace that maps only part of the id space
/// (rbuild's own, or a rootless container's).
pub fn active() -> bool {
    static ACTIVE: OnceLock<bool> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
            .unwrap_or(false)
    })
}

/// The xattr overlayfs reads for an opaque directory here.
pub fn opaque_xattr() -> &'static str {
    if active() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// Extra overlay mount options here.
pub fn overlay_options() -> &'static str {
    if active() {
        ",userxattr"
    } else {
        ""
    }
}
