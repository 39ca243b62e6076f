//! Building images from a typed Dockerfile: resolves each stage's base, walks its steps with
//! the scope rules of [`crate::frontend::expand`], writes COPY/ADD/WORKDIR layers straight
//! from the context into the store (tar → gzip → store in one pass), applies metadata
//! instructions to the image config, and commits config and manifest.
//!
//! RUN is not handled here yet: a Dockerfile with RUN gets a clear error.

pub mod base;
pub mod context;
mod copy;
pub mod fetch;
mod owner;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

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

use context::{Context, ContextError};

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
#[derive(Debug, Clone)]
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
    /// Where the base layers can be fetched from, when they came from a registry.
    base_remote: Option<(Arc<Client>, Reference)>,
    /// Scratch dirs (unpacked archives) that entries of `files` point into.
    keep: Vec<std::sync::Arc<crate::content::TempDir>>,
}

/// An image's layers unpacked into a shared snapshot, fetching first what a registry still
/// holds.
fn unpack_image(
    store: &Store,
    layers: &[Descriptor],
    diff_ids: &[String],
    remote: Option<&(Arc<Client>, Reference)>,
    name: &str,
) -> Result<PathBuf, BuildError> {
    if let Some((client, r)) = remote {
        crate::registry::pull::fetch_blobs(client, r, layers, store)
            .map_err(|e| BuildError::Base(base::BaseError::Registry(e)))?;
    }
    crate::snapshot::flat_rootfs(store, layers, diff_ids).map_err(|source| BuildError::Unpack {
        image: name.to_string(),
        source,
    })
}

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
            self.base_remote.as_ref(),
            &self.base_name,
        )
        .map(Some)
    }

    /// Whether `path` (no leading slash) exists in the stage's filesystem; symlinks to
    /// directories count, as Docker follows them.
    fn exists(&self, store: &Store, path: &str) -> Result<bool, BuildError> {
        if path.is_empty() || self.files.contains_key(path) {
            return Ok(true);
        }
        match self.base_root(store)? {
            Some(root) => Ok(crate::snapshot::exists_in_root(&root, path)),
            None => Ok(false),
        }
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
        .map_err(|source| BuildError::Context { line: 1, source })?;
    let created = opts.epoch.unwrap_or_else(now_secs);
    let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
    let warnings: Vec<String> = global
        .unused_build_args(df)
        .into_iter()
        .map(|a| format!("build argument {a:?} is not declared by any ARG in the Dockerfile"))
        .collect();
    // Stages whose dependencies are built run together, each on its own thread.
    let mut pending = needed;
    while !pending.is_empty() {
        let ready: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|i| stage_deps(df, *i).iter().all(|d| done.contains_key(d)))
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
            )
        };
        let results: Vec<(usize, Result<StageState, BuildError>)> = if ready.len() == 1 {
            vec![(ready[0], run(ready[0]))]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = ready
                    .iter()
                    .map(|&i| (i, s.spawn(move || run(i))))
                    .collect();
                handles
                    .into_iter()
                    .map(|(i, h)| (i, h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
                    .collect()
            })
        };
        for (i, r) in results {
            done.insert(i, r?);
        }
    }
    let mut state = done.remove(&target).expect("target built");
    for (k, v) in &opts.labels {
        state.config.config.labels.insert(k.clone(), v.clone());
    }
    state.config.created = Some(image::rfc3339(created));
    let config_bytes = image::to_json(&state.config);
    let config_desc = store.put(image::CONFIG_V1, &config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(image::MANIFEST_V1.into()),
        config: config_desc.clone(),
        layers: state.layers.clone(),
        annotations: BTreeMap::new(),
    };
    let manifest_desc = store.put(image::MANIFEST_V1, &image::to_json(&manifest))?;
    let sources = match &state.base_remote {
        Some((_, r)) => state.layers[..state.base_layers]
            .iter()
            .map(|l| (l.digest.clone(), r.clone()))
            .collect(),
        None => BTreeMap::new(),
    };
    Ok(Built {
        sources,
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
) -> Result<StageState, BuildError> {
    let (base, platform) = global.from_line(df, stage)?;
    let line = stage.span.start;
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
            base_remote: None,
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
        let img =
            base::load(&spec, store, Some(&want), opts.registry.as_deref()).map_err(
                |e| match e {
                    base::BaseError::Unsupported(_) => {
                        BuildError::step(line, e.to_string(), e.hint().as_deref())
                    }
                    other => BuildError::Base(other),
                },
            )?;
        let mut config = img.config;
        // ONBUILD triggers of the base run first in this stage and are not inherited.
        let triggers = std::mem::take(&mut config.config.on_build);
        trigger_steps = onbuild_steps(&triggers, &base, stage)?;
        StageState {
            config,
            base_layers: img.layers.len(),
            layers: img.layers,
            files: BTreeMap::new(),
            base_name: base.clone(),
            base_remote: img.remote.map(|r| {
                (
                    opts.registry.clone().expect("registry bases need a client"),
                    r,
                )
            }),
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
    let mut temps = Vec::new();
    let mut ran;
    let mut run_upper: Option<PathBuf>;
    let mut cmd_set_here = false;
    for step in trigger_steps.iter().chain(&stage.steps) {
        let line = step.span.start;
        let ins = scope.step(step)?;
        ran = false;
        run_upper = None;
        let created_at = Some(image::rfc3339(created));
        let cfg = &mut state.config.config;
        let mut layer_entries: Option<Vec<Entry>> = None;
        match &ins {
            Instruction::Arg(_) => {}
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
            Instruction::Run(r) => {
                let run_env = scope.run_env();
                let others = RunSources {
                    ctx,
                    df,
                    done,
                    opts,
                };
                let (entries, scratch) = run_step(r, &state, &run_env, store, step, line, &others)?;
                run_upper = Some(scratch.path().join("upper"));
                temps.push(scratch);
                ran = true;
                layer_entries = (!entries.is_empty()).then_some(entries);
            }
            Instruction::Cmd(c) => {
                cfg.cmd = Some(command_argv(c, &cfg.shell));
                cmd_set_here = true;
            }
            Instruction::Entrypoint(c) => {
                cfg.entrypoint = Some(command_argv(c, &cfg.shell));
                if inherited_cmd && !cmd_set_here {
                    cfg.cmd = None;
                }
            }
            Instruction::Shell(s) => cfg.shell = s.clone(),
            Instruction::Workdir(w) => {
                let dir = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{}", cfg.working_dir.trim_end_matches('/'), w)
                };
                let dir = crate::frontend::dockerignore::clean_path(&dir);
                cfg.working_dir = dir.clone();
                let user = cfg.user.clone();
                let owner = owner::resolve_owner(&user, line, &mut |p| state.read_file(store, p))?;
                let mut dirs = parent_dirs(dir.trim_start_matches('/'), true, owner);
                // Like Docker, only missing directories are created; existing ones keep their
                // mode and owner (think /tmp), and nothing new means no layer.
                let mut missing = Vec::new();
                for d in dirs.drain(..) {
                    if !state.exists(store, &d.path)? {
                        missing.push(d);
                    }
                }
                if !missing.is_empty() {
                    layer_entries = Some(missing);
                }
            }
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
            Instruction::StopSignal(s) => cfg.stop_signal = s.clone(),
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
            Instruction::Copy(c) | Instruction::Add(c) => {
                let is_add = matches!(ins, Instruction::Add(_));
                let mut sources = copy::Sources {
                    store,
                    ctx,
                    df,
                    done,
                    named_contexts: &opts.named_contexts,
                    platform: Some(platform.as_deref().unwrap_or(&opts.platforms.target)),
                    registry: &opts.registry,
                    temps: &mut temps,
                };
                layer_entries = Some(copy::copy_entries(c, is_add, &state, &mut sources, line)?);
            }
        }
        let created_by = history_text(step.original.as_str(), &ins);
        match layer_entries {
            Some(entries) => {
                if !ran {
                    for e in &entries {
                        state.files.insert(e.path.clone(), e.clone());
                    }
                }
                let desc = write_layer(store, entries, opts)?;
                state.keep.extend(temps.drain(..).map(std::sync::Arc::new));
                state.config.rootfs.diff_ids.push(desc.1);
                state.layers.push(desc.0);
                if let Some(upper) = run_upper.take() {
                    let diff_id = state.config.rootfs.diff_ids.last().expect("pushed");
                    let _ = crate::snapshot::adopt_upper(store, &upper, diff_id);
                }
                if ran {
                    // A RUN may change anything: from here on the stage's files are read
                    // from its unpacked layers, not from what this build wrote.
                    state.files.clear();
                    state.base_layers = state.layers.len();
                }
                state.config.history.push(History {
                    created: created_at,
                    created_by,
                    comment: "buildkit.dockerfile.v0".into(),
                    empty_layer: false,
                });
            }
            None => state.config.history.push(History {
                created: created_at,
                created_by,
                comment: "buildkit.dockerfile.v0".into(),
                empty_layer: true,
            }),
        }
    }
    Ok(state)
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
    let (mounts, secrets) = resolve_mounts(r, store, line, others)?;
    let no_network = match r.network.as_deref() {
        None | Some("default") | Some("host") => false,
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
    if let Some((client, r)) = &state.base_remote {
        crate::registry::pull::fetch_blobs(client, r, &state.layers[..state.base_layers], store)
            .map_err(|e| BuildError::Base(base::BaseError::Registry(e)))?;
    }
    let unpack_err = |source| BuildError::Unpack {
        image: state.base_name.clone(),
        source,
    };
    let mut lowers: Vec<PathBuf> = state
        .layers
        .iter()
        .zip(&state.config.rootfs.diff_ids)
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
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: if cfg.working_dir.is_empty() {
            "/".into()
        } else {
            cfg.working_dir.clone()
        },
        uid: uid as u32,
        gid: gid as u32,
        hostname: "rbuild".into(),
        no_network,
    };
    let shown = step.original.trim().to_string();
    crate::exec::run(&spec, &secrets, &shown).map_err(|e| {
        let hint = match &e {
            crate::exec::ExecError::NotRoot => {
                Some("run rbuild as root (for example in a privileged CI container)")
            }
            crate::exec::ExecError::Failed { .. } => Some("fix the command; its output is above"),
            crate::exec::ExecError::Setup(_) => None,
        };
        BuildError::step(line, e.to_string(), hint)
    })?;
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

/// What a RUN's mounts may read besides the stage itself.
struct RunSources<'a> {
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
                            st.base_remote.as_ref(),
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
    entries: Vec<Entry>,
    opts: &BuildOptions,
) -> Result<(Descriptor, String), BuildError> {
    let io = |e: std::io::Error| {
        BuildError::Store(StoreError::Io {
            op: "write layer",
            path: store.root().join("ingest"),
            source: e,
        })
    };
    let lw = LayerWriter::new(store.ingest()?, opts.compression).map_err(io)?;
    let lw = write_tar(entries, opts.epoch, lw).map_err(io)?;
    let (raw, ingest) = lw.finish().map_err(io)?;
    let (digest, size) = ingest.commit(None)?;
    Ok((
        Descriptor {
            media_type: opts.compression.media_type().into(),
            digest: digest.to_string(),
            size,
            annotations: BTreeMap::new(),
        },
        raw.diff_id.to_string(),
    ))
}
