//! Registries (OCI distribution / Docker Registry HTTP API v2): pulling bases and images,
//! pushing images, credentials, and errors that say what to fix.
//!
//! [`client`] sends authenticated requests (Bearer tokens per repository scope, Basic auth,
//! retries, HTTPS with plain-HTTP only for local or `--insecure-registry` hosts);
//! [`credentials`] finds and saves credentials; [`pull`] resolves and fetches; [`push`]
//! uploads (HEAD first, cross-repository mount, monolithic or chunked).

pub mod client;
pub mod credentials;
pub mod pull;
pub mod push;

use thiserror::Error;

pub use client::{Client, Options};

/// Registry failures, one variant per thing the user fixes differently.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The repository does not exist (a typo in the name, usually).
    #[error("repository {name} not found on {host}{}", suggest(.suggestions))]
    NameUnknown {
        /// Registry host.
        host: String,
        /// Repository path.
        name: String,
        /// Close names from the registry's catalog.
        suggestions: Vec<String>,
    },
    /// The tag or digest does not exist in the repository.
    #[error("{reference} not found: the repository has no tag or digest {what:?}{}", suggest(.suggestions))]
    ManifestUnknown {
        /// The full reference.
        reference: String,
        /// The missing tag or digest.
        what: String,
        /// Closest existing tags.
        suggestions: Vec<String>,
    },
    /// Authentication failed or is missing.
    #[error("{}", unauthorized_message(.host, .reference, .had_credentials, .source_used))]
    Unauthorized {
        /// Registry host.
        host: String,
        /// What was accessed.
        reference: String,
        /// True when credentials were sent and rejected.
        had_credentials: bool,
        /// Where the rejected credentials came from.
        source_used: Option<String>,
        /// Every source consulted.
        tried: Vec<String>,
    },
    /// The registry could not be reached, or TLS failed.
    #[error("cannot reach registry {host}: {cause}")]
    Network {
        /// Registry host.
        host: String,
        /// The transport error chain.
        cause: String,
        /// What to do.
        fix: String,
    },
    /// The registry kept answering with a server error or "too many requests".
    #[error("registry {host} answered {status} to {what}, {tries} tries in a row")]
    Unavailable {
        /// Registry host.
        host: String,
        /// What was requested.
        what: String,
        /// The last status.
        status: u16,
        /// How many times it was tried.
        tries: u32,
    },
    /// The index has no image for the wanted platform.
    #[error("{reference} has no image for platform {want} (it has: {have})")]
    Platform {
        /// The reference.
        reference: String,
        /// Wanted.
        want: String,
        /// Available.
        have: String,
    },
    /// The registry answered something that breaks the protocol or the content's digest.
    #[error("registry {host}: {message}")]
    Protocol {
        /// Registry host.
        host: String,
        /// What went wrong.
        message: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] crate::content::StoreError),
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", s.join(", "))
    }
}

fn unauthorized_message(
    host: &str,
    reference: &str,
    had: &bool,
    source: &Option<String>,
) -> String {
    if *had {
        format!(
            "{host} rejected the credentials from {} for {reference}",
            source.as_deref().unwrap_or("the configuration")
        )
    } else {
        format!("{host} requires authentication for {reference}, and no credentials were found")
    }
}

impl RegistryError {
    /// What the user should do.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::NameUnknown { .. } => Some("check the repository name (and the registry host) for typos".into()),
            RegistryError::ManifestUnknown { .. } => Some("check the tag; `skopeo list-tags docker://NAME` shows what exists".into()),
            RegistryError::Unauthorized { host, tried, had_credentials, .. } => Some(format!(
                "{}run `rbuild login {host} -u USER --password-stdin` (or `docker login {host}`); looked in: {}",
                if *had_credentials { "the password or token is wrong or lacks access to this repository; " } else { "" },
                if tried.is_empty() { "nothing".into() } else { tried.join(", ") }
            )),
            RegistryError::Network { fix, .. } => Some(fix.clone()),
            RegistryError::Unavailable { status, .. } => Some(if *status == 429 {
                "the registry is rate-limiting this client: wait, log in (higher limits), or use a mirror with --registry-mirror".into()
            } else {
                "the registry is failing or overloaded: try again later, or check the registry's logs and status".into()
            }),
            RegistryError::Platform { .. } => Some("pick one of the listed platforms with --platform".into()),
            _ => None,
        }
    }
}
