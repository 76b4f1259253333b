//! Events: every change to zsa's state, in order. The log of events is the truth; current
//! state is what you get by applying them one after another (see `rules::apply`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Auth, GrantId, RequestId, RunId, RunOutcome, TokenId, TokenScope};

/// One recorded change, with its place in the hash chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// Who caused it: a user, `zsa` for the daemon itself.
    pub actor: String,
    /// How the actor authenticated; absent on events written before zsa recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    #[serde(flatten)]
    pub change: Change,
    pub prev_hash: String,
    pub hash: String,
}

/// What changed. Every variant that concerns a person or a task names them, so the log can be
/// filtered and shown without looking anything else up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    PolicyLoaded {
        sha256: String,
        path: String,
        tasks: u32,
    },
    RequestCreated {
        request: RequestId,
        task: String,
        requester: String,
        duration_secs: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket: Option<String>,
        approvals_needed: u32,
        pending_until: DateTime<Utc>,
        break_glass: bool,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        params: std::collections::BTreeMap<String, String>,
        /// An extension of this live grant, asked for by its holder, rather than a new grant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extends: Option<GrantId>,
        /// Asked for when the task took only approvals signed with SSH keys: every approval of
        /// it must be signed, whatever the policy says later.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        signed_approvals: bool,
        /// Asked ahead: its grant starts then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        starts_at: Option<DateTime<Utc>>,
    },
    /// One approver said yes. Enough of these start a grant (a separate event).
    RequestApproved {
        request: RequestId,
        task: String,
        requester: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// Present when the approver signed with their SSH key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<super::ApprovalSignature>,
        /// The stage it was given at (1 first), where the task approves in stages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<u32>,
    },
    /// An earlier approval that no longer counts under the current policy and users (its
    /// approver left the approvers or was disabled, its token was revoked): dropped, so the
    /// request waits for another.
    ApprovalDropped {
        request: RequestId,
        task: String,
        requester: String,
        approver: String,
        why: String,
    },
    RequestDenied {
        request: RequestId,
        task: String,
        requester: String,
        comment: String,
    },
    RequestCancelled {
        request: RequestId,
        task: String,
        requester: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    RequestExpired {
        request: RequestId,
        task: String,
        requester: String,
        deadline: DateTime<Utc>,
    },
    GrantStarted {
        grant: GrantId,
        request: RequestId,
        task: String,
        holder: String,
        /// Approved ahead: the grant gives access only from then (else from this event on).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        starts_at: Option<DateTime<Utc>>,
        expires_at: DateTime<Utc>,
        approved_by: Vec<String>,
        break_glass: bool,
    },
    /// A live grant runs longer: at once where the task extends automatically, or when its
    /// extension request (`extension`) was approved. `expires_at` is the new deadline. Its
    /// record is the grant's (`extension` is not `request`, which would make it the request's).
    GrantExtended {
        grant: GrantId,
        task: String,
        holder: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extension: Option<RequestId>,
        by_secs: u64,
        expires_at: DateTime<Utc>,
        approved_by: Vec<String>,
    },
    /// An extension request was approved: it is done, and `grant` runs longer (the
    /// `grant_extended` just before says until when).
    ExtensionApproved {
        request: RequestId,
        task: String,
        requester: String,
        grant: GrantId,
    },
    /// Ended at its deadline; `deadline` is when it ended, even if recorded later.
    GrantExpired {
        grant: GrantId,
        task: String,
        holder: String,
        deadline: DateTime<Utc>,
    },
    GrantRevoked {
        grant: GrantId,
        task: String,
        holder: String,
        reason: String,
    },
    GrantRelinquished {
        grant: GrantId,
        task: String,
        holder: String,
    },
    GrantReviewed {
        grant: GrantId,
        task: String,
        holder: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// Only the SHA-256 of the token is kept; the token itself is shown once to the admin.
    TokenIssued {
        token: TokenId,
        user: String,
        sha256: String,
        /// When the daemon stops accepting it. Absent: never (a token issued before zsa kept
        /// expiries, or `--ttl never` where the policy allows it). Absent fields are left out
        /// of the hashed body, so events written before them read and verify as they were.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        /// What it may be used for; `all` (left out) unless narrowed.
        #[serde(default, skip_serializing_if = "TokenScope::is_all")]
        scope: TokenScope,
    },
    TokenRevoked {
        token: TokenId,
        user: String,
    },
    UserDisabled {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    UserEnabled {
        user: String,
    },
    /// The wall clock was stepped by more than a couple of seconds. Back: the daemon's time
    /// counted on at the monotonic pace (nothing lasts longer). Forward: the daemon's time moved
    /// with it, and whatever was due by then ended.
    ClockJumped {
        by_ms: i64,
        wall_clock: DateTime<Utc>,
    },
    /// The daemon was started with `--rebuild-from-log`: the current-state tables were rebuilt
    /// from this log, because of `problem` (what the start-up check found, or that it was asked).
    StateRebuilt {
        problem: String,
    },
    /// The daemon started a task's command for a grant's holder: exactly this argument vector.
    RunStarted {
        run: RunId,
        grant: GrantId,
        task: String,
        holder: String,
        argv: Vec<String>,
        run_as: String,
        timeout_secs: u64,
        /// The daemon that runs it (several may share one store); absent before they could.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        daemon: Option<String>,
    },
    RunEnded {
        run: RunId,
        grant: GrantId,
        task: String,
        holder: String,
        outcome: RunOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        transcript_bytes: u64,
        transcript_sha256: String,
        transcript_cap: u64,
        truncated: bool,
    },
    /// Too many bearer tokens that were not valid came from one source within a short window:
    /// the daemon refuses that source's token attempts, without looking at them, until `until`.
    /// Recorded once, when it trips.
    AuthThrottled {
        /// Where they came from: `uid 1000` on the Unix socket, `ip 192.0.2.7` over the network.
        source: String,
        /// Failed attempts within the window when it tripped.
        failures: u32,
        window_secs: u64,
        until: DateTime<Utc>,
    },
    /// The daemon signed that the log's event `signed_seq` has hash `signed_hash`, at
    /// `signed_at`, with its audit key (`evidence`): the same line goes to a file outside the
    /// database, so a log rewritten or cut short after it is caught.
    Checkpoint {
        signed_seq: u64,
        signed_hash: String,
        signed_at: DateTime<Utc>,
        key: String,
        signature: String,
    },
    /// A notice (issue 12) was not delivered and will not be: it failed for good or retried past
    /// its give-up time. Routed like any trigger, so on-call staff hear of it elsewhere.
    NoticeFailed {
        /// The delivery's idempotency key.
        notice: String,
        /// The event the notice was about.
        about: u64,
        trigger: crate::notify::Trigger,
        channel: String,
        recipient: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<String>,
        /// The requester or holder the failed notice was about.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
        error: String,
    },
    /// An admin put a failed notice back to be delivered again (`zsa admin notices retry`): on
    /// the record, so an auditor sees who re-sent what, and when.
    NoticeRetried {
        /// The outbox's id of the delivery (`zsa notices` lists it).
        id: u64,
        /// The delivery's idempotency key: every retry carries the same one.
        notice: String,
        trigger: crate::notify::Trigger,
        channel: String,
        recipient: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<String>,
        /// Why it had failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl Event {
    /// How the actor authenticated, for people: `token T4 issued by dave`, or `not recorded` on
    /// events written before zsa kept it.
    pub fn proved(&self) -> String {
        self.auth.as_ref().map(Auth::describe).unwrap_or_else(|| "not recorded".into())
    }
}

impl Change {
    /// The snake_case name of the variant, as in the JSON `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PolicyLoaded { .. } => "policy_loaded",
            Self::RequestCreated { .. } => "request_created",
            Self::RequestApproved { .. } => "request_approved",
            Self::ApprovalDropped { .. } => "approval_dropped",
            Self::RequestDenied { .. } => "request_denied",
            Self::RequestCancelled { .. } => "request_cancelled",
            Self::RequestExpired { .. } => "request_expired",
            Self::GrantStarted { .. } => "grant_started",
            Self::GrantExtended { .. } => "grant_extended",
            Self::ExtensionApproved { .. } => "extension_approved",
            Self::GrantExpired { .. } => "grant_expired",
            Self::GrantRevoked { .. } => "grant_revoked",
            Self::GrantRelinquished { .. } => "grant_relinquished",
            Self::GrantReviewed { .. } => "grant_reviewed",
            Self::TokenIssued { .. } => "token_issued",
            Self::TokenRevoked { .. } => "token_revoked",
            Self::UserDisabled { .. } => "user_disabled",
            Self::UserEnabled { .. } => "user_enabled",
            Self::StateRebuilt { .. } => "state_rebuilt",
            Self::ClockJumped { .. } => "clock_jumped",
            Self::RunStarted { .. } => "run_started",
            Self::RunEnded { .. } => "run_ended",
            Self::NoticeFailed { .. } => "notice_failed",
            Self::NoticeRetried { .. } => "notice_retried",
            Self::AuthThrottled { .. } => "auth_throttled",
            Self::Checkpoint { .. } => "checkpoint",
        }
    }

    /// The person the change is about (requester, holder, token owner, disabled user).
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::PolicyLoaded { .. }
            | Self::StateRebuilt { .. }
            | Self::ClockJumped { .. }
            | Self::AuthThrottled { .. }
            | Self::Checkpoint { .. } => None,
            Self::RequestCreated { requester, .. }
            | Self::RequestApproved { requester, .. }
            | Self::ApprovalDropped { requester, .. }
            | Self::RequestDenied { requester, .. }
            | Self::RequestCancelled { requester, .. }
            | Self::RequestExpired { requester, .. }
            | Self::ExtensionApproved { requester, .. } => Some(requester),
            Self::GrantStarted { holder, .. }
            | Self::GrantExtended { holder, .. }
            | Self::RunStarted { holder, .. }
            | Self::RunEnded { holder, .. }
            | Self::GrantExpired { holder, .. }
            | Self::GrantRevoked { holder, .. }
            | Self::GrantRelinquished { holder, .. }
            | Self::GrantReviewed { holder, .. } => Some(holder),
            Self::TokenIssued { user, .. }
            | Self::TokenRevoked { user, .. }
            | Self::UserDisabled { user, .. }
            | Self::UserEnabled { user } => Some(user),
            Self::NoticeFailed { person, .. } => person.as_deref(),
            Self::NoticeRetried { .. } => None,
        }
    }

    /// The task the change is about, if any.
    pub fn task(&self) -> Option<&str> {
        match self {
            Self::RequestCreated { task, .. }
            | Self::RequestApproved { task, .. }
            | Self::ApprovalDropped { task, .. }
            | Self::RequestDenied { task, .. }
            | Self::RequestCancelled { task, .. }
            | Self::RequestExpired { task, .. }
            | Self::GrantStarted { task, .. }
            | Self::GrantExtended { task, .. }
            | Self::ExtensionApproved { task, .. }
            | Self::GrantExpired { task, .. }
            | Self::GrantRevoked { task, .. }
            | Self::GrantRelinquished { task, .. }
            | Self::GrantReviewed { task, .. }
            | Self::RunStarted { task, .. }
            | Self::RunEnded { task, .. } => Some(task),
            Self::NoticeFailed { task, .. } | Self::NoticeRetried { task, .. } => task.as_deref(),
            _ => None,
        }
    }

    /// The request or grant id the change concerns, as shown to people.
    pub fn target(&self) -> Option<String> {
        match self {
            Self::RequestCreated { request, .. }
            | Self::RequestApproved { request, .. }
            | Self::ApprovalDropped { request, .. }
            | Self::RequestDenied { request, .. }
            | Self::RequestCancelled { request, .. }
            | Self::RequestExpired { request, .. }
            | Self::ExtensionApproved { request, .. } => Some(request.to_string()),
            Self::GrantStarted { grant, .. }
            | Self::GrantExtended { grant, .. }
            | Self::GrantExpired { grant, .. }
            | Self::GrantRevoked { grant, .. }
            | Self::GrantRelinquished { grant, .. }
            | Self::GrantReviewed { grant, .. } => Some(grant.to_string()),
            Self::TokenIssued { token, .. } | Self::TokenRevoked { token, .. } => Some(token.to_string()),
            Self::RunStarted { run, .. } | Self::RunEnded { run, .. } => Some(run.to_string()),
            _ => None,
        }
    }
}

impl Change {
    /// The record this event writes, as the store keys history: a request and its grant share
    /// `R<n>`, runs are `X<n>`, tokens `T<n>`, a user's disabling `U:<name>`. The store checks
    /// each live row against the events of its record before the daemon serves from it.
    pub fn record(&self) -> Option<String> {
        match self {
            Self::UserDisabled { user, .. } | Self::UserEnabled { user } => Some(user_record(user)),
            // A grant's events belong to its request's record (G12 is R12's grant).
            _ => self.target().map(|t| t.strip_prefix('G').map_or(t.clone(), |n| format!("R{n}"))),
        }
    }
}

impl Change {
    /// The current-state rows this event writes, by key (`R<n>` a request, `G<n>` a grant, `X<n>`,
    /// `T<n>`, `U:<name>`): each row is stamped with the newest event that wrote it.
    pub fn rows(&self) -> Vec<String> {
        match self {
            Self::GrantStarted { request, grant, .. } => vec![request.to_string(), grant.to_string()],
            Self::GrantExpired { grant, .. }
            | Self::GrantRevoked { grant, .. }
            | Self::GrantRelinquished { grant, .. }
            | Self::GrantReviewed { grant, .. }
            | Self::GrantExtended { grant, .. } => vec![grant.to_string()],
            other => other.record().into_iter().collect(),
        }
    }
}

/// The record of a user's disabling and enabling.
pub fn user_record(user: &str) -> String {
    format!("U:{user}")
}

impl Change {
    /// A one-line account of the details, for logs and tables. User text is made inert.
    pub fn summary(&self) -> String {
        use super::{duration, text::inert_line};
        let opt = |label: &str, v: &Option<String>| v.as_deref().map(|v| format!(" {label}: {}", inert_line(v))).unwrap_or_default();
        match self {
            Self::PolicyLoaded { sha256, path, tasks } => format!("{} ({tasks} tasks) sha256 {sha256}", inert_line(path)),
            Self::RequestCreated { duration_secs, reason, ticket, approvals_needed, break_glass, extends, .. } => format!(
                "{} {}, {}{}{}",
                match extends {
                    Some(g) => format!("extend {g} by"),
                    None => "for".into(),
                },
                duration::format(*duration_secs),
                match (*break_glass, *approvals_needed) {
                    (true, _) => "break-glass".to_string(),
                    (false, 0) => "granted by policy".to_string(),
                    (false, 1) => "needs 1 approval".to_string(),
                    (false, n) => format!("needs {n} approvals"),
                },
                opt("ticket", ticket),
                opt("reason", reason)
            ),
            Self::RequestApproved { comment, signature, .. } => {
                let signed = signature.as_ref().map(|s| format!(" signed with {}", inert_line(&s.key))).unwrap_or_default();
                format!("{signed}{}", opt("comment", comment)).trim_start().to_string()
            }
            Self::ApprovalDropped { approver, why, .. } => {
                format!("the approval of {} no longer counts: {}", inert_line(approver), inert_line(why))
            }
            Self::RequestDenied { comment, .. } => format!("comment: {}", inert_line(comment)),
            Self::RequestCancelled { reason, .. } => opt("reason", reason).trim_start().to_string(),
            Self::RequestExpired { deadline, .. } => format!("unanswered at its deadline {}", deadline.to_rfc3339()),
            Self::GrantStarted { expires_at, approved_by, break_glass, .. } => format!(
                "until {}{}, approved by {}",
                expires_at.to_rfc3339(),
                if *break_glass { " BREAK-GLASS" } else { "" },
                if approved_by.is_empty() { "nobody yet".to_string() } else { inert_line(&approved_by.join(", ")) }
            ),
            Self::ExtensionApproved { grant, .. } => format!("{grant} runs longer"),
            Self::GrantExtended { by_secs, expires_at, approved_by, extension, .. } => format!(
                "by {} until {}, {}",
                duration::format(*by_secs),
                expires_at.to_rfc3339(),
                match extension {
                    Some(r) => format!("{r} approved by {}", inert_line(&approved_by.join(", "))),
                    None => "by policy".into(),
                }
            ),
            Self::GrantExpired { deadline, .. } => format!("ended at its deadline {}", deadline.to_rfc3339()),
            Self::GrantRevoked { reason, .. } => format!("reason: {}", inert_line(reason)),
            Self::GrantRelinquished { .. } => String::new(),
            Self::GrantReviewed { comment, .. } => opt("comment", comment).trim_start().to_string(),
            Self::TokenIssued { token, expires_at, scope, .. } => format!(
                "token {token}, scope {scope}, {}",
                expires_at.map_or("never expires".to_string(), |t| format!("expires {}", t.to_rfc3339()))
            ),
            Self::TokenRevoked { token, .. } => format!("token {token}"),
            Self::UserDisabled { reason, .. } => opt("reason", reason).trim_start().to_string(),
            Self::UserEnabled { .. } => String::new(),
            Self::StateRebuilt { problem } => format!("current state rebuilt from the log: {}", inert_line(problem)),
            Self::ClockJumped { by_ms, wall_clock } => {
                let by = duration::format(by_ms.unsigned_abs().div_ceil(1000));
                if *by_ms < 0 {
                    format!("the wall clock was stepped back {by} (it read {}); zsa's time counted on", wall_clock.to_rfc3339())
                } else {
                    format!("the wall clock jumped forward {by} (to {}); zsa's time moved with it", wall_clock.to_rfc3339())
                }
            }
            Self::RunStarted { grant, argv, run_as, .. } => {
                format!("with {grant} as {}: {}", inert_line(run_as), inert_line(&argv.join(" ")))
            }
            Self::RunEnded { outcome, exit_code, transcript_bytes, transcript_sha256, truncated, .. } => format!(
                "{}{}, transcript {transcript_bytes} bytes{} sha256 {transcript_sha256}",
                outcome.as_str(),
                exit_code.map(|c| format!(" with exit code {c}")).unwrap_or_default(),
                if *truncated { " (cut at the cap)" } else { "" }
            ),
            Self::Checkpoint { signed_seq, signed_hash, key, .. } => format!("signed event {signed_seq} ({signed_hash}) with {key}"),
            Self::AuthThrottled { source, failures, window_secs, until } => format!(
                "{failures} tokens that were not valid from {} within {}: its token attempts are refused until {}",
                inert_line(source),
                duration::format(*window_secs),
                until.to_rfc3339()
            ),
            Self::NoticeFailed { notice, trigger, channel, recipient, error, .. } => format!(
                "{} via {} to {} ({}): {}",
                trigger.as_str(),
                inert_line(channel),
                inert_line(recipient),
                inert_line(notice),
                inert_line(error)
            ),
            Self::NoticeRetried { id, notice, trigger, channel, recipient, error, .. } => format!(
                "notice {id}, {} via {} to {} ({}), sent again{}",
                trigger.as_str(),
                inert_line(channel),
                inert_line(recipient),
                inert_line(notice),
                error.as_deref().map(|e| format!(" after: {}", inert_line(e))).unwrap_or_default()
            ),
        }
    }
}
