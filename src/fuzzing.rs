//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, by hand for long runs) and for
//! the test that replays their corpus in CI: each takes arbitrary bytes and must return
//! without panicking or hanging, whatever they are.

use crate::frontend::{dockerignore, instructions::Dockerfile, parser, shell};

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Parses `data` as a Dockerfile, decodes its instructions, lints it, and expands every
/// stage's variables and base reference the way a build would.
pub fn dockerfile(data: &[u8]) {
    use crate::frontend::expand::{GlobalScope, Platforms, StageScope};
    let t = text(data);
    let _ = parser::parse(&t).map(|p| p.dump());
    let Ok(df) = Dockerfile::parse(&t) else {
        return;
    };
    let findings = crate::lint::lint(&df, &t, &crate::lint::ContextFacts::default());
    let _ = crate::lint::fixes(&df, &t, &findings);
    let build_args = vec![("A".to_string(), "x y".to_string())];
    let Ok(global) = GlobalScope::new(&df, &build_args, &Platforms::host()) else {
        return;
    };
    for stage in &df.stages {
        if let Ok((base, _)) = global.from_line(&df, stage) {
            let _ = crate::reference::Reference::parse_docker(&base);
        }
        let mut scope = StageScope::new(&global, df.parsed.escape, Vec::new());
        for step in &stage.steps {
            let _ = scope.step(step);
        }
    }
}

/// Expands `data[1..]` as a shell word; `data[0]` picks the escape character and modes.
pub fn shell_lex(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let escape = if mode & 1 == 0 { '\\' } else { '`' };
    let raw = mode & 2 != 0;
    let env = vec![
        ("a".to_string(), "x y".to_string()),
        ("b".to_string(), String::new()),
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
    ];
    let lex = shell::Lexer {
        raw_quotes: raw,
        raw_escapes: raw,
        skip_unset_env: mode & 4 != 0,
        ..shell::Lexer::new(escape)
    };
    let w = text(rest);
    let _ = lex.process(&w, &env);
    let _ = lex.process_words(&w, &env);
}

/// Reads `data` as a `.dockerignore` whose first line is the path to match.
pub fn dockerignore(data: &[u8]) {
    let t = text(data);
    let (path, patterns) = t.split_once('\n').unwrap_or((&t, ""));
    let pats = dockerignore::read_patterns(patterns);
    if let Ok(m) = dockerignore::Matcher::new(&pats) {
        let _ = m.excludes(path);
        let _ = m.excludes_legacy(path);
    }
}

/// Applies a layer tar onto a fresh directory, twice (flattening and overlay whiteouts),
/// and panics if anything appeared beside that directory: an escape is a crash to libFuzzer.
/// `data[0]` picks the form: odd, `data[1..]` is raw tar bytes (checksums rarely right);
/// even, it is a list of entries built into a tar with valid headers (see [`entries_tar`]), so
/// the fuzzer reaches the code behind the checksum.
pub fn layer_tar(data: &[u8]) {
    use crate::layer::apply::{apply_layer_with, Whiteouts};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let tar = if form & 1 == 1 {
        rest.to_vec()
    } else {
        entries_tar(rest)
    };
    for whiteouts in [Whiteouts::Delete, Whiteouts::Overlay] {
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cell = std::env::temp_dir().join(format!("rbuild-fuzz-{}-{n}", std::process::id()));
        let root = cell.join("root");
        if std::fs::create_dir_all(&root).is_err() {
            return;
        }
        let _ = apply_layer_with(&root, &tar[..], whiteouts);
        let beside: Vec<_> = std::fs::read_dir(&cell)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&cell);
        assert_eq!(beside, ["root"], "the layer wrote outside its root");
    }
}

/// Builds a tar from `data` read as entries: a type byte, a name and a link target (each up
/// to a NUL byte, at most 100 bytes, used raw: `..` and `/` included), a mode byte, a size
/// byte and that many data bytes. Headers get valid checksums.
pub fn entries_tar(mut data: &[u8]) -> Vec<u8> {
    const KINDS: &[u8] = b"0125634xLKgS7";
    fn field<'a>(data: &mut &'a [u8]) -> &'a [u8] {
        let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
        let (f, rest) = data.split_at(end);
        *data = rest.get(1..).unwrap_or_default();
        &f[..f.len().min(100)]
    }
    let mut out = Vec::new();
    while let Some((&kind, rest)) = data.split_first() {
        data = rest;
        let name = field(&mut data);
        let link = field(&mut data);
        let (mode, size) = match data {
            [m, s, rest @ ..] => {
                data = rest;
                (*m, *s as usize)
            }
            _ => (0, 0),
        };
        let body = &data[..size.min(data.len())];
        data = &data[body.len()..];
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(tar::EntryType::new(KINDS[kind as usize % KINDS.len()]));
        h.set_mode(match mode % 4 {
            0 => 0o644,
            1 => 0o755,
            2 => 0o4777,
            _ => mode as u32,
        });
        h.set_size(body.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_a_tar_the_layer_reader_applies() {
        let mut data = Vec::new();
        for (kind, name, link, body) in [
            (3u8, "dir", "", ""),
            (0, "dir/a", "", "hello"),
            (2, "dir/s", "a", ""),
        ] {
            data.push(kind);
            data.extend_from_slice(name.as_bytes());
            data.push(0);
            data.extend_from_slice(link.as_bytes());
            data.extend_from_slice(&[0, 0, body.len() as u8]);
            data.extend_from_slice(body.as_bytes());
        }
        let root = tempfile::tempdir().unwrap();
        crate::layer::apply::apply_layer(root.path(), &entries_tar(&data)[..]).unwrap();
        let a = std::fs::read_to_string(root.path().join("dir/a")).unwrap();
        assert_eq!(a, "hello");
        let s = std::fs::read_link(root.path().join("dir/s")).unwrap();
        assert_eq!(s, std::path::Path::new("a"));
    }
}
