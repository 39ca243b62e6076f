//! Registry passwords and tokens are never printed, not even with `--debug`, which logs every
//! request; nor do they reach the store.

use base64::Engine as _;

use crate::support::registry::{Mode, Registry, PASS, USER};
use crate::support::{rbuild_stdin, write, Workspace};

fn all_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => all_files(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

#[test]
fn debug_output_shows_requests_but_no_password_or_token() {
    for mode in [Mode::Token, Mode::HtpasswdTls] {
        let reg = Registry::start(mode);
        let ws = Workspace::new();
        let docker = ws.tmp.path().join("docker");
        let mut env = vec![("DOCKER_CONFIG", docker.to_str().unwrap().to_string())];
        if mode == Mode::HtpasswdTls {
            env.push((
                "RBUILD_CERTS_D",
                reg.certs_d().to_str().unwrap().to_string(),
            ));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = rbuild_stdin(
            &[
                "login",
                &reg.host,
                "-u",
                USER,
                "--password-stdin",
                "--debug",
            ],
            &env,
            PASS,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        write(&ws.ctx(), "a.txt", "a\n");
        write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY a.txt /\n");
        let name = format!("{}/team/app:v1", reg.host);
        let push = ws.rbuild(
            &["-t", &name, "--push", "--debug", "--progress", "plain"],
            &env,
        );
        assert!(
            push.status.success(),
            "{}",
            String::from_utf8_lossy(&push.stderr)
        );
        let pull = ws.cmd(&["pull", &name, "-D"], &env);
        assert!(
            pull.status.success(),
            "{}",
            String::from_utf8_lossy(&pull.stderr)
        );

        let printed: String = [&o, &push, &pull]
            .iter()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .collect();
        let scheme = if mode == Mode::Token {
            "Bearer"
        } else {
            "Basic"
        };
        // The requests are there, with the credential's scheme and nothing of its value.
        assert!(
            printed.contains("debug: PUT ")
                && printed.contains(&format!("[auth: {scheme} <redacted>]")),
            "{printed}"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
        for secret in [PASS, basic.as_str(), "eyJ"] {
            assert!(!printed.contains(secret), "{secret:?} printed:\n{printed}");
        }
        // Nothing under the store holds them either.
        let mut files = Vec::new();
        all_files(&ws.store(), &mut files);
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            for secret in [PASS, basic.as_str()] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret:?} in {}",
                    f.display()
                );
            }
        }
    }
}
