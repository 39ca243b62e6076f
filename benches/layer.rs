//! Layer writing throughput: a generated, source-code-like tar stream (64 MB) through
//! rbuild's layer writer (diff_id + compression in one pass) per compression, against
//! single-threaded gzip -6 on the same bytes. Prints ratios (run with `cargo bench --bench layer`).

use std::io::{self, Write};
use std::time::Instant;

use rbuild::layer::compress::{Compression, LayerWriter};

/// Deterministic text-like data: JSON/JS-ish lines with varying identifiers and numbers.
fn corpus(len: usize) -> Vec<u8> {
    let words = [
        "function",
        "return",
        "const",
        "module",
        "exports",
        "require",
        "value",
        "index",
        "\"name\":",
        "\"version\":",
        "dependencies",
        "=>",
        "{",
        "}",
        "(",
        ")",
        ";",
        "this",
    ];
    let mut out = Vec::with_capacity(len + 64);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = words[(x % words.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        if x.is_multiple_of(7) {
            out.extend_from_slice(format!(" v{}", x % 10_000).as_bytes());
        }
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn time(mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed().as_secs_f64() / runs as f64
}

fn main() {
    let data = corpus(64 << 20);
    let mb = data.len() as f64 / 1e6;
    let write_all = |c: Compression| {
        let mut w = LayerWriter::new(io::sink(), c).unwrap();
        for chunk in data.chunks(1 << 16) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
    };
    let single = time(|| {
        let mut e = flate2::write::GzEncoder::new(io::sink(), flate2::Compression::new(6));
        e.write_all(&data).unwrap();
        e.finish().unwrap();
    });
    println!(
        "layer: single-stream gzip -6 (reference): {:.0} MB/s",
        mb / single
    );
    for (name, c) in [
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
        ("uncompressed", Compression::None),
    ] {
        let t = time(|| write_all(c));
        println!(
            "layer: rbuild {name:<12} {:>6.0} MB/s  {:.2}x the reference gzip's speed",
            mb / t,
            single / t
        );
    }
}
