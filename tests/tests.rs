//! rbuild's integration tests: one module per capability.
#[path = "add_urls.rs"]
mod add_urls;
#[path = "base_images.rs"]
mod base_images;
#[path = "build_cache.rs"]
mod build_cache;
#[path = "build_image.rs"]
mod build_image;
mod conformance;
#[path = "context_escapes.rs"]
mod context_escapes;
#[path = "copy_sources.rs"]
mod copy_sources;
#[path = "credentials_stay_hidden.rs"]
mod credentials_stay_hidden;
#[path = "disk_full.rs"]
mod disk_full;
#[path = "docs_cli.rs"]
mod docs_cli;
#[path = "docs_examples.rs"]
mod docs_examples;
#[path = "frontend_never_panics.rs"]
mod frontend_never_panics;
#[path = "hostile_layers.rs"]
mod hostile_layers;
#[path = "interrupted_builds.rs"]
mod interrupted_builds;
#[path = "lint_checks.rs"]
mod lint_checks;
#[path = "outputs.rs"]
mod outputs;
#[path = "pin_and_inspect.rs"]
mod pin_and_inspect;
#[path = "progress_output.rs"]
mod progress_output;
#[path = "pull_errors.rs"]
mod pull_errors;
#[path = "pull_policy.rs"]
mod pull_policy;
#[path = "registry_auth.rs"]
mod registry_auth;
#[path = "registry_cache.rs"]
mod registry_cache;
#[path = "registry_faults.rs"]
mod registry_faults;
#[path = "registry_push_pull.rs"]
mod registry_push_pull;
#[path = "remote_contexts.rs"]
mod remote_contexts;
#[path = "rootless_run.rs"]
mod rootless_run;
#[path = "run_chroot.rs"]
mod run_chroot;
#[path = "run_mounts.rs"]
mod run_mounts;
#[path = "run_steps.rs"]
mod run_steps;
#[path = "runnable_images.rs"]
mod runnable_images;
mod support;
