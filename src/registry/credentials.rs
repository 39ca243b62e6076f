//! Registry credentials, from the files and helpers Docker and podman users already have:
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (`credHelpers`, then `credsStore`,
//! then `auths`), then `REGISTRY_AUTH_FILE` or `$XDG_RUNTIME_DIR/containers/auth.json`.
//! A Kubernetes `kubernetes.io/dockerconfigjson` secret mounted as `config.json` is the same
//! format. `rbuild login`/`logout` write `config.json` the way `docker login` does.
//!
//! Hand-written (about 200 lines) rather than `docker_credential`: that crate checks `auths`
//! before `credsStore` (Docker does the reverse), cannot store or erase, and loses a helper's
//! error output. Secrets never reach `Debug` output or error messages.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

/// A username and secret (a password, or an identity token when the username is `<token>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The username (`<token>` marks an identity token).
    pub username: String,
    /// The password or token.
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.username)
    }
}

impl Credential {
    /// True for an identity (refresh) token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == "<token>"
    }
}

/// The result of a lookup: the credential and where it came from, and every source consulted.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The credential found, with its source.
    pub found: Option<(Credential, String)>,
    /// Sources consulted, in order.
    pub tried: Vec<String>,
}

/// Where credentials are looked up.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    /// The Docker config directory (holds `config.json`).
    pub docker_config: Option<PathBuf>,
    /// podman/buildah auth files, in order.
    pub auth_files: Vec<PathBuf>,
    /// A credential given directly for one host (`rbuild login` checks it before saving).
    pub fixed: Option<(String, Credential)>,
}

/// The config.json keys Docker uses for a registry host.
fn keys_for(host: &str) -> Vec<String> {
    if host == "docker.io" || host == "registry-1.docker.io" || host == "index.docker.io" {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ];
    }
    vec![host.to_string()]
}

/// Reduces a config.json key (`https://host/v1/`, `host`) to its host.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn matches(key: &str, host: &str) -> bool {
    let kh = key_host(key);
    keys_for(host).iter().any(|k| key_host(k) == kh)
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Decodes an `auths` entry (`auth` = base64(user:pass), or `identitytoken`).
fn from_auth_entry(v: &serde_json::Value) -> Option<Credential> {
    if let Some(t) = v["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Some(Credential {
            username: "<token>".into(),
            secret: t.into(),
        });
    }
    let auth = v["auth"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credential {
        username: u.into(),
        secret: p.into(),
    })
}

/// Runs `docker-credential-<helper> get` for `host`.
fn helper_get(helper: &str, host: &str) -> Result<Option<Credential>, String> {
    let program = format!("docker-credential-{helper}");
    let server = if keys_for(host).len() > 1 {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // The helper protocol's "not found" answer is not an error.
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!("{program} get failed: {msg} {err}")
            .trim()
            .to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{program} gave invalid JSON: {e}"))?;
    Ok(Some(Credential {
        username: v["Username"].as_str().unwrap_or_default().into(),
        secret: v["Secret"].as_str().unwrap_or_default().into(),
    }))
}

impl CredentialStore {
    /// The sources Docker and podman would use in this environment.
    pub fn from_env() -> CredentialStore {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let docker_config = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".docker")));
        let mut auth_files = Vec::new();
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
            auth_files.push(PathBuf::from(f));
        } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
            auth_files.push(PathBuf::from(d).join("containers/auth.json"));
        }
        CredentialStore {
            docker_config,
            auth_files,
            fixed: None,
        }
    }

    fn config_path(&self) -> Option<PathBuf> {
        self.docker_config.as_ref().map(|d| d.join("config.json"))
    }

    /// Looks up credentials for `host`: the credential and where it came from, plus every
    /// source consulted (for "how to log in" messages).
    pub fn lookup(&self, host: &str) -> Result<Lookup, String> {
        let mut tried = Vec::new();
        if let Some((h, c)) = &self.fixed {
            if h == host {
                return Ok(Lookup {
                    found: Some((c.clone(), "the login command".into())),
                    tried,
                });
            }
        }
        if let Some(path) = self.config_path() {
            tried.push(path.display().to_string());
            if let Some(cfg) = read_json(&path) {
                let helper = cfg["credHelpers"]
                    .as_object()
                    .and_then(|m| m.iter().find(|(k, _)| matches(k, host)))
                    .and_then(|(_, v)| v.as_str().map(String::from))
                    .or_else(|| cfg["credsStore"].as_str().map(String::from));
                if let Some(h) = helper.filter(|h| !h.is_empty()) {
                    tried.push(format!("docker-credential-{h}"));
                    if let Some(c) = helper_get(&h, host)? {
                        return Ok(Lookup {
                            found: Some((c, format!("docker-credential-{h}"))),
                            tried,
                        });
                    }
                }
                if let Some(auths) = cfg["auths"].as_object() {
                    for (k, v) in auths {
                        if matches(k, host) {
                            if let Some(c) = from_auth_entry(v) {
                                return Ok(Lookup {
                                    found: Some((c, path.display().to_string())),
                                    tried,
                                });
                            }
                        }
                    }
                }
            }
        }
        for f in &self.auth_files {
            tried.push(f.display().to_string());
            if let Some(cfg) = read_json(f) {
                if let Some(auths) = cfg["auths"].as_object() {
                    for (k, v) in auths {
                        if matches(k, host) {
                            if let Some(c) = from_auth_entry(v) {
                                return Ok(Lookup {
                                    found: Some((c, f.display().to_string())),
                                    tried,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(Lookup { found: None, tried })
    }

    /// Saves credentials for `host` in config.json (`auths`), as `docker login` does without
    /// a credential store; returns the file written.
    pub fn login(&self, host: &str, cred: &Credential) -> Result<PathBuf, String> {
        let path = self
            .config_path()
            .ok_or("no Docker config directory: set DOCKER_CONFIG or HOME")?;
        let mut cfg = read_json(&path).unwrap_or_else(|| serde_json::json!({}));
        if !cfg.is_object() {
            return Err(format!("{} is not a JSON object", path.display()));
        }
        let key = keys_for(host).remove(0);
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cred.username, cred.secret));
        let auths = cfg
            .as_object_mut()
            .expect("object")
            .entry("auths")
            .or_insert_with(|| serde_json::json!({}));
        auths[key] = serde_json::json!({ "auth": auth });
        write_private(&path, &cfg)?;
        Ok(path)
    }

    /// Removes `host` from config.json; false when it was not there.
    pub fn logout(&self, host: &str) -> Result<bool, String> {
        let Some(path) = self.config_path() else {
            return Ok(false);
        };
        let Some(mut cfg) = read_json(&path) else {
            return Ok(false);
        };
        let mut removed = false;
        if let Some(auths) = cfg["auths"].as_object_mut() {
            let keys: Vec<String> = auths.keys().filter(|k| matches(k, host)).cloned().collect();
            for k in keys {
                auths.remove(&k);
                removed = true;
            }
        }
        if removed {
            write_private(&path, &cfg)?;
        }
        Ok(removed)
    }
}

/// Writes JSON readable only by the owner (it holds secrets), atomically.
fn write_private(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut text = serde_json::to_vec_pretty(v).expect("json");
    text.push(b'\n');
    f.write_all(&text)
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
}

/// Parsed `auths` of a config file, for tests and `rbuild login` checks.
pub fn auths_of(path: &Path) -> BTreeMap<String, Credential> {
    read_json(path)
        .and_then(|v| v["auths"].as_object().cloned())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| from_auth_entry(v).map(|c| (k.clone(), c)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> CredentialStore {
        CredentialStore {
            docker_config: Some(dir.to_path_buf()),
            auth_files: vec![dir.join("auth.json")],
            fixed: None,
        }
    }

    #[test]
    fn login_lookup_logout_round_trip_in_docker_format() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let c = Credential {
            username: "u".into(),
            secret: "p:w".into(),
        };
        let path = s.login("reg.example:5000", &c).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"reg.example:5000\"") && text.contains("dTpwOnc="),
            "{text}"
        );
        let found = s.lookup("reg.example:5000").unwrap().found;
        assert_eq!(found.unwrap().0, c);
        assert!(s.logout("reg.example:5000").unwrap());
        assert!(s.lookup("reg.example:5000").unwrap().found.is_none());
    }

    #[test]
    fn docker_hub_keys_and_podman_auth_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("auth.json"),
            r#"{"auths":{"quay.io":{"auth":"cTpy"}}}"#,
        )
        .unwrap();
        let s = store(dir.path());
        assert_eq!(
            s.lookup("docker.io").unwrap().found.unwrap().0.username,
            "hub"
        );
        let q = s.lookup("quay.io").unwrap();
        assert_eq!(q.found.unwrap().0.username, "q");
        assert_eq!(q.tried.len(), 2);
        assert!(s.lookup("ghcr.io").unwrap().found.is_none());
        assert!(!format!("{:?}", s.lookup("docker.io").unwrap().found).contains("secret"));
    }
}
