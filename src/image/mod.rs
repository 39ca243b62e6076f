//! OCI image config, manifest and index, as rbuild's own types: Docker's config fields that
//! `oci-spec` lacks (Healthcheck, OnBuild, Shell) are kept, and every map is ordered so the
//! JSON (and so the digest) is the same for the same image, byte for byte.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::content::Descriptor;

/// Media type of an OCI manifest.
pub const MANIFEST_V1: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI index.
pub const INDEX_V1: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_V1: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema2 manifest (accepted when reading).
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema2 config (accepted when reading).
pub const DOCKER_CONFIG_V1: &str = "application/vnd.docker.container.image.v1+json";

/// An empty JSON object that serialises as `{}` (ExposedPorts, Volumes values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Docker's health check config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]`, `["CMD-SHELL", "..."]`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub test: Vec<String>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub interval: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub timeout: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub start_period: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub start_interval: u64,
    /// Failures before unhealthy.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub retries: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The runtime part of an image config (`docker inspect`'s `Config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `USER`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub user: String,
    /// `EXPOSE`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `ENV`, as `K=V`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub env: Vec<String>,
    /// `ENTRYPOINT`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub volumes: BTreeMap<String, Empty>,
    /// `WORKDIR`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub working_dir: String,
    /// `LABEL`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub stop_signal: String,
    /// `HEALTHCHECK`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub healthcheck: Option<HealthConfig>,
    /// `ONBUILD` triggers.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub on_build: Vec<String>,
    /// `SHELL`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub shell: Vec<String>,
    /// Docker sets this for shell-form CMD/ENTRYPOINT on Windows; kept for round trips.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub args_escaped: bool,
}

impl RunConfig {
    /// The ENV list as pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }

    /// Sets one variable, keeping the order of first definition.
    pub fn set_env(&mut self, k: &str, v: &str) {
        let entry = format!("{k}={v}");
        match self
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == k)
        {
            Some(e) => *e = entry,
            None => self.env.push(entry),
        }
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    /// The instruction, as Docker writes it.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub created_by: String,
    /// Free text.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub comment: String,
    /// True for metadata-only steps.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub empty_layer: bool,
}

/// `rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// The image config blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    /// `MAINTAINER`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub author: String,
    /// CPU architecture (`amd64`).
    pub architecture: String,
    /// OS (`linux`).
    pub os: String,
    /// Architecture variant (`v7`).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub variant: String,
    /// Runtime config.
    #[serde(default)]
    pub config: RunConfig,
    /// Layers.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per instruction.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub history: Vec<History>,
    /// Build cache records carried in the config (`--cache-to type=inline`, and the config
    /// of a cache artifact), read back by `--cache-from`.
    #[serde(
        rename = "rbuild.cache.v1",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub cache: Option<serde_json::Value>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type.
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    /// Manifests, with `platform` and annotations kept as raw JSON.
    pub manifests: Vec<serde_json::Value>,
}

/// Canonical JSON of a value: serde_json with rbuild's ordered types is byte-stable.
pub fn to_json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("image types serialise")
}

/// Formats seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// A platform as `--platform` and image indexes name it: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, or empty.
    pub variant: String,
}

impl Platform {
    /// Parses `os/arch[/variant]` (missing parts default to linux/amd64).
    pub fn parse(s: &str) -> Platform {
        let mut it = s.split('/');
        Platform {
            os: it
                .next()
                .filter(|x| !x.is_empty())
                .unwrap_or("linux")
                .to_string(),
            architecture: it.next().unwrap_or("amd64").to_string(),
            variant: it.next().unwrap_or("").to_string(),
        }
    }

    /// Whether an image for (`os`, `arch`, `variant`) runs on this platform: os and arch
    /// exactly, the variant when both name one (arm64's implied `v8` counts as none).
    pub fn matches(&self, os: &str, arch: &str, variant: &str) -> bool {
        let norm = |a: &str, v: &str| {
            if a == "arm64" && v == "v8" {
                String::new()
            } else {
                v.to_string()
            }
        };
        let (want, have) = (norm(&self.architecture, &self.variant), norm(arch, variant));
        self.os == os
            && self.architecture == arch
            && (want.is_empty() || have.is_empty() || want == have)
    }
}

/// A `--platform` or `FROM --platform` value that names no platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {spec:?}: {reason}")]
pub struct PlatformError {
    /// The value as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// An architecture and variant in OCI terms (`x86_64` is `amd64`, `aarch64` is `arm64`,
/// `armhf` is `arm/v7`), as containerd's platform matcher normalizes them.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, variant) = (arch.to_ascii_lowercase(), variant.to_ascii_lowercase());
    let (a, v) = match (arch.as_str(), variant.as_str()) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "") | ("arm", "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        (a, v) => (a, v),
    };
    (a.to_string(), v.to_string())
}

impl Platform {
    /// Parses what users write after `--platform`: `os`, `arch`, `os/arch` or
    /// `os/arch/variant`, parsed and then normalized as buildx does with containerd's rules
    /// (so `linux/x86_64` builds what `linux/amd64` builds and `TARGETARCH` is `amd64`;
    /// `linux/arm` is `linux/arm/v7`). A lone word must be a known OS or
    /// architecture; the other part comes from `host` (this machine's `os/arch`).
    pub fn from_specifier(spec: &str, host: &str) -> Result<Platform, PlatformError> {
        let fail = |reason: &str| PlatformError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec.is_empty() {
            return Err(fail("it is empty"));
        }
        if spec.contains(',') {
            return Err(fail(
                "rbuild builds one platform at a time; run one build per platform",
            ));
        }
        let parts: Vec<&str> = spec.split('/').collect();
        if parts.len() > 3 {
            return Err(fail("too many parts"));
        }
        let component = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if let Some(bad) = parts.iter().find(|c| !component(c)) {
            return Err(fail(&format!("part {bad:?} is not a platform name")));
        }
        let os = |o: &str| match o.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let p = match parts[..] {
            [one] => {
                let host = Platform::parse(host);
                if KNOWN_OS.contains(&os(one).as_str()) {
                    Platform {
                        os: os(one),
                        ..host
                    }
                } else {
                    let (architecture, variant) = normalize_arch(one, "");
                    if !KNOWN_ARCH.contains(&architecture.as_str()) {
                        return Err(fail("unknown operating system or architecture"));
                    }
                    Platform {
                        os: host.os,
                        architecture,
                        variant,
                    }
                }
            }
            [o, a, ref variant @ ..] => {
                let (architecture, variant) =
                    normalize_arch(a, variant.first().copied().unwrap_or(""));
                Platform {
                    os: os(o),
                    architecture,
                    variant,
                }
            }
            [] => unreachable!("split yields at least one part"),
        };
        Ok(p)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// The OCI media type for a layer of another image format (Docker's schema 2 types map to
/// their OCI twins; the bytes are the same), so manifests rbuild writes are uniformly OCI.
pub fn oci_layer_media_type(mt: &str) -> String {
    match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod platform_tests {
    use super::Platform;

    #[test]
    fn arm_is_not_arm64_and_variants_count() {
        let p = Platform::parse("linux/arm64");
        assert!(p.matches("linux", "arm64", ""));
        assert!(p.matches("linux", "arm64", "v8"));
        assert!(!p.matches("linux", "arm", "v7"));
        assert!(!Platform::parse("linux/arm").matches("linux", "arm64", ""));
        assert!(!Platform::parse("linux/arm/v7").matches("linux", "arm", "v6"));
        assert!(Platform::parse("linux/arm/v7").matches("linux", "arm", "v7"));
        assert!(!Platform::parse("windows/amd64").matches("linux", "amd64", ""));
    }

    #[test]
    fn specifiers_normalize_like_containerd_and_garbage_is_refused() {
        let p = |s: &str| Platform::from_specifier(s, "linux/amd64").map(|p| p.to_string());
        for (spec, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AARCH64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/arm", "linux/arm/v7"),
            ("arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("linux", "linux/amd64"),
            ("arm64", "linux/arm64"),
            ("windows/amd64", "windows/amd64"),
            ("macos/arm64", "darwin/arm64"),
            ("linux/riscv64", "linux/riscv64"),
        ] {
            assert_eq!(p(spec).as_deref(), Ok(want), "{spec}");
        }
        for bad in [
            "garbage",
            "linux/",
            "/amd64",
            "",
            "linux/amd64/v2/x",
            "linux amd64",
            "linux/amd64,linux/arm64",
            "linux/arm64/v8.0",
            "linux/*",
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.spec, bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(p("linux/amd64,linux/arm64")
            .unwrap_err()
            .reason
            .contains("one platform"));
    }
}
