//! The examples in the docs run as written (those that need no network): the README's
//! quickstart, and the air-gapped flow of docs/air-gapped.md with a local base.

use std::path::Path;
use std::process::Command;

use crate::support::{tool, write, Workspace};

/// The shell lines of the first ```sh block after `heading` in a Markdown file.
fn sh_block(md: &str, heading: &str) -> Vec<String> {
    let after = md.split(heading).nth(1).expect("heading present");
    let block = after
        .split("```sh\n")
        .nth(1)
        .expect("sh block")
        .split("```")
        .next()
        .unwrap();
    block
        .lines()
        .map(|l| l.split("  #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn run_line(line: &str, cwd: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    let program = match words[0] {
        "rbuild" => env!("CARGO_BIN_EXE_rbuild").to_string(),
        other => other.to_string(),
    };
    let mut cmd = Command::new(program);
    cmd.args(&words[1..]).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_readme_quickstart_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let ws = Workspace::new();
    let out = ws.tmp.path().join("hello");
    let store = ws.store();
    for line in sh_block(&readme, "## Quickstart (no network)") {
        let line = line.replace("/tmp/hello", out.to_str().unwrap());
        let o = run_line(&line, root, &[("RBUILD_ROOT", store.to_str().unwrap())]);
        assert!(
            o.status.success(),
            "`{line}` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(out.join("index.json").exists());
}

#[test]
fn the_air_gapped_build_runs_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/air-gapped.md")).unwrap();
    let ws = Workspace::new();
    // The carried-in base: a busybox layout in bases/debian, tagged as the doc names it.
    let bases = ws.tmp.path().join("bases");
    crate::support::layout::busybox_layout(&bases.join("debian-src"));
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:v1", bases.join("debian-src").display()),
            &format!("oci:{}:12-slim", bases.join("debian").display()),
        ],
    );
    write(
        &ws.tmp.path().join("."),
        "Dockerfile",
        "FROM debian\nRUN echo built offline > /msg\n",
    );
    let lines = sh_block(&doc, "## Build there");
    let line = lines.join(" ").replace(" \\ ", " ");
    let store = ws.store();
    let o = run_line(
        &line,
        ws.tmp.path(),
        &[("RBUILD_ROOT", store.to_str().unwrap())],
    );
    assert!(
        o.status.success(),
        "`{line}` failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci:{}:v1", ws.tmp.path().join("out/app").display()),
        ],
    );
    assert!(o.status.success());
}
