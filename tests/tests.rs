//! rbuild's integration tests: one module per capability.
mod conformance;
#[path = "frontend_never_panics.rs"]
mod frontend_never_panics;
mod support;
