//! `.dockerignore`: reading the file and matching context paths with Docker's exact rules
//! (moby/patternmatcher): patterns cleaned like Go's `filepath.Clean`, `!` exceptions, last
//! match wins, `**` across directories, and a path excluded when any parent is.
//!
//! Written by hand: gitignore crates (`ignore`, `globset`) use different rules (there `foo`
//! also excludes `a/foo`; in Docker it does not). Checked against patternmatcher's own tables
//! in `../shared/conformance/dockerignore`.

use regex::Regex;
use thiserror::Error;

/// A malformed pattern.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    /// A lone `!`.
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    /// Bad glob syntax (unclosed `[`, trailing `\`, ...).
    #[error("syntax error in pattern: {0:?}")]
    BadPattern(String),
}

/// Reads `.dockerignore` text into patterns: BOM dropped, `#` comment lines (at column 0)
/// skipped, lines trimmed, empty lines dropped, cleaned, one leading `/` removed.
pub fn read_patterns(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim().to_string();
        if p.is_empty() {
            continue;
        }
        let mut invert = false;
        if let Some(rest) = p.strip_prefix('!') {
            invert = true;
            p = rest.trim().to_string();
        }
        if !p.is_empty() {
            p = clean_path(&p);
            if let Some(rest) = p.strip_prefix('/') {
                if !rest.is_empty() {
                    p = rest.to_string();
                }
            }
        }
        if invert {
            p = format!("!{p}");
        }
        out.push(p);
    }
    out
}

/// Go's `path.Clean` for slash-separated paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    depth: usize,
    exclusion: bool,
    kind: MatchType,
    /// `None` for non-regex kinds, `Some(Err)` when the regex did not compile.
    regex: Option<Result<Regex, String>>,
}

impl Pattern {
    fn new(cleaned: String, exclusion: bool) -> Pattern {
        let (kind, re) = compile(&cleaned);
        Pattern {
            depth: cleaned.split('/').count(),
            cleaned,
            exclusion,
            regex: if kind == MatchType::Regex {
                Some(re)
            } else {
                None
            },
            kind,
        }
    }

    fn matches(&self, path: &str) -> Result<bool, PatternError> {
        let p = &self.cleaned;
        Ok(match self.kind {
            MatchType::Exact => path == p,
            MatchType::Prefix => path.starts_with(&p[..p.len() - 2]),
            MatchType::Suffix => {
                let suffix = &p[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            MatchType::Regex => match self.regex.as_ref().expect("regex kind") {
                Ok(re) => re.is_match(path),
                Err(_) => return Err(PatternError::BadPattern(p.clone())),
            },
        })
    }
}

/// Turns a cleaned pattern into a match strategy (and a regex when it needs one).
fn compile(pattern: &str) -> (MatchType, Result<Regex, String>) {
    let mut re = String::from("^");
    let mut kind = MatchType::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == MatchType::Exact {
                        kind = MatchType::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = MatchType::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = MatchType::Regex;
                }
                if first {
                    kind = MatchType::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = MatchType::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = MatchType::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                // An escaped character only matches itself through the regex.
                kind = MatchType::Regex;
                if i < chars.len() {
                    re.push('\\');
                    re.push(chars[i]);
                    i += 1;
                } else {
                    re.push('\\');
                }
            }
            '[' | ']' => {
                re.push(ch);
                kind = MatchType::Regex;
            }
            c => re.push(c),
        }
        first = false;
    }
    if kind != MatchType::Regex {
        return (kind, Err(String::new()));
    }
    re.push('$');
    (MatchType::Regex, Regex::new(&re).map_err(|e| e.to_string()))
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl Matcher {
    /// Builds a matcher; patterns are trimmed, empty ones dropped, each cleaned and
    /// syntax-checked.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, PatternError> {
        let mut m = Matcher::default();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean_path(p);
            let (exclusion, body) = match p.strip_prefix('!') {
                Some("") => return Err(PatternError::LoneExclamation),
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            if glob_match(&body, ".").is_err() {
                return Err(PatternError::BadPattern(body));
            }
            m.exclusions |= exclusion;
            m.patterns.push(Pattern::new(body, exclusion));
        }
        Ok(m)
    }

    /// The active patterns as cleaned, exceptions with their `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.cleaned)
                } else {
                    p.cleaned.clone()
                }
            })
            .collect()
    }

    /// How pattern `i` is matched: `exactMatch`, `prefixMatch`, `suffixMatch` or
    /// `regexpMatch` (patternmatcher's names; for diagnostics and conformance).
    pub fn strategy(&self, i: usize) -> String {
        match self.patterns[i].kind {
            MatchType::Exact => "exactMatch",
            MatchType::Prefix => "prefixMatch",
            MatchType::Suffix => "suffixMatch",
            MatchType::Regex => "regexpMatch",
        }
        .to_string()
    }

    /// Whether any `!` exception is present (then excluded directories must still be walked).
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// True when there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (slash-separated, relative to the context) is excluded: the last
    /// pattern matching the path or any of its parents decides.
    pub fn excludes(&self, path: &str) -> Result<bool, PatternError> {
        let parent = parent_dir(path);
        let parents = prefixes(&parent);
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(path)?;
            if !hit {
                hit = parents.iter().any(|d| p.matches(d).unwrap_or(false));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        Ok(matched)
    }

    /// The deprecated `Matches` semantics (parent prefix of the pattern's own depth only);
    /// kept for conformance with Docker's older tables.
    pub fn excludes_legacy(&self, path: &str) -> Result<bool, PatternError> {
        let parent = parent_dir(path);
        let parents = prefixes(&parent);
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(path)?;
            if !hit && p.depth <= parents.len() {
                hit = p.matches(parents[p.depth - 1]).unwrap_or(false);
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        Ok(matched)
    }
}

/// Every leading run of components of `parent` (`a`, `a/b`, `a/b/c`), as slices of it: joined
/// strings per pattern made deep paths quadratic (4 ms a pattern on a 2,000-deep path).
fn prefixes(parent: &str) -> Vec<&str> {
    if parent == "." {
        return Vec::new();
    }
    parent
        .match_indices('/')
        .map(|(i, _)| &parent[..i])
        .chain(std::iter::once(parent))
        .collect()
}

/// Go's `filepath.Dir` for slash paths.
fn parent_dir(path: &str) -> String {
    match path.rfind('/') {
        None => ".".into(),
        Some(i) => clean_path(&path[..i.max(if path.starts_with('/') { 1 } else { 0 })]),
    }
}

/// Go's `filepath.Match` (Unix): `*`, `?`, `[...]` classes with `^` negation, `\` escapes.
/// Errors on malformed patterns exactly where Go does.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let bad = || PatternError::BadPattern(pattern.to_string());
    let mut pat = pattern.as_bytes();
    let mut name = name.as_bytes();
    'outer: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        let (t, ok, e) = match_chunk(chunk, name);
        if ok && (t.is_empty() || !pat.is_empty()) {
            name = t;
            continue;
        }
        if e {
            return Err(bad());
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                let (t, ok, e) = match_chunk(chunk, &name[i + 1..]);
                if ok {
                    if pat.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
                if e {
                    return Err(bad());
                }
                i += 1;
            }
        }
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            if match_chunk(chunk, b"").2 {
                return Err(bad());
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(mut pat: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while pat.first() == Some(&b'*') {
        pat = &pat[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pat.len() {
        match pat[i] {
            b'\\' if i + 1 < pat.len() => {
                i += 1;
            }
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pat[..i], &pat[i..])
}

fn decode_char(s: &[u8]) -> (Option<char>, usize) {
    if s.is_empty() {
        return (None, 0);
    }
    let len = match s[0] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
    .min(s.len());
    match std::str::from_utf8(&s[..len]) {
        Ok(st) => (st.chars().next(), len),
        Err(_) => (None, 1),
    }
}

/// Returns (rest of name, matched, malformed).
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> (&'a [u8], bool, bool) {
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            b'[' => {
                let mut r = None;
                if !failed {
                    let (c, n) = decode_char(s);
                    r = c.or(Some('\u{fffd}'));
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let Some((lo, rest)) = get_esc(chunk) else {
                        return (&[], false, true);
                    };
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let Some((h, rest)) = get_esc(&chunk[1..]) else {
                            return (&[], false, true);
                        };
                        hi = h;
                        chunk = rest;
                    }
                    if let Some(r) = r {
                        if lo <= r && r <= hi {
                            matched = true;
                        }
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_char(s);
                    s = &s[n.max(1)..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let mut c = c;
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return (&[], false, true);
                    }
                    c = chunk[0];
                }
                if !failed {
                    if c != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        return (&[], false, false);
    }
    (s, true, false)
}

/// One possibly escaped character of a class; `None` when malformed.
fn get_esc(chunk: &[u8]) -> Option<(char, &[u8])> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk[0] == b'-' || chunk[0] == b']' {
        return None;
    }
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return None;
        }
    }
    let (c, n) = decode_char(chunk);
    let c = c?;
    let rest = &chunk[n..];
    if rest.is_empty() {
        return None;
    }
    Some((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_can_be_reincluded() {
        let m = Matcher::new(&["docs", "!docs/README.md"]).unwrap();
        assert!(m.excludes("docs/a.md").unwrap());
        assert!(!m.excludes("docs/README.md").unwrap());
    }

    #[test]
    fn plain_name_does_not_match_deeper() {
        let m = Matcher::new(&["foo"]).unwrap();
        assert!(!m.excludes("a/foo").unwrap());
        assert!(m.excludes("foo/bar").unwrap());
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean_path("a/../../b"), "../b");
        assert_eq!(clean_path("/../a//b/."), "/a/b");
        assert_eq!(clean_path("./"), ".");
    }
}
