//! Parallel gzip that writes one standard gzip stream (pigz's scheme).
//!
//! Written here because no crate does it on a pure-Rust zlib: `gzp`'s parallel mode needs a C
//! zlib, and its libdeflate mode writes many gzip members (see docs/architecture.md). The input
//! is cut into fixed blocks; each block is raw-deflated on the rayon pool with the previous
//! 32 KiB as its dictionary and ends with a sync flush (byte aligned), so the blocks concatenate
//! into one deflate stream. The CRC-32 is taken on the producing thread as bytes arrive. The
//! output depends only on the input, the level and the block size — never on the number of
//! threads or on timing — so layers stay bit-for-bit reproducible.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

use flate2::{Compress, Compression, FlushCompress, Status};

/// Uncompressed bytes per block (pigz uses 128 KiB; larger blocks cost less per-block work).
pub const BLOCK: usize = 256 * 1024;
/// The deflate window: how much of the previous block primes the next one.
const DICT: usize = 32 * 1024;

/// A gzip writer that compresses blocks on all cores and writes them in order.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    buf: Vec<u8>,
    dict: Option<Vec<u8>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    crc: crc32fast::Hasher,
    total: u64,
    header_written: bool,
}

/// Raw-deflates one block; `last` ends the stream, otherwise a sync flush byte-aligns it.
///
/// Every block gets a fresh encoder: zlib-rs's `reset` does not clear all of an encoder's
/// state, and a reused one compressed a block differently after a large job on the same
/// thread, so layers were not reproducible. The setup costs little next to a 256 KiB block.
pub(crate) fn deflate_block(
    level: u32,
    dict: Option<&[u8]>,
    input: &[u8],
    last: bool,
) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if let Some(d) = dict {
        c.set_dictionary(d).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() + input.len() / 8 + 64);
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == input.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            _ if done_input && room_left && !last => break,
            _ => out.reserve(out.capacity().max(4096)),
        }
    }
    Ok(out)
}

/// Waits for a block; on a rayon worker it runs other jobs meanwhile, so a writer used inside
/// the pool (even a one-thread pool) cannot deadlock on its own blocks.
fn wait(rx: &Receiver<io::Result<Vec<u8>>>) -> io::Result<Vec<u8>> {
    let stopped = || io::Error::other("a compression worker stopped");
    if rayon::current_thread_index().is_none() {
        return rx.recv().map_err(|_| stopped())?;
    }
    loop {
        match rx.try_recv() {
            Ok(r) => return r,
            Err(TryRecvError::Disconnected) => return Err(stopped()),
            Err(TryRecvError::Empty) => {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::thread::yield_now();
                }
            }
        }
    }
}

impl<W: Write> ParallelGzip<W> {
    /// Wraps `out`; `level` is the zlib level (Docker uses 6).
    pub fn new(out: W, level: u32) -> Self {
        let threads = rayon::current_num_threads().max(1);
        ParallelGzip {
            out,
            level,
            buf: Vec::with_capacity(BLOCK),
            dict: None,
            pending: VecDeque::new(),
            max_pending: threads * 2 + 1,
            crc: crc32fast::Hasher::new(),
            total: 0,
            header_written: false,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // Magic, deflate, no flags, mtime 0, no extra flags, OS unknown: byte-stable.
            self.out
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let block = wait(&rx)?;
            self.out.write_all(&block)?;
        }
        Ok(())
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        self.write_header()?;
        while self.pending.len() >= self.max_pending {
            self.drain_one()?;
        }
        let input = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let dict = self.dict.take();
        if !last && input.len() >= DICT {
            self.dict = Some(input[input.len() - DICT..].to_vec());
        }
        let (tx, rx) = sync_channel(1);
        let level = self.level;
        rayon::spawn(move || {
            let _ = tx.send(deflate_block(level, dict.as_deref(), &input, last));
        });
        self.pending.push_back(rx);
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.total as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == BLOCK {
            self.submit(false)?;
        }
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

    /// Text-like bytes with little repetition (xorshift words), unlike [`sample`].
    fn varied(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    b"function value return "[(x % 22) as usize]
                } else {
                    (x % 26) as u8 + b'a'
                }
            })
            .collect()
    }

    #[test]
    fn a_block_compresses_the_same_whatever_ran_before_on_the_thread() {
        let dict = varied(1, DICT);
        let block = varied(2, BLOCK);
        let first = std::thread::spawn({
            let (d, b) = (dict.clone(), block.clone());
            move || deflate_block(6, Some(&d), &b, false).unwrap()
        })
        .join()
        .unwrap();
        let after_big_job = std::thread::spawn(move || {
            deflate_block(6, None, &varied(5, 1_100_000), true).unwrap();
            deflate_block(6, None, &varied(3, 1000), true).unwrap();
            deflate_block(6, Some(&dict), &block, false).unwrap()
        })
        .join()
        .unwrap();
        assert!(
            first == after_big_job,
            "deflate output depends on the thread's history"
        );
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: text-like with a slowly changing pattern.
        (0..len)
            .map(|i| b"abcdefghij klmnop {\"name\": 42}\n"[(i * 7 + i / 1000) % 31])
            .collect()
    }

    fn gz(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6);
        for c in data.chunks(chunk.max(1)) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_through_a_standard_decoder() {
        for len in [0, 1, 1000, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = sample(len);
            let blob = gz(&data, 10_000);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&blob[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }

    #[test]
    fn output_does_not_depend_on_write_sizes_or_threads() {
        let data = sample(5 * BLOCK + 77);
        let a = gz(&data, 1 << 20);
        let b = gz(&data, 4093);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let c = pool.install(|| gz(&data, 65536));
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn ratio_close_to_single_stream_gzip() {
        let data = sample(4 * BLOCK);
        let ours = gz(&data, 1 << 16).len();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&data).unwrap();
        let single = e.finish().unwrap().len();
        assert!(ours <= single + single / 50 + 64, "{ours} vs {single}");
    }
}
