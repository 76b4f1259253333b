//! The rules of zsa, with no I/O: `decide` turns a command into events or a refusal, `apply`
//! turns events into state. The clock is a parameter, so every rule is testable at any moment.

mod actions;
mod decide;
mod refusal;
mod state;
mod visibility;

pub use actions::{Row, approvers_for, approvers_now, grant_actions, permits, request_actions, request_view};
pub use decide::{Command, TokenTtl, decide, eligibility_ended, may_retry_notice, stage_progress, waiting_stage};
pub use refusal::{Refusal, RefusalKind};
pub use state::{Deadline, Entity, State};
pub use visibility::{check_access, event_visible, grant_visible, request_visible, run_visible};

#[cfg(test)]
mod tests;
