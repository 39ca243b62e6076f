//! Layer writing throughput: a generated, source-code-like tar stream (64 MB) through
//! rbuild's layer writer (diff_id + compression in one pass) per compression, against
//! single-threaded gzip -6 on the same bytes; then the same bytes as 4,096 files written as gzip
//! members (COPY layers) against one gzip stream: size cost, speed, and a rewrite after one
//! file changed. Prints ratios (run with `cargo bench --bench layer`).

use std::io::{self, Write};
use std::time::Instant;

use rbuild::layer::compress::{Compression, LayerWriter};
use rbuild::layer::members::{map_text, write_members, Reuse};
use rbuild::layer::tar::{write_tar, Entry, Kind};

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
    members(&data);
}

/// Counts bytes written.
struct Count(u64);
impl Write for Count {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn members(data: &[u8]) {
    let files = |changed: Option<usize>| -> Vec<Entry> {
        data.chunks(16 << 10)
            .enumerate()
            .map(|(i, c)| {
                let mut b = c.to_vec();
                if changed == Some(i) {
                    b.extend_from_slice(b"// changed");
                }
                Entry {
                    path: format!("app/src/pkg{}/f{i:05}.js", i % 97),
                    size: b.len() as u64,
                    kind: Kind::Bytes(b),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 1_700_000_000,
                    xattrs: vec![],
                }
            })
            .collect()
    };
    let none = |_: &Entry| None;
    let mut single_size = 0;
    let single = time(|| {
        let w = LayerWriter::new(Count(0), Compression::Gzip).unwrap();
        let w = write_tar(&mut files(None), None, w).unwrap();
        single_size = w.finish().unwrap().1 .0;
    });
    let mut member_size = 0;
    let mut blob = Vec::new();
    let mut map = String::new();
    let multi = time(|| {
        let (_, out, report) =
            write_members(&mut files(None), None, &none, None, Vec::new()).unwrap();
        member_size = out.len() as u64;
        map = map_text(&report.members);
        blob = out;
    });
    println!(
        "layer: gzip members vs one gzip stream ({} files): size {:+.2}%, speed {:.2}x",
        files(None).len(),
        (member_size as f64 / single_size as f64 - 1.0) * 100.0,
        single / multi
    );
    let path = std::env::temp_dir().join(format!("rbuild-bench-members-{}", std::process::id()));
    std::fs::write(&path, &blob).unwrap();
    let mut compressed = 0;
    let again = time(|| {
        let reuse = Reuse::parse(std::fs::File::open(&path).unwrap(), &map);
        let (_, _, report) =
            write_members(&mut files(Some(1234)), None, &none, Some(&reuse), Count(0)).unwrap();
        compressed = report.compressed;
    });
    let _ = std::fs::remove_file(&path);
    println!(
        "layer: one file changed: compressed {} of {} bytes, {:.1}x faster than writing it cold",
        compressed,
        data.len(),
        multi / again
    );
}
