//! Raw command-line arguments (clap only; no logic).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rbuild: build OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Build an image from a Dockerfile (also the default: `rbuild -t app:v1 .`).
    Build(Box<BuildArgs>),
    /// List the images in the store.
    Images(StoreArgs),
    /// Remove tags from the store (blobs go with `rbuild prune`).
    Rmi(RmiArgs),
    /// Remove build cache (by age, size or all) and blobs nothing refers to.
    Prune(PruneArgs),
    /// Verify the store: blobs hash to their names, images and cache records are whole, no
    /// mounts left over (exit 1 on damage).
    Check(StoreArgs),
    /// Show the parts of an image reference, with Docker's defaults marked.
    #[command(name = "inspect-ref")]
    InspectRef(InspectRefArgs),
    /// Check a Dockerfile's syntax and print its instructions as BuildKit's parser sees them.
    Parse(ParseArgs),
    /// Check a Dockerfile against image best practices (exit 1 when there are findings).
    Lint(LintArgs),
    /// Rewrite every registry FROM to `name:tag@sha256:...`, or `--check` they are pinned.
    Pin(PinArgs),
    /// Show an image's config, layers and history (from the store, else the registry).
    Inspect(InspectArgs),
    /// Pull an image from a registry into the store.
    Pull(PullArgs),
    /// Push an image from the store to a registry.
    Push(PushArgs),
    /// Give an image in the store another name.
    Tag(TagArgs),
    /// Save credentials for a registry (in Docker's config.json).
    Login(LoginArgs),
    /// Remove saved credentials for a registry.
    Logout(LogoutArgs),
}

/// How to reach registries (shared by build, pull and push).
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Allow plain HTTP (and self-signed HTTPS failures fall back to HTTP) for this registry
    /// host (repeatable; loopback hosts are always allowed).
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
    /// Try this mirror first for docker.io images (repeatable).
    #[arg(long = "registry-mirror")]
    pub mirrors: Vec<String>,
    /// Log every registry request (method, URL, status) to stderr; passwords, tokens and
    /// signed URLs are never shown. Also `RBUILD_DEBUG=1`.
    #[arg(long, short = 'D', visible_alias = "verbose")]
    pub debug: bool,
}

/// `rbuild pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image, e.g. `nginx:1.25` or `localhost:5000/app@sha256:...`.
    pub reference: String,
    /// Platform to pull from a multi-platform image (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the store.
    pub source: String,
    /// Where to push (default: the same name).
    pub destination: Option<String>,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// An image in the store.
    pub source: String,
    /// The new name.
    pub target: String,
    /// Store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host, e.g. `ghcr.io` or `localhost:5000` (default docker.io).
    #[arg(default_value = "docker.io")]
    pub server: String,
    /// Username.
    #[arg(short = 'u', long)]
    pub username: String,
    /// Read the password (or token) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The password on the command line (visible to other users: prefer --password-stdin).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `rbuild logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host (default docker.io).
    #[arg(default_value = "docker.io")]
    pub server: String,
}

/// `rbuild inspect-ref`.
#[derive(Debug, Args)]
pub struct InspectRefArgs {
    /// The reference, e.g. `nginx`, `ghcr.io/org/app:1.2`, `localhost:5000/x@sha256:...`.
    pub reference: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `rbuild parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile (`-` reads standard input).
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: PathBuf,
}

/// `rbuild pin`.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// The Dockerfile to rewrite (`-` reads standard input and prints the result).
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: PathBuf,
    /// Only check: exit 1 and list the FROM lines without a digest (no network).
    #[arg(long)]
    pub check: bool,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `rbuild inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image, e.g. `app:v1` (store) or `registry.example.com/team/app:v1`.
    pub reference: String,
    /// Output: text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Platform to show from a multi-platform image (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The build context (for the .dockerignore check).
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default `<context>/Dockerfile`; `-` reads standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Output: text, json or sarif (for CI annotations).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Rewrite what can be fixed mechanically (shell-form CMD/ENTRYPOINT → JSON form, ADD →
    /// COPY) and show the changes.
    #[arg(long)]
    pub fix: bool,
}

/// Where the store lives.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Store root (default `$XDG_DATA_HOME/rbuild` or `~/.local/share/rbuild`).
    #[arg(long, env = "RBUILD_ROOT")]
    pub root: Option<PathBuf>,
}

/// `rbuild prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every cache record (tagged images are kept).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// `until=DURATION`: remove cache records not used for that long (e.g. `until=24h`).
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Keep at most this much cached layer data (e.g. `10GB`), least recently used first out.
    #[arg(long = "keep-storage")]
    pub keep_storage: Option<String>,
    /// Store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to untag.
    #[arg(required = true)]
    pub refs: Vec<String>,
    /// Store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory; `-` to read a Dockerfile or a tar archive of the
    /// context (plain or compressed) from standard input; a Git URL (`https://host/r.git`,
    /// `git@host:r`, `github.com/o/r`, with `#REF:DIR`); or an HTTP(S) URL of an archive or a
    /// Dockerfile.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name and tag, `name[:tag]` (repeatable).
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default `<context>/Dockerfile`; `-` reads standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// `KEY=VALUE`, or `KEY` to take the value from the environment (repeatable).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage instead of the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// `KEY=VALUE` label added to the image (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Target platform, `os/arch[/variant]` (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// `KEY=VALUE` (or `manifest:KEY=VALUE`) annotation on the image manifest (repeatable).
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// Accepted for buildx scripts: rbuild makes no provenance attestation, so only `false`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "false")]
    pub provenance: Option<String>,
    /// Accepted for buildx scripts: rbuild makes no SBOM attestation, so only `false`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "false")]
    pub sbom: Option<String>,
    /// Refused with a hint: there is no daemon to load into (use `-o type=docker,dest=F.tar`).
    #[arg(long)]
    pub load: bool,
    /// When to resolve registry bases again: `always`, `missing`, `never`, `newer`
    /// (default: untagged and `:latest` bases every build, other tags once).
    #[arg(long, default_value = "default", num_args = 0..=1, require_equals = true, default_missing_value = "always")]
    pub pull: String,
    /// Network for RUN steps without their own `--network`: `default` and `host` (the
    /// host's network; there is no daemon bridge) or `none`.
    #[arg(long, default_value = "default", value_name = "MODE")]
    pub network: String,
    /// A line for /etc/hosts in RUN steps: `HOST:IP` or `HOST=IP` (repeatable).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// A resource limit for RUN steps: `NAME=SOFT[:HARD]`, e.g. `nofile=1024:2048`
    /// (repeatable; `-1` is unlimited).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Size of /dev/shm in RUN steps, e.g. `64m` or `1g`.
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// How RUN is isolated: `auto` (namespaces and overlay when allowed, else chroot),
    /// `namespaces` (`oci`), `chroot` (no mounts: unprivileged pods).
    #[arg(long, default_value = "auto")]
    pub isolation: String,
    /// Say why each step missed the cache in the terminal view too (plain and rawjson always
    /// do).
    #[arg(long)]
    pub explain_cache: bool,
    /// Run every step instead of taking results from the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Run every step of these stages (name or index; repeatable or comma-separated).
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Import cache: `type=registry,ref=REF`, `REF`, or `type=local,src=DIR` (repeatable).
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Export cache: `type=registry,ref=REF[,mode=min|max]`, `type=local,dest=DIR`, or
    /// `type=inline` (records in the pushed image's config).
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Write the image digest to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (JSON) to this file.
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Run the best-practice checks (as `rbuild lint`) and stop: exit 1 when they find
    /// something.
    #[arg(long)]
    pub check: bool,
    /// Print only the image digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Progress output: auto, plain, tty, quiet (plain lines on standard error; `CACHED` or
    /// the reason a step missed the cache).
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Output: `type=oci,dest=DIR|FILE.tar`, `type=docker,dest=FILE.tar`, `type=local,dest=DIR` (repeatable).
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Layer compression: gzip, zstd or uncompressed.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Named context, `NAME=oci-layout://PATH[:tag]` or `NAME=docker-image://REF` (then `FROM NAME`).
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`
    /// (repeatable; never stored in the image, the store or logs).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the socket in $SSH_AUTH_SOCK) or
    /// `ID=/path/to/socket` (repeatable).
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// Push every `-t` tag to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Store.
    #[command(flatten)]
    pub store: StoreArgs,
}
