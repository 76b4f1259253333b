//! The console: requester, approver and auditor panes over the same client the CLI uses,
//! following the daemon's live event stream. It never imports the store or the server.

pub mod action;
pub mod app;
pub mod config;
pub mod context;
pub mod form;
pub mod keymap;
mod overlays;
pub mod panes;
pub mod runtime;
mod scrolling;
pub mod textfield;
pub mod theme;
pub mod ui;
pub mod widgets;

use std::path::PathBuf;

use crate::client::Endpoint;

pub struct TuiOptions {
    /// The daemon: its socket, or a remote one over TLS, as every command reaches it.
    pub endpoint: Endpoint,
    pub token: Option<String>,
    /// Ring the terminal bell when a new request arrives for me.
    pub bell: bool,
    /// Demo people and their tokens, to switch between with F2 (empty outside the demo).
    pub people: Vec<(String, String)>,
    /// The demo's notices file: each notice written there is shown to its recipient as it
    /// arrives (outside the demo, notices go by mail or chat, not through the console).
    pub notices: Option<PathBuf>,
}

pub use runtime::run;

#[cfg(test)]
mod behaviour_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
