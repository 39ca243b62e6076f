//! `-o type=local,dest=DIR`: the image's final filesystem unpacked into a directory, layer by
//! layer with whiteouts applied, through the same safe unpacker as base images.

use std::path::Path;

use crate::build::Built;
use crate::content::{Store, StoreError};
use crate::layer::apply::{apply_layer, ApplyError};
use crate::layer::read::{decoder, Format};
use crate::reference::Digest;

/// Local export failures.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer could not be unpacked.
    #[error("layer {digest}: {source}")]
    Apply {
        /// The layer.
        digest: String,
        /// Why.
        #[source]
        source: ApplyError,
    },
}

/// Unpacks every layer of `built` into `dest` (created if missing).
pub fn write_local(store: &Store, built: &Built, dest: &Path) -> Result<(), LocalError> {
    std::fs::create_dir_all(dest).map_err(crate::content::io_err("create directory", dest))?;
    for l in &built.layers {
        let dg = Digest::parse(&l.digest).map_err(|_| StoreError::BadDigest(l.digest.clone()))?;
        let format = Format::from_media_type(&l.media_type).unwrap_or(Format::Gzip);
        let apply_err = |source| LocalError::Apply {
            digest: l.digest.clone(),
            source,
        };
        let r =
            decoder(store.open_blob(&dg)?, format).map_err(|e| apply_err(ApplyError::Read(e)))?;
        apply_layer(dest, r).map_err(apply_err)?;
    }
    Ok(())
}
