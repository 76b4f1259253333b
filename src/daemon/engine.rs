//! The engine: the one place that changes state. Writers are serialised; each command is decided
//! against the current state, sealed into the hash chain, written durably, and only then applied
//! in memory and broadcast. Readers of what is live (check, pending requests, active grants)
//! read memory and never wait for the disk; history (ended things, `--all` listings, audit) is
//! read from the store. Memory holds only what is live, so start-up does not grow with history.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, broadcast};

use crate::clock::Clock;
use crate::model::{Actor, Event, SYSTEM_ACTOR};
use crate::notify::outbox;
use crate::policy::Policy;
use crate::rules::{self, Command, Entity, Refusal, State};
use crate::store::{Changeset, EventFilter, Head, Rows, Store, StoreError, chain};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a command recorded: its events, and the rows they changed exactly as written to the store.
#[derive(Debug)]
pub struct Written {
    pub events: Vec<Arc<Event>>,
    pub rows: Rows,
}

/// Each command's outcome in a batch, in the order of the commands.
pub type Answers = Vec<Result<Written, EngineError>>;

/// How many events a slow stream client may fall behind before it re-reads from the store.
const FEED_CAPACITY: usize = 4096;

/// How many times a command is decided again, in turn, when the log moved under it: with the
/// turn held no other daemon appends, so more than one means a writer that takes no turns.
const MAX_RETRIES: u32 = 4;

pub struct Engine {
    state: RwLock<State>,
    policy: RwLock<Arc<Policy>>,
    writer: Mutex<Writing>,
    reader: Mutex<Box<dyn Store>>,
    /// A connection of its own for the readiness probe: a long read (a backup, a verify) on
    /// `reader` must not make a healthy daemon look dead to the watchdog.
    probe: Mutex<Box<dyn Store>>,
    /// When the write under way began (None: none is): a write that hangs makes it not ready.
    writing_since: Mutex<Option<std::time::Instant>>,
    clock: Arc<dyn Clock>,
    feed: broadcast::Sender<Arc<Event>>,
    deadlines: Notify,
    /// Woken when deliveries are written to the outbox: the sender delivers them.
    outbox: Notify,
    /// Where run transcripts are kept.
    runs_dir: std::path::PathBuf,
    /// The daemon's private state directory (backups are made there before they are streamed).
    state_dir: std::path::PathBuf,
    /// Set when the daemon stops: event streams end, so connections close and clients reconnect.
    closing: tokio::sync::watch::Sender<bool>,
    /// True while this daemon, sharing its store, has not been able to say it is alive for long
    /// enough that another daemon may soon take its runs for abandoned (`peers::keep_beating`).
    lease_lost: tokio::sync::watch::Sender<bool>,
    /// The audit key and the checkpoint file outside the database (`checkpoints`).
    checkpoints: Option<Arc<super::checkpoints::Checkpoints>>,
    /// When each token was last used (not state: no event says it; see `token_use`).
    token_use: super::token_use::TokenUse,
    /// Sources whose bearer tokens keep failing (see `throttle`).
    throttle: super::throttle::Throttle,
    /// Batches decided again because another daemon wrote first (`record_caught_up`).
    retries: std::sync::atomic::AtomicU64,
    /// Events applied from other daemons' writes (`catch_up`).
    followed: std::sync::atomic::AtomicU64,
    /// Transactions this daemon wrote to the log (a batch of commands is one).
    commits: std::sync::atomic::AtomicU64,
    /// This daemon's name among those sharing the store (`peers::identity`).
    identity: String,
    /// The SHA-256 of the policy in force by the log (the newest `policy_loaded`) when this
    /// daemon's own file is another: it decides nothing until they agree.
    policy_differs: RwLock<Option<String>>,
    /// When this daemon last followed a store other daemons write to, successfully (`None`: no
    /// other daemon can write its store, so its memory is the truth).
    followed_at: Mutex<Option<std::time::Instant>>,
}

/// How long a daemon sharing its store may go without following it before it stops vouching
/// for access from memory (it follows at least every second when all is well).
pub const FOLLOW_STALE: std::time::Duration = std::time::Duration::from_secs(5);

/// What only the writer touches.
struct Writing {
    store: Box<dyn Store>,
    /// Live state as every decision so far leaves it, written or not: a batch's next command is
    /// decided against it. Between batches it equals `state` (what readers see); a batch that
    /// could not be written is undone by copying `state` back.
    draft: State,
}

/// The answer of a batch of one.
fn only(mut answers: Answers) -> Result<Written, EngineError> {
    answers.pop().unwrap_or_else(|| Err(StoreError::Corrupt("a command got no answer".into()).into()))
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Starts from the live state the store keeps (not a replay of the whole log).
    pub fn open(mut store: Box<dyn Store>, policy: Policy, clock: Arc<dyn Clock>) -> Result<Engine, StoreError> {
        let state = store.load_live()?;
        let token_use = super::token_use::TokenUse::loaded(store.token_use()?);
        let reader = store.reader()?;
        let probe = store.reader()?;
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Ok(Engine {
            writer: Mutex::new(Writing { store, draft: state.clone() }),
            state: RwLock::new(state),
            policy: RwLock::new(Arc::new(policy)),
            reader: Mutex::new(reader),
            probe: Mutex::new(probe),
            writing_since: Mutex::new(None),
            clock,
            feed,
            deadlines: Notify::new(),
            outbox: Notify::new(),
            runs_dir: std::env::temp_dir(),
            state_dir: std::env::temp_dir(),
            closing: tokio::sync::watch::channel(false).0,
            lease_lost: tokio::sync::watch::channel(false).0,
            checkpoints: None,
            token_use,
            throttle: super::throttle::Throttle::default(),
            retries: Default::default(),
            followed: Default::default(),
            commits: Default::default(),
            identity: String::new(),
            policy_differs: RwLock::new(None),
            followed_at: Mutex::new(None),
        })
    }

    /// When tokens were last used, as requests come.
    pub fn token_use(&self) -> &super::token_use::TokenUse {
        &self.token_use
    }

    /// Saves when tokens were last used beside their rows. Blocking: one short transaction.
    pub fn save_token_use(&self, used: &[(crate::model::TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
        lock(&self.writer).store.save_token_use(used)
    }

    /// Failed bearer tokens by source.
    pub fn throttle(&self) -> &super::throttle::Throttle {
        &self.throttle
    }

    /// Ends every event stream (the daemon is stopping).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when the daemon is stopping.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Notes whether this daemon's lease in a shared store is lost (its runs stop) or held again.
    pub fn note_lease_lost(&self, lost: bool) {
        self.lease_lost.send_if_modified(|now| std::mem::replace(now, lost) != lost);
    }

    /// Whether this daemon's lease is lost now, and word when that changes.
    pub fn lease_lost(&self) -> tokio::sync::watch::Receiver<bool> {
        self.lease_lost.subscribe()
    }

    /// Signs checkpoints with this key, into this file (`checkpoints`).
    pub fn with_checkpoints(mut self, checkpoints: super::checkpoints::Checkpoints) -> Self {
        self.checkpoints = Some(Arc::new(checkpoints));
        self
    }

    pub fn checkpoints(&self) -> Option<&Arc<super::checkpoints::Checkpoints>> {
        self.checkpoints.as_ref()
    }

    /// Names this daemon among those sharing its store (`peers::identity`).
    pub fn with_identity(mut self, identity: String) -> Self {
        self.identity = identity;
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The store's word that another daemon extended the log, if it has a way to say it.
    pub fn listener(&self) -> Result<Option<Box<dyn crate::store::Listener>>, StoreError> {
        lock(&self.reader).listener()
    }

    /// Keeps run transcripts in `dir` (the daemon uses `STATE/transcripts`).
    pub fn with_runs_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.runs_dir = dir;
        self
    }

    pub fn with_state_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.state_dir = dir;
        self
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    pub fn runs_dir(&self) -> &std::path::Path {
        &self.runs_dir
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The policy in force now: dated members (`carol@2026-12-31`, `from`) are in their groups
    /// only while their membership holds.
    pub fn policy(&self) -> Arc<Policy> {
        let policy = self.policy.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now = self.clock.now();
        match policy.next_membership_change() {
            Some(end) if end <= now => {
                let mut held = self.policy.write().unwrap_or_else(|e| e.into_inner());
                if Arc::ptr_eq(&held, &policy) {
                    *held = Arc::new(policy.as_of(now));
                }
                held.clone()
            }
            _ => policy,
        }
    }

    /// Runs `f` on the current state and policy. Keep `f` short: writers wait for it.
    pub fn read<R>(&self, f: impl FnOnce(&State, &Policy) -> R) -> R {
        let policy = self.policy();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&state, &policy)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.feed.subscribe()
    }

    /// Decides and records a command. Blocking (it waits for the disk): call it from a blocking
    /// task. Returns the events written, empty if there was nothing to do.
    pub fn execute(&self, actor: impl Into<Actor>, command: Command) -> Result<Vec<Arc<Event>>, EngineError> {
        Ok(self.execute_written(actor, command)?.events)
    }

    /// Like `execute`, and also hands back the rows as written, so an answer can show them
    /// without reading them back from the store.
    pub fn execute_written(&self, actor: impl Into<Actor>, command: Command) -> Result<Written, EngineError> {
        only(self.execute_batch(vec![(actor.into(), command)]))
    }

    /// Group commit: decides `commands` in order, each against the state the ones before it
    /// leave, and writes everything they change in one transaction (one fsync, or one commit on
    /// PostgreSQL). Each command gets its own answer, and only once that transaction is
    /// durable: a refusal changes nothing for the others; a write that fails fails them all
    /// and changes nothing. Readers never see a change before it is durable. Blocking.
    pub fn execute_batch(&self, commands: Vec<(Actor, Command)>) -> Answers {
        let mut writing = lock(&self.writer);
        let policy = self.policy();
        let answers = match self.guarded(&mut writing, |engine, writing| engine.record_caught_up(writing, &policy, &commands)) {
            Ok(answers) => answers,
            Err(e) => {
                super::metrics::store_error();
                let mut answers: Vec<_> = commands.iter().skip(1).map(|_| Err(e.again().into())).collect();
                answers.insert(0, Err(e.into()));
                return answers;
            }
        };
        let now = self.clock.now();
        for ((_, command), answer) in commands.iter().zip(&answers) {
            match answer {
                Ok(written) => super::metrics::committed(&written.events, &written.rows, &policy, now),
                Err(EngineError::Refused(r)) => super::metrics::refused(r.code, command, &policy),
                Err(EngineError::Store(_)) => super::metrics::store_error(),
            }
        }
        // Still under the writer lock, so streams hear events in the order of the log.
        for written in answers.iter().flatten() {
            self.publish(&written.events);
        }
        answers
    }

    /// `record`, and when another daemon extended the log since this one last looked (the
    /// store refuses the change as a `Conflict`), takes its turn at the store (other daemons'
    /// appends wait), catches up with the log and decides the batch again on the state as it
    /// now is, and gives the turn back. Each retry is counted.
    fn record_caught_up(&self, writing: &mut Writing, policy: &Policy, commands: &[(Actor, Command)]) -> Result<Answers, StoreError> {
        let why = match self.record(writing, policy, commands) {
            Err(StoreError::Conflict(why)) => why,
            other => return other,
        };
        tracing::debug!(why = %why, "the log moved on; catching up and deciding again in turn");
        writing.store.take_turn()?;
        // The turn is given back however this ends, a panic included (the writer thread lives
        // on after one, and so would its session and the lock every other daemon waits for).
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut tries = 0;
            loop {
                tries += 1;
                self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let caught = self.catch_up(writing)?;
                self.publish(&caught);
                // Catching up may have put a newer policy in force: decide by it (a policy being
                // loaded is decided by itself).
                let now_in_force = self.policy();
                let loading = commands.iter().any(|(_, c)| matches!(c, Command::LoadPolicy));
                let policy = if loading { policy } else { &now_in_force };
                match self.record(writing, policy, commands) {
                    // Only a writer that does not take turns (none of ours) could still win.
                    Err(StoreError::Conflict(_)) if tries < MAX_RETRIES => continue,
                    other => return other,
                }
            }
        }));
        if let Err(e) = writing.store.end_turn() {
            tracing::warn!(error = %e, "could not give back the turn at the store (it ends with the session)");
        }
        again.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Brings memory up to the log's head: the events other daemons wrote since this one last
    /// looked, applied as its own are (memory keeps only what is live). The caller holds the
    /// writer lock and publishes what this returns.
    fn catch_up(&self, writing: &mut Writing) -> Result<Vec<Arc<Event>>, StoreError> {
        let after = self.read(|s, _| s.last_seq);
        let events = writing.store.events(&EventFilter { after_seq: Some(after), ..Default::default() })?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // The chain read back must continue exactly where memory is, all of it, before any of it
        // is applied.
        let (mut seq, mut hash) = (writing.draft.last_seq, writing.draft.last_hash.clone());
        for e in &events {
            if e.seq != seq + 1 || e.prev_hash != hash {
                return Err(StoreError::Corrupt(format!(
                    "event {} in the store does not follow event {seq} this daemon holds; restart the daemon",
                    e.seq
                )));
            }
            (seq, hash) = (e.seq, e.hash.clone());
        }
        // What readers see first, then the draft (between batches they are equal), each under
        // its own lock, so `check` never waits for the draft.
        let follow = |state: &mut State| {
            for e in &events {
                state.apply(e);
                if let Some(entity) = Entity::changed_by(&e.change) {
                    state.forget_ended(&entity);
                }
            }
        };
        follow(&mut self.state.write().unwrap_or_else(|e| e.into_inner()));
        follow(&mut writing.draft);
        self.followed.fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let newest_policy = events.iter().rev().find_map(|e| match &e.change {
            crate::model::Change::PolicyLoaded { sha256, .. } => Some(sha256.clone()),
            _ => None,
        });
        if let Some(sha256) = newest_policy {
            self.follow_policy(&sha256);
        }
        Ok(events.into_iter().map(Arc::new).collect())
    }

    /// Another daemon put the policy with `sha256` in force: this one reloads its own file, and
    /// if that is another, decides nothing until they agree (said on every refused command).
    fn follow_policy(&self, sha256: &str) {
        let mine = self.policy();
        let differs = if mine.sha256 == sha256 {
            None
        } else {
            match Policy::load_trusted(std::path::Path::new(&mine.path)) {
                Ok(policy) if policy.sha256 == sha256 => {
                    tracing::info!(sha256, path = %mine.path, "another daemon loaded a new policy; this daemon's file is the same, now in force here too");
                    *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
                    None
                }
                Ok(policy) => {
                    tracing::error!(in_force = sha256, here = %policy.sha256, path = %mine.path, "another daemon loaded a policy this daemon's file is not; it decides nothing until they agree");
                    Some(sha256.to_string())
                }
                Err(e) => {
                    tracing::error!(in_force = sha256, path = %mine.path, error = %e, "another daemon loaded a new policy and this daemon's file does not load; it decides nothing until they agree");
                    Some(sha256.to_string())
                }
            }
        };
        *self.policy_differs.write().unwrap_or_else(|e| e.into_inner()) = differs;
    }

    /// Runs `f` on the writer's side; if it panics (a bug, not a decision), the draft, which it
    /// may have left half changed, is put back from what readers see before the panic goes on.
    fn guarded<R>(&self, writing: &mut Writing, f: impl FnOnce(&Engine, &mut Writing) -> R) -> R {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self, &mut *writing))) {
            Ok(r) => r,
            Err(panic) => {
                writing.draft = self.state.read().unwrap_or_else(|e| e.into_inner()).clone();
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// One command alone, for the callers that hold the writer lock for more than it (a reload,
    /// a notice retried).
    fn record_one(&self, writing: &mut Writing, policy: &Policy, actor: Actor, command: Command) -> Result<Written, EngineError> {
        only(self.guarded(writing, |engine, writing| engine.record_caught_up(writing, policy, &[(actor, command)]))?)
    }

    /// Catches up with what other daemons wrote to a shared store, and tells this daemon's event
    /// streams and deadline task: what the follower calls when the store says the log moved.
    /// Blocking. Answers how many events it applied.
    pub fn follow(&self) -> Result<usize, StoreError> {
        let mut writing = lock(&self.writer);
        let caught = self.catch_up(&mut writing)?;
        // Under the writer lock, so streams hear events in the order of the log.
        self.publish(&caught);
        drop(writing);
        *lock(&self.followed_at) = Some(std::time::Instant::now());
        Ok(caught.len())
    }

    /// How far behind its shared store this daemon may be, when that is longer than
    /// `FOLLOW_STALE` (it could not follow it: the store is unreachable, or what it read does
    /// not continue this daemon's chain). `None` while it follows, and for a store it owns.
    pub fn behind(&self) -> Option<std::time::Duration> {
        let age = lock(&self.followed_at).map(|at| at.elapsed())?;
        (age > FOLLOW_STALE).then_some(age)
    }

    /// How many times a decision was made again because another daemon wrote first, and how
    /// many events this daemon applied from others (for metrics and benchmarks).
    pub fn concurrency(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.retries.load(Relaxed), self.followed.load(Relaxed))
    }

    /// How many transactions this daemon wrote to the log (group commit makes one of many
    /// commands).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Loads a new policy: recorded as an event by `actor`, who must be an admin under the new
    /// policy too (so nobody can lock themselves out by reloading), then put in force.
    pub fn reload(&self, actor: impl Into<Actor>, policy: Policy) -> Result<Vec<Arc<Event>>, EngineError> {
        let actor = actor.into();
        // Decided as it stands now: memberships that already ended (`carol@...`) count for nothing.
        let policy = policy.as_of(self.now());
        let mut writing = lock(&self.writer);
        let events = self.record_one(&mut writing, &policy, actor, Command::LoadPolicy)?.events;
        // In force before anyone hears of it: a client that reloads on the event gets the new one.
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        // This file is now the one in force, for every daemon sharing the store.
        *self.policy_differs.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.publish(&events);
        Ok(events)
    }

    /// Decides each command against the draft, writes the batch durably, and only then applies
    /// it to what readers see. The caller holds the writer lock and publishes afterwards. An
    /// `Err` is the store's: nothing of the batch was written, and the draft is as before it.
    fn record(&self, writing: &mut Writing, policy: &Policy, commands: &[(Actor, Command)]) -> Result<Answers, StoreError> {
        let head = Head { seq: writing.draft.last_seq, hash: writing.draft.last_hash.clone() };
        let mut batch = Changeset { head, ..Changeset::default() };
        // Each command's events (a range of the batch's) and rows, or why it was refused.
        let mut decided = Vec::with_capacity(commands.len());
        let mut named = Vec::new();
        for (actor, command) in commands {
            named.extend(command.names());
            let from = batch.events.len();
            let one = self.decide(writing, policy, actor, command).map(|(events, rows, deliveries)| {
                batch.events.extend(events);
                batch.deliveries.extend(deliveries);
                batch.rows.absorb(&rows);
                (from..batch.events.len(), rows)
            });
            decided.push(one);
        }
        if !batch.events.is_empty() {
            let started = std::time::Instant::now();
            *lock(&self.writing_since) = Some(started);
            let appended = writing.store.append(&batch);
            *lock(&self.writing_since) = None;
            if let Err(e) = appended {
                // Nothing was written: the draft goes back to what is durable (copied under the
                // read lock: `check` goes on meanwhile).
                {
                    let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                    for entity in &named {
                        state.forget_ended(entity);
                    }
                }
                writing.draft = self.state.read().unwrap_or_else(|e| e.into_inner()).clone();
                return Err(e);
            }
            self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let carried = decided.iter().filter(|d| d.as_ref().is_ok_and(|(range, _)| !range.is_empty())).count();
            super::metrics::commit(started.elapsed(), carried);
            if !batch.deliveries.is_empty() {
                self.outbox.notify_one();
            }
        }
        // Durable: readers see the whole batch at once. Whatever was decided, memory keeps only
        // what is live.
        let events: Vec<Arc<Event>> = batch.events.into_iter().map(Arc::new).collect();
        let ended: Vec<Entity> = named.into_iter().chain(events.iter().filter_map(|e| Entity::changed_by(&e.change))).collect();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            for e in &events {
                state.apply(e);
            }
            for entity in &ended {
                state.forget_ended(entity);
            }
        }
        // The draft already holds the events; it forgets the same, outside the readers' lock.
        for entity in &ended {
            writing.draft.forget_ended(entity);
        }
        let loaded = commands
            .iter()
            .zip(&decided)
            .any(|((_, c), d)| matches!(c, Command::LoadPolicy) && d.as_ref().is_ok_and(|(range, _)| !range.is_empty()));
        if loaded {
            // This daemon's file is now the policy in force, for every daemon sharing the store.
            *self.policy_differs.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(decided.into_iter().map(|one| one.map(|(range, rows)| Written { events: events[range].to_vec(), rows })).collect())
    }

    /// Decides one command against the draft and applies it there: its sealed events, the rows
    /// they change (as after them) and the notices they cause (planned from the state after
    /// them, written in the same transaction). Nothing is written yet.
    fn decide(
        &self,
        writing: &mut Writing,
        policy: &Policy,
        actor: &Actor,
        command: &Command,
    ) -> Result<(Vec<Event>, Rows, Vec<outbox::Delivery>), EngineError> {
        // The daemon's own bookkeeping (a run's end, a deadline, a failed notice) records facts
        // and goes on; every decision waits for the policies to agree.
        if !matches!(command, Command::LoadPolicy)
            && !actor.is_daemon()
            && let Some(in_force) = self.policy_differs.read().unwrap_or_else(|e| e.into_inner()).clone()
        {
            let mine = self.policy();
            return Err(Refusal::conflict(
                "policy_differs",
                format!(
                    "this daemon's policy file {} (sha256 {}) is not the policy in force (sha256 {in_force}, loaded on another daemon sharing the store), \
                     so it decides nothing until they agree: put the same file on this host and run zsa admin reload against this daemon (or send it SIGHUP)",
                    crate::model::text::inert(&mine.path),
                    mine.sha256
                ),
            )
            .into());
        }
        if let Some(entity) = command.names() {
            self.admit(writing, &entity)?;
        }
        let now = self.clock.now();
        let draft = &mut writing.draft;
        let changes = rules::decide(draft, policy, actor, command, now)?;
        if changes.is_empty() {
            return Ok(Default::default());
        }
        let mut touched = draft.touched_by(&changes);
        let events = chain::seal(draft.last_seq, &draft.last_hash, now, actor, changes);
        for e in &events {
            touched.apply(e);
        }
        let deliveries = match outbox::wanted(&events, policy) {
            true => outbox::plan(&events, &outbox::view_after(draft, &touched, &events), policy, now),
            false => Vec::new(),
        };
        for e in &events {
            draft.apply(e);
        }
        Ok((events, Rows::from(touched), deliveries))
    }

    /// Brings the ended request, grant or run a command names back from the store, so the
    /// decision sees it as it is (approving a request that was denied last year says so). Into
    /// the draft, and into what readers see, so the events about it apply there too.
    fn admit(&self, writing: &mut Writing, entity: &Entity) -> Result<(), StoreError> {
        let draft = &writing.draft;
        let in_memory = match entity {
            Entity::Request(id) => draft.requests.contains_key(id),
            Entity::Grant(id) => draft.grants.contains_key(id),
            Entity::Run(id) => draft.runs.contains_key(id),
            Entity::Token(_) | Entity::User(_) => true,
        };
        if in_memory {
            return Ok(());
        }
        // Read before taking the lock: readers never wait for the disk.
        let store = &mut writing.store;
        let (request, grant, run) = match entity {
            Entity::Request(id) => (store.request(*id)?, None, None),
            Entity::Grant(id) => (None, store.grant(*id)?, None),
            Entity::Run(id) => (None, None, store.run(*id)?),
            Entity::Token(_) | Entity::User(_) => (None, None, None),
        };
        let admit = |state: &mut State| {
            request.iter().for_each(|r| state.admit_request(r.clone()));
            grant.iter().for_each(|g| state.admit_grant(g.clone()));
            run.iter().for_each(|r| state.admit_run(r.clone()));
        };
        admit(&mut self.state.write().unwrap_or_else(|e| e.into_inner()));
        admit(&mut writing.draft);
        Ok(())
    }

    /// Tells the event streams and the deadline task.
    fn publish(&self, events: &[Arc<Event>]) {
        for e in events {
            let _ = self.feed.send(e.clone()); // no subscribers is fine
        }
        if !events.is_empty() {
            self.deadlines.notify_one();
        }
    }

    /// Ends everything whose deadline has passed. The deadline task calls it; so does start-up.
    pub fn expire_due(&self) -> Result<Vec<Arc<Event>>, EngineError> {
        self.execute(SYSTEM_ACTOR, Command::Expire)
    }

    pub(crate) async fn deadlines_changed(&self) {
        self.deadlines.notified().await
    }

    /// Resolves when deliveries were written since the sender last looked.
    pub(crate) async fn outbox_written(&self) {
        self.outbox.notified().await
    }

    /// The daemon's clock (the sender's channels sign with it).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Works on the outbox through the writing handle (claiming and settling deliveries write).
    /// Blocking; each call is one short transaction, so a decision waits for it at most that long.
    pub fn outbox<R>(&self, f: impl FnOnce(&mut dyn Store) -> Result<R, StoreError>) -> Result<R, StoreError> {
        f(&mut *lock(&self.writer).store)
    }

    /// Puts a failed delivery back to pending, due now, and wakes the sender (see
    /// `Store::retry_delivery`), on the record: `notice_retried` is written first, so a crash
    /// between the two leaves the delivery failed (to be retried again), never re-sent without a
    /// trace. Refused unless `actor` is an admin and the delivery exists and failed. Blocking.
    pub fn retry_notice(&self, actor: impl Into<Actor>, id: u64) -> Result<Vec<Arc<Event>>, EngineError> {
        let actor = actor.into();
        let policy = self.policy();
        rules::may_retry_notice(&policy, &actor.user)?;
        let mut writing = lock(&self.writer);
        let Some(delivery) = writing.store.delivery(id)? else {
            return Err(Refusal::not_found("no_such_notice", format!("there is no notice {id}; `zsa notices` lists them")).into());
        };
        if delivery.state != outbox::DeliveryState::Failed {
            let state = delivery.state.as_str();
            let why = format!("notice {id} is {state}, not failed: only a failed notice can be retried");
            return Err(Refusal::conflict("not_failed", why).into());
        }
        let retried = crate::model::Change::NoticeRetried {
            id,
            task: delivery.notice.facts.get("task").and_then(|v| v.as_str()).map(str::to_string),
            notice: delivery.key,
            trigger: delivery.trigger,
            channel: delivery.channel,
            recipient: delivery.recipient,
            error: delivery.last_error,
        };
        let events = self.record_one(&mut writing, &policy, actor, Command::RetryNotice(Box::new(retried)))?.events;
        // Published under the writer lock, in the order of the log, even if the retry then fails.
        self.publish(&events);
        writing.store.retry_delivery(id, self.now())?;
        self.outbox.notify_one();
        drop(writing);
        Ok(events)
    }

    /// Runs `f` on the readiness probe's own connection. Blocking.
    pub fn probe<R>(&self, f: impl FnOnce(&mut dyn Store) -> Result<R, StoreError>) -> Result<R, StoreError> {
        f(&mut **lock(&self.probe))
    }

    /// How long the write under way has taken so far (None: no write is under way).
    pub fn writing_for(&self) -> Option<std::time::Duration> {
        lock(&self.writing_since).map(|t| t.elapsed())
    }

    /// Reads history from the store (not memory): requests, grants and runs by id or all of
    /// them. Blocking.
    pub fn stored<R>(&self, f: impl FnOnce(&mut dyn Store) -> Result<R, StoreError>) -> Result<R, StoreError> {
        f(&mut **lock(&self.reader))
    }

    /// Events exactly as stored, for a signed export. Blocking.
    pub fn raw_events(&self, after_seq: u64, limit: u32) -> Result<Vec<crate::store::RawEvent>, StoreError> {
        lock(&self.reader).raw_events(after_seq, limit)
    }

    /// Events from the store (not memory): for audit queries and stream catch-up. Blocking.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        lock(&self.reader).events(filter)
    }

    /// Recomputes the chain and the projections from the store, and checks the log against the
    /// signed checkpoints outside the database. Blocking.
    pub fn verify(&self) -> Result<crate::model::wire::VerifyReport, StoreError> {
        let mut report = lock(&self.reader).verify()?;
        if let Some(checkpoints) = &self.checkpoints {
            report.audit_key = Some(checkpoints.public_key().to_string());
            match checkpoints.check_log(self, true) {
                Ok((held, signed)) => {
                    report.checkpoints = Some(held as u64);
                    report.signed_approvals = Some(signed as u64);
                }
                Err(mismatch) if report.ok || report.first_bad_seq.is_none_or(|bad| mismatch.seq < bad) => {
                    report.ok = false;
                    report.first_bad_seq = Some(mismatch.seq);
                    report.problem = Some(mismatch.problem);
                }
                Err(_) => {}
            }
        }
        Ok(report)
    }
}
