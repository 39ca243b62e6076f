//! Built images run: unpacked by umoci and started by runc, whose CMD output is checked.

use crate::support::{write, Workspace};

#[test]
fn an_image_with_run_steps_runs_under_runc() {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(&ws.ctx(), "name.txt", "rbuild\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nCOPY name.txt /etc/\nRUN echo \"hello from $(cat /etc/name.txt)\" > /msg\nUSER app\nENTRYPOINT [\"/bin/cat\"]\nCMD [\"/msg\"]\n",
    );
    ws.build_ok(&["--build-context", &bc]);
    let (cfg, stdout) = ws.runc_run();
    assert_eq!(
        cfg["process"]["args"],
        serde_json::json!(["/bin/cat", "/msg"])
    );
    assert_eq!(cfg["process"]["user"]["uid"], 1000);
    assert_eq!(stdout, "hello from rbuild\n");
}
