//! RUN: commands run as root in namespaces over an overlay of the stage's filesystem; what
//! they change (whiteouts included) becomes the layer; ENV, ARG, USER, WORKDIR and
//! `--network=none` apply; failures show the command, its exit code and its last output.

use std::fs;

use crate::support::{is_root, write, Workspace};

fn with_busybox(dockerfile: &str) -> (Workspace, String) {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(&ws.ctx(), "Dockerfile", dockerfile);
    (ws, bc)
}

#[test]
fn run_changes_become_a_layer_with_whiteouts() {
    assert!(is_root(), "RUN tests need root (CI runs as root)");
    let (ws, bc) = with_busybox(
        "FROM base\nRUN echo hello > /greeting && mkdir -p /app/data && rm /etc/removeme\nRUN [\"/bin/sh\", \"-c\", \"hostname > /app/host\"]\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("greeting")).unwrap(),
        "hello\n"
    );
    assert!(root.join("app/data").is_dir());
    assert!(
        !root.join("etc/removeme").exists(),
        "the whiteout deletes the base's file"
    );
    assert!(root.join("etc/passwd").exists());
    assert_eq!(
        fs::read_to_string(root.join("app/host")).unwrap().trim(),
        "rbuild"
    );
    // Mount points the sandbox used do not leak into layers.
    let layers = ws.layer_listings();
    assert!(
        !layers[1].contains("resolv.conf") && !layers[1].contains(" dev/"),
        "{}",
        layers[1]
    );
    assert!(layers[1].contains(".wh.removeme"), "{}", layers[1]);
}

#[test]
fn run_sees_env_args_user_and_workdir() {
    let (ws, bc) = with_busybox(
        "FROM base\nARG GREETING=hi\nENV TARGET=world\nWORKDIR /work\nRUN chmod 777 /work\nUSER app\nRUN echo \"$GREETING $TARGET $(id -u) $(pwd)\" > out.txt\n",
    );
    ws.build_ok(&["--build-context", &bc, "--build-arg", "GREETING=hello"]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("work/out.txt")).unwrap(),
        "hello world 1000 /work\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(root.join("work/out.txt")).unwrap().uid(), 1000);
}

#[test]
fn failing_run_shows_the_command_exit_code_and_output() {
    let (ws, bc) = with_busybox("FROM base\nRUN echo step-output-line && exit 7\n");
    let o = ws.rbuild(&["--build-context", &bc], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Dockerfile:2")
            && err.contains("exited with code 7")
            && err.contains("step-output-line"),
        "{err}"
    );
    let (ws, bc) = with_busybox("FROM base\nRUN [\"/no/such/program\"]\n");
    let err =
        String::from_utf8_lossy(&ws.rbuild(&["--build-context", &bc], &[]).stderr).into_owned();
    assert!(
        err.contains("code 127") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn network_none_leaves_only_loopback() {
    let (ws, bc) = with_busybox("FROM base\nRUN --network=none cat /proc/net/dev > /netdev\n");
    ws.build_ok(&["--build-context", &bc]);
    let netdev = fs::read_to_string(ws.unpack().join("netdev")).unwrap();
    assert_eq!(interfaces(&netdev), ["lo"], "{netdev}");
}

/// Each `flag value` is a usage error (exit 2) that echoes the value and gives a hint.
fn refused_as_usage(ws: &Workspace, bc: &str, cases: &[(&str, &str)]) {
    for (flag, value) in cases {
        let o = ws.rbuild(&["--build-context", bc, flag, value], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(value) && err.contains("hint:"),
            "{flag} {value}: {err}"
        );
    }
}

/// The interface names in a copy of `/proc/net/dev`.
fn interfaces(netdev: &str) -> Vec<String> {
    netdev
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn build_flags_network_and_add_host_apply_to_every_run_like_docker_build() {
    let (ws, bc) = with_busybox(
        "FROM base\nRUN cat /proc/net/dev > /netdev && cat /etc/hosts > /hosts\nRUN --network=host cat /proc/net/dev > /netdev-host\n",
    );
    let flags = [
        "--build-context",
        &bc,
        "--network",
        "none",
        "--add-host",
        "db.local:10.1.2.3",
        "--add-host",
        "v6.local=fd00::1",
    ];
    ws.build_ok(&flags);
    let root = ws.unpack();
    let netdev = fs::read_to_string(root.join("netdev")).unwrap();
    assert_eq!(interfaces(&netdev), ["lo"], "{netdev}");
    // A RUN's own --network wins over the build's.
    let host = fs::read_to_string(root.join("netdev-host")).unwrap();
    let machine = fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(interfaces(&host), interfaces(&machine), "{host}");
    let hosts = fs::read_to_string(root.join("hosts")).unwrap();
    assert!(hosts.lines().any(|l| l == "10.1.2.3\tdb.local"), "{hosts}");
    assert!(hosts.lines().any(|l| l == "fd00::1\tv6.local"), "{hosts}");
    // The image's /etc/hosts is the base's, not the build's.
    let listing = ws.layer_listings().join("");
    assert!(!listing.contains("etc/hosts"), "{listing}");

    // Another --add-host is another RUN: not a cache hit.
    let o = ws.build_ok(&[&flags[..6], &["--add-host", "db.local:10.9.9.9"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("miss: build settings changed"), "{err}");
    let hosts = fs::read_to_string(ws.unpack().join("hosts")).unwrap();
    assert!(hosts.lines().any(|l| l == "10.9.9.9\tdb.local"), "{hosts}");

    refused_as_usage(
        &ws,
        &bc,
        &[
            ("--add-host", "db.local"),
            ("--add-host", "db.local:not-an-ip"),
            ("--add-host", "db.local:host-gateway"),
            ("--network", "bridge"),
        ],
    );
}

#[test]
fn run_output_flows_into_later_stages() {
    let (ws, bc) = with_busybox(
        "FROM base AS build\nRUN mkdir /out && echo built > /out/artifact\nCOPY Dockerfile /out/\nRUN wc -l /out/Dockerfile > /out/lines\n\nFROM scratch\nCOPY --from=build /out/ /\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("artifact")).unwrap(),
        "built\n"
    );
    assert!(fs::read_to_string(root.join("lines"))
        .unwrap()
        .starts_with("7 "));
}

#[test]
fn runs_stack_on_earlier_runs_copies_and_deletions() {
    let (ws, bc) = with_busybox(
        "FROM base\n\
         RUN mkdir -p /d && echo old > /d/old && echo x > /d/linked && ln /d/linked /d/hard\n\
         RUN rm -rf /d && mkdir /d && echo new > /d/new && rm /etc/removeme\n\
         COPY Dockerfile /d/copied\n\
         RUN ls /d > /listing && (test -e /etc/removeme && echo present || echo absent) > /state\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("listing")).unwrap(),
        "copied\nnew\n"
    );
    assert_eq!(fs::read_to_string(root.join("state")).unwrap(), "absent\n");
    let mut names: Vec<String> = fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["copied", "new"],
        "the replaced directory is opaque in the image too"
    );
    // The first RUN's hard link is a link in its layer.
    let layers = ws.layer_listings();
    assert!(layers[1].lines().any(|l| l.contains("d/hard link to d/linked") || l.contains("d/linked link to d/hard")), "{}", layers[1]);
    assert!(layers[2].contains(".wh..wh..opq"), "{}", layers[2]);
}

#[test]
fn heredoc_runs_like_buildkit() {
    let (ws, bc) = with_busybox(
        "FROM base\n\
         RUN <<EOF\n\
         echo one > /h1\n\
         echo two >> /h1\n\
         EOF\n\
         RUN <<EOF\n\
         #!/bin/sh -e\n\
         echo \"from a script run by $0\" > /h2\n\
         EOF\n\
         RUN cat > /h3 <<EOF\n\
         inline body\n\
         EOF\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    assert_eq!(fs::read_to_string(root.join("h1")).unwrap(), "one\ntwo\n");
    assert_eq!(
        fs::read_to_string(root.join("h2")).unwrap(),
        "from a script run by /dev/.rbuild-heredoc\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("h3")).unwrap(),
        "inline body\n"
    );
    assert!(!ws
        .layer_listings()
        .iter()
        .any(|l| l.contains("rbuild-heredoc")));
}

#[test]
fn a_copy_into_an_existing_directory_keeps_its_mode_for_later_runs() {
    // /tmp is 1777 in the base; the COPY layer must not make it look 0755 to the RUN after it
    // (the layer carries /tmp with the base's metadata, as BuildKit's do).
    let (ws, bc) = with_busybox(
        "FROM base\nCOPY Dockerfile /tmp/copied\nUSER app\nRUN touch /tmp/by-app && ls -ld /tmp > /tmp/mode\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    assert!(root.join("tmp/by-app").exists());
    let mode = fs::read_to_string(root.join("tmp/mode")).unwrap();
    assert!(mode.starts_with("drwxrwxrwt"), "{mode}");
}

#[test]
fn a_run_after_a_copy_sees_exactly_what_the_layer_holds() {
    // The RUN's view of a layer this build just wrote is made from the copied files, not
    // from the blob: it must match the layer as any tool unpacks it.
    use std::os::unix::fs::PermissionsExt;
    let (ws, bc) = with_busybox(
        "FROM base\n\
         COPY data /data\n\
         COPY --chown=1000:1000 --chmod=0751 data/tool /data/owned-tool\n\
         RUN find /data | sort | xargs stat -c '%n %a %u %g %s %Y %F' > /listing\n",
    );
    write(&ws.ctx(), "data/a.txt", "a\n");
    write(&ws.ctx(), "data/sub/b.txt", "bb\n");
    write(&ws.ctx(), "data/tool", "#!/bin/sh\n");
    fs::set_permissions(
        ws.ctx().join("data/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::set_permissions(ws.ctx().join("data/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("a.txt", ws.ctx().join("data/link")).unwrap();
    fs::hard_link(ws.ctx().join("data/a.txt"), ws.ctx().join("data/hard")).unwrap();
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    let inside = fs::read_to_string(root.join("listing")).unwrap();
    let mut outside = String::new();
    let mut paths: Vec<_> = walkdir::WalkDir::new(root.join("data"))
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .collect();
    paths.sort();
    for p in paths {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(&p).unwrap();
        let kind = if m.file_type().is_symlink() {
            "symbolic link"
        } else if m.is_dir() {
            "directory"
        } else {
            "regular file"
        };
        outside.push_str(&format!(
            "/{} {:o} {} {} {} {} {kind}\n",
            p.strip_prefix(&root).unwrap().display(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime()
        ));
    }
    // Directory sizes differ between filesystems, and a directory's mtime after unpacking
    // depends on whether the unpacker restores it after writing into it (umoci does not for
    // a directory a later layer adds to): compare the rest.
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                if l.ends_with("directory") {
                    format!("{} {} {} {}", f[0], f[1], f[2], f[3])
                } else {
                    l.to_string()
                }
            })
            .collect()
    };
    assert_eq!(strip(&inside), strip(&outside));
    assert!(
        inside.contains("/data/owned-tool 751 1000 1000"),
        "{inside}"
    );
    assert!(inside.contains("/data/tool 4755 0 0"), "{inside}");
}

#[test]
fn fifos_and_device_nodes_are_kept_in_layers_as_buildkit_keeps_them() {
    assert!(is_root(), "RUN tests need root (CI runs as root)");
    let (ws, bc) = with_busybox(
        "FROM base\nCOPY pipe /ctx-pipe\nRUN mkfifo /run-pipe && mknod /null2 c 1 3 && mknod /loop9 b 7 9\nRUN test -p /run-pipe && test -c /null2 && echo ok > /seen\n",
    );
    rustix::fs::mknodat(
        rustix::fs::CWD,
        ws.ctx().join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from(0o640),
        0,
    )
    .unwrap();
    ws.build_ok(&["--build-context", &bc]);
    let layers = ws.layer_listings().join("");
    for (kind, name) in [
        ('p', "ctx-pipe"),
        ('p', "run-pipe"),
        ('c', "null2"),
        ('b', "loop9"),
    ] {
        assert!(
            layers
                .lines()
                .any(|l| l.starts_with(kind) && l.ends_with(&format!(" {name}"))),
            "{name} is not a {kind} entry:\n{layers}"
        );
    }
    assert!(layers.contains("1,3"), "null2 keeps its numbers:\n{layers}");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let root = ws.unpack();
    assert_eq!(fs::read_to_string(root.join("seen")).unwrap(), "ok\n");
    let null2 = fs::symlink_metadata(root.join("null2")).unwrap();
    assert!(null2.file_type().is_char_device());
    assert_eq!(null2.rdev(), rustix::fs::makedev(1, 3));
    let pipe = fs::symlink_metadata(root.join("ctx-pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o777, 0o640);
}

#[test]
fn ulimit_and_shm_size_apply_to_every_run_like_docker_build() {
    let (ws, bc) = with_busybox(
        "FROM base\nRUN ulimit -n > /nofile && ulimit -Hn > /nofile-hard && cat /proc/mounts > /mounts\n",
    );
    let flags = [
        "--build-context",
        &bc,
        "--ulimit",
        "nofile=1024:2048",
        "--shm-size",
        "64m",
    ];
    ws.build_ok(&flags);
    let root = ws.unpack();
    assert_eq!(fs::read_to_string(root.join("nofile")).unwrap(), "1024\n");
    assert_eq!(
        fs::read_to_string(root.join("nofile-hard")).unwrap(),
        "2048\n"
    );
    let mounts = fs::read_to_string(root.join("mounts")).unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /dev/shm tmpfs ") && l.contains("size=65536k")),
        "{mounts}"
    );
    // Other limits are another RUN.
    let o = ws.build_ok(&[&flags[..2], &["--ulimit", "nofile=512:512"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("miss: build settings changed"), "{err}");
    assert_eq!(
        fs::read_to_string(ws.unpack().join("nofile")).unwrap(),
        "512\n"
    );
    refused_as_usage(
        &ws,
        &bc,
        &[
            ("--ulimit", "files=10"),
            ("--ulimit", "nofile=2048:1024"),
            ("--shm-size", "lots"),
        ],
    );
}
