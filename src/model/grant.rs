//! A grant: approved access to one task for one person, ending by itself at `expires_at`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{GrantId, RequestId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Active,
    Expired,
    Revoked,
    Relinquished,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Relinquished => "relinquished",
        }
    }
}

/// How and when a grant ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantEnd {
    pub at: DateTime<Utc>,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An approver's after-the-fact look at a break-glass grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Review {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    pub id: GrantId,
    pub request: RequestId,
    pub task: String,
    pub holder: String,
    pub state: GrantState,
    pub granted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Who approved it; `policy` for automatic tasks and break-glass.
    pub approved_by: Vec<String>,
    pub break_glass: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<GrantEnd>,
    /// How much longer than first granted it runs, by every extension together.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extended_secs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Grant {
    /// Active at `now`: started, not ended and not past its deadline, even if the sweep has not
    /// run yet. A grant approved ahead gives nothing before its start.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.state == GrantState::Active && self.granted_at <= now && now < self.expires_at
    }

    /// Not ended and not past its deadline: active, or approved ahead and not started yet.
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.state == GrantState::Active && now < self.expires_at
    }

    /// Approved ahead and not started at `now`.
    pub fn is_scheduled_at(&self, now: DateTime<Utc>) -> bool {
        self.is_live_at(now) && now < self.granted_at
    }

    pub fn needs_review(&self) -> bool {
        self.break_glass && self.review.is_none()
    }
}
