//! Signing an approval through the approver's SSH agent (`SSH_AUTH_SOCK`: a local `ssh-agent`, or
//! the one `ssh -A` forwards from the approver's own machine). The private key never leaves the
//! agent: zsa finds, among the agent's keys, one the policy lists for the approver, and asks the
//! agent to sign the statement `evidence::approval` builds. Blocking: callers run it off their
//! event loop.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ssh_agent_client_rs::{Client, Identity};
use thiserror::Error;

use crate::evidence::approval;
use crate::model::{Request, SignedApproval};

/// How long the agent may take to answer: long enough for an agent that asks its owner to
/// confirm each use (`ssh-add -c`), short enough that a wedged one does not hang the console.
const AGENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(
        "{request} needs your signature and there is no SSH agent to sign with (SSH_AUTH_SOCK is not set): over SSH, connect with `ssh -A` so your agent comes along; on this machine, start one with `eval $(ssh-agent)` and load your key with `ssh-add`"
    )]
    NoAgent { request: String },
    #[error(
        "{request} needs your signature and the SSH agent at {path} cannot be reached ({why}): reconnect with `ssh -A`, or start an agent and `ssh-add` your key"
    )]
    Unreachable { request: String, path: String, why: String },
    #[error(
        "{request} needs your signature and the policy lists no SSH key for you; ask an admin to add your public key to [people.YOU] ssh_keys"
    )]
    NoListedKey { request: String },
    #[error(
        "{request} needs your signature and none of the {held} key(s) in your SSH agent is one the policy lists for you ({listed}); load one of those with `ssh-add`, or ask an admin to list yours"
    )]
    NoMatchingKey { request: String, held: usize, listed: String },
    #[error(
        "your SSH agent would not sign the approval of {request} with {key} ({why}); if it asks you to confirm each use, confirm it, then approve again"
    )]
    Refused { request: String, key: String, why: String },
}

/// The agent's socket as OpenSSH finds it: `SSH_AUTH_SOCK`.
pub fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os("SSH_AUTH_SOCK").filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// Signs `approver`'s approval of `request` at `now` with the first key in the agent at `agent`
/// among `listed` (the fingerprints the daemon said the policy lists for the approver).
pub fn sign_approval(
    agent: Option<&Path>,
    request: &Request,
    approver: &str,
    listed: &[String],
    now: DateTime<Utc>,
) -> Result<SignedApproval, AgentError> {
    let id = request.id.to_string();
    if listed.is_empty() {
        return Err(AgentError::NoListedKey { request: id });
    }
    let Some(path) = agent else {
        return Err(AgentError::NoAgent { request: id });
    };
    let shown = crate::model::text::inert(&path.display().to_string()).into_owned();
    let unreachable = |why: String| AgentError::Unreachable { request: id.clone(), path: shown.clone(), why };
    let stream = UnixStream::connect(path).map_err(|e| unreachable(e.to_string()))?;
    stream
        .set_read_timeout(Some(AGENT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(AGENT_TIMEOUT)))
        .map_err(|e| unreachable(e.to_string()))?;
    let mut agent = Client::with_read_write(Box::new(stream));
    let held = agent.list_all_identities().map_err(|e| unreachable(e.to_string()))?;
    let keys: Vec<ssh_key::PublicKey> = held
        .iter()
        .filter_map(|i| match i {
            Identity::PublicKey(k) => Some(k.as_ref().clone().into_owned()),
            Identity::Certificate(_) => None,
        })
        .collect();
    let Some(key) = keys.into_iter().find(|k| listed.contains(&crate::policy::fingerprint(k))) else {
        return Err(AgentError::NoMatchingKey { request: id, held: held.len(), listed: listed.join(", ") });
    };
    let print = crate::policy::fingerprint(&key);
    let refused = |why: String| AgentError::Refused { request: id.clone(), key: print.clone(), why };
    let statement = approval::statement(&approval::Facts::from(request), approver, now);
    let data = approval::to_be_signed(&statement).map_err(refused)?;
    let signature = agent.sign(&key, &data).map_err(|e| refused(e.to_string()))?;
    let signature = approval::armor(&key, signature).map_err(refused)?;
    Ok(SignedApproval { signed_at: now, signature })
}
