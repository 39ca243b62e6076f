//! `-o type=local,dest=DIR`: the image's final filesystem unpacked into a directory, layer by
//! layer with whiteouts applied, through the same safe unpacker as base images.

use std::path::Path;

use crate::build::Built;
use crate::content::Store;
use crate::snapshot::{apply_layers, SnapshotError};

/// Unpacks every layer of `built` into `dest` (created if missing).
pub fn write_local(store: &Store, built: &Built, dest: &Path) -> Result<(), SnapshotError> {
    std::fs::create_dir_all(dest)
        .map_err(|e| SnapshotError::Store(crate::content::io_err("create directory", dest)(e)))?;
    apply_layers(
        store,
        &built.layers,
        Some(&built.config.rootfs.diff_ids),
        dest,
        crate::layer::apply::Whiteouts::Delete,
    )
}
