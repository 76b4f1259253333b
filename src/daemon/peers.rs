//! The other daemons sharing this daemon's store (PostgreSQL), and this one among them: who it
//! is (an identity kept in its state directory), that it is alive (a heartbeat in the store),
//! what happens to the runs of one whose heartbeats stop (recorded abandoned, once), and how it
//! hears at once what the others wrote (`follow`). With SQLite, one daemon owns the store and
//! none of this runs.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::Engine;
use crate::model::SYSTEM_ACTOR;
use crate::rules::Command;
use crate::store::{Beat, Instance, Store, Takeover};

/// How often a daemon says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long after a daemon's last heartbeat, by the store's clock, its runs are taken for
/// abandoned (six beats: a daemon busy or briefly cut off from the store is not declared dead).
pub const LEASE: Duration = Duration::from_secs(30);
/// How long a daemon goes on with its runs when it cannot say it is alive: then it stops them
/// itself, well before another daemon (after `LEASE`) records them abandoned while they run.
pub const FENCE: Duration = Duration::from_secs(15);
/// The longest a daemon goes without looking for others' writes when it hears nothing.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// This daemon's name among those sharing a store: made once, kept in `STATE/daemon-id`, so it
/// survives restarts (a daemon that restarts recognises its own runs).
pub fn identity(state_dir: &Path) -> anyhow::Result<String> {
    let file = state_dir.join("daemon-id");
    match crate::fs_trust::read_secret(&file, "the daemon's identity") {
        Ok(text) => {
            let id = text.trim().to_string();
            let fine = !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
            anyhow::ensure!(fine, "{} does not hold a daemon identity; remove it and a new one is made", file.display());
            Ok(id)
        }
        Err(_) if std::fs::symlink_metadata(&file).is_err() => {
            let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
            let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || "-.".contains(*c)).take(64).collect();
            let id = format!("{}-{}", if host.is_empty() { "zsa" } else { &host }, hex::encode(rand::random::<[u8; 6]>()));
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Private whatever the umask: whoever could rewrite it could claim another daemon's runs.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot write the daemon's identity to {}", file.display()))?;
            writeln!(f, "{id}")?;
            Ok(id)
        }
        Err(e) => Err(anyhow::anyhow!(e.0)),
    }
}

/// This process as its heartbeat names it (see `store::Instance`).
fn this_process(identity: &str) -> Instance {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let pid = std::process::id();
    Instance {
        daemon: identity.to_string(),
        mark: hex::encode(rand::random::<[u8; 8]>()),
        host,
        pid_space: pid_space(),
        pid,
        started: started(pid).unwrap_or_default(),
    }
}

/// Where a pid means something: this kernel boot, and this PID namespace. Empty when either
/// cannot be read (then no pid is ever taken for known gone).
fn pid_space() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|b| b.trim().to_string()).unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid").map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if boot.is_empty() || namespace.is_empty() { String::new() } else { format!("{boot}/{namespace}") }
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`, field 22); `None`
/// if there is no such process.
fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process a heartbeat names is known to be gone: it ran in this very pid space
/// (this kernel boot, this PID namespace), and no process with its pid and start time is
/// there now. Anything else (another host, another container, a process still there) may be
/// alive.
fn known_gone(other: &Instance) -> bool {
    let here = pid_space();
    if here.is_empty() || other.pid_space != here {
        return false;
    }
    started(other.pid) != Some(other.started)
}

/// How a daemon says it is alive to the others sharing its store: its own session (so a
/// heartbeat never waits behind its writes or reads) and this process's `Instance`.
pub struct Pulse {
    session: Box<dyn Store>,
    me: Instance,
}

/// Why a daemon stopped on its own: another process claimed its identity.
#[derive(Debug, thiserror::Error)]
#[error(
    "another process now holds this daemon's identity '{daemon}' in the shared store ({holder}); two daemons with one identity would each take the other's runs for their own, so this one stops. A copied state directory copies its daemon-id: give each daemon a state directory of its own (removing daemon-id from a copy makes it a new identity)"
)]
pub struct IdentityTaken {
    daemon: String,
    holder: String,
}

/// A heartbeat's process, for messages (the host name is what the store holds: made inert).
fn described(i: &Instance) -> String {
    format!("pid {} on host {}", i.pid, crate::model::text::inert(&i.host))
}

/// Joins the daemons sharing a store, through `session` (a session of its own): claims this
/// daemon's identity with a first heartbeat, before the daemon touches its state or any run.
/// A start is refused while another process that may be alive holds the identity (a copy of
/// this state directory, running); it goes ahead when the holder's lease has run out, or the
/// holder is known gone (this daemon's own crash, in the same pid space: a quick restart never
/// waits). Blocking.
pub fn join(mut session: Box<dyn Store>, identity: &str) -> anyhow::Result<Pulse> {
    let me = this_process(identity);
    let held = session.heartbeats()?.into_iter().find(|b| b.instance.daemon == me.daemon);
    let takeover = match held {
        None => None,
        Some(b) if b.age > LEASE || known_gone(&b.instance) => {
            tracing::info!(daemon = %me.daemon, holder = %described(&b.instance), age_s = b.age.as_secs(), "taking over this daemon's identity from a process that is gone");
            // Written only if the holder has not beaten since it was judged gone.
            Some(Takeover { mark: b.instance.mark, older_than: b.age.saturating_sub(Duration::from_millis(1)) })
        }
        Some(b) => anyhow::bail!(
            "this daemon's identity '{}' (the daemon-id in its state directory) is in use: {} said it was alive {} s ago in the shared store. Two daemons must not share an identity, and a copied state directory copies it. If that daemon runs from a copy of this state directory, give this one a state directory of its own (or remove its daemon-id, and a new identity is made); if it has stopped, start this one again in {} s, when its lease has run out",
            me.daemon,
            described(&b.instance),
            b.age.as_secs(),
            LEASE.saturating_sub(b.age).as_secs() + 1
        ),
    };
    if !session.heartbeat(&me, takeover.as_ref())? {
        anyhow::bail!(
            "another process claimed this daemon's identity '{}' at the same moment; start only one daemon on each state directory",
            me.daemon
        );
    }
    Ok(Pulse { session, me })
}

impl Pulse {
    /// Says this daemon is alive; answers every daemon's last heartbeat. Blocking.
    pub fn beat(&mut self) -> anyhow::Result<Vec<Beat>> {
        if !self.session.heartbeat(&self.me, None)? {
            let holder = self.session.heartbeats()?.into_iter().find(|b| b.instance.daemon == self.me.daemon);
            let holder = holder.map_or_else(|| "its heartbeat was removed".to_string(), |b| described(&b.instance));
            return Err(IdentityTaken { daemon: self.me.daemon.clone(), holder }.into());
        }
        Ok(self.session.heartbeats()?)
    }

    /// Frees this daemon's identity at a clean stop, unless runs of its own are still going
    /// (then its lease runs out and another daemon records them abandoned). Blocking.
    pub fn retire(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let me = Some(self.me.daemon.clone());
        if engine.read(|s, _| s.running.iter().any(|id| s.runs.get(id).is_some_and(|r| r.daemon == me))) {
            return Ok(());
        }
        Ok(self.session.retire(&self.me)?)
    }
}

/// Records abandoned the runs of every other daemon whose heartbeat in `beats` is older than
/// `LEASE` by the store's clock (or that has none): only the runs going now, so a decision
/// taken again after a race never reaches a run its owner started since. Several survivors
/// may do it at once: the log's head check lets one write it, and the others, deciding again,
/// find nothing left to abandon. Blocking.
pub fn abandon_lapsed(engine: &Engine, beats: &[Beat]) -> anyhow::Result<()> {
    let me = engine.identity().to_string();
    let mut going: std::collections::BTreeMap<String, std::collections::BTreeSet<crate::model::RunId>> = Default::default();
    engine.read(|s, _| {
        for run in s.running.iter().filter_map(|id| s.runs.get(id)) {
            if let Some(owner) = run.daemon.as_ref().filter(|d| **d != me) {
                going.entry(owner.clone()).or_default().insert(run.id);
            }
        }
    });
    for (owner, runs) in going {
        let lapsed = beats.iter().find(|b| b.instance.daemon == owner).is_none_or(|b| b.age > LEASE);
        if lapsed {
            let ended = engine.execute(SYSTEM_ACTOR, Command::AbandonRuns { daemon: Some(owner.clone()), only: Some(runs) })?;
            if !ended.is_empty() {
                tracing::warn!(daemon = %owner, runs = ended.len(), "a daemon stopped saying it is alive; its runs are recorded abandoned");
            }
        }
    }
    Ok(())
}

/// Beats every `HEARTBEAT` until the daemon stops, and after each beat that got through,
/// records abandoned the runs of daemons whose heartbeats lapsed (on a task of its own, so a
/// busy writer never holds up a heartbeat). A beat that hangs (a connection gone half-open)
/// counts as missed; when no beat has got through for `FENCE`, the daemon's runs stop
/// (`Engine::note_lease_lost`): it cannot tell whether the others still take it for alive.
/// If another process took this daemon's identity, it says why in `stopped_because` and stops
/// the daemon.
pub async fn keep_beating(
    engine: Arc<Engine>,
    pulse: Arc<Mutex<Pulse>>,
    stop: watch::Sender<bool>,
    stopped_because: Arc<std::sync::OnceLock<String>>,
) {
    let mut stopping = stop.subscribe();
    // `join` beat just before the daemon started serving.
    let mut last_beat = std::time::Instant::now();
    let mut beating: Option<tokio::task::JoinHandle<anyhow::Result<Vec<Beat>>>> = None;
    let mut abandoning: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        // A beat still hanging from before is waited for no longer than the next one would be.
        let mut beat = match beating.take() {
            Some(hanging) if !hanging.is_finished() => hanging,
            _ => {
                let p = pulse.clone();
                tokio::task::spawn_blocking(move || p.lock().unwrap_or_else(|e| e.into_inner()).beat())
            }
        };
        match tokio::time::timeout(HEARTBEAT, &mut beat).await {
            Err(_) => {
                tracing::warn!("a heartbeat has not got through in {} s; the store may be unreachable", HEARTBEAT.as_secs());
                beating = Some(beat);
            }
            Ok(Ok(Ok(beats))) => {
                last_beat = std::time::Instant::now();
                engine.note_lease_lost(false);
                if abandoning.as_ref().is_none_or(|a| a.is_finished()) {
                    let e = engine.clone();
                    abandoning = Some(tokio::task::spawn_blocking(move || {
                        if let Err(err) = abandon_lapsed(&e, &beats) {
                            tracing::warn!(error = %format!("{err:#}"), "could not record the runs of a daemon that stopped saying it is alive");
                        }
                    }));
                }
            }
            Ok(Ok(Err(e))) if e.is::<IdentityTaken>() => {
                let why = e.to_string();
                tracing::error!("{why}");
                let _ = stopped_because.set(why);
                stop.send_replace(true);
                return;
            }
            Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "could not say this daemon is alive"),
            Ok(Err(e)) => tracing::error!(error = %e, "the heartbeat task failed"),
        }
        let silent = last_beat.elapsed();
        if silent > FENCE && !*engine.lease_lost().borrow() {
            tracing::error!(
                silent_s = silent.as_secs(),
                "this daemon could not tell the shared store it is alive for {} s; it stops its runs now, since another daemon takes them for abandoned after {} s",
                silent.as_secs(),
                LEASE.as_secs()
            );
            engine.note_lease_lost(true);
        }
    }
}

/// Follows what other daemons write to a shared store: woken by the store's word that the log
/// moved (PostgreSQL's NOTIFY, at their commit), and at least every second whatever it heard,
/// it applies their events to memory and tells this daemon's streams and deadline task. Runs on
/// a thread of its own (the listener blocks) until `stop`; does nothing for a store no other
/// daemon can write.
pub fn follow(engine: Arc<Engine>, stop: watch::Receiver<bool>) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(mut listener) = engine.listener()? else { return Ok(None) };
    // From here on the daemon vouches from memory only while it follows.
    engine.follow()?;
    let thread = std::thread::Builder::new().name("zsa-follow".into()).spawn(move || {
        // Until the stop, or until nobody can send it (the daemon's handle dropped).
        while !*stop.borrow() && stop.has_changed().is_ok() {
            if let Err(e) = listener.wait(FOLLOW_POLL) {
                tracing::warn!(error = %e, "lost the store's word on new events; listening again");
                std::thread::sleep(FOLLOW_POLL);
                match engine.listener() {
                    Ok(Some(again)) => listener = again,
                    Ok(None) => return,
                    Err(e) => tracing::warn!(error = %e, "cannot listen to the store yet"),
                }
            }
            if let Err(e) = engine.follow() {
                tracing::warn!(error = %e, "could not read what other daemons wrote");
            }
        }
    })?;
    Ok(Some(thread))
}
