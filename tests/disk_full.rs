//! A disk that fills up during a build: a clear error naming what could not be written and
//! where, nothing half-committed in the store, and the next build (with room) works.

use std::fs;
use std::process::Command;

use crate::support::{is_root, noise, write, Workspace};

/// Unmounts on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_build_clearly_and_damages_nothing() {
    if !is_root() {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root: this test mounts a small tmpfs"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let ws = Workspace::new();
    let small = ws.tmp.path().join("small");
    fs::create_dir_all(&small).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _guard = Tmpfs(small.clone());
    let store = small.join("store");
    // 48 MB that do not compress: the layer cannot fit.
    let data = noise(99, 48 << 20);
    fs::create_dir_all(ws.ctx()).unwrap();
    fs::write(ws.ctx().join("big.bin"), &data).unwrap();
    write(&ws.ctx(), "small.txt", "small\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY small.txt /\nCOPY big.bin /\n",
    );
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--root", store.to_str().unwrap()]);
        crate::support::rbuild(&all, &[])
    };
    let ctx = ws.ctx();
    let o = run(&["build", "-t", "app:v1", ctx.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains(store.to_str().unwrap()),
        "the error names the cause and the place: {err}"
    );
    assert!(err.contains("hint:"), "{err}");
    // Nothing half-committed: every blob whole, no tag for the failed build.
    let check = run(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let images = String::from_utf8_lossy(&run(&["images"]).stdout).into_owned();
    assert!(!images.contains("app"), "{images}");
    // With the big file gone, the same store builds.
    fs::remove_file(ws.ctx().join("big.bin")).unwrap();
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY small.txt /\n");
    let o = run(&["build", "-t", "app:v1", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
