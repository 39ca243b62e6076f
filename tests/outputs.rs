//! `-o/--output`: OCI layout directories and tars, `docker load` archives, and plain
//! directories — each read back by skopeo, umoci or GNU tar.

use std::fs;

use serde_json::Value;

use crate::support::{tool, write, Workspace};

fn context(ws: &Workspace) {
    write(&ws.ctx(), "hello.txt", "hello\n");
    write(&ws.ctx(), "etc/app.conf", "x=1\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY hello.txt /\nCOPY etc /etc/\nCMD [\"/hello.txt\"]\n",
    );
}

fn inspect(image: &str) -> Value {
    serde_json::from_slice(&tool("skopeo", &["inspect", image]).stdout).unwrap()
}

#[test]
fn every_output_type_in_one_build() {
    let ws = Workspace::new();
    context(&ws);
    let d = ws.tmp.path();
    let oci_tar = d.join("img.tar");
    let docker_tar = d.join("docker.tar");
    let local = d.join("rootfs");
    let o = ws.rbuild(
        &[
            "-t",
            "myorg/app:v2",
            "-o",
            &format!("type=oci,dest={}", oci_tar.display()),
            "-o",
            &format!("type=docker,dest={}", docker_tar.display()),
            "-o",
            &format!("type=local,dest={}", local.display()),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let digest = String::from_utf8(o.stdout).unwrap().trim().to_string();

    let oci = inspect(&format!("oci-archive:{}:v2", oci_tar.display()));
    assert_eq!(oci["Digest"], digest.as_str());
    assert_eq!(oci["Layers"].as_array().unwrap().len(), 2);

    // skopeo finds the image by the tag recorded in manifest.json's RepoTags.
    let docker = inspect(&format!(
        "docker-archive:{}:myorg/app:v2",
        docker_tar.display()
    ));
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(docker["Os"], "linux");

    assert_eq!(
        fs::read_to_string(local.join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::read_to_string(local.join("etc/app.conf")).unwrap(),
        "x=1\n"
    );
}

#[test]
fn docker_archive_round_trips_through_skopeo_to_a_runnable_layout() {
    let ws = Workspace::new();
    context(&ws);
    let docker_tar = ws.tmp.path().join("docker.tar");
    let dest = format!("type=docker,dest={}", docker_tar.display());
    let o = ws.rbuild(&["-t", "app:v1", "-o", &dest], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // docker-archive → OCI layout (what `docker load` + `docker save` would do), then unpack.
    let out = ws.out();
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", docker_tar.display()),
            &format!("oci:{}:v1", out.display()),
        ],
    );
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("hello.txt")).unwrap(),
        "hello\n"
    );
    // And the OCI tar the same way.
    let oci_tar = ws.tmp.path().join("img.tar");
    let dest = format!("type=oci,dest={}", oci_tar.display());
    assert!(ws
        .rbuild(&["-t", "app:v1", "-o", &dest], &[])
        .status
        .success());
    let copy = ws.tmp.path().join("copy");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}:v1", oci_tar.display()),
            &format!("oci:{}:v1", copy.display()),
        ],
    );
    assert!(copy.join("index.json").is_file());
}

#[test]
fn archive_to_stdout_and_no_partial_file_on_failure() {
    let ws = Workspace::new();
    context(&ws);
    let o = ws.rbuild(&["-q", "-t", "app:v1", "-o", "type=docker,dest=-"], &[]);
    assert!(o.status.success());
    let tar_path = ws.tmp.path().join("stdout.tar");
    fs::write(&tar_path, &o.stdout).unwrap();
    let listing =
        String::from_utf8(tool("tar", &["-tf", tar_path.to_str().unwrap()]).stdout).unwrap();
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");

    let missing = ws.tmp.path().join("no/such/dir/img.tar");
    let o = ws.rbuild(
        &["-o", &format!("type=oci,dest={}", missing.display())],
        &[],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("img.tar") && err.contains("hint:"), "{err}");
    assert!(!missing.exists());

    let o = ws.rbuild(&["-o", "type=registry"], &[]);
    assert_eq!(o.status.code(), Some(2), "usage error");
}
