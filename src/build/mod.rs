//! Building images from a typed Dockerfile: resolves each stage's base, walks its steps with
//! the scope rules of [`crate::frontend::expand`], writes COPY/ADD/WORKDIR layers straight
//! from the context into the store (tar → gzip → store in one pass), applies metadata
//! instructions to the image config, and commits config and manifest.
//!
//! Every step that writes files (COPY, ADD, RUN, WORKDIR) gets a cache key from its inputs
//! ([`crate::cache::key`]) before it runs; a hit takes the recorded layer without reading
//! or running anything, a miss says why ([`progress::Event::Miss`]).

pub mod base;
pub mod context;
mod copy;
pub mod fetch;
mod owner;
pub mod progress;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use thiserror::Error;

use crate::content::{Descriptor, Store, StoreError};
use crate::frontend::expand::{GlobalScope, Platforms, ScopeError, StageScope};
use crate::frontend::instructions::{Command, Dockerfile, Instruction, Stage, Step};
use crate::image::{self, Empty, HealthConfig, History, ImageConfig, Manifest};
use crate::layer::compress::{Compression, LayerWriter};
use crate::layer::tar::{write_tar, Entry, Kind};
use crate::reference::Reference;
use crate::registry::Client;

use crate::cache::{self, index::Index, key::StepInputs, remote::Imported, stat::FileHasher};
use crate::exec::chroot::Isolation;
use context::{Context, ContextError};
use progress::Event;

/// Build failures; each names the Dockerfile line when there is one.
#[derive(Debug, Error)]
pub enum BuildError {
    /// Variable expansion failed.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// An instruction cannot be carried out.
    #[error("line {line}: {message}")]
    Step {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The context could not be read.
    #[error("line {line}: {source}")]
    Context {
        /// 1-based line.
        line: usize,
        /// The cause.
        #[source]
        source: ContextError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The base image could not be loaded.
    #[error(transparent)]
    Base(#[from] base::BaseError),
    /// An image's layers could not be unpacked.
    #[error("unpacking image {image}: {source}")]
    Unpack {
        /// The image as the Dockerfile names it.
        image: String,
        /// Why.
        #[source]
        source: crate::snapshot::SnapshotError,
    },
    /// `--target` names no stage.
    #[error("target stage {0:?} not found")]
    UnknownTarget(String),
}

impl BuildError {
    fn step(line: usize, message: impl Into<String>, hint: Option<&str>) -> Self {
        BuildError::Step {
            line,
            message: message.into(),
            hint: hint.map(String::from),
        }
    }

    /// The Dockerfile line of the problem, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            BuildError::Scope(e) => Some(e.line),
            BuildError::Step { line, .. } | BuildError::Context { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// A fix, when one is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Step { hint, .. } => hint.clone(),
            BuildError::Context { source: ContextError::NotFound { ignored: true, .. }, .. } => {
                Some("remove the matching pattern from .dockerignore, or add a `!path` exception".into())
            }
            BuildError::Context { source: ContextError::NotFound { .. }, .. } => {
                Some("paths are relative to the build context (the directory given to rbuild)".into())
            }
            BuildError::Context { source: ContextError::Outside { .. }, .. } => {
                Some("COPY can only read inside the context; move the file into it or use a larger context".into())
            }
            BuildError::UnknownTarget(_) => Some("use a stage name from an `AS name` or a stage index".into()),
            BuildError::Base(e) => e.hint(),
            BuildError::Unpack { .. } => Some("the image is corrupt or was made to escape the build; rebuild it from a trusted source or use another image".into()),
            _ => None,
        }
    }
}

/// What to build.
#[derive(Clone)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// `.dockerignore` content.
    pub ignore: Option<String>,
    /// `--build-arg` values.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// Platforms.
    pub platforms: Platforms,
    /// `--label` values.
    pub labels: Vec<(String, String)>,
    /// `SOURCE_DATE_EPOCH`: clamps file mtimes and sets `created`.
    pub epoch: Option<u64>,
    /// Layer compression.
    pub compression: Compression,
    /// `--build-context NAME=oci-layout://...` entries.
    pub named_contexts: BTreeMap<String, String>,
    /// `--secret` contents by id (kept in memory only).
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// The registry client for bases from registries (`None`: registries are not used).
    pub registry: Option<Arc<Client>>,
    /// `--no-cache`: run every step (results are still recorded).
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name or index) whose steps all run.
    pub no_cache_filter: Vec<String>,
    /// `--cache-from` records, consulted after the local index.
    pub cache_from: Vec<Imported>,
    /// Where step events go (`None`: nowhere).
    pub progress: Option<progress::Reporter>,
    /// `--cache-to type=inline`: carry the target's cache records in the image config.
    pub inline_cache: bool,
    /// `--pull`: when registry bases are resolved again.
    pub pull: base::PullPolicy,
    /// `--isolation`: how RUN steps are isolated.
    pub isolation: Isolation,
    /// `--network=none`: RUN steps without their own `--network` get no network.
    pub no_network: bool,
    /// `--add-host`: `/etc/hosts` lines (`IP\tHOST`) for every RUN.
    pub extra_hosts: Vec<String>,
    /// `--ulimit`: resource limits for every RUN.
    pub ulimits: Vec<crate::exec::limits::Ulimit>,
    /// `--shm-size`: bytes of `/dev/shm` in every RUN.
    pub shm_size: Option<u64>,
    /// `--annotation`: annotations on the image manifest.
    pub annotations: BTreeMap<String, String>,
    /// `--ssh ID=SOCKET`: agent sockets for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
}

/// A built image: its manifest descriptor plus what produced it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest.
    pub manifest: Descriptor,
    /// The config.
    pub config: ImageConfig,
    /// Config descriptor.
    pub config_desc: Descriptor,
    /// Layer descriptors.
    pub layers: Vec<Descriptor>,
    /// Layers still in a registry (not fetched, as nothing needed them): digest → where.
    pub sources: BTreeMap<String, crate::reference::Reference>,
    /// Warnings for the user (unused build args, ...).
    pub warnings: Vec<String>,
    /// Cache records of the target stage's steps (`--cache-to mode=min`).
    pub cache_min: Vec<(crate::reference::Digest, cache::index::Record)>,
    /// Cache records of every stage built (`mode=max`).
    pub cache_max: Vec<(crate::reference::Digest, cache::index::Record)>,
    /// Steps run and steps taken from the cache.
    pub counts: (usize, usize),
}

/// The state of a stage while it is built.
#[derive(Debug, Clone)]
struct StageState {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    /// Files this build added (for `COPY --from`), path → entry.
    files: BTreeMap<String, Entry>,
    /// How many of `layers` come from a base image (unpacked only when a step reads them).
    base_layers: usize,
    /// The base image as the Dockerfile names it (for messages).
    base_name: String,
    /// The base's identity for cache keys (manifest digest, or `scratch`).
    base_id: String,
    /// Layers still in a registry (base layers, cache hits), by digest.
    remote: BTreeMap<String, (Arc<Client>, Reference)>,
    /// The cache key of the last step.
    key: String,
    /// Entries of the layers this build wrote from COPY/ADD, by diff_id: a RUN that needs
    /// their snapshot copies the files instead of decompressing the layer.
    fresh: BTreeMap<String, Arc<Vec<Entry>>>,
    /// The cache records of this stage's steps (and those of the stage it started from).
    steps: Vec<(crate::reference::Digest, cache::index::Record)>,
    /// Scratch dirs (unpacked archives) that entries of `files` point into.
    keep: Vec<std::sync::Arc<crate::content::TempDir>>,
}

/// An image's layers unpacked into a shared snapshot, fetching first what a registry still
/// holds.
fn unpack_image(
    store: &Store,
    layers: &[Descriptor],
    diff_ids: &[String],
    remote: &BTreeMap<String, (Arc<Client>, Reference)>,
    name: &str,
) -> Result<PathBuf, BuildError> {
    fetch_remote(store, layers, remote)?;
    crate::snapshot::flat_rootfs(store, layers, diff_ids).map_err(|source| BuildError::Unpack {
        image: name.to_string(),
        source,
    })
}

/// Fetches the layers that are still in registries.
fn fetch_remote(
    store: &Store,
    layers: &[Descriptor],
    remote: &BTreeMap<String, (Arc<Client>, Reference)>,
) -> Result<(), BuildError> {
    type Source<'a> = (&'a (Arc<Client>, Reference), Vec<Descriptor>);
    let mut by_source: BTreeMap<String, Source<'_>> = BTreeMap::new();
    for l in layers {
        if let Some(src) = remote.get(&l.digest) {
            by_source
                .entry(src.1.to_string())
                .or_insert_with(|| (src, Vec::new()))
                .1
                .push(l.clone());
        }
    }
    for ((client, r), mut list) in by_source.into_values() {
        list.retain(|l| crate::reference::Digest::parse(&l.digest).is_ok_and(|d| !store.has(&d)));
        if list.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        crate::registry::pull::fetch_blobs(client, r, &list, store)
            .map_err(|e| BuildError::Base(base::BaseError::Registry(e)))?;
        if let Some(report) = PULL_REPORTER.lock().expect("reporter lock").as_ref() {
            report(&Event::Pulled {
                from: format!("{}/{}", r.domain, r.path),
                layers: list.len(),
                bytes: list.iter().map(|l| l.size).sum(),
                secs: started.elapsed().as_secs_f64(),
            });
        }
    }
    Ok(())
}

/// Where layer downloads during a build are reported (set for the duration of [`build`]).
static PULL_REPORTER: std::sync::Mutex<Option<progress::Reporter>> = std::sync::Mutex::new(None);

impl StageState {
    /// The base image's layers unpacked (shared, cached by chain ID), if there are any.
    fn base_root(&self, store: &Store) -> Result<Option<PathBuf>, BuildError> {
        let n = self.base_layers;
        if n == 0 {
            return Ok(None);
        }
        unpack_image(
            store,
            &self.layers[..n],
            &self.config.rootfs.diff_ids[..n],
            &self.remote,
            &self.base_name,
        )
        .map(Some)
    }

    /// What `path` is in the stage's filesystem (a real directory comes with its metadata).
    fn node(&self, store: &Store, path: &str) -> Result<crate::snapshot::Node, BuildError> {
        use crate::snapshot::Node;
        if let Some(e) = self.files.get(path) {
            return Ok(match e.kind {
                Kind::Dir => Node::Dir {
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    mtime: e.mtime,
                },
                _ => Node::Other,
            });
        }
        match self.base_root(store)? {
            Some(root) => Ok(crate::snapshot::node_in_root(&root, path)),
            None => Ok(Node::Missing),
        }
    }

    /// The directories a step writes on its way to `dirs`' last one: missing ones as given,
    /// existing real directories with their own metadata (so an overlay of the layer does not
    /// hide, say, /tmp's mode), symlinked ones left out (Docker follows them). Empty when
    /// none is missing and `only_if_missing`.
    fn parent_entries(
        &self,
        store: &Store,
        dirs: Vec<Entry>,
        only_if_missing: bool,
    ) -> Result<Vec<Entry>, BuildError> {
        use crate::snapshot::Node;
        let mut out = Vec::new();
        let mut any_missing = false;
        for mut d in dirs {
            match self.node(store, &d.path)? {
                Node::Missing => {
                    any_missing = true;
                    out.push(d);
                }
                Node::Dir {
                    mode,
                    uid,
                    gid,
                    mtime,
                } => {
                    (d.mode, d.uid, d.gid, d.mtime) = (mode, uid, gid, mtime);
                    out.push(d);
                }
                Node::Other => {}
            }
        }
        if only_if_missing && !any_missing {
            out.clear();
        }
        Ok(out)
    }

    /// A file of the stage's filesystem: written by this build, or from the base image.
    fn read_file(&self, store: &Store, path: &str) -> Result<Option<Vec<u8>>, BuildError> {
        if let Some(e) = self.files.get(path) {
            return Ok(match &e.kind {
                Kind::File(p) => std::fs::read(p).ok(),
                Kind::Bytes(b) => Some(b.clone()),
                _ => None,
            });
        }
        match self.base_root(store)? {
            Some(root) => Ok(crate::snapshot::read_in_root(&root, path)),
            None => Ok(None),
        }
    }
}

/// Per-build cache state shared by the stage threads.
struct Session<'a> {
    index: Index,
    hasher: Arc<FileHasher>,
    opts: &'a BuildOptions,
    /// Names a step across builds (context + stage + instruction text) to explain misses.
    project: String,
    next_id: AtomicUsize,
    misses: AtomicUsize,
    hits: AtomicUsize,
}

impl Session<'_> {
    fn report(&self, e: Event) {
        if let Some(r) = &self.opts.progress {
            r(&e);
        }
    }

    fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn missed(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    fn slot(&self, stage: &str, step: &Step) -> crate::reference::Digest {
        StepInputs {
            parent: self.project.clone(),
            instruction: format!("{stage}\n{}", step.original.trim()),
            ..Default::default()
        }
        .key()
    }
}

/// Builds the target stage of `df` into `store`.
pub fn build(df: &Dockerfile, store: &Store, opts: &BuildOptions) -> Result<Built, BuildError> {
    let global = GlobalScope::new(df, &opts.build_args, &opts.platforms)?;
    let target = match &opts.target {
        Some(t) => {
            df.stage(t)
                .ok_or_else(|| BuildError::UnknownTarget(t.clone()))?
                .index
        }
        None => df.stages.len() - 1,
    };
    let needed = needed_stages(df, target);
    let ctx = Context::new(opts.context.clone(), opts.ignore.as_deref())
        .map_err(|source| BuildError::Context { line: 1, source })?
        .with_store(store);
    let created = opts.epoch.unwrap_or_else(now_secs);
    let session = Session {
        index: Index::open(store),
        hasher: ctx.hasher.clone(),
        opts,
        project: ctx
            .root
            .canonicalize()
            .unwrap_or_else(|_| ctx.root.clone())
            .to_string_lossy()
            .into_owned(),
        next_id: AtomicUsize::new(0),
        misses: AtomicUsize::new(0),
        hits: AtomicUsize::new(0),
    };
    let has_run = df.stages.iter().any(|s| {
        s.steps
            .iter()
            .any(|st| matches!(st.instruction, Instruction::Run(_)))
    });
    if has_run && opts.isolation == Isolation::Auto && opts.isolation.resolve() == Isolation::Chroot
    {
        session.report(Event::Note {
            text: "RUN isolation: chroot (no CAP_SYS_ADMIN here, so no namespaces or overlay; every RUN unpacks the stage and compares the tree before and after)".into(),
        });
    }
    *PULL_REPORTER.lock().expect("reporter lock") = opts.progress.clone();
    let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
    let warnings: Vec<String> = global
        .unused_build_args(df)
        .into_iter()
        .map(|a| format!("build argument {a:?} is not declared by any ARG in the Dockerfile"))
        .collect();
    // Stages whose dependencies are built run together, each on its own thread, at most
    // MAX_PARALLEL_STAGES at once (a Dockerfile of thousands of stages is not thousands of
    // threads).
    const MAX_PARALLEL_STAGES: usize = 8;
    let mut pending = needed;
    while !pending.is_empty() {
        let ready: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|i| stage_deps(df, *i).iter().all(|d| done.contains_key(d)))
            .take(MAX_PARALLEL_STAGES)
            .collect();
        if ready.is_empty() {
            return Err(BuildError::step(
                1,
                "stages depend on each other in a cycle",
                None,
            ));
        }
        pending.retain(|i| !ready.contains(i));
        let run = |i: usize| {
            build_stage(
                df,
                &df.stages[i],
                &global,
                &ctx,
                store,
                opts,
                &done,
                created,
                &session,
            )
        };
        let results: Vec<(usize, Result<StageState, BuildError>)> = if ready.len() == 1 {
            vec![(ready[0], run(ready[0]))]
        } else {
            std::thread::scope(|s| {
                // The main thread's stack size, not a spawned thread's 2 MiB: a stage runs
                // the same code either way.
                let handles: Vec<_> = ready
                    .iter()
                    .map(|&i| {
                        let h = std::thread::Builder::new()
                            .name(format!("stage {i}"))
                            .stack_size(8 << 20)
                            .spawn_scoped(s, move || run(i));
                        (i, h)
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(i, h)| match h {
                        Ok(h) => (i, h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                        // Out of threads: build this stage here instead.
                        Err(_) => (i, run(i)),
                    })
                    .collect()
            })
        };
        for (i, r) in results {
            done.insert(i, r?);
        }
    }
    let cache_max: Vec<_> = {
        let mut seen = BTreeSet::new();
        done.values()
            .flat_map(|s| s.steps.iter())
            .filter(|(k, _)| seen.insert(k.clone()))
            .cloned()
            .collect()
    };
    let mut state = done.remove(&target).expect("target built");
    for (k, v) in &opts.labels {
        state.config.config.labels.insert(k.clone(), v.clone());
    }
    // An image whose every step came from the cache keeps the time of the newest of them,
    // so it is the same image as before, whatever other stages ran again.
    let all_cached =
        !state.steps.is_empty() && state.steps.iter().all(|(_, r)| r.created != created);
    let when = match opts.epoch {
        Some(e) => e,
        None if all_cached => state
            .steps
            .iter()
            .map(|(_, r)| r.created)
            .max()
            .unwrap_or(created),
        None => created,
    };
    for h in &mut state.config.history {
        if h.created.is_none() {
            h.created = Some(image::rfc3339(when));
        }
    }
    state.config.created = Some(image::rfc3339(when));
    if opts.inline_cache {
        state.config.cache = Some(cache::remote::records_value(&state.steps));
    }
    *PULL_REPORTER.lock().expect("reporter lock") = None;
    let counts = (
        session.misses.load(Ordering::Relaxed),
        session.hits.load(Ordering::Relaxed),
    );
    session.hasher.save().map_err(BuildError::Store)?;
    let config_bytes = image::to_json(&state.config);
    let config_desc = store.put(image::CONFIG_V1, &config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(image::MANIFEST_V1.into()),
        config: config_desc.clone(),
        layers: state.layers.clone(),
        annotations: opts.annotations.clone(),
    };
    let manifest_desc = store.put(image::MANIFEST_V1, &image::to_json(&manifest))?;
    let sources = state
        .layers
        .iter()
        .filter(|l| crate::reference::Digest::parse(&l.digest).is_ok_and(|d| !store.has(&d)))
        .filter_map(|l| {
            state
                .remote
                .get(&l.digest)
                .map(|(_, r)| (l.digest.clone(), r.clone()))
        })
        .collect();
    Ok(Built {
        sources,
        cache_min: state.steps.clone(),
        cache_max,
        counts,
        manifest: manifest_desc,
        config: state.config,
        config_desc,
        layers: state.layers,
        warnings,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A base image's ONBUILD triggers as steps, reported at the stage's FROM line.
fn onbuild_steps(triggers: &[String], base: &str, stage: &Stage) -> Result<Vec<Step>, BuildError> {
    let mut steps = Vec::new();
    for t in triggers {
        let bad = |why: String| {
            BuildError::step(
                stage.span.start,
                format!("ONBUILD trigger {t:?} of base image {base}: {why}"),
                Some("the base image carries an invalid trigger; rebuild it or use another base"),
            )
        };
        let df =
            Dockerfile::parse(&format!("FROM scratch\n{t}\n")).map_err(|e| bad(e.to_string()))?;
        let mut found = df
            .stages
            .into_iter()
            .next()
            .map(|s| s.steps)
            .unwrap_or_default();
        if found.len() != 1 {
            return Err(bad("not exactly one instruction".into()));
        }
        let mut step = found.remove(0);
        step.span = stage.span;
        steps.push(step);
    }
    Ok(steps)
}

/// Stages stage `i` reads (its FROM and COPY --from), all defined before it.
fn stage_deps(df: &Dockerfile, i: usize) -> Vec<usize> {
    let s = &df.stages[i];
    let mut refs = vec![s.base.clone()];
    for st in &s.steps {
        if let Instruction::Copy(c) = &st.instruction {
            refs.extend(c.from.clone());
        }
    }
    let mut deps: Vec<usize> = refs
        .iter()
        .filter_map(|r| {
            df.stage(r)
                .map(|d| d.index)
                .or_else(|| r.parse::<usize>().ok())
        })
        .filter(|d| *d < i)
        .collect();
    deps.sort_unstable();
    deps.dedup();
    deps
}

/// Stages the target depends on (through FROM and COPY --from), in build order.
fn needed_stages(df: &Dockerfile, target: usize) -> Vec<usize> {
    let mut need = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if need.insert(i) {
            todo.extend(stage_deps(df, i));
        }
    }
    need.into_iter().collect()
}

#[allow(clippy::too_many_arguments)]
fn build_stage(
    df: &Dockerfile,
    stage: &Stage,
    global: &GlobalScope,
    ctx: &Context,
    store: &Store,
    opts: &BuildOptions,
    done: &BTreeMap<usize, StageState>,
    created: u64,
    session: &Session,
) -> Result<StageState, BuildError> {
    let (base, platform) = global.from_line(df, stage)?;
    let line = stage.span.start;
    let platform = platform
        .map(|p| {
            image::Platform::from_specifier(&p, &opts.platforms.build)
                .map(|p| p.to_string())
                .map_err(|e| {
                    BuildError::step(
                        line,
                        format!("FROM --platform: {e}"),
                        Some("use os/arch[/variant] such as linux/arm64, or $BUILDPLATFORM; an ARG used here needs a value"),
                    )
                })
        })
        .transpose()?;
    let mut trigger_steps = Vec::new();
    let mut state = if let Some(dep) = df.stage(&base).filter(|d| d.index < stage.index) {
        done.get(&dep.index)
            .cloned()
            .expect("dependencies build first")
    } else if base == "scratch" {
        let p = image::Platform::parse(platform.as_deref().unwrap_or(&opts.platforms.target));
        let (os, arch, variant) = (p.os, p.architecture, p.variant);
        StageState {
            config: ImageConfig {
                architecture: arch,
                os,
                variant,
                ..ImageConfig::default()
            },
            layers: vec![],
            files: BTreeMap::new(),
            base_layers: 0,
            base_name: "scratch".into(),
            base_id: "scratch".into(),
            remote: BTreeMap::new(),
            key: String::new(),
            fresh: BTreeMap::new(),
            steps: Vec::new(),
            keep: Vec::new(),
        }
    } else {
        let spec = opts
            .named_contexts
            .get(&base)
            .cloned()
            .unwrap_or(base.clone());
        let want = platform
            .clone()
            .unwrap_or_else(|| opts.platforms.target.clone());
        let img = base::load(
            &spec,
            store,
            Some(&want),
            opts.registry.as_deref(),
            opts.pull,
        )
        .map_err(|e| match e {
            base::BaseError::Unsupported(_) => {
                BuildError::step(line, e.to_string(), e.hint().as_deref())
            }
            other => BuildError::Base(other),
        })?;
        session.report(Event::note(format!("FROM {base}: {}", img.how)));
        let mut config = img.config;
        // ONBUILD triggers of the base run first in this stage and are not inherited.
        let triggers = std::mem::take(&mut config.config.on_build);
        trigger_steps = onbuild_steps(&triggers, &base, stage)?;
        let img_layers = img.layers.clone();
        StageState {
            config,
            base_layers: img.layers.len(),
            layers: img.layers,
            files: BTreeMap::new(),
            base_name: base.clone(),
            base_id: img.manifest_digest.clone(),
            remote: match (img.remote, &opts.registry) {
                (Some(r), Some(client)) => img_layers
                    .iter()
                    .map(|l| (l.digest.clone(), (client.clone(), r.clone())))
                    .collect(),
                _ => BTreeMap::new(),
            },
            key: String::new(),
            fresh: BTreeMap::new(),
            steps: Vec::new(),
            keep: Vec::new(),
        }
    };
    if state.config.config.env.is_empty() && state.layers.is_empty() && base != "scratch" {
        state.config.config.set_env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    let mut scope = StageScope::new(global, df.parsed.escape, state.config.config.env_pairs());
    let inherited_cmd = state.config.config.cmd.is_some();
    let mut cmd_set_here = false;
    let plat = platform
        .clone()
        .unwrap_or_else(|| opts.platforms.target.clone());
    state.key = match df.stage(&base).filter(|d| d.index < stage.index) {
        Some(_) => state.key.clone(),
        None => cache::key::base_key(&state.base_id, &plat).to_string(),
    };
    let settings = format!(
        "{} epoch={}",
        opts.compression.media_type(),
        opts.epoch.map(|e| e.to_string()).unwrap_or_default()
    );
    let stage_name = stage
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", stage.index));
    let use_cache = !opts.no_cache
        && !opts.no_cache_filter.iter().any(|f| {
            stage
                .name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(f))
                || *f == stage.index.to_string()
        });
    let steps: Vec<&Step> = trigger_steps.iter().chain(&stage.steps).collect();
    let total = steps.iter().filter(|s| makes_layer(&s.instruction)).count();
    let mut pos = 0;
    let mut first_miss: Option<usize> = None;
    // Where a RUN still follows: only then are a COPY's entries kept for its snapshot.
    let last_run = steps
        .iter()
        .rposition(|s| matches!(s.instruction, Instruction::Run(_)));
    for (index, step) in steps.into_iter().enumerate() {
        let line = step.span.start;
        let ins = scope.step(step)?;
        let mut inputs = StepInputs {
            parent: state.key.clone(),
            instruction: format!("{ins:?}"),
            platform: plat.clone(),
            ..StepInputs::default()
        };
        let created_by = history_text(step.original.as_str(), &ins);
        if !makes_layer(&ins) {
            apply_metadata(&ins, &mut state, inherited_cmd, &mut cmd_set_here, line)?;
            // An ARG acts only through what later steps expand or see in their environment,
            // which their own keys hold; a changed value must not look like a changed parent.
            if !matches!(ins, Instruction::Arg(_)) {
                state.key = inputs.key().to_string();
            }
            state.config.history.push(History {
                created: None,
                created_by,
                comment: "buildkit.dockerfile.v0".into(),
                empty_layer: true,
            });
            continue;
        }
        pos += 1;
        let id = session.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        session.report(Event::Step {
            id,
            stage: stage_name.clone(),
            pos,
            total,
            text: step.original.trim().to_string(),
        });
        let started = std::time::Instant::now();
        inputs.settings = settings.clone();
        // What the step depends on, computed without running it.
        let mut entries: Option<Vec<Entry>> = None;
        let mut workdir_dirs: Vec<Entry> = Vec::new();
        let mut temps = Vec::new();
        match &ins {
            Instruction::Workdir(w) => {
                let cfg = &mut state.config.config;
                let dir = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{}", cfg.working_dir.trim_end_matches('/'), w)
                };
                let dir = crate::frontend::dockerignore::clean_path(&dir);
                cfg.working_dir = dir.clone();
                let user = cfg.user.clone();
                inputs.env = vec![("USER".into(), user)];
            }
            Instruction::Run(r) => {
                // Build-wide RUN settings are part of a RUN's key only when set, so keys of
                // builds without them stay as they were.
                if r.network.is_none() && opts.no_network {
                    inputs.settings.push_str(" network=none");
                }
                for h in &opts.extra_hosts {
                    inputs
                        .settings
                        .push_str(&format!(" add-host={}", h.replace('\t', "=")));
                }
                for u in &opts.ulimits {
                    inputs.settings.push_str(&format!(" ulimit={u:?}"));
                }
                if let Some(n) = opts.shm_size {
                    inputs.settings.push_str(&format!(" shm-size={n}"));
                }
                inputs.env = scope
                    .run_env()
                    .into_iter()
                    .filter(|(k, _)| !k.to_ascii_lowercase().ends_with("_proxy"))
                    .collect();
                inputs.reads = run_reads(r, ctx, df, done, &session.hasher, line)?;
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let from_stage = c.from.as_deref().and_then(|f| stage_index(df, f));
                if let Some(i) = from_stage {
                    let key = done.get(&i).map(|s| s.key.clone()).unwrap_or_default();
                    inputs.reads = vec![(format!("stage {i}"), key)];
                } else {
                    let e = copy_step(
                        c, &ins, &state, store, ctx, df, done, opts, &plat, &mut temps, line,
                    )?;
                    inputs.files = file_inputs(&e, &session.hasher, line)?;
                    entries = Some(e);
                }
            }
            _ => unreachable!("metadata instructions are handled above"),
        }
        let key = inputs.key();
        let slot = session.slot(&stage_name, step);
        let hit = if use_cache {
            cache::lookup(&session.index, store, &opts.cache_from, &key)
        } else {
            None
        };
        let record = match hit {
            Some(hit) => {
                session.hit();
                // Per-file key inputs only explain misses.
                inputs.files = Vec::new();
                if let Some(l) = &hit.record.layer {
                    if let Some(remote) = hit.remote {
                        state.remote.insert(l.digest.clone(), remote);
                    }
                }
                match (&ins, entries.take()) {
                    // The stage is left as the run left it, so later steps need not read
                    // the layer.
                    (Instruction::Copy(_) | Instruction::Add(_), Some(e)) => {
                        state.keep.extend(temps.drain(..).map(Arc::new));
                        for e in e {
                            state.files.insert(e.path.clone(), e);
                        }
                    }
                    (Instruction::Workdir(_), _) => {
                        for (path, mode, uid, gid) in &hit.record.dirs {
                            let d = dir_entry(path, *mode, (*uid, *gid));
                            state.files.insert(d.path.clone(), d);
                        }
                    }
                    _ if hit.record.layer.is_some() => {
                        state.files.clear();
                        state.base_layers = state.layers.len() + 1;
                    }
                    _ => {}
                }
                session.report(Event::Cached { id });
                hit.record
            }
            None => {
                let reason = if !use_cache {
                    "cache disabled (--no-cache)".to_string()
                } else {
                    match session.index.last_inputs(&slot) {
                        None => "not built before".to_string(),
                        Some(old) if old.parent != inputs.parent && first_miss.is_some() => {
                            format!("follows line {}, which changed", first_miss.unwrap_or(0))
                        }
                        Some(old) => cache::key::why_missed(&old, &inputs)
                            .unwrap_or_else(|| "its cached layer is no longer in the store".into()),
                    }
                };
                first_miss.get_or_insert(line);
                session.missed();
                session.report(Event::Miss { id, reason });
                // Recorded now so the per-file inputs can go before the layer is written
                // (on 200,000 files they are tens of MB).
                session.index.remember_inputs(&slot, &inputs);
                inputs.files = Vec::new();
                let mut ran = false;
                let mut run_upper = None;
                let mut detail = String::new();
                let layer_entries = match &ins {
                    Instruction::Workdir(_) => {
                        let cfg = &state.config.config;
                        let owner = owner::resolve_owner(&cfg.user, line, &mut |p| {
                            state.read_file(store, p)
                        })?;
                        let dir = cfg.working_dir.clone();
                        // Like Docker, only missing directories are created; existing ones
                        // keep their mode and owner (think /tmp), and nothing new means no
                        // layer.
                        let dirs = parent_dirs(dir.trim_start_matches('/'), true, owner);
                        workdir_dirs = state.parent_entries(store, dirs, true)?;
                        workdir_dirs.clone()
                    }
                    Instruction::Run(r) => {
                        let run_env = scope.run_env();
                        let others = RunSources {
                            output: match &opts.progress {
                                Some(r) => {
                                    let r = r.clone();
                                    Arc::new(move |l: &str| {
                                        r(&Event::Output {
                                            id,
                                            line: l.to_string(),
                                        })
                                    })
                                }
                                None => crate::exec::stderr_sink(),
                            },
                            ctx,
                            df,
                            done,
                            opts,
                        };
                        let (e, scratch) =
                            run_step(r, &state, &run_env, store, step, line, &others)?;
                        run_upper = Some(scratch.path().join("upper"));
                        temps.push(scratch);
                        ran = true;
                        e
                    }
                    Instruction::Copy(c) | Instruction::Add(c) => match entries.take() {
                        Some(e) => e,
                        None => copy_step(
                            c, &ins, &state, store, ctx, df, done, opts, &plat, &mut temps, line,
                        )?,
                    },
                    _ => unreachable!("metadata instructions are handled above"),
                };
                let mut record = cache::index::Record {
                    layer: None,
                    diff_id: None,
                    created,
                    step: step.original.trim().to_string(),
                    dirs: workdir_dirs
                        .iter()
                        .map(|d| (d.path.clone(), d.mode, d.uid, d.gid))
                        .collect(),
                };
                if !layer_entries.is_empty() {
                    let members = (!ran && opts.compression == Compression::Gzip)
                        .then(|| (&*session.hasher, &session.index, &slot));
                    let copied = (!ran && last_run.is_some_and(|r| r > index))
                        .then(|| Arc::new(layer_entries.clone()));
                    let mut layer_entries = layer_entries;
                    let (desc, diff_id, written) =
                        write_layer(store, &mut layer_entries, opts, members)?;
                    if !ran {
                        // Moved, not copied: on 200,000 files a copy is tens of MB.
                        for e in layer_entries {
                            state.files.insert(e.path.clone(), e);
                        }
                    }
                    if let Some(e) = copied {
                        state.fresh.insert(diff_id.clone(), e);
                    }
                    detail = written;
                    state.keep.extend(temps.drain(..).map(Arc::new));
                    if let Some(upper) = run_upper.take() {
                        let _ = crate::snapshot::adopt_upper(store, &upper, &diff_id);
                    }
                    if ran {
                        // A RUN may change anything: from here on the stage's files are read
                        // from its unpacked layers, not from what this build wrote.
                        state.files.clear();
                        state.base_layers = state.layers.len() + 1;
                    }
                    record.layer = Some(desc);
                    record.diff_id = Some(diff_id);
                }
                session.index.put(&key, &record)?;
                session.report(Event::Done {
                    id,
                    secs: started.elapsed().as_secs_f64(),
                    detail,
                });
                record
            }
        };
        match (&record.layer, &record.diff_id) {
            (Some(l), Some(d)) => {
                state.layers.push(l.clone());
                state.config.rootfs.diff_ids.push(d.clone());
                state.config.history.push(History {
                    created: Some(image::rfc3339(opts.epoch.unwrap_or(record.created))),
                    created_by,
                    comment: "buildkit.dockerfile.v0".into(),
                    empty_layer: false,
                });
            }
            _ => state.config.history.push(History {
                created: None,
                created_by,
                comment: "buildkit.dockerfile.v0".into(),
                empty_layer: true,
            }),
        }
        // The next step's parent is this step's result, not its inputs: a step that ran
        // again but made the same layer lets the steps after it hit (kaniko stops at the
        // first miss).
        state.key = StepInputs {
            parent: inputs.parent.clone(),
            instruction: format!(
                "result {} {}",
                record.diff_id.as_deref().unwrap_or("none"),
                serde_json::to_string(&state.config.config).unwrap_or_default()
            ),
            ..StepInputs::default()
        }
        .key()
        .to_string();
        state.steps.push((key, record));
    }
    Ok(state)
}

/// The entries of a COPY or ADD step.
#[allow(clippy::too_many_arguments)]
fn copy_step(
    c: &crate::frontend::instructions::CopyCmd,
    ins: &Instruction,
    state: &StageState,
    store: &Store,
    ctx: &Context,
    df: &Dockerfile,
    done: &BTreeMap<usize, StageState>,
    opts: &BuildOptions,
    platform: &str,
    temps: &mut Vec<crate::content::TempDir>,
    line: usize,
) -> Result<Vec<Entry>, BuildError> {
    let mut sources = copy::Sources {
        store,
        ctx,
        df,
        done,
        named_contexts: &opts.named_contexts,
        platform: Some(platform),
        registry: &opts.registry,
        pull: opts.pull,
        temps,
    };
    let is_add = matches!(ins, Instruction::Add(_));
    copy::copy_entries(c, is_add, state, &mut sources, line)
}

/// Whether an instruction writes files (and so gets a cache lookup and maybe a layer).
fn makes_layer(ins: &Instruction) -> bool {
    matches!(
        ins,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

/// Applies an instruction that only changes the image config.
fn apply_metadata(
    ins: &Instruction,
    state: &mut StageState,
    inherited_cmd: bool,
    cmd_set_here: &mut bool,
    line: usize,
) -> Result<(), BuildError> {
    let cfg = &mut state.config.config;
    match ins {
        Instruction::Env(pairs) => {
            for (k, v) in pairs {
                cfg.set_env(k, v);
            }
        }
        Instruction::Label(pairs) => {
            for (k, v) in pairs {
                cfg.labels.insert(k.clone(), v.clone());
            }
        }
        Instruction::Cmd(c) => {
            cfg.cmd = Some(command_argv(c, &cfg.shell));
            *cmd_set_here = true;
        }
        Instruction::Entrypoint(c) => {
            cfg.entrypoint = Some(command_argv(c, &cfg.shell));
            if inherited_cmd && !*cmd_set_here {
                cfg.cmd = None;
            }
        }
        Instruction::Shell(s) => cfg.shell = s.clone(),
        Instruction::User(u) => cfg.user = u.clone(),
        Instruction::Expose(ports) => {
            for p in ports {
                let port = normalize_port(p).ok_or_else(|| {
                    BuildError::step(
                        line,
                        format!("invalid port {p:?} in EXPOSE"),
                        Some("use PORT, PORT/tcp or PORT/udp with 1 ≤ PORT ≤ 65535"),
                    )
                })?;
                cfg.exposed_ports.insert(port, Empty {});
            }
        }
        Instruction::Volume(v) => {
            for p in v {
                cfg.volumes.insert(p.clone(), Empty {});
            }
        }
        Instruction::StopSignal(s) => {
            if !crate::frontend::instructions::is_stop_signal(s) {
                return Err(BuildError::step(
                    line,
                    format!("invalid signal {s:?} in STOPSIGNAL"),
                    Some("use a signal name such as SIGTERM or SIGQUIT, or its number"),
                ));
            }
            cfg.stop_signal = s.clone()
        }
        Instruction::Healthcheck(h) => {
            cfg.healthcheck = Some(HealthConfig {
                test: h.test.clone(),
                interval: h.interval.as_nanos() as u64,
                timeout: h.timeout.as_nanos() as u64,
                start_period: h.start_period.as_nanos() as u64,
                start_interval: h.start_interval.as_nanos() as u64,
                retries: h.retries as u64,
            })
        }
        Instruction::Onbuild(t) => cfg.on_build.push(t.clone()),
        Instruction::Maintainer(m) => state.config.author = m.clone(),
        Instruction::Arg(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::Workdir(_) => {}
    }
    Ok(())
}

/// A stage named by `COPY --from`/`--mount from=`: by name or index.
fn stage_index(df: &Dockerfile, from: &str) -> Option<usize> {
    df.stage(from)
        .map(|s| s.index)
        .or_else(|| from.parse::<usize>().ok().filter(|i| *i < df.stages.len()))
}

/// A COPY's entries as key inputs, regular files by content digest (hashed in parallel,
/// remembered across builds by stat data).
fn file_inputs(
    entries: &[Entry],
    hasher: &FileHasher,
    line: usize,
) -> Result<Vec<(String, String)>, BuildError> {
    let paths: Vec<&std::path::Path> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::File(p) => Some(p.as_path()),
            _ => None,
        })
        .collect();
    let digests = hasher
        .digests(&paths)
        .map_err(|source| BuildError::Context {
            line,
            source: ContextError::Io {
                path: PathBuf::from("(a selected file)"),
                source,
            },
        })?;
    let by_path: std::collections::HashMap<&std::path::Path, &crate::cache::stat::ContentId> =
        paths.iter().copied().zip(digests.iter()).collect();
    Ok(cache::key::entry_inputs(entries, |e| match &e.kind {
        Kind::File(p) => by_path
            .get(p.as_path())
            .map(|d| d.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }))
}

/// What a RUN's bind mounts read, as key inputs: context sources by content, stages by key.
fn run_reads(
    r: &crate::frontend::instructions::RunCmd,
    ctx: &Context,
    df: &Dockerfile,
    done: &BTreeMap<usize, StageState>,
    hasher: &FileHasher,
    line: usize,
) -> Result<Vec<(String, String)>, BuildError> {
    use crate::exec::mounts::{parse, MountSpec};
    let mut out = Vec::new();
    for m in &r.mounts {
        let Ok(MountSpec::Bind { source, from, .. }) = parse(m) else {
            continue;
        };
        match from {
            Some(f) => {
                if let Some(st) = stage_index(df, &f).and_then(|i| done.get(&i)) {
                    out.push((format!("stage {f}"), st.key.clone()));
                } else {
                    out.push((format!("image {f}"), f.clone()));
                }
            }
            None => {
                let src = source.trim_start_matches('/');
                let src = if src.is_empty() { "." } else { src };
                // A missing or outside source fails when the mount is set up, with a message.
                let Ok((selected, _)) = ctx.select(src) else {
                    continue;
                };
                let e = ctx
                    .entries(&selected, "", None, None)
                    .map_err(|source| BuildError::Context { line, source })?;
                let files = file_inputs(&e, hasher, line)?;
                let digest = cache::key::StepInputs {
                    files,
                    ..Default::default()
                }
                .key();
                out.push((format!("context {source}"), digest.to_string()));
            }
        }
    }
    Ok(out)
}

/// A directory entry as WORKDIR writes it.
fn dir_entry(path: &str, mode: u32, owner: (u64, u64)) -> Entry {
    Entry {
        path: path.to_string(),
        kind: Kind::Dir,
        mode,
        uid: owner.0,
        gid: owner.1,
        mtime: 0,
        size: 0,
        xattrs: vec![],
    }
}

/// Runs one RUN step in the sandbox over the stage's filesystem; returns its layer entries
/// (pointing into the returned scratch directory, which must outlive the layer write).
fn run_step(
    r: &crate::frontend::instructions::RunCmd,
    state: &StageState,
    env: &[(String, String)],
    store: &Store,
    step: &Step,
    line: usize,
    others: &RunSources<'_>,
) -> Result<(Vec<Entry>, crate::content::TempDir), BuildError> {
    if others.opts.isolation.resolve() == Isolation::Chroot {
        return run_step_chroot(r, state, env, store, step, line, others);
    }
    let (mounts, secrets) = resolve_mounts(r, store, line, others)?;
    let no_network = match r.network.as_deref() {
        None => others.opts.no_network,
        Some("default") | Some("host") => false,
        Some("none") => true,
        Some(other) => {
            return Err(BuildError::step(
                line,
                format!("unknown RUN --network={other}"),
                Some("use default, none or host"),
            ))
        }
    };
    let cfg = &state.config.config;
    let (uid, gid) = owner::resolve_owner(&cfg.user, line, &mut |p| state.read_file(store, p))?;
    rootless_user_check(uid, gid, &cfg.user, line)?;
    fetch_remote(store, &state.layers, &state.remote)?;
    let unpack_err = |source| BuildError::Unpack {
        image: state.base_name.clone(),
        source,
    };
    // Layers this build just wrote from COPY/ADD are made from their files; the others are
    // unpacked, all at once, each into its own snapshot.
    for (d, entries) in &state.fresh {
        if !crate::snapshot::layers_dir(store)
            .join(d.trim_start_matches("sha256:"))
            .is_dir()
        {
            let _ =
                crate::snapshot::layer_snapshot_from_entries(store, d, entries, others.opts.epoch);
        }
    }
    use rayon::prelude::*;
    let pairs: Vec<(&Descriptor, &String)> = state
        .layers
        .iter()
        .zip(&state.config.rootfs.diff_ids)
        .collect();
    let mut lowers: Vec<PathBuf> = pairs
        .par_iter()
        .map(|(l, d)| crate::snapshot::layer_snapshot(store, l, d))
        .collect::<Result<_, _>>()
        .map_err(unpack_err)?;
    lowers.reverse();
    if lowers.is_empty() {
        lowers.push(crate::snapshot::empty_layer(store).map_err(unpack_err)?);
    }
    let scratch = store.temp_dir("run")?;
    let dirs: Vec<PathBuf> = ["upper", "work", "merged"]
        .iter()
        .map(|d| scratch.path().join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir(d)
            .map_err(|e| BuildError::step(line, format!("{}: {e}", d.display()), None))?;
    }
    let (argv, script) = run_argv(r, &cfg.shell);
    let ssh_sock = r
        .mounts
        .iter()
        .find_map(|m| match crate::exec::mounts::parse(m) {
            Ok(crate::exec::mounts::MountSpec::Ssh { id, target, .. })
                if others.opts.ssh.contains_key(&id) =>
            {
                Some(target)
            }
            _ => None,
        });
    let targets: Vec<String> = mounts
        .iter()
        .map(|m| match m {
            crate::exec::SandboxMount::Bind { target, .. }
            | crate::exec::SandboxMount::Tmpfs { target }
            | crate::exec::SandboxMount::Secret { target, .. } => {
                target.trim_start_matches('/').to_string()
            }
        })
        .collect();
    let spec = crate::exec::RunSpec {
        script,
        mounts,
        layers_dir: crate::snapshot::layers_dir(store),
        lowers: lowers
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        upper: dirs[0].clone(),
        work: dirs[1].clone(),
        merged: dirs[2].clone(),
        argv,
        env: env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(ssh_sock.map(|t| format!("SSH_AUTH_SOCK={t}")))
            .collect(),
        cwd: if cfg.working_dir.is_empty() {
            "/".into()
        } else {
            cfg.working_dir.clone()
        },
        uid: uid as u32,
        gid: gid as u32,
        hostname: "rbuild".into(),
        no_network,
        extra_hosts: others.opts.extra_hosts.clone(),
        ulimits: others.opts.ulimits.clone(),
        shm_size: others.opts.shm_size,
    };
    let shown = step.original.trim().to_string();
    crate::exec::run(&spec, &secrets, &shown, &others.output).map_err(|e| exec_error(e, line))?;
    let skip: Vec<String> = crate::exec::sandbox::MOUNT_POINTS
        .iter()
        .map(|p| p.to_string())
        .chain(targets)
        .filter(|p| in_lowers(&lowers, p).is_none())
        .collect();
    let mut entries = crate::snapshot::diff::upper_entries(&dirs[0], &skip)
        .map_err(|e| BuildError::step(line, format!("reading the step's changes: {e}"), None))?;
    drop_untouched_dirs(&mut entries, &lowers);
    // The upper dir will become this layer's snapshot: rid it of the sandbox's mount points.
    for p in &skip {
        let path = dirs[0].join(p);
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }
    Ok((entries, scratch))
}

/// A rootless rbuild without subordinate ids maps only the caller's id: a RUN as another
/// user cannot run.
fn rootless_user_check(uid: u64, gid: u64, user: &str, line: usize) -> Result<(), BuildError> {
    if !crate::exec::rootless::maps(uid, gid) {
        return Err(BuildError::step(
            line,
            format!("RUN as USER {user} ({uid}:{gid}) needs subordinate ids for your user, and none are mapped"),
            Some("add a range for your user to /etc/subuid and /etc/subgid (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`), or run rbuild as root"),
        ));
    }
    Ok(())
}

/// A RUN failure as a build error with a hint.
fn exec_error(e: crate::exec::ExecError, line: usize) -> BuildError {
    let hint = match &e {
        crate::exec::ExecError::NotRoot => {
            Some("run rbuild as root (for example in a privileged CI container)")
        }
        crate::exec::ExecError::Failed { .. } => Some("fix the command; its output is above"),
        crate::exec::ExecError::Setup(_) => None,
    };
    BuildError::step(line, e.to_string(), hint)
}

/// Runs one RUN step chroot'ed into an unpacked copy of the stage (no namespaces, no mounts:
/// see [`crate::exec::chroot`]); the change is found by comparing the tree before and after.
fn run_step_chroot(
    r: &crate::frontend::instructions::RunCmd,
    state: &StageState,
    env: &[(String, String)],
    store: &Store,
    step: &Step,
    line: usize,
    others: &RunSources<'_>,
) -> Result<(Vec<Entry>, crate::content::TempDir), BuildError> {
    use crate::exec::chroot;
    let output = &others.output;
    use crate::exec::mounts::{parse, MountSpec};
    let unsupported = |what: String| {
        BuildError::step(
            line,
            format!("{what} needs namespace isolation, which this environment does not allow (no CAP_SYS_ADMIN), so RUN uses chroot isolation"),
            Some("run rbuild with CAP_SYS_ADMIN (a privileged container) for this, or drop it from the RUN"),
        )
    };
    let mut tmpfs = Vec::new();
    for m in &r.mounts {
        match parse(m) {
            Ok(MountSpec::Tmpfs { target }) => {
                tmpfs.push(target.trim_start_matches('/').to_string())
            }
            Ok(_) => return Err(unsupported(format!("RUN --mount={m}"))),
            Err(e) => {
                return Err(BuildError::step(
                    line,
                    e,
                    Some("see `RUN --mount` in the Dockerfile reference"),
                ))
            }
        }
    }
    if r.network.as_deref() == Some("none") {
        return Err(unsupported("RUN --network=none".into()));
    }
    if r.network.is_none() && others.opts.no_network {
        return Err(unsupported("--network=none".into()));
    }
    if others.opts.shm_size.is_some() {
        return Err(unsupported("--shm-size".into()));
    }
    let cfg = &state.config.config;
    let (uid, gid) = owner::resolve_owner(&cfg.user, line, &mut |p| state.read_file(store, p))?;
    rootless_user_check(uid, gid, &cfg.user, line)?;
    fetch_remote(store, &state.layers, &state.remote)?;
    let scratch = store.temp_dir("chroot")?;
    let root = scratch.path().join("root");
    let io = |what: &str, e: std::io::Error| BuildError::step(line, format!("{what}: {e}"), None);
    std::fs::create_dir(&root).map_err(|e| io("creating the RUN root", e))?;
    crate::snapshot::apply_layers(
        store,
        &state.layers,
        Some(&state.config.rootfs.diff_ids),
        &root,
        crate::layer::apply::Whiteouts::Delete,
    )
    .map_err(|source| BuildError::Unpack {
        image: state.base_name.clone(),
        source,
    })?;
    let cwd = if cfg.working_dir.is_empty() {
        "/".to_string()
    } else {
        cfg.working_dir.clone()
    };
    let saved = chroot::prepare(&root, &cwd, &others.opts.extra_hosts);
    let mut skip: Vec<String> = ["dev", "proc", "sys"]
        .iter()
        .map(|s| s.to_string())
        .chain(chroot::HOST_FILES.iter().map(|s| s.to_string()))
        .collect();
    let mut made = Vec::new();
    for t in &tmpfs {
        let p = root.join(t);
        if !p.exists() {
            made.push(p.clone());
        }
        let _ = std::fs::create_dir_all(&p);
        skip.push(t.clone());
    }
    let skip_refs: Vec<&str> = skip.iter().map(String::as_str).collect();
    let before = crate::snapshot::compare::scan(&root, &skip_refs)
        .map_err(|e| io("reading the RUN root", e))?;
    let (argv, script) = run_argv(r, &cfg.shell);
    let script_path = root.join(crate::exec::SCRIPT_PATH.trim_start_matches('/'));
    if let Some(body) = &script {
        std::fs::write(&script_path, body).map_err(|e| io("writing the heredoc script", e))?;
    }
    let spec = chroot::ChrootSpec {
        root: root.clone(),
        argv,
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        uid: uid as u32,
        gid: gid as u32,
        ulimits: others.opts.ulimits.clone(),
    };
    let result = chroot::run(&spec, step.original.trim(), output);
    let _ = std::fs::remove_file(&script_path);
    result.map_err(|e| exec_error(e, line))?;
    // The diff comes before putting the host files back, so their directory looks untouched.
    let entries = crate::snapshot::compare::changes(&before, &root, &skip_refs)
        .map_err(|e| io("reading the step's changes", e))?;
    chroot::restore(saved);
    for p in made {
        let _ = std::fs::remove_dir_all(p);
    }
    Ok((entries, scratch))
}

/// What a RUN's mounts may read besides the stage itself.
struct RunSources<'a> {
    /// Where the command's output goes.
    output: crate::exec::OutputSink,
    ctx: &'a Context,
    df: &'a Dockerfile,
    done: &'a BTreeMap<usize, StageState>,
    opts: &'a BuildOptions,
}

/// `RUN --mount`s → host paths (cache dirs in the store, context or stage paths resolved
/// inside their roots) and the contents of the secrets they use.
fn resolve_mounts(
    r: &crate::frontend::instructions::RunCmd,
    store: &Store,
    line: usize,
    others: &RunSources<'_>,
) -> Result<(Vec<crate::exec::SandboxMount>, Vec<Vec<u8>>), BuildError> {
    use crate::exec::mounts::{parse, MountSpec};
    use crate::exec::SandboxMount;
    let mut out = Vec::new();
    let mut secrets = Vec::new();
    for m in &r.mounts {
        let spec = parse(m).map_err(|e| {
            BuildError::step(
                line,
                e,
                Some("see `RUN --mount` in the Dockerfile reference"),
            )
        })?;
        match spec {
            MountSpec::Cache {
                target,
                id,
                uid,
                gid,
                mode,
                readonly,
            } => {
                let dir = store.root().join("cache-mounts").join(hex::encode(
                    <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()),
                ));
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(|e| {
                        BuildError::step(line, format!("cache mount {id}: {e}"), None)
                    })?;
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
                    let _ = std::os::unix::fs::chown(&dir, Some(uid), Some(gid));
                }
                out.push(SandboxMount::Bind {
                    source: dir,
                    target,
                    readonly,
                    discard_writes: false,
                });
            }
            MountSpec::Bind {
                target,
                source,
                from,
                rw,
            } => {
                let root = match &from {
                    None => others.ctx.root.clone(),
                    Some(name) => {
                        let st = others
                            .df
                            .stage(name)
                            .and_then(|s| others.done.get(&s.index))
                            .ok_or_else(|| BuildError::step(line, format!("--mount from={name}: no earlier stage of that name"), Some("bind mounts read from the context or from a stage defined above")))?;
                        unpack_image(
                            store,
                            &st.layers,
                            &st.config.rootfs.diff_ids,
                            &st.remote,
                            &st.base_name,
                        )?
                    }
                };
                let rel = context::resolve_parents(&root, source.trim_start_matches('/'))
                    .ok_or_else(|| {
                        BuildError::step(
                            line,
                            format!("--mount source {source}: too many symlinks"),
                            None,
                        )
                    })?;
                if source.split('/').any(|c| c == "..")
                    && crate::frontend::dockerignore::clean_path(&source).starts_with("..")
                {
                    return Err(BuildError::step(
                        line,
                        format!(
                            "--mount source {source} is outside the {}",
                            if from.is_some() { "stage" } else { "context" }
                        ),
                        None,
                    ));
                }
                let path = root.join(&rel);
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
                    || !path.exists()
                {
                    return Err(BuildError::step(
                        line,
                        format!("--mount source {source} not found"),
                        None,
                    ));
                }
                out.push(SandboxMount::Bind {
                    source: path,
                    target,
                    readonly: !rw,
                    discard_writes: rw,
                });
            }
            MountSpec::Tmpfs { target } => out.push(SandboxMount::Tmpfs { target }),
            MountSpec::Ssh {
                id,
                target,
                required,
            } => match others.opts.ssh.get(&id) {
                Some(sock) => out.push(SandboxMount::Bind {
                    source: sock.clone(),
                    target,
                    readonly: false,
                    discard_writes: false,
                }),
                None if required => {
                    return Err(BuildError::step(
                        line,
                        format!("RUN --mount=type=ssh needs --ssh {id}"),
                        Some("forward your agent with `--ssh default` (uses $SSH_AUTH_SOCK) or `--ssh ID=/path/to/socket`"),
                    ))
                }
                None => {}
            },
            MountSpec::Secret {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => match others.opts.secrets.get(&id) {
                Some(data) => {
                    out.push(SandboxMount::Secret {
                        index: secrets.len(),
                        target,
                        mode,
                        uid,
                        gid,
                    });
                    secrets.push(data.clone());
                }
                None if required => {
                    return Err(BuildError::step(
                        line,
                        format!("secret {id:?} is required but was not given"),
                        Some("pass it with --secret id=NAME,src=FILE (or env=VAR)"),
                    ));
                }
                None => {}
            },
        }
    }
    Ok((out, secrets))
}

/// The argv of a RUN, and a heredoc script to place in the sandbox, following BuildKit: a RUN
/// that is only `<<EOF` runs its body through the shell, or through its `#!` interpreter; a
/// RUN with heredocs inside a longer command hands the whole text to the shell.
fn run_argv(
    r: &crate::frontend::instructions::RunCmd,
    shell: &[String],
) -> (Vec<String>, Option<String>) {
    let default_shell = ["/bin/sh".to_string(), "-c".to_string()];
    let shell = if shell.is_empty() {
        &default_shell[..]
    } else {
        shell
    };
    if r.heredocs.is_empty() || !r.command.shell_form {
        return (command_argv(&r.command, shell), None);
    }
    let text = r.command.args.first().cloned().unwrap_or_default();
    let only = text
        .trim()
        .trim_start_matches("<<")
        .trim_start_matches('-')
        .trim_matches(|c| c == '\'' || c == '"')
        .to_string();
    let mut argv = shell.to_vec();
    if r.heredocs.len() == 1 && only == r.heredocs[0].name {
        let body = r.heredocs[0].body();
        if let Some(first) = body.strip_prefix("#!").and_then(|b| b.lines().next()) {
            let mut interp: Vec<String> = first.split_whitespace().map(String::from).collect();
            interp.push(crate::exec::SCRIPT_PATH.to_string());
            return (interp, Some(body));
        }
        argv.push(body);
        return (argv, None);
    }
    let mut cmd = text;
    for h in &r.heredocs {
        cmd.push('\n');
        cmd.push_str(&h.body());
        cmd.push_str(&h.name);
    }
    argv.push(cmd);
    (argv, None)
}

/// The metadata of `rel` in the topmost overlay lower that has it (`None` when absent or
/// whited out).
fn in_lowers(lowers: &[PathBuf], rel: &str) -> Option<std::fs::Metadata> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for l in lowers {
        if let Ok(m) = std::fs::symlink_metadata(l.join(rel)) {
            if m.file_type().is_char_device() && m.rdev() == 0 {
                return None;
            }
            return Some(m);
        }
    }
    None
}

/// Drops directories that are only in the change set because something below them was (a
/// sandbox mount point, say): same mode and owner as below, and nothing under them kept.
fn drop_untouched_dirs(entries: &mut Vec<Entry>, lowers: &[PathBuf]) {
    use std::os::unix::fs::MetadataExt;
    loop {
        let parents: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| e.path.rsplit_once('/').map(|(p, _)| p.to_string()))
            .collect();
        let before = entries.len();
        entries.retain(|e| {
            if !matches!(e.kind, Kind::Dir) || parents.contains(&e.path) {
                return true;
            }
            match in_lowers(lowers, &e.path).ok_or(()) {
                Ok(m) => {
                    !(m.is_dir()
                        && m.mode() & 0o7777 == e.mode
                        && m.uid() as u64 == e.uid
                        && m.gid() as u64 == e.gid)
                }
                Err(_) => true,
            }
        });
        if entries.len() == before {
            break;
        }
    }
}

fn history_text(original: &str, ins: &Instruction) -> String {
    let first = original.trim();
    match ins {
        Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::Workdir(_)
        | Instruction::Run(_) => {
            format!("{first} # buildkit")
        }
        _ => first.to_string(),
    }
}

fn command_argv(c: &Command, shell: &[String]) -> Vec<String> {
    if !c.shell_form {
        return c.args.clone();
    }
    let mut argv = if shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        shell.to_vec()
    };
    argv.push(c.args.join(" "));
    argv
}

fn normalize_port(p: &str) -> Option<String> {
    let (num, proto) = match p.split_once('/') {
        Some((n, pr)) => (n, pr.to_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let (lo, hi) = match num.split_once('-') {
        Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
        None => {
            let n = num.parse::<u32>().ok()?;
            (n, n)
        }
    };
    if lo == 0 || hi > 65535 || lo > hi {
        return None;
    }
    Some(if lo == hi {
        format!("{lo}/{proto}")
    } else {
        format!("{lo}-{hi}/{proto}")
    })
}

/// Directory entries for `path` and its parents (`include_self` for the last one).
fn parent_dirs(path: &str, include_self: bool, owner: (u64, u64)) -> Vec<Entry> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let n = if include_self {
        comps.len()
    } else {
        comps.len().saturating_sub(1)
    };
    (1..=n)
        .map(|i| Entry {
            path: comps[..i].join("/"),
            kind: Kind::Dir,
            mode: 0o755,
            uid: if i == n { owner.0 } else { 0 },
            gid: if i == n { owner.1 } else { 0 },
            mtime: 0,
            size: 0,
            xattrs: vec![],
        })
        .collect()
}

fn write_layer(
    store: &Store,
    entries: &mut Vec<Entry>,
    opts: &BuildOptions,
    members: Option<(&FileHasher, &Index, &crate::reference::Digest)>,
) -> Result<(Descriptor, String, String), BuildError> {
    let io = |e: std::io::Error| {
        BuildError::Store(StoreError::Io {
            op: "write layer",
            path: store.root().join("ingest"),
            source: e,
        })
    };
    let (raw, ingest, map, detail) = match members {
        // COPY/ADD layers as gzip members: unchanged members of this step's previous layer
        // are copied, not compressed again.
        Some((hasher, index, slot)) => {
            let reuse = index.last_layer(slot).and_then(|d| {
                let text = std::fs::read_to_string(index.members_path(&d)).ok()?;
                let blob = store.open_blob(&d).ok()?;
                Some(crate::layer::members::Reuse::parse(blob, &text))
            });
            let digest_of = |e: &Entry| match &e.kind {
                Kind::File(p) => hasher.digest(p).ok().map(|d| d.to_string()),
                _ => None,
            };
            let (raw, ingest, report) = crate::layer::members::write_members(
                entries,
                opts.epoch,
                &digest_of,
                reuse.as_ref(),
                store.ingest()?,
            )
            .map_err(io)?;
            let detail = format!(
                "compressed {} of {} bytes, copied {} of {} gzip members",
                report.compressed,
                raw.size,
                report.reused,
                report.members.len()
            );
            (
                raw,
                ingest,
                Some(crate::layer::members::map_text(&report.members)),
                detail,
            )
        }
        None => {
            let lw = LayerWriter::new(store.ingest()?, opts.compression).map_err(io)?;
            let lw = write_tar(entries, opts.epoch, lw).map_err(io)?;
            let (raw, ingest) = lw.finish().map_err(io)?;
            (raw, ingest, None, String::new())
        }
    };
    let (digest, size) = ingest.commit(None)?;
    if let (Some(text), Some((_, index, slot))) = (map.as_ref(), members) {
        let p = index.members_path(&digest);
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if crate::content::write_atomic(&p, text.as_bytes()).is_ok() {
            index.remember_layer(slot, digest.as_str());
        }
    }
    Ok((
        Descriptor {
            media_type: opts.compression.media_type().into(),
            digest: digest.to_string(),
            size,
            annotations: BTreeMap::new(),
        },
        raw.diff_id.to_string(),
        detail,
    ))
}
