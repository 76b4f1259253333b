//! Why a command was refused. Every message says what was wrong and what would be allowed.

use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The input is wrong: fix it and try again.
    Invalid,
    /// The caller may not do this.
    Forbidden,
    /// The thing named does not exist.
    NotFound,
    /// The thing is in a state where this cannot happen (already ended, already approved).
    Conflict,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    /// A stable, machine-readable name such as `self_approval`.
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self { kind: RefusalKind::Invalid, code, message: message.into() }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self { kind: RefusalKind::Forbidden, code, message: message.into() }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self { kind: RefusalKind::NotFound, code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self { kind: RefusalKind::Conflict, code, message: message.into() }
    }
}
