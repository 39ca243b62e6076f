//! HTTP for rbuild: one blocking `reqwest` client (rustls; system roots plus
//! `SSL_CERT_FILE`), with timeouts and a user agent. ADD of URLs uses it now; registries will.
//!
//! Blocking rather than async: the builder's core is synchronous and runs independent work on
//! threads; reqwest's blocking client drives its own small tokio runtime, so no async code
//! spreads through the planner and executor.

use std::time::Duration;

/// The user agent rbuild sends.
pub const USER_AGENT: &str = concat!("rbuild/", env!("CARGO_PKG_VERSION"));

/// How long a request may wait for an answer, and each read of a body may wait for bytes,
/// before it is given up (and retried): `RBUILD_HTTP_TIMEOUT` seconds, default 120. A stalled
/// connection is found this way without capping how long a healthy download takes.
pub fn stall_timeout() -> Duration {
    std::env::var("RBUILD_HTTP_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(120), Duration::from_secs)
}

/// The timeout of a request that sends `bytes` (an upload): the stall timeout plus the time
/// the bytes take at 256 KiB/s, so slow links finish and dead ones still fail.
pub fn upload_timeout(bytes: u64) -> Duration {
    stall_timeout() + Duration::from_secs(bytes / (256 << 10))
}

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
        .timeout(stall_timeout())
        .tls_certs_merge(certs)
        .build()
}

/// The error chain of a transport failure, for messages (causes already in the text are
/// not repeated).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The wait a `Retry-After: SECONDS` header asks for, at most 30 s.
pub fn retry_after(resp: &reqwest::blocking::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(30)))
}

/// The pause before try `attempt + 1` when the server gave no `Retry-After`.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(6))
}

/// How many times [`get`] tries a URL.
pub const GET_ATTEMPTS: u32 = 5;

/// GETs `url` as a plain download (ADD of a URL, a remote context): transport errors,
/// 408, 429 and 5xx answers are tried again, up to [`GET_ATTEMPTS`] times, after the
/// server's `Retry-After` ([`retry_after`]) or a growing pause ([`backoff`]). The error, after the last try,
/// names the URL, the cause and the number of tries; query strings (often signed) are left
/// out of it.
pub fn get(
    client: &reqwest::blocking::Client,
    url: &str,
) -> Result<reqwest::blocking::Response, String> {
    let shown = url.split('?').next().unwrap_or(url);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (cause, wait) = match client.get(url).send() {
            Ok(r) if r.status().is_success() => return Ok(r),
            Ok(r) => {
                let s = r.status();
                let again = s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408;
                if !again {
                    return Err(format!("downloading {shown}: the server answered {s}"));
                }
                (format!("the server answered {s}"), retry_after(&r))
            }
            Err(e) if e.is_builder() => return Err(format!("downloading {shown}: {e}")),
            Err(e) => (chain(&e).replace(url, shown), None),
        };
        if attempt >= GET_ATTEMPTS {
            return Err(format!("downloading {shown}: {cause} ({attempt} tries)"));
        }
        std::thread::sleep(wait.unwrap_or_else(|| backoff(attempt)));
    }
}
