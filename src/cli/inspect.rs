//! `rbuild inspect REF`: an image's config, layers with sizes and history, from the store or
//! a registry (`docker image inspect` + `docker history`); `--format json` for tools.

use crate::content::Store;
use crate::image::{ImageConfig, Manifest};
use crate::reference::Digest;

use super::args::InspectArgs;
use super::error::{CliError, ExitKind};

fn store_err(e: crate::content::StoreError) -> CliError {
    CliError::new(ExitKind::Failure, e.to_string())
}

/// Manifest digest, manifest and config of `r` from the store's tags.
fn from_store(
    store: &Store,
    name: &str,
) -> Result<Option<(String, Manifest, ImageConfig)>, CliError> {
    let tags = store.tags().map_err(store_err)?;
    let Some(entry) = tags.get(name) else {
        return Ok(None);
    };
    let md = Digest::parse(&entry.manifest.digest)
        .map_err(|_| CliError::new(ExitKind::Failure, "corrupt tag entry"))?;
    let m: Manifest = serde_json::from_slice(&store.read(&md).map_err(store_err)?)
        .map_err(|e| CliError::new(ExitKind::Failure, format!("manifest {md}: {e}")))?;
    let cd = Digest::parse(&m.config.digest)
        .map_err(|_| CliError::new(ExitKind::Failure, "corrupt manifest"))?;
    let c: ImageConfig = serde_json::from_slice(&store.read(&cd).map_err(store_err)?)
        .map_err(|e| CliError::new(ExitKind::Failure, format!("config {cd}: {e}")))?;
    Ok(Some((md.to_string(), m, c)))
}

pub(super) fn run(a: InspectArgs) -> Result<(), CliError> {
    let r = super::registry::parse_ref(&a.reference)?;
    let store = super::store::open(&a.store)?;
    let (source, (digest, manifest, config)) = match from_store(&store, &r.to_string())? {
        Some(found) => ("store", found),
        None => {
            let client = super::registry::client(&a.registry);
            let platform = super::platform_flag(a.platform.as_deref())?;
            let res = crate::registry::pull::resolve(&client, &r, &platform, &store)?;
            let m = Manifest {
                schema_version: 2,
                media_type: Some(res.manifest.media_type.clone()),
                config: res.config_desc.clone(),
                layers: res.layers.clone(),
                annotations: Default::default(),
            };
            ("registry", (res.manifest.digest.clone(), m, res.config))
        }
    };
    if a.format == "json" {
        let v = serde_json::json!({
            "name": r.to_string(),
            "source": source,
            "digest": digest,
            "config": config,
            "layers": manifest.layers,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    if a.format != "text" {
        return Err(
            CliError::new(ExitKind::Usage, format!("unknown --format {:?}", a.format))
                .hinted("use text or json"),
        );
    }
    let c = &config.config;
    println!("Name:        {}", r.familiar_string());
    println!("Digest:      {digest} (from the {source})");
    let platform = if config.variant.is_empty() {
        format!("{}/{}", config.os, config.architecture)
    } else {
        format!("{}/{}/{}", config.os, config.architecture, config.variant)
    };
    println!("Platform:    {platform}");
    println!(
        "Created:     {}",
        config.created.clone().unwrap_or_default()
    );
    let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
    println!(
        "Size:        {} compressed, {} layers",
        super::store::human(total),
        manifest.layers.len()
    );
    let show = |k: &str, v: String| {
        if !v.is_empty() && v != "[]" && v != "null" {
            println!("{k:<12} {v}");
        }
    };
    show("User:", c.user.clone());
    show("WorkingDir:", c.working_dir.clone());
    show(
        "Entrypoint:",
        serde_json::to_string(&c.entrypoint).unwrap_or_default(),
    );
    show("Cmd:", serde_json::to_string(&c.cmd).unwrap_or_default());
    show("Env:", c.env.join(" "));
    show(
        "Ports:",
        c.exposed_ports
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    );
    for (k, v) in &c.labels {
        println!("Label:       {k}={v}");
    }
    println!("\nHISTORY (newest first)");
    let mut layers = manifest.layers.iter().rev();
    for h in config.history.iter().rev() {
        let size = if h.empty_layer {
            "0B".to_string()
        } else {
            layers
                .next()
                .map(|l| super::store::human(l.size))
                .unwrap_or_default()
        };
        println!(
            "  {:<22} {:>9}  {}",
            h.created.clone().unwrap_or_default(),
            size,
            h.created_by
        );
    }
    Ok(())
}
