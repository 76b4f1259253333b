//! Who is calling. On the Unix socket the kernel tells us the peer's account (SO_PEERCRED); a
//! bearer token, issued by an admin, names a user instead. Tokens are compared by SHA-256, so
//! the daemon never holds a usable secret. Disabled users are refused everything but `whoami`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::connect_info::ConnectInfo;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::Engine;
use super::error::ApiError;
use crate::model::{Actor, Auth};

/// The account on the other end of a Unix socket connection, looked up once per connection
/// (by `listen`, which puts it in every request's extensions).
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: Option<u32>,
    pub name: Option<String>,
    /// Whether the uid is an account on this machine. Uids with none share one set of caps.
    pub has_account: bool,
}

impl Peer {
    /// The peer with this uid and its account's name (`uid-N` when it has none).
    pub fn new(uid: Option<u32>, account: Option<String>) -> Peer {
        let has_account = account.is_some();
        let name = uid.map(|uid| account.unwrap_or_else(|| format!("uid-{uid}")));
        Peer { uid, name, has_account }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    /// How they proved it; recorded in every event they cause.
    pub auth: Auth,
}

impl Caller {
    /// `socket` or `token`, as `whoami` has always said.
    pub fn via(&self) -> &'static str {
        match self.auth {
            Auth::Token { .. } => "token",
            _ => "socket",
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::new(self.user.clone(), self.auth.clone())
    }
}

/// A new random bearer token: 256 bits, hex, with a prefix that makes a leaked token easy to spot.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("zsa_{}", hex::encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl FromRequestParts<Arc<Engine>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, Self::Rejection> {
        let caller = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(value) => {
                let token = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <token>'"))?;
                let hash = token_hash(token);
                let token = engine.read(|s, _| s.token_user(&hash).cloned()).ok_or_else(|| {
                    unauthorized("this token is not valid or was revoked; ask an admin for a new one (zsa admin token issue USER)")
                })?;
                Caller { user: token.user, auth: Auth::Token { token: token.id, issued_by: token.issued_by } }
            }
            None => {
                let (uid, name) = parts
                    .extensions
                    .get::<ConnectInfo<Peer>>()
                    .and_then(|c| Some((c.0.uid?, c.0.name.clone()?)))
                    .ok_or_else(|| unauthorized("cannot tell who you are: connect over the Unix socket or present a token"))?;
                Caller { user: name, auth: Auth::Peer { uid } }
            }
        };
        if parts.uri.path() != "/v1/whoami" && engine.read(|s, _| s.is_disabled(&caller.user)) {
            return Err(ApiError::forbidden(
                "user_disabled",
                format!(
                    "your account '{}' is disabled, so zsa refuses everything you ask; an admin can enable it again",
                    crate::model::text::inert(&caller.user)
                ),
            ));
        }
        Ok(caller)
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}
