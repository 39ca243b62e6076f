//! The build cache as users see it: `CACHED` steps, the reason a step missed, the same image
//! digest when nothing changed, and the cases where other builders reuse stale results or
//! miss for no reason (each named after the peer's issue).

use std::fs;

use crate::support::{write, Workspace};

/// What happened to each file-writing step: (instruction, "CACHED" or the miss reason).
struct Run {
    steps: Vec<(String, String)>,
    digest: String,
    stderr: String,
}

impl Run {
    fn status(&self, instruction_prefix: &str) -> &str {
        self.steps
            .iter()
            .find(|(t, _)| t.starts_with(instruction_prefix))
            .map(|(_, s)| s.as_str())
            .unwrap_or_else(|| panic!("no step {instruction_prefix:?} in:\n{}", self.stderr))
    }
    fn all_cached(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|(_, s)| s == "CACHED")
    }
}

fn build(ws: &Workspace, args: &[&str]) -> Run {
    let out = ws.oci_output();
    let mut all = vec!["-t", "app:v1", "-o", &out, "--progress", "plain"];
    all.extend_from_slice(args);
    let o = ws.rbuild(&all, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "build failed:\n{stderr}");
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut ids = std::collections::BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let (id, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if let Some(text) = rest.strip_prefix('[') {
            let text = text.split_once("] ").map(|x| x.1).unwrap_or(text);
            ids.insert(id.to_string(), steps.len());
            steps.push((text.to_string(), String::new()));
        } else if let Some(&i) = ids.get(id) {
            if rest == "CACHED" {
                steps[i].1 = "CACHED".into();
            } else if let Some(r) = rest.strip_prefix("miss: ") {
                steps[i].1 = r.to_string();
            }
        }
    }
    Run {
        steps,
        digest: String::from_utf8_lossy(&o.stdout).trim().to_string(),
        stderr,
    }
}

fn read_out(ws: &Workspace, path: &str) -> Option<String> {
    fs::read_to_string(ws.unpack().join(path)).ok()
}

#[test]
fn a_rebuild_with_no_change_runs_nothing_and_gives_the_same_digest() {
    let ws = Workspace::new();
    write(&ws.ctx(), "package.json", "{}\n");
    write(&ws.ctx(), "src/index.js", "console.log(1)\n");
    write(&ws.ctx(), ".dockerignore", "Dockerfile\n");
    let df = "FROM scratch\nWORKDIR /app\nCOPY package.json ./\nENV MODE=prod\nCOPY . .\nCMD [\"node\"]\n";
    write(&ws.ctx(), "Dockerfile", df);
    let first = build(&ws, &[]);
    assert!(
        first.steps.iter().all(|(_, s)| s == "not built before"),
        "{}",
        first.stderr
    );
    let again = build(&ws, &[]);
    assert!(again.all_cached(), "{}", again.stderr);
    assert!(
        again.stderr.contains("0 steps run, 3 cached"),
        "{}",
        again.stderr
    );
    assert_eq!(again.digest, first.digest);
    // A comment (and blank lines) change nothing.
    write(&ws.ctx(), "Dockerfile", &format!("# syntax note\n\n{df}"));
    let commented = build(&ws, &[]);
    assert!(commented.all_cached(), "{}", commented.stderr);
    assert_eq!(commented.digest, first.digest);
}

#[test]
fn a_copy_misses_only_when_the_files_it_selects_change() {
    let ws = Workspace::new();
    write(&ws.ctx(), "package.json", "{}\n");
    write(&ws.ctx(), "src/index.js", "console.log(1)\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY package.json /app/\nCOPY . /app/\n",
    );
    build(&ws, &[]);
    write(&ws.ctx(), "src/index.js", "console.log(2)\n");
    let r = build(&ws, &[]);
    assert_eq!(r.status("COPY package.json"), "CACHED");
    assert_eq!(r.status("COPY . /app/"), "file app/src/index.js changed");
    assert_eq!(
        read_out(&ws, "app/src/index.js").unwrap(),
        "console.log(2)\n"
    );
}

#[test]
fn a_file_rewritten_with_the_same_size_and_mtime_is_seen_buildkit_4817() {
    let ws = Workspace::new();
    write(&ws.ctx(), "config.txt", "value=1\n");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY config.txt /\n");
    build(&ws, &[]);
    let path = ws.ctx().join("config.txt");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&path, "value=2\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let r = build(&ws, &[]);
    assert_eq!(r.status("COPY"), "file config.txt changed");
    assert_eq!(read_out(&ws, "config.txt").unwrap(), "value=2\n");
}

#[test]
fn mtimes_and_source_modes_under_chmod_do_not_invalidate_buildkit_4374() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    write(&ws.ctx(), "run.sh", "echo hi\n");
    write(&ws.ctx(), "data.txt", "data\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY --chmod=755 run.sh /bin/\nCOPY data.txt /\n",
    );
    let first = build(&ws, &[]);
    // A fresh checkout: new mtimes everywhere, and a different mode on the chmod'ed file.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for f in ["run.sh", "data.txt"] {
        fs::File::options()
            .write(true)
            .open(ws.ctx().join(f))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    fs::set_permissions(ws.ctx().join("run.sh"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = build(&ws, &[]);
    assert!(r.all_cached(), "{}", r.stderr);
    assert_eq!(r.digest, first.digest);
    // Without --chmod the source mode is what the image gets, so it is part of the key.
    fs::set_permissions(ws.ctx().join("data.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = build(&ws, &[]);
    assert_eq!(r.status("COPY data.txt"), "file data.txt changed");
}

#[test]
fn renaming_a_file_matched_by_a_wildcard_misses_buildkit_2008() {
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "same\n");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY *.txt /d/\n");
    build(&ws, &[]);
    fs::rename(ws.ctx().join("a.txt"), ws.ctx().join("b.txt")).unwrap();
    let r = build(&ws, &[]);
    assert!(r.status("COPY").starts_with("file d/"), "{}", r.stderr);
    let root = ws.unpack();
    assert!(root.join("d/b.txt").exists() && !root.join("d/a.txt").exists());
}

#[test]
fn a_deleted_context_file_never_comes_back_from_the_cache_kaniko_938() {
    let ws = Workspace::new();
    write(&ws.ctx(), "keep.txt", "k\n");
    write(&ws.ctx(), "gone.txt", "g\n");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY . /app/\n");
    build(&ws, &[]);
    fs::remove_file(ws.ctx().join("gone.txt")).unwrap();
    let r = build(&ws, &[]);
    assert_eq!(r.status("COPY"), "file app/gone.txt removed");
    let root = ws.unpack();
    assert!(root.join("app/keep.txt").exists());
    assert!(!root.join("app/gone.txt").exists());
}

#[test]
fn copy_from_a_rebuilt_stage_never_reuses_a_stale_layer_kaniko_1262() {
    let ws = Workspace::new();
    write(&ws.ctx(), "src.txt", "v1\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch AS build\nCOPY src.txt /out.txt\n\
         FROM scratch\nCOPY --from=build /out.txt /final.txt\n",
    );
    build(&ws, &[]);
    assert_eq!(read_out(&ws, "final.txt").unwrap(), "v1\n");
    write(&ws.ctx(), "src.txt", "v2\n");
    let r = build(&ws, &[]);
    assert_eq!(r.status("COPY --from=build"), "source stage 0 changed");
    assert_eq!(read_out(&ws, "final.txt").unwrap(), "v2\n");
}

#[test]
fn steps_after_a_miss_still_hit_when_its_result_is_the_same_kaniko_stops_there() {
    let ws = Workspace::new();
    let epoch = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for f in ["a.txt", "b.txt"] {
        write(&ws.ctx(), f, "identical\n");
        fs::File::options()
            .write(true)
            .open(ws.ctx().join(f))
            .unwrap()
            .set_modified(epoch)
            .unwrap();
    }
    write(&ws.ctx(), "later.txt", "later\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nARG SRC=a.txt\nCOPY ${SRC} /x.txt\nCOPY later.txt /\n",
    );
    build(&ws, &[]);
    let r = build(&ws, &["--build-arg", "SRC=b.txt"]);
    assert_eq!(r.status("COPY ${SRC}"), "the instruction changed");
    assert_eq!(r.status("COPY later.txt"), "CACHED", "{}", r.stderr);
}

#[test]
fn no_cache_runs_everything_and_no_cache_filter_only_the_named_stage() {
    let ws = Workspace::new();
    write(&ws.ctx(), "dep.txt", "dep\n");
    write(&ws.ctx(), "app.txt", "app\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch AS deps\nCOPY dep.txt /\n\
         FROM scratch\nCOPY app.txt /\nCOPY --from=deps /dep.txt /\n",
    );
    let first = build(&ws, &[]);
    let r = build(&ws, &["--no-cache"]);
    assert!(
        r.steps
            .iter()
            .all(|(_, s)| s == "cache disabled (--no-cache)"),
        "{}",
        r.stderr
    );
    let r = build(&ws, &["--no-cache-filter", "deps"]);
    assert_eq!(r.status("COPY dep.txt"), "cache disabled (--no-cache)");
    assert_eq!(r.status("COPY app.txt"), "CACHED");
    // deps ran again and made the same layer, so the copy from it still hits.
    assert_eq!(r.status("COPY --from=deps"), "CACHED");
    assert_eq!(r.digest, first.digest);
}

#[test]
fn a_run_is_not_run_again_and_a_changed_arg_is_named() {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\nARG V=1\nRUN echo $V > /v && mkdir /made-by-run\n",
    );
    let first = build(&ws, &["--build-context", &bc]);
    let again = build(&ws, &["--build-context", &bc]);
    // The RUN's layer holds fresh mtimes: a second run could not give the same digest.
    assert!(again.all_cached(), "{}", again.stderr);
    assert_eq!(again.digest, first.digest);
    let r = build(&ws, &["--build-context", &bc, "--build-arg", "V=2"]);
    assert_eq!(r.status("RUN"), "variable V changed");
    assert_eq!(read_out(&ws, "v").unwrap(), "2\n");
}

#[test]
fn prune_drops_cache_by_age_and_size_and_keeps_tagged_images() {
    let ws = Workspace::new();
    write(&ws.ctx(), "a.txt", "a\n");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY a.txt /\n");
    build(&ws, &[]);
    let o = ws.cmd(&["prune", "--filter", "until=1h"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Deleted 0 cache records"));
    assert!(build(&ws, &[]).all_cached());
    let o = ws.cmd(&["prune", "--keep-storage", "0"], &[]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Deleted 1 cache record"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_ne!(build(&ws, &[]).status("COPY"), "CACHED");
    // The tagged image survived both prunes: skopeo still reads it from the store.
    let image = format!("oci:{}:docker.io/library/app:v1", ws.store().display());
    let o = crate::support::tool("skopeo", &["inspect", &image]);
    assert!(o.status.success());
    let o = ws.cmd(&["prune", "--keep-storage", "lots"], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("10GB"));
}

#[test]
fn cache_carried_in_a_directory_makes_a_fresh_store_run_nothing() {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    write(&ws.ctx(), "app.txt", "app\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base AS build\nRUN echo built > /artifact\n\
         FROM base\nCOPY app.txt /\nCOPY --from=build /artifact /\n",
    );
    let dir = ws.tmp.path().join("carried-cache");
    let to = format!("type=local,dest={},mode=max", dir.display());
    let first = build(&ws, &["--build-context", &bc, "--cache-to", &to]);
    // Any OCI tool reads the cache directory: an artifact whose layers are the cached ones.
    let o = crate::support::tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:buildcache", dir.display()),
        ],
    );
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.rbuild.cache.config.v1+json"
    );
    assert_eq!(
        m["layers"].as_array().unwrap().len(),
        3,
        "the RUN and both COPY layers"
    );
    fs::remove_dir_all(ws.store()).unwrap();
    let from = format!("type=local,src={}", dir.display());
    let r = build(&ws, &["--build-context", &bc, "--cache-from", &from]);
    assert!(r.all_cached(), "{}", r.stderr);
    assert!(r.stderr.contains("0 steps run"), "{}", r.stderr);
    assert_eq!(r.digest, first.digest);
    assert_eq!(read_out(&ws, "artifact").unwrap(), "built\n");
}

#[test]
fn a_fresh_clone_in_another_directory_hits_the_cache() {
    let ws = Workspace::new();
    write(&ws.ctx(), "src/app.js", "console.log(1)\n");
    write(&ws.ctx(), ".dockerignore", "Dockerfile\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nWORKDIR /app\nCOPY . .\n",
    );
    let first = build(&ws, &[]);
    // New inodes, new mtimes, another path: what a `git clone` on another runner gives.
    let clone = ws.tmp.path().join("clone");
    for f in ["src/app.js", ".dockerignore", "Dockerfile"] {
        write(&clone, f, &fs::read_to_string(ws.ctx().join(f)).unwrap());
    }
    let o = ws.build_ok_from(clone.to_str().unwrap(), &["--progress", "plain"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("0 steps run, 2 cached"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), first.digest);
}

#[test]
fn concurrent_builds_and_a_prune_on_one_store_all_succeed() {
    let ws = Workspace::new();
    for (dir, text) in [("one", "1"), ("two", "2"), ("three", "3")] {
        let ctx = ws.tmp.path().join(dir);
        write(&ctx, "data.txt", &text.repeat(200_000));
        write(
            &ctx,
            "Dockerfile",
            "FROM scratch\nCOPY data.txt /\nCOPY data.txt /copy.txt\n",
        );
    }
    let root = ws.store();
    let spawn = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .args(args)
            .output()
    };
    let handles: Vec<_> = ["one", "two", "three", "one", "prune"]
        .iter()
        .map(|name| {
            let mut args: Vec<String> = if *name == "prune" {
                vec!["prune".into(), "--all".into()]
            } else {
                vec!["-q".into(), "-t".into(), format!("{name}:v1")]
            };
            args.extend(["--root".into(), root.display().to_string()]);
            if *name != "prune" {
                args.push(ws.tmp.path().join(name).display().to_string());
            }
            std::thread::spawn(move || spawn(args).unwrap())
        })
        .collect();
    for h in handles {
        let o = h.join().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Every image is whole afterwards.
    for name in ["one", "two", "three"] {
        let image = format!("oci:{}:docker.io/library/{name}:v1", root.display());
        let o = crate::support::tool("skopeo", &["inspect", &image]);
        assert!(o.status.success());
        let out = ws.tmp.path().join(format!("copy-{name}"));
        crate::support::tool(
            "skopeo",
            &["copy", &image, &format!("oci:{}:x", out.display())],
        );
    }
}
