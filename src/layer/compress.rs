//! One pass over a layer's bytes: the uncompressed sha256 (diff_id) is taken as the tar is
//! written, the stream is compressed, and the compressed sha256 (layer digest) and size are
//! taken as the compressed bytes go to the store. No byte is read twice.

use std::io::{self, Write};

use flate2::{write::GzEncoder, Compression as Level, GzBuilder};
use sha2::{Digest as _, Sha256};

use crate::content::HashingWriter;
use crate::reference::Digest;

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip level 6 (Docker's default), `application/vnd.oci.image.layer.v1.tar+gzip`.
    #[default]
    Gzip,
    /// No compression, `application/vnd.oci.image.layer.v1.tar`.
    None,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// Digests of a finished layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the compressed blob (the manifest's layer digest).
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
    /// Uncompressed size.
    pub uncompressed_size: u64,
}

enum Sink<W: Write> {
    Gzip(GzEncoder<HashingWriter<W>>),
    Plain(HashingWriter<W>),
}

/// A writer that takes tar bytes and yields both digests when finished.
pub struct LayerWriter<W: Write> {
    diff: Sha256,
    uncompressed: u64,
    sink: Sink<W>,
}

impl<W: Write> LayerWriter<W> {
    /// Wraps `out` (where the compressed blob goes).
    pub fn new(out: W, compression: Compression) -> Self {
        let tee = HashingWriter::new(out);
        let sink = match compression {
            // mtime 0 and no file name: the same tar always gives the same blob.
            Compression::Gzip => Sink::Gzip(GzBuilder::new().mtime(0).write(tee, Level::new(6))),
            Compression::None => Sink::Plain(tee),
        };
        LayerWriter {
            diff: Sha256::new(),
            uncompressed: 0,
            sink,
        }
    }

    /// Ends the stream; returns the digests and the underlying writer.
    pub fn finish(self) -> io::Result<(LayerDigests, W)> {
        let tee = match self.sink {
            Sink::Gzip(gz) => gz.finish()?,
            Sink::Plain(t) => t,
        };
        let (digest, size, mut inner) = tee.finish();
        inner.flush()?;
        Ok((
            LayerDigests {
                diff_id: Digest::from_sha256(&self.diff.finalize()),
                digest,
                size,
                uncompressed_size: self.uncompressed,
            },
            inner,
        ))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.sink {
            Sink::Gzip(g) => g.write(buf)?,
            Sink::Plain(t) => t.write(buf)?,
        };
        self.diff.update(&buf[..n]);
        self.uncompressed += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Gzip(g) => g.flush(),
            Sink::Plain(t) => t.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn digests_match_a_second_computation() {
        let data = vec![7u8; 100_000];
        let mut w = LayerWriter::new(Vec::new(), Compression::Gzip);
        w.write_all(&data).unwrap();
        let (d, blob) = w.finish().unwrap();
        assert_eq!(d.diff_id, crate::content::sha256_digest(&data));
        assert_eq!(d.digest, crate::content::sha256_digest(&blob));
        assert_eq!(d.size, blob.len() as u64);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
