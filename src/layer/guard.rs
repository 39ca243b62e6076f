//! A pass-through reader that walks a tar stream's headers as the bytes go by and refuses
//! hostile metadata before the `tar` crate sees it.
//!
//! The `tar` crate reads PAX extended headers and GNU long names/links into memory whole,
//! with no size limit: a layer declaring a 4 GiB PAX header (a few MB of gzip) would be
//! buffered entirely. The crate has no option for a limit, so this reader tracks the
//! 512-byte block structure itself (header, data rounded up to a block; PAX `size` overrides;
//! GNU sparse extension blocks) and fails the stream with `InvalidData` when a metadata entry
//! is over [`MAX_METADATA_ENTRY`]. Entry data itself is streamed and never limited here.

use std::io::{self, Read};

/// The largest PAX header or GNU long name/link accepted (real ones are a few hundred bytes;
/// long xattr values stay far below this).
pub const MAX_METADATA_ENTRY: u64 = 1 << 20;

const BLOCK: usize = 512;

enum State {
    /// Collecting a header block.
    Header,
    /// Passing `left` data bytes (plus padding) of an ordinary entry.
    Data { left: u64 },
    /// Collecting a PAX header's records to learn a `size` override.
    Pax { left: u64, padding: u64 },
    /// GNU sparse extension blocks follow the header.
    SparseExt,
}

/// See the module documentation.
pub struct TarGuard<R> {
    inner: R,
    state: State,
    block: Vec<u8>,
    pax: Vec<u8>,
    /// A `size` from the last PAX header, for the next entry.
    size_override: Option<u64>,
    /// Data size of the entry whose sparse extension blocks are being read.
    pending: u64,
}

impl<R: Read> TarGuard<R> {
    /// Guards `inner`.
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            state: State::Header,
            block: Vec::with_capacity(BLOCK),
            pax: Vec::new(),
            size_override: None,
            pending: 0,
        }
    }
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// `n` rounded up to whole blocks; a size no stream can hold (a base-256 field near
/// `u64::MAX`) saturates, and the `tar` crate then fails on the short stream.
fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// A numeric header field: octal text, or base-256 when the high bit is set.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as u64)?;
        }
        return Some(v);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let t = text.trim();
    if t.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(t, 8).ok()
}

/// The `size` record of PAX data, if any.
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .filter_map(|l| l.split_once(' ').map(|(_, kv)| kv))
        .filter_map(|kv| kv.split_once('='))
        .rfind(|(k, _)| *k == "size")
        .and_then(|(_, v)| v.trim().parse().ok())
}

impl<R: Read> TarGuard<R> {
    /// Advances the header walk over `bytes` (which the caller passes on unchanged).
    fn track(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Data { left } => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
                State::Pax { left, padding } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    self.pax.extend_from_slice(&bytes[..n]);
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.size_override = pax_size(&self.pax).or(self.size_override);
                        self.pax.clear();
                        self.state = if *padding > 0 {
                            State::Data { left: *padding }
                        } else {
                            State::Header
                        };
                    }
                }
                State::Header | State::SparseExt => {
                    let n = (BLOCK - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if self.block.len() == BLOCK {
                        self.block_done()?;
                        self.block.clear();
                    }
                }
            }
        }
        Ok(())
    }

    fn block_done(&mut self) -> io::Result<()> {
        let h = &self.block;
        if matches!(self.state, State::SparseExt) {
            if h[504] == 0 {
                self.state = data_state(self.pending);
            }
            return Ok(());
        }
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive blocks
        }
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = number(&h[124..136])
            .ok_or_else(|| refused(format!("tar header of {name:?} has a malformed size")))?;
        let kind = h[156];
        match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if size > MAX_METADATA_ENTRY {
                    let what = match kind {
                        b'L' => "GNU long name",
                        b'K' => "GNU long link",
                        _ => "PAX extended header",
                    };
                    return Err(refused(format!(
                        "a {what} of {size} bytes is refused (at most {MAX_METADATA_ENTRY})"
                    )));
                }
                self.state = if kind == b'x' {
                    State::Pax {
                        left: size,
                        padding: padded(size) - size,
                    }
                } else {
                    data_state(size)
                };
            }
            _ => {
                // Like the `tar` crate, every entry type carries `size` bytes of data.
                let size = self.size_override.take().unwrap_or(size);
                if kind == b'S' && h[482] != 0 {
                    self.pending = size;
                    self.state = State::SparseExt;
                } else {
                    self.state = data_state(size);
                }
            }
        }
        Ok(())
    }
}

fn data_state(size: u64) -> State {
    if size == 0 {
        State::Header
    } else {
        State::Data { left: padded(size) }
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.track(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(pax_value_len: usize) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        let mut h = ::tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_entry_type(::tar::EntryType::Regular);
        h.set_cksum();
        let value = "v".repeat(pax_value_len);
        b.append_pax_extensions([("rbuild.test", value.as_bytes())])
            .unwrap();
        b.append_data(&mut h, "a.txt", &b"hello"[..]).unwrap();
        let mut h2 = ::tar::Header::new_gnu();
        h2.set_size(3);
        h2.set_entry_type(::tar::EntryType::Regular);
        h2.set_cksum();
        b.append_data(&mut h2, "b.txt", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn entries(data: &[u8]) -> io::Result<Vec<String>> {
        let mut a = ::tar::Archive::new(TarGuard::new(data));
        let mut out = Vec::new();
        for e in a.entries()? {
            let mut e = e?;
            let mut s = String::new();
            e.read_to_string(&mut s)?;
            out.push(format!("{}={s}", e.path()?.display()));
        }
        Ok(out)
    }

    #[test]
    fn ordinary_archives_pass_unchanged() {
        assert_eq!(
            entries(&archive(100)).unwrap(),
            ["a.txt=hello", "b.txt=abc"]
        );
    }

    #[test]
    fn an_oversized_pax_header_is_refused_before_it_is_buffered() {
        let e = entries(&archive(2 << 20)).unwrap_err();
        assert!(e.to_string().contains("PAX extended header"), "{e}");
    }

    #[test]
    fn a_pax_size_override_keeps_the_walk_in_step() {
        // The ustar header says 0 bytes; the PAX record says 600, and 600 follow.
        let mut b = ::tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"600"[..])]).unwrap();
        let mut h = ::tar::Header::new_ustar();
        h.set_size(0);
        h.set_entry_type(::tar::EntryType::Regular);
        h.set_path("big").unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        b.get_mut().extend(vec![0x41; 600]);
        b.get_mut().extend(vec![0; 1024 - 600]);
        b.append_pax_extensions([("rbuild.x", &vec![b'y'; 2 << 20][..])])
            .unwrap();
        let data = b.into_inner().unwrap();
        let mut guard = TarGuard::new(&data[..]);
        let e = io::copy(&mut guard, &mut io::sink()).unwrap_err();
        assert!(e.to_string().contains("PAX extended header of"), "{e}");
    }

    #[test]
    fn a_size_near_u64_max_fails_the_stream_without_a_panic() {
        // Found by the layer_tar fuzz target: a base-256 size field of 2^64 - 1.
        let mut h = ::tar::Header::new_gnu();
        h.set_path("big").unwrap();
        h.set_entry_type(::tar::EntryType::Regular);
        let mut size = [0xff; 12];
        size[..4].copy_from_slice(&[0x80, 0, 0, 0]);
        h.as_gnu_mut().unwrap().size = size;
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend(vec![0u8; 2048]);
        assert!(entries(&data).is_err());
    }
}
