//! RUN steps without a daemon: the command runs in new mount, PID, UTS and IPC namespaces
//! (and a new network namespace for `--network=none`) over an overlay whose lower layer is the
//! stage's filesystem and whose upper directory becomes the step's layer.
//!
//! The isolation is done in-process with `rustix` rather than through runc: no external
//! runtime to install, no OCI bundle to write, and the same code path serves the later
//! rootless and chroot modes. rbuild re-executes itself (`rbuild __sandbox SPEC`) with the
//! namespaces unshared, so the multi-threaded builder never forks into unsafe territory; the
//! helper mounts the overlay, `/proc`, a minimal `/dev` and the host's resolv.conf/hosts inside
//! its private mount namespace (they vanish with it, even on `kill -9`), then forks the
//! command as PID 1 of the new PID namespace after `pivot_root`.

pub mod chroot;
pub mod limits;
pub mod mounts;
pub mod rootless;
pub mod sandbox;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The host's `/etc/hosts` with the `--add-host` lines (`IP\tHOST`) after it.
pub fn hosts_with(mut host: Vec<u8>, extra_hosts: &[String]) -> Vec<u8> {
    if !host.is_empty() && !host.ends_with(b"\n") {
        host.push(b'\n');
    }
    for l in extra_hosts {
        host.extend_from_slice(l.as_bytes());
        host.push(b'\n');
    }
    host
}

/// What one RUN needs, handed to the sandbox helper as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// Directory holding the per-layer snapshots.
    pub layers_dir: PathBuf,
    /// The stage's layers as snapshot names in `layers_dir`, top first (overlay lowers).
    pub lowers: Vec<String>,
    /// Where the step's changes go.
    pub upper: PathBuf,
    /// Overlay's work directory (same filesystem as `upper`).
    pub work: PathBuf,
    /// Mount point for the merged view.
    pub merged: PathBuf,
    /// The command (already through the stage's SHELL for shell form).
    pub argv: Vec<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the image.
    pub cwd: String,
    /// User and group ids.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Hostname inside.
    pub hostname: String,
    /// No network (`--network=none`).
    pub no_network: bool,
    /// Lines added to the host's `/etc/hosts` (`--add-host`).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// Resource limits (`--ulimit`).
    #[serde(default)]
    pub ulimits: Vec<limits::Ulimit>,
    /// Size of `/dev/shm` in bytes (`--shm-size`); unset is tmpfs's default.
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// `RUN --mount`s, resolved to host paths.
    pub mounts: Vec<SandboxMount>,
    /// A heredoc script to place at [`SCRIPT_PATH`] (on the sandbox's tmpfs `/dev`, so it is
    /// never part of a layer).
    pub script: Option<String>,
}

/// A mount as the sandbox sets it up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SandboxMount {
    /// A host path bound in; `rw` binds of directories get a throw-away overlay on top.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Path in the container.
        target: String,
        /// Read-only.
        readonly: bool,
        /// Writes allowed but discarded (BuildKit's `rw` bind).
        discard_writes: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Path in the container.
        target: String,
    },
    /// Secret number `index` of the helper's secret list, as a read-only file.
    Secret {
        /// Index into the secrets passed by environment.
        index: usize,
        /// Path in the container.
        target: String,
        /// Mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

/// The environment variable carrying secret contents to the helper (never written to disk;
/// the command's own environment is cleared).
pub const SECRETS_ENV: &str = "RBUILD_SANDBOX_SECRETS";

/// Where a heredoc RUN's script is visible inside the sandbox.
pub const SCRIPT_PATH: &str = "/dev/.rbuild-heredoc";

/// RUN failures.
#[derive(Debug, Error)]
pub enum ExecError {
    /// RUN needs privileges this process lacks.
    #[error("RUN needs root, or user namespaces (this system does not allow unprivileged ones)")]
    NotRoot,
    /// The sandbox could not be set up.
    #[error("setting up the RUN sandbox: {0}")]
    Setup(String),
    /// The command failed.
    #[error("{command} exited with code {code}{}", tail_text(.tail))]
    Failed {
        /// The command as shown.
        command: String,
        /// Its exit code (128+N for signal N).
        code: i32,
        /// Its last output lines.
        tail: Vec<String>,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output:\n    {}", tail.join("\n    "))
    }
}

/// Where a command's output lines go (the build's progress display).
pub type OutputSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Output straight to standard error.
pub fn stderr_sink() -> OutputSink {
    Arc::new(|line: &str| {
        let _ = writeln!(std::io::stderr(), "{line}");
    })
}

/// Lines of output kept for the error message.
const TAIL: usize = 15;

/// Runs the step described by `spec` with `secrets` (contents, by [`SandboxMount::Secret`]
/// index); the command's output goes to this process's stderr.
pub fn run(
    spec: &RunSpec,
    secrets: &[Vec<u8>],
    shown: &str,
    out: &OutputSink,
) -> Result<(), ExecError> {
    if !rustix::process::geteuid().is_root() {
        return Err(ExecError::NotRoot);
    }
    let dir = spec.upper.parent().unwrap_or(Path::new("/tmp"));
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(spec).expect("json"))
        .map_err(|e| ExecError::Setup(format!("{}: {e}", spec_path.display())))?;
    let exe = std::env::current_exe().map_err(|e| ExecError::Setup(e.to_string()))?;
    let cmd = Command::new(exe);
    use base64::Engine as _;
    let encoded: Vec<String> = secrets
        .iter()
        .map(|s| base64::engine::general_purpose::STANDARD.encode(s))
        .collect();
    let mut cmd = cmd;
    cmd.arg("__sandbox")
        .arg(&spec_path)
        .env(SECRETS_ENV, serde_json::to_string(&encoded).expect("json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let no_network = spec.no_network;
    // SAFETY: the closure only makes async-signal-safe system calls (prctl, unshare).
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            use rustix::thread::UnshareFlags as F;
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            ));
            let mut flags = F::NEWNS | F::NEWPID | F::NEWUTS | F::NEWIPC;
            if no_network {
                flags |= F::NEWNET;
            }
            rustix::thread::unshare_unsafe(flags).map_err(std::io::Error::from)
        });
    }
    let result = supervise(cmd, shown, "the sandbox", out);
    let _ = std::fs::remove_file(&spec_path);
    result
}

/// Spawns `cmd`, streams its output to stderr (keeping the last lines for errors), waits, and
/// maps its exit status.
pub(crate) fn supervise(
    mut cmd: Command,
    shown: &str,
    what: &str,
    out: &OutputSink,
) -> Result<(), ExecError> {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ExecError::Failed {
                command: shown.to_string(),
                code: 127,
                tail: vec![format!(
                    "{}: not found in the image (or the working directory is missing)",
                    cmd.get_program().to_string_lossy()
                )],
            })
        }
        Err(e) => return Err(ExecError::Setup(format!("starting {what}: {e}"))),
    };
    let tail = Arc::new(Mutex::new(std::collections::VecDeque::<String>::new()));
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let tail = tail.clone();
        let out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                out(&line);
                let mut t = tail.lock().expect("tail lock");
                t.push_back(line);
                if t.len() > TAIL {
                    t.pop_front();
                }
            }
        })
    })
    .collect();
    let status = child
        .wait()
        .map_err(|e| ExecError::Setup(format!("waiting for {what}: {e}")))?;
    for p in pumps {
        let _ = p.join();
    }
    match status.code() {
        Some(0) => Ok(()),
        Some(sandbox::SETUP_FAILED) => Err(ExecError::Setup(
            tail.lock()
                .expect("tail lock")
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        )),
        code => {
            use std::os::unix::process::ExitStatusExt;
            let code = code.unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            Err(ExecError::Failed {
                command: shown.to_string(),
                code,
                tail: tail.lock().expect("tail lock").iter().cloned().collect(),
            })
        }
    }
}
