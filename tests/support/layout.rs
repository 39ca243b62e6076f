//! OCI image layouts made by hand, for bases the tests need: whiteouts across layers, owners,
//! hostile entries. Written with the `tar` crate's raw headers so names are not sanitised.

use std::fs;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

/// One tar entry of a hand-made layer.
pub enum Item<'a> {
    /// A regular file with mode 0644 (or the given mode) owned by uid/gid.
    File(&'a str, &'a [u8], u32, u32, u32),
    /// A directory (0755, root).
    Dir(&'a str),
    /// A directory with mode, uid and gid.
    DirWith(&'a str, u32, u32, u32),
    /// A symlink.
    Symlink(&'a str, &'a str),
    /// A hard link.
    Hardlink(&'a str, &'a str),
}

/// A regular root-owned file, mode 0644.
pub fn file<'a>(path: &'a str, data: &'a [u8]) -> Item<'a> {
    Item::File(path, data, 0o644, 0, 0)
}

/// The bytes of an uncompressed layer tar holding `items` in order.
pub fn layer_tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for it in items {
        let mut h = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match it {
            Item::File(p, d, mode, uid, gid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid as u64);
                h.set_gid(*gid as u64);
                (p, d)
            }
            Item::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, b"")
            }
            Item::DirWith(p, mode, uid, gid) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*uid as u64);
                h.set_gid(*gid as u64);
                (p, b"")
            }
            Item::Symlink(p, t) | Item::Hardlink(p, t) => {
                h.set_entry_type(if matches!(it, Item::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_link_name(t).unwrap();
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn put(dir: &Path, data: &[u8]) -> (String, usize) {
    let d = hex::encode(Sha256::digest(data));
    fs::write(dir.join("blobs/sha256").join(&d), data).unwrap();
    (format!("sha256:{d}"), data.len())
}

/// A layer blob exactly as stored: media type, bytes, and the diff_id its config declares.
pub struct RawLayer {
    pub media_type: &'static str,
    pub blob: Vec<u8>,
    pub diff_id: String,
}

/// `tar` gzip-compressed, as a layer.
pub fn gzip_layer(tar: &[u8]) -> RawLayer {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gz, tar).unwrap();
    RawLayer {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        blob: gz.finish().unwrap(),
        diff_id: format!("sha256:{}", hex::encode(Sha256::digest(tar))),
    }
}

/// Writes an OCI layout at `dir` whose image has exactly these layer blobs, tagged `tag`.
/// Returns the layers' digests.
pub fn write_layout_raw(dir: &Path, tag: &str, layers: &[RawLayer]) -> Vec<String> {
    let (md, ms) = write_image_raw(dir, "amd64", layers);
    write_index_json(
        dir,
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
               "annotations": {"org.opencontainers.image.ref.name": tag}}),
    );
    layers
        .iter()
        .map(|l| format!("sha256:{}", hex::encode(Sha256::digest(&l.blob))))
        .collect()
}

/// Writes the blobs of one image (gzip layers, config for `arch`); returns the manifest's
/// digest and size.
fn write_image(dir: &Path, arch: &str, layers: &[Vec<Item<'_>>]) -> (String, usize) {
    let raw: Vec<RawLayer> = layers.iter().map(|l| gzip_layer(&layer_tar(l))).collect();
    write_image_raw(dir, arch, &raw)
}

fn write_image_raw(dir: &Path, arch: &str, layers: &[RawLayer]) -> (String, usize) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(l.diff_id.clone());
        let (d, n) = put(dir, &l.blob);
        descs.push(json!({"mediaType": l.media_type, "digest": d, "size": n}));
    }
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
    });
    let (cd, cs) = put(dir, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    });
    put(dir, manifest.to_string().as_bytes())
}

fn write_index_json(dir: &Path, entry: serde_json::Value) {
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Writes an OCI layout at `dir` with one gzip layer per entry of `layers`, tagged `tag`.
/// Returns the manifest digest.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Vec<Item<'_>>]) -> String {
    let (md, ms) = write_image(dir, "amd64", layers);
    write_index_json(
        dir,
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
               "annotations": {"org.opencontainers.image.ref.name": tag}}),
    );
    md
}

/// Writes a multi-platform layout: an image index with one image per architecture, tagged
/// `tag`. Returns the manifest digest per architecture.
pub fn write_multi_arch_layout(
    dir: &Path,
    tag: &str,
    archs: &[(&str, Vec<Item<'_>>)],
) -> Vec<String> {
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for (arch, items) in archs {
        let (md, ms) = write_image(dir, arch, std::slice::from_ref(items));
        entries.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                            "platform": {"os": "linux", "architecture": arch}}));
        digests.push(md);
    }
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let (id, is) = put(dir, index.to_string().as_bytes());
    write_index_json(
        dir,
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": id, "size": is,
               "annotations": {"org.opencontainers.image.ref.name": tag}}),
    );
    digests
}

/// A busybox base (Debian's busybox-static) with the applets the tests use, `/etc/passwd`
/// with `app` (1000), `/tmp` and `/etc/removeme`; tagged `v1`.
pub fn busybox_layout(dir: &Path) {
    let bb = fs::read("/bin/busybox")
        .expect("/bin/busybox is required (apt-get install busybox-static; scripts/test.sh does)");
    let applets = [
        "sh", "echo", "id", "mkdir", "rm", "cat", "ls", "wc", "hostname", "touch", "chmod", "env",
        "ln", "chown", "sleep", "find", "stat", "sort", "xargs", "dd",
    ];
    let mut items = vec![
        Item::Dir("bin"),
        Item::File("bin/busybox", &bb, 0o755, 0, 0),
        Item::Dir("etc"),
        file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        ),
        file("etc/group", b"root:x:0:\napp:x:1000:\n"),
        file("etc/removeme", b"gone soon"),
        Item::DirWith("tmp", 0o1777, 0, 0),
    ];
    for a in applets {
        items.push(Item::Symlink(
            Box::leak(format!("bin/{a}").into_boxed_str()),
            "busybox",
        ));
    }
    write_layout(dir, "v1", &[items]);
}
