//! RUN as an ordinary user: rbuild enters a user namespace of its own at start (the caller's
//! uid and gid mapped to 0, with a mount namespace it owns), so the namespace sandbox and the
//! overlay work as they do for root — overlay with `userxattr`, opaque directories marked
//! with `user.overlay.opaque`, whiteouts as 0:0 character devices (allowed in a user
//! namespace since Linux 5.8).
//!
//! With a range for the user in `/etc/subuid` and `/etc/subgid`, ids 1..N inside map to it
//! (through the setuid `newuidmap`/`newgidmap`, run from outside the namespace by a helper
//! started just before it is created), so base layers keep their owners and RUN can run as
//! another USER. Without one, only the caller's id is mapped: inside RUN every file of the
//! base reads as owned by root, a RUN as a non-root USER fails with a message, and device
//! nodes in base layers are skipped. Layers always keep the ownership the image says: COPY
//! --chown and the base layers are written from their metadata, not from the disk.

use std::sync::OnceLock;

/// Enters a new user and mount namespace when not root (before any thread starts); returns
/// whether it did. A system that forbids unprivileged user namespaces leaves rbuild as it
/// was (RUN then says it needs root).
pub fn enter() -> bool {
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    if uid.is_root() {
        return false;
    }
    let (u, g) = (uid.as_raw(), gid.as_raw());
    let name = user_name(u);
    let ranges = subid_range("/etc/subuid", u, name.as_deref()).zip(subid_range(
        "/etc/subgid",
        u,
        name.as_deref(),
    ));
    // The helper is started before the namespace exists, so it stays outside, where the
    // setuid newuidmap may write our maps once we are in it.
    let helper = ranges.and_then(|((us, uc), (gs, gc))| {
        let pid = std::process::id().to_string();
        std::process::Command::new("sh")
            .args([
                "-c",
                "read go && newuidmap \"$1\" 0 \"$2\" 1 1 \"$3\" \"$4\" && newgidmap \"$1\" 0 \"$5\" 1 1 \"$6\" \"$7\"",
                "sh",
                &pid,
                &u.to_string(),
                &us.to_string(),
                &uc.to_string(),
                &g.to_string(),
                &gs.to_string(),
                &gc.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
    });
    use rustix::thread::UnshareFlags as F;
    // SAFETY: called first thing in main; the process has one thread (the helper is another
    // process).
    if unsafe { rustix::thread::unshare_unsafe(F::NEWUSER | F::NEWNS) }.is_err() {
        return false;
    }
    if let Some(mut h) = helper {
        use std::io::Write;
        let told = h
            .stdin
            .take()
            .is_some_and(|mut i| i.write_all(b"go\n").is_ok());
        if told && h.wait().is_ok_and(|s| s.success()) {
            return true;
        }
        let _ = h.kill();
    }
    let write = |file: &str, text: String| std::fs::write(file, text).is_ok();
    write("/proc/self/setgroups", "deny".into())
        && write("/proc/self/uid_map", format!("0 {u} 1\n"))
        && write("/proc/self/gid_map", format!("0 {g} 1\n"))
}

/// The user's name in /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
}

/// The user's first subordinate range (start, count) in a subuid/subgid file.
fn subid_range(file: &str, uid: u32, name: Option<&str>) -> Option<(u64, u64)> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        let ours = f
            .first()
            .is_some_and(|o| *o == uid.to_string() || Some(*o) == name);
        if f.len() == 3 && ours {
            Some((f[1].parse().ok()?, f[2].parse().ok()?))
        } else {
            None
        }
    })
}

/// Whether ownership `uid:gid` can be given to files here (always, outside a user namespace).
pub fn maps(uid: u64, gid: u64) -> bool {
    fn ranges(file: &str) -> Vec<(u64, u64)> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (f.len() == 3).then(|| (f[0], f[0] + f[2]))
            })
            .collect()
    }
    static UIDS: OnceLock<Vec<(u64, u64)>> = OnceLock::new();
    static GIDS: OnceLock<Vec<(u64, u64)>> = OnceLock::new();
    let inside = |r: &[(u64, u64)], id: u64| r.iter().any(|(a, b)| id >= *a && id < *b);
    !active()
        || (inside(UIDS.get_or_init(|| ranges("/proc/self/uid_map")), uid)
            && inside(GIDS.get_or_init(|| ranges("/proc/self/gid_map")), gid))
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
