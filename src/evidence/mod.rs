//! Evidence nobody can quietly rewrite: signed checkpoints. Whoever can write the database can
//! recompute every hash after an event they change, or cut the newest events off; a checkpoint
//! is the daemon's Ed25519 signature over (seq, hash, time) of an event, made with a key kept
//! outside the database, recorded in the log and appended to a file outside the database. A log
//! that no longer holds a checkpointed event with the signed hash, or that ends before the
//! newest checkpoint, is caught.
//!
//! The key is Ed25519 through aws-lc-rs (the provider every TLS connection here uses). Keys and
//! signatures are written in hex: `ed25519:<64 hex digits>` for a public key.

pub mod approval;
pub mod bundle;

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use crate::model::text;

/// What a checkpoint's signature covers, and the line written to the checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The event signed for: its sequence number and hash.
    pub seq: u64,
    pub hash: String,
    /// When it was signed, by the daemon's clock.
    pub at: DateTime<Utc>,
    /// The public key that signed it (`ed25519:...`).
    pub key: String,
    /// The Ed25519 signature over `statement`, in hex.
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed: a fixed first line (so no other zsa signature can be passed off
    /// as a checkpoint), then the fields, each on a line of its own.
    pub fn statement(seq: u64, hash: &str, at: DateTime<Utc>) -> String {
        format!("zsa checkpoint v1\nseq {seq}\nhash {hash}\nat {}\n", at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    /// Whether the signature is `key`'s over this checkpoint's statement. The key is the one the
    /// verifier trusts, never the one the checkpoint names (a forger names their own).
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        let Ok(signature) = hex::decode(&self.signature) else { return false };
        let statement = Self::statement(self.seq, &self.hash, self.at);
        UnparsedPublicKey::new(&ED25519, &key.0).verify(statement.as_bytes(), &signature).is_ok()
    }
}

/// An Ed25519 public key, shown as `ed25519:` and 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let bad = || format!("{:?} is not a zsa audit key: give it as `zsa audit key` prints it, ed25519: and 64 hex digits", text.trim());
        let digits = text.trim().strip_prefix("ed25519:").ok_or_else(bad)?;
        let bytes = hex::decode(digits).map_err(|_| bad())?;
        if bytes.len() != 32 {
            return Err(bad());
        }
        Ok(PublicKey(bytes))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ed25519:{}", hex::encode(&self.0))
    }
}

/// The daemon's signing key, kept in `STATE/audit-key` (0600, outside the database).
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// The key in `state_dir`, made there at the first start. A key file anyone else could read
    /// (or write) is refused: whoever holds it can sign checkpoints for a rewritten log.
    pub fn load_or_create(state_dir: &Path) -> anyhow::Result<SigningKey> {
        let file = key_path(state_dir);
        if std::fs::symlink_metadata(&file).is_err() {
            let document = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("cannot make an audit signing key"))?;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| anyhow::anyhow!("cannot write the audit signing key to {}: {e}", file.display()))?;
            writeln!(f, "{}", hex::encode(document.as_ref()))?;
            f.sync_all()?;
        }
        let text = crate::fs_trust::read_secret(&file, "the audit signing key").map_err(|e| anyhow::anyhow!(e.0))?;
        let der = hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("{} does not hold an audit signing key", file.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|_| anyhow::anyhow!("{} does not hold an Ed25519 audit signing key", file.display()))?;
        Ok(SigningKey { pair })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.pair.public_key().as_ref().to_vec())
    }

    /// Signs that the log's event `seq` has `hash`, at `at`.
    pub fn sign(&self, seq: u64, hash: &str, at: DateTime<Utc>) -> Checkpoint {
        let signature = self.pair.sign(Checkpoint::statement(seq, hash, at).as_bytes());
        Checkpoint { seq, hash: hash.to_string(), at, key: self.public().to_string(), signature: hex::encode(signature.as_ref()) }
    }
}

/// Where the signing key is kept.
pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit-key")
}

/// Appends a checkpoint to the file outside the database, durably (one JSON line each).
pub fn append(file: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    let mut f = open_for_append(file).map_err(std::io::Error::other)?;
    // After an append that was cut short, the next line starts on a line of its own.
    let mut line = String::new();
    let mut reader = std::fs::File::open(file)?;
    if reader.seek(std::io::SeekFrom::End(0))? > 0 {
        let mut last = [0u8; 1];
        reader.seek(std::io::SeekFrom::End(-1))?;
        reader.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push('\n');
        }
    }
    line.push_str(&serde_json::to_string(checkpoint).map_err(std::io::Error::other)?);
    line.push('\n');
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

/// The checkpoint file, opened to append (made 0600 if absent): never through a symlink, and
/// only if it is the daemon's own and nobody else can write it (`fs_trust`).
pub fn open_for_append(file: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::PermissionsExt;
    let f = crate::fs_trust::append_own_file(file, "the checkpoint file").map_err(|e| e.0)?;
    let mode = f.metadata().map_err(|e| format!("cannot read {} (the checkpoint file): {e}", file.display()))?.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "refusing {} (the checkpoint file): others can write it (mode {:o}), and could drop the lines that catch a cut log; chmod 600 it",
            file.display(),
            mode & 0o777
        ));
    }
    Ok(f)
}

/// The checkpoints in a file, in order, each with its line number; a line that is not one is
/// an error naming it (a file that was tampered with says so rather than being half read).
pub fn read(file: &Path) -> Result<Vec<(usize, Checkpoint)>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read the checkpoints in {}: {e}", file.display())),
    };
    let complete = text.ends_with('\n');
    let count = text.lines().count();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(c) => out.push((n + 1, c)),
            // An unfinished line: an append a crash or a full disk cut short (the next append
            // starts a line of its own after it). What it was to hold is in the log, and a line
            // missing from the file is caught there (`Checkpoints::check_log`).
            Err(e) if e.is_eof() || (!complete && n + 1 == count) => {
                tracing::warn!(file = %file.display(), line = n + 1, "a line of the checkpoint file is unfinished (an append was cut short); it is skipped");
            }
            Err(e) => return Err(format!("{} line {} is not a checkpoint: {e}", file.display(), n + 1)),
        }
    }
    Ok(out)
}

/// A walk of a log's events in order, exactly as stored: each numbered in turn from 1, linked to
/// the one before, hashing to its hash. It keeps the hashes asked for (or all), and the
/// checkpoints recorded in the log, so the log can be held against signed ones without a second
/// read. A deletion, an edited event (its hash kept or not) or a broken link stops it.
pub struct Walk {
    expected: u64,
    prev: String,
    wanted: Option<std::collections::BTreeSet<u64>>,
    hashes: std::collections::BTreeMap<u64, String>,
    /// The checkpoints recorded in the log: (the seq of their event, the checkpoint).
    pub recorded: Vec<(u64, Checkpoint)>,
    /// With `checking_approvals`: each request still open, as asked, to check its signed
    /// approvals against, and whose signed approval stands.
    open: Option<std::collections::HashMap<crate::model::RequestId, Asked>>,
    /// How many signed approvals were checked again.
    pub signed_approvals: usize,
    /// With `checking_approvals(Some(..))`: the keys each approver may sign with, and where
    /// they came from.
    signers: Option<(approval::AllowedSigners, String)>,
}

/// What a request asked for, as its `request_created` event says.
struct Asked {
    request: crate::model::Request,
    /// Whose signed approval of it stands (not dropped since).
    standing: BTreeSet<String>,
}

impl Walk {
    /// A walk keeping the hashes of `wanted` seqs (`None`: every hash).
    pub fn new(wanted: Option<std::collections::BTreeSet<u64>>) -> Walk {
        Walk {
            expected: 1,
            prev: crate::store::chain::GENESIS.to_string(),
            wanted,
            hashes: Default::default(),
            recorded: Vec::new(),
            open: None,
            signed_approvals: 0,
            signers: None,
        }
    }

    /// Also checks every signed approval again: made by the key its event names, over the
    /// statement for the request as the log's `request_created` says and the event's approver.
    /// Someone who rewrites the log and signs it with the daemon's key still cannot make an
    /// approver seem to approve what they did not.
    /// With `signers` (and the file they came from), each signing key must also be one listed
    /// for its approver there: a key the log merely names proves nothing about whose it is.
    pub fn checking_approvals(mut self, signers: Option<(approval::AllowedSigners, String)>) -> Walk {
        self.open = Some(Default::default());
        self.signers = signers;
        self
    }

    /// The approval part of `step`: `event` read whole.
    fn check_approval(&mut self, seq: u64, event: crate::model::Event) -> Result<(), Mismatch> {
        use crate::model::Change;
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        let who = text::inert_line(&event.actor);
        let bad = |problem: String| Err(Mismatch { seq, problem: format!("event {seq}: {problem}") });
        match event.change {
            Change::RequestCreated { request, .. } => {
                if let Some(r) = crate::model::Request::created(&event.change, event.at) {
                    open.insert(request, Asked { request: r, standing: BTreeSet::new() });
                }
            }
            Change::RequestApproved { request, signature, .. } => {
                let Some(asked) = open.get_mut(&request) else {
                    if signature.is_some() {
                        return bad(format!("a signed approval of {request}, which the log does not show as asked for and open"));
                    }
                    return Ok(());
                };
                let Some(signature) = signature else {
                    if asked.request.signed_approvals {
                        return bad(format!(
                            "{who}'s approval of {request} is not signed, and {request} was asked for when its task took only signed approvals: the signature was removed"
                        ));
                    }
                    return Ok(());
                };
                let facts = approval::Facts::from(&asked.request);
                if let Err(why) = approval::check_recorded(&facts, &event.actor, &signature, event.at) {
                    return bad(format!("{who}'s approval of {request}: {why}"));
                }
                if let Some((signers, source)) = &self.signers
                    && !signers.allows(&event.actor, &signature.key)
                {
                    return bad(format!(
                        "{who}'s approval of {request} was signed with the key {}, which {source} does not list for {who}: the approval is not theirs, or the file is out of date",
                        text::inert_line(&signature.key)
                    ));
                }
                asked.standing.insert(event.actor.clone());
                self.signed_approvals += 1;
            }
            Change::ApprovalDropped { request, approver, .. } => {
                if let Some(asked) = open.get_mut(&request) {
                    asked.standing.remove(&approver);
                }
            }
            // A grant made from a request that took only signed approvals names only approvers
            // whose signed approval stands.
            Change::GrantStarted { request, approved_by, .. } | Change::GrantExtended { extension: Some(request), approved_by, .. } => {
                if let Some(asked) = open.get(&request).filter(|a| a.request.signed_approvals)
                    && let Some(unsigned) = approved_by.iter().find(|a| !asked.standing.contains(*a))
                {
                    return bad(format!(
                        "the grant from {request} names {} as an approver, but the log holds no standing signed approval of theirs",
                        text::inert_line(unsigned)
                    ));
                }
                open.remove(&request);
            }
            Change::RequestDenied { request, .. }
            | Change::RequestCancelled { request, .. }
            | Change::RequestExpired { request, .. }
            | Change::ExtensionApproved { request, .. } => {
                open.remove(&request);
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks the next event; the first problem ends the walk.
    pub fn step(&mut self, e: &crate::store::RawEvent) -> Result<(), Mismatch> {
        let seq = self.expected;
        let bad = |problem: String| Err(Mismatch { seq, problem });
        if e.seq != seq {
            return bad(format!("event {seq} is missing (the next one is {}): events were removed", e.seq));
        }
        if e.prev_hash != self.prev {
            return bad(format!("event {seq} does not link to the event before it: the log was cut or spliced"));
        }
        if crate::store::chain::hash(&e.prev_hash, &e.body) != e.hash {
            return bad(format!("event {seq} was changed after it was written: its hash does not match its content"));
        }
        // Only a checkpoint's body is read whole (and, checking approvals, a request's); every
        // body is hashed.
        if self.open.is_some()
            && (e.body.contains("\"kind\":\"request_")
                || e.body.contains("\"kind\":\"grant_started\"")
                || e.body.contains("\"kind\":\"grant_extended\""))
        {
            let parsed = crate::store::chain::parse(&e.body, e.prev_hash.clone(), e.hash.clone())
                .map_err(|why| Mismatch { seq, problem: format!("event {seq} cannot be read: {why}") })?;
            self.check_approval(seq, parsed)?;
        }
        if e.body.contains("\"kind\":\"checkpoint\"") {
            let parsed = crate::store::chain::parse(&e.body, e.prev_hash.clone(), e.hash.clone())
                .map_err(|why| Mismatch { seq, problem: format!("event {seq} cannot be read: {why}") })?;
            if parsed.seq != seq {
                return bad(format!("event {seq} says it is event {}", parsed.seq));
            }
            if let crate::model::Change::Checkpoint { signed_seq, signed_hash, signed_at, key, signature } = parsed.change {
                let c = Checkpoint { seq: signed_seq, hash: signed_hash, at: signed_at, key, signature };
                self.recorded.push((seq, c));
            }
        }
        if self.wanted.as_ref().is_none_or(|w| w.contains(&seq)) {
            self.hashes.insert(seq, e.hash.clone());
        }
        self.prev = e.hash.clone();
        self.expected += 1;
        Ok(())
    }

    /// The seq of the last event walked (0: none).
    pub fn last_seq(&self) -> u64 {
        self.expected - 1
    }

    pub fn head(&self) -> Option<&str> {
        (self.expected > 1).then_some(self.prev.as_str())
    }

    /// The hash of event `seq`, if it was kept.
    pub fn hash_at(&self, seq: u64) -> Option<String> {
        self.hashes.get(&seq).cloned()
    }
}

/// What checking a log against checkpoints found wrong, first problem first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The first event that is not as signed (or the first missing one).
    pub seq: u64,
    pub problem: String,
}

/// Checks a log against checkpoints signed by `key`: every checkpoint carries `key`'s signature,
/// the log holds each checkpointed event with the signed hash (`hash_at`), and it does not end
/// before the newest one (`last_seq`). `source` names where the checkpoints came from.
pub fn check(
    checkpoints: &[(usize, Checkpoint)],
    key: &PublicKey,
    source: &str,
    last_seq: u64,
    mut hash_at: impl FnMut(u64) -> Option<String>,
) -> Result<usize, Mismatch> {
    for (line, c) in checkpoints {
        if !c.signed_by(key) {
            return Err(Mismatch {
                seq: c.seq,
                problem: format!(
                    "checkpoint {line} in {source} (seq {}) is not signed by this daemon's key {key}: it was forged or altered",
                    c.seq
                ),
            });
        }
    }
    if let Some((line, newest)) = checkpoints.iter().max_by_key(|(_, c)| c.seq)
        && newest.seq > last_seq
    {
        return Err(Mismatch {
            seq: last_seq + 1,
            problem: format!(
                "the log ends at {last_seq} but checkpoint {line} in {source} signed seq {} (at {}): events were removed from the end",
                newest.seq,
                newest.at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        });
    }
    for (line, c) in checkpoints {
        match hash_at(c.seq) {
            Some(hash) if hash == c.hash => {}
            Some(hash) => {
                return Err(Mismatch {
                    seq: c.seq,
                    problem: format!(
                        "event {} has hash {hash}, but checkpoint {line} in {source} signed {}: the log was rewritten",
                        c.seq, c.hash
                    ),
                });
            }
            None => {
                return Err(Mismatch {
                    seq: c.seq,
                    problem: format!("event {} is missing, but checkpoint {line} in {source} signed it: the log was cut", c.seq),
                });
            }
        }
    }
    Ok(checkpoints.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (tempfile::TempDir, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        (dir, key)
    }

    #[test]
    fn a_checkpoint_verifies_only_under_its_key_and_only_as_signed() {
        let (dir, key) = key();
        let at = Utc::now();
        let c = key.sign(7, "ab", at);
        assert!(c.signed_by(&key.public()));
        assert_eq!(PublicKey::parse(&key.public().to_string()), Ok(key.public()));
        let again = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.public(), key.public(), "the key is kept, not made anew");
        let (_, other) = super::tests::key();
        assert!(!c.signed_by(&other.public()), "another key's signature is not this one's");
        for altered in [
            Checkpoint { seq: 8, ..c.clone() },
            Checkpoint { hash: "ac".into(), ..c.clone() },
            Checkpoint { at: at + chrono::Duration::seconds(1), ..c.clone() },
        ] {
            assert!(!altered.signed_by(&key.public()), "{altered:?}");
        }
        assert!(PublicKey::parse("ed25519:00").is_err() && PublicKey::parse("ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn a_log_is_checked_for_forged_checkpoints_a_cut_tail_and_rewritten_events() {
        let (_dir, key) = key();
        let log: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
        let at = |seq: u64| log.get(seq as usize - 1).cloned();
        let cps = vec![(1, key.sign(4, "h3", Utc::now())), (2, key.sign(9, "h8", Utc::now()))];
        assert_eq!(check(&cps, &key.public(), "f", 10, at), Ok(2));
        let cut = check(&cps, &key.public(), "f", 5, at).unwrap_err();
        assert!(cut.problem.contains("the log ends at 5 but checkpoint 2 in f signed seq 9"), "{}", cut.problem);
        let rewritten = check(&cps, &key.public(), "f", 10, |s| Some(format!("x{s}"))).unwrap_err();
        assert_eq!(rewritten.seq, 4);
        assert!(rewritten.problem.contains("the log was rewritten"), "{}", rewritten.problem);
        let (_, other) = super::tests::key();
        let forged = vec![(1, other.sign(4, "h3", Utc::now()))];
        let e = check(&forged, &key.public(), "f", 10, at).unwrap_err();
        assert!(e.problem.contains("is not signed by this daemon's key"), "{}", e.problem);
    }
}
