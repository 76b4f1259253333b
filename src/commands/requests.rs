//! `zsa request`, `requests`, `show`, `approve`, `deny`, `cancel`.

use chrono::Utc;

use super::output::{cell, json_line, relative, table, time};
use super::watch::{Follower, until_decided};
use super::{CliError, CmdResult, id};
use crate::client::Client;
use crate::model::wire::{NewRequest, Outcome, RowAction};
use crate::model::{GrantId, Request, RequestId, RequestState, duration, start_time, text};

/// Prints a request and its grant: one JSON object `{"request": ..., "grant": ... or null}` (so
/// `jq .request.id` has one answer), or a sentence a person reads.
pub fn print_outcome(o: &Outcome, json: bool) {
    if json {
        json_line(o);
        return;
    }
    let r = &o.request;
    let now = Utc::now();
    match (&o.grant, r.state) {
        (Some(g), _) => {
            let glass = if g.break_glass { " (BREAK-GLASS: an approver must review it)" } else { "" };
            println!(
                "{} {}: {} holds {} for {} until {} ({}){glass}",
                r.id,
                r.state.as_str(),
                text::inert(&g.holder),
                g.id,
                g.task,
                time(g.expires_at),
                g.state.as_str()
            );
        }
        (None, RequestState::Pending) => println!(
            "{} pending: {} asks {} {}; {}/{} approvals; expires {} if nobody answers",
            r.id,
            text::inert(&r.requester),
            match r.extends {
                Some(g) => format!("to extend {g} ({}) by", r.task),
                None => format!("for {} for", r.task),
            },
            duration::format(r.duration_secs),
            r.approvals.len(),
            r.approvals_needed,
            relative(r.pending_until, now)
        ),
        (None, state) => {
            let by = r.decided_by.as_deref().map(|b| format!(" by {}", text::inert(b))).unwrap_or_default();
            let why = r.comment.as_deref().map(|c| format!(": {}", text::inert_line(c))).unwrap_or_default();
            println!("{} {}{by}{why}", r.id, state.as_str());
        }
    }
}

/// What `zsa request` asks for, as typed.
pub struct NewArgs<'a> {
    pub task: &'a str,
    pub for_: Option<&'a str>,
    pub at: Option<&'a str>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub params: std::collections::BTreeMap<String, String>,
}

/// `zsa request`; with `wait`, blocks until the request is decided: Ok when granted, a refusal
/// (exit 1) saying how it ended otherwise. With `--json` only the final state is printed.
pub async fn request(client: &Client, json: bool, new: NewArgs<'_>, wait: bool) -> CmdResult {
    let duration_secs = new.for_.map(duration::parse).transpose().map_err(CliError::Usage)?;
    // A time relative to now is the daemon's now: it decides when the grant starts.
    let starts_at = match new.at {
        None => None,
        Some(at) => Some(
            start_time::parse(at, client.whoami().await?.now)
                .map_err(|e| CliError::Usage(format!("--at {}: {e}", text::inert_line(at))))?,
        ),
    };
    // Follow before asking, so a decision made at once is on the stream.
    let mut follower = if wait { Some(Follower::open(client, None).await?) } else { None };
    let new =
        NewRequest { task: new.task.to_string(), duration_secs, reason: new.reason, ticket: new.ticket, params: new.params, starts_at };
    let mut outcome = client.request(&new).await?;
    if let Some(follower) = follower.as_mut()
        && outcome.request.state == RequestState::Pending
    {
        if !json {
            print_outcome(&outcome, json);
            eprintln!("zsa: waiting for a decision on {} (Ctrl-C stops waiting; the request stays)", outcome.request.id);
        }
        outcome = until_decided(client, follower, outcome.request.id).await?;
    }
    print_outcome(&outcome, json);
    match (wait, outcome.request.state) {
        (true, RequestState::Denied | RequestState::Cancelled | RequestState::Expired) => {
            let r = &outcome.request;
            let by = r.decided_by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
            let why = r.comment.as_deref().map(|c| format!(": {}", text::inert_line(c))).unwrap_or_default();
            Err(CliError::Refused(format!("{} was {}{by}{why}; no grant", r.id, r.state.as_str())))
        }
        _ => Ok(()),
    }
}

/// `zsa requests`: pending ones the caller may see; `all`: every state; `pending`: only those
/// waiting for the caller's decision (the daemon says which tasks they approve).
pub async fn list(client: &Client, json: bool, all: bool, pending: bool) -> CmdResult {
    let mut requests = client.requests(all).await?;
    if pending {
        // The daemon says on each row whether the viewer may approve it (not their own, not yet
        // approved by them, a task they approve, proved as the task accepts): one rule, its own.
        requests.retain(|r| r.state == RequestState::Pending && r.actions.allows(RowAction::Approve));
    }
    if json {
        requests.iter().for_each(json_line);
        return Ok(());
    }
    if requests.is_empty() {
        println!(
            "{}",
            if all {
                "no requests"
            } else if pending {
                "no requests wait for your decision"
            } else {
                "no pending requests"
            }
        );
        return Ok(());
    }
    // Ages by the daemon's clock, as the daemon stamped them, not this machine's.
    let now = client.whoami().await?.now;
    let rows: Vec<Vec<String>> = requests.iter().map(|r| row(r, now)).collect();
    table(&["ID", "STATE", "TASK", "REQUESTER", "FOR", "APPROVALS", "AGE", "TICKET", "REASON"], &rows);
    Ok(())
}

fn row(r: &Request, now: chrono::DateTime<Utc>) -> Vec<String> {
    vec![
        r.id.to_string(),
        r.state.as_str().to_string(),
        r.task.clone(),
        cell(&r.requester, 20),
        match r.extends {
            Some(g) => format!("+{} to {g}", duration::format(r.duration_secs)),
            None => duration::format(r.duration_secs),
        },
        if r.approvals_needed == 0 { "-".into() } else { format!("{}/{}", r.approvals.len(), r.approvals_needed) },
        duration::format((now - r.created_at).num_seconds().max(0) as u64),
        cell(r.ticket.as_deref().unwrap_or("-"), 16),
        cell(r.reason.as_deref().unwrap_or("-"), 50),
    ]
}

/// `zsa show R12` or `zsa show G12`.
pub async fn show(client: &Client, json: bool, raw: &str) -> CmdResult {
    if raw.trim().to_ascii_uppercase().starts_with('G') {
        let grant = client.show_grant(id::<GrantId>(raw)?).await?;
        let outcome = client.show_request(grant.request).await?;
        print_outcome(&outcome, json);
    } else {
        let outcome = client.show_request(id::<RequestId>(raw)?).await?;
        print_outcome(&outcome, json);
        if !json {
            let r = &outcome.request;
            if let Some(reason) = &r.reason {
                println!("  reason: {}", text::inert(reason));
            }
            if let Some(ticket) = &r.ticket {
                println!("  ticket: {}", text::inert(ticket));
            }
            if let Some(stages) = &outcome.request.stages {
                println!("  {stages}");
            }
            for a in &r.approvals {
                let c = a.comment.as_deref().map(|c| format!(": {}", text::inert_line(c))).unwrap_or_default();
                let signed = a.signed_with.as_deref().map(|k| format!(" (signed with {})", text::inert(k))).unwrap_or_default();
                println!("  approved by {} at {}{signed}{c}", text::inert(&a.by), time(a.at));
            }
        }
    }
    Ok(())
}

pub async fn approve(client: &Client, json: bool, id: RequestId, comment: Option<String>) -> CmdResult {
    print_outcome(&client.approve(id, comment).await?, json);
    Ok(())
}

pub async fn deny(client: &Client, json: bool, id: RequestId, comment: Option<String>) -> CmdResult {
    print_outcome(&client.deny(id, comment).await?, json);
    Ok(())
}

pub async fn cancel(client: &Client, json: bool, id: RequestId) -> CmdResult {
    print_outcome(&client.cancel(id).await?, json);
    Ok(())
}
