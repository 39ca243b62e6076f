//! Hostile Dockerfiles, words, ignore patterns and references: errors, never panics or hangs.
//! Case count scales with `PROPTEST_CASES` (CI runs a short pass; run longer by hand).

use proptest::prelude::*;
use rbuild::frontend::{dockerignore, instructions::Dockerfile, parser, shell};
use rbuild::reference::Reference;

/// Characters that matter to the grammars, plus some multibyte ones.
fn dockerfile_text() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "ARG ",
        "LABEL ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "SHELL ",
        "--from=",
        "--mount=",
        "<<",
        "<<-",
        "EOF",
        "\n",
        "\\\n",
        "\\",
        "`",
        "# escape=`\n",
        "# syntax=x\n",
        "#",
        "\"",
        "'",
        "[",
        "]",
        "\"a\"",
        ",",
        "=",
        "$",
        "${",
        "}",
        ":-",
        "%%",
        "##",
        "/",
        " ",
        "\t",
        "a",
        "b",
        "é",
        "\u{feff}",
        "\r\n",
        "0",
        "*",
        "?",
        "!",
        "AS ",
        "\u{0}",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

/// `PROPTEST_CASES` or 2000.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn parser_and_instructions_never_panic(text in dockerfile_text()) {
        let _ = parser::parse(&text).map(|p| p.dump());
        let _ = Dockerfile::parse(&text);
    }

    #[test]
    fn lexer_never_panics(word in dockerfile_text(), escape in prop::sample::select(vec!['\\', '`'])) {
        let env = vec![("a".to_string(), "x y".to_string()), ("b".to_string(), String::new())];
        for raw in [false, true] {
            let lex = shell::Lexer { raw_quotes: raw, raw_escapes: raw, skip_unset_env: raw, ..shell::Lexer::new(escape) };
            let _ = lex.process(&word, &env);
        }
    }

    #[test]
    fn ignore_matcher_never_panics(pats in prop::collection::vec("[a-z*?\\[\\]!/\\\\.^-]{0,8}", 0..5), path in "[a-z/.*\\\\]{0,12}") {
        if let Ok(m) = dockerignore::Matcher::new(&pats) {
            let _ = m.excludes(&path);
            let _ = m.excludes_legacy(&path);
        }
        let _ = dockerignore::read_patterns(&pats.join("\n"));
    }

    #[test]
    fn reference_parser_never_panics(s in "[a-zA-Z0-9:/@._\\-\\[\\]]{0,80}") {
        if let Err(e) = Reference::parse(&s) {
            prop_assert!(!e.hint().is_empty());
        }
    }
}

#[test]
fn long_lines_parse_whole() {
    // 60 KB of escapes and quotes on one line: parsed as one RUN, kept verbatim.
    let body = "\\\"'$x ".repeat(10_000);
    let df = parser::parse(&format!("FROM a\nRUN {body}\n")).unwrap();
    assert_eq!(df.instructions()[1].args(), vec![body.trim_end()]);
    let words = shell::Lexer::default()
        .process_words(&"a\\ b ".repeat(10_000), &Vec::new())
        .unwrap();
    assert_eq!(words.len(), 10_000);
    assert_eq!(words[0], "a b");
}

/// The inputs cargo-fuzz found interesting (`fuzz/corpus/TARGET`, grown by
/// `scripts/fuzz.sh`), replayed through the same entry points: the short CI run of the fuzzers.
#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 4] = [
        ("dockerfile", rbuild::fuzzing::dockerfile),
        ("shell_lex", rbuild::fuzzing::shell_lex),
        ("dockerignore", rbuild::fuzzing::dockerignore),
        ("layer_tar", rbuild::fuzzing::layer_tar),
    ];
    for (name, run) in targets {
        let files: Vec<_> = std::fs::read_dir(corpus.join(name))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{name}: {e}"))
            .flatten()
            .collect();
        assert!(
            files.len() > 10,
            "fuzz/corpus/{name} has {} inputs",
            files.len()
        );
        for f in files {
            // A fuzzer running meanwhile may drop an input it has just reduced.
            if let Ok(data) = std::fs::read(f.path()) {
                run(&data);
            }
        }
    }
}

/// `ENV A=$A$A` thirty times would need 8 GiB; the build stops at the line that crosses the
/// limit, before any memory is spent.
#[test]
fn variables_that_double_themselves_are_refused_at_their_line() {
    let ws = crate::support::Workspace::new();
    let mut df = String::from("FROM scratch\nARG A=xxxxxxxx\n");
    df.push_str(&"ARG A=$A$A\n".repeat(30));
    crate::support::write(&ws.ctx(), "Dockerfile", &df);
    let o = ws.rbuild(&["-t", "app:v1"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("Dockerfile:20") && err.contains("variables expand to more than 1 MiB"),
        "{err}"
    );
}

/// Substitutions nested 10,000 deep in two stages (each built on a thread of its own) used
/// to overflow a thread's stack and abort; now an error names the line.
#[test]
fn deeply_nested_substitutions_are_an_error_in_any_stage() {
    let ws = crate::support::Workspace::new();
    let n = 10_000;
    let env = format!("ENV A={}x{}\n", "${a:-".repeat(n), "}".repeat(n));
    let df = format!(
        "FROM scratch AS a\n{env}FROM scratch AS b\n{env}FROM scratch\nCOPY --from=a / /a/\nCOPY --from=b / /b/\n"
    );
    crate::support::write(&ws.ctx(), "Dockerfile", &df);
    let o = ws.rbuild(&["-t", "app:v1"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("substitutions nested more than 256 deep"),
        "{err}"
    );
    assert!(
        err.len() < 2000,
        "the error repeats the whole line: {} bytes",
        err.len()
    );
}
