//! Pulling: tag → manifest (or index → the platform's manifest), config, and layers into the
//! store, every byte verified against its digest and size. Manifests and configs are fetched
//! when a build starts; layers only when something needs the base filesystem or the blobs.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::client::{Client, Host, Scope};
use super::RegistryError;
use crate::content::{sha256_digest, Descriptor, Store, StoreError};
use crate::frontend::instructions::edit_distance;
use crate::image::{self, ImageConfig, Manifest, Platform};
use crate::reference::{Digest, Reference};

/// Manifest media types rbuild accepts, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest or config accepted (larger ones are refused as hostile).
pub const MAX_METADATA: u64 = 4 << 20;

/// Layers fetched at once.
const PARALLEL: usize = 4;

/// A resolved image: manifest and config in the store, layers described.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference, pinned to the manifest digest.
    pub pinned: Reference,
    /// The platform manifest's descriptor.
    pub manifest: Descriptor,
    /// Its layers (not fetched yet).
    pub layers: Vec<Descriptor>,
    /// The config.
    pub config: ImageConfig,
    /// The config's descriptor.
    pub config_desc: Descriptor,
}

fn protocol(host: &str, message: impl Into<String>) -> RegistryError {
    RegistryError::Protocol {
        host: host.to_string(),
        message: message.into(),
    }
}

/// The error code of a registry error body (`NAME_UNKNOWN`, `MANIFEST_UNKNOWN`, ...).
fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["errors"][0]["code"].as_str().map(String::from)
}

/// Reads at most `limit` bytes; more is an error.
fn read_limited(
    r: impl Read,
    limit: u64,
    host: &str,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| protocol(host, format!("reading {what}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(protocol(
            host,
            format!("{what} is larger than {limit} bytes; refused"),
        ));
    }
    Ok(out)
}

/// GETs a manifest by tag or digest; returns bytes, media type and digest (verified when the
/// reference pins one).
fn get_manifest(
    client: &Client,
    host: &Arc<Host>,
    r: &Reference,
    selector: &str,
) -> Result<(Vec<u8>, String, Digest), RegistryError> {
    let what = format!("{}/{}:{selector}", r.domain, r.path);
    let resp = client.send(host, &Scope::pull(&r.path), &what, &|h, base| {
        h.get(format!("{base}/v2/{}/manifests/{selector}", r.path))
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
    })?;
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let body = read_limited(resp, MAX_METADATA, &host.name, &format!("manifest {what}"))?;
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(not_found(client, host, r, selector, error_code(&body)));
    }
    if status == reqwest::StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            host: host.name.clone(),
            reference: what,
            had_credentials: true,
            source_used: None,
            tried: vec![],
        });
    }
    if !status.is_success() {
        return Err(protocol(
            &host.name,
            format!("manifest {what}: the registry answered {status}"),
        ));
    }
    let digest = sha256_digest(&body);
    if let Ok(pinned) = Digest::parse(selector) {
        if pinned != digest {
            return Err(protocol(
                &host.name,
                format!("manifest {what} hashes to {digest}; refused"),
            ));
        }
    }
    let media = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(String::from))
        .unwrap_or(ctype);
    Ok((body, media, digest))
}

/// Turns a 404 into "no such repository" or "no such tag", with suggestions.
fn not_found(
    client: &Client,
    host: &Arc<Host>,
    r: &Reference,
    selector: &str,
    code: Option<String>,
) -> RegistryError {
    let tags = if code.as_deref() == Some("NAME_UNKNOWN") {
        Err(())
    } else {
        list_tags(client, host, &r.path).map_err(|_| ())
    };
    match tags {
        Ok(tags) => RegistryError::ManifestUnknown {
            reference: format!("{}/{}", r.domain, r.path),
            what: selector.to_string(),
            suggestions: nearest(selector, &tags, 3),
        },
        Err(()) => {
            let names = catalog(client, host).unwrap_or_default();
            RegistryError::NameUnknown {
                host: r.domain.clone(),
                name: r.path.clone(),
                suggestions: nearest(&r.path, &names, 3),
            }
        }
    }
}

/// Up to `n` candidates closest to `word` by edit distance (and not too far).
fn nearest(word: &str, candidates: &[String], n: usize) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (word.len().max(c.len()) / 2).max(2))
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, c)| c.clone()).collect()
}

/// The repository's tags (`/v2/NAME/tags/list`), first 1000.
pub fn list_tags(
    client: &Client,
    host: &Arc<Host>,
    repo: &str,
) -> Result<Vec<String>, RegistryError> {
    let resp = client.send(host, &Scope::pull(repo), repo, &|h, base| {
        h.get(format!("{base}/v2/{repo}/tags/list?n=1000"))
    })?;
    if !resp.status().is_success() {
        return Err(protocol(
            &host.name,
            format!("tags of {repo}: {}", resp.status()),
        ));
    }
    let body = read_limited(resp, MAX_METADATA, &host.name, "tag list")?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| protocol(&host.name, format!("tag list: {e}")))?;
    Ok(v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// The registry's catalog, when it lets us list it.
fn catalog(client: &Client, host: &Arc<Host>) -> Result<Vec<String>, RegistryError> {
    let resp = client.send(host, &Scope::catalog(), "the catalog", &|h, base| {
        h.get(format!("{base}/v2/_catalog?n=1000"))
    })?;
    if !resp.status().is_success() {
        return Ok(vec![]);
    }
    let body = read_limited(resp, MAX_METADATA, &host.name, "catalog")?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok(v["repositories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// The digest a tag points to (an image index for multi-platform images), verified against
/// the bytes received: what `FROM name:tag@digest` pins.
pub fn tag_digest(client: &Client, r: &Reference) -> Result<Digest, RegistryError> {
    if let Some(d) = &r.digest {
        return Ok(d.clone());
    }
    let host = client.host(&r.domain)?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let (_, _, digest) = get_manifest(client, &host, r, &tag)?;
    Ok(digest)
}

/// Resolves `r` like [`resolve_direct`], trying the client's mirrors first for docker.io.
pub fn resolve(
    client: &Client,
    r: &Reference,
    platform: &Platform,
    store: &Store,
) -> Result<Resolved, RegistryError> {
    if r.domain == "docker.io" {
        for m in &client.options().mirrors {
            let host = m
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            let mut via = r.clone();
            via.domain = host.to_string();
            if let Ok(found) = resolve_direct(client, &via, platform, store) {
                return Ok(found);
            }
        }
    }
    resolve_direct(client, r, platform, store)
}

/// Resolves `r` for `platform`: stores the manifest and config, describes the layers.
pub fn resolve_direct(
    client: &Client,
    r: &Reference,
    platform: &Platform,
    store: &Store,
) -> Result<Resolved, RegistryError> {
    let host = client.host(&r.domain)?;
    let selector = r
        .digest
        .as_ref()
        .map(|d| d.to_string())
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (mut body, mut media, mut digest) = get_manifest(client, &host, r, &selector)?;
    for _ in 0..3 {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| protocol(&host.name, format!("manifest {digest} is not JSON: {e}")))?;
        if !v["manifests"].is_array() {
            break;
        }
        store.put(&media, &body)?;
        let list = v["manifests"].as_array().cloned().unwrap_or_default();
        let field =
            |m: &serde_json::Value, k: &str| m["platform"][k].as_str().unwrap_or("").to_string();
        let Some(m) = list.iter().find(|m| {
            platform.matches(
                &field(m, "os"),
                &field(m, "architecture"),
                &field(m, "variant"),
            )
        }) else {
            let have: Vec<String> = list
                .iter()
                .filter(|m| field(m, "os") != "unknown")
                .map(|m| {
                    Platform {
                        os: field(m, "os"),
                        architecture: field(m, "architecture"),
                        variant: field(m, "variant"),
                    }
                    .to_string()
                })
                .collect();
            return Err(RegistryError::Platform {
                reference: r.to_string(),
                want: platform.to_string(),
                have: have.join(", "),
            });
        };
        let d = m["digest"].as_str().unwrap_or("").to_string();
        (body, media, digest) = get_manifest(client, &host, r, &d)?;
    }
    if media.contains("manifest.v1+prettyjws")
        || media.ends_with("manifest.v1+json") && !media.contains("oci")
    {
        return Err(protocol(&host.name, format!("{r} uses Docker's schema 1 manifest, which rbuild does not read; re-push it with a current client")));
    }
    let manifest: Manifest = serde_json::from_slice(&body)
        .map_err(|e| protocol(&host.name, format!("manifest {digest}: {e}")))?;
    let manifest_desc = store.put(&media, &body)?;
    let cfg_digest = Digest::parse(&manifest.config.digest).map_err(|_| {
        protocol(
            &host.name,
            format!("config digest {:?}", manifest.config.digest),
        )
    })?;
    if manifest.config.size > MAX_METADATA {
        return Err(protocol(
            &host.name,
            format!(
                "config {cfg_digest} is {} bytes; refused",
                manifest.config.size
            ),
        ));
    }
    fetch_blob(client, &host, &r.path, &manifest.config, store)?;
    let config: ImageConfig = serde_json::from_slice(&store.read(&cfg_digest)?)
        .map_err(|e| protocol(&host.name, format!("config {cfg_digest}: {e}")))?;
    let mut pinned = r.clone();
    pinned.digest = Some(digest);
    Ok(Resolved {
        pinned,
        manifest: manifest_desc,
        layers: manifest
            .layers
            .into_iter()
            .map(|mut l| {
                l.media_type = image::oci_layer_media_type(&l.media_type);
                l
            })
            .collect(),
        config,
        config_desc: manifest.config,
    })
}

/// Fetches one blob into the store (skipped when present), resuming with `Range` after a
/// dropped connection where the registry allows, verifying size and digest.
pub fn fetch_blob(
    client: &Client,
    host: &Arc<Host>,
    repo: &str,
    desc: &Descriptor,
    store: &Store,
) -> Result<(), RegistryError> {
    let digest = Digest::parse(&desc.digest)
        .map_err(|_| protocol(&host.name, format!("malformed digest {:?}", desc.digest)))?;
    if store.has(&digest) {
        return Ok(());
    }
    let what = format!("{}/{repo}@{digest}", host.name);
    let mut ingest = store.ingest()?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let offset = ingest.size();
        let resp = client.send(host, &Scope::pull(repo), &what, &|h, base| {
            let req = h.get(format!("{base}/v2/{repo}/blobs/{digest}"));
            if offset > 0 {
                req.header(reqwest::header::RANGE, format!("bytes={offset}-"))
            } else {
                req
            }
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(protocol(
                &host.name,
                format!("blob {what} is missing from the registry"),
            ));
        }
        if !status.is_success() {
            return Err(protocol(
                &host.name,
                format!("blob {what}: the registry answered {status}"),
            ));
        }
        if offset > 0 && status != reqwest::StatusCode::PARTIAL_CONTENT {
            ingest = store.ingest()?; // no range support: start over
        }
        let left = desc.size.saturating_sub(ingest.size());
        let mut body = resp.take(left + 1);
        match std::io::copy(&mut body, &mut ingest) {
            Ok(_) if ingest.size() > desc.size => {
                return Err(protocol(
                    &host.name,
                    format!(
                        "blob {what} is larger than its descriptor's {} bytes; refused",
                        desc.size
                    ),
                ));
            }
            Ok(_) if ingest.size() == desc.size => break,
            Ok(_) | Err(_) if attempts < client.options().attempts => continue,
            Ok(_) => {
                return Err(protocol(
                    &host.name,
                    format!(
                        "blob {what} ended after {} of {} bytes",
                        ingest.size(),
                        desc.size
                    ),
                ));
            }
            Err(e) => return Err(protocol(&host.name, format!("blob {what}: {e}"))),
        }
    }
    ingest.commit(Some(&digest)).map_err(|e| match e {
        StoreError::DigestMismatch { actual, .. } => protocol(
            &host.name,
            format!("blob {what} hashes to {actual}; refused (nothing was stored)"),
        ),
        other => RegistryError::Store(other),
    })?;
    Ok(())
}

/// Fetches blobs of `repo` concurrently.
pub fn fetch_blobs(
    client: &Client,
    reference: &Reference,
    descs: &[Descriptor],
    store: &Store,
) -> Result<(), RegistryError> {
    let missing: Vec<&Descriptor> = descs
        .iter()
        .filter(|d| Digest::parse(&d.digest).map_or(true, |g| !store.has(&g)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let host = client.host(&reference.domain)?;
    let next = AtomicUsize::new(0);
    let workers = PARALLEL.min(missing.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<(), RegistryError> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(d) = missing.get(i) else {
                            return Ok(());
                        };
                        fetch_blob(client, &host, &reference.path, d, store)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_tags_by_edit_distance() {
        let tags: Vec<String> = ["latest", "1.25", "1.25-alpine", "stable"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(nearest("latst", &tags, 3)[0], "latest");
        assert_eq!(nearest("1.52", &tags, 1), ["1.25"]);
        assert!(nearest("zzzzzzzzzz", &tags, 3).is_empty());
    }
}
