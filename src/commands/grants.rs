//! `zsa grants`, `revoke`, `relinquish`, `review`, `check`.

use chrono::{DateTime, Utc};

use super::output::{cell, json_line, table, time};
use super::{CliError, CmdResult};
use crate::client::Client;
use crate::model::wire::GrantView;
use crate::model::{GrantId, duration, text};

fn print_grant(g: &GrantView, json: bool) {
    if json {
        json_line(g);
        return;
    }
    let end = g
        .ended
        .as_ref()
        .map(|e| {
            let why = e.reason.as_deref().map(|r| format!(": {}", text::inert_line(r))).unwrap_or_default();
            format!(" at {} by {}{why}", time(e.at), text::inert(&e.by))
        })
        .unwrap_or_default();
    println!("{} {} ({} for {}){end}", g.id, g.state.as_str(), text::inert(&g.holder), g.task);
}

pub async fn list(client: &Client, json: bool, all: bool) -> CmdResult {
    let grants = client.grants(all).await?;
    if json {
        grants.iter().for_each(json_line);
        return Ok(());
    }
    // The daemon's time, not this machine's: the daemon decides when a grant ends.
    print_list(&grants, all, client.whoami().await?.now);
    Ok(())
}

/// The grants as a table, the time left counted from `now`.
pub fn print_list(grants: &[GrantView], all: bool, now: DateTime<Utc>) {
    if grants.is_empty() {
        println!("{}", if all { "no grants" } else { "no active grants" });
        return;
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            let left = if g.is_scheduled_at(now) {
                format!("starts in {}", duration::clock((g.granted_at - now).num_seconds()))
            } else if g.is_active_at(now) {
                duration::clock((g.expires_at - now).num_seconds())
            } else {
                "-".into()
            };
            let mut flags = Vec::new();
            if g.break_glass {
                flags.push(if g.needs_review() { "break-glass, UNREVIEWED" } else { "break-glass, reviewed" });
            }
            vec![
                g.id.to_string(),
                g.state.as_str().into(),
                g.task.clone(),
                cell(&g.holder, 20),
                time(g.expires_at),
                left,
                cell(&g.approved_by.join(","), 24),
                flags.join(" "),
            ]
        })
        .collect();
    table(&["ID", "STATE", "TASK", "HOLDER", "EXPIRES", "LEFT", "APPROVED BY", "FLAGS"], &rows);
}

pub async fn revoke(client: &Client, json: bool, id: GrantId, reason: Option<String>) -> CmdResult {
    print_grant(&client.revoke(id, reason).await?, json);
    Ok(())
}

pub async fn relinquish(client: &Client, json: bool, id: GrantId) -> CmdResult {
    print_grant(&client.relinquish(id).await?, json);
    Ok(())
}

/// `zsa extend`: the grant as it now runs, or the extension request waiting for approvers.
pub async fn extend(client: &Client, json: bool, id: GrantId, by_secs: u64, reason: Option<String>) -> CmdResult {
    let out = client.extend(id, by_secs, reason).await?;
    if json {
        json_line(&out);
        return Ok(());
    }
    match &out.request {
        None => println!("{} extended by {}: now until {}", out.grant.id, duration::format(by_secs), time(out.grant.expires_at)),
        Some(r) => println!(
            "{} asks to extend {} by {}: {} approval(s) needed; {} still ends at {} meanwhile (zsa show {})",
            r.id,
            out.grant.id,
            duration::format(by_secs),
            r.approvals_needed,
            out.grant.id,
            time(out.grant.expires_at),
            r.id
        ),
    }
    Ok(())
}

pub async fn review(client: &Client, json: bool, id: GrantId, comment: Option<String>) -> CmdResult {
    let g = client.review(id, comment).await?;
    if json {
        json_line(&g);
    } else if let Some(r) = &g.review {
        println!("{} reviewed by {} at {}", g.id, text::inert(&r.by), time(r.at));
    }
    Ok(())
}

/// Exit 0 when access is active now, 1 (with the reason on stderr) when it is not.
pub async fn check(client: &Client, json: bool, task: &str, user: Option<&str>) -> CmdResult {
    let answer = client.check(task, user).await?;
    if json {
        let mut value = serde_json::to_value(&answer).unwrap_or_default();
        if let (Some(map), Some(g)) = (value.as_object_mut(), &answer.grant) {
            map.insert("id".into(), g.id.to_string().into());
            map.insert("state".into(), g.state.as_str().into());
            map.insert("holder".into(), g.holder.clone().into());
            map.insert("expires_at".into(), serde_json::to_value(g.expires_at).unwrap_or_default());
        }
        json_line(&value);
    }
    if answer.allowed {
        if !json {
            println!("allowed: {}", text::inert(&answer.message));
        }
        Ok(())
    } else {
        Err(CliError::Refused(format!("not allowed: {}", answer.message)))
    }
}
