//! `rbuild build`: flags → build options, run the build, tag, write outputs, print the digest.

use std::collections::BTreeMap;

use crate::build::{self, BuildError, BuildOptions};
use crate::cache::remote::{self, CacheSpec, Imported};
use crate::export::archive::{write_archive, Flavor};
use crate::export::Output;
use crate::frontend::expand::{host_platform, Platforms};
use crate::frontend::instructions::Dockerfile;
use crate::layer::compress::Compression;
use crate::reference::Reference;

use super::args::BuildArgs;
use super::error::{CliError, ExitKind};
use super::parse::{frontend_error, read_dockerfile};

fn usage(msg: impl Into<String>, hint: &str) -> CliError {
    CliError::new(ExitKind::Usage, msg).hinted(hint)
}

fn key_values(
    list: &[String],
    flag: &str,
    from_env: bool,
) -> Result<Vec<(String, String)>, CliError> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None if from_env => Ok((kv.clone(), std::env::var(kv).unwrap_or_default())),
            None => Err(usage(
                format!("{flag} {kv:?} has no value"),
                &format!("write `{flag} KEY=VALUE`"),
            )),
        })
        .collect()
}

/// `--annotation` values as manifest annotations. buildx's other targets (`index:`,
/// descriptors, per-platform) have no object here: rbuild makes one manifest.
fn annotations(list: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for a in list {
        let (key, value) = a.split_once('=').ok_or_else(|| {
            usage(
                format!("--annotation {a:?} has no value"),
                "write `--annotation KEY=VALUE`",
            )
        })?;
        let key = match key.split_once(':') {
            // `manifest[os/arch]:` names the one platform built here.
            Some((kind, k)) if kind == "manifest" || kind.starts_with("manifest[") => k,
            Some((kind, _)) if !kind.contains('.') && !kind.contains('/') => {
                return Err(usage(
                    format!(
                    "--annotation {a:?}: rbuild annotates the image manifest only, not {kind:?}"
                ),
                    "write `--annotation KEY=VALUE` or `--annotation manifest:KEY=VALUE`",
                ))
            }
            _ => key,
        };
        if key.is_empty() {
            return Err(usage(
                format!("--annotation {a:?} has an empty key"),
                "write `--annotation KEY=VALUE`, e.g. org.opencontainers.image.source=https://...",
            ));
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// An `--add-host HOST:IP` (or `HOST=IP`, for IPv6) as an `/etc/hosts` line.
fn extra_host(spec: &str) -> Result<String, CliError> {
    let bad = |why: &str| {
        usage(
            format!("invalid --add-host {spec:?}: {why}"),
            "write --add-host NAME:IP, e.g. --add-host db.local:10.0.0.5 (NAME=IP for IPv6)",
        )
    };
    let (host, ip) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .ok_or_else(|| bad("no IP address"))?;
    if ip == "host-gateway" {
        return Err(bad(
            "host-gateway names a daemon's bridge; RUN shares this machine's network, so use 127.0.0.1",
        ));
    }
    let ip: std::net::IpAddr = ip
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(bad("the host name is empty or has spaces"));
    }
    Ok(format!("{ip}\t{host}"))
}

pub(super) fn run(mut a: BuildArgs) -> Result<(), CliError> {
    // `rbuild build -`: the context (or a lone Dockerfile) comes from standard input.
    // A URL: a Git repository or a file over HTTP(S), fetched into scratch space.
    let arg = a.context.to_string_lossy().into_owned();
    let remote = (!a.context.exists())
        .then(|| super::remote_context::classify(&arg))
        .flatten();
    let stdin_context = if arg == "-" || remote.is_some() {
        let store = super::store::open(&a.store)?;
        let c = match &remote {
            Some(r) => super::remote_context::fetch(&store, &arg, r, a.file.as_deref())?,
            None => super::stdin_context::read(&store, a.file.as_deref())?,
        };
        a.context = c.context.clone();
        a.file = Some(c.dockerfile.clone());
        Some(c)
    } else {
        None
    };
    let df_path = a
        .file
        .clone()
        .unwrap_or_else(|| a.context.join("Dockerfile"));
    if !a.context.is_dir() {
        return Err(usage(
            format!("build context {} is not a directory", a.context.display()),
            "pass the directory to build from, e.g. `rbuild -t app:v1 .`",
        ));
    }
    let (mut df_name, text) = read_dockerfile(&df_path)?;
    if let Some(c) = &stdin_context {
        df_name = c.name.clone();
    }
    let df = Dockerfile::parse(&text).map_err(|e| frontend_error(&df_name, e))?;
    let file_for_facts = a.file.as_deref().filter(|f| f.as_os_str() != "-");
    let shown = !a.quiet && a.progress != "quiet";
    // The context's size (walked only without a .dockerignore) is the one slow fact: during a
    // build it is walked beside the build and its warning comes with the build's warnings.
    let ignore = super::lint::ignore_rules(&a.context, file_for_facts)?;
    let has_ignore = ignore.is_some();
    let facts = if a.check {
        super::lint::context_facts(&a.context, has_ignore)
    } else {
        crate::lint::ContextFacts {
            has_dockerignore: has_ignore,
            size: None,
        }
    };
    let size_walk = (shown && !a.check && !has_ignore).then(|| {
        let context = a.context.clone();
        std::thread::spawn(move || super::lint::context_facts(&context, false))
    });
    let findings = crate::lint::lint(&df, &text, &facts);
    if a.check {
        print!("{}", super::lint::text(&df_name, &findings));
        if findings.is_empty() {
            return Ok(());
        }
        return Err(CliError::new(
            ExitKind::Failure,
            format!(
                "{} check{} failed",
                findings.len(),
                if findings.len() == 1 { "" } else { "s" }
            ),
        )
        .hinted(
            "fix them, or skip a check with `# check=skip=NAME` at the top of the Dockerfile",
        ));
    }
    if !a.quiet && a.progress != "quiet" {
        for f in &findings {
            eprintln!(
                "warning: {df_name}:{} {}: {} (fix: {})",
                f.line, f.check, f.message, f.fix
            );
        }
    }
    let mut tags = Vec::new();
    for t in &a.tags {
        let r = Reference::parse_docker(t).map_err(|e| {
            CliError::new(
                ExitKind::InvalidReference,
                format!("invalid tag {t:?}: {e}"),
            )
            .hinted(e.hint())
        })?;
        if r.digest.is_some() {
            return Err(usage(
                format!("tag {t:?} contains a digest"),
                "a tag names an image to create: `name[:tag]` without `@sha256:...`",
            ));
        }
        tags.push(r);
    }
    let outputs = a
        .outputs
        .iter()
        .map(|o| {
            Output::parse(o).map_err(|e| {
                usage(
                    format!("invalid --output {o:?}: {e}"),
                    "use type=oci,dest=DIR|FILE.tar, type=docker,dest=FILE.tar or type=local,dest=DIR",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let compression = Compression::parse(&a.compression).ok_or_else(|| {
        usage(
            format!("unknown compression {:?}", a.compression),
            "use --compression gzip, zstd or uncompressed",
        )
    })?;
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.parse::<u64>().map_err(|_| {
            usage(
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"),
                "set it to a Unix time, e.g. `$(git log -1 --format=%ct)`",
            )
        })?),
        _ => None,
    };
    let target = super::platform_flag(a.platform.as_deref())?.to_string();
    if a.load {
        return Err(usage(
            "--load needs a Docker daemon to load the image into, and rbuild runs without one",
            "write an archive with `-o type=docker,dest=image.tar` and run `docker load -i image.tar`, or --push",
        ));
    }
    for (flag, value) in [("--provenance", &a.provenance), ("--sbom", &a.sbom)] {
        if let Some(v) = value.as_deref().filter(|v| !matches!(*v, "false" | "0")) {
            return Err(usage(
                format!("{flag}={v}: rbuild does not make attestations"),
                &format!("drop {flag}, or write {flag}=false"),
            ));
        }
    }
    if a.push && tags.is_empty() {
        return Err(usage(
            "--push needs at least one -t NAME[:TAG]",
            "name the image to push with -t",
        ));
    }
    let client = super::registry::client(&a.registry);
    let progress = super::progress::Progress::new(&a.progress, a.quiet, a.explain_cache)?;
    let opts = BuildOptions {
        context: a.context.clone(),
        ignore,
        build_args: key_values(&a.build_args, "--build-arg", true)?,
        target: a.target.clone(),
        platforms: Platforms {
            target,
            build: host_platform(),
        },
        labels: key_values(&a.labels, "--label", false)?,
        epoch,
        compression,
        named_contexts: key_values(&a.build_contexts, "--build-context", false)?
            .into_iter()
            .map(|(k, v)| {
                let v = v
                    .strip_prefix("docker-image://")
                    .map(String::from)
                    .unwrap_or(v);
                (k, v)
            })
            .collect(),
        registry: Some(client.clone()),
        secrets: read_secrets(&a.secrets)?,
        no_cache: a.no_cache,
        no_cache_filter: a.no_cache_filter.clone(),
        cache_from: Vec::new(),
        progress: progress.as_ref().map(|p| p.reporter()),
        inline_cache: a.cache_to.iter().any(|s| s.contains("type=inline")),
        ssh: read_ssh(&a.ssh)?,
        no_network: match a.network.as_str() {
            "default" | "host" => false,
            "none" => true,
            other => {
                return Err(usage(
                    format!("unknown --network {other:?}"),
                    "use default, host or none",
                ))
            }
        },
        annotations: annotations(&a.annotations)?,
        ulimits: a
            .ulimits
            .iter()
            .map(|u| {
                crate::exec::limits::Ulimit::parse(u).map_err(|e| {
                    usage(
                        format!("invalid --ulimit {u:?}: {e}"),
                        "write --ulimit NAME=SOFT[:HARD], e.g. --ulimit nofile=1024:2048",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        shm_size: a
            .shm_size
            .as_deref()
            .map(|s| {
                crate::exec::limits::parse_size(s).map_err(|e| {
                    usage(
                        format!("invalid --shm-size: {e}"),
                        "write a size such as --shm-size 256m",
                    )
                })
            })
            .transpose()?,
        extra_hosts: a
            .add_hosts
            .iter()
            .map(|h| extra_host(h))
            .collect::<Result<_, _>>()?,
        isolation: crate::exec::chroot::Isolation::parse(&a.isolation).ok_or_else(|| {
            usage(
                format!("unknown --isolation {:?}", a.isolation),
                "use auto, namespaces (oci) or chroot",
            )
        })?,
        pull: crate::build::base::PullPolicy::parse(&a.pull).ok_or_else(|| {
            usage(
                format!("unknown --pull {:?}", a.pull),
                "use always, missing, never or newer",
            )
        })?,
    };
    let cache_to = a
        .cache_to
        .iter()
        .map(|s| {
            CacheSpec::parse(s, true).map_err(|e| {
                usage(
                    format!("invalid --cache-to {s:?}: {e}"),
                    "use type=registry,ref=REG/REPO:TAG[,mode=max], type=local,dest=DIR or type=inline",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let store = super::store::open(&a.store)?;
    // Held until the image is tagged and exported: `rbuild prune` waits for it.
    let _gc = store
        .gc_lock(false)
        .map_err(|e| CliError::new(ExitKind::Failure, e.to_string()))?;
    let mut opts = opts;
    for s in &a.cache_from {
        let spec = CacheSpec::parse(s, false).map_err(|e| {
            usage(
                format!("invalid --cache-from {s:?}: {e}"),
                "use type=registry,ref=REG/REPO:TAG, REG/REPO:TAG or type=local,src=DIR",
            )
        })?;
        match import_cache(&spec, &client, &store) {
            Ok(imp) => opts.cache_from.push(imp),
            // Like BuildKit: a cache that cannot be read is a warning, not a failure.
            Err(e) if !a.quiet => eprintln!("warning: --cache-from {s}: {e}; building without it"),
            Err(_) => {}
        }
    }
    let started = std::time::Instant::now();
    let result = build::build(&df, &store, &opts);
    if let Some(p) = progress {
        p.finish();
    }
    let built = result.map_err(|e| build_error(&df_name, e))?;
    if !a.quiet && a.progress != "quiet" {
        let size: u64 = built.layers.iter().map(|l| l.size).sum::<u64>() + built.config_desc.size;
        eprintln!(
            "built in {:.2}s: {} step{} run, {} cached; image {} ({})",
            started.elapsed().as_secs_f64(),
            built.counts.0,
            if built.counts.0 == 1 { "" } else { "s" },
            built.counts.1,
            &built.manifest.digest[..19.min(built.manifest.digest.len())],
            super::store::human(size)
        );
    }
    for w in &built.warnings {
        if !a.quiet {
            eprintln!("warning: {w}");
        }
    }
    if let Some(facts) = size_walk.and_then(|t| t.join().ok()) {
        for f in crate::lint::lint(&df, &text, &facts).iter().filter(|f| {
            !findings
                .iter()
                .any(|g| g.check == f.check && g.line == f.line)
        }) {
            eprintln!(
                "warning: {df_name}:{} {}: {} (fix: {})",
                f.line, f.check, f.message, f.fix
            );
        }
    }
    let created = built.config.created.clone().unwrap_or_default();
    let sources: BTreeMap<String, String> = built
        .sources
        .iter()
        .map(|(d, r)| (d.clone(), format!("{}/{}", r.domain, r.path)))
        .collect();
    for t in &tags {
        store
            .set_tag_with_sources(&t.to_string(), &built.manifest, &created, sources.clone())
            .map_err(|e| CliError::new(ExitKind::Failure, e.to_string()))?;
    }
    if !outputs.is_empty() {
        // Outputs hold every blob: fetch the base layers nothing needed so far.
        let mut by_source: BTreeMap<String, (Reference, Vec<crate::content::Descriptor>)> =
            BTreeMap::new();
        for l in &built.layers {
            if let Some(r) = built.sources.get(&l.digest) {
                by_source
                    .entry(r.to_string())
                    .or_insert_with(|| (r.clone(), Vec::new()))
                    .1
                    .push(l.clone());
            }
        }
        for (r, layers) in by_source.values() {
            crate::registry::pull::fetch_blobs(&client, r, layers, &store)?;
        }
    }
    let mtime = opts.epoch.unwrap_or(0);
    for o in &outputs {
        let failed = |what: &str, dest: &std::path::Path, e: String| {
            CliError::new(
                ExitKind::Failure,
                format!("writing {what} {}: {e}", dest.display()),
            )
            .hinted("check that the destination's directory exists and is writable")
        };
        match o {
            Output::OciDir(dir) => {
                let tag = tags.first().and_then(|t| t.tag.clone());
                crate::export::write_oci_dir(&store, &built, dir, tag.as_deref())
                    .map_err(|e| failed("OCI layout", dir, e.to_string()))?;
            }
            Output::OciTar(file) | Output::DockerTar(file) => {
                let flavor = if matches!(o, Output::OciTar(_)) {
                    Flavor::Oci
                } else {
                    Flavor::Docker
                };
                write_archive(&store, &built, file, &tags, flavor, mtime)
                    .map_err(|e| failed("archive", file, e.to_string()))?;
            }
            Output::Local(dir) => {
                crate::export::local::write_local(&store, &built, dir)
                    .map_err(|e| failed("files to", dir, e.to_string()))?;
            }
        }
    }
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &built.manifest.digest).map_err(|e| {
            CliError::new(ExitKind::Failure, format!("writing {}: {e}", p.display()))
        })?;
    }
    if let Some(p) = &a.metadata_file {
        let meta = serde_json::json!({
            "containerimage.digest": built.manifest.digest,
            "containerimage.config.digest": built.config_desc.digest,
            "image.name": tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","),
        });
        std::fs::write(p, serde_json::to_vec_pretty(&meta).expect("json")).map_err(|e| {
            CliError::new(ExitKind::Failure, format!("writing {}: {e}", p.display()))
        })?;
    }
    if !a.quiet {
        for t in &tags {
            eprintln!("naming to {t}");
        }
    }
    export_cache(&cache_to, &built, &client, &store, &tags, a.quiet)?;
    if a.push {
        for t in &tags {
            super::registry::push_one(
                &client,
                &store,
                &built.manifest,
                t,
                &built.sources,
                a.quiet,
            )?;
        }
    } else {
        println!("{}", built.manifest.digest);
    }
    Ok(())
}

/// `--secret id=NAME[,src=FILE|,env=VAR]` values; without src or env, the variable NAME.
fn read_ssh(list: &[String]) -> Result<BTreeMap<String, std::path::PathBuf>, CliError> {
    let mut out = BTreeMap::new();
    for s in list {
        let (id, path) = match s.split_once('=') {
            Some((id, p)) => (id.to_string(), std::path::PathBuf::from(p)),
            None => match std::env::var_os("SSH_AUTH_SOCK") {
                Some(p) => (s.clone(), std::path::PathBuf::from(p)),
                None => {
                    return Err(usage(
                        format!("--ssh {s}: SSH_AUTH_SOCK is not set"),
                        "start an agent (`eval $(ssh-agent)`), or give the socket: --ssh default=/path/to/agent.sock",
                    ))
                }
            },
        };
        use std::os::unix::fs::FileTypeExt;
        if !std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            return Err(usage(
                format!("--ssh {s}: {} is not a socket", path.display()),
                "give the agent's socket (the value of SSH_AUTH_SOCK)",
            ));
        }
        out.insert(id, path);
    }
    Ok(out)
}

fn read_secrets(list: &[String]) -> Result<BTreeMap<String, Vec<u8>>, CliError> {
    let mut out = BTreeMap::new();
    for s in list {
        let fields: BTreeMap<&str, &str> = s.split(',').filter_map(|f| f.split_once('=')).collect();
        let id = fields.get("id").copied().ok_or_else(|| {
            usage(
                format!("--secret {s:?} has no id="),
                "write `--secret id=NAME,src=FILE` or `--secret id=NAME,env=VAR`",
            )
        })?;
        let data = if let Some(src) = fields.get("src").or(fields.get("source")) {
            std::fs::read(src).map_err(|e| {
                CliError::new(
                    ExitKind::Failure,
                    format!("--secret id={id}: reading {src}: {e}"),
                )
                .hinted("check the file path given with src=")
            })?
        } else {
            let var = fields.get("env").copied().unwrap_or(id);
            std::env::var(var).map(String::into_bytes).map_err(|_| {
                usage(
                    format!("--secret id={id}: environment variable {var} is not set"),
                    "set it, or give the secret with src=FILE",
                )
            })?
        };
        out.insert(id.to_string(), data);
    }
    Ok(out)
}

fn build_error(df_name: &str, e: BuildError) -> CliError {
    use crate::build::base::BaseError;
    match e {
        BuildError::Base(BaseError::Registry(r)) => return r.into(),
        BuildError::Base(BaseError::Reference(r)) => {
            return CliError::new(
                ExitKind::InvalidReference,
                format!("invalid base image reference: {r}"),
            )
            .hinted(r.hint())
        }
        _ => {}
    }
    let msg = match e.line() {
        Some(_) => format!("{df_name}:{e}").replacen(":line ", ":", 1),
        None => e.to_string(),
    };
    let mut err = CliError::new(ExitKind::Failure, msg);
    if let Some(h) = e.hint() {
        err = err.hinted(h);
    }
    err
}

/// Reads a `--cache-from`.
fn import_cache(
    spec: &CacheSpec,
    client: &std::sync::Arc<crate::registry::Client>,
    store: &crate::content::Store,
) -> Result<Imported, String> {
    match spec {
        CacheSpec::Registry { reference, .. } => {
            let r = Reference::parse_docker(reference)
                .map_err(|e| format!("invalid reference: {e}"))?
                .with_default_tag();
            remote::import_registry(client, &r, store).map_err(|e| e.to_string())
        }
        CacheSpec::Local { dir, .. } => remote::import_dir(dir),
        CacheSpec::Inline => Err("type=inline is only for --cache-to".into()),
    }
}

/// Writes every `--cache-to`.
fn export_cache(
    specs: &[CacheSpec],
    built: &build::Built,
    client: &std::sync::Arc<crate::registry::Client>,
    store: &crate::content::Store,
    tags: &[Reference],
    quiet: bool,
) -> Result<(), CliError> {
    let fail = |what: &str, e: String| {
        CliError::new(
            ExitKind::Failure,
            format!("exporting the cache to {what}: {e}"),
        )
    };
    for spec in specs {
        let records = |max: bool| {
            if max {
                &built.cache_max
            } else {
                &built.cache_min
            }
        };
        match spec {
            CacheSpec::Inline => {
                if tags.is_empty() && !quiet {
                    eprintln!(
                        "warning: --cache-to type=inline has no effect without -t and --push"
                    );
                }
            }
            CacheSpec::Local { dir, max } => {
                let recs = records(*max);
                let m = remote::write_artifact(store, recs)
                    .map_err(|e| fail(&dir.display().to_string(), e.to_string()))?;
                fetch_layers_of(recs, built, client, store)?;
                remote::write_dir(store, &m, dir, "buildcache")
                    .map_err(|e| fail(&dir.display().to_string(), e.to_string()))?;
            }
            CacheSpec::Registry { reference, max } => {
                let r = Reference::parse_docker(reference)
                    .map_err(|e| {
                        CliError::new(
                            ExitKind::InvalidReference,
                            format!("invalid --cache-to ref {reference:?}: {e}"),
                        )
                        .hinted(e.hint())
                    })?
                    .with_default_tag();
                let recs = records(*max);
                let m = remote::write_artifact(store, recs)
                    .map_err(|e| fail(reference, e.to_string()))?;
                let report = crate::registry::push::push(client, store, &m, &r, &built.sources)?;
                if !quiet {
                    eprintln!(
                        "exported cache to {}: {} step{}, {} blob{} uploaded, {} mounted, {} already there",
                        r.familiar_string(),
                        recs.len(),
                        if recs.len() == 1 { "" } else { "s" },
                        report.uploaded,
                        if report.uploaded == 1 { "" } else { "s" },
                        report.mounted,
                        report.existing
                    );
                }
            }
        }
    }
    Ok(())
}

/// Fetches layers of cache records that are still only in a registry.
fn fetch_layers_of(
    recs: &[(crate::reference::Digest, crate::cache::index::Record)],
    built: &build::Built,
    client: &crate::registry::Client,
    store: &crate::content::Store,
) -> Result<(), CliError> {
    for (_, rec) in recs {
        if let Some(l) = &rec.layer {
            if let Some(r) = built.sources.get(&l.digest) {
                crate::registry::pull::fetch_blobs(client, r, std::slice::from_ref(l), store)?;
            }
        }
    }
    Ok(())
}
