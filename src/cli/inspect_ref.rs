//! `rbuild inspect-ref`: a reference taken apart, defaults marked.

use crate::reference;

use super::args::InspectRefArgs;
use super::error::{CliError, ExitKind};

pub(super) fn run(a: InspectRefArgs) -> Result<(), CliError> {
    let parts = reference::explain(&a.reference).map_err(|e| {
        CliError::new(
            ExitKind::InvalidReference,
            format!("invalid image reference {:?}: {e}", a.reference),
        )
        .hinted(e.hint())
    })?;
    let full = reference::Reference::parse_docker(&a.reference).expect("explained above");
    if a.json {
        let mut obj = serde_json::Map::new();
        for p in &parts {
            obj.insert(
                p.label.to_string(),
                serde_json::json!({"value": p.value, "default": p.defaulted}),
            );
        }
        obj.insert("normalized".into(), full.to_string().into());
        obj.insert("familiar".into(), full.familiar_string().into());
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    for p in &parts {
        let mark = if p.defaulted { " (default)" } else { "" };
        println!("{:<10} {}{}", p.label, p.value, mark);
    }
    println!("{:<10} {}", "full", full);
    Ok(())
}
