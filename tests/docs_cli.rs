//! docs/cli.md is the CLI reference: `rbuild --help` and every subcommand's help, verbatim.
//! This test fails when they drift apart; `RBUILD_BLESS=1 cargo test docs_cli` rewrites the
//! file from the binary.

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
    let top = help(&["--help"]);
    out.push_str(&format!("## rbuild\n\n```text\n{top}```\n"));
    // Every subcommand the top-level help lists.
    let subcommands: Vec<String> = top
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect();
    assert!(subcommands.len() > 10, "{top}");
    for s in &subcommands {
        out.push_str(&format!(
            "\n## rbuild {s}\n\n```text\n{}```\n",
            help(&[s.as_str(), "--help"])
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
