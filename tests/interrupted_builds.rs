//! A build killed in the middle of a RUN (kill -9, or Ctrl-C) leaves no process and no
//! mount behind, nothing half-written in the store, and the next build works.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::{write, Workspace};

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
