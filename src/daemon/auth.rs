//! Who is calling. On the Unix socket the kernel tells us the peer's account (SO_PEERCRED); a
//! bearer token, issued by an admin, names a user instead. Over TCP (TLS) there are no peer
//! credentials: a token is the only identity, and a connection without one is nobody, never the
//! daemon's own account. Tokens are compared by SHA-256, so
//! the daemon never holds a usable secret. Disabled users are refused everything but `whoami`.
//!
//! A token is refused once it expired (by the daemon's clock) or was revoked, and outside its
//! scope (`TokenScope::allows`, checked here for every route). A source whose tokens keep
//! failing is throttled (`throttle`) before its token is even looked at. Every accepted token's
//! use is noted for `token list` (`token_use`). The token itself is never logged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::connect_info::ConnectInfo;
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::Engine;
use super::error::ApiError;
use crate::model::{Actor, Auth, duration, text};
use crate::rules::Command;

/// Where a connection comes from, as failed-auth throttling counts it: the peer's uid on the
/// Unix socket, its network over TCP, or nobody knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Uid(u32),
    Net(Network),
    /// The kernel did not say who is on the other end.
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Uid(uid) => write!(f, "uid {uid}"),
            Source::Net(network) => network.fmt(f),
            Source::Unknown => f.write_str("an unknown peer"),
        }
    }
}

/// Where a TCP peer connects from, as throttling and connection caps count it: its IPv4 address,
/// or its IPv6 address's /64 (one host is usually given a whole /64, so counting single
/// addresses would count nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    V4(Ipv4Addr),
    V6Prefix64(u64),
}

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Network::V4(v4),
            IpAddr::V6(v6) => Network::V6Prefix64((v6.to_bits() >> 64) as u64),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::V4(v4) => write!(f, "address {v4}"),
            Network::V6Prefix64(prefix) => write!(f, "network {}/64", Ipv6Addr::from_bits(u128::from(*prefix) << 64)),
        }
    }
}

/// Who is on the other end of a connection, looked up once per connection (by the listener,
/// which puts it in every request's extensions).
#[derive(Clone, Debug)]
pub struct Peer {
    /// The Unix account's uid (the socket only).
    pub uid: Option<u32>,
    pub name: Option<String>,
    /// Whether the uid is an account on this machine. Uids with none share one set of caps.
    pub has_account: bool,
    /// Where failed tokens are counted.
    pub source: Source,
}

impl Peer {
    /// The socket's peer with this uid and its account's name (`uid-N` when it has none).
    pub fn new(uid: Option<u32>, account: Option<String>) -> Peer {
        let has_account = account.is_some();
        let name = uid.map(|uid| account.unwrap_or_else(|| format!("uid-{uid}")));
        Peer { uid, name, has_account, source: uid.map_or(Source::Unknown, Source::Uid) }
    }

    /// A peer over the network, at `ip`: it has no Unix account, so only a token names it.
    pub fn remote(ip: IpAddr) -> Peer {
        Peer { uid: None, name: None, has_account: false, source: Source::Net(Network::of(ip)) }
    }

    /// Whether this peer came over the network, where only a token says who it is.
    pub fn is_remote(&self) -> bool {
        matches!(self.source, Source::Net(_))
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
        let peer = parts.extensions.get::<ConnectInfo<Peer>>().map(|c| &c.0);
        let caller = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(value) => {
                let source = peer.map_or(Source::Unknown, |p| p.source.clone());
                let presented = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty());
                by_token(engine, source, presented, parts.method.as_str(), parts.uri.path()).await?
            }
            None => {
                if peer.is_some_and(Peer::is_remote) {
                    // No peer credentials cross a network: whoever holds no token is nobody.
                    return Err(unauthorized(
                        "this connection comes over the network, where zsa knows you only by a bearer token, and it carried none; \
                         log in with a token an admin issued you (zsa login URL, or send 'Authorization: Bearer <token>')",
                    ));
                }
                let (uid, name) = peer
                    .and_then(|p| Some((p.uid?, p.name.clone()?)))
                    .ok_or_else(|| unauthorized("cannot tell who you are: connect over the Unix socket or present a token"))?;
                Caller { user: name, auth: Auth::Peer { uid } }
            }
        };
        // The request's log span names who asked (never a token: its id at most).
        let span = tracing::Span::current();
        span.record("caller", crate::model::text::inert_line(&caller.user));
        if let Auth::Token { token, .. } = &caller.auth {
            span.record("token", token.to_string());
        }
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

/// The caller a presented bearer token names, for a `method` `path` request from `source`, or why
/// not. `presented` is None when the `Authorization` header is not `Bearer <token>`.
async fn by_token(engine: &Arc<Engine>, source: Source, presented: Option<&str>, method: &str, path: &str) -> Result<Caller, ApiError> {
    let now = engine.now();
    if let Some(until) = engine.throttle().blocked(&source, now) {
        return Err(throttled(engine, &source, until, now));
    }
    let token = presented.and_then(|t| engine.read(|s, _| s.token_by_sha256(&token_hash(t)).cloned()));
    let Some(token) = token else {
        let why = match presented {
            Some(_) => "this token is not one the daemon issued (mistyped, cut short, or from another daemon)",
            None => "the Authorization header must be 'Bearer <token>'",
        };
        return Err(failed(engine, source, now, why).await);
    };
    let (id, user) = (token.id, text::inert(&token.user));
    if token.revoked {
        return Err(unauthorized(&format!("token {id} of {user} was revoked; ask an admin for a new one (zsa admin token issue {user})")));
    }
    if let Some(at) = token.expires_at.filter(|at| *at <= now) {
        return Err(unauthorized(&format!(
            "token {id} of {user} expired at {} ({} ago); ask an admin for a new one (zsa admin token issue {user} --ttl 30d)",
            at.to_rfc3339(),
            duration::format((now - at).num_seconds().max(1) as u64)
        )));
    }
    if !token.scope.allows(method, path) {
        return Err(ApiError::forbidden(
            "token_scope",
            format!(
                "token {id} has scope '{}', which allows {}; {method} {} needs a token of scope 'all' (zsa admin token issue {user})",
                token.scope,
                token.scope.opens(),
                text::inert(path)
            ),
        ));
    }
    engine.token_use().note(id, now);
    // The token's id, never the token: its holder can act as its user.
    tracing::trace!(token = %id, user = %user, %method, %path, "authenticated by token");
    Ok(Caller { user: token.user, auth: Auth::Token { token: id, issued_by: token.issued_by } })
}

/// A token that was not valid: counted against its source, and, the moment that trips the
/// throttle, recorded once as `auth_throttled`.
async fn failed(engine: &Arc<Engine>, source: Source, now: DateTime<Utc>, why: &str) -> ApiError {
    tracing::debug!(%source, why, "refused a token that is not valid");
    let Some(tripped) = engine.throttle().failed(&source, now) else {
        return unauthorized(&format!("{why}; ask an admin for a new one (zsa admin token issue USER)"));
    };
    let window_secs = engine.throttle().limits().window.num_seconds().max(0) as u64;
    tracing::warn!(%source, failures = tripped.failures, until = %tripped.until, "too many tokens that were not valid: throttled");
    let command = Command::NoteAuthThrottled { source: source.to_string(), failures: tripped.failures, window_secs, until: tripped.until };
    let recorded = super::writer::record(engine.clone(), Actor::daemon(), command).await.map_err(|e| e.to_string());
    if let Err(err) = recorded.and_then(|r| r.map_err(|e| e.to_string())) {
        tracing::error!(error = %err, "could not record a throttled source");
    }
    throttled(engine, &source, tripped.until, now)
}

/// The refusal of a throttled source's token attempt.
fn throttled(engine: &Engine, source: &Source, until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    let limits = engine.throttle().limits();
    let left = (until - now).num_seconds().max(1) as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "auth_throttled",
        format!(
            "too many tokens that were not valid came from {source} ({} within {}), so its token attempts are refused until {} (in {}); check the token you use (an admin sees which are valid with zsa admin token list)",
            limits.failures,
            duration::format(limits.window.num_seconds().max(1) as u64),
            until.to_rfc3339(),
            duration::format(left)
        ),
    )
    .retry_after(left)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv6 host usually holds a whole /64: its addresses count as one, another /64 apart; an
    /// IPv4 address is itself, also when it comes mapped into IPv6.
    #[test]
    fn a_network_peer_is_its_ipv4_address_or_its_ipv6_slash_64() {
        let of = |s: &str| Network::of(s.parse().unwrap());
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_eq!(of("::ffff:192.0.2.7"), of("192.0.2.7"));
        assert_ne!(of("192.0.2.7"), of("192.0.2.8"));
        assert_eq!(of("2001:db8:1:2::1").to_string(), "network 2001:db8:1:2::/64");
        assert_eq!(of("192.0.2.7").to_string(), "address 192.0.2.7");
    }
}
