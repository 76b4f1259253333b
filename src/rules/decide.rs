//! `decide`: given the state, the policy, who is asking and the time, what happens. Pure.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::{Deadline, Entity, Refusal, State};
use crate::evidence::approval;
use crate::model::wire::{MAX_COMMENT_CHARS, MAX_NAME_CHARS, MAX_REASON_CHARS, MAX_TICKET_CHARS, NewRequest};
use crate::model::{
    Actor, Approval, ApprovalSignature, Auth, Change, Grant, GrantId, POLICY_APPROVER, Request, RequestId, RequestState, RunId, RunOutcome,
    SignedApproval, TokenId, TokenScope, duration, text,
};
use crate::policy::windows::{Opening, OutsideWindow, Windows};
use crate::policy::{ApprovalMode, ExtendMode, Policy, Task};

/// Something a person (or the daemon) asks zsa to do.
#[derive(Clone, Debug)]
pub enum Command {
    Request(NewRequest),
    Approve {
        request: RequestId,
        comment: Option<String>,
        /// The approver's SSH signature, required where the task has `signed_approvals`.
        signature: Option<SignedApproval>,
    },
    Deny {
        request: RequestId,
        comment: Option<String>,
    },
    Cancel {
        request: RequestId,
    },
    Revoke {
        grant: GrantId,
        reason: Option<String>,
    },
    Relinquish {
        grant: GrantId,
    },
    /// The holder asks for their live grant to run `by_secs` longer.
    Extend {
        grant: GrantId,
        by_secs: u64,
        reason: Option<String>,
    },
    Review {
        grant: GrantId,
        comment: Option<String>,
    },
    IssueToken {
        user: String,
        sha256: String,
        ttl: TokenTtl,
        scope: TokenScope,
    },
    RevokeToken {
        token: TokenId,
    },
    DisableUser {
        user: String,
        reason: Option<String>,
    },
    EnableUser {
        user: String,
    },
    /// Record that `policy` is now in force.
    LoadPolicy,
    /// End everything whose deadline is at or before now. Only the daemon issues it.
    Expire,
    /// Run the task's command with the actor's active grant.
    StartRun {
        task: String,
        params: BTreeMap<String, String>,
        run_as: String,
        /// The daemon that will run it.
        daemon: Option<String>,
    },
    /// Record how a run ended. Only the daemon issues it.
    EndRun {
        run: RunId,
        outcome: RunOutcome,
        exit_code: Option<i32>,
        transcript_bytes: u64,
        transcript_sha256: String,
        transcript_cap: u64,
        truncated: bool,
    },
    /// Runs `daemon` was running ended in an unknown way: at its own start (it died with them),
    /// or when another daemon saw its heartbeats stop. `None`: runs no daemon is named for.
    /// `only`: just these runs (those seen when its heartbeats were judged lapsed), so a decision
    /// taken again after a race never reaches a run started since.
    AbandonRuns {
        daemon: Option<String>,
        only: Option<std::collections::BTreeSet<RunId>>,
    },
    /// Record a step of the wall clock the daemon saw. Only the daemon issues it.
    NoteClockJump {
        by_ms: i64,
        wall_clock: DateTime<Utc>,
    },
    /// On start with `--rebuild-from-log`: record that the current state was rebuilt, and why.
    NoteRebuilt {
        problem: String,
    },
    /// Record that a notice will not be delivered (issue 12). Only the daemon's sender issues
    /// it; it becomes `Change::NoticeFailed` as it is.
    NoteNoticeFailed(Box<crate::model::Change>),
    /// Record that a source's token attempts are refused for a while (too many that were not
    /// valid). Only the daemon issues it, once each time it trips.
    NoteAuthThrottled {
        source: String,
        failures: u32,
        window_secs: u64,
        until: DateTime<Utc>,
    },
    /// Record a checkpoint the daemon signed (`evidence`). Only the daemon issues it.
    NoteCheckpoint(crate::evidence::Checkpoint),
    /// Put a failed notice back to be delivered again (admins). The engine reads the delivery
    /// from the outbox and makes sure it failed; this is the `Change::NoticeRetried` to record.
    RetryNotice(Box<crate::model::Change>),
}

/// How long a token an admin asks for should live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenTtl {
    /// The policy's `token_ttl`.
    PolicyDefault,
    Secs(u64),
    /// `--ttl never`: only where the policy's `token_max_ttl` is "never".
    Never,
}

impl Command {
    /// A token for `user` with the policy's default lifetime and every scope.
    pub fn issue_token(user: impl Into<String>, sha256: impl Into<String>) -> Command {
        Command::IssueToken { user: user.into(), sha256: sha256.into(), ttl: TokenTtl::PolicyDefault, scope: TokenScope::All }
    }

    /// The existing entity the command is about. The engine makes sure it is in memory (even if
    /// it ended long ago) before deciding, so a refusal can say what became of it.
    pub fn names(&self) -> Option<Entity> {
        match self {
            Command::Approve { request, .. } | Command::Deny { request, .. } | Command::Cancel { request } => {
                Some(Entity::Request(*request))
            }
            Command::Revoke { grant, .. }
            | Command::Relinquish { grant }
            | Command::Review { grant, .. }
            | Command::Extend { grant, .. } => Some(Entity::Grant(*grant)),
            Command::RevokeToken { token } => Some(Entity::Token(*token)),
            Command::EndRun { run, .. } => Some(Entity::Run(*run)),
            Command::DisableUser { user, .. } | Command::EnableUser { user } => Some(Entity::User(user.clone())),
            Command::Request(_)
            | Command::IssueToken { .. }
            | Command::LoadPolicy
            | Command::Expire
            | Command::StartRun { .. }
            | Command::AbandonRuns { .. }
            | Command::NoteRebuilt { .. }
            | Command::NoteNoticeFailed(_)
            | Command::RetryNotice(_)
            | Command::NoteAuthThrottled { .. }
            | Command::NoteCheckpoint(_)
            | Command::NoteClockJump { .. } => None,
        }
    }
}

/// Decides what `actor` asking for `command` at `now` changes, or why it may not.
pub fn decide(state: &State, policy: &Policy, who: &Actor, command: &Command, now: DateTime<Utc>) -> Result<Vec<Change>, Refusal> {
    let actor = who.user.as_str();
    let system = who.is_daemon();
    not_disabled(state, who)?;
    match command {
        Command::Request(new) => request(state, policy, actor, new, now),
        Command::Approve { request, comment, signature } => {
            approve(state, policy, who, *request, comment.as_deref(), signature.as_ref(), now)
        }
        Command::Deny { request, comment } => deny(state, policy, actor, *request, comment.as_deref(), now),
        Command::Cancel { request } => cancel(state, policy, actor, *request, now),
        Command::Revoke { grant, reason } => revoke(state, policy, actor, *grant, reason.as_deref(), now),
        Command::Relinquish { grant } => relinquish(state, policy, actor, *grant, now),
        Command::Extend { grant, by_secs, reason } => extend(state, policy, actor, *grant, *by_secs, reason.as_deref(), now),
        Command::Review { grant, comment } => review(state, policy, who, *grant, comment.as_deref()),
        Command::IssueToken { user, sha256, ttl, scope } => {
            admin_only(policy, actor, system, "issue tokens")?;
            if let Auth::Token { token, .. } = &who.auth {
                // Otherwise a token could mint tokens, and the one who really issued them would be hidden.
                return Err(Refusal::forbidden(
                    "token_cannot_issue",
                    format!(
                        "you came through token {token}, and tokens are issued only at an admin's own login on the daemon's host (zsa admin token issue over SSH), so that every token names the person who really issued it"
                    ),
                ));
            }
            check_user_name(user)?;
            if !policy.knows(user, now) {
                return Err(Refusal::invalid(
                    "unknown_user",
                    format!(
                        "'{}' is in no group of the policy, so a token would let them do nothing; add them to a group first",
                        text::inert(user)
                    ),
                ));
            }
            let expires_at = token_expiry(policy, *ttl, now)?;
            Ok(vec![Change::TokenIssued {
                token: state.next_token_id(),
                user: user.clone(),
                sha256: sha256.clone(),
                expires_at,
                scope: *scope,
            }])
        }
        Command::RevokeToken { token } => {
            admin_only(policy, actor, system, "revoke tokens")?;
            match state.tokens.get(token) {
                None => Err(Refusal::not_found("no_such_token", format!("there is no token {token}"))),
                Some(t) if t.revoked => Err(Refusal::conflict("token_revoked", format!("token {token} of {} is already revoked", t.user))),
                Some(t) => {
                    let mut changes = vec![Change::TokenRevoked { token: *token, user: t.user.clone() }];
                    changes.extend(drop_stale(state, |_, a| {
                        matches!(&a.auth, Some(Auth::Token { token: through, .. }) if through == token).then(|| no_longer_valid(&a.by))
                    }));
                    Ok(changes)
                }
            }
        }
        Command::DisableUser { user, reason } => disable(state, policy, actor, system, user, reason.as_deref()),
        Command::EnableUser { user } => {
            admin_only(policy, actor, system, "enable users")?;
            if !state.is_disabled(user) {
                return Err(Refusal::conflict("not_disabled", format!("'{}' is not disabled", text::inert(user))));
            }
            Ok(vec![Change::UserEnabled { user: user.clone() }])
        }
        Command::LoadPolicy => {
            admin_only(policy, actor, system, "reload the policy")?;
            let mut changes =
                vec![Change::PolicyLoaded { sha256: policy.sha256.clone(), path: policy.path.clone(), tasks: policy.tasks.len() as u32 }];
            // Approvals given under the old policy count only if the new one would accept them too.
            changes.extend(drop_stale(state, |r, a| policy.tasks.get(&r.task).and_then(|t| why_stale(state, policy, t, r, a))));
            Ok(changes)
        }
        Command::Expire => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon ends things at their deadline"));
            }
            let mut changes = expire(state, now);
            changes.extend(eligibility_ended(state, policy, now));
            Ok(changes)
        }
        Command::StartRun { task, params, run_as, daemon } => {
            let mut started = start_run(state, policy, actor, task, params, run_as, now)?;
            for change in &mut started {
                if let Change::RunStarted { daemon: by, .. } = change {
                    by.clone_from(daemon);
                }
            }
            Ok(started)
        }
        Command::EndRun { run, outcome, exit_code, transcript_bytes, transcript_sha256, transcript_cap, truncated } => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon records how a run ended"));
            }
            let r = state.runs.get(run).ok_or_else(|| Refusal::not_found("no_such_run", format!("there is no run {run}")))?;
            if r.ended.is_some() {
                return Err(Refusal::conflict("run_ended", format!("{run} has already ended")));
            }
            let transcript = (*transcript_bytes, transcript_sha256.clone(), *transcript_cap, *truncated);
            Ok(vec![run_ended(r, *outcome, *exit_code, transcript)])
        }
        Command::NoteClockJump { by_ms, wall_clock } => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon records the clock's jumps"));
            }
            Ok(vec![Change::ClockJumped { by_ms: *by_ms, wall_clock: *wall_clock }])
        }
        Command::NoteCheckpoint(c) => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon records checkpoints"));
            }
            Ok(vec![Change::Checkpoint {
                signed_seq: c.seq,
                signed_hash: c.hash.clone(),
                signed_at: c.at,
                key: c.key.clone(),
                signature: c.signature.clone(),
            }])
        }
        Command::NoteAuthThrottled { source, failures, window_secs, until } => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon records throttled sources"));
            }
            Ok(vec![Change::AuthThrottled { source: source.clone(), failures: *failures, window_secs: *window_secs, until: *until }])
        }
        Command::NoteRebuilt { problem } => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon rebuilds its state from the log"));
            }
            Ok(vec![Change::StateRebuilt { problem: problem.clone() }])
        }
        Command::NoteNoticeFailed(change) => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon's sender records failed notices"));
            }
            match change.as_ref() {
                failed @ Change::NoticeFailed { .. } => Ok(vec![failed.clone()]),
                _ => Err(Refusal::forbidden("daemon_only", "only a failed notice is recorded this way")),
            }
        }
        Command::RetryNotice(change) => {
            may_retry_notice(policy, actor)?;
            match change.as_ref() {
                retried @ Change::NoticeRetried { .. } => Ok(vec![retried.clone()]),
                _ => Err(Refusal::forbidden("daemon_only", "only a retried notice is recorded this way")),
            }
        }
        Command::AbandonRuns { daemon, only } => {
            if !system {
                return Err(Refusal::forbidden("daemon_only", "only the daemon abandons runs"));
            }
            let unknown = (0, String::new(), 0, false);
            Ok(state
                .running
                .iter()
                .filter(|id| only.as_ref().is_none_or(|only| only.contains(id)))
                .filter_map(|id| state.runs.get(id))
                .filter(|r| r.daemon == *daemon)
                .map(|r| run_ended(r, RunOutcome::Abandoned, None, unknown.clone()))
                .collect())
        }
    }
}

/// When a token asked for at `now` with `ttl` expires (None: never), or why the policy does not
/// allow it: longer than `token_max_ttl`, or never where the policy sets a maximum.
fn token_expiry(policy: &Policy, ttl: TokenTtl, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Refusal> {
    let secs = match ttl {
        TokenTtl::PolicyDefault => policy.token_ttl,
        TokenTtl::Secs(secs) => Some(secs),
        TokenTtl::Never => None,
    };
    match (secs, policy.token_max_ttl) {
        (Some(0), _) => Err(Refusal::invalid("bad_ttl", "a token's ttl must be longer than zero (for example --ttl 30d)")),
        (Some(secs), _) if secs > duration::MAX_SECS => Err(Refusal::invalid(
            "bad_ttl",
            format!("a token may not be asked to live longer than ten years ({})", duration::format(duration::MAX_SECS)),
        )),
        (Some(secs), Some(max)) if secs > max => Err(Refusal::invalid(
            "ttl_too_long",
            format!(
                "a token may live at most {} under this policy (settings.token_max_ttl), and {} was asked; give --ttl {} or less",
                duration::format(max),
                duration::format(secs),
                duration::format(max)
            ),
        )),
        (None, Some(max)) => Err(Refusal::invalid(
            "ttl_too_long",
            format!(
                "this policy does not allow tokens that never expire (settings.token_max_ttl is {}); give --ttl {} or less, or set token_max_ttl = \"never\" in the policy's [settings] to allow them",
                duration::format(max),
                duration::format(max)
            ),
        )),
        (Some(secs), _) => Ok(Some(now + Duration::seconds(secs as i64))),
        (None, None) => Ok(None),
    }
}

/// A disabled account may do nothing (the daemon itself is never disabled).
pub(super) fn not_disabled(state: &State, who: &Actor) -> Result<(), Refusal> {
    let actor = who.user.as_str();
    if who.is_daemon() || !state.is_disabled(actor) {
        return Ok(());
    }
    Err(Refusal::forbidden(
        "user_disabled",
        format!(
            "your account '{}' is disabled, so zsa refuses everything you ask; an admin can enable it again (zsa admin enable {})",
            text::inert(actor),
            text::inert(actor)
        ),
    ))
}

/// Only admins put a failed notice back; the engine asks before it reads the outbox, so others
/// learn nothing of what is in it.
pub fn may_retry_notice(policy: &Policy, user: &str) -> Result<(), Refusal> {
    match policy.is_admin(user) {
        true => Ok(()),
        false => Err(Refusal::forbidden("admins_only", "only admins may retry a notice; see [roles] admins in the policy")),
    }
}

/// The event that ends a run; `transcript` is (bytes kept, their SHA-256, the cap, cut at the cap).
fn run_ended(r: &crate::model::Run, outcome: RunOutcome, exit_code: Option<i32>, transcript: (u64, String, u64, bool)) -> Change {
    let (transcript_bytes, transcript_sha256, transcript_cap, truncated) = transcript;
    Change::RunEnded {
        run: r.id,
        grant: r.grant,
        task: r.task.clone(),
        holder: r.holder.clone(),
        outcome,
        exit_code,
        transcript_bytes,
        transcript_sha256,
        transcript_cap,
        truncated,
    }
}

fn admin_only(policy: &Policy, actor: &str, system: bool, what: &str) -> Result<(), Refusal> {
    if system || policy.is_admin(actor) {
        return Ok(());
    }
    Err(Refusal::forbidden(
        "admins_only",
        format!("only admins may {what}; you ('{}') are not in the admin groups ({})", text::inert(actor), policy.admin_groups.join(", ")),
    ))
}

fn check_user_name(user: &str) -> Result<(), Refusal> {
    if crate::policy::valid_name(user) {
        Ok(())
    } else {
        Err(Refusal::invalid(
            "bad_user_name",
            format!("'{}' is not a valid user name (letters, digits, '.', '-', '_', '@'; at most {MAX_NAME_CHARS})", text::inert(user)),
        ))
    }
}

/// A trimmed optional text: empty means absent. Checks length and control characters.
fn optional_text(field: &str, value: Option<&str>, max: usize, multi_line: bool) -> Result<Option<String>, Refusal> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    text::check(field, v, max, multi_line).map_err(|m| Refusal::invalid("bad_text", m))?;
    Ok(Some(v.to_string()))
}

fn may_ask_for(policy: &Policy, user: &str) -> String {
    let names: Vec<&str> = policy.tasks.values().filter(|t| policy.may_request(user, t)).map(|t| t.name.as_str()).collect();
    if names.is_empty() {
        "you may ask for no task under the current policy".into()
    } else {
        format!("tasks you may ask for: {} (see zsa tasks)", names.join(", "))
    }
}

fn request(state: &State, policy: &Policy, actor: &str, new: &NewRequest, now: DateTime<Utc>) -> Result<Vec<Change>, Refusal> {
    let Some(task) = policy.tasks.get(&new.task) else {
        return Err(Refusal::not_found(
            "unknown_task",
            format!("there is no task '{}'; {}", text::inert(&new.task), may_ask_for(policy, actor)),
        ));
    };
    let name = &task.name;
    if !policy.may_request(actor, task) {
        if let Some(from) = policy.eligible_from(actor, task, now) {
            return Err(Refusal::forbidden(
                "not_eligible_yet",
                format!("your eligibility for '{name}' starts at {}; ask then", from.to_rfc3339()),
            ));
        }
        return Err(Refusal::forbidden(
            "not_eligible",
            format!(
                "you ('{}') may not ask for '{name}': it is for members of {}; {}",
                text::inert(actor),
                task.requesters.join(", "),
                may_ask_for(policy, actor)
            ),
        ));
    }
    let secs = new.duration_secs.unwrap_or(task.default_duration);
    if secs == 0 {
        return Err(Refusal::invalid("bad_duration", "the duration must be longer than zero"));
    }
    if secs > task.max_duration {
        return Err(Refusal::invalid(
            "too_long",
            format!(
                "you asked for {} but '{name}' allows at most {}; ask for {} or less",
                duration::format(secs),
                duration::format(task.max_duration),
                duration::format(task.max_duration)
            ),
        ));
    }
    let reason = optional_text("reason", new.reason.as_deref(), MAX_REASON_CHARS, true)?;
    let ticket = optional_text("ticket", new.ticket.as_deref(), MAX_TICKET_CHARS, false)?;
    check_field(task, "reason", reason.as_deref(), task.require_reason, task.reason_pattern.as_ref())?;
    check_field(task, "ticket", ticket.as_deref(), task.require_ticket, task.ticket_pattern.as_ref())?;
    if let Some(dup) = state
        .pending
        .iter()
        .filter_map(|id| state.requests.get(id))
        .find(|r| r.requester == actor && r.task == *name && r.pending_until > now && r.extends.is_none())
    {
        return Err(Refusal::conflict(
            "already_pending",
            format!("you already have pending request {} for '{name}'; wait for it, or cancel it with: zsa cancel {}", dup.id, dup.id),
        ));
    }

    if !new.params.is_empty() {
        let Some(run) = &task.run else {
            return Err(Refusal::invalid("no_params", format!("'{name}' runs no command, so it takes no parameters")));
        };
        run.build(name, &new.params).map_err(|m| Refusal::invalid("bad_param", m))?;
    }

    let starts_at = match new.starts_at {
        None => None,
        Some(_) if task.break_glass => {
            return Err(Refusal::invalid(
                "break_glass_now",
                format!("'{name}' is break-glass: it is for now, not ahead of time; leave --at out, or ask for another task"),
            ));
        }
        Some(at) => {
            let at = check_start(policy, at, now)?;
            let end = at + Duration::seconds(secs as i64);
            // Booked ahead, grants could be laid end over end into standing access: one that
            // overlaps a grant already held or booked is refused.
            if let Some(g) = state.held_by(actor, name).find(|g| g.is_live_at(now) && at < g.expires_at && g.granted_at < end) {
                return Err(Refusal::conflict(
                    "overlaps_grant",
                    format!(
                        "you already hold {} for '{name}' from {} until {}; ask for a start after it ends",
                        g.id,
                        g.granted_at.to_rfc3339(),
                        g.expires_at.to_rfc3339()
                    ),
                ));
            }
            if let Some(until) = policy.eligible_until(actor, task).filter(|u| at >= *u) {
                return Err(Refusal::invalid(
                    "start_after_eligibility",
                    format!("your eligibility for '{name}' ends at {}, before that start; ask for an earlier one", until.to_rfc3339()),
                ));
            }
            Some(at)
        }
    };
    let pending_until = now + Duration::seconds(policy.pending_ttl as i64);
    let start = starts_at.unwrap_or(now);
    // Outside its windows a task is refused, or needs approval even where it is automatic.
    let outside = match in_window(task, start) {
        Ok(_) => false,
        Err(w) if w.outside == OutsideWindow::Refuse => return Err(outside_windows(task, w, start, "ask")),
        Err(_) => true,
    };
    let id = state.next_request_id();
    let immediate = (task.approval == ApprovalMode::Auto && !outside) || task.break_glass;
    let mut changes = vec![Change::RequestCreated {
        request: id,
        task: name.clone(),
        requester: actor.to_string(),
        duration_secs: secs,
        reason,
        ticket,
        approvals_needed: if immediate { 0 } else { task.approvals },
        // Asked ahead, it lapses at its start if nobody answered by then.
        pending_until: starts_at.map_or(pending_until, |s| s.min(pending_until)),
        break_glass: task.break_glass,
        params: new.params.clone(),
        extends: None,
        signed_approvals: task.signed_approvals && !immediate,
        starts_at,
    }];
    if immediate {
        changes.push(Change::GrantStarted {
            grant: id.grant(),
            request: id,
            task: name.clone(),
            holder: actor.to_string(),
            starts_at,
            expires_at: grant_end(task, start, secs),
            approved_by: if task.break_glass { Vec::new() } else { vec![POLICY_APPROVER.to_string()] },
            break_glass: task.break_glass,
        });
    }
    Ok(changes)
}

/// The window of `task` open at `at` (None: the task has no windows); the windows if none is.
fn in_window(task: &Task, at: DateTime<Utc>) -> Result<Option<Opening>, &Windows> {
    match &task.windows {
        None => Ok(None),
        Some(_) if task.break_glass => Ok(None),
        Some(w) => w.open_at(at).map(Some).ok_or(w),
    }
}

/// When a grant of `task` starting at `start` for `secs` ends: then, or at the end of the
/// window it starts in where the task cuts grants there.
fn grant_end(task: &Task, start: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    let end = start + Duration::seconds(secs as i64);
    match (in_window(task, start), &task.windows) {
        (Ok(Some((_, closes))), Some(w)) if w.cut_at_end => end.min(closes),
        _ => end,
    }
}

fn outside_windows(task: &Task, w: &Windows, at: DateTime<Utc>, verb: &str) -> Refusal {
    let next = match w.next_open(at) {
        Some(next) => format!(
            "the next opens {}: {verb} then, or ask ahead: zsa request {} --at {}",
            w.local(next),
            task.name,
            next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "none opens in the next week".to_string(),
    };
    Refusal::conflict(
        "outside_window",
        format!("'{}' may be used only in its windows, {}, and {} is outside them; {next}", task.name, w.describe(), w.local(at)),
    )
}

/// A start asked ahead: later than now, and no further ahead than the policy's
/// `schedule_ahead` (what nobody could foresee is not approved months before).
fn check_start(policy: &Policy, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, Refusal> {
    let shown = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if at <= now {
        return Err(Refusal::invalid(
            "start_in_past",
            format!(
                "the start {} is already past (the daemon's time is {}); leave --at out to start when approved, or give a later time",
                shown(at),
                shown(now)
            ),
        ));
    }
    let latest = now + Duration::seconds(policy.schedule_ahead.min(i64::MAX as u64) as i64);
    if at > latest {
        return Err(Refusal::invalid(
            "start_too_far",
            format!(
                "the start {} is more than {} ahead (schedule_ahead in the policy); ask by {} at the latest, or closer to the time",
                shown(at),
                duration::format(policy.schedule_ahead),
                shown(latest)
            ),
        ));
    }
    Ok(at)
}

fn check_field(
    task: &Task,
    field: &str,
    value: Option<&str>,
    required: bool,
    pattern: Option<&crate::policy::Pattern>,
) -> Result<(), Refusal> {
    match (value, pattern) {
        (None, _) if required => Err(Refusal::invalid(
            "missing_field",
            format!(
                "'{}' needs a {field}: add --{field} \"...\"{}",
                task.name,
                pattern.map(|p| format!(" matching {}", p.source)).unwrap_or_default()
            ),
        )),
        (Some(v), Some(p)) if !p.matches(v) => Err(Refusal::invalid(
            "pattern_mismatch",
            format!("the {field} '{}' does not match the pattern {} that '{}' requires", text::inert_line(v), p.source, task.name),
        )),
        _ => Ok(()),
    }
}

/// Whether an approver may approve or deny (`verb`) `request` now; its task if so.
fn actionable<'a>(
    state: &State,
    policy: &'a Policy,
    actor: &str,
    request: &Request,
    now: DateTime<Utc>,
    verb: &str,
) -> Result<&'a Task, Refusal> {
    let request = seen_request(policy, actor, request)?;
    let id = request.id;
    let task = policy.tasks.get(&request.task).ok_or_else(|| {
        Refusal::conflict("task_removed", format!("{id} is for '{}', which the current policy no longer has", request.task))
    })?;
    if !policy.may_approve(actor, task) {
        return Err(Refusal::forbidden(
            "not_approver",
            format!(
                "you ('{}') may not {verb} requests for '{}': its approvers are {} ({})",
                text::inert(actor),
                task.name,
                task.approvers.join(", "),
                policy.approver_users(task).join(", ")
            ),
        ));
    }
    if request.requester == actor {
        let others = super::approvers_for(state, policy, task, actor);
        let ask = if others.is_empty() {
            "nobody else approves it now; an admin can add approvers in the policy".to_string()
        } else {
            format!("ask another approver of '{}': {}", task.name, others.join(", "))
        };
        return Err(Refusal::forbidden("own_request", format!("{id} is your own request: nobody may {verb} their own request; {ask}")));
    }
    ensure_pending(request, now)?;
    Ok(task)
}

fn ensure_pending(request: &Request, now: DateTime<Utc>) -> Result<(), Refusal> {
    let id = request.id;
    match request.state {
        RequestState::Pending if request.pending_until <= now => Err(Refusal::conflict(
            "request_expired",
            format!("{id} expired at {} without an answer; the requester must ask again", request.pending_until.to_rfc3339()),
        )),
        RequestState::Pending => Ok(()),
        other => {
            let by = request.decided_by.as_deref().map(|b| format!(" by {}", text::inert(b))).unwrap_or_default();
            Err(Refusal::conflict("not_pending", format!("{id} is already {}{by}; only pending requests can change", other.as_str())))
        }
    }
}

/// Whether `who` may approve `request` now (what is typed with it is checked after); its task if so.
pub(super) fn may_approve<'a>(
    state: &State,
    policy: &'a Policy,
    who: &Actor,
    request: &Request,
    now: DateTime<Utc>,
) -> Result<&'a Task, Refusal> {
    let actor = who.user.as_str();
    let id = request.id;
    let task = actionable(state, policy, actor, request, now, "approve")?;
    if request.approved_by(actor) {
        let left = (request.approvals_needed as usize).saturating_sub(request.approvals.len());
        return Err(Refusal::conflict(
            "already_approved",
            format!("you already approved {id}; each approver counts once, and it needs {left} more from someone else"),
        ));
    }
    if let Some(why) = auth_refused(task, &request.requester, &id.to_string(), "approve", &who.auth) {
        return Err(Refusal::forbidden("approval_not_accepted", why));
    }
    // Only staged tasks pay for judging which approvals still hold (every listing asks this).
    if let Some((k, stage)) = waiting_stage(state, policy, task, request)
        && !policy.approves_at(actor, stage)
    {
        let yours: Vec<String> = task
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| policy.approves_at(actor, s))
            .map(|(i, s)| format!("{} ({})", i + 1, s.name))
            .collect();
        return Err(Refusal::forbidden(
            "not_this_stage",
            format!(
                "{id} is at stage {}/{} ({}), which you do not approve; you approve at stage {}, which it has passed or not reached",
                k + 1,
                task.stages.len(),
                stage.name,
                yours.join(", ")
            ),
        ));
    }
    if signatures_needed(task, request) && policy.people.get(actor).is_none_or(|p| p.ssh_keys.is_empty()) {
        return Err(Refusal::forbidden(
            "no_ssh_key",
            format!(
                "'{}' takes only approvals signed with the approver's SSH key (signed_approvals in the policy), and the policy lists no key for you; ask an admin to add your public key: [people.{}] ssh_keys = [\"ssh-ed25519 AAAA...\"]",
                task.name,
                text::inert(actor)
            ),
        ));
    }
    Ok(task)
}

/// The stage a staged task's `request` waits at, judged by the approvals that still hold; None
/// where its task has no stages or every stage is done.
pub fn waiting_stage<'a>(state: &State, policy: &Policy, task: &'a Task, request: &Request) -> Option<(usize, &'a crate::policy::Stage)> {
    if task.stages.is_empty() {
        return None;
    }
    stage_now(task, &standing(state, policy, task, request))
}

/// `request` with only the approvals that still hold (`why_stale`): what stages count.
fn standing(state: &State, policy: &Policy, task: &Task, request: &Request) -> Request {
    let mut r = request.clone();
    r.approvals.retain(|a| why_stale(state, policy, task, request, a).is_none());
    r
}

/// The stage `request` waits at (0 first), where its task approves in stages: the first whose
/// standing approvals are fewer than it needs.
pub fn stage_now<'a>(task: &'a Task, request: &Request) -> Option<(usize, &'a crate::policy::Stage)> {
    task.stages.iter().enumerate().find(|(k, s)| {
        let done = request.approvals.iter().filter(|a| a.stage == Some(*k as u32 + 1)).count();
        (done as u32) < s.approvals
    })
}

/// How far `request` got through its task's stages, for people; none where there are none.
pub fn stage_progress(task: &Task, request: &Request) -> Option<String> {
    if task.stages.is_empty() {
        return None;
    }
    let n = task.stages.len();
    let parts: Vec<String> = task
        .stages
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let by: Vec<String> =
                request.approvals.iter().filter(|a| a.stage == Some(k as u32 + 1)).map(|a| text::inert_line(&a.by)).collect();
            if by.len() as u32 >= s.approvals {
                format!("stage {}/{n} ({}) done by {}", k + 1, s.name, by.join(", "))
            } else {
                format!("stage {}/{n} ({}): {} of {}", k + 1, s.name, by.len(), s.approvals)
            }
        })
        .collect();
    Some(parts.join("; "))
}

/// Whether approvals of `request` count only signed: its task says so now, or said so when it
/// was asked for (a reload that drops `signed_approvals` does not unsign what is waiting).
pub fn signatures_needed(task: &Task, request: &Request) -> bool {
    task.signed_approvals || request.signed_approvals
}

/// The approval signature `signed` as the log keeps it, checked against what `request` is and
/// the keys the policy lists for `actor`; none if none was given and none is needed.
fn approval_signature(
    policy: &Policy,
    task: &Task,
    actor: &str,
    request: &Request,
    signed: Option<&SignedApproval>,
    now: DateTime<Utc>,
) -> Result<Option<ApprovalSignature>, Refusal> {
    let id = request.id;
    let Some(signed) = signed else {
        if signatures_needed(task, request) {
            return Err(Refusal::forbidden(
                "signature_required",
                format!(
                    "'{}' takes only approvals signed with your SSH key (signed_approvals in the policy), and this one came unsigned; \
                     `zsa approve {id}` signs through your SSH agent: over SSH connect with `ssh -A` so your agent comes along, or load your key with ssh-add",
                    task.name
                ),
            ));
        }
        return Ok(None);
    };
    let skew = (signed.signed_at - now).num_seconds();
    if skew.abs() > approval::SIGNED_AT_SLACK_SECS {
        let at = signed.signed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let daemon = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        return Err(Refusal::invalid(
            "signature_stale",
            format!(
                "the signature says it was made at {at}, more than {} minutes from the daemon's time {daemon}; a signature is sent as it is made: check the signing machine's clock and approve again",
                approval::SIGNED_AT_SLACK_SECS / 60
            ),
        ));
    }
    let keys = policy.people.get(actor).map(|p| p.ssh_keys.as_slice()).unwrap_or_default();
    approval::check(&approval::Facts::from(request), actor, signed, keys).map(Some).map_err(|bad| match bad {
        approval::Bad::Unreadable(why) => {
            Refusal::invalid("signature_unreadable", format!("the approval's signature is not an SSH signature zsa can read ({why}); approve again with `zsa approve {id}`"))
        }
        approval::Bad::UnknownKey(print) => Refusal::forbidden(
            "signature_key_unknown",
            format!(
                "the approval was signed with the key {print}, which the policy does not list for you ({}); sign with one of your listed keys, or ask an admin to add this one to [people.{}] ssh_keys",
                listed(policy, actor),
                text::inert(actor)
            ),
        ),
        approval::Bad::Mismatch => Refusal::forbidden(
            "signature_mismatch",
            format!(
                "the signature does not match {id} as the daemon holds it (its task, requester, duration, reason, ticket and parameters), you as the approver and its time: it was made over something else; look at {id} again (zsa show {id}) and approve it anew"
            ),
        ),
    })
}

/// The fingerprints the policy lists for `actor`, for messages.
fn listed(policy: &Policy, actor: &str) -> String {
    match policy.people.get(actor).map(|p| p.key_fingerprints()).unwrap_or_default() {
        prints if prints.is_empty() => "it lists none".into(),
        prints => format!("it lists {}", prints.join(", ")),
    }
}

/// Whether `actor` may deny `request` now.
pub(super) fn may_deny(state: &State, policy: &Policy, actor: &str, request: &Request, now: DateTime<Utc>) -> Result<(), Refusal> {
    actionable(state, policy, actor, request, now, "deny").map(drop)
}

fn approve(
    state: &State,
    policy: &Policy,
    who: &Actor,
    id: RequestId,
    comment: Option<&str>,
    signed: Option<&SignedApproval>,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, Refusal> {
    let actor = who.user.as_str();
    let request = find_request(state, id)?;
    let task = may_approve(state, policy, who, request, now)?;
    let comment = optional_text("comment", comment, MAX_COMMENT_CHARS, true)?;
    let signature = approval_signature(policy, task, actor, request, signed, now)?;
    // Every earlier approval must still hold under the current policy and users; those that do
    // not are dropped on the record, and the request waits for others.
    let mut changes = Vec::new();
    let mut approved_by = Vec::new();
    for a in &request.approvals {
        match why_stale(state, policy, task, request, a) {
            Some(why) => changes.push(Change::ApprovalDropped {
                request: id,
                task: request.task.clone(),
                requester: request.requester.clone(),
                approver: a.by.clone(),
                why,
            }),
            None => approved_by.push(a.by.clone()),
        }
    }
    // The stage it is given at, judged by the approvals that still hold.
    let held = (!task.stages.is_empty()).then(|| standing(state, policy, task, request));
    let stage = held.as_ref().and_then(|h| stage_now(task, h)).map(|(k, _)| k as u32 + 1);
    changes.push(Change::RequestApproved {
        request: id,
        task: request.task.clone(),
        requester: request.requester.clone(),
        comment,
        signature,
        stage,
    });
    approved_by.push(actor.to_string());
    // In stages, what is enough is every stage done (with this approval), not a count fixed
    // when it was asked: a reload may have added a stage or raised one.
    let enough = match held {
        None => approved_by.len() >= request.approvals_needed as usize,
        Some(mut after) => {
            after.approvals.push(Approval { by: actor.to_string(), at: now, auth: None, comment: None, signed_with: None, stage });
            stage_now(task, &after).is_none()
        }
    };
    if let Some(grant) = request.extends {
        if enough {
            let g = extendable(state, policy, task, &request.requester, grant, request.duration_secs, now)?;
            changes.push(Change::GrantExtended {
                grant,
                task: g.task.clone(),
                holder: g.holder.clone(),
                extension: Some(id),
                by_secs: request.duration_secs,
                expires_at: g.expires_at + Duration::seconds(request.duration_secs as i64),
                approved_by,
            });
            changes.push(Change::ExtensionApproved { request: id, task: g.task.clone(), requester: g.holder.clone(), grant });
        }
        return Ok(changes);
    }
    if enough {
        // A window that closed while the request waited: refused, unless outside needs only this.
        let start = request.starts_at.unwrap_or(now);
        if let Err(w) = in_window(task, start)
            && w.outside == OutsideWindow::Refuse
        {
            return Err(outside_windows(task, w, start, "approve"));
        }
        changes.push(Change::GrantStarted {
            grant: id.grant(),
            request: id,
            task: request.task.clone(),
            holder: request.requester.clone(),
            starts_at: request.starts_at,
            expires_at: grant_end(task, start, request.duration_secs),
            approved_by,
            break_glass: false,
        });
    }
    Ok(changes)
}

/// Why an approval given through `auth` proves nothing for `request`, if it does not: a token
/// the requester issued (he could mint approvers at will), or a kind of login the task refuses.
/// `owner` is the requester (or, for a review, the holder) and `what` the request or grant, as
/// `verb` (approve, review) would name it on the command line.
fn auth_refused(task: &Task, owner: &str, what: &str, verb: &str, auth: &Auth) -> Option<String> {
    if let Auth::Token { token, issued_by } = auth
        && issued_by == owner
    {
        let noun = if verb == "approve" { "an approval" } else { "a review" };
        return Some(format!(
            "you are using token {token}, which {} issued, and {what} is theirs: {noun} through a token they issued does not count; {verb} at your own login (zsa {verb} {what} over SSH) or with a token another admin issued",
            text::inert(issued_by),
        ));
    }
    // A task that names the ways it accepts refuses every other, in-process callers included.
    if let Some(via) = &task.approve_via
        && !via.iter().any(|k| k == auth.kind())
    {
        return Some(format!(
            "'{}' accepts approvals only through {} (approve_via in the policy), and you came through {}; {verb} at your own login on the daemon's host, e.g. over SSH: zsa {verb} {what}",
            task.name,
            via.join(", "),
            auth.kind(),
        ));
    }
    None
}

/// Why an earlier approval no longer counts, if it does not: its approver was disabled or left
/// the task's approvers, or the way it was given is no longer accepted.
fn why_stale(state: &State, policy: &Policy, task: &Task, request: &Request, a: &Approval) -> Option<String> {
    let by = text::inert(&a.by);
    if state.is_disabled(&a.by) {
        return Some(no_longer_valid(&a.by));
    }
    if !policy.may_approve(&a.by, task) {
        return Some(format!("{by} is no longer an approver of '{}'", task.name));
    }
    if !task.stages.is_empty() {
        match a.stage.and_then(|k| task.stages.get((k as usize).checked_sub(1)?)) {
            None => return Some(format!("{by}'s approval was given at no stage '{}' now has", task.name)),
            Some(stage) if !policy.approves_at(&a.by, stage) => {
                return Some(format!("{by} no longer approves at stage {} of '{}'", stage.name, task.name));
            }
            Some(_) => {}
        }
    }
    if signatures_needed(task, request) {
        let listed = |key: &String| policy.people.get(&a.by).is_some_and(|p| p.key_fingerprints().contains(key));
        match &a.signed_with {
            None => return Some(format!("{by}'s approval was not signed, and '{}' now takes only signed approvals", task.name)),
            Some(key) if !listed(key) => {
                return Some(format!("{by}'s approval was signed with the key {key}, which the policy no longer lists for them"));
            }
            Some(_) => {}
        }
    }
    match &a.auth {
        Some(Auth::Token { token, .. }) if state.tokens.get(token).is_none_or(|t| t.revoked) => Some(no_longer_valid(&a.by)),
        Some(auth) => auth_refused(task, &request.requester, &request.id.to_string(), "approve", auth),
        None => None,
    }
}

/// Why an approval was dropped when its approver was disabled or its token revoked, in words the
/// requester may read: those events are for admins and auditors only, and sit beside it in the log.
fn no_longer_valid(approver: &str) -> String {
    format!("{}'s approval is no longer valid (the approver's account or token changed)", text::inert(approver))
}

/// `approval_dropped` for every approval on a pending request for which `stale` gives a reason.
fn drop_stale(state: &State, stale: impl Fn(&Request, &Approval) -> Option<String>) -> Vec<Change> {
    let pending = state.pending.iter().filter_map(|id| state.requests.get(id));
    pending
        .flat_map(|r| {
            r.approvals.iter().filter_map(|a| {
                stale(r, a).map(|why| Change::ApprovalDropped {
                    request: r.id,
                    task: r.task.clone(),
                    requester: r.requester.clone(),
                    approver: a.by.clone(),
                    why,
                })
            })
        })
        .collect()
}

fn deny(
    state: &State,
    policy: &Policy,
    actor: &str,
    id: RequestId,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, Refusal> {
    let request = find_request(state, id)?;
    may_deny(state, policy, actor, request, now)?;
    let Some(comment) = optional_text("comment", comment, MAX_COMMENT_CHARS, true)? else {
        return Err(Refusal::invalid(
            "comment_required",
            format!("a denial needs a comment that tells the requester why: zsa deny {id} --comment \"...\""),
        ));
    };
    Ok(vec![Change::RequestDenied { request: id, task: request.task.clone(), requester: request.requester.clone(), comment }])
}

fn no_such_request(id: RequestId) -> Refusal {
    Refusal::not_found("no_such_request", format!("there is no request {id} that you may see"))
}

fn no_such_grant(id: GrantId) -> Refusal {
    Refusal::not_found("no_such_grant", format!("there is no grant {id} that you may see"))
}

fn find_request(state: &State, id: RequestId) -> Result<&Request, Refusal> {
    state.requests.get(&id).ok_or_else(|| no_such_request(id))
}

fn find_grant(state: &State, id: GrantId) -> Result<&Grant, Refusal> {
    state.grants.get(&id).ok_or_else(|| no_such_grant(id))
}

/// `request` if `actor` may see it. Someone who may not gets the answer a request that does not
/// exist gets, so a refusal tells them nothing about it: not its task, requester or approvers.
fn seen_request<'a>(policy: &Policy, actor: &str, request: &'a Request) -> Result<&'a Request, Refusal> {
    if super::request_visible(policy, actor, request) { Ok(request) } else { Err(no_such_request(request.id)) }
}

/// `grant` if `actor` may see it; otherwise the answer for a grant that does not exist.
fn seen_grant<'a>(policy: &Policy, actor: &str, grant: &'a Grant) -> Result<&'a Grant, Refusal> {
    if super::grant_visible(policy, actor, grant) { Ok(grant) } else { Err(no_such_grant(grant.id)) }
}

/// Whether `actor` may cancel `request` now.
pub(super) fn may_cancel(state: &State, policy: &Policy, actor: &str, request: &Request, now: DateTime<Utc>) -> Result<(), Refusal> {
    let request = seen_request(policy, actor, request)?;
    let id = request.id;
    if request.requester != actor {
        return Err(Refusal::forbidden(
            "not_requester",
            format!("only the requester ({}) may cancel {id}; an approver can deny it instead", text::inert(&request.requester)),
        ));
    }
    // Approved ahead and not started yet: the requester may still call it off.
    if scheduled_grant(state, request, now).is_some() {
        return Ok(());
    }
    ensure_pending(request, now)
}

/// The grant `request` was approved into, if it has not started yet at `now`.
fn scheduled_grant<'a>(state: &'a State, request: &Request, now: DateTime<Utc>) -> Option<&'a Grant> {
    let grant = state.grants.get(&request.grant?)?;
    (request.state == RequestState::Approved && request.extends.is_none() && grant.is_scheduled_at(now)).then_some(grant)
}

fn cancel(state: &State, policy: &Policy, actor: &str, id: RequestId, now: DateTime<Utc>) -> Result<Vec<Change>, Refusal> {
    let request = find_request(state, id)?;
    may_cancel(state, policy, actor, request, now)?;
    if let Some(g) = scheduled_grant(state, request, now) {
        let mut changes = vec![Change::GrantRelinquished { grant: g.id, task: g.task.clone(), holder: g.holder.clone() }];
        changes.extend(extensions_end(state, g.id, &format!("{} was called off before it started", g.id)));
        return Ok(changes);
    }
    Ok(vec![Change::RequestCancelled { request: id, task: request.task.clone(), requester: request.requester.clone(), reason: None }])
}

/// `grant` if `actor` may see it and it has not ended.
fn live_grant<'a>(policy: &Policy, actor: &str, grant: &'a Grant, now: DateTime<Utc>) -> Result<&'a Grant, Refusal> {
    let grant = seen_grant(policy, actor, grant)?;
    let id = grant.id;
    if let Some(end) = &grant.ended {
        return Err(Refusal::conflict("grant_ended", format!("{id} already ended ({}) at {}", grant.state.as_str(), end.at.to_rfc3339())));
    }
    if !grant.is_live_at(now) {
        return Err(Refusal::conflict("grant_ended", format!("{id} already ended (expired) at {}", grant.expires_at.to_rfc3339())));
    }
    Ok(grant)
}

/// Whether `actor` may revoke `grant` now (the reason is checked after).
pub(super) fn may_revoke(policy: &Policy, actor: &str, grant: &Grant, now: DateTime<Utc>) -> Result<(), Refusal> {
    let grant = live_grant(policy, actor, grant, now)?;
    let id = grant.id;
    if !policy.is_admin(actor) && !policy.approves_task(actor, &grant.task) {
        return Err(Refusal::forbidden(
            "may_not_revoke",
            format!(
                "only admins and approvers of '{}' may revoke {id}; the holder can relinquish it with: zsa relinquish {id}",
                grant.task
            ),
        ));
    }
    Ok(())
}

fn revoke(
    state: &State,
    policy: &Policy,
    actor: &str,
    id: GrantId,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, Refusal> {
    let grant = find_grant(state, id)?;
    may_revoke(policy, actor, grant, now)?;
    let Some(reason) = optional_text("reason", reason, MAX_REASON_CHARS, true)? else {
        return Err(Refusal::invalid("reason_required", format!("a revocation needs a reason: zsa revoke {id} --reason \"...\"")));
    };
    let mut changes = vec![Change::GrantRevoked { grant: id, task: grant.task.clone(), holder: grant.holder.clone(), reason }];
    changes.extend(extensions_end(state, id, &format!("{id} was revoked")));
    Ok(changes)
}

/// The live grant `id` of `holder`'s if it may run `by_secs` longer under `task`'s `max_total`.
fn extendable<'a>(
    state: &'a State,
    policy: &Policy,
    task: &Task,
    holder: &str,
    id: GrantId,
    by_secs: u64,
    now: DateTime<Utc>,
) -> Result<&'a Grant, Refusal> {
    let grant = live_grant(policy, holder, find_grant(state, id)?, now)?;
    let lived = (grant.expires_at - grant.granted_at).num_seconds().max(0) as u64;
    let room = task.max_total.saturating_sub(lived);
    if by_secs > room {
        let more = match room {
            0 => format!("it has reached that, so it cannot be extended: ask for a new grant when it ends (zsa request {})", task.name),
            room => format!("it may run at most {} more: extend it by that or less", duration::format(room)),
        };
        return Err(Refusal::invalid(
            "extend_too_long",
            format!(
                "{id} would then last {} in all, and '{}' allows at most {} (max_total in the policy); {more}",
                duration::format(lived + by_secs),
                task.name,
                duration::format(task.max_total)
            ),
        ));
    }
    // A grant cut at its window's end is not extended past it.
    if let (Ok(Some((_, closes))), Some(w)) = (in_window(task, grant.granted_at), &task.windows)
        && w.cut_at_end
        && grant.expires_at + Duration::seconds(by_secs as i64) > closes
    {
        let room = (closes - grant.expires_at).num_seconds().max(0) as u64;
        return Err(Refusal::invalid(
            "extend_past_window",
            format!(
                "{id} started in the window that closes {}, and '{}' ends grants there (cut_at_window_end); extend it by at most {}",
                w.local(closes),
                task.name,
                duration::format(room)
            ),
        ));
    }
    Ok(grant)
}

/// Whether `actor` may ask for `grant` to run longer now: theirs, live, of a task that allows
/// it, with no extension of it waiting already.
pub(super) fn may_extend<'a>(
    state: &State,
    policy: &'a Policy,
    actor: &str,
    grant: &Grant,
    now: DateTime<Utc>,
) -> Result<&'a Task, Refusal> {
    let grant = live_grant(policy, actor, grant, now)?;
    let id = grant.id;
    if grant.holder != actor {
        return Err(Refusal::forbidden(
            "not_holder",
            format!("only the holder ({}) may extend {id}; they ask with: zsa extend {id} --by 30m", text::inert(&grant.holder)),
        ));
    }
    let task = policy.tasks.get(&grant.task).ok_or_else(|| {
        Refusal::conflict("unknown_task", format!("'{}' is no longer in the policy, so {id} cannot be extended", text::inert(&grant.task)))
    })?;
    if task.extend == ExtendMode::Never {
        return Err(Refusal::forbidden(
            "not_extendable",
            format!(
                "grants of '{}' cannot be extended (extend = \"never\" in the policy); ask for a new one when {id} ends: zsa request {}",
                task.name, task.name
            ),
        ));
    }
    if !policy.may_request(actor, task) {
        return Err(Refusal::forbidden(
            "not_eligible",
            format!("you may no longer ask for '{}', so {id} cannot be extended; it ends at {}", task.name, grant.expires_at.to_rfc3339()),
        ));
    }
    if let Some(waiting) =
        state.pending.iter().filter_map(|r| state.requests.get(r)).find(|r| r.extends == Some(id) && r.pending_until > now)
    {
        return Err(Refusal::conflict(
            "already_pending",
            format!("{} already asks to extend {id}; wait for it, or cancel it with: zsa cancel {}", waiting.id, waiting.id),
        ));
    }
    Ok(task)
}

fn extend(
    state: &State,
    policy: &Policy,
    actor: &str,
    id: GrantId,
    by_secs: u64,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, Refusal> {
    let grant = find_grant(state, id)?;
    let task = may_extend(state, policy, actor, grant, now)?;
    if by_secs == 0 {
        return Err(Refusal::invalid("bad_duration", "an extension must be longer than zero: zsa extend G1 --by 30m"));
    }
    let reason = optional_text("reason", reason, MAX_REASON_CHARS, true)?;
    check_field(task, "reason", reason.as_deref(), task.require_reason, task.reason_pattern.as_ref())?;
    let grant = extendable(state, policy, task, actor, id, by_secs, now)?;
    let expires_at = grant.expires_at + Duration::seconds(by_secs as i64);
    match task.extend {
        ExtendMode::Auto => Ok(vec![Change::GrantExtended {
            grant: id,
            task: task.name.clone(),
            holder: actor.to_string(),
            extension: None,
            by_secs,
            expires_at,
            approved_by: vec![POLICY_APPROVER.to_string()],
        }]),
        // Asked as a request of its own, which lapses when the grant would end unextended.
        _ => Ok(vec![Change::RequestCreated {
            request: state.next_request_id(),
            task: task.name.clone(),
            requester: actor.to_string(),
            duration_secs: by_secs,
            reason,
            ticket: None,
            approvals_needed: task.approvals,
            pending_until: (now + Duration::seconds(policy.pending_ttl as i64)).min(grant.expires_at),
            break_glass: false,
            params: BTreeMap::new(),
            extends: Some(id),
            signed_approvals: task.signed_approvals,
            starts_at: None,
        }]),
    }
}

/// Asking to extend a grant that has ended no longer means anything: cancelled on the record.
fn extensions_end(state: &State, grant: GrantId, why: &str) -> Vec<Change> {
    state
        .pending
        .iter()
        .filter_map(|id| state.requests.get(id))
        .filter(|r| r.extends == Some(grant))
        .map(|r| Change::RequestCancelled {
            request: r.id,
            task: r.task.clone(),
            requester: r.requester.clone(),
            reason: Some(why.to_string()),
        })
        .collect()
}

/// Whether `actor` may give up `grant` now.
pub(super) fn may_relinquish(policy: &Policy, actor: &str, grant: &Grant, now: DateTime<Utc>) -> Result<(), Refusal> {
    let grant = live_grant(policy, actor, grant, now)?;
    if grant.holder != actor {
        return Err(Refusal::forbidden(
            "not_holder",
            format!("only the holder ({}) may relinquish {}; approvers and admins can revoke it", text::inert(&grant.holder), grant.id),
        ));
    }
    Ok(())
}

fn relinquish(state: &State, policy: &Policy, actor: &str, id: GrantId, now: DateTime<Utc>) -> Result<Vec<Change>, Refusal> {
    let grant = find_grant(state, id)?;
    may_relinquish(policy, actor, grant, now)?;
    let mut changes = vec![Change::GrantRelinquished { grant: id, task: grant.task.clone(), holder: grant.holder.clone() }];
    changes.extend(extensions_end(state, id, &format!("{id} was given up")));
    Ok(changes)
}

/// Whether `who` may review `grant` (the comment is checked after).
pub(super) fn may_review(policy: &Policy, who: &Actor, grant: &Grant) -> Result<(), Refusal> {
    let actor = who.user.as_str();
    let grant = seen_grant(policy, actor, grant)?;
    let id = grant.id;
    if !grant.break_glass {
        return Err(Refusal::conflict("not_break_glass", format!("{id} is not a break-glass grant; only those are reviewed")));
    }
    if let Some(r) = &grant.review {
        return Err(Refusal::conflict(
            "already_reviewed",
            format!("{id} was already reviewed by {} at {}", text::inert(&r.by), r.at.to_rfc3339()),
        ));
    }
    if !policy.approves_task(actor, &grant.task) {
        return Err(Refusal::forbidden("not_approver", format!("only approvers of '{}' may review {id}", grant.task)));
    }
    if grant.holder == actor {
        return Err(Refusal::forbidden(
            "own_grant",
            format!("nobody may review their own break-glass grant; ask another approver of '{}'", grant.task),
        ));
    }
    // A review is an approval after the fact: the same proof is asked of it.
    if let Some(task) = policy.tasks.get(&grant.task)
        && let Some(why) = auth_refused(task, &grant.holder, &id.to_string(), "review", &who.auth)
    {
        return Err(Refusal::forbidden("review_not_accepted", why));
    }
    Ok(())
}

fn review(state: &State, policy: &Policy, who: &Actor, id: GrantId, comment: Option<&str>) -> Result<Vec<Change>, Refusal> {
    let grant = find_grant(state, id)?;
    may_review(policy, who, grant)?;
    let comment = optional_text("comment", comment, MAX_COMMENT_CHARS, true)?;
    Ok(vec![Change::GrantReviewed { grant: id, task: grant.task.clone(), holder: grant.holder.clone(), comment }])
}

fn disable(state: &State, policy: &Policy, actor: &str, system: bool, user: &str, reason: Option<&str>) -> Result<Vec<Change>, Refusal> {
    admin_only(policy, actor, system, "disable users")?;
    check_user_name(user)?;
    if user == actor {
        return Err(Refusal::invalid("disable_self", "you cannot disable your own account; ask another admin"));
    }
    if state.is_disabled(user) {
        return Err(Refusal::conflict("already_disabled", format!("'{user}' is already disabled")));
    }
    let reason = optional_text("reason", reason, MAX_REASON_CHARS, true)?;
    let why = format!("user disabled by {actor}");
    let mut changes = vec![Change::UserDisabled { user: user.to_string(), reason }];
    for r in state.pending.iter().filter_map(|id| state.requests.get(id)).filter(|r| r.requester == user) {
        changes.push(Change::RequestCancelled {
            request: r.id,
            task: r.task.clone(),
            requester: r.requester.clone(),
            reason: Some(why.clone()),
        });
    }
    for g in state.active.iter().filter_map(|id| state.grants.get(id)).filter(|g| g.holder == user) {
        changes.push(Change::GrantRevoked { grant: g.id, task: g.task.clone(), holder: g.holder.clone(), reason: why.clone() });
    }
    changes.extend(drop_stale(state, |r, a| (a.by == user && r.requester != user).then(|| no_longer_valid(user))));
    Ok(changes)
}

/// Starts a task's command for the holder of an active grant. Parameters fixed in the request
/// are the ones that run; otherwise the caller's are checked against the task's rules.
fn start_run(
    state: &State,
    policy: &Policy,
    actor: &str,
    task_name: &str,
    params: &BTreeMap<String, String>,
    run_as: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, Refusal> {
    let task = policy.tasks.get(task_name).ok_or_else(|| {
        Refusal::not_found("unknown_task", format!("there is no task '{}'; {}", text::inert(task_name), may_ask_for(policy, actor)))
    })?;
    let run = task.run.as_ref().ok_or_else(|| {
        Refusal::invalid(
            "nothing_to_run",
            format!("'{}' runs no command: zsa only checks access to it (zsa check {})", task.name, task.name),
        )
    })?;
    let grant = state.held_by(actor, &task.name).filter(|g| g.is_active_at(now)).max_by_key(|g| g.expires_at).ok_or_else(|| {
        Refusal::forbidden(
            "no_grant",
            format!("you hold no active grant for '{}'; ask for one with: zsa request {} --reason \"...\"", task.name, task.name),
        )
    })?;
    let fixed = state.requests.get(&grant.request).map(|r| &r.params).filter(|p| !p.is_empty());
    let params = match fixed {
        Some(fixed) if params.is_empty() || params == fixed => fixed,
        Some(fixed) => {
            let shown: Vec<String> = fixed.iter().map(|(k, v)| format!("{k}={}", text::inert(v))).collect();
            return Err(Refusal::invalid(
                "params_fixed",
                format!("{} was approved for exactly these parameters: {}; run it with those (or none)", grant.id, shown.join(" ")),
            ));
        }
        None => params,
    };
    let argv = run.build(&task.name, params).map_err(|m| Refusal::invalid("bad_param", m))?;
    // One grant must not become hundreds of privileged processes: the task says how many at once.
    let going: Vec<&crate::model::Run> = state.running.iter().filter_map(|id| state.runs.get(id)).filter(|r| r.task == task.name).collect();
    if going.len() >= run.max_concurrent_runs as usize {
        // Runs the caller may not see are only counted, never named (nor their holders).
        let seen = going.iter().all(|r| super::visibility::run_visible(policy, actor, r));
        let which = if seen {
            let shown: Vec<String> = going.iter().map(|r| format!("{} ({})", r.id, r.holder)).collect();
            format!("{} still running: {}", if going.len() == 1 { "this one is" } else { "these are" }, shown.join(", "))
        } else {
            format!("{} {} still running", going.len(), if going.len() == 1 { "run is" } else { "runs are" })
        };
        return Err(Refusal::conflict(
            "too_many_runs",
            format!(
                "'{}' allows {} run(s) at a time and {which}; wait for one to end (or an admin raises max_concurrent_runs in the policy)",
                task.name, run.max_concurrent_runs,
            ),
        ));
    }
    Ok(vec![Change::RunStarted {
        run: state.next_run_id(),
        grant: grant.id,
        task: task.name.clone(),
        holder: actor.to_string(),
        argv,
        run_as: run_as.to_string(),
        timeout_secs: run.timeout,
        daemon: None,
    }])
}

/// What people lose when a membership that allowed it ended (by `now`, in `policy` as of now):
/// their pending requests are cancelled and their grants revoked, saying why, as when an admin
/// disables them. A reload that drops someone does not do this; a date in the policy does.
pub fn eligibility_ended(state: &State, policy: &Policy, now: DateTime<Utc>) -> Vec<Change> {
    let ended: Vec<&crate::policy::Membership> = policy.memberships.iter().filter(|m| m.ended_by(now)).collect();
    if ended.is_empty() {
        // The daemon asks each second: nothing ended is nothing to look through.
        return Vec::new();
    }
    let why = |user: &str| {
        let which: Vec<String> =
            ended.iter().filter(|m| m.user == user).flat_map(|m| m.until.map(|u| format!("{} ({})", m.group, u.to_rfc3339()))).collect();
        format!("eligibility ended: membership of {}", which.join(", "))
    };
    let lost = |user: &str, task: &str| {
        ended.iter().any(|m| m.user == user) && policy.tasks.get(task).is_none_or(|t| !policy.may_request(user, t))
    };
    let mut changes = Vec::new();
    let pending = state.pending.iter().filter_map(|id| state.requests.get(id)).filter(|r| r.pending_until > now);
    for r in pending.filter(|r| lost(&r.requester, &r.task)) {
        changes.push(Change::RequestCancelled {
            request: r.id,
            task: r.task.clone(),
            requester: r.requester.clone(),
            reason: Some(why(&r.requester)),
        });
    }
    for g in state.active.iter().filter_map(|id| state.grants.get(id)).filter(|g| g.is_live_at(now) && lost(&g.holder, &g.task)) {
        changes.push(Change::GrantRevoked { grant: g.id, task: g.task.clone(), holder: g.holder.clone(), reason: why(&g.holder) });
    }
    changes
}

/// Everything whose deadline has come, earliest first, each stamped with its own deadline.
fn expire(state: &State, now: DateTime<Utc>) -> Vec<Change> {
    let due = state.deadlines.iter().take_while(|(at, _)| *at <= now);
    due.filter_map(|(_, what)| match what {
        Deadline::Request(id) => state.requests.get(id).map(|r| Change::RequestExpired {
            request: r.id,
            task: r.task.clone(),
            requester: r.requester.clone(),
            deadline: r.pending_until,
        }),
        Deadline::Grant(id) => state.grants.get(id).map(|g| Change::GrantExpired {
            grant: g.id,
            task: g.task.clone(),
            holder: g.holder.clone(),
            deadline: g.expires_at,
        }),
    })
    .collect()
}
