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

/// A grant approved ahead starts at its time exactly, across a restart: `check` says no (and
/// when) before it, yes from it, no after it. A start in the past is refused; the requester can
/// call one off before it starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_grant_starts_on_time_across_a_restart_and_can_be_called_off_before() {
    let mut d = ManualDaemon::start_with(&policy()).await;
    let carol = d.issue(&["carol"]);
    let alice = d.user("alice");
    let t0 = d.now();
    let out = d.cli(Some(&carol), &["request", "journal", "--at", "+2h", "--for", "1h", "--reason", "maintenance window", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let asked: zsa::model::wire::Outcome = serde_json::from_str(stdout(&out).trim()).unwrap();
    let id = asked.request.id;
    assert_eq!(asked.request.starts_at, Some(t0 + Duration::hours(2)));
    assert_eq!(asked.request.pending_until, t0 + Duration::hours(1), "the policy's pending_ttl (1h) comes first here");
    let g = alice.approve(id, None).await.unwrap().grant.expect("approved ahead: the grant exists").id;
    assert!(!holds(&d, &carol, "journal"), "not before its start");
    let check = d.cli(Some(&carol), &["check", "journal"]);
    assert!(stderr(&check).contains(&format!("not yet: carol holds {g} for 'journal' from")), "{}", stderr(&check));
    let listed = d.cli(Some(&carol), &["grants"]);
    assert!(stdout(&listed).contains("starts in 2:00:00"), "{}", stdout(&listed));

    d.stop().await;
    d.clock.set(t0 + Duration::hours(2) - Duration::seconds(1));
    d.restart().await;
    assert!(!holds(&d, &carol, "journal"), "a second before its start");
    d.clock.set(t0 + Duration::hours(2));
    assert!(holds(&d, &carol, "journal"), "at its start exactly");
    d.clock.set(t0 + Duration::hours(3));
    assert!(!holds(&d, &carol, "journal"), "and not after its end");

    // A start already past is refused; so is one further ahead than schedule_ahead (30 days).
    let out = d.cli(Some(&carol), &["request", "journal", "--at", "2020-01-01T10:00:00Z", "--reason", "x"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is already past"), "{}", stderr(&out));
    let out = d.cli(Some(&carol), &["request", "journal", "--at", "+40d", "--reason", "x"]);
    assert!(stderr(&out).contains("more than 30d ahead"), "{}", stderr(&out));

    // Approved ahead, then called off before it starts.
    let out = d.cli(Some(&carol), &["request", "journal", "--at", "+1h", "--reason", "y", "--json"]);
    let later: zsa::model::wire::Outcome = serde_json::from_str(stdout(&out).trim()).unwrap();
    let g2 = alice.approve(later.request.id, None).await.unwrap().grant.unwrap().id;
    let out = d.cli(Some(&carol), &["cancel", &later.request.id.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ended = d.admin().show_grant(g2).await.unwrap();
    assert_eq!(ended.state, zsa::model::GrantState::Relinquished);
    d.clock.advance(Duration::hours(1));
    assert!(!holds(&d, &carol, "journal"), "a grant called off never starts");
}

/// `--at` without an offset is the user's local time, daylight saving included; a local time
/// the clocks skip is refused rather than guessed.
#[tokio::test(flavor = "multi_thread")]
async fn at_reads_local_time_in_the_users_zone_and_refuses_a_skipped_hour() {
    let d = ManualDaemon::start_with(&policy()).await;
    let carol = d.issue(&["carol"]);
    let ask = |tz: &str, at: &str| {
        let mut cmd = std::process::Command::new(common::BIN);
        cmd.arg("--socket").arg(d.socket()).args(["request", "journal", "--reason", "r", "--json", "--at", at]);
        cmd.env("ZSA_TOKEN", &carol).env("TZ", tz).output().unwrap()
    };
    // 2026-03-01 is winter in New York: UTC-5.
    let out = ask("America/New_York", "2026-03-01T10:30");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let o: zsa::model::wire::Outcome = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o.request.starts_at.unwrap().to_rfc3339(), "2026-03-01T15:30:00+00:00");
    d.with(&carol).cancel(o.request.id).await.unwrap();
    // In Berlin the clocks go from 02:00 to 03:00 on 2026-03-29.
    let out = ask("Europe/Berlin", "2026-03-29T02:30");
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("does not exist here"), "{}", stderr(&out));
    // And back from 03:00 to 02:00 on 2026-10-25: which 02:30 must be said.
    let out = ask("Europe/Berlin", "2026-10-25T02:30");
    assert!(
        stderr(&out).contains("happens twice") && stderr(&out).contains("+02:00") && stderr(&out).contains("+01:00"),
        "{}",
        stderr(&out)
    );
}

/// Windows in a time zone, against a clock moved across the night Berlin's clocks go forward:
/// a grant is cut at its window's end (04:00 local, which that night is 02:00Z, an hour sooner
/// than a naive "+3h" would say); outside the windows a task is refused, saying when the next
/// opens, or, where the policy says so, needs an approval and is not cut.
#[tokio::test(flavor = "multi_thread")]
async fn a_window_closing_cuts_a_grant_across_a_daylight_saving_change() {
    let windowed = policy().replace(
        "max_duration = \"15m\"\nextend = \"auto\"\nmax_total = \"30m\"\n",
        "max_duration = \"4h\"\nwindows = [\"daily 01:00-04:00\"]\ntimezone = \"Europe/Berlin\"\n",
    ) + "[[tasks]]\nname = \"late\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\napprovers = [\"approvers\"]\nmax_duration = \"2h\"\nwindows = [\"Mon-Fri 09:00-17:00\"]\ntimezone = \"Europe/Berlin\"\noutside_window = \"approval\"\n";
    let d = ManualDaemon::start_with(&windowed).await;
    let carol = d.issue(&["carol"]);
    // 01:30 in Berlin (CET), half an hour before the clocks jump from 02:00 to 03:00.
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-29T00:30:00Z").unwrap().with_timezone(&chrono::Utc);
    d.clock.set(t0);
    let asked = NewRequest { task: "restart".into(), duration_secs: Some(4 * 3600), ..Default::default() };
    let grant = d.with(&carol).request(&asked).await.unwrap().grant.expect("in its window: granted at once");
    assert_eq!(grant.expires_at.to_rfc3339(), "2026-03-29T02:00:00+00:00", "cut at 04:00 CEST");
    d.clock.set(t0 + Duration::minutes(89));
    assert!(holds(&d, &carol, "restart"));
    d.clock.set(t0 + Duration::minutes(90));
    assert!(!holds(&d, &carol, "restart"), "the window closed, and with it the grant");

    // 05:00 CEST: outside; refused, saying when the next window opens.
    let out = d.cli(Some(&carol), &["request", "restart", "--for", "1h"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("may be used only in its windows, daily 01:00-04:00 (Europe/Berlin)"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the next opens Mon 2026-03-30 01:00 CEST") && stderr(&out).contains("--at 2026-03-29T23:00:00Z"),
        "{}",
        stderr(&out)
    );
    let tasks = d.cli(Some(&carol), &["tasks"]);
    assert!(
        stdout(&tasks)
            .contains("restart only in its windows daily 01:00-04:00 (Europe/Berlin): closed; next opens Mon 2026-03-30 01:00 CEST"),
        "{}",
        stdout(&tasks)
    );

    // A Sunday, outside late's weekday windows: it waits for an approver, and is not cut.
    let asked = NewRequest { task: "late".into(), duration_secs: Some(7200), ..Default::default() };
    let r = d.with(&carol).request(&asked).await.unwrap();
    assert!(r.grant.is_none() && r.request.approvals_needed == 1, "outside its windows an automatic task needs approval");
    let g = d.user("alice").approve(r.request.id, None).await.unwrap().grant.unwrap();
    assert_eq!(g.expires_at - g.granted_at, Duration::hours(2));
}

/// Approval in stages through the real daemon and CLI: the queue of each approver holds only
/// requests at a stage they approve; `zsa show` says how far it got.
#[tokio::test(flavor = "multi_thread")]
async fn stages_show_in_the_queue_and_in_show_and_are_decided_in_order() {
    let staged = common::POLICY
        .replace("oncall = [\"carol\", \"dave\"]\n", "oncall = [\"carol\", \"dave\"]\nleads = [\"alice\"]\nsecurity = [\"bob\", \"carol\"]\n")
        .replace(
            "name = \"export\"\nrequesters = [\"oncall\"]\napproval = \"manual\"\napprovers = [\"approvers\"]\napprovals = 2\nmax_duration = \"2h\"\n",
            "name = \"export\"\nrequesters = [\"oncall\"]\napproval = \"manual\"\nmax_duration = \"2h\"\n[[tasks.stages]]\nname = \"lead\"\napprovers = [\"leads\"]\n[[tasks.stages]]\nname = \"security\"\napprovers = [\"security\"]\n",
        );
    let mut d = common::Daemon::start_with(&staged);
    let id = d.user("dave").await.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap().request.id;
    let queue = |out: std::process::Output| stdout(&out).contains(&id.to_string());
    assert!(!queue(d.cli(Some("bob"), &["requests", "--pending"]).await), "security waits for the lead");
    assert!(queue(d.cli(Some("alice"), &["requests", "--pending"]).await));
    let out = d.cli(Some("bob"), &["approve", &id.to_string()]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("at stage 1/2 (lead), which you do not approve"), "{}", stderr(&out));
    assert_eq!(code(&d.cli(Some("alice"), &["approve", &id.to_string()]).await), 0);
    let shown = d.cli(Some("dave"), &["show", &id.to_string()]).await;
    assert!(stdout(&shown).contains("stage 1/2 (lead) done by alice; stage 2/2 (security): 0 of 1"), "{}", stdout(&shown));
    assert!(queue(d.cli(Some("bob"), &["requests", "--pending"]).await), "now it is security's");
    assert!(!queue(d.cli(Some("alice"), &["requests", "--pending"]).await));
    assert_eq!(code(&d.cli(Some("bob"), &["approve", &id.to_string()]).await), 0);
    let shown = d.cli(Some("dave"), &["show", &id.to_string()]).await;
    assert!(
        stdout(&shown).contains("approved: dave holds") && stdout(&shown).contains("stage 2/2 (security) done by bob"),
        "{}",
        stdout(&shown)
    );
}

/// A membership with an end date: `zsa tasks` says until when; when it ends, on the daemon's
/// clock, the person's pending requests are cancelled and their grants revoked at once, saying
/// why, and they may ask for nothing more. One with a start (the table form) holds from then.
#[tokio::test(flavor = "multi_thread")]
async fn eligibility_ending_while_a_grant_is_active_ends_it_at_once() {
    let dated = common::POLICY.replace(
        "oncall = [\"carol\", \"dave\"]",
        "oncall = [\"carol@2026-03-01T09:10:00Z\", \"dave\", { user = \"frank\", from = \"2026-03-01T09:05:00Z\" }]",
    );
    let d = ManualDaemon::start_with(&dated).await;
    let carol = d.issue(&["carol"]);
    let tasks = d.cli(Some(&carol), &["tasks"]);
    assert!(stdout(&tasks).contains("you are eligible for journal until 2026-03-01T09:10:00Z"), "{}", stdout(&tasks));
    let frank = d.issue(&["frank"]);
    let tasks = d.cli(Some(&frank), &["tasks"]);
    assert!(stdout(&tasks).contains("you become eligible for restart at 2026-03-01T09:05:00Z"), "{}", stdout(&tasks));
    let early = d.cli(Some(&frank), &["request", "restart"]);
    assert_eq!(code(&early), 1);
    assert!(stderr(&early).contains("your eligibility for 'restart' starts at 2026-03-01T09:05:00+00:00; ask then"), "{}", stderr(&early));
    d.clock.set(chrono::DateTime::parse_from_rfc3339("2026-03-01T09:05:00Z").unwrap().with_timezone(&chrono::Utc));
    let on_time = d.cli(Some(&frank), &["request", "restart"]);
    assert_eq!(code(&on_time), 0, "{}", stderr(&on_time));
    let granted = d.with(&carol).request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    let g = granted.grant.expect("restart is automatic").id;
    let asked = NewRequest { task: "journal".into(), reason: Some("mail".into()), ..Default::default() };
    let pending = d.with(&carol).request(&asked).await.unwrap().request.id;
    assert!(holds(&d, &carol, "restart"));
    d.clock.set(chrono::DateTime::parse_from_rfc3339("2026-03-01T09:10:00Z").unwrap().with_timezone(&chrono::Utc));
    // The sweep runs by itself (the daemon wakes at least each second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let grant = d.admin().show_grant(g).await.unwrap();
        if grant.state == zsa::model::GrantState::Revoked {
            let why = grant.ended.as_ref().and_then(|e| e.reason.clone()).unwrap_or_default();
            assert!(why.contains("eligibility ended: membership of oncall"), "{why}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the grant was not ended when carol's eligibility did");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(d.admin().show_request(pending).await.unwrap().request.state, RequestState::Cancelled);
    assert!(!holds(&d, &carol, "restart"));
    let out = d.cli(Some(&carol), &["request", "restart"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("may not ask for 'restart'"), "{}", stderr(&out));
}
