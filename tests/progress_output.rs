//! What the terminal shows: `--progress tty` under a real pseudo-terminal (util-linux
//! `script`), `plain` line by line with a RUN's output prefixed by its step, `rawjson`.

use crate::support::{write, Workspace};

fn setup() -> (Workspace, String) {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(&ws.ctx(), "a.txt", "a\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nCOPY a.txt /\nRUN echo hello from run\n",
    );
    (ws, bc)
}

#[test]
fn tty_mode_shows_steps_times_and_a_summary() {
    let (ws, bc) = setup();
    let cmd = format!(
        "{} --progress tty --build-context {bc} -t app:v1 --root {} {}",
        env!("CARGO_BIN_EXE_rbuild"),
        ws.store().display(),
        ws.ctx().display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    for want in [
        "[+] Building",
        "running)",
        " => [stage-0 1/2] COPY a.txt /",
        " => [stage-0 2/2] RUN echo hello from run",
        "| hello from run",
        "built in ",
        "2 steps run, 0 cached; image sha256:",
    ] {
        assert!(
            screen.contains(want),
            "missing {want:?} on the screen:\n{screen}"
        );
    }
    assert!(
        screen.contains("\x1b[J"),
        "the live block is redrawn in place"
    );
    // Times: every finished step line ends with seconds.
    let finished: Vec<&str> = screen
        .split(['\n', '\r'])
        .map(|l| l.rsplit("\x1b[J").next().unwrap_or(l))
        .filter(|l| l.starts_with(" => ["))
        .filter(|l| l.trim_end().ends_with('s'))
        .collect();
    assert!(finished.len() >= 2, "{screen}");
}

#[test]
fn plain_mode_is_one_line_per_event() {
    let (ws, bc) = setup();
    let o = ws.rbuild(&["--progress", "plain", "--build-context", &bc], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(lines[0], "#1 [stage-0 1/2] COPY a.txt /");
    assert_eq!(lines[1], "#1 miss: not built before");
    assert!(lines[2].starts_with("#1 DONE "), "{err}");
    assert_eq!(lines[3], "#2 [stage-0 2/2] RUN echo hello from run");
    assert_eq!(lines[4], "#2 miss: not built before");
    assert_eq!(lines[5], "#2 | hello from run");
    assert!(lines[6].starts_with("#2 DONE "), "{err}");
    let again = ws.rbuild(&["--progress", "rawjson", "--build-context", &bc], &[]);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&again.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.iter().filter(|e| e["event"] == "cached").count(),
        2,
        "{events:?}"
    );
}

#[test]
fn layers_pulled_during_a_build_are_reported_with_their_size() {
    let reg = crate::support::registry::Registry::start(crate::support::registry::Mode::Plain);
    let ws = Workspace::new();
    let base = ws.tmp.path().join("bb");
    crate::support::layout::busybox_layout(&base);
    let image = format!("{}/library/busybox:1", reg.host);
    crate::support::tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", base.display()),
            &format!("docker://{image}"),
        ],
    );
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM {image}\nRUN echo hi > /x\n"),
    );
    let o = ws.rbuild(&["--progress", "plain"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("pulled 1 layer (")
            && err.contains(&format!("from {}/library/busybox in", reg.host)),
        "{err}"
    );
}
