//! Real registries for the tests: Debian's `docker-registry` (the reference distribution
//! server) on 127.0.0.1 with a random port — plain, htpasswd + TLS, or `auth: token` with a
//! token issuer run here that signs RS256 JWTs (openssl) and grants scopes per repository.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The user the auth modes accept.
pub const USER: &str = "testuser";
/// Its password.
pub const PASS: &str = "testpass";

/// How the registry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No auth, plain HTTP.
    Plain,
    /// htpasswd (bcrypt) Basic auth over TLS with a generated CA.
    HtpasswdTls,
    /// Bearer tokens from [`TokenIssuer`] (plain HTTP registry).
    Token,
    /// Like `Token`, but every token expires about 3 seconds after it is issued (the registry
    /// allows 60 seconds of clock skew past `exp`), so a long push outlives its token.
    TokenShortLived,
}

/// A running registry; stopped on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// State directory (config, storage, certificates).
    pub dir: tempfile::TempDir,
    /// The CA certificate (TLS mode).
    pub ca: Option<PathBuf>,
    _issuer: Option<TokenIssuer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is required ({e}); scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Registry {
    /// Starts a registry in `mode`.
    pub fn start(mode: Mode) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp:\n  addr: {host}\n",
            d.join("storage").display()
        );
        let mut ca = None;
        let mut issuer = None;
        match mode {
            Mode::Plain => {}
            Mode::HtpasswdTls => {
                let p = |n: &str| d.join(n).to_str().unwrap().to_string();
                run(
                    "openssl",
                    &[
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=rbuild test CA",
                        "-keyout",
                        &p("ca.key"),
                        "-out",
                        &p("ca.crt"),
                    ],
                );
                run(
                    "openssl",
                    &[
                        "req",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-subj",
                        "/CN=127.0.0.1",
                        "-keyout",
                        &p("server.key"),
                        "-out",
                        &p("server.csr"),
                    ],
                );
                std::fs::write(
                    d.join("san.ext"),
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
                )
                .unwrap();
                run(
                    "openssl",
                    &[
                        "x509",
                        "-req",
                        "-in",
                        &p("server.csr"),
                        "-CA",
                        &p("ca.crt"),
                        "-CAkey",
                        &p("ca.key"),
                        "-CAcreateserial",
                        "-days",
                        "2",
                        "-extfile",
                        &p("san.ext"),
                        "-out",
                        &p("server.crt"),
                    ],
                );
                run("htpasswd", &["-Bbc", &p("htpasswd"), USER, PASS]);
                config.push_str(&format!(
                    "  tls: {{certificate: {}, key: {}}}\nauth: {{htpasswd: {{realm: rbuild-test, path: {}}}}}\n",
                    p("server.crt"),
                    p("server.key"),
                    p("htpasswd")
                ));
                ca = Some(d.join("ca.crt"));
            }
            Mode::Token | Mode::TokenShortLived => {
                let life = if mode == Mode::Token { 300 } else { 3 };
                let t = TokenIssuer::start(d, life);
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: rbuild-test-registry\n    issuer: rbuild-test-issuer\n    rootcertbundle: {}\n",
                    t.port,
                    t.cert.display()
                ));
                issuer = Some(t);
            }
        }
        std::fs::write(d.join("config.yml"), config).unwrap();
        // A clean environment: the registry reads any REGISTRY_* variable as configuration.
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is required; scripts/test.sh installs it (apt-get install docker-registry)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&host).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry on {host} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            host,
            dir,
            ca,
            _issuer: issuer,
        }
    }

    /// A `certs.d`-style directory trusting this registry's CA (for `RBUILD_CERTS_D`).
    pub fn certs_d(&self) -> PathBuf {
        let root = self.dir.path().join("certs.d");
        let d = root.join(&self.host);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.ca.as_ref().expect("TLS mode"), d.join("ca.crt")).unwrap();
        root
    }

    /// skopeo flags to reach this registry (`--dest-*` or `--src-*` with `prefix`).
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut f = Vec::new();
        match &self.ca {
            Some(_) => {
                let certs = self.certs_d().join(&self.host);
                f.push(format!("--{prefix}cert-dir={}", certs.display()));
                f.push(format!("--{prefix}creds={USER}:{PASS}"));
            }
            None => f.push(format!("--{prefix}tls-verify=false")),
        }
        f
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token service for `auth: token`: `testuser` may pull and push `team/*` and `public/*`,
/// anyone may pull `public/*`, nothing else is granted. Tokens are RS256 JWTs with the certificate in `x5c`.
pub struct TokenIssuer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The certificate the registry trusts.
    pub cert: PathBuf,
    stop: Arc<AtomicBool>,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl TokenIssuer {
    fn start(dir: &Path, life: i64) -> TokenIssuer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=rbuild token issuer",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let key = key.clone();
                        let der = der_b64.clone();
                        std::thread::spawn(move || serve(s, &key, &der, life));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenIssuer { port, cert, stop }
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn decode_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v.replace('+', " ");
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                }
                out.push(b[i]);
                i += 1;
            }
            (k.to_string(), String::from_utf8_lossy(&out).into_owned())
        })
        .collect()
}

/// The registry accepts a token until 60 seconds (its clock-skew leeway) past `exp`.
const LEEWAY: i64 = 60;

fn serve(stream: TcpStream, key: &Path, der_b64: &str, life: i64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut user: Option<(String, String)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line
            .strip_prefix("Authorization: Basic ")
            .or_else(|| line.strip_prefix("authorization: Basic "))
        {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(v.trim()) {
                let s = String::from_utf8_lossy(&raw).into_owned();
                if let Some((u, p)) = s.split_once(':') {
                    user = Some((u.into(), p.into()));
                }
            }
        }
    }
    let mut out = stream;
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params = decode_query(query);
    let authed = match &user {
        Some((u, p)) if u == USER && p == PASS => true,
        Some(_) => {
            let _ = out.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        None => false,
    };
    let mut access = Vec::new();
    for (k, v) in &params {
        if k != "scope" {
            continue;
        }
        for scope in v.split(' ') {
            let parts: Vec<&str> = scope.split(':').collect();
            if parts.len() != 3 || parts[0] != "repository" {
                continue;
            }
            let (name, wanted) = (parts[1], parts[2]);
            let allowed: Vec<&str> = wanted
                .split(',')
                .filter(|a| {
                    let ours = name.starts_with("team/") || name.starts_with("public/");
                    (ours && authed) || (name.starts_with("public/") && *a == "pull")
                })
                .collect();
            access
                .push(serde_json::json!({"type": "repository", "name": name, "actions": allowed}));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = if life < LEEWAY {
        now + life - LEEWAY
    } else {
        now + life
    };
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der_b64]});
    let claims = serde_json::json!({
        "iss": "rbuild-test-issuer",
        "sub": if authed { USER } else { "" },
        "aud": "rbuild-test-registry",
        "exp": exp, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", key.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let sig = child.wait_with_output().unwrap().stdout;
    let token = format!("{signing_input}.{}", b64url(&sig));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": life}).to_string();
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    );
}
