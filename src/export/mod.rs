//! Outputs (`-o/--output`): OCI layout directories ([`oci_dir`]), OCI and `docker load` tar
//! archives ([`archive`]), and the image's root filesystem as a plain directory ([`local`]).

pub mod archive;
pub mod local;
pub mod oci_dir;

use std::path::PathBuf;

pub use oci_dir::write_oci_dir;

/// One `-o` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=oci,dest=DIR`: an OCI image layout directory.
    OciDir(PathBuf),
    /// `type=oci,dest=FILE.tar` (or `-` for stdout): an OCI layout in a tar.
    OciTar(PathBuf),
    /// `type=docker,dest=FILE.tar` (or `-`): what `docker load` reads (also an OCI layout).
    DockerTar(PathBuf),
    /// `type=local,dest=DIR`: the final filesystem, unpacked.
    Local(PathBuf),
}

impl Output {
    /// Parses BuildKit's `type=...,dest=...` syntax; `tar=false` keeps an OCI output a directory.
    pub fn parse(s: &str) -> Result<Output, String> {
        let mut kind = None;
        let mut dest = None;
        let mut tar: Option<bool> = None;
        for field in s.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("field {field:?} is not KEY=VALUE"))?;
            match k {
                "type" => kind = Some(v),
                "dest" => dest = Some(PathBuf::from(v)),
                "tar" => tar = Some(v == "true"),
                // Accepted for compatibility; names come from -t.
                "name" | "compression" | "oci-mediatypes" | "push" => {}
                _ => return Err(format!("unknown output attribute {k:?}")),
            }
        }
        let dest = dest.ok_or("missing dest=")?;
        let is_tar = tar.unwrap_or_else(|| {
            dest.as_os_str() == "-" || dest.extension().is_some_and(|e| e == "tar")
        });
        match kind {
            Some("oci") if is_tar => Ok(Output::OciTar(dest)),
            Some("oci") => Ok(Output::OciDir(dest)),
            Some("docker") => Ok(Output::DockerTar(dest)),
            Some("local") => Ok(Output::Local(dest)),
            Some(other) => Err(format!("unknown output type {other:?}")),
            None => Err("missing type=".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_flags_like_buildkit() {
        assert_eq!(
            Output::parse("type=oci,dest=out").unwrap(),
            Output::OciDir("out".into())
        );
        assert_eq!(
            Output::parse("type=oci,dest=img.tar").unwrap(),
            Output::OciTar("img.tar".into())
        );
        assert_eq!(
            Output::parse("type=oci,dest=x,tar=true").unwrap(),
            Output::OciTar("x".into())
        );
        assert_eq!(
            Output::parse("type=docker,dest=-").unwrap(),
            Output::DockerTar("-".into())
        );
        assert_eq!(
            Output::parse("type=local,dest=rootfs").unwrap(),
            Output::Local("rootfs".into())
        );
        assert!(Output::parse("type=registry").unwrap_err().contains("dest"));
        assert!(Output::parse("type=foo,dest=x")
            .unwrap_err()
            .contains("foo"));
    }
}
