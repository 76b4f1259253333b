//! Time in the policy (issue 16), against a real daemon on a clock the test moves: a live grant
//! extended at once or through an extension request approvers decide, never past the task's
//! `max_total`, with no gap and no second grant; surviving a restart. The real CLI and client.

mod common;

use chrono::Duration;
use common::manual::ManualDaemon;
use common::{code, stderr, stdout};
use zsa::model::wire::NewRequest;
use zsa::model::{GrantId, RequestState};

/// `journal` extends with approval up to 6h in all; `restart` at once up to 30m.
fn policy() -> String {
    common::POLICY
        .replace("default_duration = \"1h\"\n", "default_duration = \"1h\"\nextend = \"approval\"\nmax_total = \"6h\"\n")
        .replace("max_duration = \"15m\"\n", "max_duration = \"15m\"\nextend = \"auto\"\nmax_total = \"30m\"\n")
}

/// Whether `zsa check TASK` as the holder of `token` says yes now (exit 0).
fn holds(d: &ManualDaemon, token: &str, task: &str) -> bool {
    let out = d.cli(Some(token), &["check", task]);
    assert!(matches!(code(&out), 0 | 1), "{}", stderr(&out));
    code(&out) == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn an_extension_approved_while_the_grant_runs_lengthens_it_with_no_gap_and_survives_a_restart() {
    let mut d = ManualDaemon::start_with(&policy()).await;
    let carol = d.issue(&["carol"]);
    let alice = d.user("alice");
    let asked = NewRequest { task: "journal".into(), duration_secs: Some(3600), reason: Some("mail loop".into()), ..Default::default() };
    let id = d.with(&carol).request(&asked).await.unwrap().request.id;
    alice.approve(id, None).await.unwrap();
    let g = id.grant();
    let started = d.now();

    d.clock.advance(Duration::minutes(40));
    let out = d.cli(Some(&carol), &["extend", &g.to_string(), "--by", "1h", "--reason", "migration still running"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("asks to extend {g} by 1h")) && stdout(&out).contains("1 approval(s) needed"),
        "{}",
        stdout(&out)
    );
    let ext = d.with(&carol).requests(false).await.unwrap().into_iter().find(|r| r.extends == Some(g)).expect("the extension waits");
    // Approvers see it as an extension of that grant.
    let listed = d.cli(Some(&d.issue(&["bob"])), &["requests"]);
    assert!(stdout(&listed).contains(&format!("+1h to {g}")), "{}", stdout(&listed));
    // A second one while it waits is refused, and so is more than max_total allows.
    let again = d.cli(Some(&carol), &["extend", &g.to_string(), "--by", "10m", "--reason", "x"]);
    assert_eq!(code(&again), 1);
    assert!(stderr(&again).contains(&format!("{} already asks to extend {g}", ext.id)), "{}", stderr(&again));

    // The daemon restarts while it waits; the grant runs on meanwhile.
    d.stop().await;
    d.restart().await;
    assert!(holds(&d, &carol, "journal"));
    d.clock.advance(Duration::minutes(15));
    let bob = d.user("bob");
    let approved = bob.approve(ext.id, Some("ok".into())).await.unwrap();
    assert_eq!(approved.request.state, RequestState::Approved);
    let grant = approved.grant.expect("the extension names the grant it lengthened");
    assert_eq!(grant.id, g);
    assert_eq!(grant.expires_at, started + Duration::hours(2), "one hour, then one more: no gap, no overlap");
    assert_eq!(d.admin().grants(true).await.unwrap().len(), 1, "no second grant");

    // Held throughout, across the old end, until the new one.
    for (at, held) in [(59, true), (61, true), (119, true), (121, false)] {
        d.clock.set(started + Duration::minutes(at));
        assert_eq!(holds(&d, &carol, "journal"), held, "{at} minutes in");
    }
    let log = d.cli(None, &["audit", "--task", "journal"]);
    assert!(stdout(&log).contains("grant_extended") && stdout(&log).contains(&format!("{} approved by bob", ext.id)), "{}", stdout(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_automatic_extension_counts_against_max_total_and_says_how_much_is_left() {
    let d = ManualDaemon::start_with(&policy()).await;
    let carol = d.issue(&["carol"]);
    let asked = NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() };
    let g: GrantId = d.with(&carol).request(&asked).await.unwrap().grant.expect("restart is granted at once").id;
    let out = d.cli(Some(&carol), &["extend", &g.to_string(), "--by", "15m"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("{g} extended by 15m")), "{}", stdout(&out));
    let out = d.cli(Some(&carol), &["extend", &g.to_string(), "--by", "10m"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("allows at most 30m (max_total in the policy); it may run at most 5m more"), "{}", stderr(&out));
    // Someone else's grant is not theirs to extend; a bad duration is a usage error.
    let out = d.cli(None, &["extend", &g.to_string(), "--by", "5m"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("only the holder (carol) may extend"), "{}", stderr(&out));
    assert_eq!(code(&d.cli(Some(&carol), &["extend", &g.to_string(), "--by", "soon"])), 2);
    let tasks = d.cli(Some(&carol), &["tasks"]);
    assert!(stdout(&tasks).contains("extend at once, 30m in all"), "{}", stdout(&tasks));
}

/// The console: `+` on one's own grant opens the extend prompt (how long, then why, with when
/// it ends and how much more the task allows), and the grant's new end follows.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_extends_ones_own_grant_with_plus() {
    let mut d = common::Daemon::start_with(&policy());
    let carol = d.token("carol").await;
    let asked = NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() };
    let g = d.user("carol").await.request(&asked).await.unwrap().grant.expect("granted at once").id;
    let mut console = common::console::Console::open(&d, &carol);
    console.wait_for("Approver");
    // Carol approves too, so the console opens on the queue; her grant is on the requester pane.
    console.press("1");
    console.wait_for(&g.to_string());
    console.press("+");
    let prompt = console.wait_for(&format!("Extend your grant {g}?"));
    assert!(prompt.contains("at most 20m more"), "{prompt}");
    assert!(prompt.contains("how much longer, then why"), "{prompt}");
    console.press("15m restart is slow\r");
    console.wait("the toast", |s| s.contains(&format!("extended {g} by 15m")));
    console.quit();
    let grant = d.admin().show_grant(g).await.unwrap();
    assert_eq!((grant.expires_at - grant.granted_at).num_minutes(), 25);
}
