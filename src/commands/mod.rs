//! The scriptable commands, over the client. Each prints text for people or, with `--json`, one
//! JSON object per line for scripts. Exit codes: 0 done, 1 refused, denied or not allowed, 2 usage
//! (a missing required --comment or --reason included, whether we or the daemon notice), 3 daemon
//! unreachable; `run` and `gate` pass on their command's code.

mod admin;
mod audit;
mod backup;
pub mod completion;
pub mod connect;
mod daemon;
mod demo;
mod gate;
mod grants;
mod login;
mod notices;
mod output;
mod policy_check;
mod requests;
mod runs;
mod store;
mod tls;
mod watch;

use std::process::ExitCode;

use thiserror::Error;

use crate::cli::{Cli, ClientArgs, Cmd};
use crate::client::ClientError;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Refused or not allowed, with the reason already worded for the user.
    #[error("{0}")]
    Refused(String),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
    /// A run's own exit code, passed through; the reason was already printed.
    #[error("")]
    Exit(u8),
}

impl CliError {
    /// A short machine-readable name: the daemon's error code where it gave one.
    pub fn code(&self) -> String {
        match self {
            CliError::Usage(_) => "usage".into(),
            CliError::Client(c) => c.code().to_string(),
            CliError::Refused(_) => "refused".into(),
            CliError::Other(_) => "error".into(),
            CliError::Exit(_) => "exit".into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            // The daemon noticed a missing (or blank) comment first: still a usage error, as documented.
            CliError::Client(ClientError::Refused { code, .. }) if USAGE_CODES.contains(&code.as_str()) => 2,
            CliError::Client(ClientError::Unreachable { .. }) => 3,
            // Not set up to talk to that daemon (no token for a remote one): said what to run.
            CliError::Client(ClientError::Setup(_)) => 2,
            CliError::Exit(code) => *code,
            _ => 1,
        }
    }
}

pub type CmdResult = Result<(), CliError>;

/// The daemon's refusals that mean the command line lacked something required.
const USAGE_CODES: [&str; 2] = ["comment_required", "reason_required"];

/// A comment the command requires: missing or blank is a usage error, said before asking the daemon.
fn required(value: &Option<String>, flag: &str, why: &str, example: &str) -> Result<(), CliError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err(CliError::Usage(format!("{flag} is required: {why}: {example}"))),
    }
}

/// Runs the parsed command line; prints errors to stderr and returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    end_quietly_on_a_closed_pipe();
    let json = cli.json();
    let result = dispatch(cli).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output stopped (`zsa audit | head -1`): nothing is wrong, as in gh and kubectl.
        Err(CliError::Other(e)) if e.chain().any(is_broken_pipe) => ExitCode::SUCCESS,
        Err(e) if json && !matches!(e, CliError::Exit(_)) => {
            // Scripts asked for JSON: the error too, with the API's code, on stderr.
            let error = serde_json::json!({ "error": { "code": e.code(), "message": e.to_string() } });
            say_error(&error.to_string());
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            let text = e.to_string();
            // Line by line, so our own line breaks stay while anything else is made inert.
            for line in text.lines() {
                say_error(&format!("zsa: {}", crate::model::text::inert(line)));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// One line on stderr. Where stderr is gone too (the terminal closed), there is no one to tell,
/// and failing to say so must not turn into a panic.
fn say_error(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let io = e.downcast_ref::<std::io::Error>().or_else(|| {
        e.downcast_ref::<csv::Error>().and_then(|c| match c.kind() {
            csv::ErrorKind::Io(io) => Some(io),
            _ => None,
        })
    });
    io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `println!` panics when standard output is a pipe whose reader has gone. The daemon's sockets
/// keep SIGPIPE ignored (a client that hangs up must not kill it), so instead the commands end
/// quietly on exactly that panic, and every other panic is reported as before.
fn end_quietly_on_a_closed_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message =
            info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            std::process::exit(0);
        }
        previous(info);
    }));
}

/// Where the token comes from: ZSA_TOKEN, or standard input with `--token-stdin`. The old `--token`
/// flag still works, with a warning: every local user can read a command line (`ps`, `/proc`).
fn with_token(mut cli: ClientArgs) -> Result<ClientArgs, CliError> {
    if cli.token.is_some() {
        if cli.token_stdin {
            return Err(CliError::Usage("give the token one way: --token-stdin or ZSA_TOKEN (not --token as well)".into()));
        }
        cli.token_from = Some("--token");
        eprintln!(
            "zsa: warning: --token is deprecated and will be removed: every local user can read a command line (ps, /proc). \
             Use ZSA_TOKEN=... or --token-stdin instead"
        );
    } else if cli.token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::Usage(format!("--token-stdin: cannot read the token from standard input: {e}")))?;
        let token = line.trim();
        if token.is_empty() {
            return Err(CliError::Usage("--token-stdin: standard input held no token (pipe it in: zsa --token-stdin ... < FILE)".into()));
        }
        cli.token = Some(token.to_string());
        cli.token_from = Some("standard input");
    } else {
        cli.token = std::env::var("ZSA_TOKEN").ok().filter(|t| !t.is_empty());
        cli.token_from = cli.token.as_ref().map(|_| "ZSA_TOKEN");
    }
    Ok(cli)
}

/// Opens the console. Before taking over the terminal it checks that the daemon answers, so an
/// unreachable daemon is reported like any other command's (exit 3), not inside a blank screen.
async fn console(cli: &ClientArgs, bell: bool) -> CmdResult {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "the console needs a terminal (standard input and output), and this has none (cron, CI, a pipe?); \
             scripts use the commands instead: zsa requests, zsa grants, zsa approve R1, zsa audit --json (zsa --help lists them)"
                .into(),
        ));
    }
    let conn = connect::resolve(cli, false)?;
    conn.client()?.whoami().await?;
    let options = crate::tui::TuiOptions { endpoint: conn.endpoint, token: conn.token, bell, people: Vec::new(), notices: None };
    crate::tui::run(options).await?;
    Ok(())
}

/// Parses an id the user typed; a malformed one is a usage error.
fn id<T: std::str::FromStr<Err = String>>(raw: &str) -> Result<T, CliError> {
    raw.parse().map_err(CliError::Usage)
}

async fn dispatch(cli: Cli) -> CmdResult {
    let json = cli.json();
    let Some(command) = &cli.command else {
        return console(&with_token(cli.client_args())?, true).await;
    };
    // Commands that talk to no daemon read no token.
    match command {
        Cmd::Daemon(args) => return daemon::run(args).await,
        Cmd::Demo { socket } => return demo::run(socket.clone()).await,
        Cmd::Policy { command, .. } => return policy_check::run(command, json),
        Cmd::Store { command, .. } => return store::run(command, json).await,
        Cmd::Completions { shell } => return completion::print_script(*shell),
        Cmd::Man => return completion::print_man(),
        Cmd::Login(args) => {
            // The token is read from a prompt or standard input, never from the command line.
            if cli.token.is_some() {
                return Err(CliError::Usage(
                    "zsa login never takes a token on the command line (every local user can read it in ps): \
                     it asks for it, or reads it from standard input with --token-stdin"
                        .into(),
                ));
            }
            return login::login(args, cli.token_stdin, json).await;
        }
        Cmd::Logout { context } => return login::logout(context.clone().or_else(|| cli.context.clone())),
        Cmd::Context { command, .. } => return login::context(command, &cli.client_args(), json),
        // Made here, for a daemon that may not run yet.
        Cmd::Admin { command: crate::cli::AdminCmd::Tls { command }, .. } => return tls::run(command, json),
        // Offline: the daemon must be stopped.
        Cmd::Admin { command: command @ crate::cli::AdminCmd::Restore { .. }, .. } => return restore(command, json).await,
        _ => {}
    }
    let args = with_token(cli.client_args())?;
    if let Cmd::Tui { no_bell, .. } = command {
        return console(&args, !no_bell).await;
    }
    // Resolved where a command needs it, so a usage error is still said first.
    let connection = || connect::resolve(&args, false);
    let client = || connection()?.client();
    match command {
        Cmd::Request { task, duration, at, reason, ticket, params, wait, .. } => {
            let params = runs::parse_params(params)?;
            let new = requests::NewArgs {
                task,
                for_: duration.as_deref(),
                at: at.as_deref(),
                reason: reason.clone(),
                ticket: ticket.clone(),
                params,
            };
            requests::request(&client()?, json, new, *wait).await
        }
        Cmd::Run { task, params, .. } => runs::run(&client()?, json, task, runs::parse_params(params)?).await,
        Cmd::Requests { pending, all, .. } => requests::list(&client()?, json, *all, *pending).await,
        Cmd::Show { id: raw, .. } => requests::show(&client()?, json, raw).await,
        Cmd::Approve { id: raw, comment, .. } => requests::approve(&client()?, json, id(raw)?, comment.clone()).await,
        Cmd::Deny { id: raw, comment, .. } => {
            let id = id(raw)?;
            required(comment, "--comment", "a denial tells the requester why", &format!("zsa deny {id} --comment \"...\""))?;
            requests::deny(&client()?, json, id, comment.clone()).await
        }
        Cmd::Cancel { id: raw, .. } => requests::cancel(&client()?, json, id(raw)?).await,
        Cmd::Grants { all, watch: false, .. } => grants::list(&client()?, json, *all).await,
        Cmd::Grants { all, watch: true, .. } => watch::grants(&client()?, json, *all).await,
        Cmd::Revoke { id: raw, reason, .. } => {
            let id = id(raw)?;
            required(reason, "--reason", "a revocation tells the holder why", &format!("zsa revoke {id} --reason \"...\""))?;
            grants::revoke(&client()?, json, id, reason.clone()).await
        }
        Cmd::Relinquish { id: raw, .. } => grants::relinquish(&client()?, json, id(raw)?).await,
        Cmd::Extend { id: raw, by, reason, .. } => {
            let by = crate::model::duration::parse(by).map_err(CliError::Usage)?;
            grants::extend(&client()?, json, id(raw)?, by, reason.clone()).await
        }
        Cmd::Review { id: raw, comment, .. } => grants::review(&client()?, json, id(raw)?, comment.clone()).await,
        Cmd::Check { task, user, .. } => grants::check(&client()?, json, task, user.as_deref()).await,
        Cmd::Gate { task, command, .. } => gate::run(&client()?, task, command).await,
        Cmd::Whoami { .. } => {
            let conn = connection()?;
            admin::whoami(&conn.client()?, json, &conn).await
        }
        Cmd::Tasks { .. } => admin::tasks(&client()?, json).await,
        Cmd::Ready { .. } => admin::ready(&client()?, json).await,
        // An offline check needs no daemon, so no client either.
        Cmd::Audit(crate::cli::AuditArgs {
            command: Some(crate::cli::AuditCmd::Verify { offline: Some(file), key, checkpoints, allow_unsigned_tail, allowed_signers }),
            ..
        }) => audit::verify_offline(json, file, key, checkpoints.as_deref(), *allow_unsigned_tail, allowed_signers.as_deref()),
        Cmd::Audit(args) => audit::run(&client()?, json, args).await,
        Cmd::Notices { failed, .. } => notices::list(&client()?, json, *failed).await,
        Cmd::Admin { command, .. } => admin::run(&client()?, json, command).await,
        Cmd::Daemon(_)
        | Cmd::Demo { .. }
        | Cmd::Tui { .. }
        | Cmd::Policy { .. }
        | Cmd::Store { .. }
        | Cmd::Completions { .. }
        | Cmd::Man
        | Cmd::Login(_)
        | Cmd::Logout { .. }
        | Cmd::Context { .. } => unreachable!("handled above"),
    }
}

/// `zsa admin restore`: offline, so dispatched before any client is made.
async fn restore(command: &crate::cli::AdminCmd, json: bool) -> CmdResult {
    let crate::cli::AdminCmd::Restore { file, config, state, store, checkpoint_file, accept_loss } = command else {
        return Ok(());
    };
    let args = backup::RestoreArgs {
        file,
        config: config.as_deref(),
        state: state.as_deref(),
        store: store.as_deref(),
        checkpoint_file: checkpoint_file.as_deref(),
        accept_loss: *accept_loss,
    };
    backup::restore(args, json).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A comment the daemon finds missing (or blank) is a usage error too, as documented.
    #[test]
    fn a_missing_comment_is_exit_2_whoever_notices() {
        let refused = |code: &str| CliError::Client(ClientError::Refused { status: 400, code: code.into(), message: String::new() });
        assert_eq!(refused("comment_required").exit_code(), 2);
        assert_eq!(refused("reason_required").exit_code(), 2);
        assert_eq!(refused("not_pending").exit_code(), 1);
        assert_eq!(required(&Some(" ".into()), "--comment", "why", "zsa deny R1 --comment \"...\"").unwrap_err().exit_code(), 2);
        assert!(required(&Some("because".into()), "--comment", "why", "").is_ok());
    }
}
