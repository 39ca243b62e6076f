//! A cache shared through a real registry (Debian's docker-registry): `--cache-to
//! type=registry` and `type=inline`, then a fresh store with `--cache-from` runs nothing,
//! downloads no layer, and its push mounts the layers instead of uploading them.

use std::fs;

use crate::support::registry::{Mode, Registry};
use crate::support::{tool, write, Workspace};

fn ok(o: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "rbuild failed:\n{err}");
    err
}

fn layer_blobs_in(store: &std::path::Path, digests: &[String]) -> usize {
    digests
        .iter()
        .filter(|d| {
            store
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
                .exists()
        })
        .count()
}

fn manifest_layers(image: &str) -> Vec<String> {
    let o = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", image]);
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn registry_cache_lets_a_fresh_machine_run_nothing_and_mount_every_layer() {
    let reg = Registry::start(Mode::Plain);
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(&ws.ctx(), "app.txt", "app\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base AS build\nRUN echo compiled > /artifact\n\
         FROM base\nCOPY app.txt /\nCOPY --from=build /artifact /\n",
    );
    let cache = format!("{}/cache/app:buildcache", reg.host);
    let to = format!("type=registry,ref={cache},mode=max");
    let first = ok(&ws.rbuild(&["--build-context", &bc, "--cache-to", &to, "-q"], &[]));
    assert!(!first.contains("error"));
    let cached_layers = manifest_layers(&format!("docker://{cache}"));
    assert_eq!(cached_layers.len(), 3, "RUN, COPY and COPY --from layers");

    // A fresh machine: empty store, cache from the registry.
    fs::remove_dir_all(ws.store()).unwrap();
    let image = format!("{}/team/app:v1", reg.host);
    let err = ok(&ws.rbuild(
        &[
            "--build-context",
            &bc,
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "-t",
            &image,
            "--push",
            "--progress",
            "plain",
        ],
        &[],
    ));
    assert!(err.contains("0 steps run, 3 cached"), "{err}");
    assert_eq!(
        layer_blobs_in(&ws.store(), &cached_layers),
        0,
        "no cached layer was downloaded"
    );
    assert!(err.contains("mounted"), "{err}");
    let pushed = manifest_layers(&format!("docker://{image}"));
    for l in &cached_layers[1..] {
        assert!(pushed.contains(l), "the image reuses cached layer {l}");
    }
    // The pushed image is whole: skopeo copies it out and the file from the RUN is there.
    let out = ws.tmp.path().join("copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("oci:{}:v1", out.display()),
        ],
    );
}

#[test]
fn inline_cache_in_a_pushed_image_serves_the_next_build() {
    let reg = Registry::start(Mode::Plain);
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "a\n");
    write(&ws.ctx(), "b.txt", "b\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY a.txt /\nCOPY b.txt /\n",
    );
    let image = format!("{}/team/inline:v1", reg.host);
    let o = ws.rbuild(&["-t", &image, "--push", "--cache-to", "type=inline"], &[]);
    ok(&o);
    let first = String::from_utf8_lossy(&o.stdout).trim().to_string();
    fs::remove_dir_all(ws.store()).unwrap();
    let o = ws.rbuild(
        &[
            "-t",
            &image,
            "--cache-from",
            &image,
            "--progress",
            "plain",
            "--push",
            "--cache-to",
            "type=inline",
        ],
        &[],
    );
    let err = ok(&o);
    assert!(err.contains("0 steps run, 2 cached"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), first);
}

#[test]
fn an_unreachable_cache_is_a_warning_not_a_failure() {
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "a\n");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY a.txt /\n");
    let err = ok(&ws.rbuild(&["--cache-from", "127.0.0.1:1/none/cache:x"], &[]));
    assert!(
        err.contains("warning: --cache-from 127.0.0.1:1/none/cache:x"),
        "{err}"
    );
    let o = ws.rbuild(&["--cache-to", "type=gha"], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown cache type"));
}
