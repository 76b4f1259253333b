//! Several daemons on one PostgreSQL database (the machine's real server, a database of each
//! test's own), each a real `zsa daemon` process with its own state directory and socket,
//! driven through the real client: one chain, what one writes seen on the other, approvals
//! racing on both making exactly one grant, deadlines ended exactly once, and a daemon killed
//! under load losing nothing it acknowledged while the other serves on.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::postgres::PgDatabase;
use common::{Daemon, wait_for_event};
use zsa::client::AuditParams;
use zsa::model::wire::NewRequest;
use zsa::model::{Change, Event, RequestId};

/// Generous, for waiting on something that must happen; never a bound on how fast.
const PATIENCE: Duration = Duration::from_secs(30);

/// Two daemons, A and B, on one new database (None when PostgreSQL tests are skipped).
fn two_daemons(policy: &str) -> Option<(PgDatabase, Daemon, Daemon)> {
    let db = PgDatabase::create()?;
    let args = vec!["--store".to_string(), db.url.clone()];
    let a = Daemon::start_with_args(policy, &[], &args);
    let b = Daemon::start_with_args(policy, &[], &args);
    Some((db, a, b))
}

/// Every event in the shared log, read through `d`.
async fn log(d: &Daemon) -> Vec<Event> {
    d.admin().audit(&AuditParams { limit: Some(10_000), ..Default::default() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_made_on_a_and_approved_on_b_is_seen_on_a_and_the_chain_is_one() {
    let Some((_db, mut a, mut b)) = two_daemons(common::POLICY) else { return };
    let mut watching = a.user("alice").await.events(None).await.unwrap();
    let dave_on_a = a.user("dave").await;
    let journal = NewRequest {
        task: "journal".into(),
        duration_secs: Some(1800),
        reason: Some("mail flow".into()),
        ticket: Some("INC-1".into()),
        ..Default::default()
    };
    let id = dave_on_a.request(&journal).await.unwrap().request.id;
    // B hears of the request (it may come a moment after A answered) and approves it.
    let alice_on_b = b.user("alice").await;
    let mut on_b = alice_on_b.events(Some(0)).await.unwrap();
    wait_for_event(&mut on_b, PATIENCE, |e| matches!(e.change, Change::RequestCreated { request, .. } if request == id)).await;
    let grant = alice_on_b.approve(id, Some("ok".into())).await.unwrap().grant.expect("granted").id;
    // A's stream shows B's approval and grant; A's memory holds the grant.
    wait_for_event(&mut watching, PATIENCE, |e| matches!(e.change, Change::GrantStarted { grant: g, .. } if g == grant)).await;
    assert!(dave_on_a.check("journal", None).await.unwrap().allowed, "A decides on the grant B made");
    // One chain, the same read through either daemon, and it verifies.
    let (on_a, on_b) = (log(&a).await, log(&b).await);
    assert_eq!(on_a.iter().map(|e| &e.hash).collect::<Vec<_>>(), on_b.iter().map(|e| &e.hash).collect::<Vec<_>>());
    assert!(a.admin().verify().await.unwrap().ok && b.admin().verify().await.unwrap().ok);
    // Resuming by the last event id works on either daemon.
    let last = on_a.last().unwrap().seq;
    let mut resumed = b.admin().events(Some(last - 2)).await.unwrap();
    let first = wait_for_event(&mut resumed, PATIENCE, |_| true).await;
    assert_eq!(first.seq, last - 1, "the stream on B resumes right after the id given");
}

/// Two approvers approve the same two-approval request at the same moment, one on each
/// daemon, a hundred times: every request gets exactly one grant, with both approvals.
#[tokio::test(flavor = "multi_thread")]
async fn approvals_racing_on_two_daemons_make_exactly_one_grant() {
    let Some((_db, mut a, mut b)) = two_daemons(common::POLICY) else { return };
    let (dave, alice_on_a, bob_on_b) = (a.user("dave").await, a.user("alice").await, b.user("bob").await);
    let mut ids = Vec::new();
    for _ in 0..100 {
        let new = NewRequest { task: "export".into(), duration_secs: Some(600), ..Default::default() };
        let id = dave.request(&new).await.unwrap().request.id;
        let (x, y) = (alice_on_a.clone(), bob_on_b.clone());
        // Bob's daemon may not have heard of the request yet: then it reads it from the store.
        let (first, second) = tokio::join!(x.approve(id, None), y.approve(id, None));
        let grants = [first.unwrap().grant, second.unwrap().grant].into_iter().flatten().count();
        assert_eq!(grants, 1, "{id}: exactly one of the two approvals makes the grant");
        ids.push(id);
        // Each request is a fresh one: the previous grant ends so dave may ask again.
        dave.relinquish(a.admin().show_request(id).await.unwrap().request.grant.unwrap()).await.unwrap();
    }
    let events = log(&a).await;
    let mut started: BTreeMap<RequestId, usize> = BTreeMap::new();
    for e in &events {
        if let Change::GrantStarted { request, .. } = e.change {
            *started.entry(request).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(started.get(id), Some(&1), "{id} has exactly one grant_started");
    }
    assert!(a.admin().verify().await.unwrap().ok);
}

/// The test policy with `n` more people on call (u0, u1, ...), each of whom may ask for restart.
fn policy_with_people(n: usize) -> String {
    let people: Vec<String> = (0..n).map(|i| format!("\"u{i}\"")).collect();
    common::POLICY.replace(r#"oncall = ["carol", "dave"]"#, &format!(r#"oncall = ["carol", "dave", {}]"#, people.join(", ")))
}

/// 1,000 grants, made half on each daemon, ending within seconds of each other while both
/// daemons' deadline tasks are up: each ends exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_deadlines_end_exactly_once_with_both_daemons_up() {
    let Some((_db, mut a, mut b)) = two_daemons(&policy_with_people(1000)) else { return };
    let mut grants = BTreeSet::new();
    for i in 0..1000 {
        let on = if i % 2 == 0 { &mut a } else { &mut b };
        let person = on.user(&format!("u{i}")).await;
        let new = NewRequest { task: "restart".into(), duration_secs: Some(25), ..Default::default() };
        grants.insert(person.request(&new).await.unwrap().grant.expect("restart is granted at once").id);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !a.admin().grants(false).await.unwrap().is_empty() || !b.admin().grants(false).await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the grants did not all end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ended: BTreeMap<_, usize> = BTreeMap::new();
    for e in log(&a).await {
        if let Change::GrantExpired { grant, .. } = e.change {
            *ended.entry(grant).or_default() += 1;
        }
    }
    assert_eq!(ended.len(), 1000, "every grant expired");
    assert!(ended.values().all(|n| *n == 1), "each exactly once: {:?}", ended.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
    assert!(grants.iter().all(|g| ended.contains_key(g)));
    assert!(b.admin().verify().await.unwrap().ok);
}

/// Clients of both daemons write as fast as they can; A is killed with SIGKILL in the middle.
/// Every change either daemon acknowledged is in the log, B serves on throughout, A comes back
/// on the same log, and the chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_under_load_loses_no_acknowledged_change_and_the_other_serves_on() {
    let Some((_db, mut a, mut b)) = two_daemons(&policy_with_people(40)) else { return };
    let mut writers = Vec::new();
    for i in 0..40 {
        let on = if i % 2 == 0 { &mut a } else { &mut b };
        let person = on.user(&format!("u{i}")).await;
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let until = std::time::Instant::now() + Duration::from_secs(4);
            while std::time::Instant::now() < until {
                let new = NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() };
                // A refused or failed call (A is gone) acknowledged nothing; keep asking.
                if let Ok(granted) = person.request(&new).await {
                    let grant = granted.grant.expect("granted at once").id;
                    acknowledged.push(granted.request.id);
                    if person.relinquish(grant).await.is_err() {
                        break; // this writer's daemon is gone
                    }
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(b.admin().whoami().await.is_ok(), "B serves on");
    let created: BTreeSet<RequestId> = log(&b)
        .await
        .iter()
        .filter_map(|e| match e.change {
            Change::RequestCreated { request, .. } => Some(request),
            _ => None,
        })
        .collect();
    assert!(acknowledged.len() > 40, "the load really ran: {} acknowledged", acknowledged.len());
    let lost: Vec<_> = acknowledged.iter().filter(|id| !created.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
    a.spawn();
    assert!(a.admin().verify().await.unwrap().ok, "the chain verifies through the restarted A");
    assert_eq!(log(&a).await.len(), log(&b).await.len());
}

/// A run belongs to the daemon that started it. Another daemon records it abandoned only once
/// the owner's heartbeats have not reached the store for 30 s by the store's clock (the
/// daemons' own clocks, here ten minutes apart, change nothing), and only once. The owner,
/// alive after all, then stops the run's processes and records no second end. The daemons run
/// in this process on the real PostgreSQL, reached through the real client; the owner's
/// heartbeats are kept from the store by a trigger, and its last one aged, in SQL.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_is_abandoned_by_another_daemon_only_after_its_owners_heartbeats_stop() {
    let Some(db) = PgDatabase::create() else { return };
    let daemons = in_process_pair(&db, "617", [0, 10]).await;
    let (a, b) = (&daemons[0].1, &daemons[1].1);
    assert_ne!(a.engine.identity(), b.engine.identity(), "each daemon has its own identity");
    let (run, mut output) = start_waiting(a, "617").await;
    let owner = a.engine.read(|s, _| s.runs[&run].daemon.clone());
    assert_eq!(owner.as_deref(), Some(a.engine.identity()), "the run names the daemon that runs it");
    let running_on_b = || b.engine.read(|s, _| s.running.contains(&run));
    let deadline = std::time::Instant::now() + PATIENCE;
    while !running_on_b() {
        assert!(std::time::Instant::now() < deadline, "B never heard of the run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What B's heartbeat task does every 5 s, done now: record abandoned the runs of daemons
    // whose heartbeats lapsed.
    let look_on_b = || look_for_lapsed(b, &db);
    // By B's clock A's last heartbeat is ten minutes old; by the store's it is fresh.
    look_on_b().await;
    assert!(running_on_b(), "a daemon whose clock is ahead does not take another for dead");
    // A's heartbeats stop counting (a trigger keeps their time from changing, while A sees
    // them written, as a store losing them would; the test's own session may set the time),
    // and its last one is 15 s old: within its lease.
    let a_id = a.engine.identity().to_string();
    db.batch(&format!(
        "CREATE FUNCTION drop_beats() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
           IF OLD.id = '{a_id}' AND current_setting('zsa_test.aging', true) IS DISTINCT FROM 'yes' THEN
             NEW.heartbeat_at := OLD.heartbeat_at;
           END IF;
           RETURN NEW; END $$;
         CREATE TRIGGER drop_beats BEFORE UPDATE ON daemons FOR EACH ROW EXECUTE FUNCTION drop_beats();"
    ));
    let age_a = |secs: u32| {
        db.batch(&format!(
            "SET zsa_test.aging = 'yes'; UPDATE daemons SET heartbeat_at = clock_timestamp() - interval '{secs} seconds' WHERE id = '{a_id}'"
        ))
    };
    age_a(15);
    // A beats at least once meanwhile (every 5 s): a beat that did not count changes nothing
    // for A, and the age only grows (21 s).
    tokio::time::sleep(zsa::daemon::peers::HEARTBEAT + Duration::from_secs(1)).await;
    assert_eq!(a.stopped_because(), None, "A goes on");
    look_on_b().await;
    assert!(running_on_b(), "a run is not abandoned within its owner's lease");
    // 31 s: A is taken for dead; B records the run abandoned, once, however often it looks.
    age_a(31);
    look_on_b().await;
    look_on_b().await;
    assert!(!running_on_b(), "the run of a daemon whose heartbeats stopped is abandoned");
    // A was alive all along: it hears of it, stops the run's processes, and tells its client.
    let ended = ended(&mut output, PATIENCE).await;
    assert_eq!(ended.0.as_str(), "abandoned");
    assert!(ended.1.contains("another daemon recorded this run abandoned"), "{}", ended.1);
    assert_eq!(sleeping("617"), 0, "the owner stopped the abandoned run's process");
    let ended: Vec<_> =
        log_of(&b.socket).await.into_iter().filter(|e| matches!(&e.change, Change::RunEnded { run: r, .. } if *r == run)).collect();
    assert_eq!(ended.len(), 1, "ended exactly once (abandoned by B; A recorded no second end): {ended:?}");
    assert!(matches!(&ended[0].change, Change::RunEnded { outcome, .. } if outcome.as_str() == "abandoned"));
    for (_, handle) in daemons {
        handle.shutdown().await;
    }
}

/// Two daemons in this process on one database, on manual clocks set the given minutes ahead of
/// now, whose policy lets the test's account run `sleep SECONDS` (a length no other test uses,
/// so its process can be looked for).
async fn in_process_pair(db: &PgDatabase, seconds: &str, minutes_ahead: [i64; 2]) -> Vec<(tempfile::TempDir, zsa::daemon::DaemonHandle)> {
    use std::sync::Arc;
    use zsa::clock::ManualClock;
    use zsa::daemon::{DaemonConfig, start};
    let policy = format!(
        "{}\n[[tasks]]\nname = \"wait\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\nrun = [\"/bin/sleep\", \"{seconds}\"]\n",
        common::POLICY.replace(r#"oncall = ["carol", "dave"]"#, r#"oncall = ["carol", "dave", "{ADMIN}"]"#)
    );
    let t0 = chrono::Utc::now();
    let mut daemons = Vec::new();
    for ahead in minutes_ahead {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy.replace("{ADMIN}", &common::current_user())).unwrap();
        let config = DaemonConfig {
            state_dir: dir.path().join("state"),
            policy: dir.path().join("policy.toml"),
            socket: dir.path().join("zsa.sock"),
            store: Some(zsa::store::Location::Postgres(db.url.clone())),
            ..Default::default()
        };
        let clock = Arc::new(ManualClock::new(t0 + chrono::Duration::minutes(ahead)));
        let handle = start(config, clock).await.expect("the daemon starts");
        daemons.push((dir, handle));
    }
    daemons
}

/// What a daemon's heartbeat task does every 5 s, done on `d` now: record abandoned the runs
/// of daemons whose heartbeats lapsed, as a session on `db` reads them.
async fn look_for_lapsed(d: &zsa::daemon::DaemonHandle, db: &PgDatabase) {
    let (e, store) = (d.engine.clone(), zsa::store::Location::Postgres(db.url.clone()));
    tokio::task::spawn_blocking(move || {
        let beats = zsa::store::open(&store).unwrap().heartbeats().unwrap();
        zsa::daemon::peers::abandon_lapsed(&e, &beats)
    })
    .await
    .unwrap()
    .unwrap()
}

/// How many `sleep SECONDS` processes are going on this machine.
fn sleeping(seconds: &str) -> usize {
    let cmdline = format!("/bin/sleep\0{seconds}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|p| std::fs::read(p.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.as_slice() == cmdline.as_bytes())
        .count()
}

/// Starts the `wait` task on `d` as the test's account; the run's id once its process is going.
async fn start_waiting(d: &zsa::daemon::DaemonHandle, seconds: &str) -> (zsa::model::RunId, zsa::client::RunStream) {
    use zsa::model::wire::RunRequest;
    let me = zsa::client::Client::new(&d.socket, None).unwrap();
    me.request(&NewRequest { task: "wait".into(), ..Default::default() }).await.unwrap();
    let output = me.run(&RunRequest { task: "wait".into(), params: Default::default() }).await.unwrap();
    let run = *d.engine.read(|s, _| s.running.iter().next().copied()).iter().next().expect("the run is going");
    let deadline = std::time::Instant::now() + PATIENCE;
    while sleeping(seconds) == 0 {
        assert!(std::time::Instant::now() < deadline, "the run's process never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (run, output)
}

/// How the run whose output this is ended, as its daemon told the client.
async fn ended(output: &mut zsa::client::RunStream, within: Duration) -> (zsa::model::RunOutcome, String) {
    use zsa::model::wire::RunOutput;
    loop {
        match tokio::time::timeout(within, output.next()).await.expect("the daemon told its client how the run ended") {
            Some(Ok(RunOutput::Ended { outcome, message, .. })) => return (outcome, message),
            Some(Ok(_)) => {}
            other => panic!("the run's output ended without saying how the run did: {other:?}"),
        }
    }
}

/// A daemon that cannot tell the store it is alive stops its runs itself (after 15 s without a
/// heartbeat), before another daemon (after 30 s) would take them for abandoned while they run;
/// it records their end once, and starts none meanwhile. The store refuses only its heartbeats
/// (a trigger), so its other writes go through.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_that_cannot_say_it_is_alive_stops_its_runs_before_others_take_them() {
    let Some(db) = PgDatabase::create() else { return };
    let daemons = in_process_pair(&db, "618", [0, 0]).await;
    let (a, b) = (&daemons[0].1, &daemons[1].1);
    let (run, mut output) = start_waiting(a, "618").await;
    let a_id = a.engine.identity().to_string();
    db.batch(&format!(
        "CREATE FUNCTION refuse_beats() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
           IF OLD.id = '{a_id}' THEN RAISE EXCEPTION 'the test refuses this heartbeat'; END IF;
           RETURN NEW; END $$;
         CREATE TRIGGER refuse_beats BEFORE UPDATE ON daemons FOR EACH ROW EXECUTE FUNCTION refuse_beats();"
    ));
    let (outcome, message) = ended(&mut output, Duration::from_secs(60)).await;
    assert_eq!(outcome.as_str(), "abandoned");
    assert!(message.contains("could not tell the shared store it is alive"), "{message}");
    assert_eq!(sleeping("618"), 0, "the run's process was stopped");
    // No run starts while the daemon cannot say it is alive.
    let me = zsa::client::Client::new(&a.socket, None).unwrap();
    let refused = me.run(&zsa::model::wire::RunRequest { task: "wait".into(), params: Default::default() }).await;
    let refused = match refused {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a run started on a daemon that cannot say it is alive"),
    };
    assert!(refused.contains("cannot tell the shared store it is alive"), "{refused}");
    // Its end is on record once, by A; B, looking after A's lease ran out, finds nothing to do.
    let ends =
        |events: Vec<Event>| events.into_iter().filter(|e| matches!(&e.change, Change::RunEnded { run: r, .. } if *r == run)).count();
    assert_eq!(ends(log_of(&a.socket).await), 1);
    db.batch("DROP TRIGGER refuse_beats ON daemons");
    db.batch(&format!("UPDATE daemons SET heartbeat_at = clock_timestamp() - interval '31 seconds' WHERE id = '{a_id}'"));
    look_for_lapsed(b, &db).await;
    assert_eq!(ends(log_of(&b.socket).await), 1, "ended exactly once");
    for (_, handle) in daemons {
        handle.shutdown().await;
    }
}

/// A daemon's identity is one process's at a time: a copy of a state directory (daemon-id and
/// all) is refused while the original is alive, saying why and what to do, and changes
/// nothing; the original restarted at once after a crash starts (its predecessor is known
/// gone, so it does not wait out the lease); and a daemon whose identity another process took
/// stops, saying why.
#[tokio::test(flavor = "multi_thread")]
async fn one_identity_is_one_process_a_copy_is_refused_and_a_crash_restarts_at_once() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let Some(db) = PgDatabase::create() else { return };
    let args = vec!["--store".to_string(), db.url.clone()];
    let mut a = Daemon::unstarted(common::POLICY);
    a.args = args.clone();
    let a_log = a.dir.path().join("daemon.log");
    a.log = Some(a_log.clone());
    a.spawn();
    let identity = std::fs::read_to_string(a.state.join("daemon-id")).unwrap().trim().to_string();
    // A copy of A's state directory, as a restored backup or a cloned machine would make.
    let mut copy = Daemon::unstarted(common::POLICY);
    copy.args = args.clone();
    std::fs::DirBuilder::new().mode(0o700).create(&copy.state).unwrap();
    std::fs::copy(a.state.join("daemon-id"), copy.state.join("daemon-id")).unwrap();
    std::fs::set_permissions(copy.state.join("daemon-id"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = log(&a).await.len();
    let mark = || db.text(&format!("SELECT mark FROM daemons WHERE id = '{identity}'"));
    let held = mark();
    let refused = copy.start_refused(&[]).expect("a copy of a running daemon's identity is refused");
    let said = common::stderr(&refused);
    assert_ne!(refused.status.code(), Some(0));
    assert!(said.contains(&format!("identity '{identity}'")) && said.contains("is in use"), "{said}");
    assert!(said.contains(&format!("pid {}", a.pid())), "the refusal names the process holding it: {said}");
    assert!(said.contains("give this one a state directory of its own"), "the refusal says what to do: {said}");
    assert_eq!(log(&a).await.len(), before, "the refused start wrote nothing");
    assert_eq!(mark(), held, "the original keeps its identity");
    assert!(a.admin().whoami().await.is_ok(), "the original serves on");
    // A copy in a PID namespace of its own with its own /proc (a container on the same host),
    // where the original's pid names no process, is refused too.
    if nix::unistd::geteuid().is_root() {
        let inner = copy.command();
        let mut outer = std::process::Command::new("unshare");
        outer.args(["--pid", "--fork", "--mount-proc", "--"]).arg(inner.get_program()).args(inner.get_args());
        outer.envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
        let mut child = outer.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let deadline = std::time::Instant::now() + PATIENCE;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("a copy in another PID namespace started (or hung) instead of being refused");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let said = common::stderr(&child.wait_with_output().unwrap());
        assert!(said.contains("is in use"), "{said}");
        assert_eq!(mark(), held, "the original keeps its identity");
    } else {
        println!("SKIPPED the PID-namespace part: unshare --pid needs root");
    }
    // A crashes and is started again at once: its predecessor is gone, so it need not wait.
    a.restart_after_kill();
    assert!(a.admin().whoami().await.is_ok());
    // The copy is still refused: the restarted A is alive.
    assert!(copy.start_refused(&[]).is_some(), "the copy is refused while the restarted daemon lives");
    // Another process takes A's identity behind its back (a copy started while A was cut off
    // from the store for its whole lease would): A stops at its next heartbeat, saying why.
    let taken = db.execute(&format!("UPDATE daemons SET mark = 'another', pid = 1, host = 'elsewhere' WHERE id = '{identity}'"));
    assert_eq!(taken, 1);
    let status = a.exited_within(PATIENCE).expect("a daemon whose identity was taken stops");
    assert!(!status.success(), "it stops with a failure, so a service manager sees it: {status}");
    let said = std::fs::read_to_string(&a_log).unwrap();
    assert!(
        said.contains(&format!(
            "another process now holds this daemon's identity '{identity}' in the shared store (pid 1 on host elsewhere)"
        )),
        "{said}"
    );
}

async fn log_of(socket: &std::path::Path) -> Vec<Event> {
    let admin = zsa::client::Client::new(socket, None).unwrap();
    admin.audit(&AuditParams { limit: Some(10_000), ..Default::default() }).await.unwrap()
}

/// The policy in force is the newest one loaded on any daemon: one whose file is the same
/// follows at once; one whose file is another decides nothing and says why, until its file is
/// the same and reloaded. Reads go on meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_loaded_on_one_daemon_is_in_force_on_all_or_the_others_say_why_they_wait() {
    let Some((_db, mut a, mut b)) = two_daemons(common::POLICY) else { return };
    let task =
        |name: &str| format!("[[tasks]]\nname = \"{name}\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\n");
    let base = common::POLICY.replace("{ADMIN}", &common::current_user());
    let ask = |name: &str| NewRequest { task: name.into(), duration_secs: Some(60), ..Default::default() };
    let dave_on_b = b.user("dave").await;

    // The same new file on both hosts, loaded on A: B puts it in force too.
    let second = format!("{base}{}", task("purge"));
    std::fs::write(&a.policy, &second).unwrap();
    std::fs::write(&b.policy, &second).unwrap();
    a.admin().reload().await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while dave_on_b.request(&ask("purge")).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "B never took up the policy A loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A newer file only on A: B refuses to decide, saying why and what to do; it still reads.
    let third = format!("{second}{}", task("rotate"));
    std::fs::write(&a.policy, &third).unwrap();
    a.admin().reload().await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let refusal = loop {
        match dave_on_b.request(&ask("restart")).await {
            Err(zsa::client::ClientError::Refused { status, code, message }) if code == "policy_differs" => break (status, message),
            _ => {
                assert!(std::time::Instant::now() < deadline, "B went on deciding on a policy no longer in force");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(refusal.0, 409);
    assert!(refusal.1.contains("is not the policy in force") && refusal.1.contains("zsa admin reload"), "{}", refusal.1);
    assert!(b.admin().grants(false).await.is_ok(), "B still answers reads");

    // The same file put on B and reloaded there: B decides again, and A is undisturbed.
    std::fs::write(&b.policy, &third).unwrap();
    b.admin().reload().await.unwrap();
    dave_on_b.request(&ask("rotate")).await.expect("B decides on the policy in force");
    a.user("carol").await.request(&ask("rotate")).await.expect("A decides as before");
}

/// A daemon that cannot follow the store it shares (here: a row written behind every daemon's
/// back that does not continue the chain) stops vouching for access from memory: within a few
/// seconds its `check` answers 503, never yes, saying why, since another daemon may have ended
/// the grant meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_that_cannot_follow_its_shared_store_stops_saying_yes() {
    let Some((db, mut a, _b)) = two_daemons(common::POLICY) else { return };
    let dave = a.user("dave").await;
    dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    assert!(dave.check("restart", None).await.unwrap().allowed);
    let forged = db.execute(
        "INSERT INTO events (seq, at, actor, kind, body, prev_hash, hash) \
         SELECT MAX(seq) + 1, '2026-01-01T00:00:00.000000Z', 'mallory', 'user_enabled', '{\"user\":\"x\"}', 'forged', 'forged' FROM events",
    );
    assert_eq!(forged, 1);
    let deadline = std::time::Instant::now() + PATIENCE;
    let (status, message) = loop {
        match dave.check("restart", None).await {
            Err(zsa::client::ClientError::Refused { status, code, message }) if code == "store_behind" => break (status, message),
            Ok(answer) => assert!(answer.allowed, "{answer:?}"),
            Err(e) => panic!("an unexpected answer: {e}"),
        }
        assert!(std::time::Instant::now() < deadline, "the daemon went on vouching from memory it could not bring up to date");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503);
    assert!(message.contains("cannot vouch that a grant still holds"), "{message}");
}

/// A session that holds the store's append lock and never lets go (a stuck daemon, a stray
/// `psql`) cannot hold a daemon hostage: its write gives up after the lock wait and is refused
/// as unavailable with nothing changed, its reads answer meanwhile, and once the lock is free it
/// writes again.
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_elsewhere_makes_writes_unavailable_not_stuck() {
    let Some((db, mut a, _b)) = two_daemons(common::POLICY) else { return };
    let dave = a.user("dave").await;
    let restart = NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() };
    // The lock every append takes (src/store/postgres.rs APPEND_LOCK), held by a session of the test's.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = std::sync::mpsc::channel::<()>();
    let url = db.url.clone();
    let holder = std::thread::spawn(move || {
        let mut session = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        session.execute("SELECT pg_advisory_lock($1)", &[&0x7a73_615f_6865_6164_i64]).unwrap();
        held.send(()).unwrap();
        released.recv().unwrap();
        drop(session);
    });
    is_held.recv().unwrap();
    let waited = tokio::time::timeout(PATIENCE, dave.request(&restart)).await;
    let err = waited.expect("the write waited for the lock without end").expect_err("a write cannot go through while the lock is held");
    match err {
        zsa::client::ClientError::Refused { status, code, .. } => assert_eq!((status, code.as_str()), (503, "storage_failed")),
        other => panic!("an unexpected answer: {other}"),
    }
    assert!(dave.whoami().await.is_ok(), "reads answer meanwhile");
    assert!(dave.grants(false).await.unwrap().is_empty(), "nothing was granted");
    release.send(()).unwrap();
    holder.join().unwrap();
    assert!(dave.request(&restart).await.unwrap().grant.is_some(), "with the lock free it writes again");
}
