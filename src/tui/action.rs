//! What can happen to the console: intents (from keys) and results (from the daemon). Intents are
//! imperative (`ApproveSelected`), results past tense (`RequestLoaded`).

use chrono::{DateTime, Utc};
use crossterm::event::{KeyEvent, MouseEvent};

use crate::model::wire::{GrantView, NewRequest, NoticeView, Outcome, RequestView, TaskView, VerifyReport, WhoAmI};
use crate::model::{Event, GrantId, RequestId, RunId};

#[derive(Clone, Debug)]
pub enum Action {
    /// A key the user pressed; `update` translates it through the keymap.
    Key(KeyEvent),
    /// A key for the popup or text field that has the keyboard (the keymap's translation
    /// outside the panes); the app reads it against its mode.
    ModeKey(KeyEvent),
    /// A mouse event (the wheel scrolls the current list).
    Mouse(MouseEvent),
    /// A second passed (only sent while something on screen counts down).
    Tick,
    Resize,

    // Intents, from the keymap.
    Quit,
    NextPane,
    SelectPane(usize),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    NextSection,
    PrevSection,
    OpenDetail,
    Back,
    ToggleHelp,
    NewRequest,
    CancelSelected,
    RelinquishSelected,
    ExtendSelected,
    ApproveSelected,
    DenySelected,
    RevokeSelected,
    ReviewSelected,
    StartFilter,
    /// Sort the pane's rows by the next column (id, task, user, time, then as at first).
    CycleSort,
    ReverseSort,
    ToggleFollow,
    ExportLog,
    VerifyLog,
    ToggleBell,
    SwitchUser,
    DismissToast,

    // Results, from effects and the event stream.
    /// What is live, and the newest page of the viewer's own history (`older`: where the next
    /// page starts, if there may be one).
    Loaded {
        me: WhoAmI,
        tasks: Vec<TaskView>,
        requests: Vec<RequestView>,
        grants: Vec<GrantView>,
        older: Option<RequestId>,
        log: Vec<Event>,
        /// The notices that failed (auditors and admins; empty for others).
        notices: Vec<NoticeView>,
    },
    LoadFailed(String),
    /// An older page of the viewer's own requests: those before `before`.
    HistoryLoaded {
        before: RequestId,
        requests: Vec<RequestView>,
        older: Option<RequestId>,
    },
    HistoryFailed(String),
    /// A notice the demo's file channel wrote (see `TuiOptions::notices`).
    NoticeWritten(Box<crate::notify::Notice>),
    /// The failed notices, fetched again after a `notice_failed` or `notice_retried`.
    FailedNoticesLoaded(Vec<NoticeView>),
    EventReceived(Event),
    RequestLoaded(Box<Outcome>),
    GrantLoaded(Box<GrantView>),
    StreamConnected,
    StreamLost(String),
    Done(String),
    Failed(String),
    Verified(VerifyReport),
    /// The chain could not be checked (the daemon went away, or refused).
    VerifyFailed(String),
    Exported {
        path: String,
        count: usize,
    },
    /// A run's transcript and the SHA-256 of the bytes received.
    TranscriptLoaded {
        run: RunId,
        text: String,
        sha256: String,
    },
}

impl Action {
    /// A result from the daemon or an effect (as opposed to input or an intent).
    pub fn is_result(&self) -> bool {
        matches!(
            self,
            Action::Loaded { .. }
                | Action::LoadFailed(_)
                | Action::HistoryLoaded { .. }
                | Action::HistoryFailed(_)
                | Action::FailedNoticesLoaded(_)
                | Action::NoticeWritten(_)
                | Action::EventReceived(_)
                | Action::RequestLoaded(_)
                | Action::GrantLoaded(_)
                | Action::StreamConnected
                | Action::StreamLost(_)
                | Action::Done(_)
                | Action::Failed(_)
                | Action::Verified(_)
                | Action::VerifyFailed(_)
                | Action::Exported { .. }
                | Action::TranscriptLoaded { .. }
        )
    }
}

/// Work for the runtime to do outside `update`, which never waits on I/O.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    LoadAll,
    /// The page of the viewer's own requests older than this one.
    LoadHistory(RequestId),
    FetchRequest(RequestId),
    FetchGrant(GrantId),
    FetchFailedNotices,
    Submit(Submission),
    Verify,
    Export {
        path: String,
        events: Vec<Event>,
    },
    Bell,
    /// Act as the next demo person: a new client, stream and load.
    SwitchUser(usize),
    FetchTranscript(RunId),
}

/// A change the user confirmed, sent to the daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum Submission {
    Request(NewRequest),
    Approve(RequestId, Option<String>),
    Deny(RequestId, String),
    Cancel(RequestId),
    Revoke(GrantId, String),
    Relinquish(GrantId),
    Review(GrantId, Option<String>),
    /// Extend a grant by so many seconds, for a reason.
    Extend(GrantId, u64, Option<String>),
}

/// The daemon's time as the console believes it: local time corrected by the measured offset.
pub fn daemon_now(offset_ms: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::milliseconds(offset_ms)
}
