//! Pull and push against a real registry (Debian's docker-registry), checked with skopeo:
//! round trips both ways, lazy base layers mounted instead of uploaded, platform selection
//! from an image index.

use std::fs;

use serde_json::Value;

use crate::support::layout::{file, write_layout, write_multi_arch_layout, Item};
use crate::support::registry::{Mode, Registry};
use crate::support::{tool, write, Workspace};

fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "rbuild failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

fn skopeo_digest(image: &str) -> String {
    let v: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", "--tls-verify=false", image]).stdout)
            .unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

#[test]
fn build_push_then_skopeo_and_rbuild_pull_the_same_digest() {
    let reg = Registry::start(Mode::Plain);
    let ws = Workspace::new();
    write(&ws.ctx(), "app.txt", "v1\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY app.txt /\nCMD [\"/app.txt\"]\n",
    );
    let name = format!("{}/team/app:v1", reg.host);
    let pinned = stdout(&ws.rbuild(&["-t", &name, "--push"], &[]));
    let (repo, digest) = pinned.split_once('@').expect("name@digest");
    assert_eq!(repo, format!("{}/team/app", reg.host));
    assert_eq!(skopeo_digest(&format!("docker://{name}")), digest);

    // skopeo copies it back out unchanged.
    let out = ws.tmp.path().join("copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:v1", out.display()),
        ],
    );
    assert_eq!(skopeo_digest(&format!("oci:{}:v1", out.display())), digest);

    // rbuild pulls it into a fresh store, and lists it.
    let other = Workspace::new();
    let pulled = stdout(&other.cmd(&["pull", &name], &[]));
    assert_eq!(pulled, pinned);
    let images = stdout(&other.cmd(&["images"], &[]));
    assert!(
        images.contains("team/app:v1") && images.contains(&digest[..19]),
        "{images}"
    );
}

#[test]
fn skopeo_pushes_a_base_rbuild_builds_on_it_lazily_and_mounts_its_layers() {
    let reg = Registry::start(Mode::Plain);
    let base = tempfile::tempdir().unwrap();
    write_layout(
        base.path(),
        "v1",
        &[vec![
            Item::Dir("etc"),
            file("etc/base.conf", b"from the base\n"),
        ]],
    );
    let base_ref = format!("{}/library/base:v1", reg.host);
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", base.path().display()),
            &format!("docker://{base_ref}"),
        ],
    );

    let ws = Workspace::new();
    write(&ws.ctx(), "app.txt", "app\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM {base_ref}\nCOPY app.txt /app.txt\n"),
    );
    let dest = format!("{}/team/app:v2", reg.host);
    let o = ws.rbuild(&["-t", &dest, "--push"], &[]);
    let pinned = stdout(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 mounted"),
        "the base layer is mounted, not uploaded: {err}"
    );

    // Only the base's manifest and config were fetched, not its layer.
    let raw: Value = serde_json::from_slice(
        &tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{base_ref}"),
            ],
        )
        .stdout,
    )
    .unwrap();
    let base_layer = raw["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    assert!(
        !ws.store().join("blobs/sha256").join(&base_layer).exists(),
        "base layer was downloaded"
    );

    // The pushed image has both layers and runs as one filesystem.
    let out = ws.tmp.path().join("pushed");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{dest}"),
            &format!("oci:{}:v1", out.display()),
        ],
    );
    assert_eq!(
        skopeo_digest(&format!("oci:{}:v1", out.display())),
        pinned.split_once('@').unwrap().1
    );
    let bundle = ws.tmp.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", out.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/base.conf")).unwrap(),
        "from the base\n"
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/app.txt")).unwrap(),
        "app\n"
    );

    // An OCI output needs every blob: then the base layer is fetched (and verified).
    let o = ws.rbuild(
        &[
            "-t",
            "local:v1",
            "-o",
            &format!("type=oci,dest={}", ws.out().display()),
        ],
        &[],
    );
    stdout(&o);
    assert!(ws.out().join("blobs/sha256").join(&base_layer).exists());
}

#[test]
fn pull_picks_the_platform_from_an_index() {
    let reg = Registry::start(Mode::Plain);
    let src = tempfile::tempdir().unwrap();
    let digests = write_multi_arch_layout(
        src.path(),
        "v1",
        &[
            ("amd64", vec![file("arch", b"amd64")]),
            ("arm64", vec![file("arch", b"arm64")]),
        ],
    );
    let name = format!("{}/multi:v1", reg.host);
    tool(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.path().display()),
            &format!("docker://{name}"),
        ],
    );
    let ws = Workspace::new();
    let arm = stdout(&ws.cmd(&["pull", "--platform", "linux/arm64", &name], &[]));
    assert!(arm.ends_with(&digests[1]), "{arm} vs {digests:?}");
    let o = ws.cmd(&["pull", "--platform", "linux/s390x", &name], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn large_layers_go_up_in_chunks_and_arrive_intact() {
    let reg = Registry::start(Mode::Plain);
    let ws = Workspace::new();
    // 24 MB that gzip cannot shrink below the 16 MiB single-PUT limit.
    let data = crate::support::noise(0x2545f4914f6cdd1d, 24_000_000);
    fs::create_dir_all(ws.ctx()).unwrap();
    fs::write(ws.ctx().join("big.bin"), &data).unwrap();
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY big.bin /\n");
    let name = format!("{}/team/big:v1", reg.host);
    let pinned = stdout(&ws.rbuild(&["-t", &name, "--push"], &[]));
    assert_eq!(
        skopeo_digest(&format!("docker://{name}")),
        pinned.split_once('@').unwrap().1
    );
    let out = ws.tmp.path().join("copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:v1", out.display()),
        ],
    );
    let bundle = ws.tmp.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", out.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert!(fs::read(bundle.join("rootfs/big.bin")).unwrap() == data);
}

#[test]
fn docker_hub_names_resolve_through_a_registry_mirror() {
    let mirror = Registry::start(Mode::Plain);
    let src = tempfile::tempdir().unwrap();
    write_layout(src.path(), "v1", &[vec![file("hello", b"from the mirror")]]);
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.path().display()),
            &format!("docker://{}/library/hello:1", mirror.host),
        ],
    );
    let ws = Workspace::new();
    let pulled = stdout(&ws.cmd(&["pull", "--registry-mirror", &mirror.host, "hello:1"], &[]));
    let want = skopeo_digest(&format!("docker://{}/library/hello:1", mirror.host));
    assert_eq!(pulled, format!("hello@{want}"));
}
