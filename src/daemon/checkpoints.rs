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

/// How often the daemon looks whether a checkpoint is due.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The daemon's audit key and where its checkpoints go outside the database.
pub struct Checkpoints {
    key: SigningKey,
    file: PathBuf,
    /// The seq this daemon's last checkpoint signed (0: none yet), and when (Unix seconds by the
    /// daemon's clock).
    signed_through: AtomicU64,
    last_at: AtomicU64,
    /// A checkpoint recorded in the log whose line could not be written yet (tried again first).
    unwritten: std::sync::Mutex<Option<Checkpoint>>,
    /// The key was made at this start: lines older than it cannot be signed by it.
    key_is_new: bool,
    key_file: PathBuf,
    /// This daemon's newest checkpoint and the seq of its event.
    last: std::sync::Mutex<Option<(u64, Checkpoint)>>,
}

impl Checkpoints {
    /// The key in `state_dir` (made at the first start) and the checkpoint file. The file must
    /// be the daemon's own, that nobody else can write (nor a directory on its way), and one it
    /// can append to: found out at start, not at the first checkpoint. Whoever could rewrite it
    /// could drop the lines that catch a cut log.
    pub fn open(state_dir: &Path, file: PathBuf) -> anyhow::Result<Checkpoints> {
        crate::fs_trust::walk(&file, false, None, "the checkpoint file").map_err(|e| anyhow::anyhow!(e.0))?;
        let key_file = evidence::key_path(state_dir);
        let key_is_new = std::fs::symlink_metadata(&key_file).is_err();
        evidence::open_for_append(&file)
            .map_err(|e| anyhow::anyhow!("{e}; give a file of the daemon's own that it can write (--checkpoint-file)"))?;
        Ok(Checkpoints {
            key: SigningKey::load_or_create(state_dir)?,
            file,
            signed_through: AtomicU64::new(0),
            last_at: AtomicU64::new(0),
            unwritten: std::sync::Mutex::new(None),
            key_is_new,
            key_file,
            last: std::sync::Mutex::new(None),
        })
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
        self.write_unwritten()?;
        // Nothing written since this daemon's last checkpoint but the checkpoint itself: that one
        // still covers the whole log (so asking again and again adds nothing to it).
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((event, c)) = last.as_ref()
            && *event == seq
        {
            return Ok(Some(c.clone()));
        }
        let checkpoint = self.key.sign(seq, &hash, engine.now());
        let written = engine.execute(SYSTEM_ACTOR, Command::NoteCheckpoint(checkpoint.clone()))?;
        *last = written.last().map(|e| (e.seq, checkpoint.clone()));
        drop(last);
        // Signed and recorded: not due again, whether or not the file takes the line now.
        self.signed_through.fetch_max(seq, Ordering::Relaxed);
        self.last_at.store(engine.now().timestamp().max(0) as u64, Ordering::Relaxed);
        // Only once it is in the log: a line in the file is always about a recorded checkpoint.
        *self.unwritten.lock().unwrap_or_else(|e| e.into_inner()) = Some(checkpoint.clone());
        self.write_unwritten()?;
        Ok(Some(checkpoint))
    }

    /// Appends the checkpoint recorded but not yet in the file, if there is one.
    fn write_unwritten(&self) -> anyhow::Result<()> {
        let mut unwritten = self.unwritten.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = unwritten.as_ref() {
            evidence::append(&self.file, c).map_err(|e| {
                anyhow::anyhow!(
                    "cannot append the checkpoint of event {} to {}: {e} (tried again at the next checkpoint)",
                    c.seq,
                    self.file.display()
                )
            })?;
            *unwritten = None;
        }
        Ok(())
    }

    /// Whether anything worth signing was written (up to `written`, the newest such event)
    /// since this daemon's last checkpoint.
    fn anything_new(&self, written: u64) -> bool {
        written > self.signed_through.load(Ordering::Relaxed)
    }

    /// Whether a checkpoint is due: enough events since the last, or enough time with any.
    fn due(&self, engine: &Engine, written: u64) -> bool {
        let policy = engine.policy();
        let last = self.signed_through.load(Ordering::Relaxed);
        if written <= last {
            return false;
        }
        let since = written - last;
        let now = engine.now().timestamp().max(0) as u64;
        since >= policy.checkpoint_events || now.saturating_sub(self.last_at.load(Ordering::Relaxed)) >= policy.checkpoint_interval
    }

    /// Checks the log in the engine's store against the checkpoint file: the whole chain walked
    /// (every event numbered in turn, linked, hashing to its hash: a deletion or an edit anywhere
    /// is found, not only at the checkpointed events), each line signed by this daemon's key
    /// over the hash the log holds, the log not ending before the newest line, and every
    /// checkpoint this key recorded in the log present in the file (but the newest, which a
    /// crash may have kept from the file). How many lines held, or what is wrong (`seq` 0: the
    /// file itself could not be read). With `approvals`, every signed approval is checked again
    /// too (`Walk::checking_approvals`), and how many were is the second number. Blocking.
    pub fn check_log(&self, engine: &Engine, approvals: bool) -> Result<(usize, usize), Mismatch> {
        let source = self.file.display().to_string();
        let lines = evidence::read(&self.file).map_err(|problem| Mismatch { seq: 0, problem })?;
        let mut walk = evidence::Walk::new(Some(lines.iter().map(|(_, c)| c.seq).collect()));
        if approvals {
            walk = walk.checking_approvals(None);
        }
        let mut after = 0;
        loop {
            let page = engine.raw_events(after, PAGE).map_err(|e| Mismatch { seq: 0, problem: format!("cannot read the log: {e}") })?;
            for event in &page {
                walk.step(event)?;
            }
            match page.last() {
                Some(last) => after = last.seq,
                None => break,
            }
        }
        let held = evidence::check(&lines, &self.key.public(), &source, walk.last_seq(), |seq| walk.hash_at(seq)).map_err(|m| {
            match self.key_is_new && lines.iter().all(|(_, c)| !c.signed_by(&self.key.public())) {
                // Not a forgery, most likely: the key that signed them is gone.
                true => Mismatch {
                    problem: format!(
                        "{}. The audit key in {} was made at this start, so no line of {source} can be signed by it: the key was lost or replaced. Put the old key back from a backup, or move {source} aside knowingly (keep it, it is evidence)",
                        m.problem,
                        self.key_file.display()
                    ),
                    ..m
                },
                false => m,
            }
        })?;
        let key = self.key.public();
        let own: Vec<&(u64, Checkpoint)> = walk.recorded.iter().filter(|(_, c)| c.signed_by(&key)).collect();
        let in_file = |c: &Checkpoint| lines.iter().any(|(_, l)| l.seq == c.seq && l.hash == c.hash && l.signature == c.signature);
        if let Some((at, c)) = own.iter().rev().skip(1).find(|(_, c)| !in_file(c)) {
            return Err(Mismatch {
                seq: *at,
                problem: format!(
                    "event {at} records a checkpoint of event {} signed by this daemon's key, but {source} does not hold it: the file was cut or replaced, or it is not this daemon's",
                    c.seq
                ),
            });
        }
        Ok((held, walk.signed_approvals))
    }
}

/// How many events a page of the walk reads.
const PAGE: u32 = 1000;

/// Whether an event is about checkpoints only: a checkpoint, or a notice of one that failed.
fn about_checkpoints(change: &crate::model::Change) -> bool {
    use crate::model::Change;
    matches!(change, Change::Checkpoint { .. } | Change::NoticeFailed { trigger: crate::notify::Trigger::Checkpoint, .. })
}

/// Signs a checkpoint whenever one is due, until the daemon stops; then one last one, so a
/// clean stop leaves the whole log covered.
pub async fn run(engine: Arc<Engine>, checkpoints: Arc<Checkpoints>, mut stop: watch::Receiver<bool>) {
    // The interval counts from the start (the log as found was checked against the file).
    let started = engine.now().timestamp().max(0) as u64;
    let _ = checkpoints.last_at.compare_exchange(0, started, Ordering::Relaxed, Ordering::Relaxed);
    // The newest event worth signing: not a checkpoint (this daemon's or another's sharing the
    // store), nor a failed notice of one, or daemons would sign each other's for ever.
    let mut feed = engine.subscribe();
    let mut written = engine.read(|s, _| s.last_seq);
    // One clock for the whole loop: a sleep made afresh at each event heard would never end
    // while events keep coming, and nothing would be signed under a steady load.
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let stopping = tokio::select! {
            _ = look.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
            heard = feed.recv() => {
                match heard {
                    Ok(e) if !about_checkpoints(&e.change) => written = written.max(e.seq),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => written = engine.read(|s, _| s.last_seq),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
                continue;
            }
        };
        let due = if stopping { checkpoints.anything_new(written) } else { checkpoints.due(&engine, written) };
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
