//! `zsa whoami`, `tasks`, and `zsa admin ...`.

use super::connect::Connection;
use super::output::{json_line, table, time};
use super::{CliError, CmdResult, id};
use crate::cli::{AdminCmd, NoticesCmd, TokenCmd};
use crate::client::Client;
use crate::model::wire::IssueToken;
use crate::model::{duration, text};

pub async fn whoami(client: &Client, json: bool, conn: &Connection) -> CmdResult {
    let me = client.whoami().await?;
    if json {
        // The daemon's answer, and how this client reached it.
        let mut value = serde_json::to_value(&me).map_err(anyhow::Error::from)?;
        value["client"] = serde_json::json!({
            "context": conn.context,
            "endpoint": conn.endpoint.address.to_string(),
            "token_from": conn.token_from,
        });
        json_line(&value);
        return Ok(());
    }
    let roles = if me.roles.is_empty() { "none".to_string() } else { me.roles.join(", ") };
    println!("{} (via {}){}", text::inert(&me.user), me.via, if me.disabled { " DISABLED" } else { "" });
    println!("roles:  {roles}");
    println!("groups: {}", if me.groups.is_empty() { "none".to_string() } else { me.groups.join(", ") });
    if let Some(auth) = &me.auth {
        println!("proved: {}", auth.describe());
    }
    println!("daemon: {} (policy sha256 {})", client.endpoint().describe(), me.policy_sha256);
    let context = match &conn.context {
        Some(name) => format!("context {}", text::inert(name)),
        None => "no context".to_string(),
    };
    let token = match &conn.token_from {
        Some(from) => format!("token from {from}"),
        None => "no token (the daemon knows you by your Unix account)".to_string(),
    };
    println!("client: {context}, {}, {token}", conn.endpoint.address);
    if !me.tokens.is_empty() {
        // Anyone holding one of these can act as you: say who made each.
        println!("tokens issued in your name:");
        for t in &me.tokens {
            let by = if t.issued_by == me.user { "you".to_string() } else { text::inert(&t.issued_by).into_owned() };
            let expires = match (t.expires_at, t.expired) {
                (None, _) => "never expires".to_string(),
                (Some(at), true) => format!("expired {}", time(at)),
                (Some(at), false) => format!("expires {}", time(at)),
            };
            let used = t.last_used.map_or("never used".to_string(), |at| format!("last used {}", time(at)));
            println!("  {} issued by {by} at {}, scope {}, {expires}, {used} ({})", t.id, time(t.issued_at), t.scope, t.state());
        }
    }
    Ok(())
}

/// `zsa ready`: exit 0 when every check passes; else 1, naming each that does not.
pub async fn ready(client: &Client, json: bool) -> CmdResult {
    let r = client.ready().await?;
    if json {
        json_line(&r);
    } else if r.ready {
        println!("ready");
    }
    if r.ready {
        return Ok(());
    }
    let failed: Vec<String> = r
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, text::inert_line(c.problem.as_deref().unwrap_or("?"))))
        .collect();
    Err(CliError::Refused(format!("the daemon is not ready: {}", failed.join("; "))))
}

pub async fn tasks(client: &Client, json: bool) -> CmdResult {
    let tasks = client.tasks().await?;
    if json {
        tasks.iter().for_each(json_line);
        return Ok(());
    }
    if tasks.is_empty() {
        println!("you may ask for no task and approve none under the current policy");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let mut needs = Vec::new();
            if t.require_reason {
                needs.push(match &t.reason_pattern {
                    Some(p) => format!("reason ~ {p}"),
                    None => "reason".into(),
                });
            }
            if t.require_ticket {
                needs.push(match &t.ticket_pattern {
                    Some(p) => format!("ticket ~ {p}"),
                    None => "ticket".into(),
                });
            }
            let approval = if t.break_glass {
                "break-glass".to_string()
            } else if t.approval == "auto" {
                "auto".to_string()
            } else if t.signed_approvals {
                format!("{} of {}, signed", t.approvals, t.approver_users.join(","))
            } else {
                format!("{} of {}", t.approvals, t.approver_users.join(","))
            };
            let you = match (t.may_request, t.may_approve) {
                (true, true) => "ask, approve",
                (true, false) => "ask",
                (false, true) => "approve",
                (false, false) => "see",
            };
            vec![
                t.name.clone(),
                approval,
                match t.extend.as_str() {
                    "auto" | "approval" => format!(
                        "{} (max {}; extend {}, {} in all)",
                        duration::format(t.default_duration_secs),
                        duration::format(t.max_duration_secs),
                        if t.extend == "auto" { "at once" } else { "with approval" },
                        duration::format(t.max_total_secs)
                    ),
                    _ => format!("{} (max {})", duration::format(t.default_duration_secs), duration::format(t.max_duration_secs)),
                },
                // Patterns are policy text: inert, like every text someone typed.
                if needs.is_empty() { "-".into() } else { text::inert_line(&needs.join(", ")) },
                you.into(),
                text::inert_line(&t.description),
            ]
        })
        .collect();
    table(&["TASK", "APPROVAL", "DURATION", "NEEDS", "YOU MAY", "DESCRIPTION"], &rows);
    for t in tasks.iter() {
        if let (true, Some(until)) = (t.may_request, t.eligible_until) {
            println!("you are eligible for {} until {}", t.name, time(until));
        }
        if let Some(from) = t.eligible_from {
            println!("you become eligible for {} at {}", t.name, time(from));
        }
    }
    for t in tasks.iter() {
        if let (Some(windows), Some(now)) = (&t.windows, &t.window_now) {
            println!();
            println!("{} only in its windows {}: {}", t.name, text::inert_line(windows), now);
        }
    }
    for t in tasks.iter() {
        if let Some(run) = &t.run {
            let params: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!();
            println!("{} runs (zsa run {}): {}", t.name, t.name, text::inert_line(&run.argv.join(" ")));
            let who = run.run_as.as_deref().map(|u| format!(", as {}", text::inert_line(u))).unwrap_or_default();
            println!(
                "  timeout {}, on expiry {}, at most {} at once{who}",
                duration::format(run.timeout_secs),
                run.on_expiry,
                run.max_concurrent_runs
            );
            for p in params {
                println!("  --param {}", text::inert_line(&p));
            }
        }
    }
    Ok(())
}

pub async fn run(client: &Client, json: bool, command: &AdminCmd) -> CmdResult {
    match command {
        AdminCmd::Token { command: TokenCmd::Issue { user, ttl, scope } } => {
            let asked = IssueToken {
                user: user.clone(),
                ttl_secs: ttl
                    .as_deref()
                    .filter(|t| t.trim() != "never")
                    .map(duration::parse)
                    .transpose()
                    .map_err(|e| CliError::Usage(format!("--ttl: {e}; or --ttl never")))?,
                never_expires: ttl.as_deref().is_some_and(|t| t.trim() == "never"),
                scope: scope.parse().map_err(CliError::Usage)?,
            };
            let issued = client.issue_token_with(&asked).await?;
            if json {
                json_line(&issued);
            } else {
                eprintln!(
                    "token {} for {}, scope {}, {} (shown once; the daemon keeps only its hash):",
                    issued.id,
                    text::inert(&issued.user),
                    issued.scope,
                    issued.expires_at.map_or("never expires".to_string(), |at| format!("expires {}", time(at)))
                );
                println!("{}", issued.token);
            }
        }
        AdminCmd::Token { command: TokenCmd::List } => {
            let tokens = client.tokens().await?;
            if json {
                tokens.iter().for_each(json_line);
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            text::inert(&t.user).into_owned(),
                            t.scope.to_string(),
                            time(t.issued_at),
                            text::inert(&t.issued_by).into_owned(),
                            t.expires_at.map_or("never".to_string(), time),
                            t.last_used.map_or("never".to_string(), time),
                            t.state().into(),
                        ]
                    })
                    .collect();
                table(&["ID", "USER", "SCOPE", "ISSUED", "BY", "EXPIRES", "LAST USED", "STATE"], &rows);
            }
        }
        AdminCmd::Token { command: TokenCmd::Revoke { id: raw } } => {
            let token = id(raw)?;
            client.revoke_token(token).await?;
            if json {
                json_line(&serde_json::json!({"id": token, "state": "revoked"}));
            } else {
                println!("token {token} revoked");
            }
        }
        AdminCmd::Disable { user, reason } => {
            client.disable(user, reason.clone()).await?;
            if json {
                json_line(&serde_json::json!({"user": user, "state": "disabled"}));
            } else {
                println!("{} disabled: their grants were revoked and pending requests cancelled", text::inert(user));
            }
        }
        AdminCmd::Enable { user } => {
            client.enable(user).await?;
            if json {
                json_line(&serde_json::json!({"user": user, "state": "enabled"}));
            } else {
                println!("{} enabled", text::inert(user));
            }
        }
        AdminCmd::Notices { command: NoticesCmd::Retry { id } } => return super::notices::retry(client, json, id).await,
        AdminCmd::Reload => {
            let load = client.reload().await?;
            if json {
                json_line(&load);
            } else {
                println!("policy reloaded from {}: {} tasks, sha256 {}", text::inert(&load.path), load.tasks, load.sha256);
            }
        }
        AdminCmd::Tls { command } => return super::tls::run(command, json),
        AdminCmd::Backup { file } => return super::backup::backup(client, file, json).await,
        AdminCmd::Restore { .. } => return super::restore(command, json).await,
    }
    Ok(())
}
