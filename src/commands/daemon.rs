//! `zsa daemon`: runs the daemon in the foreground until SIGTERM or SIGINT.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use super::{CliError, CmdResult};
use crate::cli::DaemonArgs;
use crate::clock::SystemClock;
use crate::config;
use crate::daemon::{DaemonConfig, server};
use crate::policy::PolicyError;

pub async fn run(args: &DaemonArgs) -> CmdResult {
    // Files the daemon creates are private unless it says otherwise (the socket is opened up).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let config = DaemonConfig {
        state_dir: args.state.clone().unwrap_or_else(config::default_state_dir),
        policy: args.policy.clone().unwrap_or_else(config::default_policy),
        socket: args.socket.clone().unwrap_or_else(config::default_socket),
        rebuild_from_log: args.rebuild_from_log,
    };
    match server::run_until_signalled(config, Arc::new(SystemClock)).await {
        Ok(()) => Ok(()),
        Err(e) => match e.downcast_ref::<PolicyError>() {
            // Each problem in place, with a caret under it, as `zsa policy check` prints it.
            Some(policy) => {
                let stderr = std::io::stderr();
                let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
                let _ = writeln!(stderr.lock(), "zsa: the policy does not load, so the daemon did not start:\n{}", policy.render(color));
                Err(CliError::Exit(1))
            }
            None => Err(e.into()),
        },
    }
}
