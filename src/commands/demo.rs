//! `zsa demo`: a daemon on a temporary state directory with the demo policy, demo people with
//! tokens, and a few requests and grants in every state, so there is something to look at.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::CmdResult;
use crate::clock::SystemClock;
use crate::daemon::auth::{new_token, token_hash};
use crate::daemon::{DaemonConfig, Engine, start};
use crate::model::wire::NewRequest;
use crate::model::{Change, RequestId};
use crate::rules::Command;

pub const DEMO_POLICY: &str = include_str!("../../assets/demo-policy.toml");

/// The demo's notices go to a file in its own directory (a file channel needs an absolute path,
/// so this part of the policy is written where the demo runs): what mail or chat would carry,
/// with no outside service. The console shows each one to its recipient as it arrives.
fn demo_policy(notices: &std::path::Path) -> String {
    format!(
        r#"{DEMO_POLICY}
# Added by `zsa demo`: notices as JSON lines in the demo's directory, instead of mail or chat.
[channels.demo]
kind = "file"
path = {path}

[[notify]]
on = ["request_created", "break_glass"]
to = ["approvers"]
via = "demo"

[[notify]]
on = ["request_approved", "request_denied", "request_expired", "grant_expiring"]
to = ["requester"]
via = "demo"
before = "5m"

[[notify]]
on = ["break_glass", "notice_failed"]
to = ["group:auditors"]
via = "demo"
"#,
        // A JSON string is a valid TOML basic string: quoted, with every escape TOML knows.
        path = serde_json::Value::String(notices.display().to_string())
    )
}

/// The demo people and what they play, in the order F2 walks through them in the console.
pub const PEOPLE: [(&str, &str); 5] = [
    ("alice", "approver"),
    ("carol", "on call: asks for tasks"),
    ("erin", "auditor"),
    ("bob", "approver"),
    ("dave", "on call: asks for tasks"),
];

fn ask(engine: &Engine, who: &str, task: &str, minutes: u64, reason: &str, ticket: Option<&str>) -> anyhow::Result<RequestId> {
    let events = engine.execute(
        who,
        Command::Request(NewRequest {
            task: task.into(),
            duration_secs: Some(minutes * 60),
            reason: Some(reason.into()),
            ticket: ticket.map(Into::into),
            params: Default::default(),
            starts_at: None,
        }),
    )?;
    events
        .iter()
        .find_map(|e| match e.change {
            Change::RequestCreated { request, .. } => Some(request),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("the demo request for {task} was not recorded"))
}

/// Seeds the demo's story and returns a token for each demo person.
pub fn seed(engine: &Engine) -> anyhow::Result<Vec<(String, String)>> {
    let mut tokens = Vec::new();
    for (user, _) in PEOPLE {
        let token = new_token();
        engine.execute(crate::model::SYSTEM_ACTOR, Command::issue_token(user, token_hash(&token)))?;
        tokens.push((user.to_string(), token));
    }
    ask(engine, "carol", "exchange.journal-rule", 60, "Journal rule for the legal hold on the finance mailboxes", Some("INC-1042"))?;
    let export = ask(engine, "dave", "mailbox.export", 30, "Customer asked for an export of their shared mailbox", Some("INC-1043"))?;
    engine.execute("alice", Command::Approve { request: export, comment: Some("ticket checked".into()), signature: None })?;
    ask(engine, "dave", "service.restart", 15, "nginx is leaking memory on web-3", None)?;
    let journal =
        ask(engine, "dave", "exchange.journal-rule", 45, "Remove the old journal rule for the archive migration", Some("INC-1039"))?;
    engine.execute("bob", Command::Approve { request: journal, comment: None, signature: None })?;
    ask(engine, "carol", "db.break-glass", 20, "Primary database refuses connections; pager went off at 02:10", None)?;
    let dns = ask(engine, "dave", "dns.edit", 20, "Point www at the new load balancer", None)?;
    engine.execute("alice", Command::Deny { request: dns, comment: Some("Wait for the change window on Thursday".into()) })?;
    Ok(tokens)
}

pub async fn run(socket: Option<PathBuf>) -> CmdResult {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let dir = std::env::temp_dir().join(format!("zsa-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
    // Whatever happens (the daemon cannot start, the terminal went away), nothing is left behind.
    let outcome = run_in(&dir, socket).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    // The terminal may be gone (a closed SSH session): saying goodbye must not fail.
    let _ = writeln!(std::io::stdout(), "zsa demo stopped; its state was removed.");
    Ok(())
}

async fn run_in(dir: &std::path::Path, socket: Option<PathBuf>) -> CmdResult {
    let policy = dir.join("demo-policy.toml");
    let notices = dir.join("notices.jsonl");
    std::fs::write(&policy, demo_policy(&notices)).map_err(anyhow::Error::from)?;
    let config = DaemonConfig {
        state_dir: dir.join("state"),
        policy,
        socket: socket.unwrap_or_else(|| dir.join("zsa.sock")),
        rebuild_from_log: false,
        ..Default::default()
    };
    let handle = start(config, Arc::new(SystemClock)).await?;
    let engine = handle.engine.clone();
    let seeded = tokio::task::spawn_blocking(move || seed(&engine)).await.map_err(anyhow::Error::from).and_then(|r| r);
    let tokens = match seeded {
        Ok(tokens) => tokens,
        Err(e) => {
            handle.shutdown().await;
            return Err(e.into());
        }
    };

    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // A person at a terminal gets the console; F2 walks through the demo people.
        let options = crate::tui::TuiOptions {
            endpoint: crate::client::Endpoint::unix(&handle.socket),
            token: None,
            bell: true,
            people: tokens,
            notices: Some(notices),
        };
        let result = crate::tui::run(options).await;
        handle.shutdown().await;
        return Ok(result?);
    }
    // One write, whose failure (`zsa demo | head -1`) is no reason to stop: the demo runs on.
    let mut people = String::new();
    for ((user, token), (_, role)) in tokens.iter().zip(PEOPLE) {
        people.push_str(&format!("  {user:<6} ({role}):  export ZSA_TOKEN={token}\n"));
    }
    let banner = format!(
        "zsa demo: a daemon with the demo policy is running; everything is removed when you press Ctrl-C.

In another shell, point zsa at it:
  export ZSA_SOCKET={socket}

Then act as one of the demo people by setting their token:
{people}
Things to try:
  zsa whoami; zsa tasks; zsa requests; zsa grants
  as alice:  zsa approve R1 --comment \"ok\"
  as bob:    zsa review G5 --comment \"looked at the session log\"
  as carol:  zsa request service.restart --for 5m --reason \"web-2 is stuck\"; zsa check service.restart
  as erin:   zsa audit; zsa audit verify; zsa audit --csv > audit.csv

Notices (what mail or chat would carry) are appended to this file, one JSON line each:
  tail -f {notices}

Press Ctrl-C to stop.
",
        socket = handle.socket.display(),
        notices = notices.display()
    );
    let _ = std::io::stdout().write_all(banner.as_bytes()).and_then(|_| std::io::stdout().flush());

    let mut stopping = handle.stopping();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = stopping.changed() => {}
        _ = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => { term.recv().await; }
                Err(_) => std::future::pending::<()>().await,
            }
        } => {}
    }
    handle.shutdown().await;
    Ok(())
}
