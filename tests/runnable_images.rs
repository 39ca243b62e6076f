//! Built images run: unpacked by umoci and started by runc, whose CMD output is checked.

use crate::support::layout::busybox_layout;
use crate::support::{write, Workspace};

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
    let (cfg, stdout) = ws.runc_run();
    assert_eq!(
        cfg["process"]["args"],
        serde_json::json!(["/bin/cat", "/msg"])
    );
    assert_eq!(cfg["process"]["user"]["uid"], 1000);
    assert_eq!(stdout, "hello from rbuild\n");
}
