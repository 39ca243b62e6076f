//! `--chown` and `USER` values to numeric ids: numbers as given, `root`, or names looked up in
//! the stage's `/etc/passwd` and `/etc/group` (written by this build, or from the base image).

use super::BuildError;

/// Reads a file of the stage's filesystem by its path without leading slash (`etc/passwd`).
pub type ReadFile<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, BuildError> + 'a;

/// Resolves `user[:group]` to numeric ids.
pub fn resolve_owner(
    spec: &str,
    line: usize,
    read: &mut ReadFile<'_>,
) -> Result<(u64, u64), BuildError> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = match user.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) if user == "root" => (0, 0),
        Err(_) => {
            let passwd = read("etc/passwd")?;
            lookup(passwd.as_deref(), user).ok_or_else(|| {
                BuildError::step(
                    line,
                    format!("unable to find user {user:?} in the image's /etc/passwd"),
                    Some("use a numeric id (`--chown=1000:1000`) or add the user to /etc/passwd in an earlier step"),
                )
            })?
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) if g == "root" => 0,
            Err(_) => {
                let groups = read("etc/group")?;
                lookup(groups.as_deref(), g)
                    .map(|(gid, _)| gid)
                    .ok_or_else(|| {
                        BuildError::step(
                            line,
                            format!("unable to find group {g:?} in the image's /etc/group"),
                            Some("use a numeric group id or add the group to /etc/group"),
                        )
                    })?
            }
        },
    };
    Ok((uid, gid))
}

/// Finds `name` in passwd/group text: (field 3, field 4) — for group files field 4 is unused.
fn lookup(text: Option<&[u8]>, name: &str) -> Option<(u64, u64)> {
    let text = String::from_utf8_lossy(text?);
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&name) || f.len() < 3 {
            return None;
        }
        let id = f[2].parse().ok()?;
        let second = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
        Some((id, second))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(path: &str) -> Result<Option<Vec<u8>>, BuildError> {
        Ok(match path {
            "etc/passwd" => {
                Some(b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n".to_vec())
            }
            "etc/group" => Some(b"root:x:0:\nstaff:x:50:\n".to_vec()),
            _ => None,
        })
    }

    #[test]
    fn names_numbers_and_groups() {
        let r = |s: &str| resolve_owner(s, 1, &mut files);
        assert_eq!(r("").unwrap(), (0, 0));
        assert_eq!(r("app").unwrap(), (1000, 1001));
        assert_eq!(r("app:staff").unwrap(), (1000, 50));
        assert_eq!(r("42:7").unwrap(), (42, 7));
        assert_eq!(r("root:staff").unwrap(), (0, 50));
        let e = r("nobody").unwrap_err().to_string();
        assert!(e.contains("unable to find user \"nobody\""), "{e}");
    }
}
