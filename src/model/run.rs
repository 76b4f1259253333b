//! A run: the daemon carrying out an approved task for the grant's holder, with the exact
//! argument vector it executed and a digest of everything the command printed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{GrantId, RunId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The command ended by itself; see the exit code.
    Exited,
    /// Stopped after the task's timeout.
    TimedOut,
    /// Stopped because its grant ended (expired, revoked, relinquished).
    GrantEnded,
    /// The command could not be started.
    FailedToStart,
    /// The daemon stopped while it ran; how it ended is unknown.
    Abandoned,
    /// Stopped, with its whole process tree, because the daemon was stopping.
    DaemonStopped,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::TimedOut => "timed_out",
            Self::GrantEnded => "grant_ended",
            Self::FailedToStart => "failed_to_start",
            Self::Abandoned => "abandoned",
            Self::DaemonStopped => "daemon_stopped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunEnd {
    pub at: DateTime<Utc>,
    pub outcome: RunOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Size and SHA-256 of the transcript as kept (at most `transcript_cap` bytes).
    pub transcript_bytes: u64,
    pub transcript_sha256: String,
    pub transcript_cap: u64,
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: RunId,
    pub grant: GrantId,
    pub task: String,
    pub holder: String,
    pub argv: Vec<String>,
    pub run_as: String,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<RunEnd>,
    /// The daemon whose process it is: only it can watch the process, and only when its
    /// heartbeats stop may another record the run abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
}
