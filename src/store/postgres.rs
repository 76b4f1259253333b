//! PostgreSQL, for several daemons sharing one state: the same tables, rows and checks as the
//! SQLite store (`codec`, `integrity`, `query` are shared), durable at commit
//! (`synchronous_commit = on` for every session, whatever the server's default).
//!
//! The store's calls block, like SQLite's: the engine decides one command at a time on its
//! writer, and every caller is already on a blocking thread. So the driver is `postgres`, the
//! blocking face of `tokio-postgres`, one connection for writes and one for reads per daemon
//! (what the engine's two locks can use at once; a pool would hold connections nobody can use).
//!
//! Several daemons may share a database: each decides against its memory and states the head it
//! decided on; a daemon that finds the head moved catches up and decides again (`Engine`), and
//! each hears the others' commits through LISTEN/NOTIFY (`daemon::peers`). Schema changes are
//! numbered migrations, applied at open inside one transaction under an
//! advisory lock, so daemons starting together apply each exactly once. Every append with
//! events takes a second advisory lock and then checks the head, so two daemons extend the
//! chain one after the other; the primary key on `seq` makes a fork impossible even without it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row};
use serde::de::DeserializeOwned;

use super::codec::{DELIVERY_COLUMNS, DeliveryColumns, RowKey, column_time, from_json, run_state, stamp, stamps_of, time_of, to_json};
use super::integrity::{ChainWalk, Ledger, StoredEvent, check_live, rebuilt_from_log};
use super::pg_target::{Connector, Target};
use super::query::{self, Arg};
use super::{Changeset, EventFilter, Head, Rows, Scope, Settled, Store, StoreError, chain};
use crate::model::wire::VerifyReport;
use crate::model::{Event, Grant, GrantId, Request, RequestId, Run, RunId, Token, TokenId};
use crate::notify::outbox::{Delivery, DeliveryState};
use crate::rules::State;

/// The advisory lock daemons take to migrate the schema (any 64-bit number nobody else uses).
const MIGRATION_LOCK: i64 = 0x7a73_615f_6d69_6772;
/// The advisory lock an append with events holds until it commits: appends take turns.
const APPEND_LOCK: i64 = 0x7a73_615f_6865_6164;
/// The schema, one entry a version; an entry is never changed once released, only added to.
const MIGRATIONS: &[&str] = &[
    // 1: the tables and indexes of SQLite's schema version 4.
    r#"
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    task TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    record TEXT GENERATED ALWAYS AS (COALESCE(
        body::jsonb ->> 'run',
        body::jsonb ->> 'request',
        'R' || substr(body::jsonb ->> 'grant', 2),
        body::jsonb ->> 'token',
        'U:' || (body::jsonb ->> 'user'))) STORED
);
CREATE INDEX events_at ON events(at);
CREATE INDEX events_subject_at ON events(subject, at);
CREATE INDEX events_actor_at ON events(actor, at);
CREATE INDEX events_task_at ON events(task, at);
CREATE INDEX events_actor_seq ON events(actor, seq);
CREATE INDEX events_subject_seq ON events(subject, seq);
CREATE INDEX events_task_seq ON events(task, seq);
CREATE INDEX events_record ON events(record, seq);
CREATE INDEX events_policy_loads ON events(seq) WHERE kind = 'policy_loaded';
CREATE INDEX events_requests_created ON events(seq) WHERE kind = 'request_created';
CREATE INDEX events_runs_started ON events(seq) WHERE kind = 'run_started';
CREATE TABLE requests (
    id BIGINT PRIMARY KEY, requester TEXT NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0, hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE grants (
    id BIGINT PRIMARY KEY, holder TEXT NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL,
    expires_at TEXT NOT NULL, body TEXT NOT NULL, seq BIGINT NOT NULL DEFAULT 0, hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE tokens (
    id BIGINT PRIMARY KEY, "user" TEXT NOT NULL, sha256 TEXT NOT NULL, revoked BOOLEAN NOT NULL, body TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0, hash TEXT NOT NULL DEFAULT '', last_used TEXT
);
CREATE TABLE disabled_users (
    "user" TEXT PRIMARY KEY, since TEXT NOT NULL, seq BIGINT NOT NULL DEFAULT 0, hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE runs (
    id BIGINT PRIMARY KEY, holder TEXT NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0, hash TEXT NOT NULL DEFAULT ''
);
CREATE INDEX requests_pending ON requests(id) WHERE state = 'pending';
CREATE INDEX grants_active ON grants(id) WHERE state = 'active';
CREATE INDEX runs_running ON runs(id) WHERE state = 'running';
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    seq BIGINT NOT NULL,
    channel TEXT NOT NULL,
    trigger TEXT NOT NULL,
    recipient TEXT NOT NULL,
    notice TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at TEXT NOT NULL,
    not_before TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    done_at TEXT
);
CREATE INDEX deliveries_due ON deliveries(next_at) WHERE state = 'pending';
CREATE INDEX deliveries_failed ON deliveries(id) WHERE state = 'failed';
"#,
    // 2: the daemons sharing the store, and when each last said it was alive.
    // The time is the database's own, never a daemon's: hosts' clocks may be far apart.
    "CREATE TABLE daemons (id TEXT PRIMARY KEY, mark TEXT NOT NULL, host TEXT NOT NULL, pid_space TEXT NOT NULL, pid BIGINT NOT NULL,
       started BIGINT NOT NULL, heartbeat_at TIMESTAMPTZ NOT NULL);",
];

/// The longest any statement waits for a lock (`lock_timeout`).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The channel an append announces a new head on (its seq), at commit.
const LOG_CHANNEL: &str = "zsa_log";

impl From<postgres::Error> for StoreError {
    /// A connection that is gone or cannot be made, or a server shutting down or full, is
    /// unavailable; anything else is the backend's own error.
    fn from(e: postgres::Error) -> StoreError {
        let unavailable = e.is_closed()
            || matches!(
                e.code(),
                Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW || *c == SqlState::TOO_MANY_CONNECTIONS
                    || *c == SqlState::CRASH_SHUTDOWN || *c == SqlState::LOCK_NOT_AVAILABLE
            )
            || (e.as_db_error().is_none() && std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()));
        match unavailable {
            true => StoreError::Unavailable(said(&e)),
            false => StoreError::Backend(said(&e).into()),
        }
    }
}

/// What the server said, not only "db error": its message, and its detail where it gave one.
fn said(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// A placeholder as PostgreSQL numbers them.
fn mark(n: usize) -> String {
    format!("${n}")
}

fn values(args: &[Arg]) -> Vec<Box<dyn ToSql + Sync>> {
    args.iter()
        .map(|a| -> Box<dyn ToSql + Sync> {
            match a {
                Arg::Int(n) => Box::new(*n),
                Arg::Text(t) => Box::new(t.clone()),
            }
        })
        .collect()
}

fn refs(values: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v.as_ref()).collect()
}

/// A `user` column: a reserved word in PostgreSQL, so always quoted.
fn key_value(key: &RowKey) -> (&'static str, Box<dyn ToSql + Sync>) {
    match key {
        RowKey::Id(n) => ("id", Box::new(*n)),
        RowKey::User(u) => ("\"user\"", Box::new(u.clone())),
    }
}

/// Opens a session: durable commits, and no endless wait for a lock.
fn connect(connector: &Connector) -> Result<Client, StoreError> {
    let mut client = connector.connect()?;
    // No wait for a lock is endless: a daemon waiting on another's turn (or on a lock a stuck
    // session holds) gives up after LOCK_WAIT and says the store is unavailable, so its writer,
    // heartbeats and answers are never held hostage by someone else's session.
    client.batch_execute(&format!(
        "SET synchronous_commit = on; SET default_transaction_isolation = 'read committed'; SET lock_timeout = '{}s'",
        LOCK_WAIT.as_secs()
    ))?;
    Ok(client)
}

/// Applies the migrations the database has not had, under the migration lock, all in one
/// transaction; refuses a database a newer zsa migrated further than this one knows.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS zsa_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")?;
    let done: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM zsa_migrations", &[])?.get(0);
    let known = MIGRATIONS.len() as i32;
    if done > known {
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {done}, written by a newer zsa; this one knows up to version {known}. Run the newer zsa"
        )));
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO zsa_migrations (version, applied_at) VALUES ($1, $2)", &[&(n as i32 + 1), &column_time(&Utc::now())])?;
    }
    tx.commit()?;
    Ok(())
}

/// The head of the log as `client` sees it.
fn head(client: &mut impl GenericClient) -> Result<Head, StoreError> {
    let row = client.query_opt("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", &[])?;
    Ok(row.map(|r| Head { seq: r.get::<_, i64>(0) as u64, hash: r.get(1) }).unwrap_or_default())
}

fn bodies<T: DeserializeOwned>(client: &mut impl GenericClient, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<T>, StoreError> {
    client.query(sql, args)?.iter().map(|r| from_json(r.get::<_, &str>(0))).collect()
}

fn by_id<T: DeserializeOwned>(client: &mut impl GenericClient, table: &str, id: u64) -> Result<Option<T>, StoreError> {
    Ok(bodies(client, &format!("SELECT body FROM {table} WHERE id = $1"), &[&(id as i64)])?.pop())
}

fn in_scope<T: DeserializeOwned>(client: &mut impl GenericClient, table: &str, person: &str, scope: &Scope) -> Result<Vec<T>, StoreError> {
    queried(client, query::in_scope(mark, table, person, scope))
}

/// The `body` of every row a built query returns.
fn queried<T: DeserializeOwned>(client: &mut impl GenericClient, q: query::Query) -> Result<Vec<T>, StoreError> {
    let values = values(&q.args);
    bodies(client, &q.sql, &refs(&values))
}

fn delivery_of(row: &Row) -> Result<Delivery, StoreError> {
    DeliveryColumns {
        id: row.get(0),
        key: row.get(1),
        seq: row.get(2),
        channel: row.get(3),
        trigger: row.get(4),
        recipient: row.get(5),
        notice: row.get(6),
        state: row.get(7),
        attempts: row.get(8),
        next_at: row.get(9),
        not_before: row.get(10),
        last_error: row.get(11),
        created_at: row.get(12),
        done_at: row.get(13),
    }
    .read()
}

/// Writes the requests, grants, runs and tokens of `rows`, each stamped with the newest event
/// that wrote it (a token's row keeps when it was last used): one statement a table, the rows
/// passed as arrays, however many there are.
fn write_rows(tx: &mut impl GenericClient, rows: &Rows, stamps: &super::codec::Stamps) -> Result<(), StoreError> {
    /// The columns every current-state row has, as arrays.
    #[derive(Default)]
    struct Common {
        id: Vec<i64>,
        person: Vec<String>,
        task: Vec<String>,
        state: Vec<String>,
        body: Vec<String>,
        seq: Vec<i64>,
        hash: Vec<String>,
    }
    impl Common {
        fn push(&mut self, (seq, hash): (i64, String), id: u64, person: &str, task: &str, state: &str, body: String) {
            self.id.push(id as i64);
            self.person.push(person.to_string());
            self.task.push(task.to_string());
            self.state.push(state.to_string());
            self.body.push(body);
            self.seq.push(seq);
            self.hash.push(hash);
        }
    }
    let upsert = |table: &str, person: &str| {
        format!(
            "INSERT INTO {table} (id, {person}, task, state, body, seq, hash)
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[])
             ON CONFLICT (id) DO UPDATE SET {person} = excluded.{person}, task = excluded.task, state = excluded.state,
             body = excluded.body, seq = excluded.seq, hash = excluded.hash"
        )
    };
    if !rows.requests.is_empty() {
        let mut c = Common::default();
        for r in rows.requests.values() {
            c.push(stamp(stamps, &r.id.to_string())?, r.id.0, &r.requester, &r.task, r.state.as_str(), to_json(r)?);
        }
        tx.execute(&upsert("requests", "requester"), &[&c.id, &c.person, &c.task, &c.state, &c.body, &c.seq, &c.hash])?;
    }
    if !rows.runs.is_empty() {
        let mut c = Common::default();
        for r in rows.runs.values() {
            c.push(stamp(stamps, &r.id.to_string())?, r.id.0, &r.holder, &r.task, run_state(r), to_json(r)?);
        }
        tx.execute(&upsert("runs", "holder"), &[&c.id, &c.person, &c.task, &c.state, &c.body, &c.seq, &c.hash])?;
    }
    if !rows.grants.is_empty() {
        let mut c = Common::default();
        let mut expires: Vec<String> = Vec::new();
        for g in rows.grants.values() {
            c.push(stamp(stamps, &g.id.to_string())?, g.id.0, &g.holder, &g.task, g.state.as_str(), to_json(g)?);
            expires.push(column_time(&g.expires_at));
        }
        tx.execute(
            "INSERT INTO grants (id, holder, task, state, body, seq, hash, expires_at)
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[])
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, task = excluded.task, state = excluded.state,
             expires_at = excluded.expires_at, body = excluded.body, seq = excluded.seq, hash = excluded.hash",
            &[&c.id, &c.person, &c.task, &c.state, &c.body, &c.seq, &c.hash, &expires],
        )?;
    }
    if !rows.tokens.is_empty() {
        let (mut id, mut user, mut sha, mut revoked, mut body, mut seq, mut hash) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for t in rows.tokens.values() {
            let (s, h) = stamp(stamps, &t.id.to_string())?;
            id.push(t.id.0 as i64);
            user.push(t.user.clone());
            sha.push(t.sha256.clone());
            revoked.push(t.revoked);
            body.push(to_json(t)?);
            seq.push(s);
            hash.push(h);
        }
        tx.execute(
            "INSERT INTO tokens (id, \"user\", sha256, revoked, body, seq, hash)
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BOOLEAN[], $5::TEXT[], $6::BIGINT[], $7::TEXT[])
             ON CONFLICT (id) DO UPDATE SET \"user\" = excluded.\"user\", sha256 = excluded.sha256, revoked = excluded.revoked,
             body = excluded.body, seq = excluded.seq, hash = excluded.hash",
            &[&id, &user, &sha, &revoked, &body, &seq, &hash],
        )?;
    }
    Ok(())
}

/// Inserts `events` in one statement, however many (a `zsa store copy` batch, or a command's
/// few): a seq already there is a `Conflict` (another writer took it), never a fork.
fn insert_events(tx: &mut impl GenericClient, events: &[Event]) -> Result<(), StoreError> {
    let (mut seq, mut at, mut actor, mut kind, mut subject, mut task, mut body, mut prev, mut hash) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for e in events {
        seq.push(e.seq as i64);
        at.push(column_time(&e.at));
        actor.push(e.actor.clone());
        kind.push(e.change.kind().to_string());
        subject.push(e.change.subject().map(str::to_string));
        task.push(e.change.task().map(str::to_string));
        body.push(chain::body(e));
        prev.push(e.prev_hash.clone());
        hash.push(e.hash.clone());
    }
    let inserted = tx.execute(
        "INSERT INTO events (seq, at, actor, kind, subject, task, body, prev_hash, hash)
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[])",
        &[&seq, &at, &actor, &kind, &subject, &task, &body, &prev, &hash],
    );
    match inserted {
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::Conflict(format!("events from {} are already in the log", events.first().map_or(0, |e| e.seq))))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Notes when tokens were last used, never moving a time back (a row that is gone is skipped).
fn save_token_use(tx: &mut impl GenericClient, used: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
    for (id, at) in used {
        tx.execute(
            "UPDATE tokens SET last_used = $2 WHERE id = $1 AND (last_used IS NULL OR last_used < $2)",
            &[&(id.0 as i64), &column_time(at)],
        )?;
    }
    Ok(())
}

/// Writes disabled users from the events that disable and enable them.
fn write_disabled(tx: &mut impl GenericClient, events: &[Event]) -> Result<(), StoreError> {
    for e in events {
        match &e.change {
            crate::model::Change::UserDisabled { user, .. } => {
                tx.execute(
                    "INSERT INTO disabled_users (\"user\", since, seq, hash) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (\"user\") DO UPDATE SET since = excluded.since, seq = excluded.seq, hash = excluded.hash",
                    &[user, &column_time(&e.at), &(e.seq as i64), &e.hash],
                )?;
            }
            crate::model::Change::UserEnabled { user } => {
                tx.execute("DELETE FROM disabled_users WHERE \"user\" = $1", &[user])?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes outbox rows, as SQLite's store does: a key already there is left as it is; a delivery
/// not yet written gets the next id, one imported from another store keeps its own.
fn write_deliveries(tx: &mut impl GenericClient, deliveries: &[Delivery]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO deliveries ({DELIVERY_COLUMNS})
         VALUES (COALESCE($1, nextval(pg_get_serial_sequence('deliveries', 'id'))), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (key) DO NOTHING"
    );
    for d in deliveries {
        let (id, c) = DeliveryColumns::of(d)?;
        tx.execute(
            &sql,
            &[
                &id,
                &c.key,
                &c.seq,
                &c.channel,
                &c.trigger,
                &c.recipient,
                &c.notice,
                &c.state,
                &c.attempts,
                &c.next_at,
                &c.not_before,
                &c.last_error,
                &c.created_at,
                &c.done_at,
            ],
        )?;
    }
    Ok(())
}

/// The integrity checks' reads, on a transaction (one snapshot) or a session.
struct Reads<'a, C: GenericClient>(&'a mut C);

impl<C: GenericClient> Ledger for Reads<'_, C> {
    fn record_events(&mut self, record: &str) -> Result<Vec<(u64, String, String, String)>, StoreError> {
        let rows = self.0.query("SELECT seq, body, prev_hash, hash FROM events WHERE record = $1 ORDER BY seq", &[&record])?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1), r.get(2), r.get(3))).collect())
    }

    fn row_stamp(&mut self, table: &str, key: &RowKey) -> Result<Option<(u64, String)>, StoreError> {
        let (column, key) = key_value(key);
        let row = self.0.query_opt(&format!("SELECT seq, hash FROM {table} WHERE {column} = $1"), &[key.as_ref()])?;
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
    }

    fn records_between(&mut self, from: &str, to: &str) -> Result<Vec<String>, StoreError> {
        // Byte order, as SQLite compares text, whatever the database's collation.
        let rows = self
            .0
            .query("SELECT DISTINCT record FROM events WHERE record COLLATE \"C\" >= $1 AND record COLLATE \"C\" < $2", &[&from, &to])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn table_rows(&mut self, table: &str) -> Result<Vec<(u64, String, u64, String)>, StoreError> {
        let rows = self.0.query(&format!("SELECT id, body, seq, hash FROM {table} ORDER BY id"), &[])?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1), r.get::<_, i64>(2) as u64, r.get(3))).collect())
    }

    fn disabled_users(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self.0.query("SELECT \"user\" FROM disabled_users ORDER BY \"user\" COLLATE \"C\"", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

pub struct PostgresStore {
    connector: Connector,
    /// Always there but while the store is dropped (see `Drop`).
    client: Option<Client>,
}

/// Closes a session on a thread of its own: closing blocks on the driver's own runtime, which
/// panics on a thread that is driving async tasks.
fn close_off_runtime(client: Option<Client>) {
    if let Some(client) = client {
        let _ = std::thread::spawn(move || drop(client)).join();
    }
}

impl Drop for PostgresStore {
    /// Closing a session blocks on the driver's own runtime, which panics on a thread that is
    /// driving async tasks (where the daemon lets go of its engine): it is closed on a thread
    /// of its own.
    fn drop(&mut self) {
        close_off_runtime(self.client.take());
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and brings its schema up to date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let connector = Target::parse(url).map_err(StoreError::Unavailable)?.connector()?;
        let mut client = connect(&connector)?;
        migrate(&mut client)?;
        Ok(PostgresStore { connector, client: Some(client) })
    }

    /// The session, connected again if the last one was lost (a restarted server, a dropped
    /// network): the call that found it lost failed as `Unavailable`; the next one works.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.connector)?);
        }
        Ok(self.client.as_mut().expect("connected just now"))
    }
}

impl PostgresStore {
    /// `rebuild_from_log`'s work, with the turn held.
    fn rebuild_in_turn(&mut self) -> Result<String, StoreError> {
        let (problem, mut full, stamps) = rebuilt_from_log(self)?;
        let used = self.token_use()?;
        let mut tx = self.client()?.transaction()?;
        tx.batch_execute("DELETE FROM requests; DELETE FROM grants; DELETE FROM runs; DELETE FROM tokens; DELETE FROM disabled_users;")?;
        let disabled = std::mem::take(&mut full.disabled);
        write_rows(&mut tx, &Rows::from(full), &stamps)?;
        save_token_use(&mut tx, &used)?;
        for (user, since) in &disabled {
            let (seq, hash) = stamp(&stamps, &crate::model::event::user_record(user))?;
            tx.execute(
                "INSERT INTO disabled_users (\"user\", since, seq, hash) VALUES ($1, $2, $3, $4)",
                &[user, &column_time(since), &seq, &hash],
            )?;
        }
        tx.commit()?;
        Ok(problem)
    }
}

impl Store for PostgresStore {
    /// Rewrites every current-state row from the log (see `SqliteStore::rebuild_from_log`).
    /// Under the store's turn: no other daemon appends between the verification and the rows
    /// rewritten from it (their rows would be overwritten with older ones).
    fn rebuild_from_log(&mut self) -> Result<String, StoreError> {
        self.take_turn()?;
        let rebuilt = self.rebuild_in_turn();
        let released = self.end_turn();
        let problem = rebuilt?;
        released?;
        Ok(problem)
    }

    fn replay(&mut self, each: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        // A page at a time, so a long log is never held whole.
        let mut after = 0i64;
        loop {
            let rows =
                self.client()?.query("SELECT seq, body, prev_hash, hash FROM events WHERE seq > $1 ORDER BY seq LIMIT 10000", &[&after])?;
            let Some(last) = rows.last() else { return Ok(()) };
            after = last.get(0);
            for r in &rows {
                each(chain::parse(r.get(1), r.get(2), r.get(3)).map_err(StoreError::Corrupt)?);
            }
        }
    }

    fn load_live(&mut self) -> Result<State, StoreError> {
        // One snapshot, so the parts agree with each other.
        let mut tx =
            self.client()?.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
        let mut s = State::default();
        for g in bodies::<Grant>(&mut tx, "SELECT body FROM grants WHERE state = 'active'", &[])? {
            s.add_active(g);
        }
        for r in bodies::<Request>(&mut tx, "SELECT body FROM requests WHERE state = 'pending'", &[])? {
            s.add_pending(r);
        }
        let of_grants: Vec<RequestId> = s.grants.values().map(|g| g.request).collect();
        for id in of_grants {
            if let Some(r) = by_id::<Request>(&mut tx, "requests", id.0)? {
                s.requests.insert(id, r);
            }
        }
        for r in bodies::<Run>(&mut tx, "SELECT body FROM runs WHERE state = 'running'", &[])? {
            s.running.insert(r.id);
            s.runs.insert(r.id, r);
        }
        for t in bodies::<Token>(&mut tx, "SELECT body FROM tokens", &[])? {
            s.token_by_hash.insert(t.sha256.clone(), t.id);
            s.tokens.insert(t.id, t);
        }
        for row in tx.query("SELECT \"user\", since FROM disabled_users", &[])? {
            s.disabled.insert(row.get(0), time_of(row.get(1))?);
        }
        // Ids never repeat, even if rows were deleted: the newest creation in the log counts too.
        for (table, kind) in [("requests", "request_created"), ("runs", "run_started")] {
            let max: i64 = tx.query_one(&format!("SELECT COALESCE(MAX(id), 0) FROM {table}"), &[])?.get(0);
            let sql = format!("SELECT record FROM events WHERE kind = '{kind}' ORDER BY seq DESC LIMIT 1");
            let newest = tx.query_opt(&sql, &[])?.and_then(|r| r.get::<_, Option<String>>(0));
            let newest: u64 = newest.and_then(|r| r.get(1..).and_then(|n| n.parse().ok())).unwrap_or(0);
            let last = (max as u64).max(newest);
            match table {
                "requests" => s.last_request = last,
                _ => s.last_run = last,
            }
        }
        let now = head(&mut tx)?;
        (s.last_seq, s.last_hash) = (now.seq, now.hash);
        check_live(&mut Reads(&mut tx), &s)?;
        tx.commit()?;
        Ok(s)
    }

    fn request(&mut self, id: RequestId) -> Result<Option<Request>, StoreError> {
        by_id(self.client()?, "requests", id.0)
    }

    fn grant(&mut self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        by_id(self.client()?, "grants", id.0)
    }

    fn run(&mut self, id: RunId) -> Result<Option<Run>, StoreError> {
        by_id(self.client()?, "runs", id.0)
    }

    fn requests(&mut self, scope: &Scope) -> Result<Vec<Request>, StoreError> {
        in_scope(self.client()?, "requests", "requester", scope)
    }

    fn requests_of(&mut self, requester: &str, before: Option<RequestId>, limit: u32) -> Result<Vec<Request>, StoreError> {
        queried(self.client()?, query::requests_of(mark, requester, before, limit))
    }

    fn grants(&mut self, scope: &Scope) -> Result<Vec<Grant>, StoreError> {
        in_scope(self.client()?, "grants", "holder", scope)
    }

    fn runs(&mut self, scope: &Scope) -> Result<Vec<Run>, StoreError> {
        in_scope(self.client()?, "runs", "holder", scope)
    }

    fn append(&mut self, change: &Changeset) -> Result<(), StoreError> {
        let Changeset { events, rows, deliveries, .. } = change;
        let stamps = stamps_of(events);
        let mut tx = self.client()?.transaction()?;
        if !events.is_empty() {
            // Appends take turns; the head read below stays the head until this commits.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])?;
            let now = head(&mut tx)?;
            if now != change.head {
                return Err(StoreError::Conflict(format!(
                    "it was decided after event {}, but the log is at event {} now",
                    change.head.seq, now.seq
                )));
            }
        }
        if !events.is_empty() {
            insert_events(&mut tx, events)?;
        }
        write_rows(&mut tx, rows, &stamps)?;
        write_disabled(&mut tx, events)?;
        write_deliveries(&mut tx, deliveries)?;
        if let Some(last) = events.last() {
            // Delivered at commit, and only then, to every daemon listening.
            tx.execute("SELECT pg_notify($1, $2)", &[&LOG_CHANNEL, &last.seq.to_string()])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn claim_deliveries(&mut self, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let mut tx = self.client()?.transaction()?;
        // SKIP LOCKED: two daemons' senders never claim the same delivery.
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
        );
        let mut out = tx.query(&sql, &[&column_time(&now), &(limit as i64)])?.iter().map(delivery_of).collect::<Result<Vec<_>, _>>()?;
        for d in &mut out {
            tx.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_at = $2 WHERE id = $1",
                &[&(d.id as i64), &column_time(&lease_until)],
            )?;
            d.attempts += 1;
            d.next_at = lease_until;
        }
        tx.commit()?;
        Ok(out)
    }

    fn next_delivery_at(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> = self.client()?.query_one("SELECT MIN(next_at) FROM deliveries WHERE state = 'pending'", &[])?.get(0);
        at.map(|t| time_of(&t)).transpose()
    }

    fn settle_delivery(&mut self, id: u64, settled: &Settled) -> Result<(), StoreError> {
        self.client()?.execute(
            "UPDATE deliveries SET state = $2, next_at = $3, last_error = $4, done_at = $5 WHERE id = $1",
            &[
                &(id as i64),
                &settled.state.as_str(),
                &column_time(&settled.next_at),
                &settled.last_error,
                &settled.done_at.as_ref().map(column_time),
            ],
        )?;
        Ok(())
    }

    fn deliveries(&mut self, state: Option<DeliveryState>) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE $1::TEXT IS NULL OR state = $1 ORDER BY id");
        self.client()?.query(&sql, &[&state.map(DeliveryState::as_str)])?.iter().map(delivery_of).collect()
    }

    fn delivery(&mut self, id: u64) -> Result<Option<Delivery>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        self.client()?.query_opt(&sql, &[&(id as i64)])?.as_ref().map(delivery_of).transpose()
    }

    fn retry_delivery(&mut self, id: u64, now: DateTime<Utc>) -> Result<Option<DeliveryState>, StoreError> {
        let mut tx = self.client()?.transaction()?;
        let Some(row) = tx.query_opt("SELECT state FROM deliveries WHERE id = $1 FOR UPDATE", &[&(id as i64)])? else {
            return Ok(None);
        };
        let state: String = row.get(0);
        let state =
            DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("delivery {id} has the unknown state {state:?}")))?;
        if state == DeliveryState::Failed {
            tx.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = $2, not_before = $2, done_at = NULL WHERE id = $1",
                &[&(id as i64), &column_time(&now)],
            )?;
        }
        tx.commit()?;
        Ok(Some(state))
    }

    fn events(&mut self, f: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let q = query::events(mark, f);
        let values = values(&q.args);
        let rows = self.client()?.query(&q.sql, &refs(&values))?;
        let mut out =
            rows.iter().map(|r| chain::parse(r.get(0), r.get(1), r.get(2)).map_err(StoreError::Corrupt)).collect::<Result<Vec<_>, _>>()?;
        if f.tail.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    fn verify(&mut self) -> Result<VerifyReport, StoreError> {
        // One snapshot: the events and the rows are checked as of one moment, while others write.
        let mut tx =
            self.client()?.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
        let mut walk = ChainWalk::default();
        let mut after = 0i64;
        'pages: loop {
            let rows = tx.query(
                "SELECT seq, at, actor, kind, subject, task, body, prev_hash, hash, record FROM events WHERE seq > $1 ORDER BY seq LIMIT 10000",
                &[&after],
            )?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            for r in rows {
                let event = StoredEvent {
                    seq: r.get::<_, i64>(0) as u64,
                    at: r.get(1),
                    actor: r.get(2),
                    kind: r.get(3),
                    subject: r.get(4),
                    task: r.get(5),
                    body: r.get(6),
                    prev_hash: r.get(7),
                    hash: r.get(8),
                    record: r.get(9),
                };
                if !walk.step(event) {
                    break 'pages;
                }
            }
        }
        let report = walk.finish(&mut Reads(&mut tx))?;
        tx.commit()?;
        Ok(report)
    }

    fn raw_events(&mut self, after_seq: u64, limit: u32) -> Result<Vec<super::RawEvent>, StoreError> {
        let rows = self.client()?.query(
            "SELECT seq, body, prev_hash, hash FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(after_seq as i64), &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| super::RawEvent { seq: r.get::<_, i64>(0) as u64, body: r.get(1), prev_hash: r.get(2), hash: r.get(3) })
            .collect())
    }

    fn token_use(&mut self) -> Result<Vec<(TokenId, DateTime<Utc>)>, StoreError> {
        let rows = self.client()?.query("SELECT id, last_used FROM tokens WHERE last_used IS NOT NULL ORDER BY id", &[])?;
        rows.iter().map(|r| Ok((TokenId(r.get::<_, i64>(0) as u64), time_of(r.get(1))?))).collect()
    }

    fn save_token_use(&mut self, used: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
        let mut tx = self.client()?.transaction()?;
        save_token_use(&mut tx, used)?;
        tx.commit()?;
        Ok(())
    }

    fn import_deliveries(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut tx = self.client()?.transaction()?;
        write_deliveries(&mut tx, deliveries)?;
        // The next delivery written gets an id after the imported ones.
        tx.execute("SELECT setval(pg_get_serial_sequence('deliveries', 'id'), GREATEST((SELECT MAX(id) FROM deliveries), 1))", &[])?;
        tx.commit()?;
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

    fn heartbeat(&mut self, me: &super::Instance, takeover: Option<&super::Takeover>) -> Result<bool, StoreError> {
        let (mark, older_than) = match takeover {
            Some(t) => (Some(t.mark.as_str()), t.older_than.as_secs_f64()),
            None => (None, 0.0),
        };
        let written = self.client()?.execute(
            "INSERT INTO daemons (id, mark, host, pid_space, pid, started, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())
             ON CONFLICT (id) DO UPDATE SET mark = excluded.mark, host = excluded.host, pid_space = excluded.pid_space, pid = excluded.pid,
             started = excluded.started, heartbeat_at = excluded.heartbeat_at
             WHERE daemons.mark = excluded.mark
                OR (daemons.mark = $7 AND EXTRACT(EPOCH FROM clock_timestamp() - daemons.heartbeat_at)::FLOAT8 >= $8::FLOAT8)",
            &[&me.daemon, &me.mark, &me.host, &me.pid_space, &(me.pid as i64), &(me.started as i64), &mark, &older_than],
        )?;
        Ok(written == 1)
    }

    fn heartbeats(&mut self) -> Result<Vec<super::Beat>, StoreError> {
        let rows = self.client()?.query(
            "SELECT id, mark, host, pid_space, pid, started, EXTRACT(EPOCH FROM clock_timestamp() - heartbeat_at)::FLOAT8
             FROM daemons ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| super::Beat {
                instance: super::Instance {
                    daemon: r.get(0),
                    mark: r.get(1),
                    host: r.get(2),
                    pid_space: r.get(3),
                    pid: r.get::<_, i64>(4) as u32,
                    started: r.get::<_, i64>(5) as u64,
                },
                // A time in the future is no age; one that is not a time at all (-infinity
                // written by hand) is the oldest there is.
                age: Duration::try_from_secs_f64(r.get::<_, f64>(6).max(0.0)).unwrap_or(Duration::MAX),
            })
            .collect())
    }

    fn retire(&mut self, me: &super::Instance) -> Result<(), StoreError> {
        self.client()?.execute("DELETE FROM daemons WHERE id = $1 AND mark = $2", &[&me.daemon, &me.mark])?;
        Ok(())
    }

    /// The same lock every append takes for its transaction, held by this session: other
    /// daemons' appends wait; this session's own go through (advisory locks stack in a session).
    fn take_turn(&mut self) -> Result<(), StoreError> {
        self.client()?.execute("SELECT pg_advisory_lock($1)", &[&APPEND_LOCK])?;
        Ok(())
    }

    fn end_turn(&mut self) -> Result<(), StoreError> {
        self.client()?.execute("SELECT pg_advisory_unlock($1)", &[&APPEND_LOCK])?;
        Ok(())
    }

    fn listener(&self) -> Result<Option<Box<dyn super::Listener>>, StoreError> {
        let mut client = connect(&self.connector)?;
        client.batch_execute(&format!("LISTEN {LOG_CHANNEL}"))?;
        Ok(Some(Box::new(LogListener { client: Some(client) })))
    }

    fn reader(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(PostgresStore { connector: self.connector.clone(), client: Some(connect(&self.connector)?) }))
    }
}

/// A session that LISTENs on the log's channel.
struct LogListener {
    client: Option<Client>,
}

impl super::Listener for LogListener {
    fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let client = self.client.as_mut().expect("present until dropped");
        let mut notes = client.notifications();
        let heard = notes.timeout_iter(timeout).next()?.is_some();
        // Several appends may have been announced; one catch-up reads them all.
        while notes.iter().next()?.is_some() {}
        Ok(heard)
    }
}

impl Drop for LogListener {
    /// Closed on a thread of its own, as `PostgresStore` is.
    fn drop(&mut self) {
        close_off_runtime(self.client.take());
    }
}
