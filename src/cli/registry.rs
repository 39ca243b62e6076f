//! `rbuild pull`, `push`, `tag`, `login`, `logout`, and the registry client every command shares.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use crate::content::{Store, TagEntry};
use crate::reference::Reference;
use crate::registry::credentials::Credential;
use crate::registry::{pull, push, Client, Options, RegistryError};

use super::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryArgs, TagArgs};
use super::error::{CliError, ExitKind};
use super::store::open;

/// The registry client for these flags.
pub(super) fn client(a: &RegistryArgs) -> Arc<Client> {
    let mut opts = Options::from_env();
    opts.insecure = a.insecure.clone();
    opts.mirrors = a.mirrors.clone();
    opts.debug |= a.debug;
    Arc::new(Client::new(opts))
}

/// Parses a user-given image name (`nginx`, `host:5000/app:v1`), tag defaulting to latest.
pub(super) fn parse_ref(s: &str) -> Result<Reference, CliError> {
    Reference::parse_docker(s)
        .map(Reference::with_default_tag)
        .map_err(|e| {
            CliError::new(
                ExitKind::InvalidReference,
                format!("invalid image reference {s:?}: {e}"),
            )
            .hinted(e.hint())
        })
}

fn store_err(e: crate::content::StoreError) -> CliError {
    CliError::new(ExitKind::Failure, e.to_string())
}

/// The store's entry for `name`.
fn tagged(store: &Store, name: &Reference) -> Result<TagEntry, CliError> {
    let tags = store.tags().map_err(store_err)?;
    tags.get(&name.to_string()).cloned().ok_or_else(|| {
        CliError::new(
            ExitKind::Failure,
            format!("no image {} in the store", name.familiar_string()),
        )
        .hinted("`rbuild images` lists what the store holds; build or pull it first")
    })
}

/// Where-to-fetch map of a tag entry, parsed.
pub(super) fn sources_of(entry: &TagEntry) -> BTreeMap<String, Reference> {
    entry
        .sources
        .iter()
        .filter_map(|(d, r)| Reference::parse(r).ok().map(|r| (d.clone(), r)))
        .collect()
}

/// Pushes `manifest` to `dest` and prints the pinned name.
pub(super) fn push_one(
    client: &Client,
    store: &Store,
    manifest: &crate::content::Descriptor,
    dest: &Reference,
    sources: &BTreeMap<String, Reference>,
    quiet: bool,
) -> Result<(), CliError> {
    let report = push::push(client, store, manifest, dest, sources)?;
    if !quiet {
        eprintln!(
            "pushed {}: {} uploaded ({}), {} mounted, {} already there",
            dest.familiar_string(),
            report.uploaded,
            super::store::human(report.bytes),
            report.mounted,
            report.existing
        );
    }
    println!("{}@{}", dest.familiar_name(), report.digest);
    Ok(())
}

pub(super) fn pull_cmd(a: PullArgs) -> Result<(), CliError> {
    let r = parse_ref(&a.reference)?;
    let store = open(&a.store)?;
    let _gc = store.gc_lock(false).map_err(store_err)?;
    let client = client(&a.registry);
    let platform = super::platform_flag(a.platform.as_deref())?;
    let res = pull::resolve(&client, &r, &platform, &store)?;
    pull::fetch_blobs(&client, &res.pinned, &res.layers, &store)?;
    let created = res.config.created.clone().unwrap_or_default();
    store
        .set_tag(&r.to_string(), &res.manifest, &created)
        .map_err(store_err)?;
    eprintln!(
        "pulled {} ({} layer{})",
        r.familiar_string(),
        res.layers.len(),
        if res.layers.len() == 1 { "" } else { "s" }
    );
    println!("{}@{}", r.familiar_name(), res.manifest.digest);
    Ok(())
}

pub(super) fn push_cmd(a: PushArgs) -> Result<(), CliError> {
    let src = parse_ref(&a.source)?;
    let dest = match &a.destination {
        Some(d) => parse_ref(d)?,
        None => src.clone(),
    };
    let store = open(&a.store)?;
    let entry = tagged(&store, &src)?;
    let client = client(&a.registry);
    push_one(
        &client,
        &store,
        &entry.manifest,
        &dest,
        &sources_of(&entry),
        false,
    )
}

pub(super) fn tag_cmd(a: TagArgs) -> Result<(), CliError> {
    let src = parse_ref(&a.source)?;
    let dst = parse_ref(&a.target)?;
    let store = open(&a.store)?;
    let entry = tagged(&store, &src)?;
    store
        .set_tag_with_sources(
            &dst.to_string(),
            &entry.manifest,
            &entry.created,
            entry.sources,
        )
        .map_err(store_err)
}

/// `docker.io` for Docker Hub's aliases, else the host as given.
fn server_host(s: &str) -> String {
    let h = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or(s);
    match h {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

pub(super) fn login_cmd(a: LoginArgs) -> Result<(), CliError> {
    let host = server_host(&a.server);
    let secret = match (&a.password, a.password_stdin) {
        (Some(p), false) => {
            eprintln!("warning: a password on the command line is visible to other users; use --password-stdin");
            p.clone()
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| {
                CliError::new(
                    ExitKind::Failure,
                    format!("reading the password from stdin: {e}"),
                )
            })?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => {
            return Err(CliError::new(
                ExitKind::Usage,
                "give the password with --password-stdin (or -p)",
            )
            .hinted("e.g. `echo \"$TOKEN\" | rbuild login ghcr.io -u USER --password-stdin`"))
        }
    };
    let cred = Credential {
        username: a.username.clone(),
        secret,
    };
    // Check the credential against the registry before saving it, as docker login does.
    let mut opts = Options::from_env();
    opts.insecure = a.registry.insecure.clone();
    opts.credentials.fixed = Some((host.clone(), cred.clone()));
    let saver = opts.credentials.clone();
    let c = Client::new(opts);
    let h = c.host(&host)?;
    let scope = crate::registry::client::Scope { entries: vec![] };
    let resp = c.send(&h, &scope, &format!("login to {host}"), &|http, base| {
        http.get(format!("{base}/v2/"))
    })?;
    if !resp.status().is_success() {
        return Err(RegistryError::Protocol {
            host: host.clone(),
            message: format!("login check answered {}", resp.status()),
        }
        .into());
    }
    let path = saver
        .login(&host, &cred)
        .map_err(|m| CliError::new(ExitKind::Failure, m))?;
    eprintln!("Login Succeeded (credentials saved in {})", path.display());
    Ok(())
}

pub(super) fn logout_cmd(a: LogoutArgs) -> Result<(), CliError> {
    let host = server_host(&a.server);
    let store = crate::registry::credentials::CredentialStore::from_env();
    let removed = store
        .logout(&host)
        .map_err(|m| CliError::new(ExitKind::Failure, m))?;
    if removed {
        eprintln!("Removing login credentials for {host}");
    } else {
        eprintln!("Not logged in to {host}");
    }
    Ok(())
}
