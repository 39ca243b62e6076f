//! `RUN --mount=...` specs (BuildKit's syntax), parsed into data. Pure: where sources live on
//! the host is decided by the builder.

use std::collections::BTreeMap;

/// One `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A persistent cache directory (`type=cache`), kept in the store between builds.
    Cache {
        /// Where it appears.
        target: String,
        /// Cache identity (default: the target).
        id: String,
        /// Owner and mode on creation.
        uid: u32,
        /// Group.
        gid: u32,
        /// Mode.
        mode: u32,
        /// `readonly`.
        readonly: bool,
    },
    /// A file or directory from the context or a stage (`type=bind`), read-only unless `rw`
    /// (writes are then discarded, as BuildKit does).
    Bind {
        /// Where it appears.
        target: String,
        /// Path in the source.
        source: String,
        /// A stage or image instead of the context.
        from: Option<String>,
        /// Writable (changes discarded).
        rw: bool,
    },
    /// An empty tmpfs (`type=tmpfs`).
    Tmpfs {
        /// Where it appears.
        target: String,
    },
    /// The SSH agent socket given with `--ssh ID[=PATH]` (`type=ssh`); `SSH_AUTH_SOCK` points
    /// at it inside.
    Ssh {
        /// Which `--ssh` (default `default`).
        id: String,
        /// Where the socket appears (default `/run/buildkit/ssh_agent.0`).
        target: String,
        /// Fail when no such `--ssh` was given.
        required: bool,
    },
    /// A secret file (`type=secret`), never written to a layer or the store.
    Secret {
        /// The `--secret id=...` it comes from.
        id: String,
        /// Where it appears (default `/run/secrets/<id>`).
        target: String,
        /// Fail when the secret was not given.
        required: bool,
        /// Mode (default 0400).
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

fn octal(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8).map_err(|_| format!("mode {v:?} is not octal"))
}

fn num(k: &str, v: &str) -> Result<u32, String> {
    v.parse().map_err(|_| format!("{k}={v:?} is not a number"))
}

fn boolean(v: &str) -> bool {
    !matches!(v, "false" | "0")
}

/// Parses one `--mount` value, e.g. `type=cache,target=/root/.cache,id=pip`.
pub fn parse(spec: &str) -> Result<MountSpec, String> {
    let mut f: BTreeMap<String, String> = BTreeMap::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k.trim().to_lowercase(), v.trim().to_string()),
            None => (part.trim().to_lowercase(), "true".to_string()),
        };
        let k = match k.as_str() {
            "dst" | "destination" => "target".to_string(),
            "src" => "source".to_string(),
            "ro" => {
                f.insert("readonly".into(), v);
                continue;
            }
            _ => k,
        };
        f.insert(k, v);
    }
    let kind = f.get("type").cloned().unwrap_or_else(|| "bind".into());
    let target = f.get("target").cloned().unwrap_or_default();
    let uid = f
        .get("uid")
        .map(|v| num("uid", v))
        .transpose()?
        .unwrap_or(0);
    let gid = f
        .get("gid")
        .map(|v| num("gid", v))
        .transpose()?
        .unwrap_or(0);
    let need_target = || {
        if target.is_empty() || !target.starts_with('/') {
            Err(format!("--mount={spec}: give an absolute target=PATH"))
        } else {
            Ok(())
        }
    };
    match kind.as_str() {
        "cache" => {
            need_target()?;
            Ok(MountSpec::Cache {
                id: f.get("id").cloned().unwrap_or_else(|| target.clone()),
                target,
                uid,
                gid,
                mode: f
                    .get("mode")
                    .map(|m| octal(m))
                    .transpose()?
                    .unwrap_or(0o755),
                readonly: f.get("readonly").is_some_and(|v| boolean(v)),
            })
        }
        "bind" => {
            need_target()?;
            Ok(MountSpec::Bind {
                source: f.get("source").cloned().unwrap_or_else(|| "/".into()),
                from: f.get("from").cloned(),
                rw: f
                    .get("rw")
                    .or(f.get("readwrite"))
                    .is_some_and(|v| boolean(v)),
                target,
            })
        }
        "tmpfs" => {
            need_target()?;
            Ok(MountSpec::Tmpfs { target })
        }
        "secret" => {
            let id = f
                .get("id")
                .cloned()
                .or_else(|| {
                    target
                        .rsplit('/')
                        .next()
                        .map(String::from)
                        .filter(|s| !s.is_empty())
                })
                .ok_or_else(|| format!("--mount={spec}: a secret needs id=NAME"))?;
            Ok(MountSpec::Secret {
                target: if target.is_empty() {
                    format!("/run/secrets/{id}")
                } else {
                    target
                },
                id,
                required: f.get("required").is_some_and(|v| boolean(v)),
                mode: f
                    .get("mode")
                    .map(|m| octal(m))
                    .transpose()?
                    .unwrap_or(0o400),
                uid,
                gid,
            })
        }
        "ssh" => Ok(MountSpec::Ssh {
            id: f.get("id").cloned().unwrap_or_else(|| "default".into()),
            target: if target.is_empty() {
                "/run/buildkit/ssh_agent.0".into()
            } else {
                target
            },
            required: f.get("required").is_some_and(|v| boolean(v)),
        }),
        other => Err(format!(
            "--mount type={other} is not supported (use bind, cache, tmpfs, secret or ssh)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_mount_syntax() {
        assert_eq!(
            parse("type=cache,target=/root/.cache,id=pip,uid=1000,mode=0700").unwrap(),
            MountSpec::Cache {
                target: "/root/.cache".into(),
                id: "pip".into(),
                uid: 1000,
                gid: 0,
                mode: 0o700,
                readonly: false
            }
        );
        assert_eq!(
            parse("type=bind,src=go.mod,dst=/src/go.mod,from=deps").unwrap(),
            MountSpec::Bind {
                target: "/src/go.mod".into(),
                source: "go.mod".into(),
                from: Some("deps".into()),
                rw: false
            }
        );
        assert_eq!(
            parse("type=secret,id=npmrc").unwrap(),
            MountSpec::Secret {
                id: "npmrc".into(),
                target: "/run/secrets/npmrc".into(),
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(
            parse("type=tmpfs,target=/tmp").unwrap(),
            MountSpec::Tmpfs {
                target: "/tmp".into()
            }
        );
        assert!(parse("type=cache").unwrap_err().contains("target"));
        assert!(parse("type=nfs,target=/x").unwrap_err().contains("nfs"));
        assert_eq!(
            parse("type=ssh").unwrap(),
            MountSpec::Ssh {
                id: "default".into(),
                target: "/run/buildkit/ssh_agent.0".into(),
                required: false
            }
        );
        assert!(parse("type=nfs").is_err());
    }
}
