//! BuildKit's shell-lexer vectors: envVarTest, wordsTest, ProcessWordWithMatches.

use std::fs;

use rbuild::frontend::shell::Lexer;
use serde_json::Value;

use crate::support::{conformance_dir, Tally};

fn env_of(v: &Value) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    e.sort();
    e
}

#[test]
fn env_var_test() {
    let Some(dir) = conformance_dir("shell-lex") else {
        return;
    };
    let mut t = Tally::new("shell-lex/envVarTest");
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let text = fs::read_to_string(dir.join("envVarTest")).unwrap();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(f.len(), 3, "bad line {line:?}");
        if f[0] == "W" {
            continue;
        }
        let got = Lexer::new('\\').process_word(f[1], &env);
        let ok = match (&got, f[2]) {
            (Err(_), "error") => true,
            (Ok(g), want) => g == want,
            _ => false,
        };
        t.check(ok, || {
            format!("{:?}: expected {:?}, got {got:?}", f[1], f[2])
        });
    }
    t.finish();
}

#[test]
fn words_test() {
    let Some(dir) = conformance_dir("shell-lex") else {
        return;
    };
    let mut t = Tally::new("shell-lex/wordsTest");
    let mut env: Vec<(String, String)> = Vec::new();
    let text = fs::read_to_string(dir.join("wordsTest")).unwrap();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let entry = rest.trim_start();
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 2 {
            continue;
        }
        let input = f[0].trim();
        let want: Vec<&str> = f[1].trim_start().split(',').collect();
        let got = Lexer::new('\\')
            .process_words(input, &env)
            .unwrap_or_else(|_| vec!["error".into()]);
        t.check(got == want, || {
            format!("{input:?}: expected {want:?}, got {got:?}")
        });
    }
    t.finish();
}

#[test]
fn process_with_matches() {
    let Some(dir) = conformance_dir("shell-lex") else {
        return;
    };
    let mut t = Tally::new("shell-lex/processWithMatches+extra");
    for file in ["processWithMatches.jsonl", "processWord-extra.jsonl"] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let c: Value = serde_json::from_str(line).unwrap();
            let input = c["input"].as_str().unwrap();
            let env = env_of(&c["envs"]);
            let got = Lexer::new('\\').process(input, &env);
            let ok = if c["error"].as_bool().unwrap() {
                match &got {
                    Err(e) => c
                        .get("error_contains")
                        .and_then(|v| v.as_str())
                        .is_none_or(|s| e.to_string().contains(s)),
                    Ok(_) => false,
                }
            } else {
                match &got {
                    Ok(p) => {
                        let names = |k: &str| -> Option<Vec<String>> {
                            c.get(k).map(|v| {
                                let mut n: Vec<String> = v
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|x| x.as_str().unwrap().to_string())
                                    .collect();
                                n.sort();
                                n
                            })
                        };
                        p.result == c["expected"].as_str().unwrap()
                            && names("matches")
                                .is_none_or(|m| m == p.matched.iter().cloned().collect::<Vec<_>>())
                            && names("unmatched").is_none_or(|m| {
                                m == p.unmatched.iter().cloned().collect::<Vec<_>>()
                            })
                    }
                    Err(_) => false,
                }
            };
            t.check(ok, || format!("{file} {input:?}: {c} got {got:?}"));
        }
    }
    t.finish();
}
