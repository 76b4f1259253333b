//! `cargo bench --bench core`: the pure parts. Deciding a command, applying an event,
//! rebuilding state from events, and drawing each console pane with 10, 10,000 and 100,000 items.

#[path = "common/fixtures.rs"]
mod fixtures;

use std::hint::black_box;

use chrono::Duration;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fixtures::Builder;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use zsa::model::wire::{GrantView, TaskView, WhoAmI};
use zsa::rules::{Command, State, decide};
use zsa::tui::action::Action;
use zsa::tui::app::App;
use zsa::tui::theme::Theme;

fn rules(c: &mut Criterion) {
    let b = Builder::everyday(30_000, Duration::days(7));
    let pending = *b.state.pending.iter().next().expect("some request is pending");
    c.bench_function("decide: approve a request", |bench| {
        bench.iter(|| {
            decide(
                black_box(&b.state),
                &b.policy,
                &zsa::model::Actor::from("bob"),
                &Command::Approve { request: pending, comment: None, signature: None },
                b.now,
            )
            .unwrap()
        })
    });
    // What a task with signed_approvals adds to each approval: the statement rebuilt and the
    // SSHSIG checked, on the writer's thread.
    let request = &b.state.requests[&pending];
    let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let statement = zsa::evidence::approval::statement(&request.into(), "bob", b.now);
    let sig = key.sign(zsa::evidence::approval::NAMESPACE, ssh_key::HashAlg::Sha512, statement.as_bytes()).unwrap();
    let signed = zsa::model::SignedApproval { signed_at: b.now, signature: sig.to_pem(ssh_key::LineEnding::LF).unwrap() };
    let listed = [key.public_key().clone()];
    c.bench_function("check an approval's SSH signature (Ed25519)", |bench| {
        bench.iter(|| zsa::evidence::approval::check(&black_box(request).into(), "bob", &signed, &listed).unwrap())
    });
    c.bench_function("decide: check access", |bench| {
        bench.iter(|| zsa::rules::check_access(black_box(&b.state), &b.policy, "u7", "u7", "restart", b.now).unwrap())
    });
    let last = b.events.last().unwrap().clone();
    c.bench_function("apply: one event", |bench| {
        bench.iter_batched(
            || b.state.touched_by(std::slice::from_ref(&last.change)),
            |mut s| s.apply(black_box(&last)),
            BatchSize::SmallInput,
        )
    });
    for n in [10_000usize, 100_000] {
        let built = Builder::everyday(n, Duration::days(28));
        c.bench_function(&format!("rebuild state from {n} events"), |bench| {
            bench.iter(|| {
                let mut s = State::default();
                for e in &built.events {
                    s.apply(e);
                }
                s
            })
        });
    }
}

/// An app holding `n` requests, grants and events, as a person who sees all three panes.
fn app_with(n: usize) -> App {
    let b = Builder::everyday(n.max(30), Duration::days(7));
    let mut app = App::new("/run/zsa/zsa.sock".into(), b.now, false, Vec::new());
    let me = WhoAmI {
        user: "alice".into(),
        roles: vec!["admin".into(), "approver".into(), "requester".into()],
        groups: vec![],
        disabled: false,
        via: "socket".into(),
        auth: None,
        tokens: vec![],
        now: b.now,
        policy_sha256: String::new(),
    };
    let tasks: Vec<TaskView> = b.policy.tasks.values().map(|t| b.policy.task_view(t, "alice")).collect();
    // Each row carries alice's actions, as the daemon sends them.
    let alice = zsa::model::Actor::from("alice");
    let requests =
        b.state.requests.values().take(n).map(|r| zsa::rules::request_view(&b.state, &b.policy, &alice, r.clone(), b.now)).collect();
    let grants = b
        .state
        .grants
        .values()
        .take(n)
        .map(|g| GrantView { actions: zsa::rules::grant_actions(&b.state, &b.policy, &alice, g, b.now), grant: g.clone() })
        .collect();
    let log = b.events.iter().take(n).cloned().collect();
    app.update(Action::StreamConnected, b.now);
    app.update(Action::Loaded { me, tasks, requests, grants, older: None, log, notices: vec![] }, b.now);
    app
}

fn render(c: &mut Criterion) {
    let theme = Theme::new(true);
    for n in [10usize, 10_000, 100_000] {
        let mut app = app_with(n);
        let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
        for (key, pane) in [('1', "requester"), ('2', "approver"), ('3', "auditor")] {
            app.update(Action::Key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char(key))), app.now);
            c.bench_function(&format!("render {pane} pane, {n} items"), |bench| {
                bench.iter(|| {
                    terminal.draw(|f| zsa::tui::ui::render(black_box(&app), f, &theme)).unwrap();
                })
            });
        }
    }
}

/// A burst of 100 events reaching a console holding 100,000 items: rebuilding the sections
/// after each event, as the console once did, next to absorbing them all and rebuilding once.
fn console_burst(c: &mut Criterion) {
    let app = app_with(100_000);
    let burst: Vec<zsa::model::Event> = (0..100u64)
        .map(|i| zsa::model::Event {
            seq: 2_000_000 + i,
            at: app.now,
            actor: "root".into(),
            auth: None,
            change: zsa::model::Change::UserEnabled { user: format!("u{i}") },
            prev_hash: String::new(),
            hash: String::new(),
        })
        .collect();
    for (label, rebuild_each) in [("rebuilt per event", true), ("absorbed then rebuilt once", false)] {
        c.bench_function(&format!("console: 100 events, 100000 items, {label}"), |bench| {
            bench.iter_batched(
                || app.clone(),
                |mut app| {
                    let now = app.now;
                    for e in &burst {
                        drop(app.absorb(Action::EventReceived(e.clone()), now));
                        if rebuild_each {
                            app.refresh();
                        }
                    }
                    app.refresh();
                    app
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
}

/// Reading stored bodies back into events (audit queries, streams catching up, `audit verify`)
/// and hashing them (`audit verify`). Start-up does neither any more: it loads the live rows.
fn replay_parts(c: &mut Criterion) {
    let b = Builder::everyday(20_000, Duration::days(7));
    let stored: Vec<(String, String, String)> =
        b.events.iter().map(|e| (zsa::store::chain::body(e), e.prev_hash.clone(), e.hash.clone())).collect();
    c.bench_function("parse 20000 stored events", |bench| {
        bench.iter(|| stored.iter().map(|(body, p, h)| zsa::store::chain::parse(body, p.clone(), h.clone()).unwrap()).collect::<Vec<_>>())
    });
    c.bench_function("hash 20000 stored events", |bench| {
        bench.iter(|| stored.iter().map(|(body, p, _)| zsa::store::chain::hash(p, body)).collect::<Vec<_>>())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = rules, render, console_burst, replay_parts
}
criterion_main!(benches);
