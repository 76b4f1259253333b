//! A signed export of the audit log that verifies with no daemon and no database: one JSON line
//! naming the format and the daemon's audit key, then every event exactly as stored (its hashed
//! body's bytes and both hashes). `verify` checks, from the file alone and the key the auditor
//! holds: every hash, the chain from the first event without a gap, every checkpoint in it
//! signed by that key over the hash the event it names has, and, given the checkpoint file kept
//! outside the database, that the export holds every checkpointed event as signed and does not
//! end before the newest; and every approval signed with an approver's SSH key, against the
//! request the export holds.

use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, PublicKey};
use crate::store::RawEvent;

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
    /// The last event a checkpoint in the export covers (0: none): events after it are chained
    /// but signed by nobody.
    pub signed_through: u64,
    /// Approvals signed with an approver's SSH key, each checked again.
    pub signed_approvals: usize,
}

/// Verifies an export read from `input`: the chain (`Walk`), every checkpoint in it signed by one
/// of `keys` (several daemons sharing a store each sign with their own) over the hash the event
/// it names has, and, if given, the checkpoint file's lines (`source` names it) signed by the
/// first key, which is that file's daemon's; every signed approval, and with `signers` that its
/// key is one listed for its approver. The first problem found is the error. What comes
/// after the last checkpoint is reported in `signed_through`; the caller decides about it.
pub fn verify(
    input: impl BufRead,
    keys: &[PublicKey],
    file: Option<(&str, &[(usize, Checkpoint)])>,
    signers: Option<(super::approval::AllowedSigners, String)>,
) -> Result<Verified, String> {
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
    let mut walk = super::Walk::new(None).checking_approvals(signers);
    let mut checked = 0;
    let mut signed_through = 0;
    for (n, line) in lines {
        let line = line.map_err(|e| format!("cannot read the export: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: RawEvent = serde_json::from_str(&line).map_err(|e| format!("line {} is not an event: {e}", n + 1))?;
        walk.step(&event).map_err(|m| m.problem)?;
        // A checkpoint the walk just found: signed by a key held, over what the log holds.
        for (at, c) in &walk.recorded[checked..] {
            if !keys.iter().any(|k| c.signed_by(k)) {
                return Err(format!(
                    "event {at}: its checkpoint is not signed by the key {shown}: it was forged, or another key signed it"
                ));
            }
            if walk.hash_at(c.seq).as_deref() != Some(c.hash.as_str()) {
                return Err(format!(
                    "event {at}: its checkpoint signed event {} with hash {}, which the log before it does not hold",
                    c.seq, c.hash
                ));
            }
            signed_through = signed_through.max(*at);
        }
        checked = walk.recorded.len();
    }
    let last = walk.last_seq();
    let in_file = match file {
        None => 0,
        Some((source, checkpoints)) => {
            let held = super::check(checkpoints, key, source, last, |seq| walk.hash_at(seq)).map_err(|m| m.problem)?;
            signed_through = signed_through.max(checkpoints.iter().map(|(_, c)| c.seq).max().unwrap_or(0));
            held
        }
    };
    Ok(Verified {
        events: last,
        head: walk.head().map(str::to_string),
        in_log: checked,
        in_file,
        signed_through,
        signed_approvals: walk.signed_approvals,
    })
}
