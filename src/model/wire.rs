//! The JSON bodies of the HTTP API, shared by the daemon and the client so they cannot drift.
//! Incoming bodies refuse unknown fields: a misspelt field is an error, not silently ignored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Grant, Request, TokenId, TokenScope};

/// Limits on what a user may type, checked by the daemon.
pub const MAX_REASON_CHARS: usize = 1000;
pub const MAX_COMMENT_CHARS: usize = 1000;
pub const MAX_TICKET_CHARS: usize = 100;
pub const MAX_NAME_CHARS: usize = 64;
/// Largest request body the daemon reads.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// `GET /v1/health`: the daemon answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /v1/ready`: whether the daemon can do its job now, check by check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<ReadinessCheck>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadinessCheck {
    /// `store`, `writes`, `deadlines`, or `peers` (a daemon sharing its store).
    pub name: String,
    pub ok: bool,
    /// What is wrong, where something is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl ReadinessCheck {
    pub fn ok(name: &str) -> Self {
        ReadinessCheck { name: name.into(), ok: true, problem: None }
    }

    pub fn failed(name: &str, problem: impl Into<String>) -> Self {
        ReadinessCheck { name: name.into(), ok: false, problem: Some(problem.into()) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub user: String,
    /// `admin`, `auditor`, `approver`, `requester`: what this user may do under the current policy.
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// `socket` (Unix account) or `token`.
    pub via: String,
    /// How you authenticated this time: your own login (with its uid) or a token and its issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<super::Auth>,
    /// Every token ever issued in your name, and who issued it: anyone holding one can act as you.
    #[serde(default)]
    pub tokens: Vec<TokenView>,
    /// The daemon's clock, so clients can correct countdowns for their own clock's offset.
    pub now: DateTime<Utc>,
    pub policy_sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    pub name: String,
    pub description: String,
    /// `manual` or `auto`.
    pub approval: String,
    pub requesters: Vec<String>,
    pub approvers: Vec<String>,
    /// The people in the approver groups.
    pub approver_users: Vec<String>,
    pub approvals: u32,
    pub max_duration_secs: u64,
    pub default_duration_secs: u64,
    pub require_reason: bool,
    pub require_ticket: bool,
    pub ticket_pattern: Option<String>,
    pub reason_pattern: Option<String>,
    pub break_glass: bool,
    /// How an approval must be given to count: `peer` (own login), `token`.
    #[serde(default)]
    pub approve_via: Vec<String>,
    /// Approvals count only signed with the approver's SSH key.
    #[serde(default)]
    pub signed_approvals: bool,
    /// Whether a live grant may be extended: `never`, `auto` or `approval`.
    #[serde(default)]
    pub extend: String,
    /// The longest a grant may live, extensions included.
    #[serde(default)]
    pub max_total_secs: u64,
    /// When in the week it may be used, with the zone (`Mon-Fri 08:00-18:00 (Europe/Berlin)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<String>,
    /// With windows: until when the one open now stays open, in the zone's words, or when the
    /// next opens (`open until Mon 2026-03-02 18:00 CET`, `next opens ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_now: Option<String>,
    /// When the viewer's eligibility to ask for it ends, where a dated membership gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_until: Option<DateTime<Utc>>,
    /// When the viewer, not eligible yet, becomes so by a membership that starts later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_from: Option<DateTime<Utc>>,
    pub may_request: bool,
    pub may_approve: bool,
    /// Who could approve a request of the viewer's for this task: the approvers other than the
    /// viewer (nobody approves their own) who are not disabled. Empty: a request would wait in vain.
    #[serde(default)]
    pub approvers_for_you: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub task: String,
    #[serde(default)]
    pub duration_secs: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Parameters of the task's command, fixed now so the approver sees what will run.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
    /// Asked ahead: the grant starts exactly then (approved before), not when approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub task: String,
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
}

/// One line of a run's answer stream (newline-delimited JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunOutput {
    Started { run: super::RunId, argv: Vec<String> },
    Output { stream: String, data: String },
    Ended { run: super::RunId, exit_code: Option<i32>, outcome: super::RunOutcome, message: String },
}

fn one() -> u32 {
    1
}

/// What `zsa tasks` shows of a task that runs something.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunView {
    pub argv: Vec<String>,
    pub run_as: Option<String>,
    pub timeout_secs: u64,
    pub on_expiry: String,
    /// How many runs of the task may go at once (older daemons did not say: 1).
    #[serde(default = "one")]
    pub max_concurrent_runs: u32,
    /// Each parameter and what it accepts.
    pub params: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    #[serde(default)]
    pub comment: Option<String>,
}

/// What the holder of a grant asks to extend it by, and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub by_secs: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A grant after its holder asked to extend it: longer at once, or unchanged with the
/// extension `request` waiting for approvers.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtendOutcome {
    pub grant: GrantView,
    pub request: Option<RequestView>,
}

/// What an approval carries: a comment, and where the task needs one, the approver's signature.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<super::SignedApproval>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Something a person may do to one request or grant (the console's keys, the CLI's verbs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowAction {
    Approve,
    Deny,
    Cancel,
    Revoke,
    Relinquish,
    Review,
    Extend,
}

impl RowAction {
    pub const ON_REQUEST: [RowAction; 3] = [RowAction::Approve, RowAction::Deny, RowAction::Cancel];
    pub const ON_GRANT: [RowAction; 4] = [RowAction::Revoke, RowAction::Relinquish, RowAction::Review, RowAction::Extend];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Cancel => "cancel",
            Self::Revoke => "revoke",
            Self::Relinquish => "relinquish",
            Self::Extend => "extend",
            Self::Review => "review",
        }
    }
}

/// Whether the viewer may take one action on a row now; if not, the refusal the daemon would
/// answer to the attempt (its code and message), so a client can say why before asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionView {
    pub action: RowAction,
    pub allowed: bool,
    /// Present when the action counts only signed with the viewer's SSH key: the fingerprints of
    /// the keys the policy lists for them, for the client to find in the SSH agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_with: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// What the viewer may do with a row, as the daemon decided when it answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Actions(pub Vec<ActionView>);

impl Actions {
    /// Ok if the daemon said the viewer may take `action`, else its reason.
    pub fn check(&self, action: RowAction) -> Result<(), String> {
        match self.0.iter().find(|a| a.action == action) {
            Some(a) if a.allowed => Ok(()),
            Some(a) => Err(a.why.clone().unwrap_or_else(|| format!("you may not {} this", action.as_str()))),
            None => Err(format!("the daemon did not say you may {} this; reload (it may be older than this console)", action.as_str())),
        }
    }

    /// Where `action` is allowed and counts only signed: the fingerprints of the viewer's keys.
    pub fn signing_keys(&self, action: RowAction) -> Option<&[String]> {
        self.0.iter().find(|a| a.action == action && a.allowed).and_then(|a| a.sign_with.as_deref())
    }

    pub fn allows(&self, action: RowAction) -> bool {
        self.check(action).is_ok()
    }

    /// The code of the daemon's refusal of `action`, if it refused it.
    pub fn refusal_code(&self, action: RowAction) -> Option<&str> {
        self.0.iter().find(|a| a.action == action && !a.allowed).and_then(|a| a.code.as_deref())
    }
}

/// A request as one viewer sees it: the request, and what that viewer may do with it now.
/// Reads through to the request (`view.task`), so code that shows a request shows a view alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: Request,
    #[serde(default)]
    pub actions: Actions,
    /// Where the task approves in stages: how far it got (`stage 1/2 (lead) done by alice;
    /// stage 2/2 (security): 0 of 2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<String>,
}

/// A grant as one viewer sees it: the grant, and what that viewer may do with it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantView {
    #[serde(flatten)]
    pub grant: Grant,
    #[serde(default)]
    pub actions: Actions,
}

impl std::ops::Deref for RequestView {
    type Target = Request;
    fn deref(&self) -> &Request {
        &self.request
    }
}

impl std::ops::Deref for GrantView {
    type Target = Grant;
    fn deref(&self) -> &Grant {
        &self.grant
    }
}

// Writing through (tests shape rows this way) leaves the actions as the daemon gave them.
impl std::ops::DerefMut for RequestView {
    fn deref_mut(&mut self) -> &mut Request {
        &mut self.request
    }
}

impl std::ops::DerefMut for GrantView {
    fn deref_mut(&mut self) -> &mut Grant {
        &mut self.grant
    }
}

/// A request after a change, with its grant if it has one.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    pub request: RequestView,
    pub grant: Option<GrantView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckAnswer {
    pub allowed: bool,
    pub user: String,
    pub task: String,
    pub grant: Option<Grant>,
    /// Why not, and what to do, when not allowed; a summary when allowed.
    pub message: String,
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    /// Only events with a sequence number above this.
    #[serde(default)]
    pub after: Option<u64>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only the most recent N events (still returned oldest first).
    #[serde(default)]
    pub tail: Option<u32>,
}

/// The daemon's audit key, and where its checkpoints go outside the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditKey {
    pub key: String,
    pub checkpoint_file: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub events: u64,
    /// The hash of the last event that verified: write it down to anchor the chain.
    pub head: Option<String>,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
    /// How many signed checkpoints outside the database the log was checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<u64>,
    /// The daemon's audit key, which signed them (`zsa audit key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_key: Option<String>,
    /// How many approvals signed with an approver's SSH key were checked again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_approvals: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub user: String,
    /// How long it lives (seconds); absent: the policy's `token_ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// It never expires (`--ttl never`): only where the policy's `token_max_ttl` is "never".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never_expires: bool,
    #[serde(default)]
    pub scope: TokenScope,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub id: TokenId,
    pub user: String,
    /// Shown once; the daemon keeps only its SHA-256.
    pub token: String,
    #[serde(default)]
    pub scope: TokenScope,
    /// None: it never expires.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: TokenId,
    pub user: String,
    pub issued_at: DateTime<Utc>,
    pub issued_by: String,
    pub revoked: bool,
    #[serde(default)]
    pub scope: TokenScope,
    /// None: it never expires.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Expired by the daemon's clock when this was answered.
    #[serde(default)]
    pub expired: bool,
    /// When a request last came with it (kept to the minute on disk, exact while the daemon runs).
    #[serde(default)]
    pub last_used: Option<DateTime<Utc>>,
}

impl TokenView {
    /// `active`, `expired` or `revoked`.
    pub fn state(&self) -> &'static str {
        match (self.revoked, self.expired) {
            (true, _) => "revoked",
            (false, true) => "expired",
            (false, false) => "active",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyLoad {
    pub sha256: String,
    pub path: String,
    pub tasks: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// One outbox delivery as `GET /v1/notices` shows it: where it stands, never the rendered
/// notice or any channel secret. `last_error` is made inert (a receiver wrote it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoticeView {
    pub id: u64,
    pub key: String,
    pub trigger: crate::notify::Trigger,
    pub channel: String,
    pub recipient: String,
    pub state: crate::notify::outbox::DeliveryState,
    pub attempts: u32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

impl NoticeView {
    pub fn of(d: &crate::notify::outbox::Delivery) -> NoticeView {
        NoticeView {
            id: d.id,
            key: d.key.clone(),
            trigger: d.trigger,
            channel: d.channel.clone(),
            recipient: d.recipient.clone(),
            state: d.state,
            attempts: d.attempts,
            next_at: d.next_at,
            last_error: d.last_error.as_deref().map(super::text::inert_line),
            created_at: d.created_at,
            done_at: d.done_at,
        }
    }
}
