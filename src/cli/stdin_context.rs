//! `rbuild build -`: the context read from standard input, as `docker build -` reads it: a
//! tar archive (plain, gzip, bzip2, xz or zstd) is the context, with the Dockerfile inside
//! (`-f` names it relative to the archive's root); anything else is a Dockerfile, built with
//! an empty context. The archive is unpacked into the store's scratch space with the same
//! safe extraction as image layers, so a hostile archive cannot write outside it. A context
//! downloaded over HTTP is read the same way.

use std::io::Read;
use std::path::PathBuf;

use crate::content::{Store, TempDir};
use crate::layer::apply::apply_layer;
use crate::layer::read::{decoder, looks_like_tar, Format};

use super::error::{CliError, ExitKind};
use super::parse::MAX_DOCKERFILE;

/// A context made in the store's scratch space (from standard input, a URL or a Git
/// repository); the directory lives as long as this value.
pub(super) struct TempContext {
    _dir: TempDir,
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile to build.
    pub dockerfile: PathBuf,
    /// How errors name the Dockerfile.
    pub name: String,
}

impl TempContext {
    /// The context at `context` (inside `dir`) with its Dockerfile: `file` (`-f`, a path
    /// inside the context) or `Dockerfile`. Missing, it is a usage error saying that `what`
    /// has no such file, with `hint`.
    pub(super) fn found(
        dir: TempDir,
        context: PathBuf,
        file: Option<&std::path::Path>,
        what: &str,
        hint: &str,
    ) -> Result<Self, CliError> {
        let rel = file.map_or_else(|| PathBuf::from("Dockerfile"), PathBuf::from);
        let dockerfile = context.join(rel.strip_prefix("/").unwrap_or(&rel));
        if !dockerfile.is_file() {
            return Err(
                CliError::new(ExitKind::Usage, format!("{what} has no {}", rel.display()))
                    .hinted(hint),
            );
        }
        Ok(TempContext {
            _dir: dir,
            context,
            dockerfile,
            name: rel.display().to_string(),
        })
    }
}

fn failed(source: &str, what: impl std::fmt::Display) -> CliError {
    CliError::new(
        ExitKind::Failure,
        format!("reading the build context from {source}: {what}"),
    )
    .hinted("give a Dockerfile or a tar archive of the context (plain, gz, bz2, xz or zst)")
}

/// Reads standard input into a context directory under the store's scratch space.
pub(super) fn read(store: &Store, file: Option<&std::path::Path>) -> Result<TempContext, CliError> {
    read_from(store, std::io::stdin().lock(), file, "standard input")
}

/// Reads a Dockerfile or a context archive from `input` (named `source` in errors).
pub(super) fn read_from(
    store: &Store,
    mut input: impl Read,
    file: Option<&std::path::Path>,
    source: &str,
) -> Result<TempContext, CliError> {
    let failed = |e: &dyn std::fmt::Display| failed(source, e);
    if file.is_some_and(|f| f.as_os_str() == "-") {
        return Err(CliError::new(
            ExitKind::Usage,
            "standard input cannot be both the build context and the Dockerfile",
        )
        .hinted("give the context as a directory, or the Dockerfile with -f FILE"));
    }
    let dir = store.temp_dir("stdin-context").map_err(|e| failed(&e))?;
    let context = dir.path().join("context");
    std::fs::create_dir(&context).map_err(|e| failed(&e))?;
    // Enough of the stream to tell an archive from a Dockerfile (pipes return short reads).
    let mut head = Vec::with_capacity(1 << 16);
    (&mut input)
        .take(1 << 16)
        .read_to_end(&mut head)
        .map_err(|e| failed(&e))?;
    let format = Format::sniff(&head);
    let is_archive = format != Format::Plain || looks_like_tar(&head);
    let whole = std::io::Cursor::new(head).chain(input);
    if is_archive {
        let tar = decoder(whole, format).map_err(|e| failed(&e))?;
        apply_layer(&context, tar).map_err(|e| failed(&e))?;
        return TempContext::found(
            dir,
            context,
            file,
            &format!("the archive from {source}"),
            "put a Dockerfile at the archive's root, or name it with -f PATH inside the archive",
        );
    }
    if file.is_some() {
        return Err(CliError::new(
            ExitKind::Usage,
            format!(
                "-f names a Dockerfile inside a context archive, but {source} is not an archive"
            ),
        )
        .hinted("drop -f to build the Dockerfile on standard input, or pipe a tar archive"));
    }
    // The Dockerfile sits beside the (empty) context, so `COPY . /` does not copy it.
    let dockerfile = dir.path().join("Dockerfile");
    let mut out = std::fs::File::create(&dockerfile).map_err(|e| failed(&e))?;
    std::io::copy(&mut whole.take(MAX_DOCKERFILE + 1), &mut out).map_err(|e| failed(&e))?;
    Ok(TempContext {
        _dir: dir,
        context,
        dockerfile,
        name: "<stdin>".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        (t, s)
    }

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_dockerfile_on_stdin_builds_with_an_empty_context() {
        let (_t, s) = store();
        let c = read_from(&s, &b"FROM scratch\n"[..], None, "standard input").unwrap();
        assert_eq!(
            std::fs::read_to_string(&c.dockerfile).unwrap(),
            "FROM scratch\n"
        );
        assert_eq!(std::fs::read_dir(&c.context).unwrap().count(), 0);
        assert_eq!(c.name, "<stdin>");
    }

    #[test]
    fn an_archive_on_stdin_is_the_context_compressed_or_not() {
        let (_t, s) = store();
        let tar = tar_of(&[("Dockerfile", "FROM scratch\n"), ("app/x.txt", "x")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        for input in [tar.clone(), gz.finish().unwrap()] {
            let c = read_from(&s, &input[..], None, "standard input").unwrap();
            assert_eq!(
                std::fs::read_to_string(c.context.join("app/x.txt")).unwrap(),
                "x"
            );
            assert_eq!(c.dockerfile, c.context.join("Dockerfile"));
        }
        let alt = tar_of(&[("build/Dockerfile.prod", "FROM scratch\n")]);
        let c = read_from(
            &s,
            &alt[..],
            Some(std::path::Path::new("build/Dockerfile.prod")),
            "standard input",
        )
        .unwrap();
        assert!(c.dockerfile.is_file());
        let e = read_from(&s, &alt[..], None, "standard input")
            .err()
            .unwrap();
        assert!(e.to_string().contains("no Dockerfile"), "{e}");
    }

    #[test]
    fn hostile_or_broken_archives_are_refused() {
        let (_t, s) = store();
        // A name climbing out, and a gzip stream cut short.
        let escaping = tar_of(&[("a", "b")]);
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..7].copy_from_slice(b"../evil");
        h.set_size(0);
        h.set_cksum();
        let mut climbing = h.as_bytes().to_vec();
        climbing.extend_from_slice(&escaping);
        assert!(read_from(&s, &climbing[..], None, "standard input").is_err());
        assert!(!_t.path().join("tmp/evil").exists());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar_of(&[("Dockerfile", &"x".repeat(5000))])).unwrap();
        let mut cut = gz.finish().unwrap();
        cut.truncate(cut.len() / 2);
        let e = read_from(&s, &cut[..], None, "standard input")
            .err()
            .unwrap();
        assert!(e.to_string().contains("standard input"), "{e}");
    }
}
