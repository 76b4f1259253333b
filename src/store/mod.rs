//! Durable storage behind one trait, so backends can be swapped without touching the domain.
//! A store keeps the hash-chained event log and, written in the same transaction, the current
//! state of every request, grant, token and disabled user (the projections).

pub mod chain;
pub mod sqlite;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::model::Event;
use crate::model::wire::VerifyReport;
use crate::rules::State;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
}

pub trait Store: Send {
    /// Calls `each` with every event, in order. Used once at start to rebuild state.
    fn replay(&mut self, each: &mut dyn FnMut(Event)) -> Result<(), StoreError>;
    /// Appends sealed events and writes the rows of `touched` (the entities the events changed,
    /// already changed) in one transaction that is durable when this returns.
    fn append(&mut self, events: &[Event], touched: &State) -> Result<(), StoreError>;
    /// Events matching a filter, oldest first.
    fn events(&mut self, filter: &EventFilter) -> Result<Vec<Event>, StoreError>;
    /// Recomputes the hash chain and checks the projections against a replay of the events.
    fn verify(&mut self) -> Result<VerifyReport, StoreError>;
    /// Another handle on the same data for reads, so queries never wait behind a commit.
    fn reader(&self) -> Result<Box<dyn Store>, StoreError>;
}
