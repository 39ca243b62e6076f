//! Sharing the cache: `--cache-to`/`--cache-from` with a registry, a local OCI layout
//! directory, or inline in the image config.
//!
//! A cache export is an ordinary OCI image manifest whose config is an image-config-shaped
//! JSON (so every registry and every OCI tool accepts it) carrying the records under
//! `rbuild.cache.v1` (key → layer, diff_id, time), and whose layers are the cached layers.
//! `type=inline` puts the same records into the built image's own config. Importing reads
//! only the manifest and config; layers stay where they are until a step that hits needs
//! their bytes (then they are fetched, or copied from the directory, verified by digest).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::Record;
use crate::content::{io_err, write_atomic, Descriptor, Store, StoreError};
use crate::image::{self, ImageConfig, Manifest};
use crate::reference::{Digest, Reference};
use crate::registry::Client;

/// Media type of a cache artifact's config.
pub const CACHE_CONFIG: &str = "application/vnd.rbuild.cache.config.v1+json";

/// `--cache-to` / `--cache-from` destinations, parsed from BuildKit's `type=...,k=v` syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// `type=registry,ref=REF[,mode=min|max]`.
    Registry {
        /// Where the cache manifest is (or goes).
        reference: String,
        /// `mode=max` exports every stage's steps, `min` (default) only the image's.
        max: bool,
    },
    /// `type=local,dest=DIR` / `type=local,src=DIR`.
    Local {
        /// The OCI layout directory.
        dir: PathBuf,
        /// `mode=max`.
        max: bool,
    },
    /// `type=inline`: records in the image config (read back through `type=registry`).
    Inline,
}

impl CacheSpec {
    /// Parses a `--cache-to` (`to = true`) or `--cache-from` value.
    pub fn parse(s: &str, to: bool) -> Result<CacheSpec, String> {
        let mut fields = BTreeMap::new();
        for f in s.split(',') {
            match f.split_once('=') {
                Some((k, v)) => {
                    fields.insert(k.trim(), v.trim());
                }
                // `--cache-from REF` is short for type=registry,ref=REF.
                None if !to && !s.contains('=') => {
                    fields.insert("type", "registry");
                    fields.insert("ref", f.trim());
                }
                None => return Err(format!("{f:?} is not KEY=VALUE")),
            }
        }
        let max = match fields.get("mode").copied() {
            None | Some("min") => false,
            Some("max") => true,
            Some(m) => return Err(format!("unknown mode {m:?} (use min or max)")),
        };
        match fields.get("type").copied().unwrap_or("registry") {
            "registry" => Ok(CacheSpec::Registry {
                reference: fields
                    .get("ref")
                    .ok_or("type=registry needs ref=REGISTRY/REPOSITORY:TAG")?
                    .to_string(),
                max,
            }),
            "local" => {
                let key = if to { "dest" } else { "src" };
                Ok(CacheSpec::Local {
                    dir: PathBuf::from(
                        fields
                            .get(key)
                            .ok_or(format!("type=local needs {key}=DIR"))?,
                    ),
                    max,
                })
            }
            "inline" if to => Ok(CacheSpec::Inline),
            t => Err(format!(
                "unknown cache type {t:?} (use registry, local{})",
                if to { " or inline" } else { "" }
            )),
        }
    }
}

/// Where an imported cache's layers are.
#[derive(Debug, Clone)]
pub enum Source {
    /// In a registry repository (fetched lazily, mounted on push).
    Registry(Arc<Client>, Reference),
    /// In an OCI layout directory.
    Dir(PathBuf),
}

/// Records read from a `--cache-from`.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Key (hex) → record.
    pub records: BTreeMap<String, Record>,
    /// Where their layers are.
    pub source: Source,
}

/// The records as the JSON value stored in a config.
pub fn records_value(records: &[(Digest, Record)]) -> serde_json::Value {
    let map: BTreeMap<&str, &Record> = records.iter().map(|(k, r)| (k.hex(), r)).collect();
    serde_json::to_value(map).expect("serialisable")
}

fn records_of(config: &ImageConfig) -> BTreeMap<String, Record> {
    config
        .cache
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// Writes a cache artifact (config + manifest) into the store; returns the manifest's
/// descriptor. Its layers must already be in the store or in `sources`.
pub fn write_artifact(
    store: &Store,
    records: &[(Digest, Record)],
) -> Result<Descriptor, StoreError> {
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut diff_ids = Vec::new();
    for (_, r) in records {
        if let (Some(l), Some(d)) = (&r.layer, &r.diff_id) {
            if !layers.iter().any(|x| x.digest == l.digest) {
                layers.push(l.clone());
                diff_ids.push(d.clone());
            }
        }
    }
    let host = crate::image::Platform::parse(&crate::frontend::expand::host_platform());
    let config = ImageConfig {
        architecture: host.architecture,
        os: host.os,
        rootfs: image::RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        cache: Some(records_value(records)),
        ..ImageConfig::default()
    };
    let config_desc = store.put(CACHE_CONFIG, &image::to_json(&config))?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(image::MANIFEST_V1.into()),
        config: config_desc,
        layers,
        annotations: BTreeMap::new(),
    };
    store.put(image::MANIFEST_V1, &image::to_json(&manifest))
}

/// Copies a cache artifact (or any image) from the store into an OCI layout directory,
/// tagged `tag`; blobs in `sources` only are skipped (they are fetched first by the caller).
pub fn write_dir(
    store: &Store,
    manifest: &Descriptor,
    dir: &Path,
    tag: &str,
) -> Result<(), StoreError> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_err("create directory", &blobs))?;
    write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let md = Digest::parse(&manifest.digest)
        .map_err(|_| StoreError::BadDigest(manifest.digest.clone()))?;
    let m: Manifest =
        serde_json::from_slice(&store.read(&md)?).map_err(|source| StoreError::Corrupt {
            path: store.blob_path(&md),
            source,
        })?;
    let mut all: Vec<&Descriptor> = m.layers.iter().collect();
    all.push(&m.config);
    all.push(manifest);
    for d in all {
        crate::export::oci_dir::put_blob(store, d, &blobs)?;
    }
    let mut desc = manifest.clone();
    desc.annotations = BTreeMap::from([(
        "org.opencontainers.image.ref.name".to_string(),
        tag.to_string(),
    )]);
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": image::INDEX_V1, "manifests": [desc]});
    write_atomic(
        &dir.join("index.json"),
        &serde_json::to_vec(&index).expect("json"),
    )
}

/// Reads the records of a cache artifact (or of an image with inline cache) in a registry.
pub fn import_registry(
    client: &Arc<Client>,
    reference: &Reference,
    store: &Store,
) -> Result<Imported, crate::registry::RegistryError> {
    let platform = crate::image::Platform::parse(&crate::frontend::expand::host_platform());
    let res = crate::registry::pull::resolve(client, reference, &platform, store)?;
    Ok(Imported {
        records: records_of(&res.config),
        source: Source::Registry(client.clone(), res.pinned),
    })
}

/// Reads the records of a cache written with `type=local,dest=DIR`.
pub fn import_dir(dir: &Path) -> Result<Imported, String> {
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    let index: serde_json::Value = serde_json::from_slice(&read(dir.join("index.json"))?)
        .map_err(|e| format!("{}/index.json: {e}", dir.display()))?;
    let mut records = BTreeMap::new();
    for m in index["manifests"].as_array().cloned().unwrap_or_default() {
        let Some(d) = m["digest"].as_str().and_then(|d| Digest::parse(d).ok()) else {
            continue;
        };
        let blob = |d: &Digest| dir.join("blobs/sha256").join(d.hex());
        let manifest: Manifest = serde_json::from_slice(&read(blob(&d))?)
            .map_err(|e| format!("cache manifest {d}: {e}"))?;
        let cd = Digest::parse(&manifest.config.digest).map_err(|e| format!("{e:?}"))?;
        let config: ImageConfig = serde_json::from_slice(&read(blob(&cd))?)
            .map_err(|e| format!("cache config {cd}: {e}"))?;
        records.extend(records_of(&config));
    }
    Ok(Imported {
        records,
        source: Source::Dir(dir.to_path_buf()),
    })
}

/// Copies a blob from an OCI layout directory into the store, verified by its digest.
pub fn copy_from_dir(dir: &Path, d: &Digest, store: &Store) -> Result<(), StoreError> {
    if store.has(d) {
        return Ok(());
    }
    let src = dir.join("blobs/sha256").join(d.hex());
    let mut f = std::fs::File::open(&src).map_err(io_err("open", &src))?;
    let mut w = store.ingest()?;
    std::io::copy(&mut f, &mut w).map_err(io_err("copy", &src))?;
    w.commit(Some(d)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_cache_specs() {
        assert_eq!(
            CacheSpec::parse("type=registry,ref=r.io/a/b:cache,mode=max", true).unwrap(),
            CacheSpec::Registry {
                reference: "r.io/a/b:cache".into(),
                max: true
            }
        );
        assert_eq!(
            CacheSpec::parse("r.io/a/b:cache", false).unwrap(),
            CacheSpec::Registry {
                reference: "r.io/a/b:cache".into(),
                max: false
            }
        );
        assert_eq!(
            CacheSpec::parse("type=local,src=/c", false).unwrap(),
            CacheSpec::Local {
                dir: "/c".into(),
                max: false
            }
        );
        assert!(CacheSpec::parse("type=local,src=/c", true).is_err());
        assert!(CacheSpec::parse("type=inline", false).is_err());
        assert!(CacheSpec::parse("type=gha", true).is_err());
    }
}
