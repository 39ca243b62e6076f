//! docs/cli.md is the CLI reference: `rbuild --help` and every subcommand's help, verbatim.
//! This test fails when they drift apart; `RBUILD_BLESS=1 cargo test docs_cli` rewrites the
//! file from the binary.

const SUBCOMMANDS: [&str; 14] = [
    "build",
    "images",
    "rmi",
    "prune",
    "inspect-ref",
    "parse",
    "lint",
    "pin",
    "inspect",
    "pull",
    "push",
    "tag",
    "login",
    "logout",
];

fn reference() -> String {
    let help = |args: &[&str]| {
        // Help shows environment values (`[env: RBUILD_ROOT=...]`): leave them out.
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .args(args)
            .env_remove("RBUILD_ROOT")
            .env_remove("COLUMNS")
            .output()
            .unwrap();
        assert!(o.status.success(), "rbuild {args:?} failed");
        String::from_utf8(o.stdout).unwrap()
    };
    let mut out = String::from(
        "# CLI reference\n\n\
         Generated from the binary (`RBUILD_BLESS=1 cargo test --release docs_cli`); a test\n\
         fails when this file and `rbuild --help` disagree. Exit codes are in the README.\n\n",
    );
    out.push_str(&format!("## rbuild\n\n```text\n{}```\n", help(&["--help"])));
    for s in SUBCOMMANDS {
        out.push_str(&format!(
            "\n## rbuild {s}\n\n```text\n{}```\n",
            help(&[s, "--help"])
        ));
    }
    out
}

#[test]
fn the_cli_reference_matches_the_binary() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let want = reference();
    if std::env::var_os("RBUILD_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/cli.md is out of date; regenerate it with RBUILD_BLESS=1 cargo test --release docs_cli"
    );
}
