//! Base images: `oci-layout://PATH[:tag|@digest]` directories on disk (the air-gapped way in),
//! or registry references. Layout blobs are verified and imported into the store; registry
//! bases bring only their manifest and config here — layers are fetched when needed.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::content::{Descriptor, Store, StoreError};
use crate::image::{ImageConfig, Manifest, Platform};
use crate::reference::{Digest, Reference};
use crate::registry::Client;

/// Base image failures.
#[derive(Debug, Error)]
pub enum BaseError {
    /// A registry image was asked for.
    #[error("base image {0:?} comes from a registry, which this rbuild cannot pull yet")]
    Unsupported(String),
    /// The layout is unreadable or malformed.
    #[error("OCI layout {path}: {message}")]
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The reference is malformed.
    #[error("invalid base image reference: {0}")]
    Reference(#[from] crate::reference::RefError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The image is for another platform than the build.
    #[error("base image {image} is {have}, but the build is for {want}")]
    Platform {
        /// The image as named.
        image: String,
        /// Its platform.
        have: String,
        /// The build's.
        want: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--pull never` and the image was never resolved into this store.
    #[error("base image {0} is not in the store and --pull never forbids fetching it")]
    NotLocal(String),
}

/// When a registry base is looked up again (`--pull`), following Kubernetes'
/// imagePullPolicy defaults: an untagged or `:latest` base is re-resolved every build, a
/// specific tag is resolved once and then taken from the store, a digest never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// The rule above.
    #[default]
    Default,
    /// Resolve every build (`always`, `newer`).
    Always,
    /// Resolve only when the store has no resolution yet.
    Missing,
    /// Never contact a registry for bases.
    Never,
}

impl PullPolicy {
    /// Parses `--pull` values (`true`/`false` as Docker's boolean form).
    pub fn parse(s: &str) -> Option<PullPolicy> {
        Some(match s {
            "always" | "newer" | "true" => PullPolicy::Always,
            "missing" | "false" => PullPolicy::Missing,
            "never" => PullPolicy::Never,
            "default" => PullPolicy::Default,
            _ => return None,
        })
    }

    /// Whether `r` must be resolved against the registry even if the store knows it.
    pub fn must_resolve(self, r: &Reference) -> bool {
        match self {
            PullPolicy::Always => r.digest.is_none(),
            PullPolicy::Missing | PullPolicy::Never => false,
            PullPolicy::Default => {
                r.digest.is_none() && matches!(r.tag.as_deref(), None | Some("latest"))
            }
        }
    }
}

/// A registry base as last resolved into the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Resolution {
    pinned: String,
    manifest: Descriptor,
}

fn resolution_path(store: &Store, r: &Reference, platform: &Platform) -> PathBuf {
    let id = crate::content::sha256_digest(format!("{r}\n{platform}").as_bytes());
    store.root().join("cache/bases").join(id.hex())
}

/// The base from an earlier resolution, if the store still has its manifest and config.
fn local_resolution(store: &Store, r: &Reference, platform: &Platform) -> Option<BaseImage> {
    let res: Resolution =
        serde_json::from_slice(&std::fs::read(resolution_path(store, r, platform)).ok()?).ok()?;
    let md = Digest::parse(&res.manifest.digest).ok()?;
    let m: crate::image::Manifest = serde_json::from_slice(&store.read(&md).ok()?).ok()?;
    let cd = Digest::parse(&m.config.digest).ok()?;
    let config: ImageConfig = serde_json::from_slice(&store.read(&cd).ok()?).ok()?;
    Some(BaseImage {
        config,
        layers: m
            .layers
            .into_iter()
            .map(|mut l| {
                l.media_type = crate::image::oci_layer_media_type(&l.media_type);
                l
            })
            .collect(),
        manifest_digest: res.manifest.digest,
        remote: Some(Reference::parse(&res.pinned).ok()?),
        how: String::new(),
    })
}

impl BaseError {
    /// What to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            BaseError::Unsupported(_) => Some("use a local base: `FROM oci-layout:///path/to/layout[:tag]`, or `--build-context NAME=oci-layout://...`".into()),
            BaseError::Reference(e) => Some(e.hint()),
            BaseError::NotLocal(r) => Some(format!("run `rbuild pull {r}` first, or build without --pull never")),
            BaseError::Registry(e) => e.hint(),
            BaseError::Layout { .. } => Some("check the path and tag; `skopeo inspect oci:PATH:TAG` shows what the layout holds".into()),
            BaseError::Platform { have, .. } => Some(format!("build with `--platform {have}`, or write `FROM --platform={have} ...` if that is intended")),
            _ => None,
        }
    }
}

/// A loaded base image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Its config.
    pub config: ImageConfig,
    /// Its layers (in the store now).
    pub layers: Vec<Descriptor>,
    /// Manifest digest.
    pub manifest_digest: String,
    /// For registry images: the reference pinned to the manifest digest (where the layers
    /// are fetched from).
    pub remote: Option<Reference>,
    /// How it was found, for verbose output (which `--pull` rule applied).
    pub how: String,
}

/// Loads `spec` (an `oci-layout://` reference) into the store.
pub fn load(
    spec: &str,
    store: &Store,
    platform: Option<&str>,
    registry: Option<&Client>,
    pull: PullPolicy,
) -> Result<BaseImage, BaseError> {
    let Some(rest) = spec.strip_prefix("oci-layout://") else {
        let r = Reference::parse_docker(spec)?.with_default_tag();
        let client = registry.ok_or_else(|| BaseError::Unsupported(spec.to_string()))?;
        let want = Platform::parse(
            &platform
                .map(String::from)
                .unwrap_or_else(crate::frontend::expand::host_platform),
        );
        if !pull.must_resolve(&r) {
            if let Some(mut img) = local_resolution(store, &r, &want) {
                check_platform(spec, &img.config, platform)?;
                img.how = format!(
                    "{} from the store ({})",
                    img.manifest_digest,
                    match pull {
                        PullPolicy::Default =>
                            "--pull default: a specific tag or digest is resolved once",
                        PullPolicy::Never => "--pull=never",
                        _ => "--pull=missing",
                    }
                );
                return Ok(img);
            }
            if pull == PullPolicy::Never {
                return Err(BaseError::NotLocal(r.to_string()));
            }
        }
        let res = crate::registry::pull::resolve(client, &r, &want, store)?;
        check_platform(spec, &res.config, platform)?;
        let path = resolution_path(store, &r, &want);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::content::write_atomic(
            &path,
            &serde_json::to_vec(&Resolution {
                pinned: res.pinned.to_string(),
                manifest: res.manifest.clone(),
            })
            .expect("serialisable"),
        );
        let how = format!(
            "{} resolved from {} ({})",
            res.manifest.digest,
            r.domain,
            match pull {
                PullPolicy::Default if pull.must_resolve(&r) =>
                    "--pull default: untagged and :latest bases are resolved every build",
                PullPolicy::Always => "--pull=always",
                _ => "not in the store yet",
            }
        );
        return Ok(BaseImage {
            config: res.config,
            layers: res.layers,
            manifest_digest: res.manifest.digest,
            remote: Some(res.pinned),
            how,
        });
    };
    let (path, selector) = split_layout_ref(rest);
    let dir = PathBuf::from(path);
    let err = |m: String| BaseError::Layout {
        path: dir.clone(),
        message: m,
    };
    let index: serde_json::Value = read_json(&dir.join("index.json")).map_err(err)?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let chosen = match &selector {
        Selector::Digest(d) => manifests
            .iter()
            .find(|m| m["digest"] == d.as_str())
            .cloned()
            .or_else(|| Some(serde_json::json!({"digest": d}))),
        Selector::Tag(t) => manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == t.as_str())
            .cloned(),
        Selector::None => {
            if manifests.len() == 1 {
                manifests.first().cloned()
            } else {
                manifests
                    .iter()
                    .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
                    .cloned()
            }
        }
    };
    let Some(mut desc) = chosen else {
        let tags: Vec<String> = manifests
            .iter()
            .filter_map(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        return Err(err(format!(
            "no image {} (tags here: {})",
            selector.describe(),
            if tags.is_empty() {
                "none".into()
            } else {
                tags.join(", ")
            }
        )));
    };
    // Resolve nested indexes by platform.
    for _ in 0..4 {
        let digest = desc["digest"].as_str().unwrap_or("").to_string();
        let bytes = import_metadata(&dir, &digest, store).map_err(&err)?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| err(format!("manifest {digest}: {e}")))?;
        if v["manifests"].is_array() {
            let want = Platform::parse(
                &platform
                    .map(String::from)
                    .unwrap_or_else(crate::frontend::expand::host_platform),
            );
            let list = v["manifests"].as_array().cloned().unwrap_or_default();
            let field = |m: &serde_json::Value, k: &str| {
                m["platform"][k].as_str().unwrap_or("").to_string()
            };
            let found = list.iter().find(|m| {
                want.matches(
                    &field(m, "os"),
                    &field(m, "architecture"),
                    &field(m, "variant"),
                )
            });
            desc = match found {
                Some(d) => d.clone(),
                None => {
                    let have: Vec<String> = list
                        .iter()
                        .map(|m| {
                            Platform {
                                os: field(m, "os"),
                                architecture: field(m, "architecture"),
                                variant: field(m, "variant"),
                            }
                            .to_string()
                        })
                        .collect();
                    return Err(err(format!(
                        "no image for platform {want} in index {digest} (it has: {})",
                        have.join(", ")
                    )));
                }
            };
            continue;
        }
        let manifest: Manifest =
            serde_json::from_value(v).map_err(|e| err(format!("manifest {digest}: {e}")))?;
        let cfg_bytes = import_metadata(&dir, &manifest.config.digest, store).map_err(&err)?;
        let config: ImageConfig = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| err(format!("config {}: {e}", manifest.config.digest)))?;
        check_platform(spec, &config, platform)?;
        for l in &manifest.layers {
            import_blob(&dir, &l.digest, store).map_err(&err)?;
        }
        return Ok(BaseImage {
            config,
            layers: manifest.layers,
            how: format!("{digest} from the OCI layout {}", dir.display()),
            manifest_digest: digest,
            remote: None,
        });
    }
    Err(err("index nesting too deep".into()))
}

/// Refuses an image whose config names another platform than the one asked for.
fn check_platform(
    spec: &str,
    config: &ImageConfig,
    platform: Option<&str>,
) -> Result<(), BaseError> {
    if let Some(p) = platform.map(Platform::parse) {
        if !p.matches(&config.os, &config.architecture, &config.variant) {
            let have = Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            };
            return Err(BaseError::Platform {
                image: spec.to_string(),
                have: have.to_string(),
                want: p.to_string(),
            });
        }
    }
    Ok(())
}

enum Selector {
    None,
    Tag(String),
    Digest(String),
}

impl Selector {
    fn describe(&self) -> String {
        match self {
            Selector::None => "(no tag given and the layout holds several)".into(),
            Selector::Tag(t) => format!("tagged {t:?}"),
            Selector::Digest(d) => format!("with digest {d}"),
        }
    }
}

fn split_layout_ref(rest: &str) -> (&str, Selector) {
    if let Some((p, d)) = rest.split_once('@') {
        return (p, Selector::Digest(d.to_string()));
    }
    match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => {
            (&rest[..i], Selector::Tag(rest[i + 1..].to_string()))
        }
        _ => (rest, Selector::None),
    }
}

fn read_json(p: &Path) -> Result<serde_json::Value, String> {
    let b = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display()))
}

/// Largest manifest or config read into memory (larger ones are refused as hostile).
const MAX_METADATA: u64 = 4 << 20;

/// Copies a blob from a layout into the store, verifying its digest while it streams.
fn import_blob(dir: &Path, digest: &str, store: &Store) -> Result<Digest, String> {
    let d = Digest::parse(digest).map_err(|e| format!("bad digest {digest:?}: {e}"))?;
    if !store.has(&d) {
        let src = dir.join("blobs/sha256").join(d.hex());
        let mut f = std::fs::File::open(&src).map_err(|e| format!("blob {digest}: {e}"))?;
        let mut w = store.ingest().map_err(|e| e.to_string())?;
        std::io::copy(&mut f, &mut w).map_err(|e| format!("blob {digest}: {e}"))?;
        w.commit(Some(&d))
            .map_err(|e| format!("blob {digest}: {e}"))?;
    }
    Ok(d)
}

/// Imports a manifest or config and returns its bytes.
fn import_metadata(dir: &Path, digest: &str, store: &Store) -> Result<Vec<u8>, String> {
    let d = import_blob(dir, digest, store)?;
    let size = std::fs::metadata(store.blob_path(&d))
        .map_err(|e| e.to_string())?
        .len();
    if size > MAX_METADATA {
        return Err(format!(
            "blob {digest} is {size} bytes, more than a manifest or config may be ({MAX_METADATA})"
        ));
    }
    store.read(&d).map_err(|e| e.to_string())
}
