//! RUN as an ordinary user (uid 65534 here): rbuild enters a user namespace of its own, RUN
//! works over overlay with `userxattr` (whiteouts and opaque directories included), layers
//! keep the ownership the Dockerfile asks for, the image runs under runc, and what cannot work
//! without subordinate ids says so.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{write, Workspace};

const NOBODY: &str = "65534";

/// Runs rbuild as uid/gid 65534 on the workspace (made reachable for that user).
fn rbuild_as_nobody(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let out = ws.out();
    for p in [
        ws.tmp.path().to_path_buf(),
        ws.ctx(),
        ws.store(),
        out.clone(),
    ] {
        std::fs::create_dir_all(&p).unwrap();
    }
    std::fs::set_permissions(ws.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in [ws.ctx(), ws.store(), out, ws.tmp.path().join("busybox")] {
        chown_tree(&p);
    }
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        env!("CARGO_BIN_EXE_rbuild"),
    ])
    .args(args)
    .args([
        "--root",
        ws.store().to_str().unwrap(),
        ws.ctx().to_str().unwrap(),
    ])
    .env("HOME", ws.tmp.path());
    cmd.output().expect("setpriv runs")
}

fn chown_tree(p: &Path) {
    if !p.exists() {
        return;
    }
    let o = std::process::Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}"), p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn an_ordinary_user_builds_with_run_and_the_image_runs() {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(&ws.ctx(), "app.txt", "app\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\n\
         RUN mkdir -p /opt/app /opt/x/y && echo hi > /opt/app/greeting && echo z > /opt/x/y/z && rm /etc/removeme && id -u > /opt/app/uid\n\
         RUN rm /opt/app/greeting && rm -rf /opt/x && mkdir /opt/x && echo new > /opt/x/new\n\
         COPY --chown=1000:1000 app.txt /home/app/\n\
         CMD [\"cat\", \"/opt/app/uid\"]\n",
    );
    let o = rbuild_as_nobody(
        &ws,
        &[
            "--build-context",
            &bc,
            "-t",
            "app:v1",
            "-o",
            &ws.oci_output(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The store is the user's.
    let meta = std::fs::metadata(ws.store().join("blobs")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    let root = ws.unpack();
    assert!(!root.join("opt/app/greeting").exists());
    assert!(!root.join("etc/removeme").exists());
    assert!(
        !root.join("opt/x/y").exists(),
        "opaque directory replaced the old one"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/x/new")).unwrap(),
        "new\n"
    );
    let app = std::fs::metadata(root.join("home/app/app.txt")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&app), 1000);
    let (_, stdout) = ws.runc_run();
    assert_eq!(stdout, "0\n", "RUN ran as root inside its user namespace");
}

/// Adds a subordinate id range for uid 65534 to /etc/subuid and /etc/subgid; restores both
/// files on drop.
struct SubIds(Vec<(&'static str, String)>);

impl SubIds {
    fn add() -> SubIds {
        let saved = ["/etc/subuid", "/etc/subgid"]
            .into_iter()
            .map(|f| (f, std::fs::read_to_string(f).unwrap_or_default()))
            .collect::<Vec<_>>();
        for (f, old) in &saved {
            std::fs::write(f, format!("{old}{NOBODY}:300000:65536\n")).unwrap();
        }
        SubIds(saved)
    }
}

impl Drop for SubIds {
    fn drop(&mut self) {
        for (f, old) in &self.0 {
            let _ = std::fs::write(f, old);
        }
    }
}

/// Both cases in one test: /etc/subuid is global, and the first case needs it without the
/// range.
#[test]
fn run_as_another_user_needs_subordinate_ids_and_works_with_them() {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nUSER app\nRUN id -u > /tmp/who && ls -ln /etc/passwd > /tmp/passwd-owner\n\
         USER root\nRUN mkdir /data && chown 1000:1000 /data\n",
    );
    let o = rbuild_as_nobody(&ws, &["--build-context", &bc]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("Dockerfile:3") && err.contains("/etc/subuid"),
        "{err}"
    );
    let _ids = SubIds::add();
    let o = rbuild_as_nobody(
        &ws,
        &[
            "--build-context",
            &bc,
            "-t",
            "app:v1",
            "-o",
            &ws.oci_output(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = ws.unpack();
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/who")).unwrap(),
        "1000\n"
    );
    let owner = std::fs::read_to_string(root.join("tmp/passwd-owner")).unwrap();
    assert!(
        owner.contains(" 0 ") && owner.contains(" 0 "),
        "base files keep root as owner: {owner}"
    );
    let data = std::fs::metadata(root.join("data")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&data), 1000);
}

/// A base layer with a device node (here /dev/mem's numbers): an ordinary user cannot make
/// one, so it is skipped, and the image built from it holds none.
#[test]
fn device_nodes_in_a_base_are_skipped_for_an_ordinary_user() {
    use crate::support::layout::{gzip_layer, write_layout_raw};
    let ws = Workspace::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o666);
    h.set_size(0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(1).unwrap();
    h.set_path("mem").unwrap();
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_entry_type(tar::EntryType::Regular);
    f.set_mode(0o644);
    f.set_size(3);
    f.set_path("ok.txt").unwrap();
    f.set_cksum();
    b.append(&f, &b"ok\n"[..]).unwrap();
    let base = ws.tmp.path().join("devbase");
    write_layout_raw(&base, "v1", &[gzip_layer(&b.into_inner().unwrap())]);
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY --from=base / /x/\n",
    );
    let bc = format!("base=oci-layout://{}:v1", base.display());
    let o = rbuild_as_nobody(
        &ws,
        &[
            "--build-context",
            &bc,
            "-t",
            "app:v1",
            "-o",
            &ws.oci_output(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listing = ws.layer_listings().join("\n");
    assert!(listing.contains("x/ok.txt"), "{listing}");
    assert!(
        !listing.contains("x/mem") && !listing.lines().any(|l| l.starts_with('c')),
        "a device node reached the image: {listing}"
    );
}
