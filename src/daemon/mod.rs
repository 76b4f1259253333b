//! The daemon: holds all state, decides every command through `rules`, writes every change to
//! the store before it answers, ends grants on time, and streams changes to clients.
//! It never imports the console.

pub mod accounts;
pub mod auth;
pub mod checkpoints;
pub mod config_file;
pub mod deadlines;
pub mod engine;
pub mod error;
pub mod extract;
pub mod feed;
pub mod listen;
pub mod metrics;
pub mod notices;
pub mod peers;
pub mod readiness;
pub mod routes;
pub mod runner;
pub mod server;
pub mod service;
pub mod systemd;
pub mod throttle;
pub mod tls;
pub mod token_use;
pub mod tree;
pub mod writer;

pub use engine::Engine;
pub use server::{DaemonConfig, DaemonHandle, TlsListener, start};
