//! Which daemon a command talks to, and as whom. In order:
//! 1. `--socket`/ZSA_SOCKET (and a token from `--token-stdin`/ZSA_TOKEN), as before: they win.
//!    A remote `https://` one takes its certificate's trust from the context made for it.
//! 2. A context: `--context NAME`, else ZSA_CONTEXT, else the config file's `current_context`;
//!    its endpoint, its certificate's trust, and its token (unless one was given as in 1).
//! 3. The default socket: the user's own daemon's, else the system daemon's.
//!
//! A context's token is only ever sent to that context's own endpoint.

use std::path::Path;

use super::CliError;
use crate::cli::ClientArgs;
use crate::client::{Address, Client, ClientError, Endpoint};
use crate::contexts::{Context, Contexts};

/// How a command reaches the daemon, and what `zsa whoami` says about it.
#[derive(Clone, Debug)]
pub struct Connection {
    pub endpoint: Endpoint,
    pub token: Option<String>,
    /// The context used, if one was.
    pub context: Option<String>,
    /// Where the token came from ("ZSA_TOKEN", "the kernel keyring (keyutils)"...), if there is one.
    pub token_from: Option<String>,
}

impl Connection {
    pub fn client(&self) -> Result<Client, CliError> {
        Ok(Client::connect(&self.endpoint, self.token.clone())?)
    }
}

/// Decides where a command goes. `quiet` (for completion at a Tab) leaves out warnings.
pub fn resolve(args: &ClientArgs, quiet: bool) -> Result<Connection, CliError> {
    let given = |token: &Option<String>| token.as_ref().and(args.token_from).map(str::to_string);
    if let Some(socket) = &args.socket {
        if args.context.is_some() {
            return Err(CliError::Usage(
                "--socket (or ZSA_SOCKET) and --context both say which daemon to use: give one \
                 (unset ZSA_SOCKET to use a context)"
                    .into(),
            ));
        }
        let address = match socket.to_str() {
            Some(text) => Address::parse(text).map_err(|e| CliError::Usage(format!("--socket / ZSA_SOCKET: {e}")))?,
            None => Address::Unix(socket.clone()),
        };
        if !address.is_remote() {
            let token_from = given(&args.token);
            return Ok(Connection { endpoint: Endpoint { address, trust: None }, token: args.token.clone(), context: None, token_from });
        }
        // A remote daemon is trusted as its context says, and nothing is sent to one without.
        let contexts = Contexts::load().map_err(CliError::Refused)?;
        let Some(context) = contexts.for_address(&address) else {
            return Err(ClientError::Setup(format!(
                "no certificate is trusted for {address} yet, so nothing is sent there. Run: zsa login {address}"
            ))
            .into());
        };
        return through(context, args);
    }
    let contexts = Contexts::load().map_err(CliError::Refused)?;
    let named =
        args.context.clone().or_else(|| std::env::var("ZSA_CONTEXT").ok().filter(|c| !c.is_empty())).or_else(|| contexts.current.clone());
    if let Some(name) = named {
        let context = contexts.get(&name).map_err(CliError::Refused)?;
        return through(context, args);
    }
    let socket = default_socket(quiet)?;
    Ok(Connection { endpoint: Endpoint::unix(&socket), token: args.token.clone(), context: None, token_from: given(&args.token) })
}

/// Through a context: a token given on the command line or in ZSA_TOKEN wins over the one it keeps.
fn through(context: &Context, args: &ClientArgs) -> Result<Connection, CliError> {
    let (token, token_from) = match &args.token {
        Some(token) => (Some(token.clone()), args.token_from.map(str::to_string)),
        None => {
            let kept = crate::token_store::load(context).map_err(CliError::Refused)?;
            if kept.is_none() && context.token_store != crate::contexts::TokenStore::None {
                return Err(ClientError::Setup(format!(
                    "context {:?} keeps no token in {} any more (zsa logout removed it, or the keyring forgot it at a \
                     reboot). Run: zsa login {} --context {}",
                    context.name,
                    crate::token_store::describe(context),
                    context.endpoint.address,
                    context.name
                ))
                .into());
            }
            let from = kept.as_ref().map(|_| crate::token_store::describe(context));
            (kept, from)
        }
    };
    Ok(Connection { endpoint: context.endpoint.clone(), token, context: Some(context.name.clone()), token_from })
}

/// The socket a command talks to when nothing names one: the first default that is there.
fn default_socket(quiet: bool) -> Result<std::path::PathBuf, CliError> {
    use crate::config::{NoSocket, fallback_runtime_dir};
    let own = crate::config::default_socket();
    let fallback = fallback_runtime_dir();
    let own_problem = (own.parent() == Some(fallback.as_path())).then(|| crate::config::check_fallback_dir(&fallback).err()).flatten();
    match crate::config::pick_socket(&own, own_problem, Path::new(crate::config::SYSTEM_SOCKET)) {
        Ok((socket, warning)) => {
            if let Some(w) = warning.filter(|_| !quiet) {
                eprintln!("zsa: warning: {}", crate::model::text::inert(&w));
            }
            Ok(socket)
        }
        Err(NoSocket::Untrusted(why)) => Err(CliError::Refused(why)),
        Err(NoSocket::Nowhere(own, system)) => {
            let socket = if own == system { own.display().to_string() } else { format!("{} or {}", own.display(), system.display()) };
            Err(ClientError::Unreachable { socket, detail: "there is no socket there".into() }.into())
        }
    }
}
