//! A request: someone asks to do a task for a while, for a reason. It waits for approvals,
//! then becomes a grant, or ends denied, cancelled or expired.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Auth, GrantId, RequestId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    /// Approved by enough approvers (or by policy): a grant exists.
    Approved,
    Denied,
    Cancelled,
    /// Nobody answered within the policy's `pending_ttl`.
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub by: String,
    pub at: DateTime<Utc>,
    /// How the approver authenticated: checked again when the grant is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The fingerprint of the SSH key that signed it, if signed: checked again when the grant is
    /// made, so a key taken out of the policy stops counting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_with: Option<String>,
    /// The approval stage it was given at (1 first), where the task has stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u32>,
}

/// What an approver sends with an approval signed through their SSH agent: when they signed, and
/// the armored SSHSIG (namespace `zsa`) over the statement `evidence::approval` builds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedApproval {
    pub signed_at: DateTime<Utc>,
    pub signature: String,
}

/// A checked approval signature as the log keeps it: enough for anyone to check it again with
/// no daemon (the statement is rebuilt from the request and this).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSignature {
    pub signed_at: DateTime<Utc>,
    /// `SHA256:...` of the key, which the policy listed for the approver when it was checked.
    pub key: String,
    /// The armored SSHSIG; it holds the public key itself.
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Request {
    pub id: RequestId,
    pub task: String,
    pub requester: String,
    pub state: RequestState,
    pub duration_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the request expires if nobody answers it.
    pub pending_until: DateTime<Utc>,
    pub approvals_needed: u32,
    pub approvals: Vec<Approval>,
    pub break_glass: bool,
    /// When it stopped being pending, by whom, and what they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantId>,
    /// Parameters fixed when asking, so approvers approve exactly what will run.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
    /// Set when this asks to extend a live grant of the requester's by `duration_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<GrantId>,
    /// Every approval of it must be signed with the approver's SSH key (the task said so when
    /// it was asked for).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed_approvals: bool,
    /// Asked ahead: when its grant starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
}

impl Request {
    /// The pending request a `request_created` event makes (asked at `at`, the event's time):
    /// what the state keeps and what the audit walk checks signed approvals against.
    pub fn created(change: &super::Change, at: DateTime<Utc>) -> Option<Request> {
        let super::Change::RequestCreated {
            request,
            task,
            requester,
            duration_secs,
            reason,
            ticket,
            approvals_needed,
            pending_until,
            break_glass,
            params,
            extends,
            signed_approvals,
            starts_at,
        } = change
        else {
            return None;
        };
        Some(Request {
            id: *request,
            task: task.clone(),
            requester: requester.clone(),
            state: RequestState::Pending,
            duration_secs: *duration_secs,
            reason: reason.clone(),
            ticket: ticket.clone(),
            created_at: at,
            pending_until: *pending_until,
            approvals_needed: *approvals_needed,
            approvals: Vec::new(),
            break_glass: *break_glass,
            decided_at: None,
            decided_by: None,
            comment: None,
            grant: None,
            params: params.clone(),
            extends: *extends,
            signed_approvals: *signed_approvals,
            starts_at: *starts_at,
        })
    }

    pub fn approved_by(&self, user: &str) -> bool {
        self.approvals.iter().any(|a| a.by == user)
    }
}
