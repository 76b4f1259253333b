//! Who acted and how they proved it. Every event records the actor's authentication, so an
//! auditor can tell a person at their own login from a bearer token (and who issued it), and
//! the rules can refuse approvals that prove nothing (a token the requester minted himself).

use serde::{Deserialize, Serialize};

use super::{SYSTEM_ACTOR, TokenId};

/// How the actor of an event authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// The daemon itself (expiry, start-up, SIGHUP).
    Daemon,
    /// A person at their own Unix login: the kernel named the account on the socket (SO_PEERCRED).
    Peer { uid: u32 },
    /// A bearer token, and the admin who issued it (a token proves only what its issuer vouches for).
    Token { token: TokenId, issued_by: String },
    /// Code in the daemon's own process acting for a named user: the demo's set-up, tests and benches.
    InProcess,
}

/// The kinds of authentication a task may accept for approvals (`approve_via` in the policy).
pub const APPROVE_VIA_KINDS: [&str; 2] = ["peer", "token"];

impl Auth {
    /// `peer`, `token`, `daemon` or `in_process`: the kind, as `approve_via` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Daemon => "daemon",
            Auth::Peer { .. } => "peer",
            Auth::Token { .. } => "token",
            Auth::InProcess => "in_process",
        }
    }

    /// A short account for people: `peer uid 1001`, `token T4 issued by dave`.
    pub fn describe(&self) -> String {
        match self {
            Auth::Daemon => "the daemon".into(),
            Auth::Peer { uid } => format!("own login (uid {uid})"),
            Auth::Token { token, issued_by } => format!("token {token} issued by {}", super::text::inert_line(issued_by)),
            Auth::InProcess => "in-process".into(),
        }
    }
}

/// The authenticated actor of a command: the name the policy knows, and how they proved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    pub auth: Auth,
}

impl Actor {
    pub fn new(user: impl Into<String>, auth: Auth) -> Actor {
        Actor { user: user.into(), auth }
    }

    /// The daemon acting by itself.
    pub fn daemon() -> Actor {
        Actor { user: SYSTEM_ACTOR.to_string(), auth: Auth::Daemon }
    }

    pub fn is_daemon(&self) -> bool {
        self.user == SYSTEM_ACTOR
    }
}

/// In-process callers (the demo's set-up, tests, benches) name a user; the daemon's own name
/// means the daemon.
impl From<&str> for Actor {
    fn from(user: &str) -> Actor {
        if user == SYSTEM_ACTOR { Actor::daemon() } else { Actor::new(user, Auth::InProcess) }
    }
}

impl From<&Actor> for Actor {
    fn from(actor: &Actor) -> Actor {
        actor.clone()
    }
}

impl From<&String> for Actor {
    fn from(user: &String) -> Actor {
        Actor::from(user.as_str())
    }
}
