//! Who acted and how they proved it. Every event records the actor's authentication, so an
//! auditor can tell a person at their own login from a bearer token (and who issued it), and
//! the rules can refuse approvals that prove nothing (a token the requester minted himself).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{SYSTEM_ACTOR, TokenId};

/// How the actor of an event authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

/// What a bearer token may be used for. A scope names the routes it opens (`daemon::auth`
/// checks every request against it); new scopes are new variants, and a token issued before
/// zsa kept scopes is `all`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Everything its user may do (but issue tokens: only an admin's own login does that).
    #[default]
    All,
    /// Only `zsa check` (`GET /v1/check`) and `zsa whoami`: for gate scripts on other hosts.
    Check,
}

impl TokenScope {
    /// Every scope, as `--scope` takes them.
    pub const NAMES: [&'static str; 2] = ["all", "check"];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::All => "all",
            TokenScope::Check => "check",
        }
    }

    pub fn is_all(&self) -> bool {
        *self == TokenScope::All
    }

    /// Whether a request for `method` `path` is within the scope.
    pub fn allows(self, method: &str, path: &str) -> bool {
        match self {
            TokenScope::All => true,
            TokenScope::Check => method == "GET" && matches!(path, "/v1/check" | "/v1/whoami"),
        }
    }

    /// What the scope opens, in words for a refusal.
    pub fn opens(self) -> &'static str {
        match self {
            TokenScope::All => "everything its user may do",
            TokenScope::Check => "only GET /v1/check and GET /v1/whoami (zsa check, zsa whoami)",
        }
    }
}

impl std::str::FromStr for TokenScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(TokenScope::All),
            "check" => Ok(TokenScope::Check),
            other => Err(format!("'{}' is not a token scope: use all or check", super::text::inert(other))),
        }
    }
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

    /// The daemon by name and by how it came: no caller from outside can be both.
    pub fn is_daemon(&self) -> bool {
        self.user == SYSTEM_ACTOR && self.auth == Auth::Daemon
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

/// A bearer token as the daemon keeps it: only the SHA-256 of the secret. (When it was last
/// used is not here: that is no decision and no event, see `daemon::token_use`.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Token {
    pub id: TokenId,
    pub user: String,
    pub sha256: String,
    pub issued_at: DateTime<Utc>,
    pub issued_by: String,
    pub revoked: bool,
    /// None: it never expires (issued before zsa kept expiries, or `--ttl never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "TokenScope::is_all")]
    pub scope: TokenScope,
}

impl Token {
    /// Whether it has expired at `now` (at its expiry exactly, it has).
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// What an admin (or the token's owner) is shown at `now`: never the hash.
    pub fn view(&self, now: DateTime<Utc>, last_used: Option<DateTime<Utc>>) -> crate::model::wire::TokenView {
        crate::model::wire::TokenView {
            id: self.id,
            user: self.user.clone(),
            issued_at: self.issued_at,
            issued_by: self.issued_by.clone(),
            revoked: self.revoked,
            scope: self.scope,
            expires_at: self.expires_at,
            expired: self.expired_at(now),
            last_used,
        }
    }
}
