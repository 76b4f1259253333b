//! The hash chain. Each event's hash is SHA-256 over the previous event's hash and the event's
//! own canonical JSON, so changing, removing or reordering any event breaks every hash after it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{Actor, Auth, Change, Event};

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The part of an event that is hashed: everything but the hashes themselves.
#[derive(Serialize)]
struct Content<'a> {
    seq: u64,
    at: DateTime<Utc>,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: &'a Option<Auth>,
    #[serde(flatten)]
    change: &'a Change,
}

/// The canonical JSON of an event's content. serde_json writes struct fields in declaration
/// order, so the same event always gives the same bytes; the store keeps these exact bytes.
pub fn body(event: &Event) -> String {
    let content = Content { seq: event.seq, at: event.at, actor: &event.actor, auth: &event.auth, change: &event.change };
    serde_json::to_string(&content).unwrap_or_default()
}

pub fn hash(prev_hash: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// Numbers and hashes new changes after the event `(last_seq, last_hash)`.
pub fn seal(last_seq: u64, last_hash: &str, at: DateTime<Utc>, actor: &Actor, changes: Vec<Change>) -> Vec<Event> {
    let mut prev = if last_hash.is_empty() { GENESIS.to_string() } else { last_hash.to_string() };
    let mut seq = last_seq;
    changes
        .into_iter()
        .map(|change| {
            seq += 1;
            let mut event = Event {
                seq,
                at,
                actor: actor.user.clone(),
                auth: Some(actor.auth.clone()),
                change,
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            event.hash = hash(&prev, &body(&event));
            prev = event.hash.clone();
            event
        })
        .collect()
}

/// What `body` wrote, read back in one pass (start-up parses every stored event).
#[derive(serde::Deserialize)]
struct Stored {
    seq: u64,
    at: DateTime<Utc>,
    actor: String,
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(flatten)]
    change: Change,
}

/// Parses a stored body back into an event with its hashes.
pub fn parse(body: &str, prev_hash: String, hash: String) -> Result<Event, String> {
    let s: Stored = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(Event { seq: s.seq, at: s.at, actor: s.actor, auth: s.auth, change: s.change, prev_hash, hash })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sealing_links_each_event_to_the_one_before() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let changes = vec![Change::UserEnabled { user: "a".into() }, Change::UserEnabled { user: "b".into() }];
        let events = seal(0, "", at, &Actor::from("root"), changes);
        assert_eq!(events[0].prev_hash, GENESIS);
        assert_eq!(events[1].prev_hash, events[0].hash);
        assert_eq!(events[1].seq, 2);
        assert_eq!(events[1].hash, hash(&events[0].hash, &body(&events[1])));
        let back = parse(&body(&events[1]), events[1].prev_hash.clone(), events[1].hash.clone()).unwrap();
        assert_eq!(back, events[1]);
        let tampered = body(&events[1]).replace("\"b\"", "\"c\"");
        assert_ne!(hash(&events[0].hash, &tampered), events[1].hash);
    }

    #[test]
    fn a_token_issued_before_expiries_and_scopes_reads_and_hashes_as_it_was_written() {
        // As zsa wrote it before tokens had an expiry and a scope.
        let old = r#"{"seq":3,"at":"2026-01-01T00:00:00Z","actor":"root","auth":{"via":"peer","uid":0},"kind":"token_issued","token":"T1","user":"alice","sha256":"ab"}"#;
        let event = parse(old, GENESIS.into(), hash(GENESIS, old)).unwrap();
        let Change::TokenIssued { expires_at, scope, .. } = &event.change else { panic!("{event:?}") };
        assert_eq!((*expires_at, *scope), (None, crate::model::TokenScope::All), "it never expires and may do everything");
        assert_eq!(body(&event), old, "the same bytes, so its hash still verifies");
    }
}
