//! `rbuild -t app:v1 .` for Dockerfiles without RUN: images checked by skopeo and umoci.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{is_root, tool, write, Workspace};

/// A context with sources, a symlink, an ignored directory and a Dockerfile.
fn app_context(dir: &Path) {
    write(dir, "src/a.txt", "hello\n");
    write(dir, "src/b.txt", "world\n");
    std::os::unix::fs::symlink("a.txt", dir.join("src/link")).unwrap();
    write(dir, "node_modules/x/index.js", "ignored\n");
    write(dir, ".dockerignore", "node_modules\n");
    write(
        dir,
        "Dockerfile",
        "FROM scratch\n\
         WORKDIR /app\n\
         COPY src/ ./src/\n\
         COPY --chmod=0600 --chown=1000:1000 src/a.txt /etc/secret\n\
         ARG WHO=builder\n\
         COPY <<EOF /app/greeting\nhi $WHO\nEOF\n\
         ENV NAME=world PATH=/bin\n\
         LABEL org.example.team=\"platform\"\n\
         EXPOSE 8080 53/udp\n\
         USER 1000:1000\n\
         STOPSIGNAL SIGTERM\n\
         ENTRYPOINT [\"/app/run\"]\n\
         CMD [\"--help\"]\n",
    );
}

struct Built {
    ws: Workspace,
    digest: String,
}

impl Built {
    fn out(&self) -> PathBuf {
        self.ws.out()
    }
}

fn build_app(extra_env: &[(&str, &str)]) -> Built {
    let ws = Workspace::new();
    app_context(&ws.ctx());
    let o = ws.rbuild(&["-t", "app:v1", "-o", &ws.oci_output()], extra_env);
    assert!(
        o.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let digest = String::from_utf8(o.stdout).unwrap().trim().to_string();
    Built { ws, digest }
}

#[test]
fn config_is_what_docker_inspect_users_expect() {
    let b = build_app(&[]);
    let image = format!("oci:{}:v1", b.out().display());
    let inspect: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", &image]).stdout).unwrap();
    assert_eq!(inspect["Digest"], b.digest.as_str());
    let cfg: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", "--config", &image]).stdout).unwrap();
    let c = &cfg["config"];
    assert_eq!(c["Env"], serde_json::json!(["NAME=world", "PATH=/bin"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/app/run"]));
    assert_eq!(c["Cmd"], serde_json::json!(["--help"]));
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(c["Labels"]["org.example.team"], "platform");
    let history = cfg["history"].as_array().unwrap();
    assert_eq!(history.len(), 12, "one history entry per instruction");
    let layers = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(layers, cfg["rootfs"]["diff_ids"].as_array().unwrap().len());
    assert!(history[1]["created_by"]
        .as_str()
        .unwrap()
        .starts_with("COPY src/ ./src/"));
    assert_eq!(history[5]["empty_layer"], true);
}

#[test]
fn files_in_the_unpacked_rootfs() {
    let b = build_app(&[]);
    let bundle = b.out().parent().unwrap().join("bundle");
    let rootless = is_root().then_some(vec![]).unwrap_or(vec!["--rootless"]);
    let mut args = vec!["unpack"];
    args.extend(rootless.iter().copied());
    let image = format!("{}:v1", b.out().display());
    let bundle_s = bundle.to_str().unwrap().to_string();
    args.extend(["--image", &image, &bundle_s]);
    tool("umoci", &args);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs::read_to_string(rootfs.join("app/src/a.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::read_link(rootfs.join("app/src/link")).unwrap(),
        PathBuf::from("a.txt")
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("app/greeting")).unwrap(),
        "hi builder\n"
    );
    assert!(!rootfs.join("app/node_modules").exists() && !rootfs.join("node_modules").exists());
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let secret = fs::metadata(rootfs.join("etc/secret")).unwrap();
    assert_eq!(secret.permissions().mode() & 0o7777, 0o600);
    if is_root() {
        assert_eq!((secret.uid(), secret.gid()), (1000, 1000));
    }
}

#[test]
fn source_date_epoch_gives_the_same_digest_twice() {
    let a = build_app(&[("SOURCE_DATE_EPOCH", "1700000000")]);
    let b = build_app(&[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert_eq!(a.digest, b.digest);
    let c = build_app(&[("SOURCE_DATE_EPOCH", "1700000001")]);
    assert_ne!(a.digest, c.digest);
}

#[test]
fn an_oci_layout_is_a_base_for_the_next_build() {
    let base = build_app(&[]);
    let ws = Workspace::new();
    let ctx = ws.ctx();
    write(&ctx, "extra.txt", "more\n");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM oci-layout://{}:v1\nCOPY extra.txt /app/\nENTRYPOINT [\"/app/other\"]\n",
            base.out().display()
        ),
    );
    let o = ws.rbuild(&["build", "-t", "child:1", "-o", &ws.oci_output()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: Value = serde_json::from_slice(
        &tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                &format!("oci:{}:1", ws.out().display()),
            ],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(cfg["config"]["Env"][0], "NAME=world", "ENV is inherited");
    assert_eq!(
        cfg["config"]["Entrypoint"],
        serde_json::json!(["/app/other"])
    );
    assert!(
        cfg["config"]["Cmd"].is_null(),
        "a new ENTRYPOINT resets the inherited CMD"
    );
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 5);
    // The same base through --build-context NAME=oci-layout://...
    write(&ctx, "Dockerfile", "FROM mybase\nCOPY extra.txt /app/\n");
    let named = format!("mybase=oci-layout://{}:v1", base.out().display());
    let o = ws.rbuild(&["-t", "child:2", "--build-context", &named], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn multi_stage_copy_from_and_target() {
    let ws = Workspace::new();
    let ctx = ws.ctx();
    write(&ctx, "a.txt", "A\n");
    write(&ctx, "Dockerfile", "FROM scratch AS Build\nCOPY a.txt /out/a.txt\nFROM scratch AS unused\nCOPY missing /x\nFROM scratch\nCOPY --from=build /out/a.txt /final.txt\n");
    let o = ws.rbuild(&["-t", "ms:1", "-o", &ws.oci_output()], &[]);
    assert!(
        o.status.success(),
        "unused stages are not built: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ws.rbuild(&["-t", "ms:2", "--target", "unused"], &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("\"missing\" not found in the build context")
    );
}

#[test]
fn hundreds_of_stages_and_the_root_of_an_empty_one_build() {
    let ws = Workspace::new();
    let mut df = String::new();
    for i in 0..300 {
        df.push_str(&format!("FROM scratch AS s{i}\nLABEL i={i}\n"));
    }
    df.push_str("FROM scratch\n");
    for i in 0..300 {
        df.push_str(&format!("COPY --from=s{i} / /s{i}/\n"));
    }
    write(&ws.ctx(), "Dockerfile", &df);
    ws.build_ok(&[]);
    let root = ws.unpack();
    for i in [0, 150, 299] {
        assert!(root.join(format!("s{i}")).is_dir(), "/s{i} missing");
    }
}

#[test]
fn clear_errors_for_what_users_get_wrong() {
    let ws = Workspace::new();
    let ctx = ws.ctx();
    write(&ctx, "secret.env", "x");
    write(&ctx, ".dockerignore", "*.env\n");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY secret.env /\n");
    let o = ws.rbuild(&["-t", "x:1"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Dockerfile:2")
            && err.contains("excluded by .dockerignore")
            && err.contains("hint:"),
        "{err}"
    );

    let o = ws.rbuild(&["-t", "App:Latest"], &[]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "invalid tag has its own exit code"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("use `app:Latest`"));

    write(&ctx, "Dockerfile", "FROM scratch\nCOPY ../etc/passwd /\n");
    let o = ws.rbuild(&[], &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the build context"));

    write(&ctx, "Dockerfile", "FROM scratch\nRUNN echo\n");
    let o = ws.rbuild(&[], &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `RUN`?"));

    // A device or a huge file named by -f is refused after 16 MiB, not read until memory ends.
    let o = ws.rbuild(&["-f", "/dev/zero"], &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/dev/zero is larger than 16 MiB"));
}

#[test]
fn config_values_docker_refuses_are_errors_at_their_line() {
    let ws = Workspace::new();
    let ctx = ws.ctx();
    for (line, expect) in [
        (
            "STOPSIGNAL SIGFOO",
            "invalid signal \"SIGFOO\" in STOPSIGNAL",
        ),
        ("STOPSIGNAL 0", "invalid signal \"0\" in STOPSIGNAL"),
        ("ARG =x", "ARG names can not be blank"),
        (
            "HEALTHCHECK --interval=99999999999999999h CMD true",
            "out of range",
        ),
    ] {
        write(&ctx, "Dockerfile", &format!("FROM scratch\n{line}\n"));
        let o = ws.rbuild(&["-t", "x:1"], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{line}: {err}");
        assert!(
            err.contains("Dockerfile:2") && err.contains(expect),
            "{line}: {err}"
        );
    }
    // What Docker accepts still builds, and lands in the config as written.
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nARG S=rtmin+3\nSTOPSIGNAL $S\n",
    );
    let o = ws.rbuild(&["-t", "x:1", "-o", &ws.oci_output()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = format!("oci:{}:1", ws.out().display());
    let cfg: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", "--config", &image]).stdout).unwrap();
    assert_eq!(cfg["config"]["StopSignal"], "rtmin+3");
}

#[test]
fn platforms_are_normalized_like_docker_and_nonsense_is_refused() {
    let ws = Workspace::new();
    let ctx = ws.ctx();
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nARG TARGETPLATFORM TARGETARCH TARGETVARIANT\nLABEL p=$TARGETPLATFORM a=$TARGETARCH v=$TARGETVARIANT\n",
    );
    // `x86_64` and `aarch64` are what `uname -m` says; Docker reads them as amd64 and arm64,
    // and plain `arm` as arm/v7 (buildx normalizes what it parses).
    for (flag, arch, variant) in [
        ("linux/x86_64", "amd64", ""),
        ("Linux/AARCH64", "arm64", ""),
        ("linux/arm", "arm", "v7"),
    ] {
        let o = ws.rbuild(
            &["-t", "x:1", "--platform", flag, "-o", &ws.oci_output()],
            &[],
        );
        assert!(
            o.status.success(),
            "{flag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let image = format!("oci:{}:1", ws.out().display());
        let cfg: Value =
            serde_json::from_slice(&tool("skopeo", &["inspect", "--config", &image]).stdout)
                .unwrap();
        assert_eq!(cfg["architecture"], arch, "{flag}");
        assert_eq!(cfg["os"], "linux", "{flag}");
        assert_eq!(cfg["config"]["Labels"]["a"], arch, "{flag}");
        assert_eq!(cfg["config"]["Labels"]["v"], variant, "{flag}");
        let platform = format!("linux/{arch}/{variant}");
        assert_eq!(
            cfg["config"]["Labels"]["p"],
            platform.trim_end_matches('/'),
            "{flag}"
        );
    }
    for flag in ["garbage", "linux/", "linux/amd64,linux/arm64"] {
        let o = ws.rbuild(&["-t", "x:1", "--platform", flag], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag}: {err}");
        assert!(
            err.contains(&format!("invalid platform {flag:?}")) && err.contains("hint:"),
            "{flag}: {err}"
        );
    }
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nARG P\nFROM --platform=$P scratch\n",
    );
    let o = ws.rbuild(&["-t", "x:1"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("Dockerfile:3")
            && err.contains("invalid platform \"\"")
            && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn buildx_flags_in_ci_scripts_work_or_say_what_to_use_instead() {
    let ws = Workspace::new();
    write(&ws.ctx(), "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let o = ws.rbuild(
        &[
            "-t",
            "x:1",
            "-o",
            &ws.oci_output(),
            "--annotation",
            "org.opencontainers.image.source=https://example.com/app",
            "--annotation",
            "manifest:org.opencontainers.image.revision=abc123",
            "--provenance=false",
            "--sbom=false",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = format!("oci:{}:1", ws.out().display());
    let m: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", "--raw", &image]).stdout).unwrap();
    assert_eq!(
        m["annotations"],
        serde_json::json!({
            "org.opencontainers.image.source": "https://example.com/app",
            "org.opencontainers.image.revision": "abc123",
        })
    );
    for (args, says) in [
        (&["--load"][..], "docker load"),
        (&["--provenance=mode=max"][..], "--provenance=false"),
        (&["--sbom"][..], "--sbom=false"),
        (&["--annotation", "index:a=b"][..], "manifest:KEY=VALUE"),
        (&["--annotation", "a"][..], "KEY=VALUE"),
    ] {
        let o = ws.rbuild(&[&["-t", "x:1"][..], args].concat(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("hint:") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_dockerfile_or_a_context_archive_on_stdin_builds_like_docker_build_dash() {
    use crate::support::rbuild_stdin;
    let ws = Workspace::new();
    let ctx = ws.ctx();
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY app /app\n");
    write(&ctx, "app/main.js", "console.log(1)\n");
    let store = ws.store();
    let out = ws.oci_output();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["-t", "x:1", "--root", store.to_str().unwrap(), "-o", &out]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push("-".into());
        v
    };
    let run = |extra: &[&str], input: &[u8]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        rbuild_stdin(&a, &[], input)
    };
    // The same context as a directory, as a tar and as a tar.gz: the same image.
    let from_dir = ws.build_ok(&[]);
    let digest = String::from_utf8_lossy(&from_dir.stdout).trim().to_string();
    let tar = ws.context_tar(&["Dockerfile", "app"], false);
    let tgz = ws.context_tar(&["Dockerfile", "app"], true);
    for input in [&tar, &tgz] {
        let o = run(&["-q"], input);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    }
    // A lone Dockerfile builds with an empty context: COPY finds nothing, named <stdin>.
    let o = run(&[], b"FROM scratch\nLABEL from=stdin\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[], b"FROM scratch\nCOPY app /app\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("<stdin>:2"), "{err}");
    // Wrong uses say what to do.
    for (extra, input, says) in [
        (&["-f", "-"][..], &tar[..], "both"),
        (
            &["-f", "nope/Dockerfile"][..],
            &tar[..],
            "has no nope/Dockerfile",
        ),
        (
            &["-f", "Dockerfile"][..],
            &b"FROM scratch\n"[..],
            "not an archive",
        ),
    ] {
        let o = run(extra, input);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(says) && err.contains("hint:"),
            "{extra:?}: {err}"
        );
    }
    // Nothing is left in the store's scratch space.
    let tmp = store.join("tmp");
    assert_eq!(fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
}
