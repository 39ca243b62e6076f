//! rbuild's integration tests: one module per capability.
#[path = "build_image.rs"]
mod build_image;
mod conformance;
#[path = "frontend_never_panics.rs"]
mod frontend_never_panics;
mod support;
