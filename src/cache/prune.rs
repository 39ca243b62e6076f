//! Which cache records `rbuild prune` drops: a pure choice over (key, size, last use), so
//! the policy is tested without a store.

use std::time::{Duration, SystemTime};

use crate::reference::Digest;

/// `rbuild prune` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--all`: drop every record.
    pub all: bool,
    /// `--filter until=DURATION`: drop records not used for this long.
    pub until: Option<Duration>,
    /// `--keep-storage SIZE`: then drop the least recently used until the layers the
    /// remaining records hold fit in this many bytes.
    pub keep_storage: Option<u64>,
}

/// One record as prune sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its key.
    pub key: Digest,
    /// Its layer digest and size, if it has one.
    pub layer: Option<(String, u64)>,
    /// Last use.
    pub used: SystemTime,
}

/// The keys to drop.
pub fn select(mut records: Vec<Candidate>, now: SystemTime, policy: &Policy) -> Vec<Digest> {
    if policy.all {
        return records.into_iter().map(|c| c.key).collect();
    }
    let mut drop = Vec::new();
    if let Some(age) = policy.until {
        let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        records.retain(|c| {
            let old = c.used < cutoff;
            if old {
                drop.push(c.key.clone());
            }
            !old
        });
    }
    if let Some(limit) = policy.keep_storage {
        // Most recently used first; a layer shared by several records counts once.
        records.sort_by_key(|c| std::cmp::Reverse(c.used));
        let mut seen = std::collections::BTreeSet::new();
        let mut total = 0u64;
        for c in records {
            let size = match &c.layer {
                Some((d, s)) if seen.insert(d.clone()) => *s,
                _ => 0,
            };
            if total + size > limit {
                drop.push(c.key);
            } else {
                total += size;
            }
        }
    }
    drop
}

/// Parses `--keep-storage` sizes: `512MB`, `10GB`, `1.5g`, `1048576`.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().trim_end_matches('b').trim_end_matches('i') {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u8, size: u64, age_s: u64, now: SystemTime) -> Candidate {
        Candidate {
            key: crate::content::sha256_digest(&[n]),
            layer: Some((format!("l{n}"), size)),
            used: now - Duration::from_secs(age_s),
        }
    }

    #[test]
    fn until_drops_old_and_keep_storage_drops_least_recent() {
        let now = SystemTime::now();
        let recs = vec![c(1, 100, 10, now), c(2, 100, 7200, now), c(3, 100, 20, now)];
        let p = Policy {
            until: Some(Duration::from_secs(3600)),
            ..Policy::default()
        };
        assert_eq!(select(recs.clone(), now, &p), vec![recs[1].key.clone()]);
        let p = Policy {
            keep_storage: Some(150),
            ..Policy::default()
        };
        let dropped = select(recs.clone(), now, &p);
        assert_eq!(dropped, vec![recs[2].key.clone(), recs[1].key.clone()]);
        assert!(select(recs.clone(), now, &Policy::default()).is_empty());
        assert_eq!(
            select(
                recs,
                now,
                &Policy {
                    all: true,
                    ..Policy::default()
                }
            )
            .len(),
            3
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MB"), Some(512 << 20));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("ten"), None);
    }
}
