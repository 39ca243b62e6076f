//! `rbuild images`, `rbuild rmi`, `rbuild prune`, and where the store lives.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::content::Store;
use crate::reference::{Digest, Reference};

use super::args::{PruneArgs, RmiArgs, StoreArgs};
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

pub(super) fn prune(a: PruneArgs) -> Result<(), CliError> {
    use crate::cache::{index::Index, prune};
    let usage = |m: String, h: &str| CliError::new(ExitKind::Usage, m).hinted(h);
    let mut policy = prune::Policy {
        all: a.all,
        ..Default::default()
    };
    for f in &a.filters {
        match f.split_once('=') {
            Some(("until", d)) => {
                policy.until = Some(humantime::parse_duration(d).map_err(|e| {
                    usage(
                        format!("--filter {f:?}: {e}"),
                        "write a duration such as until=24h or until=30m",
                    )
                })?)
            }
            _ => {
                return Err(usage(
                    format!("unknown --filter {f:?}"),
                    "use --filter until=DURATION",
                ))
            }
        }
    }
    if let Some(s) = &a.keep_storage {
        policy.keep_storage = Some(prune::parse_size(s).ok_or_else(|| {
            usage(
                format!("--keep-storage {s:?} is not a size"),
                "write a size such as 10GB or 512MB",
            )
        })?);
    }
    let store = open(&a.store)?;
    // Waits for running builds; builds started meanwhile wait for this.
    let _gc = store.gc_lock(true).map_err(store_err)?;
    let _lock = store.lock().map_err(store_err)?;
    let index = Index::open(&store);
    let records = index.list();
    let candidates = records
        .iter()
        .map(|(k, r, used)| prune::Candidate {
            key: k.clone(),
            layer: r.layer.as_ref().map(|l| (l.digest.clone(), l.size)),
            used: *used,
        })
        .collect();
    let dropped: BTreeSet<Digest> =
        prune::select(candidates, std::time::SystemTime::now(), &policy)
            .into_iter()
            .collect();
    for k in &dropped {
        index.remove(k);
    }
    let mut keep = BTreeSet::new();
    let mut keep_diffs = BTreeSet::new();
    for (k, r, _) in &records {
        if !dropped.contains(k) {
            keep.extend(r.layer.as_ref().map(|l| l.digest.clone()));
            keep_diffs.extend(r.diff_id.clone());
        }
    }
    for e in store.tags().map_err(store_err)?.values() {
        keep.insert(e.manifest.digest.clone());
        if let Ok(d) = Digest::parse(&e.manifest.digest) {
            if let Ok(m) = serde_json::from_slice::<crate::image::Manifest>(
                &store.read(&d).map_err(store_err)?,
            ) {
                if let Ok(cd) = Digest::parse(&m.config.digest) {
                    if let Ok(c) = serde_json::from_slice::<crate::image::ImageConfig>(
                        &store.read(&cd).map_err(store_err)?,
                    ) {
                        keep_diffs.extend(c.rootfs.diff_ids);
                    }
                }
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
    // Snapshots of layers nothing keeps, every flat snapshot (rebuilt on demand), and
    // scratch space of builds that were killed.
    let mut snaps = 0;
    let layers = crate::snapshot::layers_dir(&store);
    if let Ok(rd) = std::fs::read_dir(&layers) {
        for e in rd.flatten() {
            let name = format!("sha256:{}", e.file_name().to_string_lossy());
            if !keep_diffs.contains(&name) && std::fs::remove_dir_all(e.path()).is_ok() {
                snaps += 1;
            }
        }
    }
    let mut scratch = vec!["snapshots/flat", "tmp", "ingest"];
    if a.all {
        scratch.push("cache-mounts");
    }
    for d in scratch {
        let p = store.root().join(d);
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
    }
    println!(
        "Deleted {} cache record{}, {n} blobs, {snaps} layer snapshots; reclaimed {}",
        dropped.len(),
        if dropped.len() == 1 { "" } else { "s" },
        human(bytes)
    );
    Ok(())
}

pub(super) fn check(a: StoreArgs) -> Result<(), CliError> {
    let store = open(&a)?;
    // Prune must not delete blobs while they are hashed; builds may go on.
    let _gc = store.gc_lock(false).map_err(store_err)?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let r = crate::content::verify::verify(&store, &mounts);
    for l in &r.leftovers {
        println!("note: {l}; `rbuild prune` removes them");
    }
    for p in &r.problems {
        println!("damaged: {p}");
    }
    println!(
        "{}: {} blobs, {} images, {} cache records checked; {}",
        store.root().display(),
        r.blobs,
        r.images,
        r.records,
        if r.problems.is_empty() {
            "no damage".to_string()
        } else {
            format!("{} problems", r.problems.len())
        }
    );
    if r.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(
            ExitKind::Failure,
            format!("the store at {} is damaged", store.root().display()),
        )
        .hinted("remove the damaged blobs and run `rbuild prune`; builds fetch or rebuild what they need"))
    }
}
