//! Durable storage behind one trait, so backends can be swapped without touching the domain.
//! A store keeps the hash-chained event log and, written in the same transaction, the current
//! state of every request, grant, run, token and disabled user (the projections). The daemon
//! starts from the projections' live rows and reads history from them; only `verify` replays
//! the whole log.

pub mod chain;
pub mod codec;
pub mod integrity;
pub mod pg_target;
pub mod postgres;
pub mod query;
pub mod sqlite;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::model::wire::VerifyReport;
use crate::model::{Event, Grant, GrantId, Request, RequestId, Run, RunId, Token, TokenId};
use crate::notify::outbox::{Delivery, DeliveryState};
use crate::policy::Policy;
use crate::rules::State;

/// What went wrong in a store, in kinds the engine can act on whatever the backend.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The chain's head moved since the change was decided (another daemon wrote first): nothing
    /// was written; catch up with the log and decide again.
    #[error("the log moved on while this change was decided: {0}")]
    Conflict(String),
    /// The database cannot be reached, or stayed busy too long: nothing was written; try again.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other error, as the backend said it.
    #[error("database error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// This store cannot do that; the message says what does.
    #[error("{0}")]
    Unsupported(String),
    /// A current-state row or an event was changed behind the daemon's back.
    #[error(
        "{0}. Someone changed the database behind the daemon's back, so zsa will not serve from it. Start the daemon once with --rebuild-from-log to rebuild the current state from the hash-chained log (the rebuild is recorded in the log)"
    )]
    Tampered(String),
    /// The log itself does not verify, so nothing can be rebuilt from it.
    #[error("{0}; restore the database from a backup and compare its chain head with the one you wrote down")]
    LogBroken(String),
}

impl StoreError {
    /// The same failure, for another caller whose change was in the same failed transaction
    /// (group commit): every one of them is told what happened.
    pub fn again(&self) -> StoreError {
        match self {
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
            StoreError::Backend(e) => StoreError::Backend(e.to_string().into()),
            StoreError::Io(e) => StoreError::Io(std::io::Error::new(e.kind(), e.to_string())),
            StoreError::Unsupported(m) => StoreError::Unsupported(m.clone()),
            StoreError::Tampered(m) => StoreError::Tampered(m.clone()),
            StoreError::LogBroken(m) => StoreError::LogBroken(m.clone()),
        }
    }
}

/// The head of the hash chain: the newest event's seq and hash (seq 0 when the log is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// The rows a change writes, each as it is after the change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rows {
    pub requests: BTreeMap<RequestId, Request>,
    pub grants: BTreeMap<GrantId, Grant>,
    pub runs: BTreeMap<RunId, Run>,
    pub tokens: BTreeMap<TokenId, Token>,
}

impl Rows {
    /// Takes in the rows a later change wrote: where both wrote a row, the later one stands.
    pub fn absorb(&mut self, later: &Rows) {
        self.requests.extend(later.requests.iter().map(|(id, r)| (*id, r.clone())));
        self.grants.extend(later.grants.iter().map(|(id, g)| (*id, g.clone())));
        self.runs.extend(later.runs.iter().map(|(id, r)| (*id, r.clone())));
        self.tokens.extend(later.tokens.iter().map(|(id, t)| (*id, t.clone())));
    }
}

impl From<State> for Rows {
    /// The requests, grants, runs and tokens of a state (disabled users are written from their
    /// events).
    fn from(state: State) -> Rows {
        Rows { requests: state.requests, grants: state.grants, runs: state.runs, tokens: state.tokens }
    }
}

/// What one decision writes, all or nothing: its sealed events, the rows they change, and the
/// notices they cause (`notify::outbox`). `head` is the head the decision was made against: a
/// store whose log has moved past it refuses the whole change as a `Conflict`, so two daemons
/// can never both extend the chain from the same event.
#[derive(Clone, Debug, Default)]
pub struct Changeset {
    pub head: Head,
    pub events: Vec<Event>,
    pub rows: Rows,
    pub deliveries: Vec<Delivery>,
}

/// Which events an audit query wants. `user` matches the actor or the person concerned.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub after_seq: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub task: Option<String>,
    pub limit: Option<u32>,
    /// Only the most recent N matching events (still returned oldest first).
    pub tail: Option<u32>,
    /// Only events that may concern someone with this scope: their own (as actor or subject),
    /// those about the tasks they approve, and policy loads. It narrows, in indexed SQL, what
    /// `rules::event_visible` then decides, so reading for a caller who may see little is cheap.
    pub visible_to: Option<Scope>,
}

/// Which requests, grants and runs a listing may hold. The rule itself is `rules::*_visible`;
/// this lets the store skip rows the caller could never see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Everything,
    /// The user's own, and those for the tasks they approve.
    Concerning {
        user: String,
        tasks: Vec<String>,
    },
}

impl Scope {
    pub fn of(policy: &Policy, user: &str) -> Scope {
        if policy.sees_everything(user) {
            return Scope::Everything;
        }
        let tasks = policy.tasks.keys().filter(|t| policy.approves_task(user, t)).cloned().collect();
        Scope::Concerning { user: user.to_string(), tasks }
    }
}

/// How one attempt at a delivery ended, for `Store::settle_delivery`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub state: DeliveryState,
    /// When a delivery still pending is due again.
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// When it ended (sent, failed or skipped).
    pub done_at: Option<DateTime<Utc>>,
}

pub trait Store: Send {
    /// Calls `each` with every event, in order (upgrading a store; benchmarks).
    fn replay(&mut self, each: &mut dyn FnMut(Event)) -> Result<(), StoreError>;
    /// What is live (see `rules::State`), read from the projections: what the daemon starts from.
    fn load_live(&mut self) -> Result<State, StoreError>;
    fn request(&mut self, id: RequestId) -> Result<Option<Request>, StoreError>;
    fn grant(&mut self, id: GrantId) -> Result<Option<Grant>, StoreError>;
    fn run(&mut self, id: RunId) -> Result<Option<Run>, StoreError>;
    /// Every request in `scope`, oldest first.
    fn requests(&mut self, scope: &Scope) -> Result<Vec<Request>, StoreError>;
    /// Up to `limit` of `requester`'s own requests older than `before` (from the newest when
    /// `None`), newest first: a person's history a page at a time, so a console never holds it
    /// all.
    fn requests_of(&mut self, requester: &str, before: Option<RequestId>, limit: u32) -> Result<Vec<Request>, StoreError>;
    /// Every grant in `scope`, oldest first.
    fn grants(&mut self, scope: &Scope) -> Result<Vec<Grant>, StoreError>;
    /// Every run in `scope`, oldest first.
    fn runs(&mut self, scope: &Scope) -> Result<Vec<Run>, StoreError>;
    /// Writes a change in one transaction that is durable when this returns, or nothing of it:
    /// a `Conflict` if the log's head is no longer `change.head` (a change without events, only
    /// deliveries, extends no chain and is never one).
    fn append(&mut self, change: &Changeset) -> Result<(), StoreError>;
    /// Takes up to `limit` pending deliveries due at `now`, oldest due first: each gets one more
    /// attempt and is not due again before `lease_until` (so one still being tried is not taken
    /// twice, and one whose attempt died with the daemon is tried again after it).
    fn claim_deliveries(&mut self, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError>;
    /// When the next pending delivery is due, if any is pending.
    fn next_delivery_at(&mut self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records how an attempt ended: still pending (due again at `next_at`), or done.
    fn settle_delivery(&mut self, id: u64, settled: &Settled) -> Result<(), StoreError>;
    /// The outbox, oldest first: every delivery, or only those in `state`.
    fn deliveries(&mut self, state: Option<DeliveryState>) -> Result<Vec<Delivery>, StoreError>;
    /// One delivery by its id.
    fn delivery(&mut self, id: u64) -> Result<Option<Delivery>, StoreError>;
    /// Puts a failed delivery back to pending, due at `now`, with its attempts and give-up time
    /// counted afresh from `now`. Answers the state it was in (`None`: no such delivery); only a
    /// failed one is changed.
    fn retry_delivery(&mut self, id: u64, now: DateTime<Utc>) -> Result<Option<DeliveryState>, StoreError>;
    /// Up to `limit` events after `after_seq`, in order, exactly as stored (the hashed body's
    /// bytes): what a signed export carries, so it verifies with no daemon and no database.
    fn raw_events(&mut self, after_seq: u64, limit: u32) -> Result<Vec<RawEvent>, StoreError>;
    /// Events matching a filter, oldest first.
    fn events(&mut self, filter: &EventFilter) -> Result<Vec<Event>, StoreError>;
    /// Recomputes the hash chain and checks the projections against a replay of the events.
    fn verify(&mut self) -> Result<VerifyReport, StoreError>;
    /// When each token was last used, as last saved (tokens never used are not listed).
    fn token_use(&mut self) -> Result<Vec<(crate::model::TokenId, DateTime<Utc>)>, StoreError>;
    /// Saves when tokens were last used, beside their rows: no event, since it decides nothing.
    /// A time earlier than the one saved is ignored.
    fn save_token_use(&mut self, used: &[(crate::model::TokenId, DateTime<Utc>)]) -> Result<(), StoreError>;
    /// Another handle on the same data for reads, so queries never wait behind a commit.
    fn reader(&self) -> Result<Box<dyn Store>, StoreError>;
    /// Rewrites every current-state row from the log, after checking that the log itself
    /// verifies (a broken log cannot be the source). Returns what was wrong with the rows, for
    /// the `state_rebuilt` event the daemon records.
    fn rebuild_from_log(&mut self) -> Result<String, StoreError>;
    /// Whether other daemons may write this store too (PostgreSQL), so a daemon on it says it is
    /// alive and follows their writes; false where one daemon owns the store (SQLite).
    fn shared(&self) -> bool {
        false
    }
    /// Writes a consistent copy of the whole store, as of one moment, to the new file `path`
    /// while writers go on (`zsa admin backup`). Only a SQLite store can.
    fn backup_to(&mut self, _path: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(
            "a PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump), or copied to a SQLite file with zsa store copy".into(),
        ))
    }
    /// Notes that `me` is alive, by the store's own clock (one clock for every daemon, however
    /// far apart their hosts' clocks are). Written only if the identity's row is absent, is
    /// `me`'s, or is the `Takeover`'s (a start replacing a process that is gone): false if
    /// another process holds the identity. No event: it decides nothing.
    fn heartbeat(&mut self, _me: &Instance, _takeover: Option<&Takeover>) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Each daemon's last heartbeat, aged by the store's clock.
    fn heartbeats(&mut self) -> Result<Vec<Beat>, StoreError> {
        Ok(Vec::new())
    }
    /// Removes `me`'s heartbeat (a clean stop that left no run going), so its identity is free
    /// at once and nobody waits out its lease.
    fn retire(&mut self, _me: &Instance) -> Result<(), StoreError> {
        Ok(())
    }
    /// A way to hear at once that another daemon extended the log, where the backend has one
    /// (PostgreSQL's LISTEN/NOTIFY); `None` where one daemon owns the store (SQLite).
    fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError> {
        Ok(None)
    }
    /// Writes outbox rows exactly as another store holds them (ids, states, attempts, errors,
    /// times): `zsa store copy`, into a store with an empty outbox.
    fn import_deliveries(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError>;
    /// Keeps every other writer from appending until `end_turn`: a daemon that lost a race for
    /// the head takes its turn before catching up and deciding again, so it cannot lose again
    /// (and again) to a busier daemon. Nothing to do where one daemon owns the store.
    fn take_turn(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn end_turn(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One daemon process among those sharing a store, as its heartbeat names it: the daemon's
/// identity (kept across restarts), a mark new at each start, and where the process runs, so
/// a start can tell its own crashed predecessor from a copy of its state that is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub daemon: String,
    pub mark: String,
    pub host: String,
    /// Where `pid` means something: the kernel's boot id and the PID namespace
    /// (`boot_id/pid:[inode]`); elsewhere the same number is another process.
    pub pid_space: String,
    pub pid: u32,
    /// When the process started (clock ticks since boot): a pid freed and used again is
    /// another process.
    pub started: u64,
}

/// A start taking an identity over from the process holding it: its mark, and how old its
/// heartbeat must still be when the row is written (a holder that beat meanwhile keeps it).
#[derive(Clone, Debug, PartialEq)]
pub struct Takeover {
    pub mark: String,
    pub older_than: std::time::Duration,
}

/// An event exactly as the log holds it: the body its hash covers, and the two hashes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub seq: u64,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A daemon's last heartbeat: the process that wrote it, and how long ago by the store's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Beat {
    pub instance: Instance,
    pub age: std::time::Duration,
}

/// Hears that the log moved (see `Store::listener`).
pub trait Listener: Send {
    /// Waits at most `timeout` for word that the log moved: true if it came.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, StoreError>;
}

/// Where a daemon keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// One SQLite file (`sqlite:PATH`): the default, `zsa.db` in the state directory.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database (`postgres://USER@HOST:PORT/DATABASE`), which several daemons may share.
    Postgres(String),
}

impl Location {
    pub fn parse(text: &str) -> Result<Location, String> {
        let redacted = pg_target::redacted(text);
        let shown = crate::model::text::inert(&redacted);
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.trim().is_empty() {
                return Err("sqlite: needs the database file's path, like sqlite:/var/lib/zsa/zsa.db".into());
            }
            return Ok(Location::Sqlite(path.into()));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            pg_target::Target::parse(text)?;
            return Ok(Location::Postgres(text.to_string()));
        }
        Err(format!(
            "'{shown}' is not a store: give sqlite:PATH (one file; the default is zsa.db in the state directory) or postgres://USER@HOST:PORT/DATABASE"
        ))
    }

    /// How it is shown in logs and messages: never with a password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite:{}", path.display()),
            Location::Postgres(url) => pg_target::redacted(url),
        }
    }
}

/// Opens the store at `location`, creating or upgrading its schema. Blocking.
pub fn open(location: &Location) -> Result<Box<dyn Store>, StoreError> {
    Ok(match location {
        Location::Sqlite(path) => Box::new(sqlite::SqliteStore::open(path)?),
        Location::Postgres(url) => Box::new(postgres::PostgresStore::open(url)?),
    })
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn a_store_is_a_sqlite_file_or_this_machines_postgresql_and_a_password_is_never_shown() {
        assert_eq!(Location::parse("sqlite:/var/lib/zsa/zsa.db"), Ok(Location::Sqlite("/var/lib/zsa/zsa.db".into())));
        for local in [
            "postgres://zsa@127.0.0.1:5432/zsa",
            "postgresql://zsa@localhost/zsa",
            "postgres://zsa@[::1]/zsa",
            "postgres://zsa@%2Frun%2Fpostgresql/zsa",
        ] {
            assert_eq!(Location::parse(local), Ok(Location::Postgres(local.into())), "{local}");
        }
        let remote = Location::parse("postgres://zsa:hunter2@db.example.com:5432/zsa").unwrap_err();
        assert!(remote.starts_with("'postgres://zsa:***@db.example.com:5432/zsa': db.example.com is not this machine"), "{remote}");
        assert!(remote.contains("Unix socket"), "it says what to do instead: {remote}");
        let hidden = Location::parse("postgres://zsa@localhost/zsa?hostaddr=10.0.0.5").unwrap_err();
        assert!(hidden.contains("10.0.0.5 is not this machine"), "{hidden}");
        for wrong in ["mysql://zsa:hunter2@db/zsa", "/var/lib/zsa/zsa.db", "sqlite:"] {
            let e = Location::parse(wrong).unwrap_err();
            assert!(!e.contains("hunter2") && e.contains("sqlite:"), "{e}");
        }
        assert_eq!(Location::Postgres("postgres://zsa:hunter2@127.0.0.1/zsa".into()).describe(), "postgres://zsa:***@127.0.0.1/zsa");
        let in_query = Location::Postgres("postgres://zsa@localhost/zsa?sslmode=disable&password=hunter2".into()).describe();
        assert_eq!(in_query, "postgres://zsa@localhost/zsa?sslmode=disable&password=***");
        let remote = Location::parse("postgres://zsa@db.example.com/zsa?password=hunter2").unwrap_err();
        assert!(!remote.contains("hunter2"), "{remote}");
    }

    /// Another host is reached only over TLS checked against named roots: never "TLS if the
    /// server offers it" (sslmode=prefer), never TLS without roots to check against.
    #[test]
    fn another_host_is_reached_only_over_tls_checked_against_named_roots() {
        for fine in [
            "postgres://zsa@db.example.com/zsa?sslmode=require&sslrootcert=/etc/zsa/db-ca.pem",
            "postgres://zsa@db.example.com/zsa?sslmode=verify-full&sslrootcert=system",
            "postgres://zsa@db.example.com/zsa?sslrootcert=%2Fetc%2Fzsa%2Fdb-ca.pem",
            "postgres://zsa@localhost/zsa?sslmode=require&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem",
        ] {
            assert_eq!(Location::parse(fine), Ok(Location::Postgres(fine.into())), "{fine}");
        }
        let prefer = Location::parse("postgres://zsa@db.example.com/zsa?sslmode=prefer").unwrap_err();
        assert!(prefer.contains("db.example.com is not this machine") && prefer.contains("sslmode=require"), "{prefer}");
        let unchecked = Location::parse("postgres://zsa:hunter2@db.example.com/zsa?sslmode=require").unwrap_err();
        assert!(unchecked.contains("names no roots") && unchecked.contains("sslrootcert=system"), "{unchecked}");
        assert!(!unchecked.contains("hunter2"), "{unchecked}");
        let socket = Location::parse("postgres://zsa@%2Frun%2Fpostgresql/zsa?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(socket.contains("Unix socket, which has no TLS"), "{socket}");
        let encoded = Location::Postgres("postgres://zsa@localhost/zsa?passwor%64=hunter2".into()).describe();
        assert!(!encoded.contains("hunter2"), "a password under a percent-encoded key is hidden too: {encoded}");
        let both = Location::parse("postgres://zsa@localhost/zsa?sslmode=disable&sslrootcert=/x.pem").unwrap_err();
        assert!(both.contains("drop one"), "{both}");
        let empty = Location::parse("postgres://zsa@db.example.com/zsa?sslrootcert=").unwrap_err();
        assert!(empty.contains("sslrootcert needs a file's path"), "{empty}");
    }
}
