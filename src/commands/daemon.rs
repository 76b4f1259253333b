//! `zsa daemon`: runs the daemon in the foreground until SIGTERM or SIGINT.

use std::sync::Arc;

use super::CmdResult;
use crate::cli::DaemonArgs;
use crate::clock::SystemClock;
use crate::config;
use crate::daemon::{DaemonConfig, server};

pub async fn run(args: &DaemonArgs) -> CmdResult {
    // Files the daemon creates are private unless it says otherwise (the socket is opened up).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let config = DaemonConfig {
        state_dir: args.state.clone().unwrap_or_else(config::default_state_dir),
        policy: args.policy.clone().unwrap_or_else(config::default_policy),
        socket: args.socket.clone().unwrap_or_else(config::default_socket),
        rebuild_from_log: args.rebuild_from_log,
    };
    server::run_until_signalled(config, Arc::new(SystemClock)).await?;
    Ok(())
}
