//! `zsa login`, `zsa logout` and `zsa context ...`: set up a daemon to talk to, as `gh auth login`
//! and kubeconfig contexts do.
//!
//! Login trusts the daemon's certificate first (pinned on first use, `tls`), then reads the token
//! (a prompt that does not echo, or standard input; never an argument), proves both by asking the
//! daemon who the token is, and only then keeps the token (`token_store`) and writes the context
//! (`contexts`). A failure at any step keeps nothing.

use std::io::{BufRead, Write};
use std::time::Duration;

use super::output::{json_line, table};
use super::{CliError, CmdResult};
use crate::cli::{ClientArgs, ContextCmd, LoginArgs, StoreChoice};
use crate::client::{Address, Client, ClientError, Endpoint};
use crate::contexts::{self, Context, Contexts, TokenStore};
use crate::model::text;
use crate::tls::{Trust, fingerprint, parse_fingerprint};
use crate::token_store;

/// How long login waits for a daemon's TLS handshake.
const PATIENCE: Duration = Duration::from_secs(10);

pub async fn login(args: &LoginArgs, token_stdin: bool, json: bool) -> CmdResult {
    let address = Address::parse(&args.endpoint).map_err(CliError::Usage)?;
    let name = args.context.clone().unwrap_or_else(|| contexts::default_name(&address));
    contexts::check_name(&name).map_err(CliError::Usage)?;
    if !address.is_remote() && (args.fingerprint.is_some() || args.ca.is_some() || args.system_roots) {
        return Err(CliError::Usage("--fingerprint, --ca and --system-roots are for an https:// daemon, not a Unix socket".into()));
    }
    let path = crate::config::user_config_file()
        .ok_or_else(|| CliError::Usage("there is no config directory to keep the context in: set HOME or XDG_CONFIG_HOME".into()))?;
    let before = Contexts::load_from(&path).map_err(CliError::Refused)?.all.get(&name).cloned();

    let trust = match &address {
        Address::Unix(_) => None,
        Address::Https { host, port } => Some(trust(args, &address, host, *port, &name, before.as_ref()).await?),
    };
    let token = read_token(token_stdin || args.token_stdin, &address)?;
    let endpoint = Endpoint { address: address.clone(), trust };
    let me = Client::connect(&endpoint, Some(token.clone()))?.whoami().await?;

    let (token_store, token_file) = match args.store {
        StoreChoice::Keyring => {
            token_store::keyring_save(&name, &address, &token).map_err(CliError::Refused)?;
            (TokenStore::Keyring, None)
        }
        StoreChoice::File => {
            let file = token_store::token_file_for(&path, &name);
            eprintln!(
                "zsa: WARNING: --store file keeps the token in PLAIN TEXT in {} (mode 0600). Anyone who can read \
                 your files (root, a backup, a stolen disk, any program you run) can act as {} with it. Use the \
                 keyring (the default) wherever there is one.",
                file.display(),
                text::inert(&me.user)
            );
            token_store::file_save(&file, &token).map_err(CliError::Refused)?;
            (TokenStore::File, Some(file))
        }
    };
    let context = Context { name: name.clone(), endpoint, user: Some(me.user.clone()), token_store, token_file };
    if let Some(old) = &before
        && kept_elsewhere(old, &context)
    {
        // The context's old token was kept elsewhere: it is no longer this context's.
        let _ = token_store::remove(old);
    }
    contexts::save(&path, &context, true).map_err(CliError::Refused)?;

    if json {
        json_line(&serde_json::json!({
            "context": name, "endpoint": address.to_string(), "user": me.user, "roles": me.roles,
            "token_store": context.token_store.as_str(), "config": path,
        }));
        return Ok(());
    }
    let roles = if me.roles.is_empty() { "none".to_string() } else { me.roles.join(", ") };
    println!("Logged in to {address} as {} (roles: {roles}).", text::inert(&me.user));
    println!("Context {name} is now the current one, in {}.", path.display());
    let kept = match context.token_store {
        TokenStore::Keyring => format!("{}, until zsa logout (or a restart of this machine)", token_store::KEYRING),
        _ => token_store::describe(&context),
    };
    println!("The token is kept in {kept}.");
    Ok(())
}

/// Whether a context's old token was kept in another place than the new one, which now holds
/// the new token: the keyring by context and endpoint, a file by its path alone.
fn kept_elsewhere(old: &Context, new: &Context) -> bool {
    match (old.token_store, new.token_store) {
        (TokenStore::Keyring, TokenStore::Keyring) => old.endpoint.address != new.endpoint.address,
        (TokenStore::File, TokenStore::File) => old.token_file != new.token_file,
        (a, b) => a != b,
    }
}

/// How the daemon's certificate is to be trusted: as the flags say, else pinned on first use,
/// the fingerprint shown and the question asked at the terminal (or given with --fingerprint).
async fn trust(
    args: &LoginArgs,
    address: &Address,
    host: &str,
    port: u16,
    name: &str,
    before: Option<&Context>,
) -> Result<Trust, CliError> {
    if args.system_roots {
        return Ok(Trust::SystemRoots);
    }
    if let Some(ca) = &args.ca {
        let ca = std::path::absolute(ca).map_err(|e| CliError::Usage(format!("--ca {}: {e}", ca.display())))?;
        return Ok(Trust::Ca(ca));
    }
    let given = args.fingerprint.as_deref().map(parse_fingerprint).transpose().map_err(CliError::Usage)?;
    let (h, p) = (host.to_string(), port);
    let cert = tokio::task::spawn_blocking(move || crate::tls::fetch_certificate(&h, p, PATIENCE))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|detail| ClientError::Unreachable { socket: address.to_string(), detail })?;
    let seen = fingerprint(&cert);
    let place = format!("{host}:{port}");
    if let Some(given) = given {
        if given != seen {
            return Err(ClientError::UntrustedCertificate(format!(
                "the certificate of {place} is {seen}, not the {given} you gave; nothing was sent. Someone may be \
                 impersonating the daemon: check the fingerprint with its admin"
            ))
            .into());
        }
        return Ok(Trust::Pin(seen));
    }
    let pinned = before.filter(|c| c.endpoint.address == *address).and_then(|c| match &c.endpoint.trust {
        Some(Trust::Pin(pin)) => Some(pin.clone()),
        _ => None,
    });
    match pinned {
        Some(pin) if pin == seen => {
            eprintln!("The certificate of {place} is the one pinned for context {name} ({seen}).");
            return Ok(Trust::Pin(seen));
        }
        Some(pin) => eprintln!(
            "WARNING: THE CERTIFICATE OF {place} CHANGED since you pinned it for context {name}.\n\
             pinned: {pin}\nnow:    {seen}\n\
             Someone may be impersonating the daemon. Trust the new one only if you know it was replaced."
        ),
        None => {}
    }
    eprintln!(
        "The certificate of {place} has the fingerprint\n  {seen}\n\
         Compare it with the one the daemon's admin has (zsa admin tls init prints it on the daemon's host)."
    );
    if ask(&format!("Trust it and pin it for context {name}? (yes/no) "), address, &seen)? {
        Ok(Trust::Pin(seen))
    } else {
        Err(CliError::Refused(format!("the certificate of {place} was not trusted; nothing was sent and nothing kept")))
    }
}

/// Asks a yes/no question at the terminal (standard input may be carrying the token).
fn ask(question: &str, address: &Address, seen: &str) -> Result<bool, CliError> {
    let no_terminal = |e: std::io::Error| {
        CliError::Usage(format!(
            "cannot ask whether to trust the certificate: there is no terminal ({e}). Check its fingerprint with the \
             daemon's admin, then: zsa login {address} --fingerprint {seen}"
        ))
    };
    let mut tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(no_terminal)?;
    tty.write_all(question.as_bytes()).and_then(|_| tty.flush()).map_err(no_terminal)?;
    let mut answer = String::new();
    std::io::BufReader::new(tty).read_line(&mut answer).map_err(no_terminal)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y"))
}

/// The token: a line of standard input, or typed at a prompt that does not echo it.
fn read_token(stdin: bool, address: &Address) -> Result<String, CliError> {
    let token = if stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::Usage(format!("--token-stdin: cannot read the token from standard input: {e}")))?;
        line
    } else {
        rpassword::prompt_password(format!("Token for {address} (an admin issues one: zsa admin token issue USER): "))
            .map_err(|e| CliError::Usage(format!("cannot ask for the token: there is no terminal ({e}); pipe it in with --token-stdin")))?
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        let how = if stdin { "standard input held no token" } else { "no token was typed" };
        return Err(CliError::Usage(format!("{how}; nothing was kept")));
    }
    Ok(token)
}

/// `zsa logout`: forgets the token of the context named, ZSA_CONTEXT's, or the current one.
pub fn logout(name: Option<String>) -> CmdResult {
    let contexts = Contexts::load().map_err(CliError::Refused)?;
    let name = name
        .or_else(|| std::env::var("ZSA_CONTEXT").ok().filter(|c| !c.is_empty()))
        .or_else(|| contexts.current.clone())
        .ok_or_else(|| CliError::Usage("there is no current context to log out of; name one: zsa logout --context NAME".into()))?;
    let context = contexts.get(&name).map_err(CliError::Refused)?;
    let store = token_store::describe(context);
    if token_store::remove(context).map_err(CliError::Refused)? {
        println!("Logged out of context {name}: its token is removed from {store}.");
        println!("The token itself stays valid until an admin revokes it (zsa admin token list, zsa admin token revoke T1).");
    } else {
        println!("Context {name} keeps no token in {store}: nothing to remove.");
    }
    Ok(())
}

/// `zsa context list|use|show`.
pub fn context(command: &ContextCmd, args: &ClientArgs, json: bool) -> CmdResult {
    let contexts = Contexts::load().map_err(CliError::Refused)?;
    match command {
        ContextCmd::List => {
            if json {
                for c in contexts.all.values() {
                    json_line(&describe_json(c, contexts.current.as_deref() == Some(c.name.as_str())));
                }
                return Ok(());
            }
            if contexts.all.is_empty() {
                println!("no contexts yet: zsa login URL makes one");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = contexts
                .all
                .values()
                .map(|c| {
                    vec![
                        if contexts.current.as_deref() == Some(c.name.as_str()) { "*".into() } else { String::new() },
                        c.name.clone(),
                        c.endpoint.address.to_string(),
                        c.user.as_deref().map(text::inert_line).unwrap_or_else(|| "-".into()),
                        c.token_store.as_str().into(),
                    ]
                })
                .collect();
            table(&["CURRENT", "NAME", "ENDPOINT", "USER", "TOKEN"], &rows);
            Ok(())
        }
        ContextCmd::Use { name } => {
            let context = contexts.get(name).map_err(CliError::Refused)?;
            let path = contexts.path.as_ref().ok_or_else(|| CliError::Refused("there is no config file".into()))?;
            contexts::set_current(path, name).map_err(CliError::Refused)?;
            println!("Now using context {name} ({}).", context.endpoint.address);
            if let Some(socket) = &args.socket {
                eprintln!("zsa: note: --socket / ZSA_SOCKET ({}) still wins over any context while it is set", socket.display());
            }
            Ok(())
        }
        ContextCmd::Show { name } => {
            let (context, why) = match name {
                Some(name) => (contexts.get(name).map_err(CliError::Refused)?, "named".to_string()),
                None => {
                    if let Some(socket) = &args.socket {
                        println!("--socket / ZSA_SOCKET names the daemon ({}): no context is used.", socket.display());
                        return Ok(());
                    }
                    let env = std::env::var("ZSA_CONTEXT").ok().filter(|c| !c.is_empty());
                    let (name, why) = match (&args.context, env, &contexts.current) {
                        (Some(n), _, _) => (n.clone(), "from --context".to_string()),
                        (None, Some(n), _) => (n, "from ZSA_CONTEXT".to_string()),
                        (None, None, Some(n)) => (n.clone(), "the current context".to_string()),
                        (None, None, None) => {
                            println!(
                                "No context is in force: commands use the default socket ({}). zsa login URL makes one.",
                                crate::config::default_socket().display()
                            );
                            return Ok(());
                        }
                    };
                    (contexts.get(&name).map_err(CliError::Refused)?, why)
                }
            };
            let kept = token_store::load(context).map(|t| t.is_some());
            if json {
                let mut value = describe_json(context, contexts.current.as_deref() == Some(context.name.as_str()));
                value["token_kept"] = serde_json::json!(kept.as_ref().ok());
                json_line(&value);
                return Ok(());
            }
            println!("context:  {} ({why})", context.name);
            println!("endpoint: {}", context.endpoint.address);
            if let Some(trust) = &context.endpoint.trust {
                println!("trusts:   {trust}");
            }
            println!("user:     {}", context.user.as_deref().map(text::inert_line).unwrap_or_else(|| "-".into()));
            let token = match (context.token_store, kept) {
                (TokenStore::None, _) => "none (the daemon knows you by your Unix account)".to_string(),
                (_, Ok(true)) => format!("kept in {}", token_store::describe(context)),
                (_, Ok(false)) => format!(
                    "none left in {} (run zsa login {} --context {})",
                    token_store::describe(context),
                    context.endpoint.address,
                    context.name
                ),
                (_, Err(e)) => e,
            };
            println!("token:    {token}");
            Ok(())
        }
    }
}

fn describe_json(c: &Context, current: bool) -> serde_json::Value {
    let (fingerprint, ca, system_roots) = match &c.endpoint.trust {
        Some(Trust::Pin(fp)) => (Some(fp.clone()), None, false),
        Some(Trust::Ca(file)) => (None, Some(file.display().to_string()), false),
        Some(Trust::SystemRoots) => (None, None, true),
        None => (None, None, false),
    };
    serde_json::json!({
        "name": c.name, "current": current, "endpoint": c.endpoint.address.to_string(),
        "fingerprint": fingerprint, "ca": ca, "system_roots": system_roots,
        "user": c.user, "token_store": c.token_store.as_str(), "token_file": c.token_file,
    })
}
