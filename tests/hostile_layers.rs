//! Hostile base layers — escaping names, links and whiteouts that point at the host, giant
//! headers, corrupt or truncated compression, entries bigger than their data — are refused
//! with an error naming the image, the layer and the entry, or contained inside the root.
//! Nothing is ever written outside. Each case goes through both ways layers are applied:
//! `COPY --from` (flattened) and `FROM` + `RUN` (per-layer snapshots).

use std::fs;
use std::path::Path;

use crate::support::layout::{gzip_layer, layer_tar, write_layout_raw, Item, RawLayer};
use crate::support::{write, Workspace};

enum Expect {
    /// The build fails; stderr names the layer and contains these words.
    Refused(&'static [&'static str]),
    /// Contained inside the root, or refused naming the layer (the RUN variant may also fail
    /// for want of a shell).
    Contained,
}

struct Case {
    name: &'static str,
    layers: Vec<RawLayer>,
    expect: Expect,
}

fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

fn header(kind: tar::EntryType, name: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    h
}

fn cases(host: &Path) -> Vec<Case> {
    let host_dir: &'static str = Box::leak(host.display().to_string().into_boxed_str());
    let victim: &'static str = Box::leak(format!("{host_dir}/victim").into_boxed_str());
    let plain = |items: &[Item<'_>]| gzip_layer(&layer_tar(items));
    let ok_file = Item::File("ok", b"1", 0o644, 0, 0);

    let mut corrupt = plain(&[ok_file, Item::File("big", &[7u8; 200_000], 0o644, 0, 0)]);
    let mid = corrupt.blob.len() / 2;
    corrupt.blob[mid] ^= 0xff;
    let mut truncated = plain(&[Item::File("big", &[9u8; 100_000], 0o644, 0, 0)]);
    truncated.blob.truncate(truncated.blob.len() / 2);
    let zstd_tar = layer_tar(&[Item::File("z", &[3u8; 100_000], 0o644, 0, 0)]);
    let mut zstd_blob = zstd::encode_all(&zstd_tar[..], 3).unwrap();
    zstd_blob.truncate(zstd_blob.len() - 8);
    let zstd_truncated = RawLayer {
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd",
        blob: zstd_blob,
        diff_id: gzip_layer(&zstd_tar).diff_id,
    };

    // A PAX header declaring 4 GiB (only a few bytes follow): refused before buffering.
    let giant = tar_with(|b| {
        let h = header(tar::EntryType::XHeader, "PaxHeaders/x", 4 << 30);
        b.append(&h, &b"20 path=aaaaaaaaaaa\n"[..]).unwrap_or(());
    });
    // An entry declaring 8 GiB of data with 10 bytes behind it.
    let bomb = tar_with(|b| {
        let h = header(tar::EntryType::Regular, "bomb", 8 << 30);
        let _ = b.append(&h, &b"0123456789"[..]);
    });
    let raw = |t: Vec<u8>| {
        let mut l = gzip_layer(&t);
        l.diff_id = format!("sha256:{}", "0".repeat(64));
        l
    };

    vec![
        Case {
            name: "a name with ..",
            layers: vec![plain(&[Item::File(
                "../../escaped-by-name",
                b"x",
                0o644,
                0,
                0,
            )])],
            expect: Expect::Refused(&["../../escaped-by-name", "refused"]),
        },
        Case {
            name: "an absolute name",
            layers: vec![plain(&[Item::File(victim, b"x", 0o644, 0, 0)])],
            expect: Expect::Refused(&["absolute", "refused"]),
        },
        Case {
            name: "a hard link with ..",
            layers: vec![plain(&[Item::Hardlink("hl", "../../../etc/passwd")])],
            expect: Expect::Refused(&["hl", "refused"]),
        },
        Case {
            name: "a symlink to a host directory, then a file through it",
            layers: vec![plain(&[
                Item::Symlink("evil", host_dir),
                Item::File("evil/planted", b"x", 0o644, 0, 0),
            ])],
            expect: Expect::Contained,
        },
        Case {
            name: "a symlink to .., then a file through it",
            layers: vec![plain(&[
                Item::Symlink("up", "../../../../../../.."),
                Item::File(
                    Box::leak(format!("up{host_dir}/planted-up").into_boxed_str()),
                    b"x",
                    0o644,
                    0,
                    0,
                ),
            ])],
            expect: Expect::Contained,
        },
        Case {
            name: "a hard link to an absolute host file",
            layers: vec![plain(&[Item::Hardlink("hl", victim)])],
            expect: Expect::Refused(&["hl"]),
        },
        Case {
            name: "a whiteout through a symlink to the host",
            layers: vec![
                plain(&[Item::Symlink("evil", host_dir)]),
                plain(&[Item::File("evil/.wh.victim", b"", 0o644, 0, 0)]),
            ],
            expect: Expect::Contained,
        },
        Case {
            name: "a giant PAX header",
            layers: vec![raw(giant)],
            expect: Expect::Refused(&["PAX extended header", "refused"]),
        },
        Case {
            name: "an entry larger than its data (tar bomb)",
            layers: vec![raw(bomb)],
            expect: Expect::Refused(&["not a readable tar stream"]),
        },
        Case {
            name: "corrupt gzip",
            layers: vec![corrupt],
            expect: Expect::Refused(&["not a readable tar stream"]),
        },
        Case {
            name: "truncated gzip",
            layers: vec![truncated],
            expect: Expect::Refused(&["not a readable tar stream"]),
        },
        Case {
            name: "truncated zstd",
            layers: vec![zstd_truncated],
            expect: Expect::Refused(&["not a readable tar stream"]),
        },
    ]
}

/// Every file under `dir`, with its content.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            fs::read(e.path()).unwrap_or_default(),
        ));
    }
    out.sort();
    out
}

#[test]
fn hostile_layers_are_refused_or_contained_and_never_touch_the_host() {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("victim"), b"host data").unwrap();
    let before = snapshot(host.path());
    let mut refused = 0;
    let mut contained = 0;
    for case in cases(host.path()) {
        for dockerfile in [
            "FROM scratch\nCOPY --from=base / /x/\n",
            "FROM base\nRUN true\n",
        ] {
            let ws = Workspace::new();
            let base = ws.tmp.path().join("base");
            let digests = write_layout_raw(&base, "v1", &case.layers);
            write(&ws.ctx(), "Dockerfile", dockerfile);
            let bc = format!("base=oci-layout://{}:v1", base.display());
            let o = ws.rbuild(&["--build-context", &bc, "-q"], &[]);
            let err = String::from_utf8_lossy(&o.stderr);
            let what = format!("{} via {dockerfile:?}", case.name);
            assert!(!err.contains("panicked"), "{what}: {err}");
            match case.expect {
                Expect::Refused(words) => {
                    assert!(!o.status.success(), "{what}: accepted");
                    assert!(
                        digests.iter().any(|d| err.contains(d.as_str())),
                        "{what}: the layer digest is not named: {err}"
                    );
                    assert!(
                        err.contains("base"),
                        "{what}: the image is not named: {err}"
                    );
                    for w in words {
                        assert!(err.contains(w), "{what}: {w:?} missing: {err}");
                    }
                    refused += 1;
                }
                Expect::Contained => {
                    let named = digests.iter().any(|d| err.contains(d.as_str()));
                    if named {
                        refused += 1;
                    } else {
                        assert!(
                            o.status.success() || dockerfile.contains("RUN"),
                            "{what}: failed without naming the layer: {err}"
                        );
                        contained += 1;
                    }
                }
            }
            assert_eq!(
                snapshot(host.path()),
                before,
                "{what}: the host directory changed"
            );
            let parent = ws.tmp.path().parent().unwrap();
            assert!(!parent.join("escaped-by-name").exists(), "{what}");
        }
    }
    eprintln!("hostile layers: {refused} refused, {contained} contained");
}
