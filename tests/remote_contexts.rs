//! Remote build contexts, as `docker build URL` takes them: a Git repository (cloned with the
//! `git` program, `#REF:DIR` picks a branch, tag or commit and a directory, the history stays
//! out of the image) and a file over HTTP (a context archive, or a Dockerfile). A real
//! `git daemon` and an HTTP server on 127.0.0.1 serve them.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{write, HttpServer, Workspace};

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is required (apt-get install git; scripts/test.sh does)");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `git daemon` serving every repository under `base`; stopped on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn serve(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself (not the `git daemon` wrapper), so killing it stops the server.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .unwrap()
            .stdout;
        let exec_path = String::from_utf8(exec_path).unwrap();
        let mut child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon runs");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return GitDaemon { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("git daemon did not listen on {port}");
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn layer_text(ws: &Workspace) -> String {
    ws.layer_listings().join("")
}

#[test]
fn a_git_repository_is_a_context_at_a_ref_and_directory() {
    let ws = Workspace::new();
    let base = ws.tmp.path().join("git");
    let repo = base.join("app.git");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    write(&repo, "Dockerfile", "FROM scratch\nCOPY . /src/\n");
    write(&repo, "version.txt", "v1\n");
    write(&repo, "svc/Dockerfile", "FROM scratch\nCOPY . /svc/\n");
    write(&repo, "svc/svc.txt", "service\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    write(&repo, "version.txt", "v2\n");
    git(&repo, &["commit", "-q", "-am", "two"]);
    let daemon = GitDaemon::serve(&base);
    let url = format!("git://127.0.0.1:{}/app.git", daemon.port);

    // The default branch, without .git.
    ws.build_ok_from(&url, &[]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("src/version.txt")).unwrap(),
        "v2\n"
    );
    assert!(!root.join("src/.git").exists());
    assert!(!layer_text(&ws).contains(".git/"));
    // A tag, and a directory of it with its own Dockerfile.
    ws.build_ok_from(&format!("{url}#v1"), &[]);
    assert_eq!(
        fs::read_to_string(ws.unpack().join("src/version.txt")).unwrap(),
        "v1\n"
    );
    ws.build_ok_from(&format!("{url}#v1:svc"), &[]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("svc/svc.txt")).unwrap(),
        "service\n"
    );
    assert!(!root.join("svc/version.txt").exists());

    for (arg, says) in [
        (format!("{url}#no-such-ref"), "no-such-ref"),
        (format!("{url}#v1:nodir"), "no directory \"nodir\""),
        (
            format!("{url}#--upload-pack=touch /tmp/rbuild-pwned"),
            "is not a Git ref",
        ),
        (
            format!("git://127.0.0.1:{}/missing.git", daemon.port),
            "missing.git",
        ),
    ] {
        let o = crate::support::rbuild(
            &["-t", "x:1", "--root", ws.store().to_str().unwrap(), &arg],
            &[],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{arg}");
        assert!(err.contains(says) && err.contains("hint:"), "{arg}: {err}");
    }
    assert!(!Path::new("/tmp/rbuild-pwned").exists());
    // The clones are gone from the store's scratch space.
    let tmp = ws.store().join("tmp");
    assert_eq!(fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn a_url_to_an_archive_or_a_dockerfile_is_a_context() {
    let ws = Workspace::new();
    let ctx = ws.ctx();
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY app /app\n");
    write(&ctx, "app/main.js", "console.log(1)\n");
    let local = ws.build_ok(&[]);
    let served = ws.tmp.path().join("www");
    fs::create_dir_all(&served).unwrap();
    let tgz = ws.context_tar(&["Dockerfile", "app"], true);
    fs::write(served.join("ctx.tar.gz"), tgz).unwrap();
    fs::write(
        served.join("Dockerfile.txt"),
        "FROM scratch\nLABEL from=url\n",
    )
    .unwrap();
    let server = HttpServer::serve(&served);
    let remote = |arg: &str| {
        crate::support::rbuild(
            &[
                "-t",
                "x:1",
                "-q",
                "--root",
                ws.store().to_str().unwrap(),
                arg,
            ],
            &[],
        )
    };
    let o = remote(&server.url("ctx.tar.gz"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        o.stdout, local.stdout,
        "the same context makes the same image"
    );
    let o = remote(&server.url("Dockerfile.txt"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = remote(&server.url("nothing-here.tar"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("404") && err.contains("hint:"), "{err}");
}

#[test]
fn a_flaky_server_is_tried_again_and_a_dead_one_fails_after_the_last_try() {
    use crate::support::faults::{rule, Fault, FaultProxy};
    let ws = Workspace::new();
    let served = ws.tmp.path().join("www");
    fs::create_dir_all(&served).unwrap();
    fs::write(served.join("Dockerfile"), "FROM scratch\nLABEL from=url\n").unwrap();
    let server = HttpServer::serve(&served);
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", server.port));
    proxy.set(vec![
        rule("GET", "/Dockerfile", 1, Fault::Status(503, Some(1))),
        rule("GET", "/Dockerfile", 1, Fault::ResetAfter(0)),
        rule("GET", "/Dockerfile", 1, Fault::Status(502, None)),
    ]);
    let url = format!("http://{}/Dockerfile", proxy.host);
    ws.build_ok_from(&url, &[]);
    assert_eq!(proxy.faults().len(), 3, "{:?}", proxy.faults());
    proxy.set(vec![rule(
        "GET",
        "/Dockerfile",
        99,
        Fault::Status(500, None),
    )]);
    let o = crate::support::rbuild(
        &["-t", "x:1", "--root", ws.store().to_str().unwrap(), &url],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("500") && err.contains("5 tries") && err.contains("hint:"),
        "{err}"
    );
}
