//! Shared test helpers: a workspace (context, store, output) around the rbuild binary,
//! third-party tools, OCI layouts made by hand, the conformance corpus and pass counts.
#![allow(dead_code)]

pub mod faults;
pub mod layout;
pub mod registry;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The conformance corpus (`RBUILD_CONFORMANCE_DIR`, default `../shared/conformance`).
/// Missing corpus: a failure under `CI=true`, a loud skip otherwise.
pub fn conformance_dir(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    let dir = base.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "conformance corpus {} is missing: CI must run it (set RBUILD_CONFORMANCE_DIR or check out ../shared)",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: conformance corpus {} not found (set RBUILD_CONFORMANCE_DIR)",
        dir.display()
    );
    None
}

/// Collects pass/fail per case and reports `name: N/M passed`, failing with the details.
pub struct Tally {
    name: String,
    passed: usize,
    failures: Vec<String>,
}

impl Tally {
    /// A new tally for one corpus.
    pub fn new(name: &str) -> Tally {
        Tally {
            name: name.to_string(),
            passed: 0,
            failures: Vec::new(),
        }
    }

    /// Records one case.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(what());
        }
    }

    /// Prints the count and panics when anything failed (or nothing ran).
    pub fn finish(self) {
        let total = self.passed + self.failures.len();
        println!(
            "conformance {}: {}/{} passed",
            self.name, self.passed, total
        );
        assert!(total > 0, "{}: no cases found", self.name);
        if !self.failures.is_empty() {
            let shown: Vec<_> = self.failures.iter().take(25).cloned().collect();
            panic!(
                "{}: {} of {} failed:\n{}",
                self.name,
                self.failures.len(),
                total,
                shown.join("\n---\n")
            );
        }
    }
}

/// Runs the rbuild binary.
pub fn rbuild(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("rbuild runs")
}

/// Runs the rbuild binary with `stdin` as its standard input.
pub fn rbuild_stdin(args: &[&str], envs: &[(&str, &str)], stdin: impl AsRef<[u8]>) -> Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("rbuild runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_ref())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a third-party tool, failing with an install hint when it is missing.
pub fn tool(name: &str, args: &[&str]) -> Output {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name} is required for this test ({e}); install it with `apt-get install {name}` (scripts/test.sh does)")
    });
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a file, creating parents.
pub fn write(dir: &Path, rel: &str, data: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// A temp directory with a context (`ctx/`), a store (`store/`) and an output dir (`out/`).
pub struct Workspace {
    pub tmp: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    pub fn ctx(&self) -> PathBuf {
        self.tmp.path().join("ctx")
    }
    pub fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }
    /// `-o type=oci,dest=<out>`.
    pub fn oci_output(&self) -> String {
        format!("type=oci,dest={}", self.out().display())
    }
    /// The store root.
    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// Runs an rbuild subcommand (`pull`, `push`, ...) with `--root <store>` appended.
    pub fn cmd(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let root = self.store();
        let mut all = args.to_vec();
        all.extend(["--root", root.to_str().unwrap()]);
        rbuild(&all, envs)
    }

    /// Runs rbuild with `args`, then `--root <store> <ctx>`.
    pub fn rbuild(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let root = self.tmp.path().join("store");
        let ctx = self.ctx();
        let mut all = args.to_vec();
        all.extend(["--root", root.to_str().unwrap(), ctx.to_str().unwrap()]);
        rbuild(&all, envs)
    }
}

/// `len` incompressible bytes (xorshift from `seed`): layers as large on the wire as on disk.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// True when the tests run as root (ownership is only preserved then).
pub fn is_root() -> bool {
    rustix_free_euid() == 0
}

fn rustix_free_euid() -> u32 {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

impl Workspace {
    /// Builds the context with `-t app:v1 -o type=oci,dest=<out>` plus `args`; panics with
    /// rbuild's stderr on failure.
    pub fn build_ok(&self, args: &[&str]) -> Output {
        self.build_ok_from(self.ctx().to_str().unwrap(), args)
    }

    /// Like [`Workspace::build_ok`] for another context (a directory or a URL).
    pub fn build_ok_from(&self, context: &str, args: &[&str]) -> Output {
        let out = self.oci_output();
        let root = self.store();
        let mut all = vec!["-t", "app:v1", "-o", &out];
        all.extend_from_slice(args);
        all.extend(["--root", root.to_str().unwrap(), context]);
        let o = rbuild(&all, &[]);
        assert!(
            o.status.success(),
            "build of {context} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// The named files of the context as a tar archive (`gzip`: compressed), as
    /// `tar -C ctx -c` makes it.
    pub fn context_tar(&self, names: &[&str], gzip: bool) -> Vec<u8> {
        let ctx = self.ctx();
        let mut args = vec![
            "-C",
            ctx.to_str().unwrap(),
            if gzip { "-czf" } else { "-cf" },
            "-",
        ];
        args.extend_from_slice(names);
        tool("tar", &args).stdout
    }

    /// GNU tar's verbose listing (numeric owners) of each layer of `<out>:v1`, found through
    /// skopeo's view of the manifest.
    pub fn layer_listings(&self) -> Vec<String> {
        let image = format!("oci:{}:v1", self.out().display());
        let m: serde_json::Value =
            serde_json::from_slice(&tool("skopeo", &["inspect", "--raw", &image]).stdout).unwrap();
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let d = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
                let blob = self.out().join("blobs/sha256").join(d);
                let out = tool("tar", &["--numeric-owner", "-tvzf", blob.to_str().unwrap()]);
                String::from_utf8(out.stdout).unwrap()
            })
            .collect()
    }

    /// A busybox base layout in the workspace, as the `--build-context` value that names it
    /// `base` (`FROM base`).
    pub fn busybox_base(&self) -> String {
        let base = self.tmp.path().join("busybox");
        layout::busybox_layout(&base);
        format!("base=oci-layout://{}:v1", base.display())
    }

    /// Unpacks `<out>:v1` with umoci and returns the rootfs.
    pub fn unpack(&self) -> PathBuf {
        let bundle = self.tmp.path().join("bundle");
        let _ = fs::remove_dir_all(&bundle);
        let image = format!("{}:v1", self.out().display());
        let mut args = vec!["unpack"];
        if !is_root() {
            args.push("--rootless");
        }
        args.extend(["--image", &image, bundle.to_str().unwrap()]);
        tool("umoci", &args);
        bundle.join("rootfs")
    }

    /// Unpacks `<out>:v1` with umoci and runs it with runc (no rlimits, no terminal, as this
    /// machine kind needs); returns the bundle's config and what the container printed.
    pub fn runc_run(&self) -> (serde_json::Value, String) {
        let bundle = self.tmp.path().join("runc-bundle");
        let _ = fs::remove_dir_all(&bundle);
        let image = format!("{}:v1", self.out().display());
        tool(
            "umoci",
            &["unpack", "--image", &image, bundle.to_str().unwrap()],
        );
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = false.into();
        cfg["process"].as_object_mut().unwrap().remove("rlimits");
        fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let state = self.tmp.path().join("runc-state");
        let id = format!(
            "rbuild-test-{}-{}",
            std::process::id(),
            self.tmp
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches('.')
        );
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
        (cfg, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Python's `http.server` on 127.0.0.1 serving a directory; stopped on drop.
pub struct HttpServer {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
}

impl HttpServer {
    /// Serves `dir` on a free port.
    pub fn serve(dir: &Path) -> HttpServer {
        use std::io::BufRead;
        let script = "import http.server,sys,os\n\
os.chdir(sys.argv[1])\n\
s=http.server.ThreadingHTTPServer(('127.0.0.1',0),http.server.SimpleHTTPRequestHandler)\n\
print(s.server_address[1],flush=True)\n\
s.serve_forever()\n";
        let mut child = Command::new("python3")
            .args(["-c", script, dir.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 is required for the HTTP tests");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        HttpServer {
            port: line.trim().parse().expect("server port"),
            child,
        }
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
