//! Store verification (`rbuild check`): every blob hashes to its name, every tag's manifest,
//! config and layers are there (or known to a registry), cache records point at blobs that
//! exist, and no mount under the store outlived its build.
//!
//! Used after crashes and by the kill-at-random-moments tests: leftovers of killed builds
//! (temp files, scratch directories) are reported as such, not as damage; `rbuild prune`
//! removes them.

use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::Store;
use crate::reference::Digest;

/// What `verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Blobs hashed.
    pub blobs: usize,
    /// Tags checked.
    pub images: usize,
    /// Cache records checked.
    pub records: usize,
    /// Damage: each names the file or tag and what is wrong.
    pub problems: Vec<String>,
    /// Leftovers of interrupted work, harmless and removed by `rbuild prune`.
    pub leftovers: Vec<String>,
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(format!("{:x}", h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Checks `store`; `mountinfo` is `/proc/self/mountinfo` (passed in so tests can feed one).
pub fn verify(store: &Store, mountinfo: &str) -> Report {
    let mut report = Report::default();
    let dir = store.root().join("blobs/sha256");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    report.blobs = names.len();
    let mut bad: Vec<String> = names
        .par_iter()
        .filter_map(|n| {
            let ok_name = n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
            match sha256_file(&dir.join(n)) {
                Ok(h) if ok_name && h == *n => None,
                Ok(h) => Some(format!("blob {n} hashes to sha256:{h}")),
                Err(e) => Some(format!("blob {n} cannot be read: {e}")),
            }
        })
        .collect();
    bad.sort();
    report.problems.extend(bad);

    match store.tags() {
        Ok(tags) => {
            report.images = tags.len();
            for (name, entry) in tags {
                report.problems.extend(check_image(store, &name, &entry));
            }
        }
        Err(e) => report
            .problems
            .push(format!("the tag index cannot be read: {e}")),
    }

    let index = crate::cache::index::Index::open(store);
    for (key, rec, _) in index.list() {
        report.records += 1;
        if let Some(l) = &rec.layer {
            if !Digest::parse(&l.digest).is_ok_and(|d| store.has(&d)) {
                report.problems.push(format!(
                    "cache record {key} ({}) points at missing layer {}",
                    rec.step, l.digest
                ));
            }
        }
    }

    let root = store.root().to_string_lossy().into_owned();
    for line in mountinfo.lines() {
        if let Some(point) = line.split(' ').nth(4) {
            if point.starts_with(&root) {
                report.problems.push(format!("mount left over at {point}"));
            }
        }
    }

    // Temp entries start with a dot; everything in ingest/ and tmp/ is scratch.
    let layers = crate::snapshot::layers_dir(store);
    for (dir, all) in [
        (store.root().join("ingest"), true),
        (store.root().join("tmp"), true),
        (store.root().join("snapshots/flat"), false),
        (layers, false),
    ] {
        let n = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| all || e.file_name().to_string_lossy().starts_with('.'))
            .count();
        if n > 0 {
            let rel = dir
                .strip_prefix(store.root())
                .unwrap_or(&dir)
                .display()
                .to_string();
            report.leftovers.push(format!(
                "{n} temp entries in {rel}/ (a running or killed build's)"
            ));
        }
    }
    report
}

fn check_image(store: &Store, name: &str, entry: &super::TagEntry) -> Vec<String> {
    let mut problems = Vec::new();
    let need = |digest: &str, what: &str, problems: &mut Vec<String>| -> Option<Vec<u8>> {
        let d = Digest::parse(digest).ok()?;
        match store.read(&d) {
            Ok(b) => Some(b),
            Err(_) => {
                problems.push(format!("{name}: {what} {digest} is missing"));
                None
            }
        }
    };
    let Some(m) = need(&entry.manifest.digest, "manifest", &mut problems) else {
        return problems;
    };
    let Ok(m) = serde_json::from_slice::<crate::image::Manifest>(&m) else {
        problems.push(format!(
            "{name}: manifest {} is not a manifest",
            entry.manifest.digest
        ));
        return problems;
    };
    if let Some(c) = need(&m.config.digest, "config", &mut problems) {
        if serde_json::from_slice::<crate::image::ImageConfig>(&c).is_err() {
            problems.push(format!(
                "{name}: config {} is not an image config",
                m.config.digest
            ));
        }
    }
    for l in &m.layers {
        let present = Digest::parse(&l.digest).is_ok_and(|d| store.has(&d));
        if !present && !entry.sources.contains_key(&l.digest) {
            problems.push(format!(
                "{name}: layer {} is missing and no registry is known for it",
                l.digest
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_and_a_leftover_mount_are_problems_temp_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = store.put("application/octet-stream", b"good").unwrap();
        let bad = store.put("application/octet-stream", b"bad").unwrap();
        let path = store.blob_path(&Digest::parse(&bad.digest).unwrap());
        std::fs::write(&path, b"bad!").unwrap();
        std::fs::write(dir.path().join("ingest/.tmp-blob-1"), b"half").unwrap();
        let mounts = format!(
            "36 35 0:32 / {}/snapshots/x rw - overlay overlay rw\n",
            dir.path().display()
        );
        let r = verify(&store, &mounts);
        assert_eq!(r.blobs, 2);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].contains(bad.digest.trim_start_matches("sha256:")));
        assert!(r.problems[1].contains("mount left over"));
        assert!(!r
            .problems
            .iter()
            .any(|p| p.contains(good.digest.trim_start_matches("sha256:"))));
        assert_eq!(r.leftovers.len(), 1, "{:?}", r.leftovers);
        assert!(r.leftovers[0].starts_with("1 temp entries in ingest/"));
    }
}
