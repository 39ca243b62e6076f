//! Shared test helpers: locating the conformance corpus, reporting pass counts.

use std::path::PathBuf;

/// The conformance corpus (`RBUILD_CONFORMANCE_DIR`, default `../shared/conformance`).
/// Missing corpus: a failure under `CI=true`, a loud skip otherwise.
pub fn conformance_dir(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    let dir = base.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "conformance corpus {} is missing: CI must run it (set RBUILD_CONFORMANCE_DIR or check out ../shared)",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: conformance corpus {} not found (set RBUILD_CONFORMANCE_DIR)",
        dir.display()
    );
    None
}

/// Collects pass/fail per case and reports `name: N/M passed`, failing with the details.
pub struct Tally {
    name: String,
    passed: usize,
    failures: Vec<String>,
}

impl Tally {
    /// A new tally for one corpus.
    pub fn new(name: &str) -> Tally {
        Tally {
            name: name.to_string(),
            passed: 0,
            failures: Vec::new(),
        }
    }

    /// Records one case.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(what());
        }
    }

    /// Prints the count and panics when anything failed (or nothing ran).
    pub fn finish(self) {
        let total = self.passed + self.failures.len();
        println!(
            "conformance {}: {}/{} passed",
            self.name, self.passed, total
        );
        assert!(total > 0, "{}: no cases found", self.name);
        if !self.failures.is_empty() {
            let shown: Vec<_> = self.failures.iter().take(25).cloned().collect();
            panic!(
                "{}: {} of {} failed:\n{}",
                self.name,
                self.failures.len(),
                total,
                shown.join("\n---\n")
            );
        }
    }
}
