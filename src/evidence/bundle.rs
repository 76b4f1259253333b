//! A signed export of the audit log that verifies with no daemon and no database: one JSON line
//! naming the format and the daemon's audit key, then every event exactly as stored (its hashed
//! body's bytes and both hashes). `verify` checks, from the file alone and the key the auditor
//! holds: every hash, the chain from the first event without a gap, every checkpoint in it
//! signed by that key over the hash the event it names has, and, given the checkpoint file kept
//! outside the database, that the export holds every checkpointed event as signed and does not
//! end before the newest.

use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, PublicKey};
use crate::model::Change;
use crate::store::RawEvent;
use crate::store::chain;

/// What the first line says.
pub const FORMAT: &str = "zsa audit log";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The key of the daemon that exported it (for information: the verifier brings its own).
    pub key: String,
    pub exported_at: DateTime<Utc>,
}

/// Writes the header; the events follow, one `RawEvent` a line (`write_event`).
pub fn write_header(out: &mut impl Write, key: &str, exported_at: DateTime<Utc>) -> std::io::Result<()> {
    let header = Header { format: FORMAT.into(), version: 1, key: key.into(), exported_at };
    writeln!(out, "{}", serde_json::to_string(&header).map_err(std::io::Error::other)?)
}

pub fn write_event(out: &mut impl Write, event: &RawEvent) -> std::io::Result<()> {
    writeln!(out, "{}", serde_json::to_string(event).map_err(std::io::Error::other)?)
}

/// What an export that verifies holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    pub head: Option<String>,
    /// Checkpoints found in the log, and in the checkpoint file, all signed by the key.
    pub in_log: usize,
    pub in_file: usize,
}

/// Verifies an export read from `input`: every checkpoint in it signed by one of `keys` (several
/// daemons sharing a store each sign with their own), and, if given, the checkpoint file's lines
/// (`source` names it) signed by the first key, which is that file's daemon's. The first problem
/// found is the error.
pub fn verify(input: impl BufRead, keys: &[PublicKey], file: Option<(&str, &[(usize, Checkpoint)])>) -> Result<Verified, String> {
    let Some(key) = keys.first() else { return Err("no key to check checkpoints with: give the audit key `zsa audit key` printed".into()) };
    let shown = keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let mut lines = input.lines().enumerate();
    let header: Header = match lines.next() {
        Some((_, Ok(line))) => serde_json::from_str(&line).map_err(|e| format!("line 1 is not a zsa audit log header: {e}"))?,
        Some((_, Err(e))) => return Err(format!("cannot read the export: {e}")),
        None => return Err("the export is empty: it has no header line".into()),
    };
    if header.format != FORMAT || header.version != 1 {
        return Err(format!(
            "line 1: this is not a zsa audit log export zsa can read (format {:?}, version {})",
            header.format, header.version
        ));
    }
    // Every hash, by seq (index seq - 1), to check what checkpoints signed.
    let mut hashes: Vec<String> = Vec::new();
    let mut in_log = 0;
    for (n, line) in lines {
        let line = line.map_err(|e| format!("cannot read the export: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = n + 1;
        let event: RawEvent = serde_json::from_str(&line).map_err(|e| format!("line {at} is not an event: {e}"))?;
        let expected = hashes.len() as u64 + 1;
        if event.seq != expected {
            return Err(format!("line {at}: event {} where event {expected} should be: events are missing or out of order", event.seq));
        }
        let prev = hashes.last().map_or(chain::GENESIS, String::as_str);
        if event.prev_hash != prev {
            return Err(format!(
                "event {}: it follows {}, but the event before it has hash {prev}: the chain is broken",
                event.seq, event.prev_hash
            ));
        }
        let computed = chain::hash(prev, &event.body);
        if computed != event.hash {
            return Err(format!("event {}: its content hashes to {computed}, not to its hash {}: it was changed", event.seq, event.hash));
        }
        let parsed = chain::parse(&event.body, event.prev_hash.clone(), event.hash.clone())
            .map_err(|e| format!("event {}: its content does not read as an event: {e}", event.seq))?;
        if let Change::Checkpoint { signed_seq, signed_hash, signed_at, key: _, signature } = &parsed.change {
            let c = Checkpoint {
                seq: *signed_seq,
                hash: signed_hash.clone(),
                at: *signed_at,
                key: String::new(),
                signature: signature.clone(),
            };
            if !keys.iter().any(|k| c.signed_by(k)) {
                return Err(format!(
                    "event {}: its checkpoint is not signed by the key {shown}: it was forged, or another key signed it",
                    event.seq
                ));
            }
            match hashes.get((*signed_seq as usize).wrapping_sub(1)) {
                Some(h) if h == signed_hash => {}
                _ => {
                    return Err(format!(
                        "event {}: its checkpoint signed event {signed_seq} with hash {signed_hash}, which the log before it does not hold",
                        event.seq
                    ));
                }
            }
            in_log += 1;
        }
        hashes.push(event.hash);
    }
    let last = hashes.len() as u64;
    let in_file = match file {
        None => 0,
        Some((source, checkpoints)) => {
            super::check(checkpoints, key, source, last, |seq| hashes.get((seq as usize).checked_sub(1)?).cloned())
                .map_err(|m| m.problem)?
        }
    };
    Ok(Verified { events: last, head: hashes.last().cloned(), in_log, in_file })
}
