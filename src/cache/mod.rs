//! The build cache: step keys ([`key`]), content digests of context files remembered by
//! stat data ([`stat`]), the local index of what each key produced ([`index`]), and cache
//! shared through registries, directories or image configs ([`remote`]).
//!
//! A hit needs only the record: the layer's bytes are fetched (or copied) when a later step
//! reads the filesystem or an output needs them, and a push to the registry holding them
//! mounts instead of uploading.

pub mod index;
pub mod key;
pub mod prune;
pub mod remote;
pub mod stat;

use std::sync::Arc;

use crate::content::Store;
use crate::reference::{Digest, Reference};
use crate::registry::Client;

use index::{Index, Record};
use remote::{Imported, Source};

/// A step found in the cache.
#[derive(Debug, Clone)]
pub struct Hit {
    /// What the step produced.
    pub record: Record,
    /// Where its layer is when the store does not hold it yet.
    pub remote: Option<(Arc<Client>, Reference)>,
}

/// Looks a key up: the local index first (its layer must still be in the store), then each
/// `--cache-from` in order. Layers in a cache directory are copied in (verified); layers
/// in a registry stay there until needed. A hit found remotely is recorded locally.
pub fn lookup(index: &Index, store: &Store, imported: &[Imported], key: &Digest) -> Option<Hit> {
    let present = |r: &Record| {
        r.layer
            .as_ref()
            .is_none_or(|l| Digest::parse(&l.digest).is_ok_and(|d| store.has(&d)))
    };
    if let Some(record) = index.get(key).filter(present) {
        index.touch(key);
        return Some(Hit {
            record,
            remote: None,
        });
    }
    for imp in imported {
        let Some(record) = imp.records.get(key.hex()) else {
            continue;
        };
        let layer = match &record.layer {
            Some(l) => match Digest::parse(&l.digest) {
                Ok(d) => Some(d),
                Err(_) => continue,
            },
            None => None,
        };
        let remote = match (&imp.source, &layer) {
            (_, None) => None,
            (_, Some(d)) if store.has(d) => None,
            (Source::Dir(dir), Some(d)) => {
                if remote::copy_from_dir(dir, d, store).is_err() {
                    continue;
                }
                None
            }
            (Source::Registry(c, r), Some(_)) => Some((c.clone(), r.clone())),
        };
        if remote.is_none() {
            let _ = index.put(key, record);
        }
        return Some(Hit {
            record: record.clone(),
            remote,
        });
    }
    None
}
