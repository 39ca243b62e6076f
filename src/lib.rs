//! rbuild: a daemonless OCI image builder.
//!
//! ```text
//!  Dockerfile ─► frontend ─► plan ─► cache ─► exec/snapshot ─► layer ─► image ─► export
//!  (text)        parser,     stages,  keys,    RUN in          tar +     config,   OCI dir,
//!                shell,      steps    index    namespaces,     gzip in   manifest  archive,
//!                ignore,                       overlay diff    one pass            registry
//!                reference
//! ```
//!
//! Each module owns one stage and imports only from earlier stages; the `cli` module is the
//! only place that prints.
#![warn(missing_docs)]

pub mod build;
pub mod cache;
pub mod cli;
pub mod content;
pub mod exec;
pub mod export;
pub mod frontend;
pub mod fuzzing;
pub mod image;
pub mod layer;
pub mod lint;
pub mod net;
pub mod reference;
pub mod registry;
pub mod snapshot;
