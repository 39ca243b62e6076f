//! A build killed in the middle of a RUN (kill -9, or Ctrl-C) leaves no process and no
//! mount behind, nothing half-written in the store, and the next build works.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::{noise, write, Workspace};

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn wait_for(mut cond: impl FnMut() -> bool, secs: u64) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn killing_a_build_during_run_leaves_nothing_behind() {
    for signal in ["KILL", "INT"] {
        let ws = Workspace::new();
        let bc = ws.busybox_base();
        let marker = format!("{}", 40 + std::process::id() % 50);
        write(
            &ws.ctx(),
            "Dockerfile",
            &format!("FROM base\nRUN echo started > /x && sleep {marker}0\n"),
        );
        let store = ws.store();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .args(["--build-context", &bc, "-q", "--root"])
            .arg(&store)
            .arg(ws.ctx())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let needle = format!("sleep {marker}0");
        assert!(
            wait_for(|| !processes_with(&needle).is_empty(), 20),
            "the RUN started"
        );
        let out = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(out.success());
        let _ = child.wait();
        assert!(
            wait_for(|| processes_with(&needle).is_empty(), 10),
            "the RUN's processes are gone after kill -{signal}"
        );
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(store.to_str().unwrap()),
            "no mount left under the store after kill -{signal}"
        );
        // Every blob in the store is whole: its content hashes to its name.
        for e in fs::read_dir(store.join("blobs/sha256")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert_eq!(sha256_hex(&fs::read(e.path()).unwrap()), name);
        }
        // The next build works, and prune clears the dead build's scratch space.
        write(&ws.ctx(), "Dockerfile", "FROM base\nRUN echo again > /x\n");
        let o = ws.rbuild(&["--build-context", &bc, "-q"], &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = ws.cmd(&["prune"], &[]);
        assert!(o.status.success());
        let left = fs::read_dir(store.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "scratch space cleared");
    }
}

/// Kill -9 at moments spread over a whole build — pull, extract, COPY, RUN, layer write,
/// export, push — on one store, again and again: after each kill no process or mount is left,
/// `rbuild check` finds no damage, and at the end a build completes and pushes an image
/// skopeo reads. `RBUILD_KILL_LOOPS` sets the number of kills (default 10; more by hand).
#[test]
fn killing_a_build_at_random_moments_never_damages_the_store() {
    use crate::support::registry::{Mode, Registry};
    let loops: u64 = std::env::var("RBUILD_KILL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("RBUILD_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7919);
    let reg = Registry::start(Mode::Plain);
    let ws = Workspace::new();
    let base = ws.tmp.path().join("busybox");
    crate::support::layout::busybox_layout(&base);
    crate::support::tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", base.display()),
            &format!("docker://{}/library/busybox:v1", reg.host),
        ],
    );
    fs::create_dir_all(ws.ctx()).unwrap();
    fs::write(ws.ctx().join("big.bin"), noise(5, 16 << 20)).unwrap();
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!(
            "FROM {}/library/busybox:v1\nCOPY big.bin /data/\nARG N\n\
             RUN dd if=/dev/urandom of=/run-$N bs=1M count=32 2>/dev/null && echo $N > /n\n\
             COPY gen.txt /\n",
            reg.host
        ),
    );
    let name = format!("{}/team/app:v1", reg.host);
    let out = ws.oci_output();
    let store = ws.store();
    let build = |n: u64| {
        write(&ws.ctx(), "gen.txt", &n.to_string());
        std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .args(["-t", &name, "--push", "-o", &out, "--progress", "plain"])
            .args(["--build-arg", &format!("N={n}"), "--root"])
            .arg(&store)
            .arg(ws.ctx())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let check = |when: &str| {
        let o = ws.cmd(&["check"], &[]);
        assert!(
            o.status.success(),
            "rbuild check after {when}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let t0 = Instant::now();
    let o = build(0).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = t0.elapsed();
    let mut x = seed;
    for i in 1..=loops {
        if i % 2 == 1 {
            // From nothing again: the next build pulls and extracts the base.
            assert!(ws.cmd(&["prune", "--all"], &[]).status.success());
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = full.mul_f64((x % 1000) as f64 / 1000.0);
        let mut child = build(i);
        std::thread::sleep(delay);
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&o.stderr);
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        eprintln!(
            "kill {i} after {delay:?} ({}): {last}",
            if o.status.success() {
                "finished first"
            } else {
                "killed"
            }
        );
        assert!(
            wait_for(|| processes_with("if=/dev/urandom").is_empty(), 10),
            "the RUN's processes are gone after kill {i}"
        );
        check(&format!("kill {i} after {delay:?} at {last:?}"));
    }
    let o = build(loops + 1).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check("the last build");
    let pinned = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let digest = pinned.split_once('@').expect("name@digest").1.to_string();
    let v: serde_json::Value = serde_json::from_slice(
        &crate::support::tool(
            "skopeo",
            &["inspect", "--tls-verify=false", &format!("docker://{name}")],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest);
}
