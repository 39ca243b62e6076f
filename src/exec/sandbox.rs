//! The sandbox helper (`rbuild __sandbox SPEC`), started with new mount, PID, UTS and IPC
//! namespaces already unshared: it builds the container's view and runs the command as PID 1.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use rustix::mount::{self, MountFlags, MountPropagationFlags, UnmountFlags};

use super::RunSpec;

/// Exit code of the helper when the sandbox itself could not be set up.
pub const SETUP_FAILED: i32 = 125;

/// Device nodes bound from the host into the container's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Paths rbuild may create as mount points; the snapshot drops them when the base lacked them.
pub const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "etc/resolv.conf", "etc/hosts"];

/// Entry point of the helper; returns the process exit code.
pub fn main(spec_path: &str) -> i32 {
    match setup_and_run(spec_path) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rbuild sandbox: {e}");
            SETUP_FAILED
        }
    }
}

fn c(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("NUL in path {}", p.display()))
}

fn ensure_file(p: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(p).is_err() {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(p, b"").map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// `target` inside `merged`, with symlinks among its parents resolved inside the container.
fn inside(merged: &Path, target: &str) -> Result<std::path::PathBuf, String> {
    let rel = crate::build::context::resolve_parents(merged, target.trim_start_matches('/'))
        .ok_or_else(|| format!("mount target {target}: too many symlinks"))?;
    let p = merged.join(&rel);
    if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!("mount target {target} is a symlink in the image"));
    }
    Ok(p)
}

fn ensure_dir(p: &Path) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Sets up `RUN --mount`s; private scratch space lives on the sandbox's tmpfs `/dev`.
fn setup_mounts(spec: &RunSpec, merged: &Path, dev: &Path) -> Result<(), String> {
    use super::SandboxMount as M;
    use base64::Engine as _;
    let secrets: Vec<Vec<u8>> = std::env::var(super::SECRETS_ENV)
        .ok()
        .and_then(|v| serde_json::from_str::<Vec<String>>(&v).ok())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_default()
        })
        .collect();
    let private = dev.join(".rbuild");
    ensure_dir(&private)?;
    let err = |what: String| move |e: rustix::io::Errno| format!("{what}: {e}");
    for (i, m) in spec.mounts.iter().enumerate() {
        match m {
            M::Bind {
                source,
                target,
                readonly,
                discard_writes,
            } => {
                let t = inside(merged, target)?;
                let is_dir = source.is_dir();
                if is_dir {
                    ensure_dir(&t)?
                } else {
                    ensure_file(&t)?
                }
                if *discard_writes && is_dir {
                    let (u, w) = (
                        private.join(format!("rw{i}/u")),
                        private.join(format!("rw{i}/w")),
                    );
                    ensure_dir(&u)?;
                    ensure_dir(&w)?;
                    let data = CString::new(format!(
                        "lowerdir={},upperdir={},workdir={}{}",
                        source.display(),
                        u.display(),
                        w.display(),
                        super::rootless::overlay_options()
                    ))
                    .map_err(|_| "NUL in mount path".to_string())?;
                    mount::mount(
                        "overlay",
                        &t,
                        "overlay",
                        MountFlags::empty(),
                        data.as_c_str(),
                    )
                    .map_err(err(format!("mounting {target}")))?;
                } else if *discard_writes {
                    let copy = private.join(format!("rw{i}"));
                    std::fs::copy(source, &copy)
                        .map_err(|e| format!("{}: {e}", source.display()))?;
                    mount::mount_bind(&copy, &t).map_err(err(format!("mounting {target}")))?;
                } else {
                    mount::mount_bind(source, &t).map_err(err(format!("mounting {target}")))?;
                    if *readonly {
                        mount::mount_remount(&t, MountFlags::BIND | MountFlags::RDONLY, c"")
                            .map_err(err(format!("making {target} read-only")))?;
                    }
                }
            }
            M::Tmpfs { target } => {
                let t = inside(merged, target)?;
                ensure_dir(&t)?;
                mount::mount(
                    "tmpfs",
                    &t,
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    c"mode=1777",
                )
                .map_err(err(format!("mounting tmpfs on {target}")))?;
            }
            M::Secret {
                index,
                target,
                mode,
                uid,
                gid,
            } => {
                let data = secrets
                    .get(*index)
                    .ok_or("secret missing from the helper's environment")?;
                let file = private.join(format!("secret{i}"));
                std::fs::write(&file, data).map_err(|e| format!("secret: {e}"))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| format!("secret: {e}"))?;
                std::os::unix::fs::chown(&file, Some(*uid), Some(*gid))
                    .map_err(|e| format!("secret: {e}"))?;
                let t = inside(merged, target)?;
                ensure_file(&t)?;
                mount::mount_bind(&file, &t)
                    .map_err(err(format!("mounting secret on {target}")))?;
                let _ = mount::mount_remount(&t, MountFlags::BIND | MountFlags::RDONLY, c"");
            }
        }
    }
    Ok(())
}

fn setup_and_run(spec_path: &str) -> Result<i32, String> {
    let spec: RunSpec =
        serde_json::from_slice(&std::fs::read(spec_path).map_err(|e| format!("{spec_path}: {e}"))?)
            .map_err(|e| format!("{spec_path}: {e}"))?;
    let err = |what: &str| {
        let what = what.to_string();
        move |e: rustix::io::Errno| format!("{what}: {e}")
    };
    mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(err("making mounts private"))?;
    let names: Vec<String> = spec.lowers.clone();
    for s in names.iter().cloned().chain([
        spec.upper.to_string_lossy().into_owned(),
        spec.work.to_string_lossy().into_owned(),
    ]) {
        if s.contains([',', ':']) {
            return Err(format!("overlay paths may not contain ',' or ':': {s}"));
        }
    }
    // Lower directories by name relative to the snapshot area keeps the mount options short
    // (they must fit in one page): about 60 layers.
    std::env::set_current_dir(&spec.layers_dir)
        .map_err(|e| format!("{}: {e}", spec.layers_dir.display()))?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        names.join(":"),
        spec.upper.display(),
        spec.work.display(),
        super::rootless::overlay_options()
    );
    if data.len() > 4000 {
        return Err(format!(
            "{} layers are more than one overlay mount can stack; squash some steps",
            names.len()
        ));
    }
    let data = CString::new(data).map_err(|_| "NUL in overlay options".to_string())?;
    let merged = &spec.merged;
    mount::mount(
        "overlay",
        merged,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(err("mounting the overlay (is overlayfs available?)"))?;
    let _ = rustix::system::sethostname(spec.hostname.as_bytes());

    // A minimal /dev on tmpfs with the host's harmless devices bound in.
    let dev = merged.join("dev");
    std::fs::create_dir_all(&dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    mount::mount(
        "tmpfs",
        &dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"mode=755",
    )
    .map_err(err("mounting /dev"))?;
    for d in DEVICES {
        let target = dev.join(d);
        ensure_file(&target)?;
        let _ = mount::mount_bind(Path::new("/dev").join(d), &target);
    }
    if let Some(script) = &spec.script {
        let p = merged.join(super::SCRIPT_PATH.trim_start_matches('/'));
        std::fs::write(&p, script).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    for dir in ["shm", "pts"] {
        let _ = std::fs::create_dir(dev.join(dir));
    }
    let shm_opts = CString::new(match spec.shm_size {
        Some(n) => format!("mode=1777,size={n}"),
        None => "mode=1777".into(),
    })
    .map_err(|_| "bad --shm-size".to_string())?;
    mount::mount(
        "shm",
        dev.join("shm"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        shm_opts.as_c_str(),
    )
    .map_err(err("mounting /dev/shm"))?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }
    // /sys read-only, the host's name resolution files.
    let sys = merged.join("sys");
    if std::fs::create_dir_all(&sys).is_ok() && mount::mount_bind_recursive("/sys", &sys).is_ok() {
        let _ = mount::mount_remount(&sys, MountFlags::BIND | MountFlags::RDONLY, c"");
    }
    for f in ["etc/resolv.conf", "etc/hosts"] {
        let mut host = Path::new("/").join(f);
        if f == "etc/hosts" && !spec.extra_hosts.is_empty() {
            // The host's file and the --add-host lines, on the sandbox's private tmpfs.
            let text =
                super::hosts_with(std::fs::read(&host).unwrap_or_default(), &spec.extra_hosts);
            host = dev.join(".rbuild-hosts");
            std::fs::write(&host, text).map_err(|e| format!("{}: {e}", host.display()))?;
        }
        let target = merged.join(f);
        if host.is_file() && std::fs::symlink_metadata(&target).map_or(true, |m| m.is_file()) {
            ensure_file(&target)?;
            let _ = mount::mount_bind(&host, &target);
        }
    }
    setup_mounts(&spec, merged, &dev)?;
    let proc_dir = merged.join("proc");
    std::fs::create_dir_all(&proc_dir).map_err(|e| format!("{}: {e}", proc_dir.display()))?;

    // Everything the child needs, prepared before fork (no allocation after it).
    let merged_c = c(merged)?;
    let proc_c = c(&proc_dir)?;
    let cwd_c = CString::new(if spec.cwd.is_empty() {
        "/"
    } else {
        spec.cwd.as_str()
    })
    .map_err(|_| "NUL in WORKDIR".to_string())?;
    let (uid, gid) = (spec.uid, spec.gid);
    let rootless = super::rootless::active();
    let limits = super::limits::prepare(&spec.ulimits);
    let program = spec.argv.first().ok_or("empty command")?.clone();
    let mut cmd = Command::new(&program);
    cmd.args(&spec.argv[1..]).env_clear();
    for kv in &spec.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // SAFETY: the helper is single-threaded, and the closure only makes system calls on
    // data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::process::{chdir, pivot_root, set_parent_process_death_signal, Signal};
            set_parent_process_death_signal(Some(Signal::KILL))?;
            mount::mount(
                c"proc",
                proc_c.as_c_str(),
                c"proc",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                None,
            )?;
            chdir(merged_c.as_c_str())?;
            pivot_root(c".", c".")?;
            mount::unmount(c".", UnmountFlags::DETACH)?;
            chdir(c"/")?;
            chdir(cwd_c.as_c_str())?;
            super::limits::apply(&limits)?;
            if !rootless {
                // setgroups is denied in a user namespace that maps one id.
                rustix::thread::set_thread_groups(&[])?;
            }
            rustix::thread::set_thread_res_gid(
                rustix::fs::Gid::from_raw_unchecked(gid),
                rustix::fs::Gid::from_raw_unchecked(gid),
                rustix::fs::Gid::from_raw_unchecked(gid),
            )?;
            rustix::thread::set_thread_res_uid(
                rustix::fs::Uid::from_raw_unchecked(uid),
                rustix::fs::Uid::from_raw_unchecked(uid),
                rustix::fs::Uid::from_raw_unchecked(uid),
            )?;
            Ok(())
        });
    }
    match cmd.status() {
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt;
            Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("{program}: not found in the image (or the working directory is missing)");
            Ok(127)
        }
        Err(e) => Err(format!("starting {program}: {e}")),
    }
}
