//! Registry faults, through a fault-injecting proxy in front of the real registry: dropped
//! connections mid-blob, 5xx and 429 with `Retry-After`, slow answers and expiring tokens are
//! retried or resumed; bytes that don't match their digest, oversized manifests and redirects
//! to other hosts are handled without trusting the registry.

use std::fs;

use serde_json::Value;

use crate::support::faults::{rule, BlobHost, Fault, FaultProxy};
use crate::support::layout::{file, write_layout};
use crate::support::registry::{Mode, Registry, PASS, USER};
use crate::support::{noise, tool, write, Workspace};

/// An image pushed by skopeo: its manifest digest, its 3 MB layer's digest, and the OCI
/// layout it came from.
struct Seeded {
    manifest: String,
    big: String,
    layout: tempfile::TempDir,
}

/// Pushes a two-layer image (one 3 MB layer) to `reg` as `repo:v1` with skopeo.
fn seed_image(reg: &Registry, repo: &str, extra: &[String]) -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let big = noise(7, 3 << 20);
    write_layout(
        dir.path(),
        "v1",
        &[vec![file("big.bin", &big)], vec![file("small.txt", b"hi")]],
    );
    let mut args = vec!["copy".to_string(), "--dest-tls-verify=false".to_string()];
    args.extend(extra.iter().cloned());
    args.push(format!("oci:{}:v1", dir.path().display()));
    args.push(format!("docker://{}/{repo}:v1", reg.host));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    tool("skopeo", &refs);
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:v1", dir.path().display()),
        ],
    );
    let m: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layers: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    Seeded {
        manifest: format!("sha256:{}", sha256_hex(&raw.stdout)),
        big: layers[0].clone(),
        layout: dir,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(data))
}

fn blob_path(ws: &Workspace, digest: &str) -> std::path::PathBuf {
    ws.store()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_pull_survives_dropped_connections_server_errors_and_slow_answers() {
    let reg = Registry::start(Mode::Plain);
    let Seeded { manifest, big, .. } = seed_image(&reg, "team/app", &[]);
    let proxy = FaultProxy::start(&reg.host);
    proxy.set(vec![
        rule("GET", "/manifests/v1", 1, Fault::Status(503, None)),
        rule("GET", "/manifests/v1", 1, Fault::Status(429, Some(1))),
        rule(
            "GET",
            format!("/blobs/{big}"),
            1,
            Fault::ResetAfter(1 << 20),
        ),
        rule(
            "GET",
            format!("/blobs/{big}"),
            1,
            Fault::Slow(std::time::Duration::from_secs(2)),
        ),
        rule("GET", "/blobs/", 1, Fault::Status(502, None)),
    ]);
    let ws = Workspace::new();
    let o = ws.cmd(&["pull", &format!("{}/team/app:v1", proxy.host)], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&manifest),
        "pulled digest differs from the registry's {manifest}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        proxy.unused().is_empty(),
        "faults not hit: {:?}",
        proxy.unused()
    );
    // The dropped download resumed where it stopped instead of starting over.
    let resumed = proxy
        .seen()
        .into_iter()
        .filter(|s| s.path.contains(&big))
        .filter_map(|s| s.header("range").map(str::to_string))
        .collect::<Vec<_>>();
    assert!(
        resumed
            .iter()
            .any(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "no ranged request after the reset: {resumed:?}"
    );
    let stored = fs::read(blob_path(&ws, &big)).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&stored)), big);
}

#[test]
fn bytes_that_do_not_match_their_digest_and_oversized_manifests_are_refused() {
    let reg = Registry::start(Mode::Plain);
    let big = seed_image(&reg, "team/app", &[]).big;
    let proxy = FaultProxy::start(&reg.host);
    let image = format!("{}/team/app:v1", proxy.host);
    let ws = Workspace::new();

    // A layer whose bytes were altered on the way: refused, nothing stored under its digest.
    proxy.set(vec![rule(
        "GET",
        format!("/blobs/{big}"),
        1000,
        Fault::Corrupt,
    )]);
    let o = ws.cmd(&["pull", &image], &[]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains(&big) && e.contains("refused"), "{e}");
    assert!(!blob_path(&ws, &big).exists());

    // A manifest pinned by digest whose bytes differ: refused.
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/team/app:v1", reg.host),
        ],
    )
    .stdout;
    let pinned = format!("{}/team/app@sha256:{}", proxy.host, sha256_hex(&raw));
    proxy.set(vec![rule("GET", "/manifests/", 1000, Fault::Corrupt)]);
    let o = ws.cmd(&["pull", &pinned], &[]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("hashes to") && e.contains("refused"), "{e}");

    // A manifest of 5 MB: refused before it is parsed.
    let huge = format!(
        "{{\"schemaVersion\":2,\"pad\":\"{}\"}}",
        "x".repeat(5 << 20)
    );
    proxy.set(vec![rule(
        "GET",
        "/manifests/",
        1000,
        Fault::Body(
            "application/vnd.oci.image.manifest.v1+json",
            huge.into_bytes(),
        ),
    )]);
    let o = ws.cmd(&["pull", &image], &[]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("larger than") && e.contains("refused"), "{e}");
}

#[test]
fn a_registry_that_keeps_failing_gives_a_clear_error_after_the_last_try() {
    let reg = Registry::start(Mode::Plain);
    seed_image(&reg, "team/app", &[]);
    let proxy = FaultProxy::start(&reg.host);
    proxy.set(vec![rule(
        "GET",
        "/manifests/",
        1000,
        Fault::Status(503, None),
    )]);
    let ws = Workspace::new();
    let o = ws.cmd(&["pull", &format!("{}/team/app:v1", proxy.host)], &[]);
    let e = stderr(&o);
    assert!(!o.status.success());
    let tries = proxy.faults().len();
    assert!(tries >= 3, "retried only {tries} times");
    assert!(
        e.contains(&proxy.host) && e.contains("503") && e.contains(&format!("{tries} tries")),
        "{e}"
    );
    assert!(e.contains("hint:") && e.contains("try again later"), "{e}");

    // A registry that accepts the connection and never answers: given up after the stall
    // timeout on every try, with the host named.
    proxy.set(vec![rule("GET", "/manifests/", 1000, Fault::Stall)]);
    let o = ws.cmd(
        &["pull", &format!("{}/team/app:v2", proxy.host)],
        &[("RBUILD_HTTP_TIMEOUT", "1")],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains(&proxy.host) && e.contains("timed out") && e.contains("tries"),
        "{e}"
    );
}

#[test]
fn a_push_survives_cut_uploads_and_server_errors_and_arrives_intact() {
    let reg = Registry::start(Mode::Plain);
    let proxy = FaultProxy::start(&reg.host);
    let ws = Workspace::new();
    // 20 MB: above the single-PUT limit, so the layer goes up in a PATCH session.
    fs::create_dir_all(ws.ctx()).unwrap();
    fs::write(ws.ctx().join("big.bin"), noise(3, 20 << 20)).unwrap();
    write(&ws.ctx(), "small.txt", "small\n");
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY big.bin /\nCOPY small.txt /\n",
    );
    proxy.set(vec![
        rule("HEAD", "/blobs/", 1, Fault::Status(500, None)),
        rule("POST", "/blobs/uploads/", 1, Fault::Status(503, Some(1))),
        rule("PATCH", "/blobs/uploads/", 1, Fault::CutUpload(5 << 20)),
        rule("PUT", "/blobs/uploads/", 1, Fault::CutUpload(100)),
        rule("PUT", "/manifests/", 1, Fault::Status(502, None)),
    ]);
    let name = format!("{}/team/app:v1", proxy.host);
    let o = ws.rbuild(&["-t", &name, "--push"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        proxy.unused().is_empty(),
        "faults not hit: {:?}",
        proxy.unused()
    );
    // The cut PATCH was resumed from what the registry holds (a GET on the session), not
    // sent again from the start.
    let seen = proxy.seen();
    let cut = seen
        .iter()
        .position(|s| {
            s.fault
                .as_deref()
                .is_some_and(|f| f.starts_with("CutUpload(5"))
        })
        .unwrap();
    assert!(
        seen[cut..]
            .iter()
            .any(|s| s.method == "GET" && s.path.contains("/blobs/uploads/")),
        "{:?}",
        seen.iter()
            .map(|s| (&s.method, &s.path, s.status))
            .collect::<Vec<_>>()
    );
    let pinned = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let digest = pinned.split_once('@').expect("name@digest").1.to_string();
    // skopeo, straight from the registry, verifies every blob against its digest.
    let out = ws.tmp.path().join("copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/team/app:v1", reg.host),
            &format!("oci:{}:v1", out.display()),
        ],
    );
    let v: Value = serde_json::from_slice(
        &tool("skopeo", &["inspect", &format!("oci:{}:v1", out.display())]).stdout,
    )
    .unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest);
}

#[test]
fn an_expiring_token_during_a_long_push_is_renewed() {
    let reg = Registry::start(Mode::TokenShortLived);
    let proxy = FaultProxy::start(&reg.host);
    let ws = Workspace::new();
    let o = crate::support::rbuild_stdin(
        &["login", &proxy.host, "-u", USER, "--password-stdin"],
        &[(
            "DOCKER_CONFIG",
            ws.tmp.path().join("docker").to_str().unwrap(),
        )],
        PASS,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    fs::create_dir_all(ws.ctx()).unwrap();
    for i in 0..4 {
        fs::write(
            ws.ctx().join(format!("part{i}.bin")),
            noise(i + 11, 1 << 20),
        )
        .unwrap();
    }
    write(
        &ws.ctx(),
        "Dockerfile",
        "FROM scratch\nCOPY part0.bin /\nCOPY part1.bin /\nCOPY part2.bin /\nCOPY part3.bin /\n",
    );
    // HEAD and upload requests reach the registry 1.5 s late: each is sent with a token that
    // was valid, and the push as a whole outlives several 3-second tokens.
    let late = std::time::Duration::from_millis(1500);
    proxy.set(vec![
        rule("HEAD", "/blobs/", 1000, Fault::Slow(late)),
        rule("PUT", "/blobs/uploads/", 1000, Fault::Slow(late)),
    ]);
    let name = format!("{}/team/app:v1", proxy.host);
    let o = ws.rbuild(
        &["-t", &name, "--push"],
        &[(
            "DOCKER_CONFIG",
            ws.tmp.path().join("docker").to_str().unwrap(),
        )],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The registry itself refused an expired token at least once, and the push went on.
    let seen = proxy.seen();
    let expired = seen
        .iter()
        .filter(|s| s.status == Some(401) && s.header("authorization").is_some())
        .count();
    assert!(
        expired > 0,
        "no token expired during the push: {:?}",
        seen.iter()
            .map(|s| (&s.method, &s.path, s.status))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_redirect_to_another_host_does_not_carry_the_credentials() {
    let reg = Registry::start(Mode::Token);
    let seeded = seed_image(&reg, "team/app", &[format!("--dest-creds={USER}:{PASS}")]);
    let big = seeded.big.clone();
    let proxy = FaultProxy::start(&reg.host);
    let ws = Workspace::new();
    let docker = ws.tmp.path().join("docker");
    let env = [("DOCKER_CONFIG", docker.to_str().unwrap())];
    let o = crate::support::rbuild_stdin(
        &["login", &proxy.host, "-u", USER, "--password-stdin"],
        &env,
        PASS,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The storage host serves the real layer bytes, as a CDN behind a registry would.
    let bytes = fs::read(seeded.layout.path().join("blobs/sha256").join(&big[7..])).unwrap();
    let cdn = BlobHost::start(bytes);
    proxy.set(vec![rule(
        "GET",
        format!("/blobs/{big}"),
        1,
        Fault::Redirect(cdn.url.clone()),
    )]);
    let o = ws.cmd(&["pull", &format!("{}/team/app:v1", proxy.host)], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let asked = proxy
        .seen()
        .into_iter()
        .find(|s| s.path.contains(&big))
        .expect("the blob was requested");
    assert!(
        asked
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer ")),
        "the registry request carried no token: {asked:?}"
    );
    let at_cdn = cdn.seen();
    assert_eq!(at_cdn.len(), 1, "{at_cdn:?}");
    assert!(
        at_cdn[0].header("authorization").is_none(),
        "credentials went to the other host: {:?}",
        at_cdn[0]
    );
}
