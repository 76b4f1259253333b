//! The embedded default store: one SQLite file.
//!
//! Durability: WAL journal with `synchronous = FULL`. In WAL mode FULL syncs the log at every
//! commit, so a commit that returned survives a crash of the process and a loss of power; NORMAL
//! would be faster but may lose the last commits on power loss, which would break the promise
//! that an acknowledged change is never lost. WAL also lets readers run beside the writer.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;

use super::codec::{
    DELIVERY_COLUMNS, DeliveryColumns, RowKey, Stamps, column_time, from_json, row_of, run_state, stamp, stamps_of, time_of, to_json,
};
use super::integrity::{ChainWalk, Ledger, StoredEvent, check_live, rebuilt_from_log};
use super::query::{self, Arg};
use super::{Changeset, EventFilter, Head, Rows, Scope, Settled, Store, StoreError, chain};
use crate::model::event::user_record;
use crate::model::wire::VerifyReport;
use crate::model::{Event, Grant, GrantId, Request, RequestId, Run, RunId, Token, TokenId};
use crate::notify::outbox::{Delivery, DeliveryState};
use crate::rules::State;

impl From<rusqlite::Error> for StoreError {
    /// A database busy beyond the busy timeout, or one that cannot be opened, is unavailable;
    /// anything else is the backend's own error.
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | CannotOpen) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Backend(Box::new(e)),
        }
    }
}

/// The head of the log as it is in `conn`.
fn head(conn: &Connection) -> Result<Head, StoreError> {
    let newest = conn
        .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .optional()?;
    Ok(newest.map(|(seq, hash)| Head { seq: seq as u64, hash }).unwrap_or_default())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    task TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE INDEX IF NOT EXISTS events_actor_seq ON events(actor, seq);
CREATE INDEX IF NOT EXISTS events_subject_seq ON events(subject, seq);
CREATE INDEX IF NOT EXISTS events_task_seq ON events(task, seq);
CREATE INDEX IF NOT EXISTS events_policy_loads ON events(seq) WHERE kind = 'policy_loaded';
CREATE INDEX IF NOT EXISTS events_requests_created ON events(seq) WHERE kind = 'request_created';
CREATE INDEX IF NOT EXISTS events_runs_started ON events(seq) WHERE kind = 'run_started';
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, requester TEXT NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    id INTEGER PRIMARY KEY, holder TEXT NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL,
    expires_at TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY, user TEXT NOT NULL, sha256 TEXT NOT NULL, revoked INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS disabled_users (user TEXT PRIMARY KEY, since TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, holder TEXT NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests(id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS grants_active ON grants(id) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS runs_running ON runs(id) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    trigger TEXT NOT NULL,
    recipient TEXT NOT NULL,
    notice TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TEXT NOT NULL,
    not_before TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    done_at TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries(id) WHERE state = 'failed';
";

/// Columns added by schema version 2, for tables created before it: each event's record (see
/// `Change::record`), and in each current-state row the seq and hash of the event that last
/// wrote it, so start-up can check the row against its events.
const STAMPED: [&str; 5] = ["requests", "grants", "tokens", "disabled_users", "runs"];

/// Each event's record (see `Change::record`), computed by SQLite from the hashed body, so it can
/// be neither set nor changed on its own: the start-up check finds every event of a record.
const RECORD_COLUMN: &str = "record TEXT GENERATED ALWAYS AS (COALESCE(
    json_extract(body, '$.run'),
    json_extract(body, '$.request'),
    'R' || substr(json_extract(body, '$.grant'), 2),
    json_extract(body, '$.token'),
    'U:' || json_extract(body, '$.user'))) VIRTUAL";

/// `PRAGMA user_version` of the schema above. Version 1 added the runs table, which `open`
/// fills from the log for a database written before it; version 2 the records and row stamps;
/// version 3 the outbox (`deliveries`, created empty: nothing before it was ever to be sent);
/// version 4 `tokens.last_used` (empty until a token is used: no event ever said when). A
/// token's expiry and scope need no column: they are in its row's body, checked against its
/// `token_issued` event like the rest of it (absent from older bodies and events alike).
const SCHEMA_VERSION: i64 = 4;

/// When each token was last used: kept beside the row, never in its body, because it is no
/// decision and no event says it (see `daemon::token_use`). Writing a row keeps it.
const LAST_USED_COLUMN: &str = "last_used TEXT";

/// The JSON `body` column of every row a query returns, read back.
fn bodies<T: DeserializeOwned>(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_json(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?)?);
    }
    Ok(out)
}

/// One row of `table` by id.
fn by_id<T: DeserializeOwned>(conn: &Connection, table: &str, id: u64) -> Result<Option<T>, StoreError> {
    Ok(bodies(conn, &format!("SELECT body FROM {table} WHERE id = ?1"), [id as i64])?.pop())
}

/// A placeholder as SQLite numbers them.
fn mark(n: usize) -> String {
    format!("?{n}")
}

fn values(args: Vec<Arg>) -> impl rusqlite::Params {
    rusqlite::params_from_iter(args.into_iter().map(|a| match a {
        Arg::Int(n) => rusqlite::types::Value::from(n),
        Arg::Text(t) => rusqlite::types::Value::from(t),
    }))
}

/// Every row of `table` in `scope`; `person` is the column naming whose it is.
fn in_scope<T: DeserializeOwned>(conn: &Connection, table: &str, person: &str, scope: &Scope) -> Result<Vec<T>, StoreError> {
    queried(conn, query::in_scope(mark, table, person, scope))
}

/// The `body` of every row a built query returns.
fn queried<T: DeserializeOwned>(conn: &Connection, q: query::Query) -> Result<Vec<T>, StoreError> {
    bodies(conn, &q.sql, values(q.args))
}

/// Adds `column` (a name and its declaration) to `table` unless it is there already.
fn add_column(conn: &Connection, table: &str, column: &str) -> Result<(), StoreError> {
    let name = column.split_whitespace().next().unwrap_or(column);
    let present: i64 = conn.query_row("SELECT COUNT(*) FROM pragma_table_xinfo(?1) WHERE name = ?2", params![table, name], |r| r.get(0))?;
    if present == 0 {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column}"))?;
    }
    Ok(())
}

/// Writes the requests, grants, runs and tokens of `rows`, each stamped with the newest event that
/// wrote it (disabled users are written from their events by the caller).
fn write_rows(tx: &Connection, rows: &Rows, stamps: &Stamps) -> Result<(), StoreError> {
    let mut req = tx.prepare_cached(
        "INSERT OR REPLACE INTO requests (id, requester, task, state, body, seq, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for r in rows.requests.values() {
        let (seq, hash) = stamp(stamps, &r.id.to_string())?;
        req.execute(params![r.id.0 as i64, r.requester, r.task, r.state.as_str(), to_json(r)?, seq, hash])?;
    }
    let mut grant = tx.prepare_cached(
        "INSERT OR REPLACE INTO grants (id, holder, task, state, expires_at, body, seq, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for g in rows.grants.values() {
        let (seq, hash) = stamp(stamps, &g.id.to_string())?;
        grant.execute(params![g.id.0 as i64, g.holder, g.task, g.state.as_str(), column_time(&g.expires_at), to_json(g)?, seq, hash])?;
    }
    let mut run =
        tx.prepare_cached("INSERT OR REPLACE INTO runs (id, holder, task, state, body, seq, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
    for r in rows.runs.values() {
        let (seq, hash) = stamp(stamps, &r.id.to_string())?;
        run.execute(params![r.id.0 as i64, r.holder, r.task, run_state(r), to_json(r)?, seq, hash])?;
    }
    // Not `OR REPLACE`: that would delete the row and with it when the token was last used.
    let mut token = tx.prepare_cached(
        "INSERT INTO tokens (id, user, sha256, revoked, body, seq, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET user = excluded.user, sha256 = excluded.sha256, revoked = excluded.revoked,
         body = excluded.body, seq = excluded.seq, hash = excluded.hash",
    )?;
    for t in rows.tokens.values() {
        let (seq, hash) = stamp(stamps, &t.id.to_string())?;
        token.execute(params![t.id.0 as i64, t.user, t.sha256, t.revoked, to_json(t)?, seq, hash])?;
    }
    Ok(())
}

/// Notes when tokens were last used, never moving a time back (a row that is gone is skipped).
fn save_token_use(tx: &Connection, used: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
    let mut update = tx.prepare_cached("UPDATE tokens SET last_used = ?2 WHERE id = ?1 AND (last_used IS NULL OR last_used < ?2)")?;
    for (id, at) in used {
        update.execute(params![id.0 as i64, column_time(at)])?;
    }
    Ok(())
}

/// One outbox row, read back.
fn delivery_of(row: &rusqlite::Row) -> Result<Delivery, StoreError> {
    DeliveryColumns {
        id: row.get(0)?,
        key: row.get(1)?,
        seq: row.get(2)?,
        channel: row.get(3)?,
        trigger: row.get(4)?,
        recipient: row.get(5)?,
        notice: row.get(6)?,
        state: row.get(7)?,
        attempts: row.get(8)?,
        next_at: row.get(9)?,
        not_before: row.get(10)?,
        last_error: row.get(11)?,
        created_at: row.get(12)?,
        done_at: row.get(13)?,
    }
    .read()
}

/// Writes outbox rows. A key already there is left as it is: the same event never causes the
/// same delivery twice. A delivery not yet written gets the next id; one imported from another
/// store (`import_deliveries`) keeps its own, and its state, errors and times.
fn write_deliveries(tx: &Connection, deliveries: &[Delivery]) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(&format!(
        "INSERT OR IGNORE INTO deliveries ({DELIVERY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?;
    for d in deliveries {
        let (id, c) = DeliveryColumns::of(d)?;
        insert.execute(params![
            id,
            c.key,
            c.seq,
            c.channel,
            c.trigger,
            c.recipient,
            c.notice,
            c.state,
            c.attempts,
            c.next_at,
            c.not_before,
            c.last_error,
            c.created_at,
            c.done_at
        ])?;
    }
    Ok(())
}

/// A row key as the column that holds it and its value.
fn key_value(key: RowKey) -> (&'static str, rusqlite::types::Value) {
    match key {
        RowKey::Id(n) => ("id", n.into()),
        RowKey::User(u) => ("user", u.into()),
    }
}

impl Ledger for &Connection {
    fn record_events(&mut self, record: &str) -> Result<Vec<(u64, String, String, String)>, StoreError> {
        let mut stmt = self.prepare_cached("SELECT seq, body, prev_hash, hash FROM events WHERE record = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([record], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn row_stamp(&mut self, table: &str, key: &RowKey) -> Result<Option<(u64, String)>, StoreError> {
        let (column, key) = key_value(key.clone());
        let mut stmt = self.prepare_cached(&format!("SELECT seq, hash FROM {table} WHERE {column} = ?1"))?;
        Ok(stmt.query_row([key], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))).optional()?)
    }

    fn records_between(&mut self, from: &str, to: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.prepare_cached("SELECT DISTINCT record FROM events WHERE record >= ?1 AND record < ?2")?;
        let rows = stmt.query_map([from, to], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn table_rows(&mut self, table: &str) -> Result<Vec<(u64, String, u64, String)>, StoreError> {
        let mut stmt = self.prepare(&format!("SELECT id, body, seq, hash FROM {table} ORDER BY id"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn disabled_users(&mut self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.prepare("SELECT user FROM disabled_users ORDER BY user")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` for writing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!("SQLite refused WAL mode (got {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        conn.execute_batch(SCHEMA)?;
        add_column(&conn, "events", RECORD_COLUMN)?;
        for table in STAMPED {
            add_column(&conn, table, "seq INTEGER NOT NULL DEFAULT 0")?;
            add_column(&conn, table, "hash TEXT NOT NULL DEFAULT ''")?;
        }
        add_column(&conn, "tokens", LAST_USED_COLUMN)?;
        conn.execute_batch("CREATE INDEX IF NOT EXISTS events_record ON events(record, seq);")?;
        // By person or task and time: each cost every commit a page of its own, about a fifth of
        // a commit's time (docs/BENCHMARKS.md); the (person or task, seq) indexes serve the same
        // audit questions, filtering on time.
        conn.execute_batch(
            "DROP INDEX IF EXISTS events_subject_at; DROP INDEX IF EXISTS events_actor_at; DROP INDEX IF EXISTS events_task_at;",
        )?;
        let mut store = SqliteStore { path: path.to_path_buf(), conn };
        if version < SCHEMA_VERSION {
            store.upgrade(version)?;
        }
        Ok(store)
    }

    /// Brings an older database up to date in one transaction with the new version number: a
    /// database from before the runs table gets its runs rebuilt from the log; one from before
    /// version 2 gets each event's record and each row's stamp (the newest event of its record).
    /// Row contents are never rewritten here, so an upgrade cannot hide an edited row.
    fn upgrade(&mut self, from: i64) -> Result<(), StoreError> {
        if from >= 2 {
            // Only tables and `tokens.last_used` were added since: `SCHEMA` and `open` made them.
            self.conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            return Ok(());
        }
        let mut full = State::default();
        let mut stamps = Stamps::new();
        self.replay(&mut |e| {
            full.apply(&e);
            stamps.extend(stamps_of([&e]));
        })?;
        let tx = self.conn.transaction()?;
        if from < 1 {
            write_rows(&tx, &Rows { runs: full.runs, ..Rows::default() }, &stamps)?;
        }
        {
            for (row, (seq, hash)) in &stamps {
                if let Some((table, key)) = row_of(row) {
                    let (column, key) = key_value(key);
                    tx.execute(&format!("UPDATE {table} SET seq = ?1, hash = ?2 WHERE {column} = ?3"), params![*seq as i64, hash, key])?;
                }
            }
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        tx.commit()?;
        Ok(())
    }

    fn open_reader(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA query_only = 1;")?;
        Ok(SqliteStore { path: path.to_path_buf(), conn })
    }

    fn row_to_event(body: String, prev: String, hash: String) -> Result<Event, StoreError> {
        chain::parse(&body, prev, hash).map_err(StoreError::Corrupt)
    }
}

impl Store for SqliteStore {
    fn backup_to(&mut self, path: &Path) -> Result<(), StoreError> {
        // SQLite's online backup, all pages in one step: one read transaction, so the copy is
        // the store as of its start while writers go on (WAL). Works from a read-only reader.
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} is already there", path.display()),
            )));
        }
        let mut copy = Connection::open(path)?;
        let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy)?;
        // -1: every page in this one step (stepping in parts starts over whenever a writer
        // commits meanwhile, which under steady writes might never end).
        match backup.step(-1)? {
            rusqlite::backup::StepResult::Done => Ok(()),
            other => Err(StoreError::Unavailable(format!("the backup could not read the store ({other:?}); try again"))),
        }
    }

    /// Rewrites every current-state row from the log, after checking that the log itself
    /// verifies (a broken log cannot be the source). Returns what was wrong with the rows, for
    /// the `state_rebuilt` event the daemon records.
    fn rebuild_from_log(&mut self) -> Result<String, StoreError> {
        let (problem, mut full, stamps) = rebuilt_from_log(self)?;
        let used = self.token_use()?;
        let tx = self.conn.transaction()?;
        tx.execute_batch("DELETE FROM requests; DELETE FROM grants; DELETE FROM runs; DELETE FROM tokens; DELETE FROM disabled_users;")?;
        let disabled = std::mem::take(&mut full.disabled);
        write_rows(&tx, &Rows::from(full), &stamps)?;
        save_token_use(&tx, &used)?;
        for (user, since) in &disabled {
            let (seq, hash) = stamp(&stamps, &user_record(user))?;
            tx.execute(
                "INSERT INTO disabled_users (user, since, seq, hash) VALUES (?1, ?2, ?3, ?4)",
                params![user, column_time(since), seq, hash],
            )?;
        }
        tx.commit()?;
        Ok(problem)
    }

    /// Only the upgrade to a new schema reads the whole log this way (start-up loads the live
    /// rows), so it is a plain loop.
    fn replay(&mut self, each: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("SELECT body, prev_hash, hash FROM events ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            each(Self::row_to_event(row.get(0)?, row.get(1)?, row.get(2)?)?);
        }
        Ok(())
    }

    fn load_live(&mut self) -> Result<State, StoreError> {
        // One read transaction, so the parts agree with each other.
        let tx = self.conn.unchecked_transaction()?;
        let mut s = State::default();
        for g in bodies::<Grant>(&tx, "SELECT body FROM grants WHERE state = 'active'", [])? {
            s.add_active(g);
        }
        for r in bodies::<Request>(&tx, "SELECT body FROM requests WHERE state = 'pending'", [])? {
            s.add_pending(r);
        }
        let of_grants: Vec<RequestId> = s.grants.values().map(|g| g.request).collect();
        for id in of_grants {
            if let Some(r) = by_id::<Request>(&tx, "requests", id.0)? {
                s.requests.insert(id, r);
            }
        }
        for r in bodies::<Run>(&tx, "SELECT body FROM runs WHERE state = 'running'", [])? {
            s.running.insert(r.id);
            s.runs.insert(r.id, r);
        }
        for t in bodies::<Token>(&tx, "SELECT body FROM tokens", [])? {
            s.token_by_hash.insert(t.sha256.clone(), t.id);
            s.tokens.insert(t.id, t);
        }
        let mut stmt = tx.prepare("SELECT user, since FROM disabled_users")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let since: String = row.get(1)?;
            let since = chrono::DateTime::parse_from_rfc3339(&since)
                .map_err(|e| StoreError::Corrupt(format!("a disabled user's time cannot be read: {e}")))?;
            s.disabled.insert(row.get(0)?, since.with_timezone(&chrono::Utc));
        }
        drop(rows);
        drop(stmt);
        let max_id = |table: &str| -> Result<u64, StoreError> {
            Ok(tx.query_row(&format!("SELECT COALESCE(MAX(id), 0) FROM {table}"), [], |r| r.get::<_, i64>(0))? as u64)
        };
        // Ids never repeat, even if rows were deleted: the newest creation in the log counts too.
        // (The kind is written into the SQL so that its partial index serves the query.)
        let newest = |kind: &str| -> Result<u64, StoreError> {
            let sql = format!("SELECT record FROM events WHERE kind = '{kind}' ORDER BY seq DESC LIMIT 1");
            let record: Option<String> = tx.query_row(&sql, [], |r| r.get(0)).optional()?.flatten();
            Ok(record.and_then(|r| r.get(1..).and_then(|n| n.parse().ok())).unwrap_or(0))
        };
        s.last_request = max_id("requests")?.max(newest("request_created")?);
        s.last_run = max_id("runs")?.max(newest("run_started")?);
        let head = tx
            .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .optional()?;
        if let Some((seq, hash)) = head {
            s.last_seq = seq as u64;
            s.last_hash = hash;
        }
        check_live(&mut &*tx, &s)?;
        drop(tx);
        Ok(s)
    }

    fn request(&mut self, id: RequestId) -> Result<Option<Request>, StoreError> {
        by_id(&self.conn, "requests", id.0)
    }

    fn grant(&mut self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        by_id(&self.conn, "grants", id.0)
    }

    fn run(&mut self, id: RunId) -> Result<Option<Run>, StoreError> {
        by_id(&self.conn, "runs", id.0)
    }

    fn requests(&mut self, scope: &Scope) -> Result<Vec<Request>, StoreError> {
        in_scope(&self.conn, "requests", "requester", scope)
    }

    fn requests_of(&mut self, requester: &str, before: Option<RequestId>, limit: u32) -> Result<Vec<Request>, StoreError> {
        queried(&self.conn, query::requests_of(mark, requester, before, limit))
    }

    fn grants(&mut self, scope: &Scope) -> Result<Vec<Grant>, StoreError> {
        in_scope(&self.conn, "grants", "holder", scope)
    }

    fn runs(&mut self, scope: &Scope) -> Result<Vec<Run>, StoreError> {
        in_scope(&self.conn, "runs", "holder", scope)
    }

    fn append(&mut self, change: &Changeset) -> Result<(), StoreError> {
        let Changeset { events, rows, deliveries, .. } = change;
        // Each row is stamped with the newest of these events that writes its record.
        let stamps = stamps_of(events);
        // IMMEDIATE: the head read below stays the head until this commits.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !events.is_empty() {
            let now = head(&tx)?;
            if now != change.head {
                return Err(StoreError::Conflict(format!(
                    "it was decided after event {}, but the log is at event {} now",
                    change.head.seq, now.seq
                )));
            }
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (seq, at, actor, kind, subject, task, body, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for e in events {
                insert.execute(params![
                    e.seq as i64,
                    column_time(&e.at),
                    e.actor,
                    e.change.kind(),
                    e.change.subject(),
                    e.change.task(),
                    chain::body(e),
                    e.prev_hash,
                    e.hash,
                ])?;
            }
            write_rows(&tx, rows, &stamps)?;
            for e in events {
                match &e.change {
                    crate::model::Change::UserDisabled { user, .. } => {
                        tx.execute(
                            "INSERT OR REPLACE INTO disabled_users (user, since, seq, hash) VALUES (?1, ?2, ?3, ?4)",
                            params![user, column_time(&e.at), e.seq as i64, e.hash],
                        )?;
                    }
                    crate::model::Change::UserEnabled { user } => {
                        tx.execute("DELETE FROM disabled_users WHERE user = ?1", params![user])?;
                    }
                    _ => {}
                }
            }
            write_deliveries(&tx, deliveries)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn claim_deliveries(&mut self, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let tx = self.conn.transaction()?;
        let claimed = {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'pending' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2"
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![column_time(&now), limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(delivery_of(row)?);
            }
            let mut claim = tx.prepare_cached("UPDATE deliveries SET attempts = attempts + 1, next_at = ?2 WHERE id = ?1")?;
            for d in &mut out {
                claim.execute(params![d.id as i64, column_time(&lease_until)])?;
                d.attempts += 1;
                d.next_at = lease_until;
            }
            out
        };
        tx.commit()?;
        Ok(claimed)
    }

    fn next_delivery_at(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> =
            self.conn.query_row("SELECT MIN(next_at) FROM deliveries WHERE state = 'pending'", [], |r| r.get(0)).optional()?.flatten();
        at.map(|t| time_of(&t)).transpose()
    }

    fn settle_delivery(&mut self, id: u64, settled: &Settled) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE deliveries SET state = ?2, next_at = ?3, last_error = ?4, done_at = ?5 WHERE id = ?1",
            params![
                id as i64,
                settled.state.as_str(),
                column_time(&settled.next_at),
                settled.last_error,
                settled.done_at.as_ref().map(column_time)
            ],
        )?;
        Ok(())
    }

    fn deliveries(&mut self, state: Option<DeliveryState>) -> Result<Vec<Delivery>, StoreError> {
        let filter = if state.is_some() { "WHERE state = ?1" } else { "WHERE ?1 IS NULL" };
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries {filter} ORDER BY id");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([state.map(DeliveryState::as_str)])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(delivery_of(row)?);
        }
        Ok(out)
    }

    fn delivery(&mut self, id: u64) -> Result<Option<Delivery>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([id as i64])?;
        rows.next()?.map(delivery_of).transpose()
    }

    fn retry_delivery(&mut self, id: u64, now: DateTime<Utc>) -> Result<Option<DeliveryState>, StoreError> {
        let tx = self.conn.transaction()?;
        let state: Option<String> = tx.query_row("SELECT state FROM deliveries WHERE id = ?1", [id as i64], |r| r.get(0)).optional()?;
        let Some(state) = state else { return Ok(None) };
        let state =
            DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("delivery {id} has the unknown state {state:?}")))?;
        if state == DeliveryState::Failed {
            // not_before = now: the give-up time counts from the retry, not from the first try.
            tx.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = ?2, not_before = ?2, done_at = NULL WHERE id = ?1",
                params![id as i64, column_time(&now)],
            )?;
        }
        tx.commit()?;
        Ok(Some(state))
    }

    fn events(&mut self, f: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let q = query::events(mark, f);
        let mut stmt = self.conn.prepare_cached(&q.sql)?;
        let mut rows = stmt.query(values(q.args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Self::row_to_event(row.get(0)?, row.get(1)?, row.get(2)?)?);
        }
        if f.tail.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    fn verify(&mut self) -> Result<VerifyReport, StoreError> {
        // One read transaction: the events and the projections are checked in one consistent snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let mut walk = ChainWalk::default();
        {
            let mut stmt =
                tx.prepare("SELECT seq, at, actor, kind, subject, task, body, prev_hash, hash, record FROM events ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let event = StoredEvent {
                    seq: row.get::<_, i64>(0)? as u64,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    kind: row.get(3)?,
                    subject: row.get(4)?,
                    task: row.get(5)?,
                    body: row.get(6)?,
                    prev_hash: row.get(7)?,
                    hash: row.get(8)?,
                    record: row.get(9)?,
                };
                if !walk.step(event) {
                    break;
                }
            }
        }
        let report = walk.finish(&mut &*tx)?;
        tx.finish()?;
        Ok(report)
    }

    fn raw_events(&mut self, after_seq: u64, limit: u32) -> Result<Vec<super::RawEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT seq, body, prev_hash, hash FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(rusqlite::params![after_seq as i64, limit], |r| {
            Ok(super::RawEvent { seq: r.get::<_, i64>(0)? as u64, body: r.get(1)?, prev_hash: r.get(2)?, hash: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn token_use(&mut self) -> Result<Vec<(TokenId, DateTime<Utc>)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT id, last_used FROM tokens WHERE last_used IS NOT NULL ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((TokenId(row.get::<_, i64>(0)? as u64), time_of(&row.get::<_, String>(1)?)?));
        }
        Ok(out)
    }

    fn save_token_use(&mut self, used: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        save_token_use(&tx, used)?;
        tx.commit()?;
        Ok(())
    }

    fn import_deliveries(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        write_deliveries(&tx, deliveries)?;
        tx.commit()?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(Self::open_reader(&self.path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{Actor, Change};
    use crate::notify::fixtures::delivery;

    /// A change of one event after `head`, as a daemon that last saw `head` would write it.
    fn change_after(head: &Head, user: &str) -> Changeset {
        let at = chrono::Utc::now();
        let events = chain::seal(head.seq, &head.hash, at, &Actor::from("root"), vec![Change::UserEnabled { user: user.into() }]);
        Changeset { head: head.clone(), events, ..Changeset::default() }
    }

    /// Two writers that both saw the same head: the first extends the chain, the second is
    /// refused as a conflict and writes nothing, so the chain can never fork.
    #[test]
    fn an_append_decided_against_an_old_head_is_a_conflict_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("zsa.db")).unwrap();
        let first = change_after(&Head::default(), "a");
        store.append(&first).unwrap();
        let now = head(&store.conn).unwrap();
        assert_eq!((now.seq, now.hash.as_str()), (1, first.events[0].hash.as_str()));

        let late = change_after(&Head::default(), "b");
        let err = store.append(&late).unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("decided after event 0, but the log is at event 1")), "{err}");
        assert_eq!(head(&store.conn).unwrap(), now, "nothing was written");
        // Decided again against the new head, it goes in.
        store.append(&change_after(&now, "b")).unwrap();
        assert_eq!(head(&store.conn).unwrap().seq, 2);
        assert!(store.verify().unwrap().first_bad_seq.is_none());
    }

    #[test]
    fn the_outbox_keeps_each_key_once_leases_claims_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zsa.db");
        let t0 = "2026-01-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let later = t0 + chrono::Duration::minutes(5);
        let mut store = SqliteStore::open(&path).unwrap();
        let (a, b) = (delivery("1:request_created:hook:alice", t0), delivery("1:request_created:hook:bob", later));
        store.append(&Changeset { deliveries: vec![a.clone(), b.clone()], ..Changeset::default() }).unwrap();
        // The same key again (a replayed plan) is not a second delivery.
        store.append(&Changeset { deliveries: vec![a.clone()], ..Changeset::default() }).unwrap();
        assert_eq!(store.deliveries(None).unwrap().len(), 2);
        assert_eq!(store.next_delivery_at().unwrap(), Some(t0));
        // Only what is due is claimed, and a claimed one is not due again before its lease ends.
        let lease = t0 + chrono::Duration::seconds(30);
        let claimed = store.claim_deliveries(t0, lease, 10).unwrap();
        assert_eq!(claimed.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), vec![a.key.as_str()]);
        assert_eq!((claimed[0].attempts, claimed[0].next_at), (1, lease));
        assert!(store.claim_deliveries(t0, lease, 10).unwrap().is_empty());
        assert_eq!(store.next_delivery_at().unwrap(), Some(lease));
        let id = claimed[0].id;
        store.settle_delivery(id, &Settled { state: DeliveryState::Sent, next_at: lease, last_error: None, done_at: Some(t0) }).unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        let sent = store.deliveries(Some(DeliveryState::Sent)).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].notice, a.notice, "the notice is kept whole");
        assert_eq!(sent[0].done_at, Some(t0));
        let pending = store.deliveries(Some(DeliveryState::Pending)).unwrap();
        assert_eq!(pending.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), vec![b.key.as_str()]);
        assert_eq!(store.next_delivery_at().unwrap(), Some(later));
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_version_3_database_gets_the_last_used_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zsa.db");
        let store = SqliteStore::open(&path).unwrap();
        store.conn.execute_batch("ALTER TABLE tokens DROP COLUMN last_used; PRAGMA user_version = 3;").unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 4);
        assert_eq!(store.token_use().unwrap(), vec![]);
        store.save_token_use(&[(TokenId(1), Utc::now())]).unwrap();
    }
}
