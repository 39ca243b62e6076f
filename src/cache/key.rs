//! Step cache keys: a pure function of what a step depends on, never of its result.
//!
//! A key is the sha256 of a length-prefixed record of [`StepInputs`]: a format version, the
//! parent's key (or the base image's identity), the instruction as the builder understands
//! it after expansion, the ARG/ENV values it sees, the platform, build-wide layer settings
//! (compression, `SOURCE_DATE_EPOCH`), the identity of other stages or images it reads, and
//! for COPY/ADD exactly the entries it writes (path, type, mode, owner, link target, content
//! digest — never mtime). Line numbers and comments are not inputs, so editing a comment
//! invalidates nothing. The same inputs are kept for the last build of each step so a miss
//! can be explained ([`why_missed`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::layer::tar::{Entry, Kind};
use crate::reference::Digest;

/// Bumped whenever what goes into a key changes meaning, so old records cannot match.
pub const KEY_VERSION: &str = "rbuild-cache-v2";

/// Everything a step's result depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInputs {
    /// The previous step's key, or the stage base's identity ([`base_key`]).
    pub parent: String,
    /// The instruction after expansion, in the builder's canonical form.
    pub instruction: String,
    /// ARG and ENV values the step sees (RUN) or that shaped it.
    pub env: Vec<(String, String)>,
    /// Target platform.
    pub platform: String,
    /// Build-wide settings that change layer bytes (compression, epoch).
    pub settings: String,
    /// Other stages or images read (`COPY --from`, bind mounts): name → their key or digest.
    pub reads: Vec<(String, String)>,
    /// Entries written by COPY/ADD: path → type, mode, owner, target or content digest.
    pub files: Vec<(String, String)>,
}

impl StepInputs {
    /// The key.
    pub fn key(&self) -> Digest {
        let mut h = Hasher::default();
        h.field("version", KEY_VERSION);
        h.field("parent", &self.parent);
        h.field("instruction", &self.instruction);
        h.field("platform", &self.platform);
        h.field("settings", &self.settings);
        for (k, v) in &self.env {
            h.field("env", k).field("=", v);
        }
        for (k, v) in &self.reads {
            h.field("reads", k).field("=", v);
        }
        for (k, v) in &self.files {
            h.field("file", k).field("=", v);
        }
        h.finish()
    }
}

#[derive(Default)]
struct Hasher(Sha256);

impl Hasher {
    /// Length-prefixed, so fields cannot run into each other.
    fn field(&mut self, name: &str, value: &str) -> &mut Hasher {
        for part in [name.as_bytes(), value.as_bytes()] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
        self
    }

    fn finish(&self) -> Digest {
        Digest::from_sha256(&self.0.clone().finalize())
    }
}

/// The identity of a stage's starting point: `scratch` on a platform, or a base image
/// (by manifest digest).
pub fn base_key(base: &str, platform: &str) -> Digest {
    let mut h = Hasher::default();
    h.field("version", KEY_VERSION)
        .field("base", base)
        .field("platform", platform);
    h.finish()
}

/// The entries a COPY/ADD writes as key inputs, sorted by path; `content` gives a regular
/// file's content digest (inline bytes are hashed here). Modification times are left out:
/// a fresh clone of the same sources must hit.
pub fn entry_inputs<F>(entries: &[Entry], mut content: F) -> Vec<(String, String)>
where
    F: FnMut(&Entry) -> String,
{
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    sorted.dedup_by(|b, a| a.path == b.path);
    sorted
        .into_iter()
        .map(|e| {
            let what = match &e.kind {
                Kind::File(_) => format!("file {}", content(e)),
                Kind::Bytes(b) => format!("file {}", crate::content::sha256_digest(b)),
                Kind::Dir => "dir".to_string(),
                Kind::Symlink(t) => format!("symlink {t}"),
                Kind::Hardlink(t) => format!("hardlink {t}"),
                special => special.special_key().unwrap_or_default(),
            };
            let mut v = format!("{what} {:o} {}:{}", e.mode, e.uid, e.gid);
            for (name, value) in &e.xattrs {
                v.push_str(&format!(" {name}={}", hex::encode(value)));
            }
            (e.path.clone(), v)
        })
        .collect()
}

/// Why `new` does not match `old` (the last build of the same step), in a few words that
/// name the file, variable or input that changed; `None` when they are equal.
pub fn why_missed(old: &StepInputs, new: &StepInputs) -> Option<String> {
    if old == new {
        return None;
    }
    if old.parent != new.parent {
        return Some("an earlier step or the base image changed".into());
    }
    if old.instruction != new.instruction {
        return Some("the instruction changed".into());
    }
    if old.platform != new.platform {
        return Some(format!(
            "platform changed from {} to {}",
            old.platform, new.platform
        ));
    }
    if old.settings != new.settings {
        return Some(format!(
            "build settings changed ({} → {})",
            old.settings, new.settings
        ));
    }
    if let Some(w) = diff_pairs(&old.env, &new.env, "variable") {
        return Some(w);
    }
    if let Some(w) = diff_pairs(&old.reads, &new.reads, "source") {
        return Some(w);
    }
    diff_pairs(&old.files, &new.files, "file").or(Some("inputs changed".into()))
}

fn diff_pairs(old: &[(String, String)], new: &[(String, String)], what: &str) -> Option<String> {
    // A merge walk over both lists in path order: no map of 200,000 paths built twice just
    // to name the one that changed. Records are written sorted; older ones are sorted here.
    fn by_key(v: &[(String, String)]) -> std::borrow::Cow<'_, [(String, String)]> {
        if v.is_sorted_by(|a, b| a.0 <= b.0) {
            std::borrow::Cow::Borrowed(v)
        } else {
            let mut o = v.to_vec();
            o.sort();
            std::borrow::Cow::Owned(o)
        }
    }
    let (a, b) = (by_key(old), by_key(new));
    let (mut i, mut j) = (0, 0);
    let mut first = None;
    let mut count = 0usize;
    let mut note = |c: String| {
        count += 1;
        first.get_or_insert(c);
    };
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                if x.1 != y.1 {
                    note(format!("{what} {} changed", y.0));
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                note(format!("{what} {} removed", x.0));
                i += 1;
            }
            (_, Some(y)) => {
                note(format!("{what} {} added", y.0));
                j += 1;
            }
            (Some(x), None) => {
                note(format!("{what} {} removed", x.0));
                i += 1;
            }
            (None, None) => break,
        }
    }
    match (first, count) {
        (None, _) => None,
        (Some(c), 1) => Some(c),
        (Some(c), n) => Some(format!("{c} (and {} more)", n - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32, mtime: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Bytes(b"x".to_vec()),
            mode,
            uid: 0,
            gid: 0,
            mtime,
            size: 1,
            xattrs: vec![],
        }
    }

    fn key_of(entries: Vec<Entry>) -> Digest {
        StepInputs {
            files: entry_inputs(&entries, |_| String::new()),
            ..StepInputs::default()
        }
        .key()
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let a = StepInputs {
            env: vec![("a".into(), "bc".into())],
            ..Default::default()
        };
        let b = StepInputs {
            env: vec![("ab".into(), "c".into())],
            ..Default::default()
        };
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn mtime_is_not_an_input_but_mode_and_name_are() {
        assert_eq!(
            key_of(vec![file("a", 0o644, 1)]),
            key_of(vec![file("a", 0o644, 99)])
        );
        assert_ne!(
            key_of(vec![file("a", 0o644, 1)]),
            key_of(vec![file("a", 0o755, 1)])
        );
        assert_ne!(
            key_of(vec![file("a", 0o644, 1)]),
            key_of(vec![file("b", 0o644, 1)])
        );
    }

    #[test]
    fn a_miss_names_what_changed() {
        let old = StepInputs {
            env: vec![("VERSION".into(), "1".into())],
            files: vec![("app/a.js".into(), "file x".into())],
            ..Default::default()
        };
        let mut new = old.clone();
        new.files[0].1 = "file y".into();
        assert_eq!(why_missed(&old, &new).unwrap(), "file app/a.js changed");
        let mut new = old.clone();
        new.env[0].1 = "2".into();
        assert_eq!(why_missed(&old, &new).unwrap(), "variable VERSION changed");
        assert_eq!(why_missed(&old, &old), None);
    }

    #[test]
    fn a_miss_counts_added_removed_and_changed_files_in_path_order() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let old = StepInputs {
            files: pairs(&[("a", "1"), ("b", "1"), ("d", "1")]),
            ..Default::default()
        };
        let new = StepInputs {
            files: pairs(&[("b", "2"), ("c", "1"), ("d", "1"), ("e", "1")]),
            ..Default::default()
        };
        assert_eq!(
            why_missed(&old, &new).unwrap(),
            "file a removed (and 3 more)"
        );
        // Unsorted lists (records from older builds) give the same answer.
        let mut shuffled = new.clone();
        shuffled.files.reverse();
        assert_eq!(
            why_missed(&old, &shuffled).unwrap(),
            "file a removed (and 3 more)"
        );
        let only_added = StepInputs {
            files: pairs(&[("a", "1"), ("b", "1"), ("d", "1"), ("z", "9")]),
            ..Default::default()
        };
        assert_eq!(why_missed(&old, &only_added).unwrap(), "file z added");
    }
}
