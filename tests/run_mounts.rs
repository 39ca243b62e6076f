//! `RUN --mount`: cache directories that persist between builds, secrets that reach the
//! command and nothing else, bind mounts of the context (writes discarded), tmpfs.

use std::fs;

use crate::support::{write, Workspace};

fn all_bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in walk(dir) {
        if let Ok(b) = fs::read(&e) {
            out.extend(b);
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                files.extend(walk(&p));
            } else if ft.is_file() {
                files.push(p);
            }
        }
    }
    files
}

#[test]
fn cache_secret_bind_and_tmpfs_mounts() {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    let secret = format!(
        "s3cr3t-{}-{}",
        std::process::id(),
        ws.tmp.path().display().to_string().len()
    );
    write(&ws.ctx(), "data.txt", "from the context\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\n\
         RUN --mount=type=cache,target=/cache echo run >> /cache/log && cat /cache/log > /seen\n\
         RUN --mount=type=secret,id=token,required cat /run/secrets/token | wc -c > /secret-length\n\
         RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cat /mnt/data.txt > /copy\n\
         RUN --mount=type=bind,target=/ctx,rw touch /ctx/written-by-run\n\
         RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/f && ls /scratch > /scratch-listing\n",
    );
    let env = [("TOKEN_FOR_TEST", secret.as_str())];
    let args = [
        "--build-context",
        &bc,
        "--secret",
        "id=token,env=TOKEN_FOR_TEST",
    ];
    let o = ws.rbuild(&args, &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Second build (every step run again): the cache directory kept the first run's line.
    let out = ws.oci_output();
    let mut with_out = args.to_vec();
    with_out.extend(["--no-cache", "-t", "app:v1", "-o", &out]);
    let o = ws.rbuild(&with_out, &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = ws.unpack();
    assert_eq!(fs::read_to_string(root.join("seen")).unwrap(), "run\nrun\n");
    assert!(
        !root.join("cache/log").exists(),
        "cache contents are not part of the image"
    );
    assert_eq!(
        fs::read_to_string(root.join("secret-length"))
            .unwrap()
            .trim(),
        secret.len().to_string()
    );
    assert!(!root.join("run/secrets/token").exists());
    assert_eq!(
        fs::read_to_string(root.join("copy")).unwrap(),
        "from the context\n"
    );
    assert!(
        !ws.ctx().join("written-by-run").exists(),
        "rw bind writes are discarded"
    );
    assert_eq!(
        fs::read_to_string(root.join("scratch-listing")).unwrap(),
        "f\n"
    );
    assert!(!root.join("scratch/f").exists());
    // The secret is nowhere: not in the store, not in the output, not in rbuild's output.
    for dir in [ws.store(), ws.out(), root.clone()] {
        let bytes = all_bytes_under(&dir);
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret found under {}",
            dir.display()
        );
    }
    assert!(!String::from_utf8_lossy(&o.stderr).contains(&secret));

    // A required secret that was not given fails clearly.
    let o = ws.rbuild(&["--no-cache", "--build-context", &bc], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("secret \"token\" is required")
            && err.contains("--secret id="),
        "{err}"
    );
}

#[test]
fn ssh_mount_forwards_the_agent_socket_and_keeps_it_out_of_the_image() {
    let ws = Workspace::new();
    let bc = ws.busybox_base();
    let sock = ws.tmp.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM base\n\
         RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /agent-seen\n\
         RUN --mount=type=ssh,id=deploy,required true\n",
    );
    let default = format!("default={}", sock.display());
    let deploy = format!("deploy={}", sock.display());
    let o = ws.rbuild(&["--build-context", &bc, "--ssh", &default], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("needs --ssh deploy"),
        "{err}"
    );
    ws.build_ok(&["--build-context", &bc, "--ssh", &default, "--ssh", &deploy]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("agent-seen")).unwrap(),
        "/run/buildkit/ssh_agent.0\n"
    );
    assert!(!root.join("run/buildkit/ssh_agent.0").exists());
    let o = ws.rbuild(
        &["--build-context", &bc, "--ssh", "default=/nonexistent.sock"],
        &[],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a socket"));
}
