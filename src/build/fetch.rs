//! `ADD <url>`: downloads into the store's scratch area while hashing, checks `--checksum`,
//! and names the file after the URL's last path segment, as Docker does (mode 0600 unless
//! `--chmod`, mtime from `Last-Modified`). Archives from URLs are never unpacked.

use std::io::{Read, Write};

use sha2::{Digest as _, Sha256};

use crate::content::{Store, TempDir};
use crate::layer::tar::{Entry, Kind};

/// A downloaded file, ready to become a layer entry.
pub struct Fetched {
    /// Where it is on disk (inside `dir`).
    pub entry: Entry,
    /// Keeps the file alive until the layer is written.
    pub dir: TempDir,
}

/// Whether an ADD source is a URL rbuild downloads.
pub fn is_url(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://")
}

/// The file name Docker derives from a URL (`None` when the path has none).
pub fn url_file_name(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let last = u.path_segments()?.next_back()?.to_string();
    (!last.is_empty()).then_some(last)
}

/// Downloads `url`; `dest_path` is the entry's path in the image.
pub fn fetch(
    store: &Store,
    url: &str,
    checksum: Option<&str>,
    dest_path: String,
    mode: u32,
    owner: (u64, u64),
) -> Result<Fetched, String> {
    let expected = match checksum {
        None => None,
        Some(c) => match c.split_once(':') {
            Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(hex.to_ascii_lowercase())
            }
            _ => return Err(format!("--checksum={c:?} is not a sha256 digest (write `--checksum=sha256:<64 hex digits>`)")),
        },
    };
    let client = crate::net::client(&[]).map_err(|e| format!("setting up HTTP: {e}"))?;
    let mut resp = crate::net::get(&client, url)?;
    let mtime = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let dir = store.temp_dir("fetch").map_err(|e| e.to_string())?;
    let path = dir.path().join("download");
    let mut file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = resp
            .read(&mut buf)
            .map_err(|e| format!("downloading {url}: {e}"))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        size += n as u64;
    }
    let got = hex::encode(hash.finalize());
    if let Some(want) = expected {
        if want != got {
            return Err(format!(
                "checksum of {url} is sha256:{got}, but --checksum says sha256:{want}; nothing was added"
            ));
        }
    }
    Ok(Fetched {
        entry: Entry {
            path: dest_path,
            kind: Kind::File(path),
            mode,
            uid: owner.0,
            gid: owner.1,
            mtime,
            size,
            xattrs: vec![],
        },
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(
            url_file_name("https://example.com/a/b/tool.tar.gz?x=1").as_deref(),
            Some("tool.tar.gz")
        );
        assert_eq!(url_file_name("https://example.com/"), None);
        assert!(is_url("http://h/x") && !is_url("git@github.com:a/b.git"));
    }
}
