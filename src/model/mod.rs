//! The domain nouns and wire types. Plain data: no I/O, no policy decisions.

pub mod auth;
pub mod duration;
pub mod event;
pub mod grant;
pub mod ids;
pub mod request;
pub mod run;
pub mod start_time;
pub mod text;
pub mod wire;

pub use auth::{Actor, Auth, Token, TokenScope};
pub use event::{Change, Event};
pub use grant::{Grant, GrantEnd, GrantState, Review};
pub use ids::{GrantId, RequestId, RunId, TokenId};
pub use request::{Approval, ApprovalSignature, Request, RequestState, SignedApproval};
pub use run::{Run, RunEnd, RunOutcome};

/// The name the daemon acts under when it does something by itself (expiry, policy loads).
/// A colon cannot appear in a Unix account name or a policy user, so nobody can be it.
pub const SYSTEM_ACTOR: &str = "zsa:daemon";
/// The name recorded as approver when a task's policy approves automatically.
pub const POLICY_APPROVER: &str = "zsa:policy";
