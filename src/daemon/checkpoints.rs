//! Signs checkpoints of the log as it grows (see `evidence`): once `checkpoint_events` events
//! were written since the last one, or `checkpoint_interval` passed with anything written, and
//! when asked (`zsa audit checkpoint`). Each is recorded in the log and appended, durably, to
//! the checkpoint file outside the database. At start, and in every `verify`, the log is checked
//! against that file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::Engine;
use crate::evidence::{self, Checkpoint, Mismatch, PublicKey, SigningKey};
use crate::model::SYSTEM_ACTOR;
use crate::rules::Command;
use crate::store::EventFilter;

/// How often the daemon looks whether a checkpoint is due.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The daemon's audit key and where its checkpoints go outside the database.
pub struct Checkpoints {
    key: SigningKey,
    file: PathBuf,
    /// The seq of the last checkpoint event this daemon wrote (0: none yet), and when (Unix
    /// seconds by the daemon's clock).
    last_event: AtomicU64,
    last_at: AtomicU64,
}

impl Checkpoints {
    /// The key in `state_dir` (made at the first start) and the checkpoint file.
    pub fn open(state_dir: &Path, file: PathBuf) -> anyhow::Result<Checkpoints> {
        Ok(Checkpoints { key: SigningKey::load_or_create(state_dir)?, file, last_event: AtomicU64::new(0), last_at: AtomicU64::new(0) })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Signs the log's head now, records it and appends it to the file; `None` for an empty
    /// log. Blocking.
    pub fn sign_now(&self, engine: &Engine) -> anyhow::Result<Option<Checkpoint>> {
        let (seq, hash) = engine.read(|s, _| (s.last_seq, s.last_hash.clone()));
        if seq == 0 {
            return Ok(None);
        }
        let checkpoint = self.key.sign(seq, &hash, engine.now());
        let written = engine.execute(SYSTEM_ACTOR, Command::NoteCheckpoint(checkpoint.clone()))?;
        // Only once it is in the log: a line in the file is always about a recorded checkpoint.
        evidence::append(&self.file, &checkpoint)
            .map_err(|e| anyhow::anyhow!("cannot append the checkpoint to {}: {e}", self.file.display()))?;
        if let Some(event) = written.last() {
            self.last_event.store(event.seq, Ordering::Relaxed);
        }
        self.last_at.store(engine.now().timestamp().max(0) as u64, Ordering::Relaxed);
        Ok(Some(checkpoint))
    }

    /// Whether anything was written since this daemon's last checkpoint.
    fn anything_new(&self, engine: &Engine) -> bool {
        engine.read(|s, _| s.last_seq) > self.last_event.load(Ordering::Relaxed)
    }

    /// Whether a checkpoint is due: enough events since the last, or enough time with any.
    fn due(&self, engine: &Engine) -> bool {
        let policy = engine.policy();
        let head = engine.read(|s, _| s.last_seq);
        let last = self.last_event.load(Ordering::Relaxed);
        if head <= last {
            return false;
        }
        let since = head - last;
        let now = engine.now().timestamp().max(0) as u64;
        since >= policy.checkpoint_events || now.saturating_sub(self.last_at.load(Ordering::Relaxed)) >= policy.checkpoint_interval
    }

    /// Checks the log in the engine's store against the checkpoint file: how many checkpoints
    /// held, or what is wrong. Blocking.
    pub fn check_log(&self, engine: &Engine) -> Result<usize, Mismatch> {
        let source = self.file.display().to_string();
        let checkpoints = evidence::read(&self.file).map_err(|problem| Mismatch { seq: 0, problem })?;
        let last_seq = engine
            .events(&EventFilter { tail: Some(1), ..Default::default() })
            .map_err(|e| Mismatch { seq: 0, problem: format!("cannot read the log: {e}") })?
            .pop()
            .map_or(0, |e| e.seq);
        let mut unreadable = None;
        let held = evidence::check(&checkpoints, &self.key.public(), &source, last_seq, |seq| {
            match engine.events(&EventFilter { after_seq: Some(seq.checked_sub(1)?), limit: Some(1), ..Default::default() }) {
                Ok(events) => events.into_iter().next().filter(|e| e.seq == seq).map(|e| e.hash),
                Err(e) => {
                    unreadable = Some(e.to_string());
                    None
                }
            }
        });
        match (held, unreadable) {
            (Err(_), Some(e)) => Err(Mismatch { seq: 0, problem: format!("cannot read the log: {e}") }),
            (held, _) => held,
        }
    }
}

/// Signs a checkpoint whenever one is due, until the daemon stops; then one last one, so a
/// clean stop leaves the whole log covered.
pub async fn run(engine: Arc<Engine>, checkpoints: Arc<Checkpoints>, mut stop: watch::Receiver<bool>) {
    // The interval counts from the start (the log as found was checked against the file).
    let started = engine.now().timestamp().max(0) as u64;
    let _ = checkpoints.last_at.compare_exchange(0, started, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let due = if stopping { checkpoints.anything_new(&engine) } else { checkpoints.due(&engine) };
        if due {
            let (e, c) = (engine.clone(), checkpoints.clone());
            match tokio::task::spawn_blocking(move || c.sign_now(&e)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "could not sign a checkpoint of the audit log"),
                Err(e) => tracing::error!(error = %e, "the checkpoint task failed"),
            }
        }
        if stopping {
            return;
        }
    }
}
