//! Tar archives of an image: an OCI layout in a tar (`-o type=oci,dest=FILE.tar`, what
//! `skopeo copy oci-archive:` reads) and the `docker load` format (`-o type=docker`), which is
//! the same layout plus Docker's `manifest.json`, as `docker save` has written since Docker 25.
//! Blobs are streamed from the store; the archive appears under its name only when complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::build::Built;
use crate::content::{Store, StoreError};
use crate::reference::{Digest, Reference};

/// Which archive flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OCI layout only.
    Oci,
    /// OCI layout plus `manifest.json` for `docker load`.
    Docker,
}

fn header(path: &str, size: u64, dir: bool, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("short ascii path");
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_cksum();
    h
}

/// Writes the archive to `dest` (`-` for stdout). `tags` name the image inside it.
pub fn write_archive(
    store: &Store,
    built: &Built,
    dest: &Path,
    tags: &[Reference],
    flavor: Flavor,
    mtime: u64,
) -> Result<(), StoreError> {
    let io = |op: &'static str| {
        let path = dest.to_path_buf();
        move |source: io::Error| StoreError::Io { op, path, source }
    };
    if dest.as_os_str() == "-" {
        let out = io::stdout().lock();
        let mut w = BufWriter::with_capacity(1 << 20, out);
        write_tar(store, built, tags, flavor, mtime, &mut w).map_err(io("write"))?;
        return w.flush().map_err(io("write"));
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let f = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        write_tar(store, built, tags, flavor, mtime, &mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io("write archive"))
}

fn write_tar(
    store: &Store,
    built: &Built,
    tags: &[Reference],
    flavor: Flavor,
    mtime: u64,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let put = |b: &mut tar::Builder<&mut dyn Write>, path: &str, data: &[u8]| {
        b.append(&header(path, data.len() as u64, false, mtime), data)
    };
    put(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut manifests = Vec::new();
    let descs: Vec<_> = if tags.is_empty() {
        vec![None]
    } else {
        tags.iter().map(Some).collect()
    };
    for t in descs {
        let mut d = built.manifest.clone();
        d.annotations = BTreeMap::new();
        if let Some(t) = t {
            if flavor == Flavor::Docker {
                d.annotations
                    .insert("io.containerd.image.name".into(), t.to_string());
            }
            if let Some(tag) = &t.tag {
                d.annotations
                    .insert("org.opencontainers.image.ref.name".into(), tag.clone());
            }
        }
        manifests.push(serde_json::to_value(&d).expect("json"));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": crate::image::INDEX_V1, "manifests": manifests});
    put(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )?;
    if flavor == Flavor::Docker {
        let path = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        let manifest = serde_json::json!([{
            "Config": path(&built.config_desc.digest),
            "RepoTags": tags.iter().map(|t| t.familiar_string()).collect::<Vec<_>>(),
            "Layers": built.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
        }]);
        put(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        )?;
    }
    b.append(&header("blobs/", 0, true, mtime), io::empty())?;
    b.append(&header("blobs/sha256/", 0, true, mtime), io::empty())?;
    let mut seen = std::collections::BTreeSet::new();
    for d in super::oci_dir::image_blobs(built) {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        let dg = Digest::parse(&d.digest).map_err(|e| io::Error::other(e.to_string()))?;
        let f = store.open_blob(&dg).map_err(io::Error::other)?;
        let size = f.metadata()?.len();
        b.append(
            &header(&format!("blobs/sha256/{}", dg.hex()), size, false, mtime),
            f,
        )?;
    }
    b.into_inner()?.flush()
}
