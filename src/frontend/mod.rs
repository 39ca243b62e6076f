//! The Dockerfile frontend: text → syntax tree ([`parser`]), word expansion ([`shell`]),
//! typed instructions ([`instructions`]) and `.dockerignore` matching ([`dockerignore`]).
//!
//! Pure: every function here takes text and returns data. Reading files is the caller's job.

pub mod ast;
pub mod dockerignore;
pub mod expand;
pub mod instructions;
pub mod parser;
pub mod shell;
