//! `rbuild pin` rewrites registry FROMs to the digests their tags point to (checked with
//! skopeo) and `--check`s them; `rbuild inspect` shows config, layers and history from the
//! store or from a registry.

use crate::support::layout::{file, write_layout, Item};
use crate::support::registry::{Mode, Registry};
use crate::support::{rbuild, tool, write, Workspace};

#[test]
fn pin_rewrites_from_lines_to_digests_and_check_guards_them() {
    let reg = Registry::start(Mode::Plain);
    let base = tempfile::tempdir().unwrap();
    write_layout(
        base.path(),
        "v1",
        &[vec![Item::Dir("etc"), file("etc/os", b"base\n")]],
    );
    for t in ["1.0", "latest"] {
        tool(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:v1", base.path().display()),
                &format!("docker://{}/library/base:{t}", reg.host),
            ],
        );
    }
    let digest = {
        let o = tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{}/library/base:1.0", reg.host),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["Digest"].as_str().unwrap().to_string()
    };
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "a\n");
    let df = ws.ctx().join("Dockerfile");
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!(
            "FROM {h}/library/base:1.0 AS one\nFROM {h}/library/base\nCOPY --from=one /etc/os /os\nCOPY a.txt /\n",
            h = reg.host
        ),
    );
    let o = rbuild(&["pin", "--check", "-f", df.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("Dockerfile:1 FROM") && out.contains("Dockerfile:2 FROM"),
        "{out}"
    );
    let o = rbuild(&["pin", "-f", df.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&df).unwrap();
    assert!(
        text.contains(&format!(
            "FROM {}/library/base:1.0@{digest} AS one\n",
            reg.host
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("FROM {}/library/base:latest@sha256:", reg.host)),
        "{text}"
    );
    assert!(rbuild(&["pin", "--check", "-f", df.to_str().unwrap()], &[])
        .status
        .success());
    let o = ws.rbuild(&["-q"], &[]);
    assert!(
        o.status.success(),
        "the pinned Dockerfile builds: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn inspect_shows_config_layers_and_history_from_store_and_registry() {
    let reg = Registry::start(Mode::Plain);
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "a\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY a.txt /\nENV MODE=prod\nLABEL team=platform\nUSER 1000\nCMD [\"/a.txt\"]\n",
    );
    let name = format!("{}/team/app:v1", reg.host);
    assert!(ws.rbuild(&["-t", "app:v1", "-q"], &[]).status.success());
    let o = ws.cmd(&["push", "app:v1", &name], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ws.cmd(&["inspect", "app:v1"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "(from the store)",
        "User:        1000",
        "Cmd:",
        "MODE=prod",
        "team=platform",
        "COPY a.txt /",
        "1 layers",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    // A fresh store reads it from the registry.
    let other = Workspace::new();
    let o = other.cmd(&["inspect", "--format", "json", &name], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["source"], "registry");
    assert_eq!(v["config"]["config"]["User"], "1000");
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    let o = other.cmd(&["inspect", "nosuch:tag"], &[]);
    assert!(!o.status.success());
}
