//! Image references, `[registry/][namespace/]name[:tag][@digest]`, with Docker's rules
//! (distribution/reference): the grammar, `docker.io` and `library/` defaults, `latest` when
//! neither tag nor digest is given, lowercase and length limits, digest validation.
//!
//! Errors carry the library's own text (what users search for) plus a pointer at the bad part
//! and a fix, so `InvalidImageName`-class mistakes are obvious. Checked against the library's
//! vectors in `../shared/conformance/reference`.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use thiserror::Error;

/// The registry used when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy name of the default registry, normalised to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of official images on the default registry.
pub const OFFICIAL_PREFIX: &str = "library/";
/// The tag used when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest allowed repository path.
pub const NAME_MAX: usize = 255;

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RefErrorKind {
    /// Does not fit the grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// Strict parse of a name with capitals.
    #[error("repository name must be lowercase")]
    ContainsUppercase,
    /// Normalised parse of a name with capitals.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// Empty input.
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// Path longer than 255 characters.
    #[error("repository name must not be more than {NAME_MAX} characters")]
    NameTooLong,
    /// Malformed digest.
    #[error("invalid checksum digest format")]
    DigestFormat,
    /// Digest of an algorithm rbuild does not verify.
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
    /// Digest hex of the wrong length.
    #[error("invalid checksum digest length")]
    DigestLength,
    /// A bare 64-hex string, which would be ambiguous with an image ID.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    /// Not in canonical form where canonical form is required.
    #[error("repository name must be canonical")]
    NotCanonical,
}

/// A refused reference: the library's reason, the input, and a hint naming the bad part.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct RefError {
    /// The reason (text as distribution/reference words it).
    pub kind: RefErrorKind,
    /// The reference as given.
    pub input: String,
}

impl RefError {
    fn new(kind: RefErrorKind, input: &str) -> Self {
        RefError {
            kind,
            input: input.to_string(),
        }
    }

    /// A sentence that points at the offending part and says how to fix it.
    pub fn hint(&self) -> String {
        diagnose(&self.input, &self.kind)
    }
}

struct Grammar {
    reference: Regex,
    anchored_name: Regex,
    identifier: Regex,
    digest_any: Regex,
    sha256_hex: Regex,
    tag: Regex,
    path_component: Regex,
    domain: Regex,
}

fn grammar() -> &'static Grammar {
    static G: OnceLock<Grammar> = OnceLock::new();
    G.get_or_init(|| {
        let alnum = "[a-z0-9]+";
        let sep = "(?:[._]|__|[-]+)";
        let path_component = format!("{alnum}(?:{sep}{alnum})*");
        let domain_comp = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
        let domain_name = format!(r"{domain_comp}(?:\.{domain_comp})*");
        let host = format!("(?:{domain_name}|{ipv6})");
        let domain_and_port = format!("{host}(?::[0-9]+)?");
        let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";
        let remote = format!("{path_component}(?:/{path_component})*");
        let name = format!("(?:{domain_and_port}/)?{remote}");
        let re = |s: String| Regex::new(&s).expect("static grammar");
        Grammar {
            reference: re(format!("^({name})(?::({tag}))?(?:@({digest}))?$")),
            anchored_name: re(format!("^(?:({domain_and_port})/)?({remote})$")),
            identifier: re("^[a-f0-9]{64}$".into()),
            digest_any: re(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$".into()),
            sha256_hex: re("^[a-f0-9]{64}$".into()),
            tag: re(format!("^{tag}$")),
            path_component: re(format!("^{path_component}$")),
            domain: re(format!("^{domain_and_port}$")),
        }
    })
}

/// A content digest such as `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Validates `algorithm:hex`; only sha256 is verifiable.
    pub fn parse(s: &str) -> Result<Digest, RefErrorKind> {
        let Some(i) = s.find(':').filter(|&i| i > 0 && i + 1 < s.len()) else {
            return Err(RefErrorKind::DigestFormat);
        };
        let (alg, hex) = (&s[..i], &s[i + 1..]);
        if alg != "sha256" {
            if !grammar().digest_any.is_match(s) {
                return Err(RefErrorKind::DigestFormat);
            }
            return Err(RefErrorKind::DigestUnsupported);
        }
        if hex.len() != 64 {
            return Err(RefErrorKind::DigestLength);
        }
        if !grammar().sha256_hex.is_match(hex) {
            return Err(RefErrorKind::DigestFormat);
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of a finished sha256 hash (always well-formed).
    pub fn from_sha256(hash: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hash)))
    }

    /// The full `sha256:...` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map(|(_, h)| h).unwrap_or(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parts of a reference exactly as written (strict parse, no defaults).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parts {
    /// Registry host[:port], if written.
    pub domain: String,
    /// Repository path.
    pub path: String,
    /// Tag, if written.
    pub tag: Option<String>,
    /// Digest, if written.
    pub digest: Option<Digest>,
}

impl Parts {
    /// `domain/path` (or just `path`).
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }
}

/// Parses with no defaults (distribution's `Parse`).
pub fn parse_strict(s: &str) -> Result<Parts, RefError> {
    let g = grammar();
    let Some(caps) = g.reference.captures(s) else {
        if s.is_empty() {
            return Err(RefError::new(RefErrorKind::NameEmpty, s));
        }
        if g.reference.is_match(&s.to_lowercase()) {
            return Err(RefError::new(RefErrorKind::ContainsUppercase, s));
        }
        return Err(RefError::new(RefErrorKind::InvalidFormat, s));
    };
    let name = caps.get(1).map(|m| m.as_str()).unwrap_or("");
    let mut parts = Parts::default();
    match g.anchored_name.captures(name) {
        Some(nc) => {
            parts.domain = nc
                .get(1)
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            parts.path = nc
                .get(2)
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
        }
        None => parts.path = name.to_string(),
    }
    if parts.path.len() > NAME_MAX {
        return Err(RefError::new(RefErrorKind::NameTooLong, s));
    }
    parts.tag = caps.get(2).map(|m| m.as_str().to_string());
    if let Some(d) = caps.get(3) {
        parts.digest = Some(Digest::parse(d.as_str()).map_err(|k| RefError::new(k, s))?);
    }
    Ok(parts)
}

/// A normalised reference: registry and repository always known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host[:port], `docker.io` by default.
    pub domain: String,
    /// Repository path, `library/x` for official images.
    pub path: String,
    /// Tag, if any (see [`Reference::with_default_tag`]).
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
}

/// Splits off the registry the way Docker does: the first component is a registry only when
/// it contains `.` or `:`, is `localhost`, or has capitals.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            if !first.contains(['.', ':']) && first != "localhost" && first.to_lowercase() == first
            {
                (DEFAULT_DOMAIN.to_string(), name.to_string())
            } else {
                (first.to_string(), name[i + 1..].to_string())
            }
        }
        None => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !rest.contains('/') {
        rest = format!("{OFFICIAL_PREFIX}{rest}");
    }
    (domain, rest)
}

impl Reference {
    /// Parses and normalises like `docker pull` and `FROM` (distribution's
    /// `ParseNormalizedNamed`): no tag is added here.
    pub fn parse(s: &str) -> Result<Reference, RefError> {
        if grammar().identifier.is_match(s) {
            return Err(RefError::new(RefErrorKind::HexName(s.to_string()), s));
        }
        let (domain, rest) = split_docker_domain(s);
        let remote = rest.split(':').next().unwrap_or("");
        if remote.to_lowercase() != remote {
            return Err(RefError::new(
                RefErrorKind::Uppercase(remote.to_string()),
                s,
            ));
        }
        let parts = parse_strict(&format!("{domain}/{rest}")).map_err(|e| RefError {
            input: s.to_string(),
            ..e
        })?;
        Ok(Reference {
            domain: parts.domain,
            path: parts.path,
            tag: parts.tag,
            digest: parts.digest,
        })
    }

    /// Parses, then adds `:latest` when there is neither tag nor digest and drops the tag
    /// when a digest pins the image (distribution's `ParseDockerRef`).
    pub fn parse_docker(s: &str) -> Result<Reference, RefError> {
        Ok(Reference::parse(s)?.with_default_tag())
    }

    /// The same reference with Docker's tag defaults applied.
    pub fn with_default_tag(mut self) -> Reference {
        if self.digest.is_some() {
            self.tag = None;
        } else if self.tag.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `domain/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short name users type (`nginx`, `me/app`, `ghcr.io/x/y`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            if let Some(rest) = self.path.strip_prefix(OFFICIAL_PREFIX) {
                if !rest.contains('/') {
                    return rest.to_string();
                }
            }
            return self.path.clone();
        }
        self.name()
    }

    /// The short form with tag and digest (`nginx:latest`).
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// The reference a registry client asks for: the digest if pinned, else the tag.
    pub fn locator(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

/// Checks a tag on its own (for `-t name:TAG` messages).
pub fn is_valid_tag(tag: &str) -> bool {
    grammar().tag.is_match(tag)
}

/// One component of a reference with whether it was written or defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `registry`, `namespace`, `name`, `tag` or `digest`.
    pub label: &'static str,
    /// The value in force.
    pub value: String,
    /// True when the value came from Docker's defaults rather than the input.
    pub defaulted: bool,
}

/// Explains a reference part by part, marking defaults (`nginx` → docker.io (default),
/// library (default), nginx, latest (default)).
pub fn explain(s: &str) -> Result<Vec<Component>, RefError> {
    let r = Reference::parse(s)?;
    let written = parse_strict(s).ok();
    let domain_written = s.split('/').next().is_some_and(|first| {
        s.contains('/')
            && (first.contains(['.', ':']) || first == "localhost" || first != first.to_lowercase())
    });
    let (namespace, name) = match r.path.rsplit_once('/') {
        Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
        None => (None, r.path.clone()),
    };
    let ns_defaulted = r.domain == DEFAULT_DOMAIN
        && namespace.as_deref() == Some("library")
        && !written
            .as_ref()
            .is_some_and(|p| p.path.starts_with(OFFICIAL_PREFIX));
    let mut out = vec![Component {
        label: "registry",
        value: r.domain.clone(),
        defaulted: !domain_written || s.starts_with(LEGACY_DEFAULT_DOMAIN),
    }];
    if let Some(ns) = namespace {
        out.push(Component {
            label: "namespace",
            value: ns,
            defaulted: ns_defaulted,
        });
    }
    out.push(Component {
        label: "name",
        value: name,
        defaulted: false,
    });
    let full = r.clone().with_default_tag();
    if let Some(t) = &full.tag {
        out.push(Component {
            label: "tag",
            value: t.clone(),
            defaulted: r.tag.is_none(),
        });
    } else if let Some(t) = &r.tag {
        out.push(Component {
            label: "tag",
            value: format!("{t} (ignored: the digest pins the image)"),
            defaulted: false,
        });
    }
    if let Some(d) = &r.digest {
        out.push(Component {
            label: "digest",
            value: d.to_string(),
            defaulted: false,
        });
    }
    Ok(out)
}

/// Finds the part of `input` that breaks the grammar and says how to fix it.
fn diagnose(input: &str, kind: &RefErrorKind) -> String {
    let g = grammar();
    match kind {
        RefErrorKind::NameEmpty => return "the image reference is empty: give a name such as `alpine:3.20`".into(),
        RefErrorKind::Uppercase(name) => {
            let written = if input.contains(name.as_str()) { name.as_str() } else { name.strip_prefix(OFFICIAL_PREFIX).unwrap_or(name) };
            return format!("repository names are lowercase: use `{}`", input.replacen(written, &written.to_lowercase(), 1))
        }
        RefErrorKind::ContainsUppercase => {
            return format!("repository names are lowercase: use `{}`", input.to_lowercase())
        }
        RefErrorKind::NameTooLong => return format!("the repository path may have at most {NAME_MAX} characters"),
        RefErrorKind::HexName(_) => {
            return "a bare 64-character hex string looks like an image ID; write `name@sha256:<hex>` to pin a digest".into()
        }
        RefErrorKind::DigestLength | RefErrorKind::DigestFormat => {
            return "a digest is `sha256:` followed by exactly 64 lowercase hex characters".into()
        }
        RefErrorKind::DigestUnsupported => return "only sha256 digests are supported".into(),
        _ => {}
    }
    if input.contains("://") {
        return "remove the URL scheme: a reference is `host/path:tag`, without `https://`".into();
    }
    if let Some(c) = input.chars().find(|c| c.is_whitespace()) {
        return format!("remove the blank ({c:?}) from the reference");
    }
    let (name_part, digest) = match input.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (input, None),
    };
    // tag: the text after the last ':' that is not followed by '/'.
    let (name, tag) = match name_part.rfind(':') {
        Some(i) if !name_part[i + 1..].contains('/') => {
            (&name_part[..i], Some(&name_part[i + 1..]))
        }
        _ => (name_part, None),
    };
    if let Some(t) = tag {
        if !g.tag.is_match(t) {
            return format!(
                "tag `{t}` is invalid: a tag is up to 128 of [A-Za-z0-9_.-] and must not start with `.` or `-`"
            );
        }
    }
    if let Some(d) = digest {
        if Digest::parse(d).is_err() {
            return format!("digest `{d}` is invalid: use `sha256:` and 64 hex characters");
        }
    }
    if name.is_empty() {
        return "the repository name is missing before the tag or digest".into();
    }
    let mut comps: Vec<&str> = name.split('/').collect();
    if comps.len() > 1 && !g.path_component.is_match(comps[0]) && g.domain.is_match(comps[0]) {
        comps.remove(0);
    } else if comps.len() > 1
        && (comps[0].contains(['.', ':']) || comps[0] == "localhost")
        && !g.domain.is_match(comps[0])
    {
        return format!("registry `{}` is not a valid host[:port]", comps[0]);
    }
    for c in comps {
        if c.is_empty() {
            return "remove the empty path component (`//` or a trailing `/`)".into();
        }
        if !g.path_component.is_match(c) {
            let bad = c.chars().find(|ch| {
                !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
            });
            return match bad {
                Some(ch) => format!("character {ch:?} is not allowed in path component `{c}`: use lowercase letters, digits and `.`, `_`, `-` separators"),
                None => format!("path component `{c}` must start and end with a letter or digit, with single `.`/`_`, double `__` or dashes between"),
            };
        }
    }
    "check the reference: `[registry/][namespace/]name[:tag][@sha256:digest]`".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let r = Reference::parse_docker("nginx").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        let parts = explain("nginx").unwrap();
        assert!(
            parts[0].defaulted && parts[1].defaulted && !parts[2].defaulted && parts[3].defaulted
        );
    }

    #[test]
    fn hint_points_at_bad_tag() {
        let e = Reference::parse("nginx:-bad").unwrap_err();
        assert!(e.hint().contains("tag `-bad`"), "{}", e.hint());
    }

    #[test]
    fn hint_points_at_bad_char() {
        let e = Reference::parse("my_app!/x").unwrap_err();
        assert!(e.hint().contains("'!'"), "{}", e.hint());
    }
}
