//! zsa: zero standing access. People ask for a privileged task for a while; approvers say yes or
//! no; a yes becomes a grant that ends by itself; every step lands in a hash-chained audit log.
//!
//! Dependencies point one way: model <- rules <- store <- daemon, and model <- client <- commands.

pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod contexts;
pub mod daemon;
pub mod evidence;
pub mod export;
pub mod fs_trust;
pub mod logging;
pub mod model;
pub mod notify;
pub mod policy;
pub mod rules;
pub mod store;
pub mod tls;
pub mod token_store;
pub mod tui;
