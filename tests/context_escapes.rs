//! The build context is a boundary: `.dockerignore` rules always apply (an unreadable file stops
//! the build rather than letting excluded files in), symlinks in it are copied as symlinks and never followed
//! out of it, a source naming a link is followed inside it only (as BuildKit does), `COPY ../x`
//! and paths through outward symlinks find nothing, and
//! `RUN --mount=type=bind` sources cannot reach outside the context (the class of bug behind
//! buildah's RUN --mount escapes).

use std::fs;
use std::os::unix::fs::symlink;

use crate::support::{write, Workspace};

const SECRET: &str = "OUTSIDE-THE-CONTEXT-7f3a";

/// A workspace whose context holds symlinks to a directory and a file outside it.
fn setup() -> (Workspace, std::path::PathBuf) {
    let ws = Workspace::new();
    let outside = ws.tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret.txt"), SECRET).unwrap();
    fs::create_dir_all(ws.ctx()).unwrap();
    symlink(&outside, ws.ctx().join("dir-out")).unwrap();
    symlink(outside.join("secret.txt"), ws.ctx().join("file-out")).unwrap();
    symlink("../outside/secret.txt", ws.ctx().join("rel-out")).unwrap();
    write(&ws.ctx(), "inside.txt", "inside\n");
    (ws, outside)
}

/// Every file's content in every layer of the output image, concatenated.
fn all_layer_contents(ws: &Workspace) -> String {
    let mut all = String::new();
    for d in fs::read_dir(ws.out().join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let o = std::process::Command::new("tar")
            .args(["-xzOf"])
            .arg(d.path())
            .output()
            .unwrap();
        all.push_str(&String::from_utf8_lossy(&o.stdout));
        all.push_str(&String::from_utf8_lossy(&fs::read(d.path()).unwrap()));
    }
    all
}

#[test]
fn symlinks_in_the_context_are_copied_as_links_and_never_followed() {
    let (ws, outside) = setup();
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY . /app/\n");
    ws.build_ok(&[]);
    let listing = ws.layer_listings().join("\n");
    for (name, target) in [
        ("app/dir-out", outside.display().to_string()),
        (
            "app/file-out",
            outside.join("secret.txt").display().to_string(),
        ),
        ("app/rel-out", "../outside/secret.txt".to_string()),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with('l') && l.ends_with(&format!("{name} -> {target}"))),
            "{name} is not a symlink to {target}:\n{listing}"
        );
    }
    assert!(!all_layer_contents(&ws).contains(SECRET));
}

#[test]
fn paths_that_leave_the_context_find_nothing() {
    // A source naming a link is followed the way BuildKit does, as if the context were `/`:
    // the absolute and the `../` link both land inside the context, where nothing is.
    for (source, expect) in [
        ("../outside/secret.txt", "outside"),
        ("dir-out/secret.txt", "not found"),
        ("file-out", "not found"),
        ("rel-out", "not found"),
        ("dir-out", "not found"),
    ] {
        let (ws, _) = setup();
        write(
            &ws.ctx(),
            "Dockerfile",
            &format!("FROM scratch\nCOPY {source} /got\n"),
        );
        let o = ws.rbuild(&["-t", "app:v1", "-o", &ws.oci_output()], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "COPY {source} succeeded");
        assert!(err.contains(expect), "COPY {source}: {err}");
        assert!(
            !ws.out().join("blobs").exists() || !all_layer_contents(&ws).contains(SECRET),
            "COPY {source} copied the secret"
        );
    }
}

#[test]
fn a_source_naming_a_link_copies_what_it_points_to_inside_the_context() {
    let (ws, _) = setup();
    fs::create_dir_all(ws.ctx().join("conf/sub")).unwrap();
    write(&ws.ctx(), "conf/sub/app.ini", "ini\n");
    symlink("conf", ws.ctx().join("conf-link")).unwrap();
    symlink("/inside.txt", ws.ctx().join("abs-link")).unwrap();
    symlink("../inside.txt", ws.ctx().join("conf/up-link")).unwrap();
    symlink("sub/app.ini", ws.ctx().join("conf/ini-link")).unwrap();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY abs-link /a.txt\nCOPY conf/up-link /b/\nCOPY conf-link /c/\n\
         COPY conf/ini-l* /d/\n",
    );
    ws.build_ok(&[]);
    let root = ws.unpack();
    // Named links (absolute ones from the context root) are followed and take the name given.
    assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "inside\n");
    assert_eq!(
        fs::read_to_string(root.join("b/up-link")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("d/ini-link")).unwrap(),
        "ini\n"
    );
    // A named link to a directory copies its contents; links inside it stay links.
    assert_eq!(
        fs::read_to_string(root.join("c/sub/app.ini")).unwrap(),
        "ini\n"
    );
    let up = fs::symlink_metadata(root.join("c/up-link")).unwrap();
    assert!(up.file_type().is_symlink());
    assert_eq!(
        fs::read_link(root.join("c/ini-link")).unwrap(),
        std::path::Path::new("sub/app.ini")
    );
}

#[test]
fn bind_mount_sources_cannot_reach_outside_the_context() {
    let (ws, _) = setup();
    let bc = ws.busybox_base();
    for (source, expect) in [
        ("../../", "outside the context"),
        ("../outside", "outside the context"),
        ("dir-out", "not found"),
        ("file-out", "not found"),
    ] {
        write(
            &ws.ctx(),
            "Dockerfile",
            &format!(
                "FROM base\nRUN --mount=type=bind,source={source},target=/m \
                 (cat /m/secret.txt /m; find /m -name secret.txt -exec cat {{}} +) > /got 2>&1; true\n"
            ),
        );
        let o = ws.rbuild(
            &[
                "--build-context",
                &bc,
                "-t",
                "app:v1",
                "-o",
                &ws.oci_output(),
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "bind source {source} was mounted: {err}"
        );
        assert!(
            err.contains(expect) && err.contains(source),
            "bind source {source}: {err}"
        );
    }
    // Inside the context, a bind mount works (so the refusals above are not blanket ones).
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nRUN --mount=type=bind,source=inside.txt,target=/m cat /m > /got\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    let root = ws.unpack();
    assert_eq!(fs::read_to_string(root.join("got")).unwrap(), "inside\n");
}

#[test]
fn dockerignore_rules_apply_whatever_the_encoding_and_an_unreadable_file_stops_the_build() {
    let ws = Workspace::new();
    write(&ws.ctx(), "secret.env", SECRET);
    write(&ws.ctx(), "kept.txt", "kept\n");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY . /app/\n");
    // A Latin-1 comment (not UTF-8) must not make the rules vanish, as Go strings do not.
    fs::write(ws.ctx().join(".dockerignore"), b"# caf\xe9\nsecret.env\n").unwrap();
    ws.build_ok(&[]);
    let listing = ws.layer_listings().join("\n");
    assert!(listing.contains("app/kept.txt"), "{listing}");
    assert!(!listing.contains("secret.env"), "{listing}");
    assert!(!all_layer_contents(&ws).contains(SECRET));

    // A .dockerignore that exists but cannot be read is an error, not "no rules".
    fs::remove_file(ws.ctx().join(".dockerignore")).unwrap();
    fs::create_dir(ws.ctx().join(".dockerignore")).unwrap();
    let ctx = ws.ctx();
    let lint = ["lint", ctx.to_str().unwrap()];
    for o in [
        ws.rbuild(&["-t", "x:1"], &[]),
        crate::support::rbuild(&lint, &[]),
    ] {
        let cmd = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(
            err.contains(".dockerignore") && err.contains("hint:"),
            "{cmd:?}: {err}"
        );
    }
}
