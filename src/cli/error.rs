//! Errors as users see them: what failed, about which input, and a `hint:` saying what to do;
//! each class has its own exit code (documented in README.md).

use std::fmt;

/// Exit codes, one per class of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitKind {
    /// Anything not classified below.
    Failure = 1,
    /// Bad command-line usage.
    Usage = 2,
    /// The Dockerfile is malformed.
    Dockerfile = 3,
    /// An image reference is malformed (`InvalidImageName`).
    InvalidReference = 4,
    /// The repository does not exist in the registry.
    RepositoryNotFound = 5,
    /// The tag or digest does not exist in the repository.
    TagNotFound = 6,
    /// Authentication is missing or was rejected.
    Unauthorized = 7,
    /// The registry cannot be reached (network, TLS, HTTP vs HTTPS).
    Network = 8,
}

/// A failure ready to be shown: message, optional hint, exit class.
#[derive(Debug)]
pub struct CliError {
    /// Exit class.
    pub kind: ExitKind,
    /// The main line.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// A new error of the given class.
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint line.
    pub fn hinted(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        self.kind as u8
    }

    /// Prints to stderr. A full disk or quota gets a hint of its own, whatever failed.
    pub fn report(&self) {
        let full = ["No space left on device", "Disk quota exceeded"]
            .iter()
            .any(|m| self.message.contains(m));
        if full && self.hint.is_none() {
            let with = CliError {
                kind: self.kind,
                message: self.message.clone(),
                hint: Some("free space on that filesystem (`rbuild prune` drops build cache), or put the store on a larger one with --root DIR or RBUILD_ROOT; nothing half-written was kept".into()),
            };
            eprintln!("{with}");
        } else {
            eprintln!("{self}");
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl From<crate::registry::RegistryError> for CliError {
    fn from(e: crate::registry::RegistryError) -> Self {
        use crate::registry::RegistryError as R;
        let kind = match &e {
            R::NameUnknown { .. } => ExitKind::RepositoryNotFound,
            R::ManifestUnknown { .. } => ExitKind::TagNotFound,
            R::Unauthorized { .. } => ExitKind::Unauthorized,
            R::Network { .. } | R::Unavailable { .. } => ExitKind::Network,
            _ => ExitKind::Failure,
        };
        let hint = e.hint();
        let mut err = CliError::new(kind, e.to_string());
        if let Some(h) = hint {
            err = err.hinted(h);
        }
        err
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::new(ExitKind::Failure, format!("{e:#}"))
    }
}
