//! The console without a terminal: every key's effect on the state, and what each pane draws
//! (snapshots of the buffer at 80x24 and at a large size, with a fixed clock so nothing moves).

use chrono::{DateTime, Duration, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::action::{Action, Effect, Submission};
use super::app::{App, Connection, Item, Mode, Pane, PromptKind};
use super::theme::Theme;
use super::ui;
use crate::model::wire::{ActionView, Actions, GrantView, NewRequest, Outcome, RequestView, RowAction, TaskView, WhoAmI};
use crate::model::{Approval, Change, Event, Grant, GrantId, GrantState, Request, RequestId, RequestState, TokenId};
use crate::policy::Policy;
use crate::rules;

/// The policy the daemon behind these tests holds: what each viewer may do with a row, and who
/// else approves, come from the daemon's own rules under it, as they do in the real console.
const POLICY: &str = r#"
[groups]
admins = ["root"]
approvers = ["alice", "bob", "pat"]
oncall = ["alice", "carol", "dave"]
auditors = ["erin"]
[roles]
admins = ["admins"]
auditors = ["auditors"]
[[tasks]]
name = "journal"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "4h"
[[tasks]]
name = "export"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
approvals = 2
max_duration = "4h"
[[tasks]]
name = "restart"
requesters = ["oncall"]
approval = "auto"
max_duration = "4h"
[[tasks]]
name = "glass"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "4h"
break_glass = true
"#;

fn policy() -> Policy {
    Policy::parse(POLICY, "console-tests.toml").unwrap()
}

/// `r` as the daemon shows it to `user` at t0: with the actions its rules allow them.
pub(super) fn seen_request(user: &str, r: Request) -> RequestView {
    rules::request_view(&rules::State::default(), &policy(), &user.into(), r, t0())
}

/// `g` as the daemon shows it to `user` at t0.
fn seen_grant(user: &str, g: Grant) -> GrantView {
    GrantView { actions: rules::grant_actions(&rules::State::default(), &policy(), &user.into(), &g, t0()), grant: g }
}

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

pub(super) fn task(name: &str, approval: &str, approvals: u32, may_request: bool, may_approve: bool) -> TaskView {
    TaskView {
        name: name.into(),
        description: format!("{name} things"),
        approval: approval.into(),
        requesters: vec!["oncall".into()],
        approvers: vec!["approvers".into()],
        approver_users: vec!["alice".into(), "bob".into()],
        approvals,
        max_duration_secs: 4 * 3600,
        default_duration_secs: 3600,
        require_reason: true,
        require_ticket: name == "journal",
        ticket_pattern: (name == "journal").then(|| "INC-[0-9]+".to_string()),
        reason_pattern: None,
        break_glass: name == "glass",
        approve_via: vec!["peer".into(), "token".into()],
        signed_approvals: false,
        extend: "never".into(),
        max_total_secs: 3600,
        windows: None,
        window_now: None,
        eligible_until: None,
        eligible_from: None,
        may_request,
        may_approve,
        approvers_for_you: Vec::new(),
        run: None,
    }
}

pub(super) fn request(id: u64, who: &str, task: &str, state: RequestState, reason: &str, age_min: i64) -> Request {
    Request {
        starts_at: None,
        extends: None,
        signed_approvals: false,
        id: RequestId(id),
        task: task.into(),
        requester: who.into(),
        state,
        duration_secs: 1800,
        reason: Some(reason.into()),
        ticket: (task == "journal").then(|| format!("INC-{id}")),
        created_at: t0() - Duration::minutes(age_min),
        pending_until: t0() - Duration::minutes(age_min) + Duration::hours(2),
        approvals_needed: if task == "export" { 2 } else { 1 },
        approvals: Vec::new(),
        break_glass: task == "glass",
        decided_at: None,
        decided_by: None,
        comment: None,
        grant: None,
        params: Default::default(),
    }
}

pub(super) fn grant(id: u64, who: &str, task: &str, left_min: i64, total_min: i64) -> Grant {
    Grant {
        extended_secs: 0,
        id: GrantId(id),
        request: RequestId(id),
        task: task.into(),
        holder: who.into(),
        state: GrantState::Active,
        granted_at: t0() + Duration::minutes(left_min - total_min),
        expires_at: t0() + Duration::minutes(left_min),
        approved_by: vec!["bob".into()],
        break_glass: task == "glass",
        review: None,
        ended: None,
    }
}

pub(super) fn event(seq: u64, actor: &str, change: Change) -> Event {
    Event {
        seq,
        at: t0() - Duration::minutes(60 - seq as i64),
        actor: actor.into(),
        auth: None,
        change,
        prev_hash: "p".into(),
        hash: format!("h{seq}"),
    }
}

/// alice approves journal and export; she asked for dns herself; carol and dave work on call.
pub(super) fn loaded(user: &str, roles: &[&str]) -> App {
    let mut app = App::new("/run/zsa/zsa.sock".into(), t0(), true, Vec::new());
    let mut requests = vec![
        request(1, "carol", "journal", RequestState::Pending, "journal rule for the legal hold", 12),
        request(2, "dave", "export", RequestState::Pending, "customer export", 5),
        request(3, "alice", "journal", RequestState::Pending, "my own change", 3),
        request(4, "alice", "restart", RequestState::Approved, "web-3 leaks", 30),
        request(5, "dave", "glass", RequestState::Approved, "db down", 20),
        request(6, "alice", "journal", RequestState::Denied, "too broad", 90),
    ];
    requests[1].approvals.push(Approval { by: "bob".into(), at: t0(), auth: None, comment: None, signed_with: None, stage: None });
    requests[3].grant = Some(GrantId(4));
    requests[4].grant = Some(GrantId(5));
    requests[5].decided_by = Some("bob".into());
    requests[5].comment = Some("narrow it down".into());
    requests[5].decided_at = Some(t0() - Duration::minutes(80));
    let grants = vec![grant(4, "alice", "restart", 8, 15), grant(5, "dave", "glass", 1, 30), grant(7, "carol", "journal", 45, 60)];
    let log = vec![
        event(1, "zsa:daemon", Change::PolicyLoaded { sha256: "ab".repeat(32), path: "/etc/zsa/policy.toml".into(), tasks: 4 }),
        event(
            2,
            "carol",
            Change::RequestCreated {
                starts_at: None,
                extends: None,
                signed_approvals: false,
                request: RequestId(1),
                task: "journal".into(),
                requester: "carol".into(),
                duration_secs: 1800,
                reason: Some("journal rule".into()),
                ticket: Some("INC-1".into()),
                approvals_needed: 1,
                pending_until: t0(),
                break_glass: false,
                params: Default::default(),
            },
        ),
        event(
            3,
            "bob",
            Change::RequestApproved {
                request: RequestId(2),
                task: "export".into(),
                requester: "dave".into(),
                comment: None,
                signature: None,
                stage: None,
            },
        ),
        event(4, "dave", Change::GrantRelinquished { grant: GrantId(9), task: "restart".into(), holder: "dave".into() }),
    ];
    let me = WhoAmI {
        user: user.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        groups: vec![],
        disabled: false,
        via: "token".into(),
        auth: None,
        tokens: vec![],
        now: t0(),
        policy_sha256: "ab".repeat(32),
    };
    let tasks = vec![
        task("journal", "manual", 1, true, true),
        task("export", "manual", 2, true, true),
        task("restart", "auto", 0, true, false),
        task("glass", "manual", 1, true, true),
    ];
    let policy = policy();
    let tasks = tasks
        .into_iter()
        .map(|t| TaskView { approvers_for_you: rules::approvers_for(&rules::State::default(), &policy, &policy.tasks[&t.name], user), ..t })
        .collect();
    let requests = requests.into_iter().map(|r| seen_request(user, r)).collect();
    let grants = grants.into_iter().map(|g| seen_grant(user, g)).collect();
    app.update(Action::StreamConnected, t0());
    app.update(Action::Loaded { me, tasks, requests, grants, older: None, log, notices: vec![] }, t0());
    app
}

pub(super) fn alice() -> App {
    loaded("alice", &["approver", "requester", "auditor"])
}

pub(super) fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    app.update(Action::Key(KeyEvent::new(code, KeyModifiers::NONE)), app.now)
}

pub(super) fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

pub(super) fn screen(app: &App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| ui::render(app, f, &Theme::new(true))).unwrap();
    let buf = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let mut x = 0;
        while x < w {
            // A wide character (CJK, emoji) covers the next cell too, as on a terminal.
            let symbol = buf[(x, y)].symbol();
            out.push_str(symbol);
            x += unicode_width::UnicodeWidthStr::width(symbol).max(1) as u16;
        }
        out.push('\n');
    }
    out
}

#[test]
fn it_opens_where_the_work_is_and_loads_on_connect() {
    let mut app = App::new("s".into(), t0(), true, vec![]);
    assert_eq!(app.update(Action::StreamConnected, t0()), vec![Effect::LoadAll], "the stream is followed first, then everything loads");
    let app = alice();
    assert_eq!(app.panes, vec![Pane::Requester, Pane::Approver, Pane::Auditor]);
    assert_eq!(app.pane, Pane::Approver);
    let erin = loaded("erin", &["auditor"]);
    assert_eq!((erin.panes.clone(), erin.pane), (vec![Pane::Auditor], Pane::Auditor));
}

#[test]
fn the_queue_is_oldest_first_and_its_badge_leaves_out_my_own_requests() {
    let app = alice();
    let queue: Vec<Item> = app.sections[1][0].items.clone();
    // R3 is alice's own: nobody approves their own, so it is no work of hers (nor counted as such).
    assert_eq!(queue, vec![Item::Request(RequestId(1)), Item::Request(RequestId(2))]);
    assert!(screen(&app, 80, 24).lines().nth(1).unwrap().contains(" 2 Approver (2) "), "{}", screen(&app, 80, 24));
    assert_eq!(app.sections[1][1].items, vec![Item::Grant(GrantId(5))], "break-glass waiting for review");
    assert!(app.sections[1][1].urgent);
    // For bob it is work like any other.
    let bob = loaded("bob", &["approver"]);
    assert_eq!(bob.sections[1][0].items, vec![Item::Request(RequestId(1)), Item::Request(RequestId(2)), Item::Request(RequestId(3))]);
    assert!(screen(&bob, 80, 24).lines().nth(1).unwrap().contains(" 2 Approver (3) "));
    // dave's own break-glass grant waits for someone else's review, not his.
    let mut dave = loaded("dave", &["approver", "requester"]);
    dave.tasks.iter_mut().for_each(|t| t.may_approve = true);
    dave.rebuild();
    assert!(dave.sections[1][1].items.is_empty(), "{:?}", dave.sections[1][1].items);
}

#[test]
fn moving_walks_through_sections_and_panes_switch() {
    let mut app = alice();
    assert_eq!(app.selected(), Some(Item::Request(RequestId(1))));
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))));
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some(Item::Grant(GrantId(5))), "down flows into the next section");
    key(&mut app, KeyCode::Down);
    assert_eq!((app.selected(), app.cursor().section), (Some(Item::Grant(GrantId(5))), 2), "and on to the next");
    key(&mut app, KeyCode::Char('k'));
    key(&mut app, KeyCode::Char('k'));
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))));
    key(&mut app, KeyCode::PageDown);
    assert_eq!(app.selected(), Some(Item::Grant(GrantId(7))), "a page down reaches the last row");
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.selected(), Some(Item::Request(RequestId(1))), "a page up the first");
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.cursor().section, 2);
    key(&mut app, KeyCode::Char('g'));
    assert_eq!(app.selected(), Some(Item::Request(RequestId(1))));
    key(&mut app, KeyCode::Char('l'));
    assert_eq!(app.cursor().section, 1);
    key(&mut app, KeyCode::Char('h'));
    assert_eq!(app.cursor().section, 0);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.pane, Pane::Auditor);
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(app.pane, Pane::Requester);
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(app.pane, Pane::Auditor);
    let mut dave = loaded("dave", &["requester"]);
    key(&mut dave, KeyCode::Char('3'));
    assert_eq!(dave.pane, Pane::Requester);
    assert!(dave.toast.as_ref().unwrap().text.contains("not for you"));
}

#[test]
fn approve_is_confirmed_in_one_keystroke() {
    let mut app = alice();
    assert!(key(&mut app, KeyCode::Char('a')).is_empty());
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Approve(RequestId(1))));
    typed(&mut app, "ok by me");
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Submit(Submission::Approve(RequestId(1), Some("ok by me".into())))]);
    assert_eq!(app.mode, Mode::Normal);
    // And it is reflected at once when the daemon answers.
    let mut r = app.requests[&RequestId(1)].request.clone();
    r.state = RequestState::Approved;
    r.grant = Some(GrantId(1));
    let g = Grant { id: GrantId(1), holder: "carol".into(), ..app.grants[&GrantId(7)].grant.clone() };
    let outcome = Outcome { request: seen_request("alice", r), grant: Some(seen_grant("alice", g)) };
    app.update(Action::RequestLoaded(Box::new(outcome)), t0());
    assert!(!app.sections[1][0].items.contains(&Item::Request(RequestId(1))));
}

#[test]
fn deny_needs_a_comment_and_escape_cancels() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('d'));
    assert!(key(&mut app, KeyCode::Enter).is_empty(), "no comment, no denial");
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.error.as_deref() == Some("a comment is needed")));
    typed(&mut app, "no ticket");
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Submit(Submission::Deny(RequestId(1), "no ticket".into()))]);
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn my_own_request_is_mine_to_cancel_not_to_decide() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some(Item::Request(RequestId(3))));
    let actions = &app.requests[&RequestId(3)].actions;
    assert!(actions.check(RowAction::Approve).unwrap_err().contains("R3 is your own request"), "{actions:?}");
    assert!(actions.allows(RowAction::Cancel));
    key(&mut app, KeyCode::Char('c'));
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Cancel(RequestId(3))));
}

#[test]
fn already_approved_by_me_is_refused_before_asking() {
    let mut bob = loaded("bob", &["approver"]);
    key(&mut bob, KeyCode::Down);
    assert_eq!(bob.selected(), Some(Item::Request(RequestId(2))));
    key(&mut bob, KeyCode::Char('a'));
    let why = bob.requests[&RequestId(2)].actions.check(RowAction::Approve).unwrap_err();
    assert_eq!(bob.toast.as_ref().unwrap().text, why, "the daemon's own words");
    assert!(why.contains("each approver counts once"), "{why}");
    assert_eq!(bob.mode, Mode::Normal);
}

/// The console asks the row, not rules of its own: what the daemon allows opens a prompt, and
/// what it refuses shows the daemon's reason, whatever the row looks like to the console.
#[test]
fn prompts_open_only_where_the_daemon_allows_and_say_its_reason_otherwise() {
    let mut app = alice();
    assert_eq!(app.selected(), Some(Item::Request(RequestId(1))));
    let refused = ActionView {
        action: RowAction::Deny,
        allowed: false,
        code: Some("test".into()),
        why: Some("the daemon says no".into()),
        sign_with: None,
    };
    app.requests.get_mut(&RequestId(1)).unwrap().actions = Actions(vec![refused]);
    key(&mut app, KeyCode::Char('d'));
    assert_eq!((app.mode.clone(), app.toast.as_ref().unwrap().text.as_str()), (Mode::Normal, "the daemon says no"));
    key(&mut app, KeyCode::Char('a'));
    assert!(app.toast.as_ref().unwrap().text.contains("did not say you may approve"), "{:?}", app.toast);
    // Her own active grant, which the daemon (say, in a policy of the future) will not let go.
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(app.selected(), Some(Item::Grant(GrantId(4))));
    let refused = ActionView {
        action: RowAction::Relinquish,
        allowed: false,
        code: Some("test".into()),
        why: Some("held for an audit".into()),
        sign_with: None,
    };
    app.grants.get_mut(&GrantId(4)).unwrap().actions = Actions(vec![refused.clone()]);
    key(&mut app, KeyCode::Char('x'));
    assert_eq!((app.mode.clone(), app.toast.as_ref().unwrap().text.as_str()), (Mode::Normal, "held for an audit"));
    app.grants.get_mut(&GrantId(4)).unwrap().actions = Actions(vec![ActionView { allowed: true, code: None, why: None, ..refused }]);
    key(&mut app, KeyCode::Char('x'));
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Relinquish(GrantId(4))), "{:?}", app.mode);
}

/// Actions are as of when the daemon answered; what changes them makes the console ask again:
/// a request's deadline passing (the daemon's expiry event) and a policy reload.
#[test]
fn a_deadline_or_a_reload_brings_fresh_actions() {
    let mut app = alice();
    let r1 = app.requests[&RequestId(1)].clone();
    let deadline = r1.pending_until;
    let expired = Change::RequestExpired { request: r1.id, task: r1.task.clone(), requester: r1.requester.clone(), deadline };
    let effects = app.update(Action::EventReceived(event(60, "zsa:daemon", expired)), deadline);
    assert_eq!(effects, vec![Effect::FetchRequest(RequestId(1))]);
    assert!(!app.sections[1][0].items.contains(&Item::Request(RequestId(1))), "out of the queue before the answer comes");
    let reloaded = Change::PolicyLoaded { sha256: "cd".repeat(32), path: "/etc/zsa/policy.toml".into(), tasks: 4 };
    assert_eq!(app.update(Action::EventReceived(event(61, "root", reloaded)), deadline), vec![Effect::LoadAll]);
}

#[test]
fn revoke_needs_a_reason_and_review_targets_break_glass() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('l')); // break-glass section
    key(&mut app, KeyCode::Char('v'));
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Review(GrantId(5))));
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Submit(Submission::Review(GrantId(5), None))]);
    key(&mut app, KeyCode::Char('r'));
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    typed(&mut app, "incident over");
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Submit(Submission::Revoke(GrantId(5), "incident over".into()))]);
}

#[test]
fn requesters_cancel_and_relinquish_with_a_yes() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(app.selected(), Some(Item::Grant(GrantId(4))));
    key(&mut app, KeyCode::Char('x'));
    assert_eq!(key(&mut app, KeyCode::Char('y')), vec![Effect::Submit(Submission::Relinquish(GrantId(4)))]);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some(Item::Request(RequestId(3))));
    key(&mut app, KeyCode::Char('c'));
    assert!(key(&mut app, KeyCode::Char('n')).is_empty());
    assert_eq!(app.mode, Mode::Normal);
    key(&mut app, KeyCode::Char('c'));
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Submit(Submission::Cancel(RequestId(3)))]);
    key(&mut app, KeyCode::Char('x'));
    assert!(app.toast.as_ref().unwrap().text.contains("select a grant"), "a pending request has no grant to give up");
}

#[test]
fn the_request_form_is_checked_against_the_policy_as_you_type() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('n'));
    let Mode::Form(form) = &app.mode else { panic!("the form opens") };
    assert_eq!(form.task(&app.tasks).unwrap().name, "journal");
    assert_eq!(form.duration, "1h", "the task's default");
    let problems = form.problems(&app.tasks, app.now);
    assert!(problems.iter().any(|(_, p)| p == "this task needs a reason"), "{problems:?}");
    assert!(problems.iter().any(|(_, p)| p == "this task needs a ticket"));
    assert!(key(&mut app, KeyCode::Enter).is_empty(), "nothing is sent while a field is wrong");

    key(&mut app, KeyCode::Tab);
    for _ in 0..2 {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, "5h");
    let Mode::Form(form) = &app.mode else { panic!() };
    assert!(form.problems(&app.tasks, app.now).iter().any(|(_, p)| p == "at most 4h for this task"));
    key(&mut app, KeyCode::Backspace);
    key(&mut app, KeyCode::Backspace);
    typed(&mut app, "30m");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "legal hold");
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "JIRA-1");
    let Mode::Form(form) = &app.mode else { panic!() };
    assert!(form.problems(&app.tasks, app.now).iter().any(|(_, p)| p == "must match INC-[0-9]+"));
    for _ in 0.."JIRA-1".len() {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, "INC-7");
    let sent = key(&mut app, KeyCode::Enter);
    let expected = NewRequest {
        starts_at: None,
        task: "journal".into(),
        duration_secs: Some(1800),
        reason: Some("legal hold".into()),
        ticket: Some("INC-7".into()),
        params: Default::default(),
    };
    assert_eq!(sent, vec![Effect::Submit(Submission::Request(expected))]);

    key(&mut app, KeyCode::Char('n'));
    key(&mut app, KeyCode::Right);
    let Mode::Form(form) = &app.mode else { panic!() };
    assert_eq!(form.task(&app.tasks).unwrap().name, "export", "left and right pick the task");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Normal);
}

/// Nobody approves their own request, so the form never offers the requester as an approver:
/// it names whom the daemon says could approve (every approver but you, and none disabled).
#[test]
fn the_form_names_only_the_others_who_could_approve_my_request() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('n'));
    let s = screen(&app, 100, 30);
    assert!(s.contains("1 approval(s) from bob, pat;") && !s.contains("alice,"), "{s}");
    let mut bob = loaded("bob", &["approver", "requester"]);
    key(&mut bob, KeyCode::Char('1'));
    key(&mut bob, KeyCode::Char('n'));
    assert!(screen(&bob, 100, 30).contains("1 approval(s) from alice, pat;"));
    bob.tasks.iter_mut().for_each(|t| t.approvers_for_you.clear());
    assert!(screen(&bob, 100, 30).contains("nobody but you approves it now"), "{}", screen(&bob, 100, 30));
}

#[test]
fn the_auditor_filters_follows_exports_and_verifies() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(app.sections[2][0].items.len(), 4);
    assert_eq!(app.selected(), Some(Item::Event(3)), "newest first");
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "carol");
    assert_eq!(app.sections[2][0].items, vec![Item::Event(1)], "by user");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.filter(Pane::Auditor), "carol");
    let effects = {
        key(&mut app, KeyCode::Char('e'));
        let Mode::Export(path) = &app.mode else { panic!("asks where to export") };
        assert!(path.value().starts_with("zsa-audit-20261123-") && path.value().ends_with(".jsonl"));
        key(&mut app, KeyCode::Enter)
    };
    let [Effect::Export { events, .. }] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2], "what the filter shows");
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Esc);
    assert!(app.filter(Pane::Auditor).is_empty() && app.sections[2][0].items.len() == 4, "Esc clears the filter");
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "grant_relinquished");
    assert_eq!(app.sections[2][0].items, vec![Item::Event(3)], "by kind");
    key(&mut app, KeyCode::Esc);

    assert!(app.follow);
    key(&mut app, KeyCode::Char('j'));
    assert!(!app.follow, "moving down the log stops following");
    key(&mut app, KeyCode::Char('f'));
    assert!(app.follow);
    assert_eq!(key(&mut app, KeyCode::Char('V')), vec![Effect::Verify]);
}

#[test]
fn help_bell_quit_and_demo_switching() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Help);
    key(&mut app, KeyCode::Char('x'));
    assert_eq!(app.mode, Mode::Normal, "any key closes the help");
    key(&mut app, KeyCode::Char('b'));
    assert!(!app.bell);
    key(&mut app, KeyCode::F(2));
    assert!(app.toast.as_ref().unwrap().text.contains("for the demo"));
    let mut demo = App::new("s".into(), t0(), true, vec!["alice".into(), "carol".into()]);
    assert_eq!(demo.update(Action::SwitchUser, t0()), vec![Effect::SwitchUser(1)]);
    assert_eq!(demo.connection, Connection::Connecting);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.mode, Mode::Detail);
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
    let mut other = alice();
    other.update(Action::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), t0());
    assert!(other.quit, "Ctrl-C quits too");
}

#[test]
fn new_requests_for_me_announce_themselves() {
    let mut app = alice();
    let created = event(
        5,
        "dave",
        Change::RequestCreated {
            starts_at: None,
            extends: None,
            signed_approvals: false,
            request: RequestId(8),
            task: "export".into(),
            requester: "dave".into(),
            duration_secs: 60,
            reason: None,
            ticket: None,
            approvals_needed: 2,
            pending_until: t0() + Duration::hours(1),
            break_glass: false,
            params: Default::default(),
        },
    );
    let fetched = || {
        Action::RequestLoaded(Box::new(Outcome {
            request: seen_request("alice", request(8, "dave", "export", RequestState::Pending, "", 0)),
            grant: None,
        }))
    };
    let effects = app.update(Action::EventReceived(created.clone()), t0());
    assert_eq!(effects, vec![Effect::FetchRequest(RequestId(8))], "the fetched row says whether it is mine to decide");
    assert_eq!(app.update(fetched(), t0()), vec![Effect::Bell]);
    assert!(app.fresh.contains(&RequestId(8)));
    app.bell = false;
    let effects = app.update(Action::EventReceived(Event { seq: 6, ..created }), t0());
    assert_eq!(effects, vec![Effect::FetchRequest(RequestId(8))]);
    assert_eq!(app.update(fetched(), t0()), vec![], "the bell can be turned off");
}

#[test]
fn a_run_event_shows_its_transcript_checked_against_the_log() {
    let mut app = loaded("erin", &["auditor"]);
    let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03".to_string(); // "hello\n"
    let ended = Change::RunEnded {
        run: crate::model::RunId(1),
        grant: GrantId(4),
        task: "restart".into(),
        holder: "alice".into(),
        outcome: crate::model::RunOutcome::Exited,
        exit_code: Some(0),
        transcript_bytes: 6,
        transcript_sha256: sha.clone(),
        transcript_cap: 1 << 20,
        truncated: false,
    };
    app.update(Action::EventReceived(event(5, "zsa:daemon", ended)), t0());
    assert_eq!(app.selected(), Some(Item::Event(4)));
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::FetchTranscript(crate::model::RunId(1))]);
    assert!(screen(&app, 100, 40).contains("loading the transcript of X1"));
    app.update(Action::TranscriptLoaded { run: crate::model::RunId(1), text: "hello\n\u{1b}[2J".into(), sha256: sha }, t0());
    let s = screen(&app, 100, 40);
    assert!(s.contains("matches the digest in the log") && s.contains("hello") && s.contains("\\u{1b}[2J"), "{s}");
    app.update(Action::TranscriptLoaded { run: crate::model::RunId(1), text: "forged".into(), sha256: "00".into() }, t0());
    assert!(screen(&app, 100, 40).contains("DOES NOT MATCH"));
}

#[test]
fn losing_the_daemon_says_so_and_reconnecting_reloads() {
    let mut app = alice();
    app.update(Action::StreamLost("the daemon is not answering".into()), t0());
    assert!(matches!(app.connection, Connection::Lost(_)));
    assert!(screen(&app, 80, 24).contains("reconnecting"));
    assert_eq!(app.update(Action::StreamConnected, t0()), vec![Effect::LoadAll]);
    assert!(app.toast.as_ref().unwrap().text.contains("reconnected"));
}

#[test]
fn an_idle_console_needs_no_ticks() {
    let mut app = loaded("erin", &["auditor"]);
    assert!(app.needs_ticks(), "active grants count down");
    app.grants.values_mut().for_each(|g| g.grant.state = GrantState::Expired);
    app.toast = None;
    assert!(!app.needs_ticks(), "nothing counts down: no ticks, no redraws");
    app.dirty = false;
    app.update(Action::Tick, t0());
    assert!(app.dirty, "a tick that arrives anyway redraws once");
}

#[test]
fn typed_escape_sequences_are_drawn_inert() {
    let mut app = alice();
    let hostile = "fix\u{1b}[2J\u{1b}]0;owned\u{7} now\u{9b}1m\u{202e}";
    app.requests.get_mut(&RequestId(1)).unwrap().request.reason = Some(hostile.into());
    app.requests.get_mut(&RequestId(1)).unwrap().request.requester = "car\u{1b}[31mol".into();
    app.rebuild();
    for (w, h) in [(80, 24), (200, 50)] {
        let s = screen(&app, w, h);
        assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "no control character reaches the screen");
        assert!(!s.contains('\u{202e}'));
        assert!(s.contains("\\u{1b}"), "{s}");
    }
    key(&mut app, KeyCode::Enter);
    let s = screen(&app, 100, 40);
    assert!(s.contains("fix\\u{1b}[2J\\u{1b}]0;owned\\u{7} now"), "{s}");
}

/// Ends a request the way the daemon tells the console: the event, then the request as it now is.
fn ended(app: &mut App, id: u64, state: RequestState) {
    let mut r = app.requests[&RequestId(id)].request.clone();
    r.state = state;
    let change = Change::RequestCancelled { request: r.id, task: r.task.clone(), requester: r.requester.clone(), reason: None };
    let effects = app.update(Action::EventReceived(event(50 + id, &r.requester, change)), t0());
    assert_eq!(effects, vec![Effect::FetchRequest(RequestId(id))]);
    let viewer = app.user().to_string();
    app.update(Action::RequestLoaded(Box::new(Outcome { request: seen_request(&viewer, r), grant: None })), t0());
}

#[test]
fn the_selection_stays_on_its_request_when_a_row_above_ends() {
    let mut app = alice();
    let newest = request(9, "dave", "journal", RequestState::Pending, "rotate keys", 1);
    app.requests.insert(RequestId(9), seen_request("alice", newest));
    app.rebuild();
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))));
    // R1, the row above, is cancelled: R2 moves up a row and the cursor moves with it.
    ended(&mut app, 1, RequestState::Cancelled);
    assert_eq!(app.sections[1][0].items, vec![Item::Request(RequestId(2)), Item::Request(RequestId(9))]);
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))));
    key(&mut app, KeyCode::Char('a'));
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Approve(RequestId(2))), "{:?}", app.mode);
    assert_eq!(ui_prompt_title(&app), "Approve R2");
    key(&mut app, KeyCode::Esc);
    // A full reload (after a reconnect) keeps it too.
    app.update(Action::StreamLost("gone".into()), t0());
    app.update(Action::StreamConnected, t0());
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))));
    // When the selected request itself ends, the cursor stays where it was: on the row now there.
    ended(&mut app, 2, RequestState::Cancelled);
    assert_eq!(app.selected(), Some(Item::Request(RequestId(9))));
    // The requester's pane follows its grants the same way.
    key(&mut app, KeyCode::Char('1'));
    let mut two = loaded("carol", &["requester"]);
    key(&mut two, KeyCode::Char('1'));
    assert_eq!(two.selected(), Some(Item::Grant(GrantId(7))));
    two.grants.insert(GrantId(3), seen_grant("carol", grant(3, "carol", "restart", 2, 15)));
    two.rebuild();
    assert_eq!(two.cursor().row, 1, "a grant expiring sooner is listed first");
    assert_eq!(two.selected(), Some(Item::Grant(GrantId(7))));
}

fn ui_prompt_title(app: &App) -> String {
    match &app.mode {
        Mode::Prompt(p) => p.kind.title(),
        other => format!("{other:?}"),
    }
}

/// U+3164 (a Hangul filler) looks like nothing and is drawn at a width terminals disagree on, so
/// a row holding it no longer lines up with its table. Nothing of the kind reaches the screen.
#[test]
fn invisible_and_width_changing_characters_are_drawn_as_escapes() {
    let mut app = alice();
    let r = &mut app.requests.get_mut(&RequestId(1)).unwrap().request;
    r.requester = "car\u{3164}\u{3164}\u{3164}ol".into();
    r.reason = Some("legal\u{FE0F} hold\u{200B}\u{2028}now\u{061C}".into());
    app.grants.get_mut(&GrantId(7)).unwrap().grant.holder = "\u{115F}\u{FFA0}carol".into();
    app.rebuild();
    for (w, h) in [(80, 24), (160, 48)] {
        let s = screen(&app, w, h);
        let bad: Vec<String> =
            s.chars().filter(|c| *c != '\n' && crate::model::text::hidden(*c).is_some()).map(|c| format!("U+{:04X}", c as u32)).collect();
        assert!(bad.is_empty(), "{bad:?} reached the screen:\n{s}");
        assert!(s.contains("car\\u{31"), "drawn as an escape, cut to its column like any text: {s}");
        // The row keeps its columns: the task column starts where it does on the other rows.
        let rows: Vec<&str> = s.lines().filter(|l| l.contains("R1 ") || l.contains("R2 ")).collect();
        let col =
            |row: &str, word: &str| row.chars().collect::<Vec<_>>().windows(word.len()).position(|w| w.iter().collect::<String>() == word);
        assert_eq!(rows.len(), 2, "{s}");
        assert_eq!(col(rows[0], "journal"), col(rows[1], "export"), "{}\n{}", rows[0], rows[1]);
    }
}

#[test]
fn countdowns_change_colour_and_say_when_they_end() {
    let app = loaded("erin", &["auditor"]);
    let s = screen(&app, 80, 24);
    let left = |grant: &str| s.lines().find(|l| l.contains(grant)).map(|l| l.split_whitespace().nth(3).unwrap_or("").to_string());
    assert_eq!([left("│G5 "), left("│G4 "), left("│G7 ")], [Some("1m".into()), Some("8m".into()), Some("45m".into())], "{s}");
    let theme = Theme::new(true);
    let g = &app.grants[&GrantId(5)];
    let cell_style = |now: DateTime<Utc>| super::widgets::countdown_style(&theme, (g.expires_at - now).num_seconds());
    assert_eq!(cell_style(t0()), theme.danger(), "under two minutes: red");
    assert_eq!(cell_style(t0() - Duration::minutes(5)), theme.warn(), "under ten: yellow");
    assert_eq!(cell_style(t0() - Duration::minutes(30)), theme.ok());
    let mut later = loaded("erin", &["auditor"]);
    later.update(Action::Tick, t0() + Duration::minutes(2));
    assert!(screen(&later, 80, 24).contains("ENDED"), "a clear moment when it ends");
}

#[test]
fn renders_the_same_work_with_ten_or_a_hundred_thousand_items() {
    let mut app = loaded("erin", &["auditor"]);
    let template = app.log[3].clone();
    app.log = (1..=100_000).map(|seq| Event { seq, ..template.clone() }).collect();
    app.rebuild();
    let s = screen(&app, 80, 24);
    assert!(s.contains("100000") && s.contains("Event log (newest first) (100000)"), "{s}");
}

macro_rules! snapshot {
    ($name:ident, $user:expr, $roles:expr, $setup:expr) => {
        #[test]
        fn $name() {
            let mut app = loaded($user, $roles);
            #[allow(clippy::redundant_closure_call)]
            ($setup)(&mut app);
            insta::assert_snapshot!(concat!(stringify!($name), "_80x24"), screen(&app, 80, 24));
            insta::assert_snapshot!(concat!(stringify!($name), "_160x48"), screen(&app, 160, 48));
        }
    };
}

snapshot!(requester_pane, "alice", &["approver", "requester", "auditor"], |app: &mut App| {
    key(app, KeyCode::Char('1'));
});
snapshot!(approver_pane, "alice", &["approver", "requester", "auditor"], |_: &mut App| {});
snapshot!(auditor_pane, "alice", &["approver", "requester", "auditor"], |app: &mut App| {
    key(app, KeyCode::Char('3'));
});
snapshot!(help_overlay, "alice", &["approver", "requester", "auditor"], |app: &mut App| {
    key(app, KeyCode::Char('?'));
});
snapshot!(request_form, "alice", &["approver", "requester", "auditor"], |app: &mut App| {
    key(app, KeyCode::Char('1'));
    key(app, KeyCode::Char('n'));
});
snapshot!(approve_prompt, "alice", &["approver", "requester", "auditor"], |app: &mut App| {
    key(app, KeyCode::Char('a'));
});
snapshot!(request_detail, "alice", &["approver", "requester", "auditor"], |app: &mut App| {
    key(app, KeyCode::Enter);
});

#[test]
fn a_burst_of_events_is_absorbed_then_rebuilt_once_before_a_key_acts() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('3'));
    let before = app.sections[2][0].items.len();
    for seq in 0..50 {
        let effects = app.absorb(Action::EventReceived(event(100 + seq, "root", Change::UserEnabled { user: "zed".into() })), t0());
        assert!(effects.is_empty());
    }
    assert_eq!(app.sections[2][0].items.len(), before, "events are absorbed without rebuilding the sections each time");
    // A key acts on what is on screen after the burst: the sections are rebuilt first.
    key(&mut app, KeyCode::Down);
    assert_eq!(app.sections[2][0].items.len(), before + 50);
    assert_eq!(app.cursor().row, 1);
    // And the runtime's refresh before a frame does the same.
    app.absorb(Action::EventReceived(event(200, "root", Change::UserEnabled { user: "zed".into() })), t0());
    app.refresh();
    assert_eq!(app.sections[2][0].items.len(), before + 51);
}

#[test]
fn a_token_someone_else_issues_in_my_name_is_announced_at_once() {
    let mut app = alice();
    let issued = |seq, actor: &str| {
        event(
            seq,
            actor,
            Change::TokenIssued {
                token: TokenId(4),
                user: "alice".into(),
                sha256: "x".into(),
                expires_at: None,
                scope: Default::default(),
            },
        )
    };
    app.update(Action::EventReceived(issued(5, "dave")), t0());
    let toast = app.toast.clone().expect("alice hears of the token dave made in her name");
    assert!(toast.text.contains("dave issued token T4 in your name") && toast.error, "{toast:?}");
    app.toast = None;
    app.update(Action::EventReceived(issued(6, "alice")), t0());
    assert!(app.toast.is_none(), "her own token is no news: {:?}", app.toast);
}

fn failed_notice(id: u64, recipient: &str, error: &str) -> crate::model::wire::NoticeView {
    crate::model::wire::NoticeView {
        id,
        key: format!("{id}:request_created:hook:{recipient}"),
        trigger: crate::notify::Trigger::RequestCreated,
        channel: "hook".into(),
        recipient: recipient.into(),
        state: crate::notify::outbox::DeliveryState::Failed,
        attempts: 7,
        next_at: t0(),
        last_error: Some(error.into()),
        created_at: t0() - Duration::minutes(30),
        done_at: Some(t0()),
    }
}

#[test]
fn the_auditor_sees_failed_notices_as_an_alarm_and_hears_of_new_ones() {
    let mut erin = loaded("erin", &["auditor"]);
    assert_eq!(erin.sections[2].len(), 2, "no failed notices, no section");
    // A notice fails: a toast says so, and the list is fetched again (not guessed from the event).
    let failed = Change::NoticeFailed {
        notice: "2:request_created:hook:bob".into(),
        about: 2,
        trigger: crate::notify::Trigger::RequestCreated,
        channel: "hook".into(),
        recipient: "bob\u{1b}[31m".into(),
        task: Some("journal".into()),
        person: Some("carol".into()),
        error: "410 Gone".into(),
    };
    let effects = erin.update(Action::EventReceived(event(5, "zsa:daemon", failed.clone())), t0());
    assert_eq!(effects, vec![Effect::FetchFailedNotices]);
    let toast = &erin.toast.as_ref().expect("a toast").text;
    assert!(toast.contains("request_created notice to bob") && toast.contains("via hook failed") && !toast.contains('\u{1b}'), "{toast}");
    erin.update(Action::FailedNoticesLoaded(vec![failed_notice(3, "bob", "410 Gone"), failed_notice(4, "pat", "<b>no</b>")]), t0());
    let section = &erin.sections[2][2];
    assert_eq!((section.title, section.urgent), ("Failed notices", true));
    assert_eq!(section.items, vec![Item::Notice(1), Item::Notice(0)], "newest first");
    let s = screen(&erin, 120, 30);
    assert!(s.contains("Failed notices (2)") && s.contains("410 Gone") && s.contains("<b>no</b>"), "{s}");
    // Enter: the whole story, and how an admin sends it again.
    key(&mut erin, KeyCode::Right);
    key(&mut erin, KeyCode::Right);
    assert_eq!(erin.selected(), Some(Item::Notice(1)));
    key(&mut erin, KeyCode::Enter);
    let s = screen(&erin, 120, 30);
    assert!(s.contains("Notice 4") && s.contains("after 7 attempt(s)") && s.contains("zsa admin notices retry 4"), "{s}");
    key(&mut erin, KeyCode::Esc);
    // The filter finds them by recipient, like every row.
    key(&mut erin, KeyCode::Char('/'));
    typed(&mut erin, "pat");
    assert_eq!(erin.sections[2][2].items, vec![Item::Notice(1)]);
    key(&mut erin, KeyCode::Esc);
    // A retry (or a failure) seen during a reload is fetched again after it lands.
    erin.update(Action::StreamLost("gone".into()), t0());
    let effects = erin.update(Action::StreamConnected, t0());
    assert_eq!(effects, vec![Effect::LoadAll]);
    let retried = Change::NoticeRetried {
        id: 3,
        notice: "2:request_created:hook:bob".into(),
        trigger: crate::notify::Trigger::RequestCreated,
        channel: "hook".into(),
        recipient: "bob".into(),
        task: None,
        error: None,
    };
    assert_eq!(erin.update(Action::EventReceived(event(6, "root", retried)), t0()), vec![Effect::FetchFailedNotices]);
    let me = erin.me.clone().unwrap();
    let reload =
        Action::Loaded { me, tasks: vec![], requests: vec![], grants: vec![], older: None, log: erin.log.clone(), notices: vec![] };
    assert!(erin.update(reload, t0()).contains(&Effect::FetchFailedNotices));
    assert_eq!(erin.sections[2].len(), 2, "none failed now: the alarm is gone");
    // Someone who does not see the outbox does not ask for it.
    let mut dave = loaded("dave", &["requester"]);
    assert!(dave.update(Action::EventReceived(event(5, "zsa:daemon", failed)), t0()).is_empty());
}

#[test]
fn the_demo_notices_for_the_viewer_show_as_a_toast() {
    let notice = |to: &str, subject: &str| {
        let mut n = crate::notify::fixtures::delivery("k", t0()).notice;
        n.to = crate::notify::Recipient { name: Some(to.into()), address: String::new() };
        n.subject = subject.into();
        Box::new(n)
    };
    // Before the console knows who it is, notices wait; then the viewer's are shown, newest last.
    let me = alice().me.unwrap();
    let mut alice = App::new("s".into(), t0(), true, vec![]);
    alice.update(Action::StreamConnected, t0());
    alice.update(Action::NoticeWritten(notice("alice", "R1: carol asks")), t0());
    alice.update(Action::NoticeWritten(notice("bob", "R1: for bob")), t0());
    alice.update(Action::NoticeWritten(notice("alice", "R2: dave asks\u{1b}[2J")), t0());
    assert!(alice.toast.is_none());
    alice.update(Action::Loaded { me, tasks: vec![], requests: vec![], grants: vec![], older: None, log: vec![], notices: vec![] }, t0());
    let toast = &alice.toast.as_ref().expect("a toast").text;
    assert!(toast.starts_with("2 notices for you; the newest: R2: dave asks") && !toast.contains('\u{1b}'), "{toast}");
    alice.update(Action::NoticeWritten(notice("bob", "R3: for bob")), t0());
    assert!(alice.toast.as_ref().unwrap().text.contains("R2"), "bob's notice is not alice's");
    alice.update(Action::NoticeWritten(notice("alice", "R3: erin asks")), t0());
    assert_eq!(alice.toast.as_ref().unwrap().text, "notice for you: R3: erin asks");
}

#[test]
fn plus_asks_for_more_time_on_ones_own_grant_how_long_then_why() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(app.selected(), Some(Item::Grant(GrantId(4))));
    // The daemon says whether the viewer may extend it; here it says no, and why.
    key(&mut app, KeyCode::Char('+'));
    assert!(app.toast.as_ref().is_some_and(|t| t.text.contains("extend")), "{:?}", app.toast);
    let allowed = ActionView { action: RowAction::Extend, allowed: true, code: None, why: None, sign_with: None };
    app.grants.get_mut(&GrantId(4)).unwrap().actions = Actions(vec![allowed]);
    key(&mut app, KeyCode::Char('+'));
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Extend(GrantId(4))));
    assert!(key(&mut app, KeyCode::Enter).is_empty(), "how long is needed");
    typed(&mut app, "soon please");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.error.as_deref().is_some_and(|e| e.contains("start with how much longer"))));
    for _ in 0.."soon please".len() {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, "30m still migrating");
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Submit(Submission::Extend(GrantId(4), 1800, Some("still migrating".into())))]);
}

#[test]
fn a_grant_approved_ahead_counts_down_to_its_start_and_staged_requests_show_their_progress() {
    // Starts in 2h14m, runs 1h: the countdown says when it starts, not how long it has left.
    let mut ahead = grant(7, "alice", "journal", 194, 60);
    ahead.granted_at = t0() + Duration::minutes(134);
    let line = crate::tui::widgets::countdown(&Theme::new(false), &ahead, t0());
    assert_eq!(line.to_string(), "starts in 2:14:00");
    let started = grant(8, "alice", "journal", 30, 60);
    assert_eq!(crate::tui::widgets::countdown(&Theme::new(false), &started, t0()).to_string(), "30m");
    // A request's details carry the daemon's account of its stages.
    let mut app = alice();
    app.requests.get_mut(&RequestId(1)).unwrap().stages = Some("stage 1/2 (lead) done by bob; stage 2/2 (security): 0 of 2".into());
    app.update(Action::Key(crossterm::event::KeyEvent::from(KeyCode::Enter)), t0());
    let shown = screen(&app, 160, 40);
    assert!(shown.contains("stage 1/2 (lead) done by bob; stage 2/2 (security): 0 of 2"), "{shown}");
}

/// History arrives a page at a time: the next, older page is asked for only when the cursor
/// nears the end of "My history", once while it loads, again after a failure only when the
/// viewer moves, never once the daemon's page said there is no more; a page asked for before a
/// full reload landed is dropped (the reload starts history again from the newest).
#[test]
fn history_loads_the_next_page_only_as_the_cursor_nears_its_end() {
    let mut app = loaded("dave", &["requester"]);
    let page = |ids: std::ops::Range<u64>| -> Vec<RequestView> {
        ids.map(|id| seen_request("dave", request(id, "dave", "journal", RequestState::Cancelled, "old", 2000 - id as i64))).collect()
    };
    // A load with the newest page of dave's history, and more before it.
    let reload = |app: &App, older: Option<RequestId>| Action::Loaded {
        me: app.me.clone().unwrap(),
        tasks: app.tasks.clone(),
        requests: app.requests.values().filter(|r| r.id.0 < 900).cloned().chain(page(1000..1100)).collect(),
        grants: app.grants.values().cloned().collect(),
        older,
        log: app.log.clone(),
        notices: vec![],
    };
    app.update(reload(&app, Some(RequestId(1000))), t0());
    key(&mut app, KeyCode::Char('1'));
    let history = |app: &App| app.sections[0].iter().position(|s| s.title == "My history").unwrap();
    assert_eq!(app.sections[0][history(&app)].items.len(), 100);
    // Into the history, far from its end: nothing is asked for.
    let mut asked = Vec::new();
    while app.cursor().section != history(&app) || app.cursor().row < 5 {
        asked.extend(key(&mut app, KeyCode::Down));
    }
    assert!(!asked.contains(&Effect::LoadHistory(RequestId(1000))), "{asked:?}");
    // At its end: the page before R1000, once, however many keys while it loads.
    assert_eq!(key(&mut app, KeyCode::Char('G')), vec![Effect::LoadHistory(RequestId(1000))]);
    assert!(key(&mut app, KeyCode::Up).is_empty() && key(&mut app, KeyCode::Down).is_empty(), "asked once while it loads");
    // It fails: said so, not asked again by itself, asked again when the viewer moves.
    assert!(app.update(Action::HistoryFailed("daemon gone".into()), t0()).is_empty());
    assert!(app.toast.as_ref().unwrap().text.contains("could not load older history: daemon gone"));
    assert_eq!(key(&mut app, KeyCode::Up), vec![Effect::LoadHistory(RequestId(1000))]);
    // The last page: its rows join the history, and nothing more is asked for.
    app.update(Action::HistoryLoaded { before: RequestId(1000), requests: page(900..1000), older: None }, t0());
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.sections[0][history(&app)].items.len(), 200);
    assert_eq!(app.selected(), Some(Item::Request(RequestId(900))), "the oldest is last");
    assert!(key(&mut app, KeyCode::Up).is_empty() && key(&mut app, KeyCode::Char('G')).is_empty());
    // A reload starts again from the newest page; a page asked for before it is dropped.
    app.update(reload(&app, Some(RequestId(1000))), t0());
    app.update(Action::HistoryLoaded { before: RequestId(700), requests: page(600..700), older: Some(RequestId(600)) }, t0());
    assert!(!app.requests.contains_key(&RequestId(650)), "a page from before the reload is dropped");
    assert_eq!(
        key(&mut app, KeyCode::Char('G')),
        vec![Effect::LoadHistory(RequestId(1000))],
        "the next page is the one after the newest again"
    );
}
