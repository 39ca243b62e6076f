//! HTTP for rbuild: one blocking `reqwest` client (rustls; system roots plus
//! `SSL_CERT_FILE`), with timeouts and a user agent. ADD of URLs uses it now; registries will.
//!
//! Blocking rather than async: the builder's core is synchronous and runs independent work on
//! threads; reqwest's blocking client drives its own small tokio runtime, so no async code
//! spreads through the planner and executor.

use std::time::Duration;

/// The user agent rbuild sends.
pub const USER_AGENT: &str = concat!("rbuild/", env!("CARGO_PKG_VERSION"));

/// Builds the shared client; `extra_pem` are CA bundles to trust besides the system's.
pub fn client(extra_pem: &[Vec<u8>]) -> Result<reqwest::blocking::Client, reqwest::Error> {
    let mut certs = Vec::new();
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        if let Ok(pem) = std::fs::read(path) {
            certs.extend(reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default());
        }
    }
    for pem in extra_pem {
        certs.extend(reqwest::Certificate::from_pem_bundle(pem)?);
    }
    reqwest::blocking::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(30))
        .timeout(None)
        .tls_certs_merge(certs)
        .build()
}
