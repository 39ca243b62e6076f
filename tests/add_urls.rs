//! `ADD <url>`: downloads named after the URL, mode 0600, pinned by `--checksum`, never
//! unpacked; failures say what the server answered or which digest differed.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use sha2::{Digest, Sha256};

use crate::support::{write, HttpServer, Workspace};

#[test]
fn add_downloads_urls_and_checks_the_checksum() {
    let served = tempfile::tempdir().unwrap();
    fs::write(served.path().join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    fs::write(served.path().join("pkg.tar.gz"), b"\x1f\x8bnot really").unwrap();
    let sum = hex::encode(Sha256::digest(b"#!/bin/sh\necho tool\n"));
    let http = HttpServer::serve(served.path());

    let ws = Workspace::new();
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!(
            "FROM scratch\nADD --checksum=sha256:{sum} {} /opt/\nADD {} /opt/\nADD --chmod=755 {} /usr/bin/tool\n",
            http.url("tool.sh"),
            http.url("pkg.tar.gz"),
            http.url("tool.sh"),
        ),
    );
    ws.build_ok(&[]);
    let root = ws.unpack();
    assert_eq!(
        fs::read_to_string(root.join("opt/tool.sh")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        fs::metadata(root.join("opt/tool.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(root.join("usr/bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::read(root.join("opt/pkg.tar.gz")).unwrap(),
        b"\x1f\x8bnot really"
    );
}

#[test]
fn wrong_checksum_and_missing_files_fail_clearly() {
    let served = tempfile::tempdir().unwrap();
    fs::write(served.path().join("a.txt"), "a").unwrap();
    let http = HttpServer::serve(served.path());
    let ws = Workspace::new();
    let wrong = "0".repeat(64);
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!(
            "FROM scratch\nADD --checksum=sha256:{wrong} {} /a.txt\n",
            http.url("a.txt")
        ),
    );
    let o = ws.rbuild(&[], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let actual = hex::encode(Sha256::digest(b"a"));
    assert!(
        err.contains(&actual) && err.contains(&wrong) && err.contains("Dockerfile:2"),
        "{err}"
    );

    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM scratch\nADD {} /x\n", http.url("missing.txt")),
    );
    let o = ws.rbuild(&[], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("404"), "{err}");

    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM scratch\nCOPY {} /x\n", http.url("a.txt")),
    );
    let err = String::from_utf8_lossy(&ws.rbuild(&[], &[]).stderr).into_owned();
    assert!(err.contains("use ADD"), "{err}");
}
