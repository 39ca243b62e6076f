//! `rbuild lint` and `build --check`: findings with Dockerfile:LINE, the check's name and the
//! fix; JSON and SARIF for CI; warnings during builds; and the checks run over the third-party
//! Dockerfiles without crashing or firing everywhere.

use std::collections::BTreeMap;

use crate::support::{conformance_dir, rbuild, write, Workspace};

const PROBLEMS: &str = "FROM node\nCOPY . .\nRUN npm install\nCMD node index.js\n";

#[test]
fn lint_names_the_line_the_check_and_the_fix() {
    let ws = Workspace::new();
    write(&ws.ctx(), "Dockerfile", PROBLEMS);
    let o = rbuild(&["lint", ws.ctx().to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        "Dockerfile:1 UnpinnedBaseImage",
        "Dockerfile:1 LargeBaseImage",
        "Dockerfile:3 CopyBeforeDependencyInstall",
        "COPY package*.json ./",
        "Dockerfile:4 JSONArgsRecommended",
        "CMD [\"node\", \"index.js\"]",
        "RootFinalStage",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let o = rbuild(
        &["lint", "--format", "json", ws.ctx().to_str().unwrap()],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["check"] == "JSONArgsRecommended" && f["line"] == 4));
    let o = rbuild(
        &["lint", "--format", "sarif", ws.ctx().to_str().unwrap()],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "UnpinnedBaseImage"
        && r["locations"][0]["physicalLocation"]["region"]["startLine"] == 1));
    // Fixed: nothing to say, exit 0.
    write(
        &ws.ctx(),
        "Dockerfile",
        "# check=skip=LargeBaseImage\nFROM node:20.11\nCOPY package*.json ./\nRUN npm install\nCOPY . .\nUSER node\nCMD [\"node\", \"index.js\"]\n",
    );
    let o = rbuild(&["lint", ws.ctx().to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn builds_warn_and_check_stops_before_building() {
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "a\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY a.txt /\nCMD run a\n",
    );
    let o = ws.rbuild(&["-t", "app:v1"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success());
    assert!(
        err.contains("warning: ") && err.contains(":3 JSONArgsRecommended"),
        "{err}"
    );
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "a\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY a.txt /\nCMD run a\n",
    );
    let o = ws.rbuild(&["--check", "-t", "app:v1"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("JSONArgsRecommended"));
    let images = ws.cmd(&["images"], &[]);
    assert!(
        !String::from_utf8_lossy(&images.stdout).contains("app:v1"),
        "--check built nothing"
    );
}

#[test]
fn checks_run_over_the_conformance_dockerfiles() {
    let mut files = Vec::new();
    for sub in ["real-world", "dockerfile-parser/positive"] {
        let Some(dir) = conformance_dir(sub) else {
            return;
        };
        for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
            if e.file_name() == "Dockerfile" {
                files.push(e.path().to_path_buf());
            }
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut linted = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let Ok(df) = rbuild::frontend::instructions::Dockerfile::parse(&text) else {
            continue;
        };
        linted += 1;
        let mut seen = std::collections::BTreeSet::new();
        for finding in rbuild::lint::lint(&df, &text, &rbuild::lint::ContextFacts::default()) {
            seen.insert(finding.check);
        }
        for c in seen {
            *counts.entry(c).or_default() += 1;
        }
    }
    assert!(linted > 40, "only {linted} Dockerfiles linted");
    eprintln!("lint over {linted} conformance Dockerfiles (files with the finding): {counts:?}");
    for (check, n) in &counts {
        assert!(
            *n < linted,
            "{check} fires on every file: it cannot be right"
        );
    }
}

#[test]
fn lint_fix_rewrites_the_mechanical_findings_and_shows_them() {
    let ws = Workspace::new();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM alpine:3.19\nADD app.conf /etc/\nUSER 1000\nCMD node index.js\n",
    );
    let o = rbuild(&["lint", "--fix", ws.ctx().to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("-ADD app.conf /etc/\n+COPY app.conf /etc/"),
        "{out}"
    );
    assert!(out.contains("+CMD [\"node\", \"index.js\"]"), "{out}");
    assert!(o.status.success(), "nothing left to report: {out}");
    let text = std::fs::read_to_string(ws.ctx().join("Dockerfile")).unwrap();
    assert_eq!(
        text,
        "FROM alpine:3.19\nCOPY app.conf /etc/\nUSER 1000\nCMD [\"node\", \"index.js\"]\n"
    );
}

#[test]
fn a_large_context_without_dockerignore_is_named_after_the_build() {
    let ws = Workspace::new();
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY small.txt /\n");
    write(&ws.ctx(), "small.txt", "x");
    // 100 MB by size, not on disk (sparse): the check reads sizes, the COPY skips it.
    let big = std::fs::File::create(ws.ctx().join("big.bin")).unwrap();
    big.set_len(100 << 20).unwrap();
    let o = ws.build_ok(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    let warning = err
        .lines()
        .position(|l| l.contains("MissingDockerignore: the context is 100 MB"));
    let built = err.lines().position(|l| l.starts_with("built in"));
    assert!(warning > built && built.is_some(), "{err}");
    // Quiet builds do not walk for it; a .dockerignore silences it.
    let o = ws.build_ok(&["-q"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("MissingDockerignore"));
    write(&ws.ctx(), ".dockerignore", "big.bin\n");
    let o = ws.build_ok(&[]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("MissingDockerignore"));
}
