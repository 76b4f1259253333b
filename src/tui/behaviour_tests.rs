//! How the console behaves, driven through `App::update` with injected daemon time: toasts that
//! fade and go with the pane, a chain check that cannot stay "checking", filters and sorts in
//! every pane, the searchable task picker, text fields with a cursor, remapped keys and colours.

use std::path::Path;

use chrono::Duration;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

use super::action::{Action, Effect};
use super::app::{App, Item, Mode, Pane, PromptKind, Sort, SortColumn, VerifyState};
use super::config;
use super::tests::{alice, key, loaded, request, screen, seen_request, t0, typed};
use crate::model::wire::{Actions, Outcome, RequestView, VerifyReport};
use crate::model::{Change, Event, GrantId, RequestId, RequestState};

fn ctrl(app: &mut App, c: char) {
    app.update(Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)), app.now);
}

fn queue(app: &App) -> Vec<Item> {
    app.sections[Pane::Approver.index()][0].items.clone()
}

fn report() -> VerifyReport {
    serde_json::from_value(serde_json::json!({"ok": true, "events": 4, "first_bad_seq": null, "problem": null})).unwrap()
}

#[test]
fn a_toast_fades_by_daemon_time_and_errors_stay_longer() {
    let mut app = alice();
    app.update(Action::Done("approved R1".into()), t0());
    assert!(app.needs_ticks(), "a toast asks for ticks so it can fade");
    app.update(Action::Tick, t0() + Duration::seconds(3));
    assert_eq!(app.toast.as_ref().map(|t| t.text.as_str()), Some("approved R1"));
    app.update(Action::Tick, t0() + Duration::seconds(4));
    assert_eq!(app.toast, None, "gone after 4 s of daemon time");

    app.update(Action::Failed("the daemon refused".into()), t0());
    app.update(Action::Tick, t0() + Duration::seconds(9));
    assert!(app.toast.is_some(), "an error stays longer");
    app.update(Action::Tick, t0() + Duration::seconds(10));
    assert_eq!(app.toast, None);
    assert!(screen(&app, 160, 30).contains("a approve"), "the key hints are back");
}

#[test]
fn a_toast_goes_with_a_pane_change_and_a_person_switch() {
    let mut app = alice();
    app.update(Action::Failed("denied R2".into()), t0());
    assert!(screen(&app, 160, 30).contains("denied R2"));
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.toast, None, "Tab");
    app.update(Action::Failed("denied R2".into()), t0());
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(app.toast, None, "a pane's number");
    assert!(screen(&app, 160, 30).contains("n new"), "the hints show at once");

    let mut demo = App::new("s".into(), t0(), true, vec!["alice".into(), "carol".into()]);
    demo.update(Action::Failed("about alice".into()), t0());
    assert_eq!(demo.update(Action::SwitchUser, t0()), vec![Effect::SwitchUser(1)]);
    assert_eq!(demo.toast, None, "nothing said to the last person stays");
}

#[test]
fn a_check_cut_off_by_a_lost_daemon_is_no_longer_checking_and_runs_again() {
    let mut app = alice();
    assert_eq!(app.verify, VerifyState::Checking, "an auditor's console checks the chain on load");
    app.update(Action::StreamLost("the daemon is not answering".into()), t0());
    assert_eq!(app.verify, VerifyState::Unknown, "the answer may never come");
    assert_eq!(app.update(Action::StreamConnected, t0()), vec![Effect::LoadAll]);
    let reload = reload_with_nothing_new(&app);
    assert_eq!(app.update(reload, t0()), vec![Effect::Verify], "the check runs again after the reload");
    assert_eq!(app.verify, VerifyState::Checking);
    app.update(Action::VerifyFailed("connection reset".into()), t0());
    assert_eq!(app.verify, VerifyState::Checking, "the cut-off check's late failure does not end the new one");
    app.update(Action::Verified(report()), t0());
    assert!(matches!(app.verify, VerifyState::Done(ref r) if r.ok));
}

#[test]
fn a_failed_check_shows_an_error_not_checking() {
    let mut app = alice();
    app.update(Action::VerifyFailed("the daemon is not answering".into()), t0());
    assert_eq!(app.verify, VerifyState::Unknown);
    let toast = app.toast.clone().unwrap();
    assert!(toast.error && toast.text.contains("could not verify the chain: the daemon is not answering"), "{toast:?}");
    key(&mut app, KeyCode::Char('3'));
    let s = screen(&app, 160, 30);
    assert!(s.contains("chain: not checked (V)") && !s.contains("checking"), "{s}");
}

#[test]
fn every_pane_filters_its_rows_by_any_text_and_esc_clears() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "RESTART");
    let requester: Vec<Vec<Item>> = app.sections[0].iter().map(|s| s.items.clone()).collect();
    assert_eq!(requester, vec![vec![Item::Grant(GrantId(4))], vec![], vec![]], "by task, any case");
    key(&mut app, KeyCode::Enter);
    assert!(screen(&app, 160, 30).contains("filter: RESTART"), "the filter shows in the pane's title");

    key(&mut app, KeyCode::Char('2'));
    assert_eq!(queue(&app).len(), 2, "each pane has its own filter (her own R3 is not hers to decide)");
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "customer");
    assert_eq!(queue(&app), vec![Item::Request(RequestId(2))], "by reason");
    ctrl(&mut app, 'u');
    typed(&mut app, "carol");
    assert_eq!(queue(&app), vec![Item::Request(RequestId(1))], "by user");
    ctrl(&mut app, 'u');
    typed(&mut app, "INC-1");
    assert_eq!(queue(&app), vec![Item::Request(RequestId(1))], "by ticket");
    ctrl(&mut app, 'u');
    typed(&mut app, "r2");
    assert_eq!(queue(&app), vec![Item::Request(RequestId(2))], "by id");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.filter(Pane::Approver), "", "Esc on a filtered pane clears its filter");
    assert_eq!(queue(&app).len(), 2);

    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('/'));
    ctrl(&mut app, 'u');
    typed(&mut app, "denied");
    assert_eq!(app.sections[0][2].items, vec![Item::Request(RequestId(6))], "by state");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.filter(Pane::Requester), "");

    key(&mut app, KeyCode::Char('3'));
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "dave");
    assert_eq!(app.sections[2][1].items, vec![Item::Grant(GrantId(5))], "the auditor's boards filter too");
}

#[test]
fn s_sorts_the_pane_by_the_next_column_and_capital_s_reverses() {
    // Bob may decide all three pending requests (alice's R3 included), so the order shows.
    let mut app = loaded("bob", &["approver", "requester", "auditor"]);
    let ids = |app: &App| {
        let id = |i: &Item| match i {
            Item::Request(r) => r.to_string(),
            other => format!("{other:?}"),
        };
        queue(app).iter().map(id).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(ids(&app), "R1 R2 R3", "oldest first");
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sorts[1], Some(Sort { column: SortColumn::Id, reversed: false }));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sorts[1].map(|s| s.column), Some(SortColumn::Task));
    assert_eq!(ids(&app), "R2 R1 R3", "export before journal");
    key(&mut app, KeyCode::Char('S'));
    assert_eq!(ids(&app), "R3 R1 R2", "reversed");
    assert!(screen(&app, 160, 30).contains("sort: task ↓"), "the sort shows in the title");
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sorts[1].map(|s| s.column), Some(SortColumn::Time));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sorts[1], None, "and back to the pane's own order");
    assert_eq!(ids(&app), "R1 R2 R3");
}

#[test]
fn the_task_picker_narrows_as_you_type() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('n'));
    typed(&mut app, "exp");
    let Mode::Form(form) = &app.mode else { panic!("the form opens") };
    assert_eq!(form.matching(&app.tasks).iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["export"]);
    assert_eq!(form.task(&app.tasks).unwrap().name, "export");
    typed(&mut app, "zzz");
    let Mode::Form(form) = &app.mode else { panic!() };
    assert!(
        form.problems(&app.tasks, app.now).iter().any(|(_, p)| p.contains("no task you may ask for matches")),
        "{:?}",
        form.problems(&app.tasks, app.now)
    );
    ctrl(&mut app, 'w');
    typed(&mut app, "things");
    let Mode::Form(form) = &app.mode else { panic!() };
    assert_eq!(form.matching(&app.tasks).len(), 4, "descriptions match too");
    key(&mut app, KeyCode::Right);
    let Mode::Form(form) = &app.mode else { panic!() };
    assert_eq!(form.task(&app.tasks).unwrap().name, "export", "←→ still pick among the matches");
}

#[test]
fn text_fields_move_the_cursor_and_delete_words() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('n'));
    for _ in 0..3 {
        key(&mut app, KeyCode::Tab);
    }
    typed(&mut app, "legal hold now");
    ctrl(&mut app, 'w');
    let Mode::Form(form) = &app.mode else { panic!() };
    assert_eq!(form.reason, "legal hold ", "Ctrl-W deletes the word before the cursor");
    key(&mut app, KeyCode::Home);
    typed(&mut app, "the ");
    key(&mut app, KeyCode::End);
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::Backspace);
    ctrl(&mut app, 'a');
    key(&mut app, KeyCode::Right);
    typed(&mut app, "T");
    let Mode::Form(form) = &app.mode else { panic!() };
    assert_eq!(form.reason, "tThe legal hol ");
    assert_eq!(form.reason.with_caret(), "tT▏he legal hol ");
    ctrl(&mut app, 'e');
    ctrl(&mut app, 'u');
    let Mode::Form(form) = &app.mode else { panic!() };
    assert_eq!(form.reason, "", "Ctrl-U empties the field");
    key(&mut app, KeyCode::Esc);

    // The prompt's comment is the same kind of field.
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('d'));
    typed(&mut app, "too wide");
    ctrl(&mut app, 'w');
    let Mode::Prompt(prompt) = &app.mode else { panic!("the deny prompt opens") };
    assert_eq!((prompt.kind, prompt.input.value()), (PromptKind::Deny(RequestId(2)), "too "));
}

#[test]
fn an_auditor_opens_on_the_log() {
    assert_eq!(loaded("eve", &["auditor"]).pane, Pane::Auditor, "auditor only");
    assert_eq!(loaded("eve", &["auditor", "approver"]).pane, Pane::Auditor, "auditor first");
    assert_eq!(loaded("eve", &["approver", "auditor"]).pane, Pane::Approver, "approver first: the queue");
    assert_eq!(loaded("eve", &["admin"]).pane, Pane::Auditor, "an admin sees only the log pane");
}

#[test]
fn f2_shows_in_the_demo_footer_only() {
    let mut demo = loaded("alice", &["approver", "requester", "auditor"]);
    demo.people = vec!["alice".into(), "carol".into()];
    demo.keys = super::keymap::Keymap::new(true);
    assert!(screen(&demo, 200, 30).contains("F2 person"));
    assert!(!screen(&alice(), 200, 30).contains("F2"));
}

#[test]
fn the_mouse_wheel_moves_the_cursor() {
    let mut app = alice();
    let wheel = |kind| Action::Mouse(MouseEvent { kind, column: 10, row: 10, modifiers: KeyModifiers::NONE });
    app.update(wheel(MouseEventKind::ScrollDown), t0());
    app.update(wheel(MouseEventKind::ScrollDown), t0());
    assert_eq!(app.selected(), Some(Item::Grant(GrantId(5))), "past her queue (R1 R2) to the review section");
    app.update(wheel(MouseEventKind::ScrollUp), t0());
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))));
    app.update(wheel(MouseEventKind::Moved), t0());
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))), "only the wheel moves");
    key(&mut app, KeyCode::Char('?'));
    app.update(wheel(MouseEventKind::ScrollDown), t0());
    assert_eq!(app.mode, Mode::Help, "over a popup the wheel scrolls it (as ↓ does) instead of closing it");
    assert_eq!(app.selected(), Some(Item::Request(RequestId(2))), "and the list under it stays");
}

fn parse(text: &str) -> Result<config::Settings, String> {
    config::parse(text, Path::new("/home/u/.config/zsa/config.toml"), false)
}

#[test]
fn a_config_file_remaps_keys_and_the_help_and_footer_follow() {
    let settings = parse("[keys]\napprove = \"A\"\ndeny = \"a\"\n\n[colors]\naccent = \"magenta\"\n").unwrap();
    assert_eq!(settings.palette.accent, ratatui::style::Color::Magenta);
    let mut app = alice();
    app.keys = settings.keys;
    key(&mut app, KeyCode::Char('a'));
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Deny(RequestId(1))), "a and d swapped places");
    key(&mut app, KeyCode::Esc);
    app.update(Action::Key(KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT)), t0());
    assert!(matches!(&app.mode, Mode::Prompt(p) if p.kind == PromptKind::Approve(RequestId(1))));
    key(&mut app, KeyCode::Esc);
    assert!(screen(&app, 160, 30).contains(" A approve  a deny"), "the footer shows the keys in use");
    key(&mut app, KeyCode::Char('?'));
    assert!(screen(&app, 160, 30).contains("A  approve the selected request"), "and the help");
}

#[test]
fn a_config_mistake_names_the_file_and_line() {
    let bad_colour = parse("[keys]\napprove = \"A\"\n[colors]\naccent = \"mauve-ish\"\n").unwrap_err();
    assert!(bad_colour.starts_with("/home/u/.config/zsa/config.toml:4: [colors] accent: \"mauve-ish\" is not a colour"), "{bad_colour}");
    let unknown = parse("[keys]\n\napprov = \"A\"\n").unwrap_err();
    assert!(unknown.starts_with("/home/u/.config/zsa/config.toml:3: [keys] there is no key called \"approv\""), "{unknown}");
    assert!(unknown.contains("approve, deny"), "it lists the names: {unknown}");
    let clash = parse("[keys]\napprove = \"j\"\n").unwrap_err();
    assert!(clash.contains(":2: [keys] approve: j is already the key for \"move"), "{clash}");
    let not_a_key = parse("[keys]\napprove = \"ctrl-a\"\n").unwrap_err();
    assert!(not_a_key.contains(":2: [keys] approve: \"ctrl-a\" is not a key"), "{not_a_key}");
    let table = parse("[colours]\naccent = \"red\"\n").unwrap_err();
    assert!(table.starts_with("/home/u/.config/zsa/config.toml:1: unknown field `colours`"), "{table}");
    let syntax = parse("[keys]\napprove = A\n").unwrap_err();
    assert!(syntax.starts_with("/home/u/.config/zsa/config.toml:2: "), "{syntax}");
    assert!(syntax.contains("move the file away"), "it says how to start anyway: {syntax}");
}

/// The event that says `requester` asked for `task`, as R`id`.
fn created(id: u64, requester: &str, task: &str) -> Action {
    let change = Change::RequestCreated {
        starts_at: None,
        extends: None,
        signed_approvals: false,
        request: RequestId(id),
        task: task.into(),
        requester: requester.into(),
        duration_secs: 60,
        reason: None,
        ticket: None,
        approvals_needed: 1,
        pending_until: t0() + Duration::hours(1),
        break_glass: false,
        params: Default::default(),
    };
    Action::EventReceived(Event {
        seq: 40 + id,
        at: t0(),
        actor: requester.into(),
        auth: None,
        change,
        prev_hash: "p".into(),
        hash: "h".into(),
    })
}

fn fetched(request: RequestView) -> Action {
    Action::RequestLoaded(Box::new(Outcome { request, grant: None }))
}

/// A new request is marked (and rings) when the daemon's row says the viewer may decide it, not
/// from the console's own idea of who approves what: a task she approves is not enough.
#[test]
fn a_new_request_is_marked_when_its_fetched_row_lets_me_decide_it() {
    let mut app = alice();
    assert_eq!(app.update(created(8, "dave", "journal"), t0()), vec![Effect::FetchRequest(RequestId(8))]);
    assert!(app.fresh.is_empty(), "nothing is marked before the daemon says");
    let mine = seen_request("alice", request(8, "dave", "journal", RequestState::Pending, "rotate", 0));
    assert_eq!(app.update(fetched(mine.clone()), t0()), vec![Effect::Bell]);
    assert!(app.fresh.contains(&RequestId(8)) && queue(&app).contains(&Item::Request(RequestId(8))));

    // alice approves journal, but the daemon says she may not decide R9 (as when her approvals
    // are not accepted any more): no mark, no bell, not in her queue.
    app.update(created(9, "dave", "journal"), t0());
    let refused =
        RequestView { actions: Actions::default(), ..seen_request("alice", request(9, "dave", "journal", RequestState::Pending, "", 0)) };
    assert_eq!(app.update(fetched(refused), t0()), vec![]);
    assert!(!app.fresh.contains(&RequestId(9)) && !queue(&app).contains(&Item::Request(RequestId(9))));

    // Her own request is never hers to decide.
    app.update(created(10, "alice", "journal"), t0());
    assert_eq!(app.update(fetched(seen_request("alice", request(10, "alice", "journal", RequestState::Pending, "", 0))), t0()), vec![]);
    assert!(!app.fresh.contains(&RequestId(10)));

    // A row fetched again (after a decision, say) is not announced a second time.
    key(&mut app, KeyCode::Char('2'));
    app.fresh.clear();
    assert_eq!(app.update(fetched(mine), t0()), vec![], "announced once, when it was created");
    assert!(app.fresh.is_empty());
}

/// The approver tab's badge counts what waits for the viewer, whatever the pane's filter shows.
#[test]
fn the_approver_badge_counts_the_data_not_the_filtered_rows() {
    let mut app = alice();
    let tabs = |app: &App| screen(app, 160, 30).lines().nth(1).unwrap_or_default().to_string();
    assert!(tabs(&app).contains("Approver (2)"), "{}", tabs(&app));
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "customer");
    key(&mut app, KeyCode::Enter);
    assert_eq!(queue(&app).len(), 1);
    assert!(tabs(&app).contains("Approver (2)"), "a filter hides rows, not work: {}", tabs(&app));
    ctrl(&mut app, 'u');
    key(&mut app, KeyCode::Char('/'));
    ctrl(&mut app, 'u');
    typed(&mut app, "nothing matches this");
    assert!(queue(&app).is_empty());
    assert!(tabs(&app).contains("Approver (2)"), "{}", tabs(&app));
}

/// After a reconnect the full load answers as of when it was asked: a row fetched for an event
/// while it was under way may land first and be overwritten by the load's older copy (seen as a
/// request that never appeared after a daemon restart). Such rows are fetched again after it.
#[test]
fn a_row_fetched_while_a_reload_is_under_way_is_fetched_again_after_it() {
    use crate::model::Change;
    let mut app = alice();
    app.update(Action::StreamLost("the daemon is not answering".into()), t0());
    assert_eq!(app.update(Action::StreamConnected, t0()), vec![Effect::LoadAll]);
    let cancelled = Change::RequestCancelled { request: RequestId(2), task: "export".into(), requester: "dave".into(), reason: None };
    let fetch = app.update(Action::EventReceived(super::tests::event(40, "dave", cancelled)), t0());
    assert_eq!(fetch, vec![Effect::FetchRequest(RequestId(2))]);
    // The load, asked before the cancel, lands after the fetch's answer and holds the old row.
    let reload = reload_with(&app, app.requests.values().cloned().collect());
    let effects = app.update(reload, t0());
    assert!(effects.contains(&Effect::FetchRequest(RequestId(2))), "fetched again after the load: {effects:?}");
    // A load with nothing fetched meanwhile fetches nothing again.
    app.update(Action::StreamLost("again".into()), t0());
    app.update(Action::StreamConnected, t0());
    let quiet = reload_with_nothing_new(&app);
    assert!(!app.update(quiet, t0()).iter().any(|e| matches!(e, Effect::FetchRequest(_) | Effect::FetchGrant(_))));
}

/// The Starts field asks ahead: empty is now; `+3h` is three hours after the daemon's now, and a
/// time not ahead or not a time is marked before anything is sent.
#[test]
fn the_request_form_asks_ahead_with_its_starts_field() {
    let mut app = alice();
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('n'));
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "tomorrow");
    let Mode::Form(form) = &app.mode else { panic!() };
    let problems = form.problems(&app.tasks, app.now);
    assert!(
        problems.iter().any(|(f, p)| *f == super::form::Field::Start && p.starts_with("give a time as 2026-11-24T22:00 (local)")),
        "{problems:?}"
    );
    ctrl(&mut app, 'u');
    typed(&mut app, "2020-01-01T10:00:00Z");
    let Mode::Form(form) = &app.mode else { panic!() };
    let problems = form.problems(&app.tasks, app.now);
    assert!(
        problems.iter().any(|(f, p)| *f == super::form::Field::Start && p.contains("is not ahead; leave it empty to start now")),
        "{problems:?}"
    );
    ctrl(&mut app, 'u');
    typed(&mut app, "+3h");
    let s = screen(&app, 100, 30);
    assert!(s.contains("starts ") && s.contains(" (in 3h)"), "{s}");
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "legal hold");
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "INC-7");
    let sent = key(&mut app, KeyCode::Enter);
    let [Effect::Submit(super::action::Submission::Request(new))] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(new.starts_at, Some(app.now + chrono::Duration::hours(3)));
}

/// A full load that brings nothing the console does not have (as after a reconnect).
fn reload_with_nothing_new(app: &App) -> Action {
    reload_with(app, vec![])
}

/// A full load of `requests`, and the console's own tasks and log.
fn reload_with(app: &App, requests: Vec<RequestView>) -> Action {
    Action::Loaded {
        me: app.me.clone().unwrap(),
        tasks: app.tasks.clone(),
        requests,
        grants: vec![],
        older: None,
        log: app.log.clone(),
        notices: vec![],
    }
}
