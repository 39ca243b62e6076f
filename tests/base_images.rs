//! Base images from OCI layouts: ONBUILD triggers run in the next build, and the platform of
//! the base is checked against `--platform`.

use crate::support::{tool, write, Workspace};

/// The raw config blob (skopeo's parsed `--config` view drops Docker-only fields like OnBuild).
fn config(ws: &Workspace, dir: &std::path::Path) -> serde_json::Value {
    let _ = ws;
    let image = format!("oci:{}:v1", dir.display());
    let m: serde_json::Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", "--raw", &image]).stdout).unwrap();
    let d = m["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(d)).unwrap()).unwrap()
}

#[test]
fn onbuild_triggers_run_when_the_image_is_a_base() {
    let ws = Workspace::new();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nONBUILD COPY app.txt /from-trigger.txt\nONBUILD LABEL triggered=yes\n",
    );
    ws.build_ok(&[]);
    let parent = config(&ws, &ws.out());
    assert_eq!(
        parent["config"]["OnBuild"][0],
        "COPY app.txt /from-trigger.txt"
    );

    let child = Workspace::new();
    write(&child.ctx(), "app.txt", "from the child's context\n");
    write(
        &child.ctx(),
        "Dockerfile",
        "FROM base\nCMD [\"/from-trigger.txt\"]\n",
    );
    let bc = format!("base=oci-layout://{}:v1", ws.out().display());
    child.build_ok(&["--build-context", &bc]);
    let cfg = config(&child, &child.out());
    assert_eq!(cfg["config"]["Labels"]["triggered"], "yes");
    assert!(
        cfg["config"]["OnBuild"].is_null(),
        "triggers are not inherited: {cfg}"
    );
    let root = child.unpack();
    assert_eq!(
        std::fs::read_to_string(root.join("from-trigger.txt")).unwrap(),
        "from the child's context\n"
    );
}

#[test]
fn base_platform_is_checked_against_the_build() {
    let arm = Workspace::new();
    write(&arm.ctx(), "Dockerfile", "FROM scratch\nLABEL arch=arm64\n");
    arm.build_ok(&["--platform", "linux/arm64"]);
    assert_eq!(config(&arm, &arm.out())["architecture"], "arm64");

    let ws = Workspace::new();
    let bc = format!("base=oci-layout://{}:v1", arm.out().display());
    write(&ws.ctx(), "Dockerfile", "FROM base\n");
    let o = ws.rbuild(&["--build-context", &bc, "--platform", "linux/amd64"], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("linux/arm64") && err.contains("linux/amd64"),
        "{err}"
    );
    // Asking for the base's own platform works.
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM --platform=linux/arm64 base\n",
    );
    ws.build_ok(&["--build-context", &bc]);
}
