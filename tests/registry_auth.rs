//! Registry authentication for real: htpasswd Basic auth over TLS with a generated CA, and the
//! Bearer token flow (`auth: token`, scopes per repository) with a token issuer run by the
//! tests. Credentials come from `rbuild login` (Docker's config.json); failures name the
//! host, what was tried and how to log in, with their own exit codes.

use crate::support::layout::{file, write_layout};
use crate::support::registry::{Mode, Registry, PASS, USER};
use crate::support::{rbuild_stdin, tool, write, Workspace};

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn htpasswd_over_tls_needs_the_ca_and_a_login() {
    let reg = Registry::start(Mode::HtpasswdTls);
    let ws = Workspace::new();
    let docker_config = ws.tmp.path().join("docker");
    let certs = reg.certs_d();
    let env = [
        ("DOCKER_CONFIG", docker_config.to_str().unwrap()),
        ("RBUILD_CERTS_D", certs.to_str().unwrap()),
    ];
    write(&ws.ctx(), "a.txt", "a");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY a.txt /\n");
    let name = format!("{}/team/app:v1", reg.host);

    // No credentials yet: exit 7, what was looked at, how to log in.
    let o = ws.rbuild(&["-t", &name, "--push"], &env);
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("requires authentication") && e.contains("no credentials were found"),
        "{e}"
    );
    assert!(
        e.contains("rbuild login") && e.contains("config.json"),
        "{e}"
    );

    // A wrong password is refused at login and nothing is saved.
    let login = |pw: &str| {
        rbuild_stdin(
            &["login", &reg.host, "-u", USER, "--password-stdin"],
            &env,
            pw,
        )
    };
    let o = login("wrong");
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    assert!(err(&o).contains("rejected"), "{}", err(&o));
    assert!(!docker_config.join("config.json").exists());

    // The right one is saved in Docker's format; then push works and skopeo sees the image.
    let o = login(&format!("{PASS}\n"));
    assert!(o.status.success(), "{}", err(&o));
    let cfg = std::fs::read_to_string(docker_config.join("config.json")).unwrap();
    assert!(cfg.contains(&reg.host) && !cfg.contains(PASS), "{cfg}");
    let o = ws.rbuild(&["-t", &name, "--push"], &env);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!err(&o).contains(PASS) && !String::from_utf8_lossy(&o.stdout).contains(PASS));
    let mut args = vec!["inspect".to_string()];
    args.extend(reg.skopeo_flags(""));
    args.push(format!("docker://{name}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tool("skopeo", &args);

    // Without the CA the TLS failure says where the certificate goes (exit 8).
    let o = ws.cmd(
        &["pull", &name],
        &[
            ("DOCKER_CONFIG", docker_config.to_str().unwrap()),
            ("RBUILD_CERTS_D", "/nonexistent"),
        ],
    );
    assert_eq!(o.status.code(), Some(8), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("certs.d/{}/ca.crt", reg.host)),
        "{}",
        err(&o)
    );

    // SSL_CERT_FILE works as well; logout removes the entry.
    let o = ws.cmd(
        &["pull", &name],
        &[
            ("DOCKER_CONFIG", docker_config.to_str().unwrap()),
            ("RBUILD_CERTS_D", "/nonexistent"),
            ("SSL_CERT_FILE", reg.ca.as_ref().unwrap().to_str().unwrap()),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = ws.cmd(&["images"], &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("team/app:v1"));
    let o = rbuild_stdin(&["logout", &reg.host], &env, "");
    assert!(o.status.success());
    assert!(!std::fs::read_to_string(docker_config.join("config.json"))
        .unwrap()
        .contains(&reg.host));
}

#[test]
fn token_auth_grants_scopes_per_repository() {
    let reg = Registry::start(Mode::Token);
    let creds = format!("--dest-creds={USER}:{PASS}");
    for repo in ["team/base", "public/base"] {
        // Different content per repository, so skopeo does not try a mount of its own.
        let base = tempfile::tempdir().unwrap();
        write_layout(
            base.path(),
            "v1",
            &[vec![file("base.txt", repo.as_bytes())]],
        );
        tool(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &creds,
                &format!("oci:{}:v1", base.path().display()),
                &format!("docker://{}/{repo}:v1", reg.host),
            ],
        );
    }
    let ws = Workspace::new();
    let anon_config = ws.tmp.path().join("anon");
    let anon = [("DOCKER_CONFIG", anon_config.to_str().unwrap())];

    // Anonymous tokens pull public repositories, and nothing else.
    let o = ws.cmd(&["pull", &format!("{}/public/base:v1", reg.host)], &anon);
    assert!(o.status.success(), "{}", err(&o));
    let o = ws.cmd(&["pull", &format!("{}/team/base:v1", reg.host)], &anon);
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));

    // Logged in: build on team/base and push to team/app; the base layer is mounted across
    // repositories (the token carries pull on team/base and push on team/app).
    let config = ws.tmp.path().join("docker");
    let env = [("DOCKER_CONFIG", config.to_str().unwrap())];
    let o = rbuild_stdin(
        &["login", &reg.host, "-u", USER, "--password-stdin"],
        &env,
        PASS,
    );
    assert!(o.status.success(), "{}", err(&o));
    write(&ws.ctx(), "a.txt", "a");
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM {}/team/base:v1\nCOPY a.txt /\n", reg.host),
    );
    let o = ws.rbuild(
        &["-t", &format!("{}/team/app:v1", reg.host), "--push"],
        &env,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("1 mounted"), "{}", err(&o));

    // Pushing where the token grants no push access is refused with exit 7.
    let o = ws.rbuild(
        &["-t", &format!("{}/other/app:v1", reg.host), "--push"],
        &env,
    );
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    assert!(
        err(&o).contains("rejected") || err(&o).contains("lacks access"),
        "{}",
        err(&o)
    );
}

#[test]
fn credential_helpers_named_by_config_json_are_used() {
    let reg = Registry::start(Mode::HtpasswdTls);
    let ws = Workspace::new();
    let bin = ws.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rbuildtest");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"{}\" ] && echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"{PASS}\"}}' && exit 0\necho 'credentials not found in native keychain'; exit 1\n", reg.host),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = ws.tmp.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.json"), r#"{"credsStore":"rbuildtest"}"#).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let certs = reg.certs_d();
    let env = [
        ("DOCKER_CONFIG", config.to_str().unwrap()),
        ("RBUILD_CERTS_D", certs.to_str().unwrap()),
        ("PATH", path.as_str()),
    ];
    write(&ws.ctx(), "a.txt", "a");
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY a.txt /\n");
    let o = ws.rbuild(
        &["-t", &format!("{}/team/app:v1", reg.host), "--push"],
        &env,
    );
    assert!(o.status.success(), "{}", err(&o));
}
