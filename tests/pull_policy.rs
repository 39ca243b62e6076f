//! `--pull`: a base with a specific tag is resolved once and then built on from the store (the
//! registry may be gone), `:latest` is resolved every build, `--pull=always` and
//! `--pull=never` force either way.

use crate::support::layout::{file, write_layout, Item};
use crate::support::registry::{Mode, Registry};
use crate::support::{tool, write, Workspace};

fn push_base(reg: &Registry, tags: &[&str]) {
    let base = tempfile::tempdir().unwrap();
    write_layout(
        base.path(),
        "v1",
        &[vec![Item::Dir("etc"), file("etc/base.conf", b"base\n")]],
    );
    for t in tags {
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
}

fn build(ws: &Workspace, from: &str, extra: &[&str]) -> std::process::Output {
    write(&ws.ctx(), "a.txt", "a\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM {from}\nCOPY a.txt /\n"),
    );
    let mut args = vec!["-q"];
    args.extend_from_slice(extra);
    ws.rbuild(&args, &[])
}

#[test]
fn a_tagged_base_is_resolved_once_and_latest_every_build() {
    let reg = Registry::start(Mode::Plain);
    push_base(&reg, &["1.0", "latest"]);
    let ws = Workspace::new();
    let tagged = format!("{}/library/base:1.0", reg.host);
    let latest = format!("{}/library/base", reg.host);
    assert!(build(&ws, &tagged, &[]).status.success());
    assert!(build(&ws, &latest, &[]).status.success());
    let never_ok = build(&ws, &latest, &["--pull=never"]);
    assert!(
        never_ok.status.success(),
        "{}",
        String::from_utf8_lossy(&never_ok.stderr)
    );
    drop(reg);

    // The registry is gone: the tagged base still builds, from the store, and plain output
    // says which rule applied.
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM {tagged}\nCOPY a.txt /\n"),
    );
    let o = ws.rbuild(&["--progress", "plain"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("from the store (--pull default: a specific tag or digest is resolved once)"),
        "{err}"
    );
    // :latest is looked up again, and --pull=always insists.
    for (from, extra) in [(&latest, vec![]), (&tagged, vec!["--pull=always"])] {
        let o = build(&ws, from, &extra);
        assert_eq!(
            o.status.code(),
            Some(8),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Never seen here, never fetched.
    let o = build(&Workspace::new(), &tagged, &["--pull=never"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--pull never") && err.contains("rbuild pull"),
        "{err}"
    );
}
