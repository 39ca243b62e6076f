//! RUN where namespaces and mounts are forbidden — the kaniko case: uid 0 with Docker's
//! default capabilities (no CAP_SYS_ADMIN), as in an unprivileged Kubernetes pod. rbuild
//! notices, says so, runs RUN chroot'ed with a before/after tree comparison, and the image
//! holds the same files as with namespaces; `umoci` unpacks it and `runc` runs it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::{write, Workspace};

/// Docker's default capability set (moby's `oci/caps/defaults.go`).
const DOCKER_DEFAULT_CAPS: &str = "-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap";

const DOCKERFILE: &str = "FROM base\n\
RUN mkdir -p /data/dir /data/gone /data/becomes-file && echo keep > /data/keep && echo old > /data/edit && echo x > /data/gone/f && echo y > /data/becomes-file/inner && rm /etc/removeme\n\
RUN echo new > /data/edit && rm -rf /data/gone /data/becomes-file && echo now-a-file > /data/becomes-file && ln /data/keep /data/hard && ln -s keep /data/soft && chmod 0751 /data/dir && chown 1000:1000 /data/dir\n\
USER 1000\n\
RUN id -u > /data/dir/whoami\n\
CMD [\"cat\", \"/data/dir/whoami\"]\n";

/// Runs rbuild as a pod would: Docker's default capabilities only.
fn rbuild_in_pod(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let root = ws.store();
    let ctx = ws.ctx();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        &format!("--bounding-set={DOCKER_DEFAULT_CAPS}"),
        "--inh-caps=-all",
        env!("CARGO_BIN_EXE_rbuild"),
    ])
    .args(args)
    .args(["--root", root.to_str().unwrap(), ctx.to_str().unwrap()]);
    cmd.output().expect("setpriv (util-linux) runs")
}

fn setup() -> (Workspace, String) {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(&ws.ctx(), "Dockerfile", DOCKERFILE);
    (ws, bc)
}

/// Path → (type, mode, owner, content or target) for every file under a root.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("-> {}", fs::read_link(e.path()).unwrap().display())
        } else if m.is_file() {
            format!(
                "{:?} nlink={}",
                fs::read(e.path()).unwrap().len(),
                m.nlink()
            )
        } else {
            "dir".into()
        };
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        out.push((
            rel,
            format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
        ));
    }
    out
}

#[test]
fn run_in_an_unprivileged_pod_uses_chroot_and_the_image_runs() {
    let (ws, bc) = setup();
    let out = ws.oci_output();
    let o = rbuild_in_pod(
        &ws,
        &[
            "--build-context",
            &bc,
            "-t",
            "app:v1",
            "-o",
            &out,
            "--progress",
            "plain",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("note: RUN isolation: chroot"), "{err}");
    let root = ws.unpack();
    assert_eq!(fs::read_to_string(root.join("data/edit")).unwrap(), "new\n");
    assert!(
        !root.join("data/gone").exists(),
        "deleted directory whited out"
    );
    assert!(
        !root.join("etc/removeme").exists(),
        "deleted base file whited out"
    );
    assert!(root.join("data/becomes-file").is_file());
    assert_eq!(
        fs::read_link(root.join("data/soft")).unwrap(),
        Path::new("keep")
    );
    assert_eq!(
        fs::metadata(root.join("data/hard")).unwrap().ino(),
        fs::metadata(root.join("data/keep")).unwrap().ino()
    );
    let dir = fs::metadata(root.join("data/dir")).unwrap();
    assert_eq!((dir.mode() & 0o7777, dir.uid()), (0o751, 1000));
    let (_, stdout) = ws.runc_run();
    assert_eq!(stdout, "1000\n", "CMD ran as the image's USER");
}

#[test]
fn chroot_and_namespace_isolation_make_the_same_files() {
    let (ws, bc) = setup();
    ws.build_ok(&["--build-context", &bc, "--isolation", "chroot"]);
    let chroot = tree(&ws.unpack());
    ws.build_ok(&[
        "--build-context",
        &bc,
        "--isolation",
        "namespaces",
        "--no-cache",
    ]);
    let namespaces = tree(&ws.unpack());
    assert_eq!(chroot, namespaces);
}

#[test]
fn what_chroot_mode_cannot_do_is_refused_clearly() {
    let (ws, bc) = setup();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nRUN --mount=type=cache,target=/c true\n",
    );
    let o = rbuild_in_pod(&ws, &["--build-context", &bc]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("Dockerfile:2") && err.contains("CAP_SYS_ADMIN"),
        "{err}"
    );
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nRUN echo failing && exit 3\n",
    );
    let o = rbuild_in_pod(&ws, &["--build-context", &bc]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exited with code 3") && err.contains("failing"),
        "{err}"
    );
    // Nothing was left behind in the store's scratch space.
    let tmp = ws.store().join("tmp");
    assert_eq!(fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn add_host_and_ulimit_reach_chroot_runs_and_what_needs_namespaces_is_refused() {
    let (ws, bc) = setup();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nRUN cat /etc/hosts > /hosts-copy && ulimit -n > /nofile\n",
    );
    let flags = ["--build-context", &bc, "--isolation", "chroot"];
    ws.build_ok(
        &[
            &flags[..],
            &["--add-host", "db.local:10.1.2.3", "--ulimit", "nofile=1000"],
        ]
        .concat(),
    );
    let root = ws.unpack();
    assert_eq!(fs::read_to_string(root.join("nofile")).unwrap(), "1000\n");
    let hosts = fs::read_to_string(root.join("hosts-copy")).unwrap();
    assert!(hosts.lines().any(|l| l == "10.1.2.3\tdb.local"), "{hosts}");
    // The host's /etc/hosts is put back, and the layer does not hold it.
    assert!(!fs::read_to_string("/etc/hosts")
        .unwrap()
        .contains("db.local"));
    assert!(!ws.layer_listings().join("").contains("etc/hosts"));
    let o = ws.rbuild(&[&flags[..], &["--network", "none"]].concat(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("Dockerfile:2")
            && err.contains("--network=none")
            && err.contains("CAP_SYS_ADMIN"),
        "{err}"
    );
}
