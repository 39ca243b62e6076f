//! Frontend throughput: parse + type every real-world Dockerfile of the shared corpus, many
//! times over, and report MB/s (run with `cargo bench --bench frontend`).

use std::time::Instant;

use rbuild::frontend::instructions::Dockerfile;

fn main() {
    let dir = std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance")
        })
        .join("real-world");
    let mut texts = Vec::new();
    for e in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set RBUILD_CONFORMANCE_DIR)", dir.display()))
    {
        let p = e.unwrap().path().join("Dockerfile");
        if let Ok(t) = std::fs::read_to_string(&p) {
            texts.push(t);
        }
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    let rounds = 200;
    let start = Instant::now();
    let mut instructions = 0usize;
    for _ in 0..rounds {
        for t in &texts {
            let df = Dockerfile::parse(t).expect("real-world files parse");
            instructions += df.stages.iter().map(|s| s.steps.len() + 1).sum::<usize>();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "frontend: {} files, {} instructions per round, {:.1} MB/s, {:.2} µs per Dockerfile",
        texts.len(),
        instructions / rounds,
        (bytes * rounds) as f64 / secs / 1e6,
        secs * 1e6 / (texts.len() * rounds) as f64
    );
}
