//! What the console draws at 60x20, 80x24 and 200x50, for each pane and each popup, from an app
//! fed with realistic data: a task name as long as people write them, a reason that wraps and
//! holds CJK and an emoji, 64-hex hashes, a run with a 200-line transcript. Besides the
//! snapshots (reviewed by eye), each size is checked for what must never be lost: the lines that
//! say how to close or confirm, the key hints `? help` and `q quit`, whole task names and times.

use chrono::Duration;
use crossterm::event::KeyCode;
use sha2::{Digest, Sha256};

use super::action::{Action, Effect};
use super::app::{App, Item, Mode};
use super::tests::{event, key, loaded, screen, t0};
use crate::model::{Change, GrantId, RequestId, RunId, RunOutcome};

const SIZES: [(u16, u16); 3] = [(60, 20), (80, 24), (200, 50)];

const LONG_TASK: &str = "exchange.journal";
const REASON: &str = "Legal hold for case 2026-114: every message to and from the finance mailboxes must be \
journaled to the archive before Friday's export. 法務の確認済み 🔥 Ticket has the approval of the DPO.\n\
Rolled back by removing the rule.";
const TRANSCRIPT_LINES: usize = 200;

fn hash(seed: u64) -> String {
    hex::encode(Sha256::digest(seed.to_string()))
}

fn transcript() -> String {
    let mut out: String =
        (1..TRANSCRIPT_LINES).map(|n| format!("{n:03} restarting web-{}.prod.example.com: unit web.service ok\n", n % 7)).collect();
    out.push_str("done: every unit restarted, last line of the transcript\n");
    out
}

/// alice's world from `tests::loaded`, with names, reasons and hashes as they are in real use.
fn scene(user: &str, roles: &[&str]) -> App {
    let mut app = loaded(user, roles);
    for t in app.tasks.iter_mut().filter(|t| t.name == "journal") {
        t.name = LONG_TASK.into();
    }
    for r in app.requests.values_mut().filter(|r| r.task == "journal") {
        r.task = LONG_TASK.into();
    }
    for g in app.grants.values_mut().filter(|g| g.task == "journal") {
        g.task = LONG_TASK.into();
    }
    let r1 = app.requests.get_mut(&RequestId(1)).unwrap();
    r1.reason = Some(REASON.into());
    r1.ticket = Some("INC-2026-000417".into());
    let text = transcript();
    let sha256 = hex::encode(Sha256::digest(&text));
    let ended = Change::RunEnded {
        run: RunId(1),
        grant: GrantId(4),
        task: "restart".into(),
        holder: "alice".into(),
        outcome: RunOutcome::Exited,
        exit_code: Some(0),
        transcript_bytes: text.len() as u64,
        transcript_sha256: sha256.clone(),
        transcript_cap: 1 << 20,
        truncated: false,
    };
    app.update(Action::EventReceived(event(5, "zsa:daemon", ended)), t0());
    app.update(Action::TranscriptLoaded { run: RunId(1), text, sha256 }, t0());
    let mut prev = "0".repeat(64);
    for e in &mut app.log {
        e.prev_hash = prev;
        e.hash = hash(e.seq);
        prev = e.hash.clone();
    }
    app.update(Action::Tick, t0() + Duration::seconds(1));
    app
}

fn alice() -> App {
    scene("alice", &["approver", "requester", "auditor"])
}

/// The screen's text without the frame, the scrollbar and the spaces, so a hash that wraps
/// reads as one word again.
fn squashed(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && !"│─┌┐└┘║█▲▼↑↓".contains(*c)).collect()
}

fn snap(name: &str, w: u16, h: u16, app: &App) -> String {
    let s = screen(app, w, h);
    insta::with_settings!({ snapshot_path => "snapshots/layout", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), s);
    });
    s
}

/// Every size keeps the hints that matter, and no cut word without its ellipsis.
fn common_checks(s: &str, w: u16, h: u16) {
    let footer = s.lines().last().unwrap();
    assert!(footer.contains("? help") && footer.contains("q quit"), "the footer keeps ? help and q quit at {w}x{h}:\n{s}");
    for cut in ["exchange.jou ", "exchange.jour ", "23h59 "] {
        assert!(!s.contains(cut), "{cut:?} is cut without an ellipsis at {w}x{h}:\n{s}");
    }
}

#[test]
fn panes_at_every_size() {
    for (w, h) in SIZES {
        let mut app = alice();
        let approver = snap("approver_pane", w, h, &app);
        common_checks(&approver, w, h);
        assert!(approver.contains(LONG_TASK), "the task is whole at {w}x{h}:\n{approver}");
        assert!(approver.contains("1h47m") && approver.contains("1h54m"), "time left, whole, at {w}x{h}:\n{approver}");
        key(&mut app, KeyCode::Char('1'));
        let requester = snap("requester_pane", w, h, &app);
        common_checks(&requester, w, h);
        assert!(requester.contains("7m59s"), "the countdown is whole and reads as a duration at {w}x{h}:\n{requester}");
        key(&mut app, KeyCode::Char('3'));
        let auditor = snap("auditor_pane", w, h, &app);
        common_checks(&auditor, w, h);
        assert!(auditor.contains("run_ended") && auditor.contains("request_created"), "{auditor}");
    }
}

#[test]
fn the_detail_of_a_request_with_a_long_reason_shows_it_all() {
    for (w, h) in SIZES {
        let mut app = alice();
        assert_eq!(app.selected(), Some(Item::Request(RequestId(1))));
        key(&mut app, KeyCode::Enter);
        let s = snap("request_detail", w, h, &app);
        common_checks(&s, w, h);
        assert!(s.contains("Esc or Enter: back"), "the way back is never lost at {w}x{h}:\n{s}");
        assert!(s.contains("2026-11-23 08:48:00 UTC (12m1s ago)"), "when it was asked, with date, zone and how long ago:\n{s}");
        app.scroll.end();
        let end = screen(&app, w, h);
        assert!(squashed(&end).contains("Rolledbackbyremovingtherule."), "the reason's last line at {w}x{h}:\n{end}");
        assert!(end.contains("Esc or Enter: back"), "{end}");
    }
}

#[test]
fn the_detail_of_an_event_shows_both_hashes_and_the_start_of_its_transcript() {
    for (w, h) in SIZES {
        let mut app = alice();
        key(&mut app, KeyCode::Char('3'));
        assert_eq!(app.selected(), Some(Item::Event(4)), "the run's end, newest first");
        assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::FetchTranscript(RunId(1))]);
        let s = snap("event_detail", w, h, &app);
        assert!(s.contains("Esc or Enter: back") && s.contains("t: whole transcript"), "{s}");
        assert!(s.contains("2026-11-23 08:05:00 UTC (55m1s ago)"), "the event's time with date, zone and how long ago:\n{s}");
        let tall = s.contains("↓ more");
        // The end of the detail: the previous hash, whole, and the transcript's first lines.
        key(&mut app, KeyCode::End);
        let end = snap("event_detail_end", w, h, &app);
        assert!(squashed(&end).contains(&format!("previous:{}", hash(4))), "the previous hash, whole, at {w}x{h}:\n{end}");
        assert!(end.contains("matches the digest in the log") && end.contains("press t for the whole transcript"), "{end}");
        assert!(end.contains("Esc or Enter: back"), "{end}");
        assert!(!tall || end.contains(" end "), "the scroll says it reached the end:\n{end}");
        key(&mut app, KeyCode::Up);
        key(&mut app, KeyCode::Home);
        assert_eq!(screen(&app, w, h), s, "Home goes back to the top");
    }
}

#[test]
fn a_long_transcript_opens_in_its_own_view_and_scrolls_to_its_last_line() {
    for (w, h) in SIZES {
        let mut app = alice();
        key(&mut app, KeyCode::Char('3'));
        key(&mut app, KeyCode::Enter);
        screen(&app, w, h);
        key(&mut app, KeyCode::Char('t'));
        assert_eq!(app.mode, Mode::Transcript(RunId(1)));
        let top = snap("transcript", w, h, &app);
        assert!(top.contains("Transcript of X1") && top.contains("001 restarting") && top.contains("↓ more"), "{top}");
        assert!(!top.contains("last line of the transcript"));
        key(&mut app, KeyCode::PageDown);
        let page = screen(&app, w, h);
        let last_seen = top.lines().rfind(|l| l.contains(" restarting ")).unwrap();
        let first_now = page.lines().nth(1).unwrap();
        assert_eq!(first_now.get(..12), last_seen.get(..12), "a page down keeps the last line in view:\n{top}\n{page}");
        key(&mut app, KeyCode::End);
        let end = snap("transcript_end", w, h, &app);
        assert!(end.contains("done: every unit restarted, last line of the transcript"), "{end}");
        assert!(end.contains(&format!("(end of the transcript: {TRANSCRIPT_LINES} lines)")), "{end}");
        key(&mut app, KeyCode::Down);
        assert_eq!(screen(&app, w, h), end, "nothing past the end");
        key(&mut app, KeyCode::Esc);
        assert_eq!(app.mode, Mode::Detail, "Esc goes back to the event");
        key(&mut app, KeyCode::Esc);
        assert_eq!(app.mode, Mode::Normal);
    }
}

#[test]
fn help_form_and_prompt_keep_their_last_lines() {
    for (w, h) in SIZES {
        let mut app = alice();
        key(&mut app, KeyCode::Char('?'));
        let help = snap("help", w, h, &app);
        assert!(help.contains("any other key closes"), "{help}");
        key(&mut app, KeyCode::End);
        let end = screen(&app, w, h);
        assert!(end.contains("quit") && end.contains("this help"), "the last bindings at {w}x{h}:\n{end}");
        key(&mut app, KeyCode::Char('x'));
        assert_eq!(app.mode, Mode::Normal);

        key(&mut app, KeyCode::Char('a'));
        let prompt = snap("approve_prompt", w, h, &app);
        assert!(prompt.contains("Enter confirms") && prompt.contains("comment (optional)"), "{prompt}");
        assert!(prompt.contains("Approve R1?"), "{prompt}");
        key(&mut app, KeyCode::Esc);

        key(&mut app, KeyCode::Char('1'));
        key(&mut app, KeyCode::Char('n'));
        let form = snap("request_form", w, h, &app);
        assert!(form.contains("Esc cancel") && form.contains("Ticket"), "{form}");
    }
}

#[test]
fn below_the_minimum_size_the_console_says_so() {
    let app = alice();
    for (w, h) in [(40, 10), (49, 30), (120, 11)] {
        let s = screen(&app, w, h);
        assert!(s.contains("terminal too small"), "{s}");
        assert!(s.contains(&format!("now {w}x{h}")), "{s}");
    }
    let s = snap("too_small", 40, 10, &app);
    assert!(s.contains("need at least 50x12, now 40x10"), "{s}");
    assert!(!screen(&app, 50, 12).contains("too small"), "the minimum itself is enough");
}

/// Time in the policy as drawn: the extend prompt on one's own grant (when it ends, how much more
/// the task allows), a grant approved ahead counting down to its start, and a request's details
/// with its stages, at every size; what must not be lost is checked besides the snapshots.
#[test]
fn time_in_the_policy_at_every_size() {
    use crate::model::wire::{ActionView, Actions, RowAction};
    for (w, h) in SIZES {
        let mut app = alice();
        for t in app.tasks.iter_mut().filter(|t| t.name == "restart") {
            t.max_total_secs = 3600;
        }
        let g = app.grants.get_mut(&GrantId(4)).unwrap();
        g.actions = Actions(vec![ActionView { action: RowAction::Extend, allowed: true, code: None, why: None, sign_with: None }]);
        key(&mut app, KeyCode::Char('1'));
        assert_eq!(app.selected(), Some(Item::Grant(GrantId(4))));
        key(&mut app, KeyCode::Char('+'));
        let prompt = snap("extend_prompt", w, h, &app);
        assert!(prompt.contains("Extend your grant G4?") && prompt.contains("Enter confirms"), "{prompt}");
        key(&mut app, KeyCode::Esc);

        let ahead = app.grants.get_mut(&GrantId(4)).unwrap();
        ahead.granted_at = t0() + Duration::minutes(134);
        ahead.expires_at = t0() + Duration::minutes(194);
        app.update(Action::Tick, t0());
        let pane = snap("scheduled_grant", w, h, &app);
        assert!(pane.contains("starts in"), "{pane}");

        let staged = "stage 1/2 (lead) done by bob; stage 2/2 (security): 0 of 2";
        app.requests.get_mut(&RequestId(1)).unwrap().stages = Some(staged.into());
        key(&mut app, KeyCode::Char('2'));
        key(&mut app, KeyCode::Enter);
        let details = snap("staged_request_details", w, h, &app);
        assert!(details.replace(['\n', '│', ' '], "").contains("stage1/2(lead)donebybob"), "{details}");
    }
}
