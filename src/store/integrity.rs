//! The checks that tie the current-state rows to the hash-chained log, the same for every
//! backend: at start every live row is replayed from its record's events and compared; `verify`
//! walks the whole chain and compares every row. A backend supplies the reads (`Ledger`).

use std::collections::{BTreeMap, BTreeSet};

use super::codec::{RowKey, Stamps, column_time, row_of, stamps_of};
use super::{Store, StoreError, chain};
use crate::model::event::user_record;
use crate::model::wire::VerifyReport;
use crate::model::{Grant, GrantId, Request, RequestId, Run, RunId, Token, TokenId};
use crate::rules::State;

/// The reads the integrity checks make of a backend, in one consistent snapshot.
pub trait Ledger {
    /// The events of `record`, oldest first, as stored: (seq, body, prev_hash, hash).
    fn record_events(&mut self, record: &str) -> Result<Vec<(u64, String, String, String)>, StoreError>;
    /// The (seq, hash) a current-state row names as the newest event that wrote it, if the row is there.
    fn row_stamp(&mut self, table: &str, key: &RowKey) -> Result<Option<(u64, String)>, StoreError>;
    /// The distinct records of the events with `from <= record < to`.
    fn records_between(&mut self, from: &str, to: &str) -> Result<Vec<String>, StoreError>;
    /// Every row of `table` (requests, grants, runs or tokens) by id: (id, body, seq, hash).
    fn table_rows(&mut self, table: &str) -> Result<Vec<(u64, String, u64, String)>, StoreError>;
    /// The users the disabled_users table lists, in order.
    fn disabled_users(&mut self) -> Result<Vec<String>, StoreError>;
}

/// Replays the events of one record into an empty state, checking each is intact; returns that
/// state and the stamps of the rows they wrote.
fn rebuild_record(ledger: &mut dyn Ledger, record: &str) -> Result<(State, Stamps), StoreError> {
    let mut state = State::default();
    let mut stamps = Stamps::new();
    for (seq, body, prev, hash) in ledger.record_events(record)? {
        if chain::hash(&prev, &body) != hash {
            return Err(StoreError::Tampered(format!("event {seq} (of {record}) was changed after it was written")));
        }
        let event = chain::parse(&body, prev, hash).map_err(StoreError::Corrupt)?;
        stamps.extend(stamps_of([&event]));
        state.apply(&event);
    }
    Ok((state, stamps))
}

/// Before the daemon serves from the current-state rows, checks each live one against the
/// events of its record: the row names the newest of them as its writer, each is intact, and
/// replaying them gives the row exactly. A row edited behind the daemon's back (an `expires_at`
/// moved to 2099, a revoked token made valid) stops the start, named.
pub fn check_live(ledger: &mut dyn Ledger, live: &State) -> Result<(), StoreError> {
    let mut records: BTreeSet<String> = BTreeSet::new();
    records.extend(live.requests.keys().map(|id| id.to_string()));
    records.extend(live.grants.keys().map(|id| id.request().to_string()));
    records.extend(live.runs.keys().map(|id| id.to_string()));
    records.extend(live.tokens.keys().map(|id| id.to_string()));
    records.extend(live.disabled.keys().map(|u| user_record(u)));
    for record in records {
        let (rebuilt, stamps) = rebuild_record(ledger, &record)?;
        let rows: Vec<String> = match record.strip_prefix('R') {
            Some(n) => vec![record.clone(), format!("G{n}")],
            None => vec![record.clone()],
        };
        for row in rows {
            let Some((table, key)) = row_of(&row) else { continue };
            let label = row.strip_prefix("U:").map_or(row.clone(), |u| format!("user {u}"));
            let Some(written) = ledger.row_stamp(table, &key)? else {
                if stamps.contains_key(&row) && (table != "disabled_users" || rebuilt.is_disabled(&row[2..])) {
                    return Err(StoreError::Tampered(format!("the {table} row of {label} is missing, though the log wrote it")));
                }
                continue;
            };
            let n = row.get(1..).and_then(|n| n.parse::<u64>().ok());
            let same = match (table, n) {
                ("requests", Some(n)) => live.requests.get(&RequestId(n)).map(|r| rebuilt.requests.get(&RequestId(n)) == Some(r)),
                ("grants", Some(n)) => live.grants.get(&GrantId(n)).map(|g| rebuilt.grants.get(&GrantId(n)) == Some(g)),
                ("runs", Some(n)) => live.runs.get(&RunId(n)).map(|r| rebuilt.runs.get(&RunId(n)) == Some(r)),
                ("tokens", Some(n)) => live.tokens.get(&TokenId(n)).map(|t| rebuilt.tokens.get(&TokenId(n)) == Some(t)),
                ("disabled_users", _) => {
                    let user = &row[2..];
                    live.disabled.get(user).map(|since| rebuilt.disabled.get(user).map(column_time) == Some(column_time(since)))
                }
                _ => None,
            };
            let problem = match stamps.get(&row) {
                Some(newest) if *newest != written => Some(format!(
                    "it names event {} as the last to write it, but the newest event that wrote it is {}",
                    written.0, newest.0
                )),
                None => Some("no event of the log wrote it".to_string()),
                Some(_) if same == Some(false) => Some(format!("its content differs from what the events of {record} make of it")),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                return Err(StoreError::Tampered(format!("the {table} row of {label} does not match the log: {problem}")));
            }
        }
    }
    // Rows deleted outright: every user the log says is disabled, and every token it issued,
    // must have its row (a deleted disabled_users row would let the user back in).
    for record in ledger.records_between("U:", "U;")? {
        let user = &record[2..];
        if !live.is_disabled(user) && rebuild_record(ledger, &record)?.0.is_disabled(user) {
            return Err(StoreError::Tampered(format!(
                "the disabled_users row of user {} is missing, though the log says the user is disabled",
                crate::model::text::inert(user)
            )));
        }
    }
    for record in ledger.records_between("T", "U")? {
        if !record[1..].parse::<u64>().is_ok_and(|n| live.tokens.contains_key(&TokenId(n))) {
            return Err(StoreError::Tampered(format!("the tokens row of {record} is missing, though the log issued it")));
        }
    }
    Ok(())
}

/// Compares the current-state tables with the state the events rebuild.
fn projection_problem(ledger: &mut dyn Ledger, rebuilt: &State, stamps: &Stamps) -> Result<Option<String>, StoreError> {
    fn compare<T: PartialEq + serde::de::DeserializeOwned>(
        ledger: &mut dyn Ledger,
        table: &str,
        label: &str,
        expected: &BTreeMap<u64, &T>,
        stamps: &Stamps,
    ) -> Result<Option<String>, StoreError> {
        let rows = ledger.table_rows(table)?;
        for (id, body, seq, hash) in &rows {
            let stored: Option<T> = serde_json::from_str(body).ok();
            match (stored, expected.get(id)) {
                (Some(s), Some(e)) if &s == *e => {}
                _ => return Ok(Some(format!("the {table} row of {label}{id} differs from what the events say"))),
            }
            if stamps.get(&format!("{label}{id}")) != Some(&(*seq, hash.clone())) {
                return Ok(Some(format!("the {table} row of {label}{id} does not name the newest event that wrote it")));
            }
        }
        if rows.len() != expected.len() {
            return Ok(Some(format!("the {table} table holds {} rows but the events make {}", rows.len(), expected.len())));
        }
        Ok(None)
    }
    let requests: BTreeMap<u64, &Request> = rebuilt.requests.iter().map(|(k, v)| (k.0, v)).collect();
    let grants: BTreeMap<u64, &Grant> = rebuilt.grants.iter().map(|(k, v)| (k.0, v)).collect();
    let tokens: BTreeMap<u64, &Token> = rebuilt.tokens.iter().map(|(k, v)| (k.0, v)).collect();
    let runs: BTreeMap<u64, &Run> = rebuilt.runs.iter().map(|(k, v)| (k.0, v)).collect();
    if let Some(p) = compare(ledger, "requests", "R", &requests, stamps)? {
        return Ok(Some(p));
    }
    if let Some(p) = compare(ledger, "grants", "G", &grants, stamps)? {
        return Ok(Some(p));
    }
    if let Some(p) = compare(ledger, "runs", "X", &runs, stamps)? {
        return Ok(Some(p));
    }
    if let Some(p) = compare(ledger, "tokens", "T", &tokens, stamps)? {
        return Ok(Some(p));
    }
    let expected: Vec<String> = rebuilt.disabled.keys().cloned().collect();
    if ledger.disabled_users()? != expected {
        return Ok(Some("the disabled_users table differs from what the events say".into()));
    }
    Ok(None)
}

/// One stored event as `verify` reads it: its indexed columns beside its hashed content.
pub struct StoredEvent {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub subject: Option<String>,
    pub task: Option<String>,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
    pub record: Option<String>,
}

/// `verify`'s walk of the whole chain, event by event in seq order: each is numbered in turn,
/// links to the one before, hashes to its hash, reads, and has columns that match its content.
pub struct ChainWalk {
    report: VerifyReport,
    rebuilt: State,
    stamps: Stamps,
    prev: String,
    expected_seq: u64,
}

impl Default for ChainWalk {
    fn default() -> Self {
        ChainWalk {
            report: VerifyReport {
                ok: true,
                events: 0,
                head: None,
                first_bad_seq: None,
                problem: None,
                checkpoints: None,
                audit_key: None,
                signed_approvals: None,
            },
            rebuilt: State::default(),
            stamps: Stamps::new(),
            prev: chain::GENESIS.to_string(),
            expected_seq: 1,
        }
    }
}

impl ChainWalk {
    /// Checks the next stored event; false once one is wrong (the walk ends there).
    pub fn step(&mut self, row: StoredEvent) -> bool {
        let (seq, expected) = (row.seq, self.expected_seq);
        let problem = if seq != expected {
            Some(format!("event {expected} is missing (the next stored event is {seq})"))
        } else if row.prev_hash != self.prev {
            Some(format!("event {seq} does not link to the event before it"))
        } else if chain::hash(&row.prev_hash, &row.body) != row.hash {
            Some(format!("event {seq} was changed after it was written: its hash does not match its content"))
        } else {
            match chain::parse(&row.body, row.prev_hash.clone(), row.hash.clone()) {
                Err(e) => Some(format!("event {seq} cannot be read: {e}")),
                Ok(e) => {
                    let columns_match = row.at == column_time(&e.at)
                        && row.actor == e.actor
                        && row.kind == e.change.kind()
                        && row.subject.as_deref() == e.change.subject()
                        && row.task.as_deref() == e.change.task()
                        && row.record == e.change.record();
                    if columns_match {
                        self.stamps.extend(stamps_of([&e]));
                        self.rebuilt.apply(&e);
                        None
                    } else {
                        Some(format!("event {seq}'s indexed columns were changed; they no longer match its hashed content"))
                    }
                }
            }
        };
        if let Some(problem) = problem {
            self.report.ok = false;
            self.report.first_bad_seq = Some(seq.min(expected));
            self.report.problem = Some(problem);
            return false;
        }
        self.report.events += 1;
        self.report.head = Some(row.hash.clone());
        self.prev = row.hash;
        self.expected_seq += 1;
        true
    }

    /// The report: where the chain broke, or else whether the current-state tables match it.
    pub fn finish(mut self, ledger: &mut dyn Ledger) -> Result<VerifyReport, StoreError> {
        if self.report.ok
            && let Some(problem) = projection_problem(ledger, &self.rebuilt, &self.stamps)?
        {
            self.report.ok = false;
            self.report.problem = Some(problem);
        }
        Ok(self.report)
    }
}

/// What rebuilding the current state from the log writes: why it was rebuilt, the whole state
/// the log makes, and each row's stamp. Refused when the log itself does not verify (a broken
/// log cannot be the source).
pub fn rebuilt_from_log(store: &mut dyn Store) -> Result<(String, State, Stamps), StoreError> {
    let report = store.verify()?;
    if let Some(seq) = report.first_bad_seq {
        return Err(StoreError::LogBroken(format!(
            "the log itself does not verify at event {seq} ({}), so the current state cannot be rebuilt from it",
            report.problem.as_deref().unwrap_or("unknown problem")
        )));
    }
    let problem = report.problem.unwrap_or_else(|| "asked for; the current-state tables already matched the log".into());
    let mut full = State::default();
    let mut stamps = Stamps::new();
    store.replay(&mut |e| {
        stamps.extend(stamps_of([&e]));
        full.apply(&e);
    })?;
    Ok((problem, full, stamps))
}
