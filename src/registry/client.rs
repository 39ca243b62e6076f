//! Authenticated, retried requests to registries.
//!
//! Per host: HTTPS with the system roots plus `certs.d/HOST/*.crt` (Docker's and podman's
//! directories) and `SSL_CERT_FILE`; plain HTTP only for loopback hosts and hosts given with
//! `--insecure-registry` (tried after HTTPS fails, as Docker does). Auth follows the server's
//! `WWW-Authenticate` challenge: Basic with stored credentials, or Bearer tokens fetched from
//! the realm per repository scope (anonymously when there are no credentials) and cached.
//! Transport errors, 5xx and 429 are retried with backoff (honouring `Retry-After`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::StatusCode;

use super::credentials::{Credential, CredentialStore};
use super::RegistryError;
use crate::net::{backoff, chain, retry_after};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts where plain HTTP (and HTTPS without verification fallback) is allowed.
    pub insecure: Vec<String>,
    /// Mirrors tried first for `docker.io` pulls (`host[:port]` or URLs).
    pub mirrors: Vec<String>,
    /// `certs.d`-style directories: `<dir>/<host>/*.crt` are trusted for that host.
    pub certs_dirs: Vec<PathBuf>,
    /// Where credentials come from.
    pub credentials: CredentialStore,
    /// Attempts per request on transient failures.
    pub attempts: u32,
    /// Log every request (method, URL without its query, status, auth scheme) to stderr;
    /// credentials, tokens and signed query strings are never printed.
    pub debug: bool,
}

impl Options {
    /// Defaults from the environment (`RBUILD_CERTS_D` replaces the certs.d directories).
    pub fn from_env() -> Options {
        let certs_dirs = match std::env::var_os("RBUILD_CERTS_D") {
            Some(d) => vec![PathBuf::from(d)],
            None => vec![
                PathBuf::from("/etc/docker/certs.d"),
                PathBuf::from("/etc/containers/certs.d"),
            ],
        };
        Options {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dirs,
            credentials: CredentialStore::from_env(),
            attempts: 4,
            debug: std::env::var_os("RBUILD_DEBUG").is_some_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

/// Which repositories and actions a request needs (the token scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository:NAME:ACTIONS` entries.
    pub entries: Vec<String>,
}

impl Scope {
    /// Pull access to `repo`.
    pub fn pull(repo: &str) -> Scope {
        Scope {
            entries: vec![format!("repository:{repo}:pull")],
        }
    }
    /// Push (and pull) access to `repo`, plus pull access to `mount_from` repositories.
    pub fn push(repo: &str, mount_from: &[String]) -> Scope {
        let mut entries = vec![format!("repository:{repo}:pull,push")];
        for m in mount_from {
            if m != repo {
                entries.push(format!("repository:{m}:pull"));
            }
        }
        Scope { entries }
    }
    /// Registry-wide catalog access.
    pub fn catalog() -> Scope {
        Scope {
            entries: vec!["registry:catalog:*".into()],
        }
    }
    fn key(&self) -> String {
        self.entries.join(" ")
    }
}

#[derive(Debug, Clone)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    creds: Option<Option<(Credential, String)>>,
    tried: Vec<String>,
    tokens: HashMap<String, String>,
}

/// One registry host: its base URL, HTTP client and auth state.
pub struct Host {
    /// `host[:port]` as in references.
    pub name: String,
    /// `https://host` or `http://host`.
    pub base: String,
    http: Http,
    auth: Mutex<AuthState>,
}

/// A registry client shared by all pulls and pushes of a process.
pub struct Client {
    opts: Options,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("opts", &self.opts).finish()
    }
}

/// Whether a host may be spoken to over plain HTTP without being listed.
pub fn is_loopback(host: &str) -> bool {
    let h = host
        .strip_prefix('[')
        .and_then(|r| r.split_once(']').map(|(h, _)| h))
        .unwrap_or_else(|| host.rsplit_once(':').map_or(host, |(h, _)| h));
    h == "localhost" || h == "::1" || h.starts_with("127.")
}

/// What to do about a transport error to `host`.
fn network_fix(host: &str, cause: &str) -> String {
    let c = cause.to_lowercase();
    if c.contains("certificate") || c.contains("unknownissuer") || c.contains("unknown issuer") {
        format!("the registry's TLS certificate is not trusted: put its CA certificate in /etc/docker/certs.d/{host}/ca.crt (or set SSL_CERT_FILE)")
    } else if c.contains("http response")
        || c.contains("corrupt message")
        || c.contains("invalidcontenttype")
        || c.contains("wrong version number")
    {
        format!("the registry speaks plain HTTP: allow it with --insecure-registry {host}")
    } else if c.contains("refused") {
        format!("nothing is listening at {host}: check the host and port, and that the registry is running")
    } else if c.contains("dns") || c.contains("resolve") || c.contains("name or service") {
        format!("the host name {host} does not resolve: check it for typos")
    } else if c.contains("timed out") || c.contains("timeout") {
        format!("{host} did not answer in time: check the network or a proxy (HTTPS_PROXY)")
    } else {
        "check the registry host, the network and any proxy settings".into()
    }
}

fn transient(status: StatusCode) -> bool {
    status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED
        || status == StatusCode::TOO_MANY_REQUESTS
}

impl Client {
    /// A client with these options.
    pub fn new(opts: Options) -> Client {
        Client {
            opts,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn insecure_allowed(&self, host: &str) -> bool {
        is_loopback(host) || self.opts.insecure.iter().any(|h| h == host)
    }

    fn http_for(&self, host: &str) -> Result<Http, RegistryError> {
        let mut pems = Vec::new();
        for dir in &self.opts.certs_dirs {
            let d = dir.join(host);
            if let Ok(rd) = std::fs::read_dir(&d) {
                let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                files.sort();
                for f in files {
                    if f.extension().is_some_and(|e| e == "crt") {
                        if let Ok(p) = std::fs::read(&f) {
                            pems.push(p);
                        }
                    }
                }
            }
        }
        crate::net::client(&pems).map_err(|e| RegistryError::Network {
            host: host.into(),
            cause: chain(&e),
            fix: format!("check the certificates in certs.d/{host}/"),
        })
    }

    /// The host's state, probing HTTPS (then HTTP where allowed) on first use.
    pub fn host(&self, name: &str) -> Result<Arc<Host>, RegistryError> {
        if let Some(h) = self.hosts.lock().expect("hosts lock").get(name) {
            return Ok(h.clone());
        }
        let api = if name == "docker.io" {
            "registry-1.docker.io"
        } else {
            name
        };
        let http = self.http_for(api)?;
        let probe = |scheme: &str| http.get(format!("{scheme}://{api}/v2/")).send();
        // Plain HTTP counts only when a registry answers there (a TLS port answers 400).
        let registry_answer =
            |r: &Response| matches!(r.status(), StatusCode::OK | StatusCode::UNAUTHORIZED);
        let base = match probe("https") {
            Ok(_) => format!("https://{api}"),
            Err(e) if self.insecure_allowed(name) => match probe("http") {
                Ok(r) if registry_answer(&r) => format!("http://{api}"),
                _ => {
                    let cause = chain(&e);
                    return Err(RegistryError::Network {
                        host: name.into(),
                        fix: network_fix(name, &cause),
                        cause,
                    });
                }
            },
            Err(e) => {
                let cause = chain(&e);
                return Err(RegistryError::Network {
                    host: name.into(),
                    fix: network_fix(name, &cause),
                    cause,
                });
            }
        };
        let host = Arc::new(Host {
            name: name.to_string(),
            base,
            http,
            auth: Mutex::new(AuthState::default()),
        });
        self.hosts
            .lock()
            .expect("hosts lock")
            .insert(name.to_string(), host.clone());
        Ok(host)
    }

    fn credentials(&self, host: &Host) -> Result<Option<(Credential, String)>, RegistryError> {
        let mut st = host.auth.lock().expect("auth lock");
        if let Some(c) = &st.creds {
            return Ok(c.clone());
        }
        let super::credentials::Lookup { found, tried } = self
            .opts
            .credentials
            .lookup(&host.name)
            .map_err(|m| RegistryError::Protocol {
                host: host.name.clone(),
                message: format!("credential helper: {m}"),
            })?;
        st.tried = tried;
        st.creds = Some(found.clone());
        Ok(found)
    }

    fn unauthorized(&self, host: &Host, what: &str) -> RegistryError {
        let st = host.auth.lock().expect("auth lock");
        let used = st.creds.clone().flatten();
        RegistryError::Unauthorized {
            host: host.name.clone(),
            reference: what.to_string(),
            had_credentials: used.is_some(),
            source_used: used.map(|(_, s)| s),
            tried: st.tried.clone(),
        }
    }

    /// The Authorization header for `scope`, fetching a token when the host wants Bearer.
    fn authorization(
        &self,
        host: &Host,
        scope: &Scope,
        what: &str,
    ) -> Result<Option<String>, RegistryError> {
        let challenge = host.auth.lock().expect("auth lock").challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials(host)?.map(|(c, _)| {
                let raw = format!("{}:{}", c.username, c.secret);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            })),
            Some(Challenge::Bearer { realm, service }) => {
                if let Some(t) = host
                    .auth
                    .lock()
                    .expect("auth lock")
                    .tokens
                    .get(&scope.key())
                {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self.fetch_token(host, &realm, service.as_deref(), scope, what)?;
                host.auth
                    .lock()
                    .expect("auth lock")
                    .tokens
                    .insert(scope.key(), token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn fetch_token(
        &self,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
        what: &str,
    ) -> Result<String, RegistryError> {
        let creds = self.credentials(host)?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for e in &scope.entries {
            query.push(("scope", e.as_str()));
        }
        let req = match &creds {
            Some((c, _)) if c.is_identity_token() => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.secret.as_str()),
                    ("client_id", "rbuild"),
                ]);
                host.http.post(realm).form(&form)
            }
            Some((c, _)) => host
                .http
                .get(realm)
                .query(&query)
                .basic_auth(&c.username, Some(&c.secret)),
            None => host.http.get(realm).query(&query),
        };
        let resp = req.send().map_err(|e| {
            let cause = chain(&e);
            RegistryError::Network {
                host: host.name.clone(),
                fix: network_fix(realm, &cause),
                cause: format!("token service {realm}: {cause}"),
            }
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(host, what));
        }
        if !resp.status().is_success() {
            return Err(RegistryError::Protocol {
                host: host.name.clone(),
                message: format!("token service {realm} answered {}", resp.status()),
            });
        }
        let v: serde_json::Value = resp.json().map_err(|e| RegistryError::Protocol {
            host: host.name.clone(),
            message: format!("token service {realm} sent invalid JSON: {e}"),
        })?;
        v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .map(String::from)
            .ok_or_else(|| RegistryError::Protocol {
                host: host.name.clone(),
                message: format!("token service {realm} sent no token"),
            })
    }

    fn learn_challenge(&self, host: &Host, resp: &Response) -> bool {
        let Some(h) = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Ok(challenges) = http_auth::parse_challenges(h) else {
            return false;
        };
        for c in challenges {
            let param = |k: &str| {
                c.params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.to_unescaped())
            };
            let found = if c.scheme.eq_ignore_ascii_case("bearer") {
                param("realm").map(|realm| Challenge::Bearer {
                    realm,
                    service: param("service"),
                })
            } else if c.scheme.eq_ignore_ascii_case("basic") {
                Some(Challenge::Basic)
            } else {
                None
            };
            if let Some(ch) = found {
                let mut st = host.auth.lock().expect("auth lock");
                st.challenge = Some(ch);
                st.tokens.clear();
                return true;
            }
        }
        false
    }

    /// Sends a request built by `make(http, base_url)` with auth for `scope`; retries
    /// transient failures. Returns any response but 401 (which becomes `Unauthorized`).
    /// `what` names the resource for messages.
    pub fn send(
        &self,
        host: &Arc<Host>,
        scope: &Scope,
        what: &str,
        make: &dyn Fn(&Http, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut reauthed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = make(&host.http, &host.base);
            if let Some(a) = self.authorization(host, scope, what)? {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            let line = self
                .opts
                .debug
                .then(|| (debug_line(&req), std::time::Instant::now()));
            let sent = req.send();
            if let Some((line, t)) = line {
                let took = t.elapsed().as_secs_f64();
                match &sent {
                    Ok(r) => eprintln!("debug: {line} -> {} ({took:.3}s)", r.status().as_u16()),
                    Err(e) => {
                        eprintln!("debug: {line} -> {} ({took:.3}s)", without_urls(&chain(e)))
                    }
                }
            }
            let resp = match sent {
                Ok(r) => r,
                Err(e) if attempt < self.opts.attempts && !e.is_builder() => {
                    std::thread::sleep(backoff(attempt));
                    continue;
                }
                Err(e) => {
                    let cause = without_urls(&chain(&e));
                    return Err(RegistryError::Network {
                        host: host.name.clone(),
                        fix: network_fix(&host.name, &cause),
                        cause: format!("{cause} ({attempt} tries)"),
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                if !reauthed && self.learn_challenge(host, &resp) {
                    reauthed = true;
                    let has_creds = self.credentials(host)?.is_some();
                    let is_basic = matches!(
                        host.auth.lock().expect("auth lock").challenge,
                        Some(Challenge::Basic)
                    );
                    if is_basic && !has_creds {
                        return Err(self.unauthorized(host, what));
                    }
                    continue;
                }
                return Err(self.unauthorized(host, what));
            }
            if transient(status) {
                if attempt < self.opts.attempts {
                    std::thread::sleep(retry_after(&resp).unwrap_or_else(|| backoff(attempt)));
                    continue;
                }
                return Err(RegistryError::Unavailable {
                    host: host.name.clone(),
                    what: what.to_string(),
                    status: status.as_u16(),
                    tries: attempt,
                });
            }
            return Ok(resp);
        }
    }
}

/// `METHOD URL [auth: SCHEME]` for `--debug`: the query string (upload state, signed storage
/// URLs) and every credential left out.
fn debug_line(req: &RequestBuilder) -> String {
    let Some(r) = req.try_clone().and_then(|r| r.build().ok()) else {
        return "request".into();
    };
    let mut url = r.url().clone();
    url.set_query(None);
    let auth = r
        .headers()
        .get(reqwest::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(' ').next())
        .map(|scheme| format!(" [auth: {scheme} <redacted>]"))
        .unwrap_or_default();
    format!("{} {url}{auth}", r.method())
}

/// An error chain with URLs cut to scheme, host and path (their queries may be signed).
fn without_urls(s: &str) -> String {
    s.split(' ')
        .map(|w| match w.find('?') {
            Some(i) if w.contains("://") => {
                let tail = w.trim_end_matches([')', ',', ':']);
                format!("{}{}", &w[..i], &w[tail.len()..])
            }
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resolves a `Location` header against the host's base URL.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_may_use_plain_http() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["registry.example", "10.0.0.1:5000", "localhost.evil.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn fixes_name_the_cause() {
        assert!(
            network_fix("h:1", "invalid peer certificate: UnknownIssuer")
                .contains("certs.d/h:1/ca.crt")
        );
        assert!(
            network_fix("h:1", "received corrupt message of type InvalidContentType")
                .contains("--insecure-registry h:1")
        );
        assert!(network_fix("h:1", "Connection refused (os error 111)")
            .contains("check the host and port"));
    }

    #[test]
    fn push_scopes_include_mount_sources() {
        let s = Scope::push("a/b", &["c/d".into(), "a/b".into()]);
        assert_eq!(
            s.entries,
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
    }
}
