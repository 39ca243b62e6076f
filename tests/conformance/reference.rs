//! distribution/reference's tables.

use std::fs;

use rbuild::reference::{parse_strict, Reference};

use crate::support::{conformance_dir, Tally};

fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

#[test]
fn reference_cases() {
    let Some(dir) = conformance_dir("reference") else {
        return;
    };
    let mut t = Tally::new("reference/cases");
    let text = fs::read_to_string(dir.join("cases.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let col = |name: &str| {
            f.get(header.iter().position(|h| *h == name).unwrap())
                .copied()
                .unwrap_or("")
        };
        let input = unescape(col("input"));
        // strict parse
        let strict = parse_strict(&input);
        let ok = match (&strict, col("parse_valid")) {
            (Ok(p), "true") => {
                p.name() == col("name")
                    && p.domain == col("domain")
                    && p.path == col("path")
                    && p.tag.as_deref().unwrap_or("") == col("tag")
                    && p.digest.as_ref().map(|d| d.to_string()).unwrap_or_default() == col("digest")
            }
            (Err(e), "false") => e.to_string() == col("parse_error"),
            _ => false,
        };
        t.check(ok, || format!("parse {input:?}: {strict:?} vs {line}"));
        // normalized parse
        let norm = Reference::parse(&input);
        let ok = match (&norm, col("normalized_valid")) {
            (Ok(r), "true") => {
                r.to_string() == col("normalized")
                    && r.domain == col("normalized_domain")
                    && r.path == col("normalized_path")
                    && r.familiar_name() == col("familiar_name")
                    && r.familiar_string() == col("familiar_string")
            }
            (Err(e), "false") => e.to_string() == col("normalized_error"),
            _ => false,
        };
        t.check(ok, || format!("normalize {input:?}: {norm:?} vs {line}"));
        let docker = Reference::parse_docker(&input)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| format!("error: {e}"));
        t.check(docker == col("docker_ref"), || {
            format!("docker ref {input:?}: {docker} vs {}", col("docker_ref"))
        });
    }
    t.finish();
}
