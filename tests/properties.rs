//! Hostile input, by property: random sequences of commands and clock moves (forwards and
//! backwards) must keep the rules' invariants; random text must never crash the policy or
//! duration parsers; random bodies must never crash the API. (These stand in for cargo-fuzz
//! targets, which need a nightly toolchain this project's machines do not have.)

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use zsa::clock::ManualClock;
use zsa::daemon::Engine;
use zsa::daemon::engine::EngineError;
use zsa::model::wire::NewRequest;
use zsa::model::{Event, GrantId, GrantState, POLICY_APPROVER, RequestId, RequestState, SYSTEM_ACTOR, duration};
use zsa::policy::Policy;
use zsa::rules::{Command, Deadline, State, decide};
use zsa::store::chain;
use zsa::store::sqlite::SqliteStore;

const POLICY: &str = r#"
[settings]
pending_ttl = "2h"
[groups]
admins = ["root"]
approvers = ["alice", "bob", "carol"]
oncall = ["carol", "dave", "erin"]
leads = ["alice", "dave"]
[roles]
admins = ["admins"]
[[tasks]]
name = "one"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "4h"
extend = "approval"
max_total = "6h"
[[tasks]]
name = "two"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
approvals = 2
max_duration = "2h"
windows = ["Mon-Fri 09:00-17:00", "Sat 10:00-12:00"]
timezone = "Europe/Berlin"
outside_window = "approval"
[[tasks]]
name = "auto"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
extend = "auto"
max_total = "30m"
[[tasks]]
name = "staged"
requesters = ["oncall"]
approval = "manual"
max_duration = "1h"
[[tasks.stages]]
name = "lead"
approvers = ["leads"]
[[tasks.stages]]
name = "security"
approvers = ["approvers"]
approvals = 2
[[tasks]]
name = "glass"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
break_glass = true
"#;

const PEOPLE: [&str; 6] = ["root", "alice", "bob", "carol", "dave", "erin"];
const TASKS: [&str; 6] = ["one", "two", "auto", "glass", "staged", "nope"];

#[derive(Debug, Clone)]
enum Op {
    Ask { who: usize, task: usize, secs: u64, ahead: Option<i64> },
    Approve { who: usize, pick: usize },
    Deny { who: usize, pick: usize },
    Cancel { who: usize, pick: usize },
    Revoke { who: usize, pick: usize },
    Relinquish { who: usize, pick: usize },
    Review { who: usize, pick: usize },
    Disable { who: usize },
    Enable { who: usize },
    Clock { secs: i64 },
    Expire,
    Extend { who: usize, pick: usize, secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..PEOPLE.len();
    prop_oneof![
        4 => (who.clone(), 0..TASKS.len(), 0u64..20_000, prop_oneof![Just(None), (-600i64..20_000).prop_map(Some)])
            .prop_map(|(who, task, secs, ahead)| Op::Ask { who, task, secs, ahead }),
        4 => (who.clone(), 0usize..50).prop_map(|(who, pick)| Op::Approve { who, pick }),
        1 => (who.clone(), 0usize..50).prop_map(|(who, pick)| Op::Deny { who, pick }),
        1 => (who.clone(), 0usize..50).prop_map(|(who, pick)| Op::Cancel { who, pick }),
        1 => (who.clone(), 0usize..50).prop_map(|(who, pick)| Op::Revoke { who, pick }),
        1 => (who.clone(), 0usize..50).prop_map(|(who, pick)| Op::Relinquish { who, pick }),
        1 => (who.clone(), 0usize..50).prop_map(|(who, pick)| Op::Review { who, pick }),
        2 => (who.clone(), 0usize..50, 0u64..10_000).prop_map(|(who, pick, secs)| Op::Extend { who, pick, secs }),
        1 => who.clone().prop_map(|who| Op::Disable { who }),
        1 => who.prop_map(|who| Op::Enable { who }),
        3 => (-3600i64..7200).prop_map(|secs| Op::Clock { secs }),
        2 => Just(Op::Expire),
    ]
}

struct World {
    state: State,
    policy: Policy,
    now: DateTime<Utc>,
    log: Vec<Event>,
    /// The real engine on a real SQLite file, fed the same commands: it keeps only what is live
    /// in memory and must decide exactly as this full state does.
    twin: Option<Twin>,
    /// When set, the twin gets the commands in batches (group commit) of these sizes in turn,
    /// cut early where the clock moves; each must be decided as if it came alone.
    batches: Option<Batches>,
}

struct Batches {
    sizes: Vec<usize>,
    next: usize,
    /// Commands queued for the twin, with what the full state decided for each.
    queued: Vec<(String, Command, Result<Vec<Event>, zsa::rules::Refusal>)>,
}

struct Twin {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Twin {
    fn new(policy: &Policy, now: DateTime<Utc>) -> Twin {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("zsa.db")).unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let engine = Arc::new(Engine::open(Box::new(store), policy.clone(), clock.clone()).unwrap());
        Twin { engine, clock, _dir: dir }
    }
}

impl World {
    fn new(twin: bool) -> World {
        let policy = Policy::parse(POLICY, "p.toml").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        let twin = twin.then(|| Twin::new(&policy, now));
        World { state: State::default(), policy, now, log: Vec::new(), twin, batches: None }
    }

    /// A world whose twin commits in batches of `sizes` commands, in turn.
    fn batched(sizes: Vec<usize>) -> World {
        World { batches: Some(Batches { sizes, next: 0, queued: Vec::new() }), ..World::new(true) }
    }

    fn run(&mut self, actor: &str, cmd: Command) {
        let before = self.state.clone();
        let decided = decide(&self.state, &self.policy, &zsa::model::Actor::from(actor), &cmd, self.now);
        if let Some(batches) = &mut self.batches {
            let expected = match decided {
                Ok(changes) => {
                    let events =
                        chain::seal(self.state.last_seq, &self.state.last_hash, self.now, &zsa::model::Actor::from(actor), changes);
                    for e in &events {
                        self.state.apply(e);
                        self.log.push(e.clone());
                    }
                    Ok(events)
                }
                Err(refusal) => Err(refusal),
            };
            batches.queued.push((actor.to_string(), cmd, expected));
            if batches.queued.len() >= batches.sizes[batches.next % batches.sizes.len()] {
                batches.next += 1;
                self.flush();
            }
            return;
        }
        let twin = self.twin.as_ref().map(|t| {
            t.clock.set(self.now);
            t.engine.execute(actor, cmd.clone())
        });
        match decided {
            Ok(changes) => {
                let events = chain::seal(self.state.last_seq, &self.state.last_hash, self.now, &zsa::model::Actor::from(actor), changes);
                if let Some(twin) = twin {
                    let written: Vec<Event> = twin.unwrap().iter().map(|e| (**e).clone()).collect();
                    assert_eq!(written, events, "the engine decided {cmd:?} differently");
                }
                for e in events {
                    self.state.apply(&e);
                    self.log.push(e);
                }
            }
            Err(refusal) => {
                assert_eq!(self.state, before, "a refusal changed the state");
                if let Some(twin) = twin {
                    match twin {
                        Err(EngineError::Refused(r)) => assert_eq!(r, refusal, "the engine refused {cmd:?} differently"),
                        other => panic!("{cmd:?}: the full state refuses ({refusal}), the engine answered {other:?}"),
                    }
                }
            }
        }
        if let Some(twin) = &self.twin {
            let live = self.state.live();
            let memory = twin.engine.read(|s, _| s.clone());
            assert_eq!(memory, live, "after {cmd:?} the engine's memory is not exactly the live state");
            let loaded = twin.engine.stored(|s| s.load_live()).unwrap();
            assert_eq!(loaded, live, "after {cmd:?} the store would start from another state");
        }
    }

    /// Hands the queued commands to the twin as one batch, and checks each answer against what
    /// the full state decided, and the twin's memory and store against the live state.
    fn flush(&mut self) {
        let (Some(batches), Some(twin)) = (&mut self.batches, &self.twin) else { return };
        let queued = std::mem::take(&mut batches.queued);
        if queued.is_empty() {
            return;
        }
        twin.clock.set(self.now);
        let commands = queued.iter().map(|(actor, cmd, _)| (zsa::model::Actor::from(actor.as_str()), cmd.clone())).collect();
        let answers = twin.engine.execute_batch(commands);
        assert_eq!(answers.len(), queued.len(), "one answer for each command of the batch");
        for ((_, cmd, expected), answer) in queued.iter().zip(answers) {
            match (expected, answer) {
                (Ok(events), Ok(written)) => {
                    let written: Vec<Event> = written.events.iter().map(|e| (**e).clone()).collect();
                    assert_eq!(&written, events, "in a batch the engine decided {cmd:?} differently");
                }
                (Err(refusal), Err(EngineError::Refused(r))) => {
                    assert_eq!(&r, refusal, "in a batch the engine refused {cmd:?} differently")
                }
                (expected, other) => panic!("{cmd:?} in a batch: the full state decided {expected:?}, the engine answered {other:?}"),
            }
        }
        let live = self.state.live();
        let memory = twin.engine.read(|s, _| s.clone());
        assert_eq!(memory, live, "after a batch the engine's memory is not exactly the live state");
        let loaded = twin.engine.stored(|s| s.load_live()).unwrap();
        assert_eq!(loaded, live, "after a batch the store would start from another state");
    }

    fn nth_request(&self, pick: usize) -> Option<RequestId> {
        let ids: Vec<RequestId> = self.state.requests.keys().copied().collect();
        (!ids.is_empty()).then(|| ids[pick % ids.len()])
    }

    fn nth_grant(&self, pick: usize) -> Option<GrantId> {
        let ids: Vec<GrantId> = self.state.grants.keys().copied().collect();
        (!ids.is_empty()).then(|| ids[pick % ids.len()])
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Ask { who, task, secs, ahead } => {
                let new = NewRequest {
                    task: TASKS[task].into(),
                    duration_secs: Some(secs),
                    reason: Some("r".into()),
                    starts_at: ahead.map(|s| self.now + Duration::seconds(s)),
                    ..Default::default()
                };
                self.run(PEOPLE[who], Command::Request(new));
            }
            Op::Approve { who, pick } => {
                if let Some(request) = self.nth_request(pick) {
                    self.run(PEOPLE[who], Command::Approve { request, comment: None, signature: None });
                }
            }
            Op::Deny { who, pick } => {
                if let Some(request) = self.nth_request(pick) {
                    self.run(PEOPLE[who], Command::Deny { request, comment: Some("no".into()) });
                }
            }
            Op::Cancel { who, pick } => {
                if let Some(request) = self.nth_request(pick) {
                    self.run(PEOPLE[who], Command::Cancel { request });
                }
            }
            Op::Revoke { who, pick } => {
                if let Some(grant) = self.nth_grant(pick) {
                    self.run(PEOPLE[who], Command::Revoke { grant, reason: Some("x".into()) });
                }
            }
            Op::Relinquish { who, pick } => {
                if let Some(grant) = self.nth_grant(pick) {
                    self.run(PEOPLE[who], Command::Relinquish { grant });
                }
            }
            Op::Review { who, pick } => {
                if let Some(grant) = self.nth_grant(pick) {
                    self.run(PEOPLE[who], Command::Review { grant, comment: None });
                }
            }
            Op::Extend { who, pick, secs } => {
                if let Some(grant) = self.nth_grant(pick) {
                    self.run(PEOPLE[who], Command::Extend { grant, by_secs: secs, reason: Some("more".into()) });
                }
            }
            Op::Disable { who } => self.run("root", Command::DisableUser { user: PEOPLE[who].into(), reason: None }),
            Op::Enable { who } => self.run("root", Command::EnableUser { user: PEOPLE[who].into() }),
            Op::Clock { secs } => {
                // A batch is decided at one moment: the clock moves between batches.
                self.flush();
                self.now += Duration::seconds(secs);
            }
            Op::Expire => {
                self.run(SYSTEM_ACTOR, Command::Expire);
                for g in self.state.grants.values().filter(|g| g.state == GrantState::Active) {
                    assert!(g.expires_at > self.now, "{} is active past its deadline after the sweep", g.id);
                }
                for r in self.state.requests.values().filter(|r| r.state == RequestState::Pending) {
                    assert!(r.pending_until > self.now, "{} is pending past its deadline after the sweep", r.id);
                }
            }
        }
    }

    fn check_invariants(&self) {
        // The deadline index holds exactly what is open, each at its own deadline.
        let open: BTreeSet<(DateTime<Utc>, Deadline)> = (self.state.pending.iter())
            .map(|id| (self.state.requests[id].pending_until, Deadline::Request(*id)))
            .chain(self.state.active.iter().map(|id| (self.state.grants[id].expires_at, Deadline::Grant(*id))))
            .collect();
        assert_eq!(self.state.deadlines, open);
        let held: BTreeSet<(String, String, GrantId)> =
            (self.state.active.iter()).map(|id| &self.state.grants[id]).map(|g| (g.holder.clone(), g.task.clone(), g.id)).collect();
        assert_eq!(self.state.held, held);
        for g in self.state.grants.values() {
            let r = &self.state.requests[&g.request];
            let task = &self.policy.tasks[&g.task];
            // No grant outlives its approved duration and its extensions, nor the task's max_total.
            let life = (g.expires_at - g.granted_at).num_seconds() as u64;
            let cut = task.windows.as_ref().and_then(|w| w.open_at(g.granted_at)).is_some();
            if cut {
                assert!(life <= r.duration_secs + g.extended_secs, "{}", g.id);
            } else {
                assert_eq!(life, r.duration_secs + g.extended_secs, "{}", g.id);
            }
            assert!(life <= task.max_total, "{} lives {life} s, past max_total", g.id);
            // A grant that started in a window (which cuts) never runs past that window's end.
            if let Some(w) = &task.windows
                && let Some((_, closes)) = w.open_at(g.granted_at)
            {
                assert!(g.expires_at <= closes, "{} runs past its window's end", g.id);
            }
            // A grant approved ahead starts when it was asked to, and gives nothing before.
            if let Some(start) = r.starts_at {
                assert_eq!(g.granted_at, start, "{}", g.id);
                assert!(self.now >= start || !g.is_active_at(self.now), "{} is active before its start", g.id);
            }
            assert!(r.duration_secs <= task.max_duration && r.duration_secs > 0);
            assert_eq!(r.state, RequestState::Approved);
            // No grant without its approvals, from distinct people who may approve, never the holder.
            if task.break_glass {
                assert!(g.approved_by.is_empty() && g.break_glass);
            } else if g.approved_by == [POLICY_APPROVER] {
                assert_eq!(task.approval, zsa::policy::ApprovalMode::Auto);
            } else {
                let distinct: BTreeSet<&String> = g.approved_by.iter().collect();
                assert_eq!(distinct.len(), g.approved_by.len(), "{}: an approver counted twice", g.id);
                assert_eq!(g.approved_by.len() as u32, task.approvals, "{}", g.id);
                assert!(!g.approved_by.contains(&g.holder), "{}: approved by its holder", g.id);
                assert!(g.approved_by.iter().all(|a| self.policy.may_approve(a, task)));
                // In stages: each stage's approvals, in order, by its own approvers; nobody twice.
                for (k, stage) in task.stages.iter().enumerate() {
                    let at: Vec<&zsa::model::Approval> = r.approvals.iter().filter(|a| a.stage == Some(k as u32 + 1)).collect();
                    assert_eq!(at.len() as u32, stage.approvals, "{}: stage {}", g.id, k + 1);
                    assert!(at.iter().all(|a| self.policy.approves_at(&a.by, stage)), "{}: stage {}", g.id, k + 1);
                }
            }
            if let Some(review) = &g.review {
                assert_ne!(review.by, g.holder, "{}: reviewed by its holder", g.id);
            }
        }
        for r in self.state.requests.values() {
            assert!(!r.approved_by(&r.requester), "{}: the requester approved their own request", r.id);
            if let Some(g) = r.extends {
                // An extension is of the requester's own grant, and done only on it.
                assert_eq!(self.state.grants[&g].holder, r.requester, "{}", r.id);
                assert!(r.state != RequestState::Approved || r.grant == Some(g), "{}", r.id);
            }
            assert!(self.policy.may_request(&r.requester, &self.policy.tasks[&r.task]));
        }
        for user in self.state.disabled.keys() {
            assert!(
                !self
                    .state
                    .grants
                    .values()
                    .any(|g| &g.holder == user && g.state == GrantState::Active && g.granted_at <= self.state.disabled[user])
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_rules_keep_their_invariants_over_any_sequence(ops in proptest::collection::vec(op(), 1..80)) {
        let mut w = World::new(false);
        for op in &ops {
            w.step(op);
            w.check_invariants();
        }
        // Every change has its event: replaying the events rebuilds exactly this state.
        let mut replayed = State::default();
        for e in &w.log {
            replayed.apply(e);
        }
        prop_assert_eq!(&replayed, &w.state);
        // And the chain links, whatever the clock did.
        let mut prev = chain::GENESIS.to_string();
        for (i, e) in w.log.iter().enumerate() {
            prop_assert_eq!(e.seq, i as u64 + 1);
            prop_assert_eq!(&e.prev_hash, &prev);
            prop_assert_eq!(&chain::hash(&prev, &chain::body(e)), &e.hash);
            prev = e.hash.clone();
        }
    }

    #[test]
    fn durations_never_crash_and_round_trip(s in "\\PC{0,30}", n in 1u64..=duration::MAX_SECS) {
        let _ = duration::parse(&s);
        prop_assert_eq!(duration::parse(&duration::format(n)), Ok(n));
    }

    #[test]
    fn the_policy_parser_never_crashes_and_always_says_where(s in "\\PC{0,400}") {
        if let Err(e) = Policy::parse(&s, "p.toml") {
            prop_assert!(e.to_string().starts_with("p.toml"), "{}", e);
        }
    }

    /// Any text, hostile characters mixed in: what `inert` draws and what `check` accepts hold no
    /// control, format, separator, private-use or unassigned character (judged here by the
    /// Unicode data itself, not by the module under test).
    #[test]
    fn typed_text_never_carries_a_hidden_character(s in "(\\PC|\\p{Cc}|\\p{Cf}|[\u{2028}\u{2029}\u{3164}\u{FE0F}\u{E000}]){0,40}") {
        use icu_properties::{CodePointMapData, props::GeneralCategory as G};
        let category = CodePointMapData::<G>::new();
        let plain = |c: char| !matches!(
            category.get(c),
            G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator | G::PrivateUse | G::Unassigned
        );
        let shown = zsa::model::text::inert(&s);
        prop_assert!(shown.chars().all(plain), "{:?} -> {:?}", s, shown);
        prop_assert!(!shown.contains(['\u{3164}', '\u{FE0F}']), "{:?}", shown);
        if zsa::model::text::check("reason", &s, 1000, false).is_ok() {
            prop_assert!(s.chars().all(plain), "{:?} passed the check", s);
        }
    }

    /// A parameter whose pattern accepts anything still never passes a value that starts with
    /// '-' or holds a hidden character.
    #[test]
    fn a_parameter_is_never_an_option_or_hidden(value in "(-|\\PC|\\p{Cf}|\\p{Cc}){1,12}") {
        let policy = Policy::parse(
            "[groups]\nops = [\"a\"]\n[[tasks]]\nname = \"t\"\nrequesters = [\"ops\"]\napproval = \"auto\"\nmax_duration = \"1h\"\n\
             run = [\"/bin/echo\", \"{v}\"]\n[tasks.params.v]\npattern = \"(?s).+\"\n",
            "p.toml",
        ).unwrap();
        let run = policy.tasks["t"].run.as_ref().unwrap();
        let params = std::collections::BTreeMap::from([("v".to_string(), value.clone())]);
        if let Ok(argv) = run.build("t", &params) {
            prop_assert!(!value.starts_with('-'), "{:?}", argv);
            prop_assert!(zsa::model::text::inert(&value) == value.as_str(), "{:?}", value);
        }
    }

    #[test]
    fn a_damaged_policy_is_refused_with_its_file_and_line(cut in 0usize..2000, insert in "[\\[\\]=\"a-z0-9 \\n]{0,12}") {
        let src = include_str!("../assets/policy.toml");
        let at = cut % src.len();
        let at = (0..=at).rev().find(|i| src.is_char_boundary(*i)).unwrap_or(0);
        let damaged = format!("{}{insert}{}", &src[..at], &src[at..]);
        if let Err(e) = Policy::parse(&damaged, "policy.toml") {
            prop_assert!(e.problems.iter().all(|p| p.line <= damaged.lines().count() + 1 && !p.message.is_empty()), "{}", e);
            // And each is shown in place: the report quotes its line, whatever the damage.
            let shown = e.render(false);
            prop_assert!(e.problems.iter().all(|p| p.line == 0 || shown.contains(&format!("policy.toml:{}:{}", p.line, p.column))), "{}", shown);
        }
    }
}

proptest! {
    // Every write is a durable SQLite commit, so fewer cases than the pure properties above.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Memory holds only what is live and the store supplies the rest: the real engine on a
    /// real SQLite file decides every command exactly as the full state does, its memory is
    /// exactly the live part, and the store would start from that same state.
    #[test]
    fn the_engine_with_only_live_state_decides_as_the_full_state_does(ops in proptest::collection::vec(op(), 1..60)) {
        let mut w = World::new(true);
        for op in &ops {
            w.step(op);
        }
        let twin = w.twin.as_ref().unwrap();
        prop_assert!(twin.engine.verify().unwrap().ok);
    }

    /// Group commit: the same commands handed to the engine in batches of any sizes are decided
    /// exactly as the full state decides them one by one (refusals in a batch change nothing
    /// for the rest), and leave the same memory, store and chain.
    #[test]
    fn batched_commands_are_decided_as_one_by_one(ops in proptest::collection::vec(op(), 1..80), sizes in proptest::collection::vec(1usize..12, 1..8)) {
        let mut w = World::batched(sizes);
        for op in &ops {
            w.step(op);
        }
        w.flush();
        let twin = w.twin.as_ref().unwrap();
        prop_assert!(twin.engine.verify().unwrap().ok);
        let stored = twin.engine.events(&Default::default()).unwrap();
        prop_assert_eq!(stored, w.log.clone());
    }
}

/// The API's JSON bodies, through the real router, engine and SQLite store: whatever arrives,
/// the answer is a success or a clear refusal in the error format, never a server error.
mod api_bodies {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use zsa::daemon::{Engine, routes};

    fn router() -> (axum::Router, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = zsa::store::sqlite::SqliteStore::open(&dir.path().join("zsa.db")).unwrap();
        let clock = Arc::new(zsa::clock::ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()));
        let engine = Arc::new(Engine::open(Box::new(store), Policy::parse(POLICY, "p.toml").unwrap(), clock).unwrap());
        let token = zsa::daemon::auth::new_token();
        engine.execute(SYSTEM_ACTOR, Command::issue_token("dave", zsa::daemon::auth::token_hash(&token))).unwrap();
        (routes::router(engine), token, dir)
    }

    fn json_ish() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{\"task\": \"(auto|one|two|x)\"(, \"(duration_secs|reason|ticket|params|extra)\": (-?[0-9]{1,25}|\"\\PC{0,20}\"|null|\\[\\]|\\{\\}))*\\}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn any_body_gets_a_clear_answer(body in json_ish(), path in prop_oneof![
            Just("/v1/requests"), Just("/v1/requests/R1/approve"), Just("/v1/requests/R1/deny"),
            Just("/v1/grants/G1/revoke"), Just("/v1/admin/tokens"), Just("/v1/runs"),
        ]) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (router, token, _dir) = router();
            let (status, bytes) = rt.block_on(async move {
                let req = Request::post(path)
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::from(body))
                    .unwrap();
                let resp = router.oneshot(req).await.unwrap();
                let status = resp.status();
                (status, axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap())
            });
            prop_assert!(!status.is_server_error(), "{status}: {}", String::from_utf8_lossy(&bytes));
            if status.is_client_error() {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{v}");
            }
        }
    }
}

#[test]
fn the_clock_jumping_backwards_neither_extends_nor_ends_a_grant() {
    let mut w = World::new(false);
    w.step(&Op::Ask { who: 4, task: 2, secs: 600, ahead: None });
    let g = *w.state.grants.keys().next().unwrap();
    let deadline = w.state.grants[&g].expires_at;
    w.now -= Duration::hours(3); // NTP steps the clock back
    w.step(&Op::Expire);
    assert_eq!(w.state.grants[&g].state, GrantState::Active, "not ended early");
    assert_eq!(w.state.grants[&g].expires_at, deadline, "not extended: the deadline is absolute");
    w.now = deadline;
    w.step(&Op::Expire);
    assert_eq!(w.state.grants[&g].ended.as_ref().unwrap().at, deadline);
}

/// Found by the batched property test: an approved extension of an active grant stayed in
/// memory, while a daemon started from the store would not hold it (memory and start-up must
/// be the same state, or a restart changes what is decided).
#[test]
fn an_approved_extension_is_not_kept_in_memory_that_a_restart_would_not_load() {
    let ops = [
        Op::Ask { who: 4, task: 0, secs: 1, ahead: None },
        Op::Approve { who: 1, pick: 0 },
        Op::Ask { who: 3, task: 0, secs: 1, ahead: None },
        Op::Extend { who: 4, pick: 0, secs: 1 },
        Op::Approve { who: 1, pick: 2 },
    ];
    let mut w = World::new(true);
    for op in &ops {
        w.step(op);
    }
    let extension = w.state.requests.values().find(|r| r.extends.is_some()).expect("the extension was asked for");
    assert!(extension.grant.is_some(), "and approved into the grant");
}

/// A batch whose transaction fails (here a trigger, planted through a second connection to the
/// real database, aborts one of its events) fails every command in it, refusals included (each
/// was decided on the state the others would have left), and changes nothing: memory, the
/// store and the chain are as before, and the next command is decided on them as if the batch
/// never was.
#[test]
fn a_batch_whose_write_fails_fails_every_command_in_it_and_changes_nothing() {
    let policy = Policy::parse(POLICY, "p.toml").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let twin = Twin::new(&policy, now);
    let engine = &twin.engine;
    let ask = |who: &str| {
        (
            zsa::model::Actor::from(who),
            Command::Request(NewRequest { task: "one".into(), duration_secs: Some(600), reason: Some("r".into()), ..Default::default() }),
        )
    };
    let first = engine.execute_batch(vec![ask("carol")]);
    assert!(first[0].is_ok());
    let before = engine.read(|s, _| s.clone());
    let head = before.last_seq;
    let db = twin._dir.path().join("zsa.db");
    let planted = rusqlite::Connection::open(&db).unwrap();
    planted
        .execute_batch(&format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.seq = {} BEGIN SELECT RAISE(ABORT, 'the disk said no'); END;",
            head + 3
        ))
        .unwrap();
    // dave asks, bob is refused (not eligible for "one"), dave asks again (refused: one
    // pending is enough), alice approves, erin asks: the third event is refused by the disk.
    let approve = (zsa::model::Actor::from("alice"), Command::Approve { request: RequestId(2), comment: None, signature: None });
    let answers = engine.execute_batch(vec![ask("dave"), ask("bob"), ask("dave"), approve.clone(), ask("erin")]);
    assert_eq!(answers.len(), 5);
    for answer in &answers {
        match answer {
            Err(EngineError::Store(e)) => assert!(e.to_string().contains("the disk said no"), "{e}"),
            other => panic!("every command of a failed batch fails with the store's error: {other:?}"),
        }
    }
    assert_eq!(engine.read(|s, _| s.clone()), before, "memory is as before the batch");
    assert_eq!(engine.stored(|s| s.load_live()).unwrap(), before, "the store is as before the batch");
    // Without the trigger the same commands are decided on that state: new ids, the next seq.
    planted.execute_batch("DROP TRIGGER refuse").unwrap();
    let again = engine.execute_batch(vec![ask("dave"), ask("bob"), ask("dave"), approve]);
    let events = |i: usize| again[i].as_ref().map(|w| w.events.len()).map_err(|e| e.to_string());
    assert_eq!(events(0), Ok(1), "dave's request is R2");
    assert!(matches!(&again[1], Err(EngineError::Refused(r)) if r.code == "not_eligible"), "{:?}", again[1]);
    assert!(matches!(&again[2], Err(EngineError::Refused(r)) if r.code == "already_pending"), "{:?}", again[2]);
    assert_eq!(events(3), Ok(2), "alice approves R2: approved, and its grant");
    let written: Vec<u64> = again.iter().flatten().flat_map(|w| w.events.iter().map(|e| e.seq)).collect();
    assert_eq!(written, [head + 1, head + 2, head + 3]);
    assert!(engine.verify().unwrap().ok);
}

/// While a batch is being written (held at the disk by another connection's write lock on the
/// real database), nobody sees any of it: memory and `check` answer as before; once the
/// transaction is durable, all of it at once.
#[test]
fn nothing_of_a_batch_is_seen_before_it_is_durable() {
    let policy = Policy::parse(POLICY, "p.toml").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let twin = Twin::new(&policy, now);
    let auto = |who: &str| {
        (zsa::model::Actor::from(who), Command::Request(NewRequest { task: "auto".into(), duration_secs: Some(600), ..Default::default() }))
    };
    let blocker = rusqlite::Connection::open(twin._dir.path().join("zsa.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let engine = twin.engine.clone();
    let writing = std::thread::spawn(move || engine.execute_batch(vec![auto("dave"), auto("erin")]));
    let waited = std::time::Instant::now();
    while twin.engine.writing_for().is_none_or(|d| d < std::time::Duration::from_millis(100)) {
        assert!(waited.elapsed() < std::time::Duration::from_secs(5), "the batch reached the disk");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Decided, sealed, waiting for the disk: not seen.
    let check = |who: &str| twin.engine.read(|s, p| zsa::rules::check_access(s, p, "root", who, "auto", now).unwrap().allowed);
    assert!(!check("dave") && !check("erin"), "check does not see a grant that is not durable");
    assert!(twin.engine.read(|s, _| s.requests.is_empty() && s.active.is_empty() && s.last_seq == 0));
    blocker.execute_batch("COMMIT").unwrap();
    let answers = writing.join().unwrap();
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
    assert!(check("dave") && check("erin"), "durable: both at once");
}
