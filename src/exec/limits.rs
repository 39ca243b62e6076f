//! `--ulimit` and `--shm-size`: resource limits for RUN steps, in `docker build`'s syntax
//! (`nofile=1024:2048`, `64m`). Parsing is pure; [`Ulimit::resource`] gives what `setrlimit`
//! takes, prepared before the fork so the child only makes system calls.

use serde::{Deserialize, Serialize};

/// One `--ulimit NAME=SOFT[:HARD]`; `None` is unlimited (Docker's `-1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Docker's name: `nofile`, `nproc`, `core`, ...
    pub name: String,
    /// Soft limit.
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

const NAMES: [(&str, rustix::process::Resource); 15] = {
    use rustix::process::Resource as R;
    [
        ("core", R::Core),
        ("cpu", R::Cpu),
        ("data", R::Data),
        ("fsize", R::Fsize),
        ("locks", R::Locks),
        ("memlock", R::Memlock),
        ("msgqueue", R::Msgqueue),
        ("nice", R::Nice),
        ("nofile", R::Nofile),
        ("nproc", R::Nproc),
        ("rss", R::Rss),
        ("rtprio", R::Rtprio),
        ("rttime", R::Rttime),
        ("sigpending", R::Sigpending),
        ("stack", R::Stack),
    ]
};

impl Ulimit {
    /// Parses `NAME=SOFT[:HARD]` (the hard limit defaults to the soft one).
    pub fn parse(spec: &str) -> Result<Ulimit, String> {
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| "expected NAME=SOFT[:HARD]".to_string())?;
        if !NAMES.iter().any(|(n, _)| *n == name) {
            let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown limit {name:?} (known: {})",
                names.join(", ")
            ));
        }
        let value = |v: &str| -> Result<Option<u64>, String> {
            match v.parse::<i64>() {
                Ok(-1) => Ok(None),
                Ok(n) if n >= 0 => Ok(Some(n as u64)),
                _ => Err(format!("{v:?} is not a number (or -1 for unlimited)")),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => (value(values)?, value(values)?),
        };
        let above = match (soft, hard) {
            (None, Some(_)) => true,
            (Some(s), Some(h)) => s > h,
            _ => false,
        };
        if above {
            return Err("the soft limit is above the hard limit".into());
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }

    /// The resource and limit for `setrlimit`.
    pub fn resource(&self) -> Option<(rustix::process::Resource, rustix::process::Rlimit)> {
        let (_, r) = NAMES.iter().find(|(n, _)| *n == self.name)?;
        Some((
            *r,
            rustix::process::Rlimit {
                current: self.soft,
                maximum: self.hard,
            },
        ))
    }
}

/// The limits as `setrlimit` arguments, prepared before a fork.
pub fn prepare(ulimits: &[Ulimit]) -> Vec<(rustix::process::Resource, rustix::process::Rlimit)> {
    ulimits.iter().filter_map(Ulimit::resource).collect()
}

/// Sets prepared limits; only system calls, so it may run in a forked child.
pub fn apply(
    limits: &[(rustix::process::Resource, rustix::process::Rlimit)],
) -> rustix::io::Result<()> {
    for (resource, limit) in limits {
        rustix::process::setrlimit(*resource, *limit)?;
    }
    Ok(())
}

/// Parses a size as Docker's `--shm-size` does: a number of bytes with an optional binary
/// unit (`b`, `k`, `m`, `g`, `t`, also written `kb`, `KiB`, ...), e.g. `64m`, `1.5g`.
pub fn parse_size(spec: &str) -> Result<u64, String> {
    let s = spec.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{spec:?} is not a size like 64m or 1g")),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{spec:?} is not a size like 64m or 1g"))?;
    let bytes = n * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("{spec:?} is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_read_like_docker() {
        let u = Ulimit::parse("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (Some(1024), Some(2048)));
        let u = Ulimit::parse("nproc=512").unwrap();
        assert_eq!((u.soft, u.hard), (Some(512), Some(512)));
        let u = Ulimit::parse("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (None, None));
        assert!(u.resource().is_some());
        for bad in [
            "nofile",
            "files=1",
            "nofile=x",
            "nofile=2048:1024",
            "nofile=-1:10",
            "nofile=-5",
        ] {
            assert!(Ulimit::parse(bad).is_err(), "{bad}");
        }
        assert!(Ulimit::parse("files=1").unwrap_err().contains("nofile"));
    }

    #[test]
    fn sizes_read_like_docker() {
        for (s, n) in [
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("64mb", 64 << 20),
            ("1g", 1 << 30),
            ("1.5g", 3 << 29),
            ("512k", 512 << 10),
            ("100", 100),
            ("2 GiB", 2 << 30),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for bad in ["", "m", "64x", "-1m", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
