//! The CLI's contract with scripts: exit codes as documented, `--pending` filtering, help that
//! shows only the flags a command takes.

mod common;

use std::process::Command;

use common::{BIN, Daemon, code, stderr, stdout};
use zsa::model::wire::NewRequest;

/// A missing required comment is a usage error (2), as `zsa --help` and the README say, with the
/// command to type; in --json mode too, as a JSON error. Nothing reaches the daemon's log.
#[tokio::test]
async fn a_missing_comment_or_reason_is_a_usage_error() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let r = dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap().request.id.to_string();
    let g = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    let g = g.grant.unwrap().id.to_string();
    d.token("alice").await;
    let before = d.admin().audit(&Default::default()).await.unwrap().len();

    for args in [vec!["deny", &r], vec!["deny", &r, "--comment", "  "], vec!["revoke", &g], vec!["revoke", &g, "--reason", ""]] {
        // alice approves export; the admin (the test's own account) may revoke any grant.
        let who = if args[0] == "deny" { Some("alice") } else { None };
        let out = d.cli(who, &args).await;
        assert_eq!(code(&out), 2, "zsa {args:?}: {}", stderr(&out));
        let flag = if args[0] == "deny" { "--comment" } else { "--reason" };
        assert!(
            stderr(&out).contains(&format!("{flag} is required")) && stderr(&out).contains(&format!("zsa {} ", args[0])),
            "{}",
            stderr(&out)
        );
    }
    let out = d.cli(Some("alice"), &["deny", &r, "--json"]).await;
    assert_eq!(code(&out), 2);
    let error: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(error["error"]["code"], "usage", "{error}");
    assert_eq!(d.admin().audit(&Default::default()).await.unwrap().len(), before, "nothing was decided");

    // With the comment, the same commands do what they say.
    assert_eq!(code(&d.cli(Some("alice"), &["deny", &r, "--comment", "not today"]).await), 0);
    assert_eq!(code(&d.cli(None, &["revoke", &g, "--reason", "done"]).await), 0);
}

/// `zsa requests` lists pending requests one made or may act on; `--pending` only those waiting
/// for one's own decision: not one's own, not ones already approved.
#[tokio::test]
async fn requests_pending_lists_only_what_waits_for_you() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    let alice = d.user("alice").await;
    let journal = NewRequest { task: "journal".into(), reason: Some("mail flow".into()), ..Default::default() };
    let waiting = dave.request(&journal).await.unwrap().request.id;
    let approved_by_alice = dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap().request.id;
    alice.approve(approved_by_alice, None).await.unwrap();
    // carol is on call and approves: her own request is in her list but waits for others.
    let carols = carol.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap().request.id;

    let ids = |out: &std::process::Output| -> Vec<String> {
        stdout(out).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
    };
    let out = d.cli(Some("carol"), &["requests", "--json"]).await;
    assert_eq!(ids(&out), [waiting.to_string(), approved_by_alice.to_string(), carols.to_string()], "{}", stderr(&out));
    let out = d.cli(Some("carol"), &["requests", "--pending", "--json"]).await;
    assert_eq!(ids(&out), [waiting.to_string(), approved_by_alice.to_string()], "{}", stderr(&out));
    let out = d.cli(Some("alice"), &["requests", "--pending", "--json"]).await;
    assert_eq!(ids(&out), [waiting.to_string(), carols.to_string()], "{}", stderr(&out));
    // dave approves nothing: nothing waits for him, though his requests are pending.
    let out = d.cli(Some("dave"), &["requests", "--pending"]).await;
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out).trim(), "no requests wait for your decision");
}

#[test]
fn help_shows_only_the_flags_a_command_takes_and_the_exit_codes() {
    let help = |args: &[&str]| stdout(&Command::new(BIN).args(args).arg("--help").output().unwrap());
    let daemon = help(&["daemon"]);
    for flag in ["--token", "--json", "--token-stdin"] {
        assert!(!daemon.contains(flag), "zsa daemon --help lists {flag}:\n{daemon}");
    }
    assert!(daemon.contains("--socket <PATH>") && daemon.contains("listen"), "{daemon}");
    let request = help(&["request"]);
    for flag in ["--json", "--token-stdin", "--socket", "--wait", "Examples:"] {
        assert!(request.contains(flag), "zsa request --help lacks {flag}:\n{request}");
    }
    assert!(help(&["requests"]).contains("waiting for your decision"));
    let top = help(&[]);
    assert!(top.contains("Exit codes:") && top.contains("3  the daemon is unreachable"), "{top}");
    // The flags still work before the command, as they always did.
    let out = Command::new(BIN).args(["--socket", "/nonexistent/zsa.sock", "whoami"]).env_remove("ZSA_TOKEN").output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent/zsa.sock"));
}

/// Patterns in the policy are text an admin typed: `zsa tasks` shows them inert, so a pattern
/// holding an escape sequence cannot retitle or clear the terminal of whoever lists the tasks.
#[tokio::test]
async fn task_listing_draws_policy_patterns_inert() {
    let hostile = common::POLICY.replace(
        r#"ticket_pattern = "INC-[0-9]+""#,
        r#"ticket_pattern = "INC-[0-9]+"
reason_pattern = "\u001b]0;pwned\u0007.*""#,
    );
    assert_ne!(hostile, common::POLICY);
    let mut d = Daemon::start_with(&hostile);
    let out = d.cli(Some("dave"), &["tasks"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(!listed.contains(['\u{1b}', '\u{7}']), "a control character reached the terminal: {listed:?}");
    assert!(listed.contains(r"reason ~ \u{1b}]0;pwned\u{7}.*"), "the pattern is shown, inert: {listed}");
}

/// `--pending` lists what the daemon says the viewer may approve, nothing the CLI decides itself:
/// a task that takes approvals only from a person's own login waits for nothing from a token.
#[tokio::test]
async fn requests_pending_follows_what_the_daemon_lets_you_approve() {
    let policy = common::POLICY.replace(
        r#"ticket_pattern = "INC-[0-9]+""#,
        r#"ticket_pattern = "INC-[0-9]+"
approve_via = ["peer"]"#,
    );
    assert_ne!(policy, common::POLICY);
    let mut d = Daemon::start_with(&policy);
    let dave = d.user("dave").await;
    let journal = NewRequest { task: "journal".into(), reason: Some("mail flow".into()), ..Default::default() };
    let by_login_only = dave.request(&journal).await.unwrap().request.id.to_string();
    let export = dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap().request.id.to_string();

    let ids = |out: &std::process::Output| -> Vec<String> {
        stdout(out).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
    };
    let out = d.cli(Some("alice"), &["requests", "--json"]).await;
    assert_eq!(ids(&out), [by_login_only.clone(), export.clone()], "{}", stderr(&out));
    let out = d.cli(Some("alice"), &["requests", "--pending", "--json"]).await;
    assert_eq!(ids(&out), [export], "alice came with a token, so only export waits for her: {}", stderr(&out));
    let refused = d.cli(Some("alice"), &["approve", &by_login_only]).await;
    assert!(stderr(&refused).contains("approve"), "and approving it is indeed refused: {}", stderr(&refused));
    assert_eq!(code(&refused), 1);
}
