//! An OCI image layout directory (what `skopeo`, `umoci` and `FROM oci-layout://` read), with
//! the manifest annotated `org.opencontainers.image.ref.name` = the tag.

use std::collections::BTreeMap;
use std::path::Path;

use crate::build::Built;
use crate::content::{io_err as io, write_atomic, Descriptor, Store, StoreError};
use crate::reference::Digest;

/// Writes (or adds to) an OCI layout at `dest`; `ref_name` becomes the manifest's tag there.
pub fn write_oci_dir(
    store: &Store,
    built: &Built,
    dest: &Path,
    ref_name: Option<&str>,
) -> Result<(), StoreError> {
    let blobs = dest.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io("create directory", &blobs))?;
    write_atomic(
        &dest.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    for d in image_blobs(built) {
        put_blob(store, d, &blobs)?;
    }
    let index_path = dest.join("index.json");
    let mut manifests: Vec<serde_json::Value> = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"].as_array().cloned())
        .unwrap_or_default();
    let mut desc = built.manifest.clone();
    desc.annotations = BTreeMap::new();
    if let Some(r) = ref_name {
        desc.annotations
            .insert("org.opencontainers.image.ref.name".into(), r.to_string());
        manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != r);
    } else {
        manifests.retain(|m| m["digest"] != desc.digest.as_str());
    }
    manifests.push(serde_json::to_value(&desc).expect("json"));
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": crate::image::INDEX_V1, "manifests": manifests});
    write_atomic(&index_path, &serde_json::to_vec(&index).expect("json"))
}

/// Places a store blob into a layout's `blobs/sha256` (a hard link when on the same
/// filesystem, else a copy; renamed into place, so a reader never sees part of it).
pub fn put_blob(store: &Store, d: &Descriptor, blobs: &Path) -> Result<(), StoreError> {
    let dg = Digest::parse(&d.digest).map_err(|_| StoreError::BadDigest(d.digest.clone()))?;
    let target = blobs.join(dg.hex());
    if target.exists() {
        return Ok(());
    }
    let src = store.blob_path(&dg);
    let tmp = blobs.join(format!(".{}.tmp", dg.hex()));
    if std::fs::hard_link(&src, &tmp).is_err() {
        std::fs::copy(&src, &tmp).map_err(io("copy", &src))?;
    }
    std::fs::rename(&tmp, &target).map_err(io("rename into", &target))
}

/// The image's blobs in layout order: layers, config, manifest.
pub(super) fn image_blobs(built: &Built) -> Vec<&Descriptor> {
    let mut all: Vec<&Descriptor> = built.layers.iter().collect();
    all.push(&built.config_desc);
    all.push(&built.manifest);
    all
}
