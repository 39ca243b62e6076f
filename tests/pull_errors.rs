//! The classic image-pull failures (what a cluster shows as ErrImagePull, ImagePullBackOff,
//! InvalidImageName), each with its own message, hint and exit code, from `rbuild pull` and
//! from a build's FROM.

use crate::support::layout::{file, write_layout};
use crate::support::registry::{Mode, Registry};
use crate::support::{tool, write, Workspace};

fn failure(o: &std::process::Output) -> (i32, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn each_pull_failure_says_what_to_fix() {
    let reg = Registry::start(Mode::Plain);
    let base = tempfile::tempdir().unwrap();
    write_layout(base.path(), "latest", &[vec![file("x", b"x")]]);
    for tag in ["latest", "1.25"] {
        tool(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:latest", base.path().display()),
                &format!("docker://{}/library/nginx:{tag}", reg.host),
            ],
        );
    }
    let ws = Workspace::new();
    let pull = |r: &str| failure(&ws.cmd(&["pull", r], &[]));

    // Malformed reference: exit 4, pointing at the bad part.
    let (code, e) = pull("nginx:la test");
    assert_eq!(code, 4, "{e}");
    assert!(
        e.contains("invalid image reference") && e.contains("hint:"),
        "{e}"
    );

    // Typo in the repository: exit 5, with the close name from the catalog.
    let (code, e) = pull(&format!("{}/library/ngnix:latest", reg.host));
    assert_eq!(code, 5, "{e}");
    assert!(
        e.contains("repository library/ngnix not found")
            && e.contains("did you mean library/nginx"),
        "{e}"
    );

    // Typo in the tag: exit 6, with the closest tags.
    let (code, e) = pull(&format!("{}/library/nginx:latst", reg.host));
    assert_eq!(code, 6, "{e}");
    assert!(
        e.contains("\"latst\"") && e.contains("did you mean latest"),
        "{e}"
    );

    // Nothing listening: exit 8, naming the host.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, e) = pull(&format!("127.0.0.1:{dead}/library/nginx:latest"));
    assert_eq!(code, 8, "{e}");
    assert!(
        e.contains(&format!("127.0.0.1:{dead}")) && e.contains("check the host and port"),
        "{e}"
    );

    // The same classes from a build's FROM.
    write(
        &ws.ctx(),
        "Dockerfile",
        &format!("FROM {}/library/nginx:1.52\n", reg.host),
    );
    let (code, e) = failure(&ws.rbuild(&[], &[]));
    assert_eq!(code, 6, "{e}");
    assert!(e.contains("did you mean 1.25"), "{e}");
    write(&ws.ctx(), "Dockerfile", "FROM Nginx:latest\n");
    let (code, e) = failure(&ws.rbuild(&[], &[]));
    assert_eq!(code, 4, "{e}");
}

#[test]
fn missing_credentials_and_unknown_certificates_have_their_own_codes() {
    let reg = Registry::start(Mode::HtpasswdTls);
    let ws = Workspace::new();
    let empty = ws.tmp.path().join("no-docker-config");
    let certs = reg.certs_d();
    let env = [
        ("DOCKER_CONFIG", empty.to_str().unwrap()),
        ("RBUILD_CERTS_D", certs.to_str().unwrap()),
    ];
    let (code, e) = failure(&ws.cmd(&["pull", &format!("{}/team/app:v1", reg.host)], &env));
    assert_eq!(code, 7, "{e}");
    assert!(
        e.contains(&reg.host) && e.contains("no credentials") && e.contains("rbuild login"),
        "{e}"
    );

    let env = [
        ("DOCKER_CONFIG", empty.to_str().unwrap()),
        ("RBUILD_CERTS_D", "/nonexistent"),
    ];
    let (code, e) = failure(&ws.cmd(&["pull", &format!("{}/team/app:v1", reg.host)], &env));
    assert_eq!(code, 8, "{e}");
    assert!(e.contains("not trusted") && e.contains("ca.crt"), "{e}");
}
