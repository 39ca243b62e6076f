//! The local cache index: step key → the layer the step produced (or none), with the time
//! it was made for the image history. One small file per key under `<store>/cache/keys`,
//! written atomically, so concurrent builds never see a half record and need no lock; a
//! record's file mtime is its last use (for `prune --filter until=` and `--keep-storage`).
//! The last inputs of each step are kept under `<store>/cache/steps` to explain misses.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::key::StepInputs;
use crate::content::{io_err, write_atomic, Descriptor, Store, StoreError};
use crate::reference::Digest;

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The layer, or `None` for a step that changed no files.
    pub layer: Option<Descriptor>,
    /// The layer's diff_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
    /// When the step ran (seconds since the epoch), reused as its history time.
    pub created: u64,
    /// The instruction, for listings.
    #[serde(default)]
    pub step: String,
    /// Directories a WORKDIR created (path, mode, uid, gid), so a hit leaves the stage as
    /// the run did without reading the layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<(String, u32, u64, u64)>,
}

/// The cache index of a store.
#[derive(Debug, Clone)]
pub struct Index {
    keys: PathBuf,
    steps: PathBuf,
}

impl Index {
    /// The index inside `store`.
    pub fn open(store: &Store) -> Index {
        Index {
            keys: store.root().join("cache/keys"),
            steps: store.root().join("cache/steps"),
        }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.keys.join(key.hex())
    }

    /// The record for a key, if any (a corrupt record reads as absent).
    pub fn get(&self, key: &Digest) -> Option<Record> {
        let data = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Marks a record used now.
    pub fn touch(&self, key: &Digest) {
        if let Ok(f) = std::fs::File::options().write(true).open(self.path(key)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Stores a record.
    pub fn put(&self, key: &Digest, record: &Record) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.keys).map_err(io_err("create directory", &self.keys))?;
        write_atomic(
            &self.path(key),
            &serde_json::to_vec(record).expect("serialisable"),
        )
    }

    /// Every record with its key and last use.
    pub fn list(&self) -> Vec<(Digest, Record, std::time::SystemTime)> {
        let Ok(rd) = std::fs::read_dir(&self.keys) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = Digest::parse(&format!("sha256:{name}")).ok()?;
                let used = e.metadata().ok()?.modified().ok()?;
                let rec = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((key, rec, used))
            })
            .collect()
    }

    /// Removes a record.
    pub fn remove(&self, key: &Digest) {
        let _ = std::fs::remove_file(self.path(key));
    }

    /// The inputs of the last build of a step (`slot` names the step across builds).
    pub fn last_inputs(&self, slot: &Digest) -> Option<StepInputs> {
        // Parsed from a buffered reader: the file is tens of MB on 200,000 files, and
        // holding its bytes beside the parsed copy cost 23 MB of peak memory.
        let f = std::fs::File::open(self.steps.join(slot.hex())).ok()?;
        serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, f)).ok()
    }

    /// The layer the last build of a step wrote (to copy unchanged gzip members from).
    pub fn last_layer(&self, slot: &Digest) -> Option<Digest> {
        let t = std::fs::read_to_string(self.steps.join(format!("{}.layer", slot.hex()))).ok()?;
        Digest::parse(t.trim()).ok()
    }

    /// Remembers the layer a step wrote (best effort).
    pub fn remember_layer(&self, slot: &Digest, layer: &str) {
        if std::fs::create_dir_all(&self.steps).is_ok() {
            let _ = write_atomic(
                &self.steps.join(format!("{}.layer", slot.hex())),
                layer.as_bytes(),
            );
        }
    }

    /// Where a layer's gzip member map is kept.
    pub fn members_path(&self, layer: &Digest) -> PathBuf {
        self.keys.with_file_name("members").join(layer.hex())
    }

    /// Remembers the inputs of a step's build (best effort: only used to explain misses).
    pub fn remember_inputs(&self, slot: &Digest, inputs: &StepInputs) {
        if std::fs::create_dir_all(&self.steps).is_err() {
            return;
        }
        // Streamed to a temp file, then renamed: a COPY of 200,000 files has tens of MB of
        // inputs, which should not be held twice.
        let dest = self.steps.join(slot.hex());
        let tmp = self
            .steps
            .join(format!(".{}.{}.tmp", slot.hex(), std::process::id()));
        let write = || -> std::io::Result<()> {
            let f = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
            serde_json::to_writer(&mut w, inputs)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &dest)
        };
        if write().is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
