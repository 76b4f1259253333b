//! The embedded default store: one SQLite file.
//!
//! Durability: WAL journal with `synchronous = FULL`. In WAL mode FULL syncs the log at every
//! commit, so a commit that returned survives a crash of the process and a loss of power; NORMAL
//! would be faster but may lose the last commits on power loss, which would break the promise
//! that an acknowledged change is never lost. WAL also lets readers run beside the writer.

use std::path::{Path, PathBuf};

use chrono::SecondsFormat;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{EventFilter, Scope, Store, StoreError, chain};
use crate::model::wire::VerifyReport;
use crate::model::{Event, Grant, GrantId, Request, RequestId, Run, RunId};
use crate::rules::{State, Token};

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
CREATE INDEX IF NOT EXISTS events_subject_at ON events(subject, at);
CREATE INDEX IF NOT EXISTS events_actor_at ON events(actor, at);
CREATE INDEX IF NOT EXISTS events_task_at ON events(task, at);
CREATE INDEX IF NOT EXISTS events_actor_seq ON events(actor, seq);
CREATE INDEX IF NOT EXISTS events_subject_seq ON events(subject, seq);
CREATE INDEX IF NOT EXISTS events_task_seq ON events(task, seq);
CREATE INDEX IF NOT EXISTS events_policy_loads ON events(seq) WHERE kind = 'policy_loaded';
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
";

/// `PRAGMA user_version` of the schema above. Version 1 added the runs table, which `open`
/// fills from the log for a database written before it.
const SCHEMA_VERSION: i64 = 1;

/// A run's `state` column: the live index looks for `running`.
fn run_state(r: &Run) -> &'static str {
    if r.ended.is_some() { "ended" } else { "running" }
}

fn from_json<T: DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("a stored row cannot be read: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

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

/// Every row of `table` in `scope`; `person` is the column naming whose it is.
fn in_scope<T: DeserializeOwned>(conn: &Connection, table: &str, person: &str, scope: &Scope) -> Result<Vec<T>, StoreError> {
    let mut sql = format!("SELECT body FROM {table}");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Scope::Concerning { user, tasks } = scope {
        args.push(user.clone().into());
        sql.push_str(&format!(" WHERE {person} = ?1"));
        if !tasks.is_empty() {
            let marks: Vec<String> = (2..tasks.len() + 2).map(|n| format!("?{n}")).collect();
            sql.push_str(&format!(" OR task IN ({})", marks.join(", ")));
            args.extend(tasks.iter().map(|t| t.clone().into()));
        }
    }
    sql.push_str(" ORDER BY id");
    bodies(conn, &sql, rusqlite::params_from_iter(args))
}

/// Times in indexed columns have one fixed width, so text order is time order.
fn column_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
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
        let mut store = SqliteStore { path: path.to_path_buf(), conn };
        if version < SCHEMA_VERSION {
            store.upgrade()?;
        }
        Ok(store)
    }

    /// Brings a database from before the runs table up to date: its runs are rebuilt from the
    /// log, in one transaction with the new version number.
    fn upgrade(&mut self) -> Result<(), StoreError> {
        let mut full = State::default();
        self.replay(&mut |e| full.apply(&e))?;
        let tx = self.conn.transaction()?;
        for r in full.runs.values() {
            tx.execute(
                "INSERT OR REPLACE INTO runs (id, holder, task, state, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.id.0 as i64, r.holder, r.task, run_state(r), to_json(r)?],
            )?;
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

    /// Compares the projection tables with the state the events rebuild.
    fn projection_problem(&self, rebuilt: &State) -> Result<Option<String>, StoreError> {
        fn compare<T: PartialEq + serde::de::DeserializeOwned>(
            conn: &Connection,
            table: &str,
            label: &str,
            expected: &std::collections::BTreeMap<u64, &T>,
        ) -> Result<Option<String>, StoreError> {
            let mut stmt = conn.prepare(&format!("SELECT id, body FROM {table} ORDER BY id"))?;
            let mut rows = stmt.query([])?;
            let mut seen = 0usize;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let body: String = row.get(1)?;
                seen += 1;
                let stored: Option<T> = serde_json::from_str(&body).ok();
                match (stored, expected.get(&(id as u64))) {
                    (Some(s), Some(e)) if &s == *e => {}
                    _ => return Ok(Some(format!("the {table} row of {label}{id} differs from what the events say"))),
                }
            }
            if seen != expected.len() {
                return Ok(Some(format!("the {table} table holds {seen} rows but the events make {}", expected.len())));
            }
            Ok(None)
        }
        let requests: std::collections::BTreeMap<u64, &Request> = rebuilt.requests.iter().map(|(k, v)| (k.0, v)).collect();
        let grants: std::collections::BTreeMap<u64, &Grant> = rebuilt.grants.iter().map(|(k, v)| (k.0, v)).collect();
        let tokens: std::collections::BTreeMap<u64, &Token> = rebuilt.tokens.iter().map(|(k, v)| (k.0, v)).collect();
        let runs: std::collections::BTreeMap<u64, &Run> = rebuilt.runs.iter().map(|(k, v)| (k.0, v)).collect();
        if let Some(p) = compare(&self.conn, "requests", "R", &requests)? {
            return Ok(Some(p));
        }
        if let Some(p) = compare(&self.conn, "grants", "G", &grants)? {
            return Ok(Some(p));
        }
        if let Some(p) = compare(&self.conn, "runs", "X", &runs)? {
            return Ok(Some(p));
        }
        if let Some(p) = compare(&self.conn, "tokens", "T", &tokens)? {
            return Ok(Some(p));
        }
        let mut stmt = self.conn.prepare("SELECT user FROM disabled_users ORDER BY user")?;
        let users: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        let expected: Vec<String> = rebuilt.disabled.keys().cloned().collect();
        if users != expected {
            return Ok(Some("the disabled_users table differs from what the events say".into()));
        }
        Ok(None)
    }
}

impl Store for SqliteStore {
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
        s.last_request = max_id("requests")?;
        s.last_run = max_id("runs")?;
        let head = tx
            .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .optional()?;
        if let Some((seq, hash)) = head {
            s.last_seq = seq as u64;
            s.last_hash = hash;
        }
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

    fn grants(&mut self, scope: &Scope) -> Result<Vec<Grant>, StoreError> {
        in_scope(&self.conn, "grants", "holder", scope)
    }

    fn runs(&mut self, scope: &Scope) -> Result<Vec<Run>, StoreError> {
        in_scope(&self.conn, "runs", "holder", scope)
    }

    fn append(&mut self, events: &[Event], touched: &State) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
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
            let mut req =
                tx.prepare_cached("INSERT OR REPLACE INTO requests (id, requester, task, state, body) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for r in touched.requests.values() {
                req.execute(params![r.id.0 as i64, r.requester, r.task, r.state.as_str(), to_json(r)?])?;
            }
            let mut grant = tx.prepare_cached(
                "INSERT OR REPLACE INTO grants (id, holder, task, state, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for g in touched.grants.values() {
                grant.execute(params![g.id.0 as i64, g.holder, g.task, g.state.as_str(), column_time(&g.expires_at), to_json(g)?])?;
            }
            let mut run = tx.prepare_cached("INSERT OR REPLACE INTO runs (id, holder, task, state, body) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for r in touched.runs.values() {
                run.execute(params![r.id.0 as i64, r.holder, r.task, run_state(r), to_json(r)?])?;
            }
            let mut token =
                tx.prepare_cached("INSERT OR REPLACE INTO tokens (id, user, sha256, revoked, body) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for t in touched.tokens.values() {
                token.execute(params![t.id.0 as i64, t.user, t.sha256, t.revoked, to_json(t)?])?;
            }
            for e in events {
                match &e.change {
                    crate::model::Change::UserDisabled { user, .. } => {
                        tx.execute(
                            "INSERT OR REPLACE INTO disabled_users (user, since) VALUES (?1, ?2)",
                            params![user, column_time(&e.at)],
                        )?;
                    }
                    crate::model::Change::UserEnabled { user } => {
                        tx.execute("DELETE FROM disabled_users WHERE user = ?1", params![user])?;
                    }
                    _ => {}
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn events(&mut self, f: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let mut conds = String::from("seq > ?1");
        let mut args: Vec<rusqlite::types::Value> = vec![(f.after_seq.unwrap_or(0) as i64).into()];
        if let Some(since) = &f.since {
            args.push(column_time(since).into());
            conds.push_str(&format!(" AND at >= ?{}", args.len()));
        }
        if let Some(until) = &f.until {
            args.push(column_time(until).into());
            conds.push_str(&format!(" AND at < ?{}", args.len()));
        }
        if let Some(user) = &f.user {
            args.push(user.clone().into());
            let n = args.len();
            conds.push_str(&format!(" AND (subject = ?{n} OR actor = ?{n})"));
        }
        if let Some(task) = &f.task {
            args.push(task.clone().into());
            conds.push_str(&format!(" AND task = ?{}", args.len()));
        }
        let (order, limit) = match f.tail {
            Some(n) => ("DESC", Some(n.min(f.limit.unwrap_or(u32::MAX)))),
            None => ("", f.limit),
        };
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let sql = match &f.visible_to {
            None | Some(Scope::Everything) => format!("SELECT body, prev_hash, hash FROM events WHERE {conds} ORDER BY seq {order}{limit}"),
            Some(Scope::Concerning { user, tasks }) => {
                // One indexed range per way an event may concern the caller, each cut to the
                // page, then merged: a caller who may see nothing reads nothing, and one who sees
                // a little reads a little, however long the log.
                args.push(user.clone().into());
                let u = args.len();
                let mut ways = vec![format!("actor = ?{u}"), format!("subject = ?{u}"), "kind = 'policy_loaded'".to_string()];
                // One range per task (not `task IN`), so each reads in seq order and stops at the
                // page; past SQLite's limit of 500 terms in a compound select, one `IN` instead.
                if tasks.len() <= 400 {
                    for t in tasks {
                        args.push(t.clone().into());
                        ways.push(format!("task = ?{}", args.len()));
                    }
                } else {
                    let first = args.len() + 1;
                    args.extend(tasks.iter().map(|t| t.clone().into()));
                    let marks: Vec<String> = (first..first + tasks.len()).map(|n| format!("?{n}")).collect();
                    ways.push(format!("task IN ({})", marks.join(", ")));
                }
                let branches: Vec<String> = ways
                    .iter()
                    .map(|w| format!("SELECT seq FROM (SELECT seq FROM events WHERE {w} AND {conds} ORDER BY seq {order}{limit})"))
                    .collect();
                format!("SELECT body, prev_hash, hash FROM events WHERE seq IN ({}) ORDER BY seq {order}{limit}", branches.join(" UNION "))
            }
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
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
        let mut report = VerifyReport { ok: true, events: 0, head: None, first_bad_seq: None, problem: None };
        let mut rebuilt = State::default();
        let mut prev = chain::GENESIS.to_string();
        let mut expected_seq = 1u64;
        {
            let mut stmt = tx.prepare("SELECT seq, at, actor, kind, subject, task, body, prev_hash, hash FROM events ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let seq = row.get::<_, i64>(0)? as u64;
                let body: String = row.get(6)?;
                let prev_hash: String = row.get(7)?;
                let hash: String = row.get(8)?;
                let problem = if seq != expected_seq {
                    Some(format!("event {expected_seq} is missing (the next stored event is {seq})"))
                } else if prev_hash != prev {
                    Some(format!("event {seq} does not link to the event before it"))
                } else if chain::hash(&prev_hash, &body) != hash {
                    Some(format!("event {seq} was changed after it was written: its hash does not match its content"))
                } else {
                    match chain::parse(&body, prev_hash.clone(), hash.clone()) {
                        Err(e) => Some(format!("event {seq} cannot be read: {e}")),
                        Ok(e) => {
                            let columns_match = row.get::<_, String>(1)? == column_time(&e.at)
                                && row.get::<_, String>(2)? == e.actor
                                && row.get::<_, String>(3)? == e.change.kind()
                                && row.get::<_, Option<String>>(4)?.as_deref() == e.change.subject()
                                && row.get::<_, Option<String>>(5)?.as_deref() == e.change.task();
                            if columns_match {
                                rebuilt.apply(&e);
                                None
                            } else {
                                Some(format!("event {seq}'s indexed columns were changed; they no longer match its hashed content"))
                            }
                        }
                    }
                };
                if let Some(problem) = problem {
                    report.ok = false;
                    report.first_bad_seq = Some(seq.min(expected_seq));
                    report.problem = Some(problem);
                    return Ok(report);
                }
                report.events += 1;
                report.head = Some(hash.clone());
                prev = hash;
                expected_seq += 1;
            }
        }
        if let Some(problem) = self.projection_problem(&rebuilt)? {
            report.ok = false;
            report.problem = Some(problem);
        }
        tx.finish()?;
        Ok(report)
    }

    fn reader(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(Self::open_reader(&self.path)?))
    }
}
