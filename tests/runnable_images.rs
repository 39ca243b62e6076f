//! Built images run: unpacked by umoci and started by runc, whose CMD output is checked.

use crate::support::layout::busybox_layout;
use crate::support::{tool, write, Workspace};

#[test]
fn an_image_with_run_steps_runs_under_runc() {
    let ws = Workspace::new();
    let base = ws.tmp.path().join("busybox");
    busybox_layout(&base);
    write(&ws.ctx(), "name.txt", "rbuild\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nCOPY name.txt /etc/\nRUN echo \"hello from $(cat /etc/name.txt)\" > /msg\nUSER app\nENTRYPOINT [\"/bin/cat\"]\nCMD [\"/msg\"]\n",
    );
    let bc = format!("base=oci-layout://{}:v1", base.display());
    ws.build_ok(&["--build-context", &bc]);
    let bundle = ws.tmp.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", ws.out().display()),
            bundle.to_str().unwrap(),
        ],
    );
    // runc on this machine kind: no rlimits, no terminal.
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["terminal"] = false.into();
    cfg["process"].as_object_mut().unwrap().remove("rlimits");
    assert_eq!(
        cfg["process"]["args"],
        serde_json::json!(["/bin/cat", "/msg"])
    );
    assert_eq!(cfg["process"]["user"]["uid"], 1000);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let state = ws.tmp.path().join("runc-state");
    let id = format!("rbuild-test-{}", std::process::id());
    let out = tool(
        "runc",
        &[
            "--root",
            state.to_str().unwrap(),
            "run",
            "-b",
            bundle.to_str().unwrap(),
            &id,
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from rbuild\n");
}
