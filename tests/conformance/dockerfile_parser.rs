//! BuildKit's parser vectors and the dumps of real-world Dockerfiles.

use std::fs;

use rbuild::frontend::parser::{self, detect_directive, parse, parse_words};
use serde_json::Value;

use crate::support::{conformance_dir, Tally};

fn read(p: &std::path::Path) -> String {
    String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned()
}

fn sorted_dirs(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn positive_cases_dump_like_buildkit() {
    let Some(dir) = conformance_dir("dockerfile-parser/positive") else {
        return;
    };
    let mut t = Tally::new("dockerfile-parser/positive");
    for case in sorted_dirs(&dir) {
        let expected = read(&case.join("result"));
        let got = parse(&read(&case.join("Dockerfile"))).map(|p| p.dump());
        t.check(got.as_ref().is_ok_and(|g| *g == expected), || {
            format!("{}:\nexpected:\n{expected}\ngot:\n{got:?}", case.display())
        });
    }
    t.finish();
}

#[test]
fn negative_cases_are_rejected() {
    let Some(dir) = conformance_dir("dockerfile-parser/negative") else {
        return;
    };
    let mut t = Tally::new("dockerfile-parser/negative");
    for case in sorted_dirs(&dir) {
        let got = parse(&read(&case.join("Dockerfile")));
        t.check(got.is_err(), || {
            format!("{} parsed: {:?}", case.display(), got.map(|p| p.dump()))
        });
    }
    t.finish();
}

#[test]
fn heredocs_match_buildkit() {
    let Some(dir) = conformance_dir("dockerfile-parser/heredoc") else {
        return;
    };
    let mut t = Tally::new("dockerfile-parser/heredoc");
    let parsed = parse(&read(&dir.join("Dockerfile"))).expect("heredoc Dockerfile parses");
    t.check(parsed.dump() == read(&dir.join("result")), || {
        format!("dump differs:\n{}", parsed.dump())
    });
    let json_form = parse(&read(&dir.join("json-form.Dockerfile"))).unwrap();
    t.check(
        json_form.dump() == read(&dir.join("json-form.result")),
        || "json-form dump differs".into(),
    );
    t.check(
        json_form
            .instructions()
            .iter()
            .all(|n| n.heredocs.is_empty()),
        || "json form has heredocs".into(),
    );

    let expected: Value = serde_json::from_str(&read(&dir.join("expected.json"))).unwrap();
    for (i, exp) in expected["expected"].as_array().unwrap().iter().enumerate() {
        let node = &parsed.instructions()[i + 1];
        let got: Vec<Value> = node
            .heredocs
            .iter()
            .map(|h| serde_json::json!({"name": h.name, "content": h.content, "expand": h.expand, "chomp": h.chomp, "fd": h.fd}))
            .collect();
        let want = if exp.is_null() {
            vec![]
        } else {
            exp.as_array().unwrap().clone()
        };
        t.check(got == want, || {
            format!("child {}: expected {want:?}, got {got:?}", i + 1)
        });
    }
    let instrs: Value = serde_json::from_str(&read(&dir.join("instructions.json"))).unwrap();
    for (i, exp) in instrs["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let node = &parsed.instructions()[i];
        let ok = node.span.start as u64 == exp["start_line"].as_u64().unwrap()
            && node.span.end as u64 == exp["end_line"].as_u64().unwrap()
            && format!("({})", node.dump()) == exp["dump"].as_str().unwrap();
        t.check(ok, || {
            format!(
                "instruction {i}: expected {exp}, got {:?} {}",
                node.span,
                node.dump()
            )
        });
    }

    let helpers: Value = serde_json::from_str(&read(&dir.join("helpers.json"))).unwrap();
    let words = &helpers["parse_heredoc_word"];
    for w in words["valid_name_EOF"].as_array().unwrap() {
        let got = parser::parse_heredoc(w.as_str().unwrap());
        t.check(matches!(&got, Ok(Some(h)) if h.name == "EOF"), || {
            format!("{w}: {got:?}")
        });
    }
    for w in words["error"].as_array().unwrap() {
        let got = parser::parse_heredoc(w.as_str().unwrap());
        t.check(got.is_err(), || format!("{w} should fail: {got:?}"));
    }
    for w in words["not_heredoc"].as_array().unwrap() {
        let got = parser::parse_heredoc(w.as_str().unwrap());
        t.check(matches!(got, Ok(None)), || {
            format!("{w} is no heredoc: {got:?}")
        });
    }
    for row in helpers["heredocs_from_line"].as_array().unwrap() {
        let line = row[0].as_str().unwrap();
        let want: Vec<&str> = row[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let got = parser::heredocs_from_line(line).unwrap();
        let names: Vec<&str> = got.iter().map(|h| h.name.as_str()).collect();
        t.check(names == want, || {
            format!("{line}: expected {want:?}, got {names:?}")
        });
    }
    let chomp = &helpers["chomp"];
    let h = rbuild::frontend::ast::Heredoc {
        name: "E".into(),
        content: chomp["input"].as_str().unwrap().into(),
        expand: true,
        chomp: true,
        fd: 0,
    };
    t.check(h.body() == chomp["output"].as_str().unwrap(), || {
        "chomp".into()
    });
    t.finish();
}

#[test]
fn line_numbers_and_warnings() {
    let Some(dir) = conformance_dir("dockerfile-parser") else {
        return;
    };
    let mut t = Tally::new("dockerfile-parser/line-numbers+warnings");
    let parsed = parse(&read(&dir.join("line-numbers/Dockerfile"))).unwrap();
    let exp: Value = serde_json::from_str(&read(&dir.join("line-numbers/expected.json"))).unwrap();
    t.check(
        parsed.root.span.start as u64 == exp["root"]["start"].as_u64().unwrap()
            && parsed.root.span.end as u64 == exp["root"]["end"].as_u64().unwrap(),
        || format!("root span {:?}", parsed.root.span),
    );
    for (i, c) in exp["children"].as_array().unwrap().iter().enumerate() {
        let s = parsed.instructions()[i].span;
        t.check(
            s.start as u64 == c[0].as_u64().unwrap() && s.end as u64 == c[1].as_u64().unwrap(),
            || format!("child {i}: {s:?} vs {c}"),
        );
    }
    t.check(
        parsed.dump() == read(&dir.join("line-numbers/result")),
        || "line-numbers dump".into(),
    );

    let w = parse(&read(&dir.join("warnings/empty-continuation.Dockerfile"))).unwrap();
    let exp: Value = serde_json::from_str(&read(&dir.join("warnings/expected.json"))).unwrap();
    t.check(
        w.warnings.len() as u64 == exp["warnings"].as_u64().unwrap(),
        || format!("warnings: {:?}", w.warnings),
    );
    for s in exp["warning_short_contains"].as_array().unwrap() {
        t.check(w.warnings[0].short.contains(s.as_str().unwrap()), || {
            format!("warning 1 lacks {s}: {:?}", w.warnings[0])
        });
    }
    t.check(
        w.warnings.get(1).is_some_and(|x| {
            x.short
                .contains(exp["warning2_short_contains"].as_str().unwrap())
        }),
        || "warning 2".into(),
    );
    t.check(
        w.warnings[0]
            .detail
            .contains(exp["detail_contains"].as_str().unwrap()),
        || "detail".into(),
    );
    t.check(
        w.dump() == read(&dir.join("warnings/empty-continuation.result")),
        || "warnings dump".into(),
    );
    t.finish();
}

#[test]
fn vectors_directives_json_words() {
    let Some(dir) = conformance_dir("dockerfile-parser/vectors") else {
        return;
    };
    let mut t = Tally::new("dockerfile-parser/vectors");
    let d: Value = serde_json::from_str(&read(&dir.join("directives.json"))).unwrap();
    for c in d["cases"].as_array().unwrap() {
        let input = c["input"].as_str().unwrap();
        match c["function"].as_str().unwrap() {
            "parse_all" => {
                let got: Vec<(String, String)> = match parse(&format!("{input}FROM x\n")) {
                    Ok(p) => p
                        .directives
                        .iter()
                        .map(|d| (d.name.clone(), d.value.clone()))
                        .collect(),
                    Err(_) => vec![],
                };
                let want: Vec<(String, String)> = c["directives"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        (
                            d["name"].as_str().unwrap().into(),
                            d["value"].as_str().unwrap().into(),
                        )
                    })
                    .collect();
                t.check(got == want, || format!("{input:?}: {got:?} vs {want:?}"));
            }
            f => {
                let key = if f == "detect_syntax" {
                    "syntax"
                } else {
                    "check"
                };
                let got = detect_directive(input, key, f == "detect_syntax");
                let mut ok = got.is_some() == c["found"].as_bool().unwrap();
                if let Some(g) = &got {
                    if let Some(r) = c.get("ref").and_then(|v| v.as_str()) {
                        ok &= g.reference == r;
                    }
                    if let Some(r) = c.get("cmdline").and_then(|v| v.as_str()) {
                        ok &= g.cmdline == r;
                    }
                    if let Some(l) = c.get("line").and_then(|v| v.as_u64()) {
                        ok &= g.line as u64 == l;
                    }
                }
                t.check(ok, || format!("{f} {input:?}: {got:?} vs {c}"));
            }
        }
    }
    let j: Value = serde_json::from_str(&read(&dir.join("json-arrays.json"))).unwrap();
    for c in j["cases"].as_array().unwrap() {
        let input = c["input"].as_str().unwrap();
        let got = parse(&format!("FROM x\nCMD {input}\n"));
        let ok = if c["valid"].as_bool().unwrap() {
            let want: Vec<&str> = c["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            got.as_ref()
                .is_ok_and(|p| p.instructions()[1].json && p.instructions()[1].args() == want)
        } else {
            got.is_err()
        };
        t.check(ok, || {
            format!("json {input:?}: {:?}", got.map(|p| p.dump()))
        });
    }
    let w: Value = serde_json::from_str(&read(&dir.join("parse-words.json"))).unwrap();
    for c in w["cases"].as_array().unwrap() {
        let input = c["input"].as_str().unwrap();
        let want: Vec<String> = c["words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let got = parse_words(input, '\\');
        t.check(got == want, || {
            format!("words {input:?}: {got:?} vs {want:?}")
        });
    }
    t.finish();
}

#[test]
fn real_world_dockerfiles_parse_like_buildkit() {
    let Some(dir) = conformance_dir("real-world") else {
        return;
    };
    let mut t = Tally::new("real-world");
    for case in sorted_dirs(&dir) {
        let text = read(&case.join("Dockerfile"));
        let got = parse(&text).map(|p| p.dump());
        let expected = case.join("result");
        let ok = match (&got, expected.exists()) {
            (Ok(g), true) => *g == read(&expected),
            (Ok(_), false) => true,
            (Err(_), _) => false,
        };
        t.check(ok, || {
            format!("{}: {:?}", case.display(), got.as_ref().err())
        });
        // Typed instructions must accept every real-world file too.
        let typed = rbuild::frontend::instructions::Dockerfile::parse(&text);
        t.check(typed.is_ok(), || {
            format!("{} typed: {:?}", case.display(), typed.err())
        });
    }
    t.finish();
}
