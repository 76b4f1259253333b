//! How values are kept in columns, the same in every backend: times as fixed-width RFC 3339
//! text (so text order is time order and a row reads back identically anywhere), rows as JSON
//! bodies, and the stamps that tie each current-state row to the newest event that wrote it.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use crate::model::{Event, Run};
use crate::notify::outbox::{Delivery, DeliveryState};

/// Times in indexed columns have one fixed width, so text order is time order.
pub fn column_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn time_of(t: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("a stored time cannot be read: {e}")))
}

pub fn from_json<T: DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("a stored row cannot be read: {e}")))
}

pub fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A run's `state` column: the live index looks for `running`.
pub fn run_state(r: &Run) -> &'static str {
    if r.ended.is_some() { "ended" } else { "running" }
}

/// The newest event that wrote each current-state row (by `Change::rows` key): what the row
/// must name as its writer, as (seq, hash).
pub type Stamps = HashMap<String, (u64, String)>;

/// The stamps of `events`: for each row they write, the newest of them.
pub fn stamps_of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Stamps {
    events.into_iter().flat_map(|e| e.change.rows().into_iter().map(|row| (row, (e.seq, e.hash.clone())))).collect()
}

/// The newest event that wrote `row`, as (seq, hash) columns.
pub fn stamp(stamps: &Stamps, row: &str) -> Result<(i64, String), StoreError> {
    stamps
        .get(row)
        .map(|(seq, hash)| (*seq as i64, hash.clone()))
        .ok_or_else(|| StoreError::Corrupt(format!("the row of {row} is written by no event")))
}

/// How a current-state row is found: by its numeric id, or (a disabled user) by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKey {
    Id(i64),
    User(String),
}

/// The table a row key (`R4`, `G4`, `X2`, `T1`, `U:alice`) names, and the row's key in it.
pub fn row_of(key: &str) -> Option<(&'static str, RowKey)> {
    if let Some(user) = key.strip_prefix("U:") {
        return Some(("disabled_users", RowKey::User(user.to_string())));
    }
    let n: i64 = key.get(1..)?.parse().ok()?;
    let table = match key.chars().next()? {
        'R' => "requests",
        'G' => "grants",
        'X' => "runs",
        'T' => "tokens",
        _ => return None,
    };
    Some((table, RowKey::Id(n)))
}

/// The columns of an outbox row in the order every backend selects them.
pub const DELIVERY_COLUMNS: &str =
    "id, key, seq, channel, trigger, recipient, notice, state, attempts, next_at, not_before, last_error, created_at, done_at";

/// An outbox row as its columns hold it (`DELIVERY_COLUMNS`), before it is read back.
pub struct DeliveryColumns {
    pub id: i64,
    pub key: String,
    pub seq: i64,
    pub channel: String,
    pub trigger: String,
    pub recipient: String,
    pub notice: String,
    pub state: String,
    pub attempts: i64,
    pub next_at: String,
    pub not_before: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub done_at: Option<String>,
}

impl DeliveryColumns {
    /// The columns `d` is written as; `id` is `None` for a delivery not yet written (id 0),
    /// which the store numbers.
    pub fn of(d: &Delivery) -> Result<(Option<i64>, DeliveryColumns), StoreError> {
        let columns = DeliveryColumns {
            id: d.id as i64,
            key: d.key.clone(),
            seq: d.seq as i64,
            channel: d.channel.clone(),
            trigger: d.trigger.as_str().to_string(),
            recipient: d.recipient.clone(),
            notice: notice_column(d)?,
            state: d.state.as_str().to_string(),
            attempts: d.attempts as i64,
            next_at: column_time(&d.next_at),
            not_before: d.not_before.as_ref().map(column_time),
            last_error: d.last_error.clone(),
            created_at: column_time(&d.created_at),
            done_at: d.done_at.as_ref().map(column_time),
        };
        Ok(((d.id != 0).then_some(columns.id), columns))
    }

    pub fn read(self) -> Result<Delivery, StoreError> {
        let optional_time = |t: Option<String>| t.as_deref().map(time_of).transpose();
        Ok(Delivery {
            id: self.id as u64,
            key: self.key,
            seq: self.seq as u64,
            channel: self.channel,
            trigger: crate::notify::Trigger::parse(&self.trigger)
                .ok_or_else(|| StoreError::Corrupt(format!("a delivery names an unknown trigger {}", self.trigger)))?,
            recipient: self.recipient,
            notice: from_json::<crate::notify::content::Stored>(&self.notice)?.notice(),
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("a delivery is in an unknown state {}", self.state)))?,
            attempts: self.attempts as u32,
            next_at: time_of(&self.next_at)?,
            not_before: optional_time(self.not_before)?,
            last_error: self.last_error,
            created_at: time_of(&self.created_at)?,
            done_at: optional_time(self.done_at)?,
        })
    }
}

/// The stored form of a notice: its facts only (`notify::content::Stored`).
pub fn notice_column(d: &Delivery) -> Result<String, StoreError> {
    to_json(&crate::notify::content::Stored::of(&d.notice))
}
