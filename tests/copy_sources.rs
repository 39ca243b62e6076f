//! COPY and ADD sources beyond the plain context: images and stages with base layers (whiteouts
//! applied, names from their /etc/passwd), local archives ADD unpacks, `--exclude`, `--parents`,
//! named links followed inside the stage, and hostile base layers refused.

use std::fs;
use std::io::Write;

use crate::support::layout::{file, write_layout, Item};
use crate::support::{is_root, write, Workspace};

/// A workspace whose Dockerfile is `dockerfile`, with `make_base` writing an OCI layout that
/// the build sees as `base`; returns the `--build-context` value too.
fn with_base(dockerfile: &str, make_base: impl FnOnce(&std::path::Path)) -> (Workspace, String) {
    let ws = Workspace::new();
    let base = ws.tmp.path().join("base");
    make_base(&base);
    write(&ws.ctx(), "Dockerfile", dockerfile);
    let bc = format!("base=oci-layout://{}:v1", base.display());
    (ws, bc)
}

/// A two-layer base: the second deletes a file and makes a directory opaque.
fn base_with_whiteouts(dir: &std::path::Path) {
    write_layout(
        dir,
        "v1",
        &[
            vec![
                Item::Dir("etc"),
                file(
                    "etc/passwd",
                    b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
                ),
                file("etc/group", b"root:x:0:\nstaff:x:50:\n"),
                Item::Dir("data"),
                file("data/keep.txt", b"keep"),
                file("data/gone.txt", b"gone"),
                Item::Dir("cache"),
                file("cache/old", b"old"),
                Item::Symlink("hostetc", "/etc"),
            ],
            vec![
                file("data/.wh.gone.txt", b""),
                Item::Dir("cache"),
                file("cache/.wh..wh..opq", b""),
                file("cache/new", b"new"),
            ],
        ],
    );
}

#[test]
fn copy_from_an_image_sees_its_layers_with_whiteouts_applied() {
    let (ws, bc) = with_base(
        "FROM scratch\nCOPY --from=base /data /data\nCOPY --from=base /cache /cache\n",
        base_with_whiteouts,
    );
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("data/keep.txt")).unwrap(),
        "keep"
    );
    assert!(
        !root.join("data/gone.txt").exists(),
        "whited-out file copied"
    );
    assert_eq!(fs::read_to_string(root.join("cache/new")).unwrap(), "new");
    assert!(
        !root.join("cache/old").exists(),
        "opaque dir leaked a lower file"
    );
}

#[test]
fn symlinks_in_an_image_never_reach_the_host() {
    // /hostetc -> /etc resolves to the image's /etc, which has no `hostname` (the host's has).
    let (ws, bc) = with_base(
        "FROM scratch\nCOPY --from=base /hostetc/hostname /h\n",
        base_with_whiteouts,
    );
    let o = ws.rbuild(&["--build-context", &bc], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not found"), "{err}");
    // ... while the image's own /etc is reachable through the same link.
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY --from=base /hostetc/group /g\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    assert_eq!(
        fs::read_to_string(ws.unpack().join("g")).unwrap(),
        "root:x:0:\nstaff:x:50:\n"
    );
}

#[test]
fn chown_by_name_uses_the_base_images_passwd_and_group() {
    let (ws, bc) = with_base(
        "FROM base\nCOPY --chown=app:staff f.txt /f.txt\nUSER app\nWORKDIR /home/app/work\n",
        base_with_whiteouts,
    );
    write(&ws.ctx(), "f.txt", "x");
    ws.build_ok(&["--build-context", &bc]);
    // Read the owners straight from the layers with GNU tar.
    let layers = ws.layer_listings();
    let copy = &layers[layers.len() - 2];
    assert!(copy.contains("1000/50") && copy.contains("f.txt"), "{copy}");
    let workdir = &layers[layers.len() - 1];
    assert!(
        workdir
            .lines()
            .any(|l| l.contains("1000/1000") && l.contains("home/app/work")),
        "{workdir}"
    );
}

fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o640);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn add_unpacks_local_archives_and_copy_does_not() {
    let ws = Workspace::new();
    let ctx = ws.ctx();
    fs::create_dir_all(&ctx).unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&tar_with("from-gz.txt", b"gz")).unwrap();
        e.finish().unwrap()
    };
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(6));
        e.write_all(&tar_with("from-bz2.txt", b"bz2")).unwrap();
        e.finish().unwrap()
    };
    let xz = {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(&tar_with("from-xz.txt", b"xz")).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&tar_with("from-zst.txt", b"zst")[..], 3).unwrap();
    fs::write(ctx.join("a.tar.gz"), &gz).unwrap();
    fs::write(ctx.join("b.tar.bz2"), &bz).unwrap();
    fs::write(ctx.join("c.tar.xz"), &xz).unwrap();
    fs::write(ctx.join("d.tar.zst"), &zst).unwrap();
    fs::write(ctx.join("e.tar"), tar_with("from-tar.txt", b"tar")).unwrap();
    let notatar = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(b"just text").unwrap();
        e.finish().unwrap()
    };
    fs::write(ctx.join("notes.gz"), &notatar).unwrap();
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nADD a.tar.gz b.tar.bz2 c.tar.xz d.tar.zst e.tar /x/\nADD notes.gz /y/\nCOPY a.tar.gz /z/\nADD --unpack=false e.tar /w/\n",
    );
    ws.build_ok(&[]);
    let root = ws.unpack();
    for (f, want) in [
        ("from-gz.txt", "gz"),
        ("from-bz2.txt", "bz2"),
        ("from-xz.txt", "xz"),
        ("from-zst.txt", "zst"),
        ("from-tar.txt", "tar"),
    ] {
        assert_eq!(
            fs::read_to_string(root.join("x").join(f)).unwrap(),
            want,
            "{f}"
        );
    }
    assert_eq!(fs::read(root.join("y/notes.gz")).unwrap(), notatar);
    assert_eq!(fs::read(root.join("z/a.tar.gz")).unwrap(), gz);
    assert!(root.join("w/e.tar").is_file());
}

#[test]
fn exclude_and_parents_shape_what_is_copied() {
    let ws = Workspace::new();
    let ctx = ws.ctx();
    for f in [
        "src/a.md",
        "src/a.rs",
        "src/sub/b.md",
        "src/sub/b.rs",
        "docs/c/d.txt",
    ] {
        write(&ctx, f, f);
    }
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\n\
         COPY --exclude=*.md src /e/\n\
         COPY --exclude=**/*.md src /e2/\n\
         COPY --parents docs/c/d.txt /p/\n\
         COPY --parents ./docs/./c/d.txt /q/\n",
    );
    ws.build_ok(&[]);
    let root = ws.unpack();
    assert!(root.join("e/a.rs").is_file());
    assert!(!root.join("e/a.md").exists());
    assert!(
        root.join("e/sub/b.md").is_file(),
        "*.md matches one level only"
    );
    assert!(root.join("e2/sub/b.rs").is_file());
    assert!(!root.join("e2/sub/b.md").exists());
    assert_eq!(
        fs::read_to_string(root.join("p/docs/c/d.txt")).unwrap(),
        "docs/c/d.txt"
    );
    assert_eq!(
        fs::read_to_string(root.join("q/c/d.txt")).unwrap(),
        "docs/c/d.txt"
    );
}

#[test]
fn hostile_base_layers_are_refused_and_name_the_layer() {
    let (ws, bc) = with_base("FROM scratch\nCOPY --from=base /ok /ok\n", |b| {
        write_layout(
            b,
            "v1",
            &[vec![file("ok", b"1"), file("../../escaped-by-layer", b"x")]],
        );
    });
    let o = ws.rbuild(&["--build-context", &bc], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("sha256:")
            && err.contains("../../escaped-by-layer")
            && err.contains("refused"),
        "{err}"
    );
    assert!(!ws.tmp.path().join("escaped-by-layer").exists());
    assert!(!ws
        .tmp
        .path()
        .parent()
        .unwrap()
        .join("escaped-by-layer")
        .exists());
    let _ = is_root();
}

#[test]
fn existing_directories_keep_their_mode_and_owner() {
    let (ws, bc) = with_base(
        "FROM base\nCOPY x.txt /tmp/\nWORKDIR /opt\nWORKDIR /opt/new\n",
        |b| {
            let dirs = vec![
                Item::DirWith("tmp", 0o1777, 0, 0),
                Item::DirWith("opt", 0o750, 1000, 1000),
            ];
            write_layout(b, "v1", &[dirs]);
        },
    );
    write(&ws.ctx(), "x.txt", "x");
    ws.build_ok(&["--build-context", &bc]);
    // The COPY layer holds the file and /tmp as the base has it (so an overlay of the layer
    // keeps /tmp's mode for later RUNs); WORKDIR /opt made no layer; /opt/new did, with /opt
    // as the base has it.
    let layers = ws.layer_listings();
    assert_eq!(
        layers.len(),
        3,
        "base + COPY + WORKDIR /opt/new: {layers:?}"
    );
    let names = |l: &str| {
        l.lines()
            .map(|x| x.rsplit(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&layers[1]), ["tmp/", "tmp/x.txt"]);
    assert!(layers[1].starts_with("drwxrwxrwt 0/0"), "{}", layers[1]);
    assert_eq!(names(&layers[2]), ["opt/", "opt/new/"]);
    assert!(
        layers[2].starts_with("drwxr-x--- 1000/1000"),
        "{}",
        layers[2]
    );
    if is_root() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = ws.unpack();
        assert_eq!(
            fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
            0o1777
        );
        assert_eq!(fs::metadata(root.join("opt")).unwrap().uid(), 1000);
    }
}

#[test]
fn a_named_link_from_an_earlier_stage_copies_what_it_points_to() {
    // The shared-library case: libfoo.so -> libfoo.so.1 (relative), and an absolute link.
    let ws = Workspace::new();
    write(&ws.ctx(), "lib/libfoo.so.1", "ELF\n");
    std::os::unix::fs::symlink("libfoo.so.1", ws.ctx().join("lib/libfoo.so")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/libfoo.so", ws.ctx().join("lib/abs")).unwrap();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch AS libs\nCOPY lib/ /usr/lib/\n\
         FROM scratch\nCOPY --from=libs /usr/lib/libfoo.so /out/\n\
         COPY --from=libs /usr/lib/abs /out/abs.so\nCOPY --from=libs /usr/lib/ /all/\n",
    );
    ws.build_ok(&[]);
    let root = ws.unpack();
    for f in ["out/libfoo.so", "out/abs.so"] {
        let m = fs::symlink_metadata(root.join(f)).unwrap();
        assert!(m.is_file(), "{f} is not a regular file");
        assert_eq!(fs::read_to_string(root.join(f)).unwrap(), "ELF\n");
    }
    // Copying the directory keeps the links as links.
    assert_eq!(
        fs::read_link(root.join("all/libfoo.so")).unwrap(),
        std::path::Path::new("libfoo.so.1")
    );
}

#[test]
fn copy_into_a_symlinked_directory_of_the_base_follows_the_link() {
    // Merged-/usr bases (Debian 12, Fedora): /lib -> usr/lib, /var/run -> /run.
    let (ws, bc) = with_base(
        "FROM base\nCOPY x.txt /lib/x.txt\nCOPY x.txt /var/run/app/\nCOPY d/ /lib/sub/\n",
        |dir| {
            write_layout(
                dir,
                "v1",
                &[vec![
                    Item::Dir("usr"),
                    Item::Dir("usr/lib"),
                    file("usr/lib/libc.so", b"libc"),
                    Item::Symlink("lib", "usr/lib"),
                    Item::Dir("run"),
                    Item::Dir("var"),
                    Item::Symlink("var/run", "/run"),
                ]],
            );
        },
    );
    write(&ws.ctx(), "x.txt", "x");
    write(&ws.ctx(), "d/y.txt", "y");
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    for link in ["lib", "var/run"] {
        let m = fs::symlink_metadata(root.join(link)).unwrap();
        assert!(m.file_type().is_symlink(), "/{link} is no longer a symlink");
    }
    assert_eq!(fs::read_to_string(root.join("usr/lib/x.txt")).unwrap(), "x");
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/libc.so")).unwrap(),
        "libc"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/sub/y.txt")).unwrap(),
        "y"
    );
    assert_eq!(fs::read_to_string(root.join("run/app/x.txt")).unwrap(), "x");
}
