//! One pass over a layer's bytes: the uncompressed sha256 (diff_id) is taken as the tar is
//! written and the stream is compressed on all cores. The compressed sha256 and size are taken
//! by the destination (the store's ingest hashes what it writes), so no byte is hashed or read
//! twice.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

use super::pgzip::ParallelGzip;
use crate::reference::Digest;

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip level 6 (Docker's default), `application/vnd.oci.image.layer.v1.tar+gzip`.
    #[default]
    Gzip,
    /// zstd level 3, `application/vnd.oci.image.layer.v1.tar+zstd`.
    Zstd,
    /// No compression, `application/vnd.oci.image.layer.v1.tar`.
    None,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// Parses the `--compression` value.
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "uncompressed" | "none" => Some(Compression::None),
            _ => None,
        }
    }
}

/// What a finished layer stream yields besides the compressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncompressed {
    /// sha256 of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
}

enum Sink<W: Write> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::Encoder<'static, W>),
    Plain(W),
}

/// A writer that takes tar bytes, digests them and passes them on compressed.
pub struct LayerWriter<W: Write> {
    diff: Sha256,
    size: u64,
    sink: Sink<W>,
}

impl<W: Write> LayerWriter<W> {
    /// Wraps `out` (where the compressed blob goes).
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        let sink = match compression {
            Compression::Gzip => Sink::Gzip(ParallelGzip::new(out, 6)),
            Compression::Zstd => {
                let mut e = zstd::Encoder::new(out, 3)?;
                // zstd's output is the same for any worker count >= 1, so layers stay
                // reproducible across machines with different core counts.
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
                e.multithread(workers as u32)?;
                Sink::Zstd(e)
            }
            Compression::None => Sink::Plain(out),
        };
        Ok(LayerWriter {
            diff: Sha256::new(),
            size: 0,
            sink,
        })
    }

    /// Ends the stream; returns the uncompressed digest and the underlying writer.
    pub fn finish(self) -> io::Result<(Uncompressed, W)> {
        let mut inner = match self.sink {
            Sink::Gzip(gz) => gz.finish()?,
            Sink::Zstd(z) => z.finish()?,
            Sink::Plain(w) => w,
        };
        inner.flush()?;
        Ok((
            Uncompressed {
                diff_id: Digest::from_sha256(&self.diff.finalize()),
                size: self.size,
            },
            inner,
        ))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.sink {
            Sink::Gzip(g) => g.write(buf)?,
            Sink::Zstd(z) => z.write(buf)?,
            Sink::Plain(w) => w.write(buf)?,
        };
        self.diff.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(c: Compression) -> (Vec<u8>, Vec<u8>) {
        let data: Vec<u8> = (0..700_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 5000) as u8)
            .collect();
        let mut w = LayerWriter::new(Vec::new(), c).unwrap();
        w.write_all(&data).unwrap();
        let (u, blob) = w.finish().unwrap();
        assert_eq!(u.diff_id, crate::content::sha256_digest(&data));
        assert_eq!(u.size, data.len() as u64);
        let mut back = Vec::new();
        match c {
            Compression::Gzip => {
                flate2::read::GzDecoder::new(&blob[..])
                    .read_to_end(&mut back)
                    .unwrap();
            }
            Compression::Zstd => {
                zstd::Decoder::new(&blob[..])
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap();
            }
            Compression::None => back = blob.clone(),
        }
        assert_eq!(back, data);
        (data, blob)
    }

    #[test]
    fn every_compression_round_trips_with_the_right_diff_id() {
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            round_trip(c);
        }
    }

    #[test]
    fn zstd_output_is_reproducible() {
        assert_eq!(
            round_trip(Compression::Zstd).1,
            round_trip(Compression::Zstd).1
        );
    }

    #[test]
    fn zstd_output_does_not_depend_on_the_worker_count() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 97) as u8 ^ (i >> 13) as u8)
            .collect();
        let with = |workers: u32| {
            let mut e = zstd::Encoder::new(Vec::new(), 3).unwrap();
            e.multithread(workers).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(with(1), with(2));
        assert_eq!(with(1), with(7));
    }
}
