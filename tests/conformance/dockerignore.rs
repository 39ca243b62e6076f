//! moby/patternmatcher's tables for `.dockerignore`.

use std::fs;

use rbuild::frontend::dockerignore::{read_patterns, Matcher};
use serde_json::Value;

use crate::support::{conformance_dir, Tally};

#[test]
fn pattern_cases() {
    let Some(dir) = conformance_dir("dockerignore") else {
        return;
    };
    let mut t = Tally::new("dockerignore/cases");
    let text = fs::read_to_string(dir.join("cases.tsv")).unwrap();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let (group, patterns, path, expected) = (f[1], f[3], f[4], f[5]);
        let patterns: Vec<String> = serde_json::from_str(patterns).unwrap();
        let got = Matcher::new(&patterns).and_then(|m| {
            if group == "parent-aware" || group == "regression" {
                m.excludes(path)
            } else {
                m.excludes_legacy(path)
            }
        });
        let got_s = match &got {
            Ok(true) => "true",
            Ok(false) => "false",
            Err(_) => "error",
        };
        t.check(got_s == expected, || {
            format!(
                "row {}: {patterns:?} {path:?}: expected {expected}, got {got:?}",
                f[0]
            )
        });
    }
    t.finish();
}

#[test]
fn read_and_clean_patterns() {
    let Some(dir) = conformance_dir("dockerignore") else {
        return;
    };
    let mut t = Tally::new("dockerignore/readall+new-patterns");
    let r: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("ignorefile-readall.json")).unwrap())
            .unwrap();
    let cases: Vec<Value> = if r.is_array() {
        r.as_array().unwrap().clone()
    } else {
        vec![r]
    };
    for c in cases {
        let got = read_patterns(c["input"].as_str().unwrap());
        let want: Vec<String> = c["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        t.check(got == want, || format!("readall: {got:?} vs {want:?}"));
    }
    let n: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("new-patterns.json")).unwrap()).unwrap();
    for c in n["cases"].as_array().unwrap() {
        let patterns: Vec<String> = c["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let got = Matcher::new(&patterns);
        let ok = match c["expect"].as_str().unwrap() {
            "ok" => got.as_ref().is_ok_and(|m| {
                let active: Vec<String> = c["active"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                m.patterns() == active && m.has_exclusions() == c["exclusions"].as_bool().unwrap()
            }),
            _ => got.is_err(),
        };
        t.check(ok, || format!("new {patterns:?}: {c} got {got:?}"));
    }
    t.finish();
}

#[test]
fn compile_strategies() {
    let Some(dir) = conformance_dir("dockerignore") else {
        return;
    };
    let mut t = Tally::new("dockerignore/compile");
    let text = fs::read_to_string(dir.join("compile.tsv")).unwrap();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let got = Matcher::new(&[f[0]]).map(|m| m.strategy(0));
        t.check(got.as_deref() == Ok(f[1]), || {
            format!("{:?}: expected {}, got {got:?}", f[0], f[1])
        });
    }
    t.finish();
}
