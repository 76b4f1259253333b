//! `cargo bench --bench load [-- NAME...]`: the real daemon, measured over its Unix socket, each
//! number printed next to the physical limit measured in the same run:
//!   check     check throughput and latency (1, 8, 64 clients) next to a bare axum handler
//!   writes    durable writes per second next to raw single-row SQLite commits (WAL, FULL)
//!   postgres  the same with the state in this machine's PostgreSQL, next to raw PostgreSQL commits
//!   fanout    approval to event arrival at 100 event-stream clients
//!   expiry    lateness of 10,000 grants ending within the same minute
//!   start     start time and memory with 1,000,000 events; an audit query for one user, one week
//!   console   the console's idle CPU with 100,000 items on screen
//!   notices   approve with notices off, then on through a webhook that never answers
//!   idle      `check` while 2,700 idle connections are held, at an open-file limit of 1024
//!   headers   daemon memory with 6,000 connections that sent most of a head and stopped
//!   streams   approvals while 900 streams from users with no role catch up from the start
//!   tls       check over TLS next to a bare handler behind the same TLS; fresh checks while
//!             2,000 idle TCP connections and 500 unread TLS event streams are held
//! The last three act as other accounts (a uid taken by one thread), so they need root.
//! With no names, all run. Results go to stdout as a Markdown table.

#[path = "common/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use fixtures::Builder;
use zsa::client::{Address, Endpoint};
use zsa::client::{AuditParams, Client};
use zsa::clock::SystemClock;
use zsa::daemon::{DaemonConfig, DaemonHandle, TlsListener, start};
use zsa::model::Change;
use zsa::model::wire::NewRequest;
use zsa::notify::outbox::DeliveryState;
use zsa::rules::Command;
use zsa::tls::Trust;

struct Row(String, String, String, String);

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name).unwrap_or_else(|| "root".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn daemon(dir: &Path) -> DaemonHandle {
    daemon_with(dir, &fixtures::policy_text(&me())).await
}

async fn daemon_with(dir: &Path, policy_text: &str) -> DaemonHandle {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, policy_text).unwrap();
    start(DaemonConfig { state_dir: dir.join("state"), policy, socket: dir.join("zsa.sock"), ..Default::default() }, Arc::new(SystemClock))
        .await
        .unwrap()
}

async fn token_client(h: &DaemonHandle, user: &str) -> Client {
    let admin = Client::new(&h.socket, None).unwrap();
    let t = admin.issue_token(user).await.unwrap();
    Client::new(&h.socket, Some(t.token)).unwrap()
}

/// Hammers `path` on `socket` from `clients` connections for `secs`; returns (per second, sorted latencies).
async fn hammer(socket: &Path, path: &'static str, clients: usize, secs: u64) -> (f64, Vec<Duration>) {
    hammer_with(|| reqwest::Client::builder().unix_socket(socket).build().unwrap(), format!("http://zsa{path}"), clients, secs).await
}

/// Hammers `url` from `clients` clients (each one kept-alive connection) that `make` builds.
async fn hammer_with(make: impl Fn() -> reqwest::Client, url: String, clients: usize, secs: u64) -> (f64, Vec<Duration>) {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url) = (make(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let r = http.get(&url).send().await.unwrap();
                let _ = r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    (all.len() as f64 / secs as f64, all)
}

/// The limit `check` is measured against: a bare axum handler answering a similar JSON body.
fn bare_app() -> axum::Router {
    axum::Router::new().route(
        "/v1/check",
        axum::routing::get(|| async {
            axum::Json(serde_json::json!({"allowed": true, "user": "u7", "task": "restart", "message": "u7 holds G1"}))
        }),
    )
}

async fn check(rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let h = daemon(dir.path()).await;
    let u7 = token_client(&h, "u7").await;
    u7.request(&NewRequest { task: "restart".into(), duration_secs: Some(3600), ..Default::default() }).await.unwrap();
    // The limit: a bare axum handler answering a similar JSON body on the same kind of socket.
    let bare_sock = dir.path().join("bare.sock");
    let listener = tokio::net::UnixListener::bind(&bare_sock).unwrap();
    let app = bare_app();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for clients in [1, 8, 64] {
        let (zsa_rate, zsa_lat) = hammer(&h.socket, "/v1/check?task=restart&user=u7", clients, 3).await;
        let (bare_rate, bare_lat) = hammer(&bare_sock, "/v1/check", clients, 3).await;
        rows.push(Row(
            format!("check, {clients} client(s): requests/s"),
            format!("{zsa_rate:.0}"),
            format!("{bare_rate:.0} (bare axum)"),
            format!("{:.2}", zsa_rate / bare_rate),
        ));
        for (label, p) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            rows.push(Row(
                format!("check, {clients} client(s): {label}"),
                ms(percentile(&zsa_lat, p)),
                ms(percentile(&bare_lat, p)),
                format!("{:.2}", percentile(&zsa_lat, p).as_secs_f64() / percentile(&bare_lat, p).as_secs_f64().max(1e-9)),
            ));
        }
    }
    h.shutdown().await;
}

/// Raw single-row commits with the daemon's journal and synchronous settings, same disk.
fn raw_sqlite_commits(dir: &Path, secs: u64) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)).unwrap();
    conn.execute_batch("PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);").unwrap();
    let body = "x".repeat(300);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < until {
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute("INSERT INTO t (body) VALUES (?1)", [&body]).unwrap();
        tx.commit().unwrap();
        n += 1;
    }
    n as f64 / secs as f64
}

/// The daemon's commit counters from `/metrics`: transactions, the commands they carried, the
/// seconds spent committing, and the commands that waited for the writer and how long in all.
async fn commit_metrics(admin: &Client) -> [f64; 5] {
    let text = admin.metrics().await.unwrap();
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
    [
        "zsa_commit_batch_commands_count ",
        "zsa_commit_batch_commands_sum ",
        "zsa_commit_seconds_sum ",
        "zsa_write_wait_seconds_count ",
        "zsa_write_wait_seconds_sum ",
    ]
    .map(value)
}

/// Request+approve pairs per second over 4 s from `clients` requesters (u100...), alice approving,
/// and how long each command took as its client saw it (sorted).
async fn request_approve_pairs(socket: &Path, clients: usize) -> (f64, Vec<Duration>) {
    let admin = Client::new(socket, None).unwrap();
    let token = |user: String| {
        let admin = admin.clone();
        let socket = socket.to_path_buf();
        async move { Client::new(&socket, Some(admin.issue_token(&user).await.unwrap().token)).unwrap() }
    };
    let alice = token("alice".into()).await;
    let mut tasks = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    for i in 0..clients {
        let u = token(format!("u{}", 100 + i)).await;
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            while Instant::now() < until {
                let new = NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() };
                let t = Instant::now();
                let id = u.request(&new).await.unwrap().request.id;
                took.push(t.elapsed());
                let t = Instant::now();
                alice.approve(id, None).await.unwrap();
                took.push(t.elapsed());
            }
            took
        }));
    }
    let mut took = Vec::new();
    for t in tasks {
        took.extend(t.await.unwrap());
    }
    took.sort();
    (took.len() as f64 / 2.0 / 4.0, took)
}

/// Raw single-row commits to the machine's PostgreSQL over loopback, durable at commit as the
/// store's are (`synchronous_commit = on`), in a database of the bench's own.
fn raw_postgres_commits(url: &str, secs: u64) -> f64 {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.batch_execute("SET synchronous_commit = on; CREATE TABLE t (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)").unwrap();
    let body = "x".repeat(300);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < until {
        let mut tx = client.transaction().unwrap();
        tx.execute("INSERT INTO t (body) VALUES ($1)", &[&body]).unwrap();
        tx.commit().unwrap();
        n += 1;
    }
    n as f64 / secs as f64
}

/// Durable writes with the state in PostgreSQL (this machine's, 127.0.0.1:5432), next to raw
/// single-row PostgreSQL commits on the same server in the same run.
async fn postgres_writes(rows: &mut Vec<Row>) {
    const SERVER: &str = "postgres://root@127.0.0.1:5432/test";
    let name = format!("zsa_bench_{}", std::process::id());
    let admin_sql = move |sql: String| {
        std::thread::spawn(move || postgres::Client::connect(SERVER, postgres::NoTls).unwrap().batch_execute(&sql).unwrap()).join().unwrap()
    };
    for db in [format!("{name}_raw"), name.clone()] {
        admin_sql(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        admin_sql(format!("CREATE DATABASE {db}"));
    }
    let raw_url = format!("postgres://root@127.0.0.1:5432/{name}_raw");
    let raw = tokio::task::spawn_blocking(move || raw_postgres_commits(&raw_url, 4)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, _, socket) = spawn_daemon_with(dir.path(), &["--store", &format!("postgres://root@127.0.0.1:5432/{name}")]);
    for clients in [1usize, 8] {
        let (per_sec, _) = request_approve_pairs(&socket, clients).await;
        rows.push(Row(
            format!("writes on PostgreSQL, 1 daemon, {clients} client(s): request+approve pairs/s (2 commits each)"),
            format!("{per_sec:.0} pairs = {:.0} commits/s", per_sec * 2.0),
            format!("{raw:.0} raw PostgreSQL commits/s"),
            format!("{:.2}", per_sec * 2.0 / raw),
        ));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    admin_sql(format!("CREATE DATABASE {name}"));
    postgres_two_daemons(rows, raw, &format!("postgres://root@127.0.0.1:5432/{name}")).await;
    for db in [format!("{name}_raw"), name] {
        admin_sql(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    }
}

/// A daemon in this process on `store`, with the bench policy (its own state directory in `dir`).
async fn daemon_on(dir: &Path, store: zsa::store::Location) -> DaemonHandle {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, fixtures::policy_text(&me())).unwrap();
    let config =
        DaemonConfig { state_dir: dir.join("state"), policy, socket: dir.join("zsa.sock"), store: Some(store), ..Default::default() };
    start(config, Arc::new(SystemClock)).await.unwrap()
}

/// Two daemons in this process on one PostgreSQL database: request+approve pairs with each
/// request made on one daemon and approved on the other (every pair crosses), how often a
/// decision was made again because the other daemon wrote first, and how long an approval on
/// B takes to reach 10 event streams on A.
async fn postgres_two_daemons(rows: &mut Vec<Row>, raw: f64, url: &str) {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let location = zsa::store::Location::Postgres(url.to_string());
    let (a, b) = (daemon_on(dir_a.path(), location.clone()).await, daemon_on(dir_b.path(), location).await);
    let alice_on = [token_client(&a, "alice").await, token_client(&b, "alice").await];
    let mut requesters = Vec::new();
    for i in 0..8 {
        let on = if i % 2 == 0 { &a } else { &b };
        requesters.push((i % 2, token_client(on, &format!("u{}", 300 + i)).await));
    }
    let before = (a.engine.concurrency().0, b.engine.concurrency().0);
    let until = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for (side, u) in requesters {
        let approver = alice_on[1 - side].clone();
        tasks.push(tokio::spawn(async move {
            let mut pairs = 0u64;
            while Instant::now() < until {
                let new = NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() };
                let id = u.request(&new).await.unwrap().request.id;
                approver.approve(id, None).await.unwrap();
                pairs += 1;
            }
            pairs
        }));
    }
    let mut pairs = 0;
    for t in tasks {
        pairs += t.await.unwrap();
    }
    let per_sec = pairs as f64 / 4.0;
    let retries = a.engine.concurrency().0 + b.engine.concurrency().0 - before.0 - before.1;
    rows.push(Row(
        "writes on PostgreSQL, 2 daemons, 8 clients, each request made on one daemon and approved on the other: pairs/s".into(),
        format!("{per_sec:.0} pairs = {:.0} commits/s", per_sec * 2.0),
        format!("{raw:.0} raw PostgreSQL commits/s"),
        format!("{:.2}", per_sec * 2.0 / raw),
    ));
    rows.push(Row(
        "same: decisions made again because the other daemon wrote first".into(),
        format!("{retries} of {} commits ({:.1} %)", pairs * 2, retries as f64 * 100.0 / (pairs * 2).max(1) as f64),
        String::new(),
        String::new(),
    ));
    // Cross-daemon fan-out: approvals on B, seen by 10 streams on A (approvers' consoles: alice
    // and bob, 5 each, within the per-token cap).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let watchers = [token_client(&a, "alice").await, token_client(&a, "bob").await];
    for i in 0..10 {
        let mut stream = watchers[i % 2].events(None).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(e)) = stream.next().await {
                if matches!(e.change, Change::GrantStarted { .. }) {
                    let _ = tx.send(Instant::now());
                }
            }
        });
    }
    let u1 = token_client(&a, "u1").await;
    let mut lat = Vec::new();
    for _ in 0..100 {
        let id =
            u1.request(&NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() }).await.unwrap().request.id;
        // B knows the request once it followed A; the approval is timed from its answer.
        alice_on[1].approve(id, None).await.unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            let at = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            lat.push(at.saturating_duration_since(t0));
        }
    }
    lat.sort();
    rows.push(Row(
        "approval on daemon B to the event on 10 streams of daemon A (PostgreSQL): p50 / p99 / max".into(),
        spread(&lat),
        "p99 100 ms (target)".into(),
        String::new(),
    ));
    a.shutdown().await;
    b.shutdown().await;
}

async fn writes(rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_sqlite_commits(dir.path(), 4);
    // The daemon as it runs in production: its own process, so the clients here do not share
    // its threads.
    let (mut daemon, _, socket) = spawn_daemon(dir.path());
    let admin = Client::new(&socket, None).unwrap();
    for clients in [1usize, 8, 32] {
        let before = commit_metrics(&admin).await;
        let (per_sec, took) = request_approve_pairs(&socket, clients).await;
        let after = commit_metrics(&admin).await;
        let [transactions, commands, seconds, waits, waited] = [0, 1, 2, 3, 4].map(|i| after[i] - before[i]);
        rows.push(Row(
            format!("writes, {clients} client(s): request+approve pairs/s (2 commits each); a command (either) p50 / p99"),
            format!(
                "{per_sec:.0} pairs = {:.0} commits/s; {} / {}",
                per_sec * 2.0,
                ms(percentile(&took, 0.5)),
                ms(percentile(&took, 0.99))
            ),
            format!("{raw:.0} raw commits/s"),
            format!("{:.2}", per_sec * 2.0 / raw),
        ));
        // (A daemon from before group commit has no batch histogram: nothing to say.)
        if transactions > 0.0 {
            rows.push(Row(
                "  same run: commands a transaction (group commit), its commit; a command's mean: wait for the writer / whole".into(),
                format!(
                    "{:.2} a transaction, {} each, {:.0} % of the 4 s; {} / {}",
                    commands / transactions,
                    ms(Duration::from_secs_f64(seconds / transactions)),
                    seconds / 4.0 * 100.0,
                    ms(Duration::from_secs_f64(waited / waits.max(1.0))),
                    ms(took.iter().sum::<Duration>() / took.len().max(1) as u32)
                ),
                String::new(),
                String::new(),
            ));
        }
    }
    // Beside the writes: an answer with nothing to write, decide or authenticate (and logged at
    // debug, not info), one client back to back on the same daemon. Not a write minus its
    // commit: what the round trip itself costs when the CPUs stay busy.
    let (_, bare) = hammer(&socket, "/v1/health", 1, 2).await;
    rows.push(Row(
        "an answer with nothing to write, decide or authenticate (GET /v1/health), 1 client back to back: p50 / p99".into(),
        format!("{} / {}", ms(percentile(&bare, 0.5)), ms(percentile(&bare, 0.99))),
        String::new(),
        String::new(),
    ));
    // `check` at 8 clients, alone and then while 8 writers run at full rate (both at once).
    let u7 = Client::new(&socket, Some(admin.issue_token("u7").await.unwrap().token)).unwrap();
    u7.request(&NewRequest { task: "restart".into(), duration_secs: Some(3600), ..Default::default() }).await.unwrap();
    let path = "/v1/check?task=restart&user=u7";
    let (alone_rate, alone) = hammer(&socket, path, 8, 4).await;
    let ((during_rate, during), (pairs, _)) = tokio::join!(hammer(&socket, path, 8, 4), request_approve_pairs(&socket, 8));
    rows.push(Row(
        "check, 8 clients, alone / while 8 writers run: requests/s, p50 / p99".into(),
        format!(
            "alone {alone_rate:.0}/s, {} / {}; during {during_rate:.0}/s, {} / {}",
            ms(percentile(&alone, 0.5)),
            ms(percentile(&alone, 0.99)),
            ms(percentile(&during, 0.5)),
            ms(percentile(&during, 0.99))
        ),
        format!("writes meanwhile: {:.0} commits/s", pairs * 2.0),
        format!("{:.2}", percentile(&during, 0.99).as_secs_f64() / percentile(&alone, 0.99).as_secs_f64()),
    ));
    let _ = daemon.kill();
    let _ = daemon.wait();
    // The same pairs straight through the engine, without HTTP: what the store and the rules cost.
    let engine_dir = dir.path().join("engine");
    std::fs::create_dir_all(&engine_dir).unwrap();
    let h = self::daemon(&engine_dir).await;
    let engine = h.engine.clone();
    let pairs = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_secs(4);
        let mut pairs = 0u64;
        while Instant::now() < until {
            let new = NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() };
            let events = engine.execute("u200", Command::Request(new)).unwrap();
            let Change::RequestCreated { request, .. } = events[0].change else { panic!("{events:?}") };
            engine.execute("alice", Command::Approve { request, comment: None, signature: None }).unwrap();
            pairs += 1;
        }
        pairs
    })
    .await
    .unwrap();
    let per_sec = pairs as f64 / 4.0;
    rows.push(Row(
        "writes through the engine alone (no HTTP), 1 thread".into(),
        format!("{per_sec:.0} pairs = {:.0} commits/s", per_sec * 2.0),
        format!("{raw:.0} raw commits/s"),
        format!("{:.2}", per_sec * 2.0 / raw),
    ));
    h.shutdown().await;
}

/// What signed checkpoints cost next to the writes they cover: a whole checkpoint (Ed25519
/// signature, its event committed, its line appended to the file and fsync'd) timed 200 times,
/// against the time 1,000 request+approve commits take through the same engine (the default is
/// one checkpoint every 1,000 events).
async fn checkpoints(rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let h = daemon(dir.path()).await;
    let engine = h.engine.clone();
    let (per_write, per_checkpoint, per_signature) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        for _ in 0..500 {
            let new = NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() };
            let events = engine.execute("u200", Command::Request(new)).unwrap();
            let Change::RequestCreated { request, .. } = events[0].change else { panic!("{events:?}") };
            engine.execute("alice", Command::Approve { request, comment: None, signature: None }).unwrap();
        }
        let per_write = started.elapsed() / 1000;
        let c = engine.checkpoints().unwrap().clone();
        let started = Instant::now();
        for _ in 0..200 {
            c.sign_now(&engine).unwrap();
        }
        let per_checkpoint = started.elapsed() / 200;
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::set_permissions(elsewhere.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let key = zsa::evidence::SigningKey::load_or_create(elsewhere.path()).unwrap();
        let started = Instant::now();
        for seq in 0..10_000u64 {
            std::hint::black_box(key.sign(seq, "ab", Utc::now()));
        }
        (per_write, per_checkpoint, started.elapsed() / 10_000)
    })
    .await
    .unwrap();
    let share = per_checkpoint.as_secs_f64() / (per_write.as_secs_f64() * 1000.0) * 100.0;
    rows.push(Row(
        "a checkpoint (sign, commit its event, append to the file, fsync), once per 1,000 writes".into(),
        format!("{} each = {share:.2} % of 1,000 writes' time ({} a write)", ms(per_checkpoint), ms(per_write)),
        "1 % (target)".into(),
        format!("{:.3}", share / 1.0),
    ));
    rows.push(Row(
        "an Ed25519 signature alone".into(),
        format!("{:.1} µs", per_signature.as_secs_f64() * 1e6),
        String::new(),
        String::new(),
    ));
    h.shutdown().await;
}

async fn fanout(rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let h = daemon(dir.path()).await;
    let alice = token_client(&h, "alice").await;
    let u1 = token_client(&h, "u1").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    for _ in 0..100 {
        let mut stream = Client::new(&h.socket, None).unwrap().events(None).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(e)) = stream.next().await {
                if matches!(e.change, Change::GrantStarted { .. }) {
                    let _ = tx.send((e.seq, Instant::now()));
                }
            }
        });
    }
    let mut lat = Vec::new();
    for _ in 0..50 {
        let id =
            u1.request(&NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() }).await.unwrap().request.id;
        let t0 = Instant::now();
        alice.approve(id, None).await.unwrap();
        for _ in 0..100 {
            let (_, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            lat.push(at - t0);
        }
    }
    lat.sort();
    for (label, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        rows.push(Row(format!("fan-out to 100 stream clients: {label}"), ms(percentile(&lat, p)), "20 ms (target)".into(), String::new()));
    }
    h.shutdown().await;
}

async fn expiry(rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let h = daemon(dir.path()).await;
    let mut feed = Client::new(&h.socket, None).unwrap().events(None).await.unwrap();
    let window = Utc::now() + chrono::Duration::seconds(70);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..8 {
        let u = token_client(&h, &format!("u{}", 200 + c)).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..1250 {
                // Deadlines spread over one minute starting at `window`.
                let target = window + chrono::Duration::milliseconds(((c * 1250 + i) % 60_000) as i64 * 6);
                let secs = (target - Utc::now()).num_seconds().max(1) as u64;
                u.request(&NewRequest { task: "restart".into(), duration_secs: Some(secs), ..Default::default() }).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let created = start.elapsed();
    // While all 10,000 are active: a check costs the same as with none (it looks up the
    // caller's own grants, not every active one).
    let (rate, lat) = hammer(&h.socket, "/v1/check?task=restart&user=u7", 8, 3).await;
    rows.push(Row(
        "check, 8 clients, with 10,000 active grants: requests/s, p99".into(),
        format!("{rate:.0}, {}", ms(percentile(&lat, 0.99))),
        String::new(),
        String::new(),
    ));
    let mut late = Vec::new();
    while late.len() < 10_000 {
        let e = tokio::time::timeout(Duration::from_secs(120), feed.next()).await.unwrap().unwrap().unwrap();
        if let Change::GrantExpired { deadline, .. } = e.change {
            late.push((e.at - deadline).to_std().unwrap_or_default());
        }
    }
    late.sort();
    for (label, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        rows.push(Row(
            format!("expiry lateness, 10,000 grants in one minute: {label}"),
            ms(percentile(&late, p)),
            "1 s (target)".into(),
            String::new(),
        ));
    }
    eprintln!("expiry: created 10,000 grants in {created:?}");
    h.shutdown().await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Writes about `n` events of everyday work straight into a state directory's store.
fn seed_state(dir: &Path, n: usize) -> Builder {
    seed_with(dir, Builder::everyday(n, chrono::Duration::days(28)))
}

/// Writes a builder's events, with the rows they change, straight into a state directory's store.
fn seed_with(dir: &Path, b: Builder) -> Builder {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut store = zsa::store::sqlite::SqliteStore::open(&state.join("zsa.db")).unwrap();
    let mut head = zsa::store::Head::default();
    for chunk in b.events.chunks(20_000) {
        let mut rows = zsa::store::Rows::default();
        // Exactly the rows each event writes, as the engine would.
        for row in chunk.iter().flat_map(|e| e.change.rows()) {
            match row.as_bytes()[0] {
                b'R' => {
                    let id = row.parse().unwrap();
                    rows.requests.insert(id, b.state.requests[&id].clone());
                }
                b'G' => {
                    let id = row.parse().unwrap();
                    rows.grants.insert(id, b.state.grants[&id].clone());
                }
                _ => {}
            }
        }
        let change = zsa::store::Changeset { head: head.clone(), events: chunk.to_vec(), rows, deliveries: Vec::new() };
        zsa::store::Store::append(&mut store, &change).unwrap();
        let last = chunk.last().unwrap();
        head = zsa::store::Head { seq: last.seq, hash: last.hash.clone() };
    }
    b
}

fn spawn_daemon(dir: &Path) -> (std::process::Child, Duration, PathBuf) {
    spawn_daemon_with(dir, &[])
}

fn spawn_daemon_with(dir: &Path, extra: &[&str]) -> (std::process::Child, Duration, PathBuf) {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, fixtures::policy_text(&me())).unwrap();
    let socket = dir.join("zsa.sock");
    let t = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_zsa"))
        .args(["daemon", "--state"])
        .arg(dir.join("state"))
        .arg("--policy")
        .arg(&policy)
        .arg("--socket")
        .arg(&socket)
        .args(extra)
        .env("ZSA_LOG", "info")
        .spawn()
        .unwrap();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t.elapsed() < Duration::from_secs(120), "the daemon did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, t.elapsed(), socket)
}

async fn start_and_audit(rows: &mut Vec<Row>) {
    // ZSA_BENCH_DIR keeps the seeded state between runs (seeding 1,000,000 events takes a minute).
    let kept = std::env::var_os("ZSA_BENCH_DIR").map(PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let t = Instant::now();
    let b = if kept.is_some() && dir.join("state/zsa.db").exists() {
        Builder::everyday(1_000_000, chrono::Duration::days(28))
    } else {
        std::fs::create_dir_all(&dir).unwrap();
        seed_state(&dir, 1_000_000)
    };
    eprintln!("start: {} events ready in {:?}", b.events.len(), t.elapsed());
    let dir = dir.as_path();
    let (mut child, took, socket) = spawn_daemon(dir);
    let admin = Client::new(&socket, None).unwrap();
    let (pending, active) = (admin.requests(false).await.unwrap().len(), admin.grants(false).await.unwrap().len());
    rows.push(Row(
        format!("start with 1,000,000 events ({pending} pending, {active} active)"),
        ms(took),
        "3 s (target)".into(),
        String::new(),
    ));
    rows.push(Row(
        "daemon memory (RSS) with 1,000,000 events".into(),
        format!("{} MiB", rss_kib(child.id()) / 1024),
        String::new(),
        String::new(),
    ));
    let until = b.now;
    let since = until - chrono::Duration::days(7);
    let params = AuditParams {
        user: Some("u17".into()),
        since: Some(since.to_rfc3339()),
        until: Some(until.to_rfc3339()),
        limit: Some(10_000),
        ..Default::default()
    };
    let mut lat = Vec::new();
    let mut found = 0;
    for _ in 0..20 {
        let t = Instant::now();
        found = admin.audit(&params).await.unwrap().len();
        lat.push(t.elapsed());
    }
    lat.sort();
    rows.push(Row(
        format!("audit query, one user, one week ({found} events): p50"),
        ms(percentile(&lat, 0.5)),
        "50 ms (target)".into(),
        String::new(),
    ));
    let _ = child.kill();
    let _ = child.wait();
}

async fn console(rows: &mut Vec<Row>) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let dir = tempfile::tempdir().unwrap();
    seed_state(dir.path(), 300_000); // about 100,000 requests with their grants
    let (mut daemon, _, socket) = spawn_daemon(dir.path());
    let pair = native_pty_system().openpty(PtySize { rows: 48, cols: 160, pixel_width: 0, pixel_height: 0 }).unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_zsa"));
    cmd.arg("tui");
    cmd.env("ZSA_SOCKET", &socket);
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    let mut reader = pair.master.try_clone_reader().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while matches!(std::io::Read::read(&mut reader, &mut buf), Ok(n) if n > 0) {}
    });
    let pid = child.process_id().unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await; // load everything and settle
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ticks = cpu_ticks(pid) - c0;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    let cpu = ticks as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    rows.push(Row(
        "console idle CPU, ~100,000 requests loaded, countdowns on screen".into(),
        format!("{cpu:.2} %"),
        "1 % (target)".into(),
        String::new(),
    ));
    rows.push(Row("console memory (RSS), same".into(), format!("{} MiB", rss_kib(pid) / 1024), String::new(), String::new()));
    let _ = child.kill();
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// On a kept state (ZSA_BENCH_DIR): what start-up reads (the live rows) next to what a full
/// replay of the log costs (what start-up did before).
fn start_stages(rows: &mut Vec<Row>) {
    let Some(dir) = std::env::var_os("ZSA_BENCH_DIR").map(PathBuf::from) else { return };
    let db = dir.join("state/zsa.db");
    let mut store = zsa::store::sqlite::SqliteStore::open(&db).unwrap();
    let t = Instant::now();
    let live = zsa::store::Store::load_live(&mut store).unwrap();
    let loaded = t.elapsed();
    let t = Instant::now();
    let mut full = zsa::rules::State::default();
    zsa::store::Store::replay(&mut store, &mut |e| full.apply(&e)).unwrap();
    let replayed = t.elapsed();
    let what = format!("{} pending, {} active", live.pending.len(), live.active.len());
    rows.push(Row(format!("load the live state ({what})"), ms(loaded), String::new(), String::new()));
    rows.push(Row(format!("replay all {} events (start-up before)", full.last_seq), ms(replayed), String::new(), String::new()));

    // Start-up grows with what is open: 100,000 grants active at once.
    let busy = tempfile::tempdir().unwrap();
    let mut b = Builder::default();
    for i in 0..100_000 {
        b.now += chrono::Duration::milliseconds(20);
        let new = NewRequest { task: "restart".into(), duration_secs: Some(86_400), ..Default::default() };
        b.run(&format!("u{}", i % fixtures::PEOPLE), Command::Request(new));
    }
    seed_with(busy.path(), b);
    let mut store = zsa::store::sqlite::SqliteStore::open(&busy.path().join("state/zsa.db")).unwrap();
    let t = Instant::now();
    let live = zsa::store::Store::load_live(&mut store).unwrap();
    rows.push(Row(format!("load the live state ({} active grants)", live.active.len()), ms(t.elapsed()), String::new(), String::new()));
}

/// Uids no account has, for the attacking "users" of the denial-of-service scenarios.
fn spare_uid(n: u32) -> u32 {
    3_500_000 + n
}

/// Opens `n` connections to `socket` as `uid` (the raw system call switches only this thread's
/// effective uid, which the kernel records at connect and the daemon reads with SO_PEERCRED).
fn connect_as(uid: u32, socket: &Path, n: usize) -> Vec<std::os::unix::net::UnixStream> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let keep = -1 as libc::c_long;
        // SAFETY: system calls on this thread's own credentials, switched back before it returns.
        assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) }, 0);
        let conns = (0..n).filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok()).collect();
        assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, 0 as libc::c_long, keep) }, 0);
        conns
    })
    .join()
    .unwrap()
}

/// The daemon in its own process under an open-file limit, as systemd starts it (1024 by default).
fn spawn_limited(dir: &Path, nofile: u64) -> (std::process::Child, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, fixtures::policy_text(&me())).unwrap();
    let socket = dir.join("zsa.sock");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zsa"));
    cmd.args(["daemon", "--state"])
        .arg(dir.join("state"))
        .arg("--policy")
        .arg(&policy)
        .arg("--socket")
        .arg(&socket)
        .env("ZSA_LOG", "error");
    // SAFETY: only setrlimit runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, nofile, nofile).map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().unwrap();
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t.elapsed() < Duration::from_secs(120), "the daemon did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, socket)
}

fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn needs_root(rows: &mut Vec<Row>, what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    rows.push(Row(format!("{what}: skipped, needs root to act as other accounts"), String::new(), String::new(), String::new()));
    true
}

async fn token_client_at(socket: &Path, user: &str) -> Client {
    let admin = Client::new(socket, None).unwrap();
    let t = admin.issue_token(user).await.unwrap();
    Client::new(socket, Some(t.token)).unwrap()
}

/// `check` from root while attackers hold 2,700 idle connections (45 accounts, 60 each: each
/// within the per-account cap, together far over the shared cap) at an open-file limit of 1024.
async fn idle(rows: &mut Vec<Row>) {
    if needs_root(rows, "idle") {
        return;
    }
    raise_own_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, socket) = spawn_limited(dir.path(), 1024);
    let u7 = token_client_at(&socket, "u7").await;
    u7.request(&NewRequest { task: "restart".into(), duration_secs: Some(3600), ..Default::default() }).await.unwrap();
    let s = socket.clone();
    let held: Vec<_> = tokio::task::spawn_blocking(move || (0..45).flat_map(|i| connect_as(spare_uid(i), &s, 60)).collect()).await.unwrap();
    let opened = held.len();
    // A fresh connection per check, as `zsa check` makes; measured while the idle ones are held
    // (the header timeout ends them after 10 s).
    let mut lat = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let fresh = Client::new(&socket, None).unwrap();
        let t = Instant::now();
        assert!(fresh.check("restart", Some("u7")).await.unwrap().allowed);
        lat.push(t.elapsed());
    }
    // And the CLI itself, process start included.
    let mut cli = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zsa"))
            .args(["check", "restart", "--user", "u7"])
            .env("ZSA_SOCKET", &socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        cli.push(t.elapsed());
    }
    lat.sort();
    cli.sort();
    let label = format!("check while 45 accounts hold {opened} idle connections (60 each), NOFILE 1024");
    rows.push(Row(
        format!("{label}: p50 / p99 / max"),
        format!("{} / {} / {}", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)), ms(percentile(&lat, 1.0))),
        "100 ms (target)".into(),
        String::new(),
    ));
    rows.push(Row(
        format!("{label}: `zsa check` CLI, p50 / max"),
        format!("{} / {}", ms(percentile(&cli, 0.5)), ms(percentile(&cli, 1.0))),
        "100 ms (target)".into(),
        String::new(),
    ));
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}

/// Daemon memory while 6,000 connections (100 accounts, 60 each) each send a request head just
/// under the size limit and stop, at an open-file limit high enough that the shared cap
/// (4,096 connections) is what holds.
async fn headers(rows: &mut Vec<Row>) {
    if needs_root(rows, "headers") {
        return;
    }
    raise_own_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    // As high as this machine allows (without CAP_SYS_RESOURCE the hard limit cannot rise).
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap().1.min(65_536);
    let (mut child, socket) = spawn_limited(dir.path(), nofile);
    let before = rss_kib(child.id());
    let limits = zsa::daemon::listen::Limits::for_fd_limit(nofile);
    let pad = limits.max_header_bytes - 1024;
    let mut head = b"GET /v1/whoami HTTP/1.1\r\nhost: zsa\r\nx-pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', pad));
    let s = socket.clone();
    let t = Instant::now();
    let held = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut held = Vec::new();
        for i in 0..100 {
            for mut c in connect_as(spare_uid(100 + i), &s, 60) {
                c.set_nonblocking(true).unwrap();
                let _ = c.write(&head);
                held.push(c);
            }
        }
        held
    })
    .await
    .unwrap();
    let opened = held.len();
    let mut peak = 0;
    while t.elapsed() < Duration::from_secs(8) {
        peak = peak.max(rss_kib(child.id()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // How many the daemon refused at once (answered and closed) rather than held.
    let refused = held
        .iter()
        .filter(|c| {
            use std::io::Read;
            let mut c = *c;
            let mut buf = [0u8; 12];
            matches!(c.read(&mut buf), Ok(n) if n > 0)
        })
        .count();
    drop(held);
    rows.push(Row(
        format!("daemon RSS, peak over 8 s: {opened} connections sent a {} KiB head and stopped ({refused} refused at once)", pad / 1024),
        format!("{} MiB (at rest: {} MiB)", peak / 1024, before / 1024),
        "200 MB (target)".into(),
        String::new(),
    ));
    let _ = child.kill();
    let _ = child.wait();
}

/// Approvals while 900 event streams from users with no role (60 accounts, 15 streams each)
/// catch up from the start of a 200,000-event log, at an open-file limit of 1024.
async fn streams(rows: &mut Vec<Row>) {
    if needs_root(rows, "streams") {
        return;
    }
    raise_own_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    seed_state(dir.path(), 200_000);
    let (mut child, socket) = spawn_limited(dir.path(), 1024);
    let alice = token_client_at(&socket, "alice").await;
    let u1 = token_client_at(&socket, "u1").await;
    // The seeded log may have left u1 a pending request, which would refuse the next one.
    for r in u1.requests(false).await.unwrap().into_iter().filter(|r| r.requester == "u1") {
        u1.cancel(r.id).await.unwrap();
    }
    let approve_for = |secs: u64| {
        let (alice, u1) = (alice.clone(), u1.clone());
        async move {
            let mut lat = Vec::new();
            let until = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < until {
                let new = NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() };
                let id = u1.request(&new).await.unwrap().request.id;
                let t = Instant::now();
                alice.approve(id, None).await.unwrap();
                lat.push(t.elapsed());
            }
            lat.sort();
            lat
        }
    };
    let quiet = approve_for(3).await;
    let s = socket.clone();
    let opening = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut open = Vec::new();
        for i in 0..60 {
            for mut c in connect_as(spare_uid(300 + i), &s, 15) {
                let _ = c.write_all(b"GET /v1/events?after=0 HTTP/1.1\r\nhost: zsa\r\naccept: text/event-stream\r\n\r\n");
                open.push(c);
            }
        }
        open
    });
    let during = approve_for(5).await;
    let open = opening.await.unwrap();
    let after = approve_for(5).await;
    // How many streams the daemon took on (answered 200).
    let accepted = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        open.iter()
            .filter(|c| {
                let mut c = *c;
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 12];
                c.read_exact(&mut buf).is_ok() && &buf == b"HTTP/1.1 200"
            })
            .count()
    })
    .await
    .unwrap();
    for (label, lat) in [("none open", &quiet), ("while they open and catch up", &during), ("right after", &after)] {
        rows.push(Row(
            format!("approve with {accepted} catch-up streams (after=0) of users with no role, 200,000 events, {label}: p50 / p99 / max"),
            format!("{} / {} / {}", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1.0))),
            "p99 50 ms (target)".into(),
            String::new(),
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Counts a request the hanging receiver holds while its handler runs (hyper drops the handler
/// when the sender hangs up, at its time limit).
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A webhook receiver on loopback that takes every request and never answers. Returns its URL,
/// how many requests it got, and how many it holds unanswered right now.
async fn hanging_receiver() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (got, holding) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (g, h) = (got.clone(), holding.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (got, holding) = (g.clone(), h.clone());
            async move {
                got.fetch_add(1, Ordering::SeqCst);
                holding.fetch_add(1, Ordering::SeqCst);
                let _held = Held(holding);
                std::future::pending::<()>().await;
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got, holding)
}

/// The fixture policy, plus, when `hook_url` names the file holding a webhook's URL, notices of
/// each new request to its approvers and of each approval to its requester through that webhook.
fn notices_policy(hook_url: Option<&Path>) -> String {
    let mut text = fixtures::policy_text(&me());
    if let Some(file) = hook_url {
        text.push_str(&format!(
            r#"
[channels.hook]
kind = "webhook"
url = {{ file = "{}" }}
format = "json"
[[notify]]
on = ["request_created"]
to = ["approvers"]
via = "hook"
[[notify]]
on = ["request_approved"]
to = ["requester"]
via = "hook"
"#,
            file.display()
        ));
    }
    text
}

/// Each requester asks for `journal` and alice approves it, over and over, the requesters at once,
/// for `secs`; returns the approvals' latencies, sorted.
async fn approvals(alice: &Client, requesters: &[Client], secs: f64) -> Vec<Duration> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for u in requesters {
        let (alice, u) = (alice.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let new = NewRequest { task: "journal".into(), duration_secs: Some(60), ..Default::default() };
                let id = u.request(&new).await.unwrap().request.id;
                let t = Instant::now();
                alice.approve(id, None).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// What one daemon measured: approve latencies with one client and with `CONCURRENT`, and (notices
/// on) the outbox and the receiver at the end.
struct NoticeRun {
    one: Vec<Duration>,
    many: Vec<Duration>,
    end: Option<String>,
}

const CONCURRENT: usize = 8;
/// Each phase's length: together longer than a delivery's 10 s time limit, so the first hanging
/// deliveries are given up on, settled and replaced by new ones while approvals are measured.
const PHASE_SECS: f64 = 6.0;

async fn notices_run(on: bool) -> NoticeRun {
    let dir = tempfile::tempdir().unwrap();
    let receiver = match on {
        true => Some(hanging_receiver().await),
        false => None,
    };
    // The URL is a secret: read from a file of the daemon's own account that nobody else may read.
    let url_file = dir.path().join("hook-url");
    if let Some((url, ..)) = &receiver {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&url_file).unwrap();
        writeln!(f, "{url}").unwrap();
    }
    let h = daemon_with(dir.path(), &notices_policy(receiver.as_ref().map(|_| url_file.as_path()))).await;
    let alice = token_client(&h, "alice").await;
    let one = [token_client(&h, "u1").await];
    let mut many = Vec::new();
    for i in 0..CONCURRENT {
        many.push(token_client(&h, &format!("u{}", 100 + i)).await);
    }
    // Warm up; with notices on, wait until all 16 of the sender's slots hang in the receiver, so
    // every measured approval is made while they do.
    approvals(&alice, &one, 0.2).await;
    if let Some((_, _, holding)) = &receiver {
        let until = Instant::now() + Duration::from_secs(30);
        while holding.load(Ordering::SeqCst) < 16 {
            assert!(Instant::now() < until, "the receiver never held 16 deliveries");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let one = approvals(&alice, &one, PHASE_SECS).await;
    let many = approvals(&alice, &many, PHASE_SECS).await;
    let end = match &receiver {
        None => None,
        Some((_, got, holding)) => {
            let admin = Client::new(&h.socket, None).unwrap();
            let all = admin.notices(false).await.unwrap();
            let now = Utc::now();
            let pending = all.iter().filter(|n| n.state == DeliveryState::Pending).count();
            // Claimed by the sender and not settled yet: its lease still runs.
            let claimed = all.iter().filter(|n| n.state == DeliveryState::Pending && n.attempts > 0 && n.next_at > now).count();
            let sent = all.iter().filter(|n| n.state == DeliveryState::Sent).count();
            let attempts: u64 = all.iter().map(|n| n.attempts as u64).sum();
            Some(format!(
                "{} deliveries in the outbox: {pending} pending ({claimed} claimed, in flight), {sent} sent, {attempts} attempts made; \
                 the receiver got {} requests and holds {} unanswered",
                all.len(),
                got.load(Ordering::SeqCst),
                holding.load(Ordering::SeqCst),
            ))
        }
    };
    h.shutdown().await;
    NoticeRun { one, many, end }
}

/// `approve` with notices off (no `[[notify]]`), then on, every new request and approval notified
/// through a webhook on loopback that takes each delivery and never answers: the sender holds at
/// most 16 at once, each until its 10 s time limit, and the outbox fills behind them.
async fn notices(rows: &mut Vec<Row>) {
    let off = notices_run(false).await;
    let on = notices_run(true).await;
    let many = format!("{CONCURRENT} clients");
    for (clients, on, off) in [("1 client", &on.one, &off.one), (many.as_str(), &on.many, &off.many)] {
        for (label, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            let (a, b) = (percentile(on, p), percentile(off, p));
            rows.push(Row(
                format!("approve, {clients}, notices on, webhook never answers ({} / {} approvals): {label}", on.len(), off.len()),
                ms(a),
                format!("{} (notices off)", ms(b)),
                format!("{:.2}", a.as_secs_f64() / b.as_secs_f64().max(1e-9)),
            ));
        }
    }
    if let Some(end) = on.end {
        rows.push(Row(format!("notices on, at the end: {end}"), String::new(), String::new(), String::new()));
    }
}

/// The bare handler behind the same TLS as the daemon's listener (same certificate, provider,
/// tokio-rustls and hyper), for the limit of a `check` over TLS.
async fn bare_tls(cert: &Path, key: &Path) -> std::net::SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(zsa::daemon::tls::load(cert, key).unwrap().config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = bare_app();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    });
    addr
}

/// A TCP connection to `to` from the loopback address `from` (the daemon caps connections per
/// source address, so an attacker with many addresses is spread over several).
async fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// The 127.0.X.Y address the `n`th of an attacker's connections comes from: 60 a source, under
/// the daemon's cap of 64 per address.
fn source(x: u8, n: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, x, 1 + (n / 60) as u8)
}

/// Fresh `check`s for `secs`, each on a new client and connection as `zsa check` makes them (over
/// TLS that includes the handshake); sorted latencies.
async fn fresh_checks(make: impl Fn() -> Client, secs: f64) -> Vec<Duration> {
    let mut lat = Vec::new();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        let fresh = make();
        let t = Instant::now();
        assert!(fresh.check("restart", Some("u7")).await.unwrap().allowed);
        lat.push(t.elapsed());
    }
    lat.sort();
    lat
}

fn spread(lat: &[Duration]) -> String {
    format!("{} / {} / {}", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1.0)))
}

/// `check` over the daemon's TLS listener next to the bare handler behind the same TLS; then fresh
/// `check`s over TLS and over the socket while 2,000 idle TCP connections (1,000 silent from the
/// first byte, 1,000 silent after the TLS handshake) and 500 TLS event streams that never read
/// are held, each kind spread over loopback addresses within the per-address cap.
async fn tls(rows: &mut Vec<Row>) {
    raise_own_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    // The certificate a first run makes: `zsa admin tls init`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zsa"))
        .args(["admin", "tls", "init", "--json", "--name", "127.0.0.1", "--dir"])
        .arg(dir.path().join("tls"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (cert, key) = (PathBuf::from(made["cert"].as_str().unwrap()), PathBuf::from(made["key"].as_str().unwrap()));
    let fingerprint = made["fingerprint"].as_str().unwrap().to_string();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, fixtures::policy_text(&me())).unwrap();
    let listener = TlsListener { address: "127.0.0.1:0".parse().unwrap(), cert: cert.clone(), key: key.clone() };
    let config = DaemonConfig {
        state_dir: dir.path().join("state"),
        policy,
        socket: dir.path().join("zsa.sock"),
        listeners: vec![listener],
        ..Default::default()
    };
    let h = start(config, Arc::new(SystemClock)).await.unwrap();
    let addr = h.tcp_addrs[0];
    let admin = Client::new(&h.socket, None).unwrap();
    let token = |user: String| {
        let admin = admin.clone();
        async move { admin.issue_token(&user).await.unwrap().token }
    };
    let u7 = token("u7".into()).await;
    Client::new(&h.socket, Some(u7.clone()))
        .unwrap()
        .request(&NewRequest { task: "restart".into(), duration_secs: Some(3600), ..Default::default() })
        .await
        .unwrap();
    let remote =
        Endpoint { address: Address::Https { host: "127.0.0.1".into(), port: addr.port() }, trust: Some(Trust::Pin(fingerprint.clone())) };

    // The round trip on a kept-alive connection, next to the bare handler behind the same TLS.
    let bare = bare_tls(&cert, &key).await;
    let pinned = |port: u16, token: Option<&str>| {
        let config = zsa::tls::pinned_config(&format!("127.0.0.1:{port}"), &fingerprint).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        reqwest::Client::builder().tls_backend_preconfigured(config).default_headers(headers).build().unwrap()
    };
    for clients in [1, 8] {
        let zsa_url = format!("https://127.0.0.1:{}/v1/check?task=restart&user=u7", addr.port());
        let (zsa_rate, zsa_lat) = hammer_with(|| pinned(addr.port(), Some(&u7)), zsa_url, clients, 3).await;
        let bare_url = format!("https://127.0.0.1:{}/v1/check", bare.port());
        let (bare_rate, bare_lat) = hammer_with(|| pinned(bare.port(), None), bare_url, clients, 3).await;
        rows.push(Row(
            format!("check over TLS, {clients} client(s), kept-alive: requests/s"),
            format!("{zsa_rate:.0}"),
            format!("{bare_rate:.0} (bare axum, same TLS)"),
            format!("{:.2}", zsa_rate / bare_rate),
        ));
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            rows.push(Row(
                format!("check over TLS, {clients} client(s), kept-alive: {label}"),
                ms(percentile(&zsa_lat, p)),
                ms(percentile(&bare_lat, p)),
                format!("{:.2}", percentile(&zsa_lat, p).as_secs_f64() / percentile(&bare_lat, p).as_secs_f64().max(1e-9)),
            ));
        }
    }

    let over_tls = || Client::connect(&remote, Some(u7.clone())).unwrap();
    let over_socket = || Client::new(&h.socket, None).unwrap();
    let quiet = (fresh_checks(over_tls, 2.0).await, fresh_checks(over_socket, 2.0).await);

    // 500 event streams: 63 users with a token each, 8 streams a token (the per-token cap),
    // asking for the whole log and never reading a byte of it.
    let mut tokens = Vec::new();
    for i in 0..63 {
        tokens.push(token(format!("u{i}")).await);
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(zsa::tls::pinned_config(&addr.to_string(), &fingerprint).unwrap()));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut streams = Vec::new();
    for i in 0..500 {
        use tokio::io::AsyncWriteExt;
        let tcp = connect_from(source(1, i), addr).await;
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        let head = format!(
            "GET /v1/events?after=0 HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\naccept: text/event-stream\r\n\r\n",
            tokens[i / 8]
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        streams.push(tls);
    }
    // 2,000 idle connections: half never send a byte, half stop after the TLS handshake.
    let mut idle = Vec::new();
    for i in 0..1000 {
        idle.push(connect_from(source(2, i), addr).await);
    }
    let mut shaken = Vec::new();
    for i in 0..1000 {
        shaken.push(connector.connect(name.clone(), connect_from(source(3, i), addr).await).await.unwrap());
    }
    // Measured within the 10 s the daemon gives a connection to send its request head.
    let held = (fresh_checks(over_tls, 2.0).await, fresh_checks(over_socket, 2.0).await);
    let accepted = futures_util::future::join_all(streams.iter_mut().map(|s| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf)).await;
        matches!(read, Ok(Ok(_))) && &buf == b"HTTP/1.1 200"
    }))
    .await
    .into_iter()
    .filter(|ok| *ok)
    .count();
    let load =
        format!("{} idle TCP (half after the TLS handshake) and {accepted} unread TLS event streams held", idle.len() + shaken.len());
    for (way, calm, busy) in [("TLS (handshake included)", &quiet.0, &held.0), ("the Unix socket", &quiet.1, &held.1)] {
        rows.push(Row(
            format!("fresh check over {way}, nothing held: p50 / p99 / max"),
            spread(calm),
            "p99 5 ms (target)".into(),
            String::new(),
        ));
        rows.push(Row(format!("fresh check over {way}, {load}: p50 / p99 / max"), spread(busy), "p99 5 ms (target)".into(), String::new()));
    }
    drop((streams, idle, shaken));
    h.shutdown().await;
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rows = Vec::new();
    rt.block_on(async {
        if want("check") {
            check(&mut rows).await;
        }
        if want("writes") {
            writes(&mut rows).await;
        }
        if want("postgres") {
            postgres_writes(&mut rows).await;
        }
        if want("checkpoints") {
            checkpoints(&mut rows).await;
        }
        if want("fanout") {
            fanout(&mut rows).await;
        }
        if want("expiry") {
            expiry(&mut rows).await;
        }
        if want("start") {
            start_and_audit(&mut rows).await;
        }
        if want("stages") {
            start_stages(&mut rows);
        }
        if want("console") {
            console(&mut rows).await;
        }
        if want("notices") {
            notices(&mut rows).await;
        }
        if want("idle") {
            idle(&mut rows).await;
        }
        if want("headers") {
            headers(&mut rows).await;
        }
        if want("streams") {
            streams(&mut rows).await;
        }
        if want("tls") {
            tls(&mut rows).await;
        }
    });
    println!("| measure | zsa | limit in the same run | ratio |");
    println!("| --- | --- | --- | --- |");
    for Row(a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
}
