//! `rbuild images`, `rbuild rmi`, `rbuild prune`, and where the store lives.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::content::Store;
use crate::reference::{Digest, Reference};

use super::args::{RmiArgs, StoreArgs};
use super::error::{CliError, ExitKind};

/// The store root: `--root`, `RBUILD_ROOT`, `$XDG_DATA_HOME/rbuild`, `~/.local/share/rbuild`.
pub(super) fn open(a: &StoreArgs) -> Result<Store, CliError> {
    let root = a.root.clone().unwrap_or_else(|| {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/var/lib"))
            .join("rbuild")
    });
    Store::open(&root).map_err(|e| {
        CliError::new(
            ExitKind::Failure,
            format!("cannot open the store at {}: {e}", root.display()),
        )
        .hinted("choose a writable directory with `--root DIR` or RBUILD_ROOT")
    })
}

fn store_err(e: crate::content::StoreError) -> CliError {
    CliError::new(ExitKind::Failure, e.to_string())
}

pub(super) fn images(a: StoreArgs) -> Result<(), CliError> {
    let store = open(&a)?;
    let tags = store.tags().map_err(store_err)?;
    println!(
        "{:<40} {:<20} {:>10}  CREATED",
        "REPOSITORY:TAG", "DIGEST", "SIZE"
    );
    for (name, e) in tags {
        let shown = Reference::parse(&name)
            .map(|r| r.familiar_string())
            .unwrap_or(name.clone());
        let size = image_size(&store, &e.manifest.digest).unwrap_or(0);
        let short = e
            .manifest
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>();
        println!(
            "{:<40} {:<20} {:>10}  {}",
            shown,
            format!("sha256:{short}"),
            human(size),
            e.created
        );
    }
    Ok(())
}

fn image_size(store: &Store, manifest: &str) -> Option<u64> {
    let d = Digest::parse(manifest).ok()?;
    let m: crate::image::Manifest = serde_json::from_slice(&store.read(&d).ok()?).ok()?;
    Some(m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>())
}

pub(super) fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

pub(super) fn rmi(a: RmiArgs) -> Result<(), CliError> {
    let store = open(&a.store)?;
    for r in &a.refs {
        let name = Reference::parse_docker(r)
            .map_err(|e| {
                CliError::new(
                    ExitKind::InvalidReference,
                    format!("invalid image reference {r:?}: {e}"),
                )
                .hinted(e.hint())
            })?
            .to_string();
        if !store.remove_tag(&name).map_err(store_err)? {
            return Err(
                CliError::new(ExitKind::Failure, format!("no image {r:?} in the store"))
                    .hinted("`rbuild images` lists what the store holds"),
            );
        }
        println!("Untagged: {r}");
    }
    Ok(())
}

pub(super) fn prune(a: StoreArgs) -> Result<(), CliError> {
    let store = open(&a)?;
    let _lock = store.lock().map_err(store_err)?;
    let mut keep = BTreeSet::new();
    for e in store.tags().map_err(store_err)?.values() {
        keep.insert(e.manifest.digest.clone());
        if let Ok(d) = Digest::parse(&e.manifest.digest) {
            if let Ok(m) = serde_json::from_slice::<crate::image::Manifest>(
                &store.read(&d).map_err(store_err)?,
            ) {
                keep.insert(m.config.digest);
                keep.extend(m.layers.into_iter().map(|l| l.digest));
            }
        }
    }
    let dir = store.root().join("blobs/sha256");
    let (mut n, mut bytes) = (0u64, 0u64);
    for e in std::fs::read_dir(&dir)
        .map_err(|e| CliError::new(ExitKind::Failure, format!("{}: {e}", dir.display())))?
    {
        let Ok(e) = e else { continue };
        let name = format!("sha256:{}", e.file_name().to_string_lossy());
        if !keep.contains(&name) {
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    println!("Deleted {n} blobs, reclaimed {}", human(bytes));
    Ok(())
}
