//! `zsa daemon`: runs the daemon in the foreground until SIGTERM or SIGINT, on the settings of
//! its config file with the flags over them; `--check-config` checks those settings and stops.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::{CliError, CmdResult};
use crate::cli::DaemonArgs;
use crate::clock::SystemClock;
use crate::config;
use crate::daemon::config_file::{self, DaemonFile};
use crate::daemon::{DaemonConfig, TlsListener, server};
use crate::policy::{Policy, PolicyError};

pub async fn run(args: &DaemonArgs) -> CmdResult {
    // Files the daemon creates are private unless it says otherwise (the socket is opened up).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mut settled = settle(args).map_err(|problems| CliError::Refused(problems.join("\n")))?;
    if args.check_config {
        return check(&settled);
    }
    settled.config.activated = crate::daemon::systemd::activated_socket().map_err(|e| CliError::Refused(format!("{e:#}")))?.map(Arc::new);
    match server::run_until_signalled(settled.config, Arc::new(SystemClock)).await {
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

/// The daemon's config file: the one given, else the default one if it is there (what `zsa
/// daemon` and `zsa admin restore` both read). Its problems, one per line.
pub fn config(given: Option<&std::path::Path>) -> Result<Option<DaemonFile>, Vec<String>> {
    let file = match given {
        Some(path) => Some(config_file::load(path)),
        None => {
            let path = config_file::default_path();
            std::fs::symlink_metadata(&path).is_ok().then(|| config_file::load(&path))
        }
    };
    file.transpose().map_err(|e| e.to_string().lines().map(String::from).collect::<Vec<_>>())
}

/// The daemon's settings, and where each listener was given (`file:line` or `--listen`).
struct Settled {
    config: DaemonConfig,
    file: Option<PathBuf>,
    origins: Vec<String>,
}

/// The config file's settings (if there is one) with the flags over them, or every problem found.
fn settle(args: &DaemonArgs) -> Result<Settled, Vec<String>> {
    let file = config(args.config.as_deref())?;
    let DaemonFile { path, state, policy, socket, store, checkpoint_file, listeners, limits } = file.unwrap_or_default();
    let shown = path.display().to_string();
    let mut problems = Vec::new();

    // Flags replace the file's listeners; a certificate or key given as a flag serves them all.
    let given: Vec<(std::net::SocketAddr, Option<PathBuf>, Option<PathBuf>, String)> = if args.listen.is_empty() {
        listeners.into_iter().map(|l| (l.address, l.cert, l.key, format!("{shown}:{}", l.line))).collect()
    } else {
        args.listen.iter().map(|a| (*a, None, None, format!("--listen {a}"))).collect()
    };
    if given.is_empty() && (args.tls_cert.is_some() || args.tls_key.is_some()) {
        problems.push(
            "--tls-cert and --tls-key are for TCP listeners, and none is given: add --listen ADDR:PORT (or a [[listen]] table in the config file)"
                .to_string(),
        );
    }
    let mut tls = Vec::new();
    let mut origins = Vec::new();
    for (address, cert, key, origin) in given {
        if let Some(earlier) = tls.iter().position(|l: &TlsListener| l.address == address) {
            problems.push(format!("{origin}: {address} is given twice (also at {})", origins[earlier]));
            continue;
        }
        match (args.tls_cert.clone().or(cert), args.tls_key.clone().or(key)) {
            (Some(cert), Some(key)) => {
                tls.push(TlsListener { address, cert, key });
                origins.push(origin);
            }
            (cert, _) => problems.push(format!(
                "{origin}: the listener on {address} has no TLS {}: zsa never serves plain HTTP over TCP, where anyone on the way could read the tokens; \
                 give --tls-cert FILE and --tls-key FILE (or tls_cert and tls_key in its [[listen]]), and make a first pair with zsa admin tls init --dir DIR",
                if cert.is_none() { "certificate" } else { "key" }
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Checked here, not by the argument parser, whose refusal would repeat a password.
    let store = match args.store.as_deref().map(crate::store::Location::parse) {
        Some(Ok(location)) => Some(location),
        Some(Err(e)) => return Err(vec![format!("--store: {e}")]),
        None => store,
    };
    let mut limits = limits;
    let flag = |n: Option<u32>| n.map(|n| n as usize);
    limits.max_connections = flag(args.max_connections).or(limits.max_connections);
    limits.per_account = flag(args.max_connections_per_account).or(limits.per_account);
    limits.per_peer = flag(args.max_connections_per_peer).or(limits.per_peer);
    limits.header_timeout = args.header_timeout.or(limits.header_timeout);
    limits.idle_timeout = args.idle_timeout.or(limits.idle_timeout);
    let config = DaemonConfig {
        state_dir: args.state.clone().or(state).unwrap_or_else(config::default_state_dir),
        policy: args.policy.clone().or(policy).unwrap_or_else(config::default_policy),
        socket: args.socket.clone().or(socket).unwrap_or_else(config::default_socket),
        rebuild_from_log: args.rebuild_from_log,
        listeners: tls,
        limits,
        store,
        checkpoint_file: args.checkpoint_file.clone().or(checkpoint_file),
        metrics_listen: args.metrics_listen,
        activated: None,
    };
    Ok(Settled { config, file: (!shown.is_empty()).then_some(path), origins })
}

/// `--check-config`: what the daemon would check at start before touching its state (the
/// policy, each listener's certificate and key), said all at once. Nothing is created or bound.
fn check(settled: &Settled) -> CmdResult {
    let c = &settled.config;
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    match Policy::load_trusted(&c.policy) {
        Ok(p) => fine.push(format!("policy {}: {} tasks, sha256 {}", c.policy.display(), p.tasks.len(), p.sha256)),
        Err(e) => problems.push(format!("the policy does not load:\n{e}")),
    }
    if std::fs::symlink_metadata(&c.state_dir).is_ok()
        && let Err(e) = crate::fs_trust::walk(&c.state_dir, false, None, "the state directory")
    {
        problems.push(e.0);
    }
    fine.push(format!("state {}", c.state_dir.display()));
    fine.push(match &c.store {
        Some(store) => format!("store {}", store.describe()),
        None => format!("store sqlite:{}", c.state_dir.join("zsa.db").display()),
    });
    fine.push(format!("socket {}", c.socket.display()));
    fine.push(format!("checkpoints {}", c.checkpoint_file.clone().unwrap_or_else(|| c.state_dir.join("checkpoints")).display()));
    for (listener, origin) in c.listeners.iter().zip(&settled.origins) {
        match crate::daemon::tls::load(&listener.cert, &listener.key) {
            Ok(tls) => fine.push(format!("listen {} with TLS, certificate {}", listener.address, tls.fingerprint)),
            Err(e) => problems.push(format!("{origin}: the listener on {}: {e}", listener.address)),
        }
    }
    let source = settled.file.as_ref().map_or("flags (no config file)".to_string(), |f| f.display().to_string());
    if !problems.is_empty() {
        return Err(CliError::Refused(format!("{}\n{source}: the daemon would not start with these settings", problems.join("\n"))));
    }
    println!("{source}: ok");
    for line in fine {
        println!("  {line}");
    }
    Ok(())
}
