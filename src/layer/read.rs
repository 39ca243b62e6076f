//! Opening compressed layers and archives: by media type for image layers, by magic bytes for
//! `ADD` of local archives (gzip, bzip2, xz, zstd or plain tar, as Docker detects them).

use std::io::{self, BufRead, BufReader, Read};

/// Compression formats rbuild can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Uncompressed.
    Plain,
    /// gzip (one or more members).
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

impl Format {
    /// The compression a layer media type declares (OCI and Docker types), if known.
    pub fn from_media_type(mt: &str) -> Option<Format> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Format::Plain),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Format::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Format::Zstd),
            _ => None,
        }
    }

    /// Detects the format from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Format {
        if head.starts_with(&[0x1f, 0x8b]) {
            Format::Gzip
        } else if head.starts_with(b"BZh") {
            Format::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Format::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Zstd
        } else {
            Format::Plain
        }
    }
}

/// Wraps `r` in the decoder for `format`.
pub fn decoder<'a>(r: impl Read + 'a, format: Format) -> io::Result<Box<dyn Read + 'a>> {
    let r = BufReader::with_capacity(1 << 16, r);
    Ok(match format {
        Format::Plain => Box::new(r),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Format::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
        Format::Zstd => Box::new(zstd::Decoder::with_buffer(r)?),
    })
}

/// Decodes `r` after sniffing its first bytes; returns the format found too.
pub fn sniffed<'a>(r: impl Read + 'a) -> io::Result<(Format, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let format = Format::sniff(r.fill_buf()?);
    Ok((format, decoder(r, format)?))
}

/// True when the bytes look like a tar archive (a valid header checksum at offset 0).
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let h = &block[..512];
    let field = &h[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == stored && h.iter().any(|b| *b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sniffs_and_decodes_every_format() {
        let data = b"hello layers".repeat(100);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(6));
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        for (blob, f) in [
            (gz, Format::Gzip),
            (bz, Format::Bzip2),
            (xz, Format::Xz),
            (zs, Format::Zstd),
            (data.clone(), Format::Plain),
        ] {
            let (found, mut r) = sniffed(&blob[..]).unwrap();
            assert_eq!(found, f);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn tar_detection_checks_the_header_checksum() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("x").unwrap();
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(looks_like_tar(&t));
        assert!(!looks_like_tar(&[b'a'; 600]));
        assert!(!looks_like_tar(&[0; 1024]));
    }
}
