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
use crate::store::{Instance, Store};

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
    Instance { daemon: identity.to_string(), mark: hex::encode(rand::random::<[u8; 8]>()), host, boot: boot_id(), pid: std::process::id() }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|b| b.trim().to_string()).unwrap_or_default()
}

/// Whether the process a heartbeat names is known to be gone: it ran under this very kernel
/// boot and its pid is free, or is this process's own (a process runs one daemon at a time,
/// so that one stopped, or this is a container restarted with the same pid). Anything else
/// (another host, an unknown boot, a pid in use) may be alive.
fn known_gone(other: &Instance) -> bool {
    if other.boot.is_empty() || other.boot != boot_id() {
        return false;
    }
    if other.pid == std::process::id() {
        return true;
    }
    let pid = nix::unistd::Pid::from_raw(other.pid as i32);
    matches!(nix::sys::signal::kill(pid, None), Err(nix::errno::Errno::ESRCH))
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
    "another process now holds this daemon's identity '{daemon}' in the shared store (pid {pid} on host {host}); two daemons with one identity would each take the other's runs for their own, so this one stops. A copied state directory copies its daemon-id: give each daemon a state directory of its own (removing daemon-id from a copy makes it a new identity)"
)]
pub struct IdentityTaken {
    daemon: String,
    pid: u32,
    host: String,
}

/// Joins the daemons sharing the engine's store: claims this daemon's identity with a first
/// heartbeat, before the daemon touches any run. A start is refused while another process that
/// may be alive holds the identity (a copy of this state directory, running); it goes ahead
/// when the holder's lease has run out, or the holder is known gone (this daemon's own crash on
/// this host: a quick restart never waits). `None` where one daemon owns the store. Blocking.
pub fn join(engine: &Engine) -> anyhow::Result<Option<Pulse>> {
    let Some(mut session) = engine.own_session()? else { return Ok(None) };
    let me = this_process(engine.identity());
    let held = session.heartbeats()?.into_iter().find(|b| b.instance.daemon == me.daemon);
    let replacing = match held {
        None => None,
        Some(b) if b.age > LEASE || known_gone(&b.instance) => {
            tracing::info!(daemon = %me.daemon, pid = b.instance.pid, host = %b.instance.host, age_s = b.age.as_secs(), "taking over this daemon's identity from a process that is gone");
            Some(b.instance.mark)
        }
        Some(b) => anyhow::bail!(
            "this daemon's identity '{}' (the daemon-id in its state directory) is in use: pid {} on host {} said it was alive {} s ago in the shared store. Two daemons must not share an identity, and a copied state directory copies it. If that daemon runs from a copy of this state directory, give this one a state directory of its own (or remove its daemon-id, and a new identity is made); if it has stopped, start this one again in {} s, when its lease has run out",
            me.daemon,
            b.instance.pid,
            b.instance.host,
            b.age.as_secs(),
            LEASE.saturating_sub(b.age).as_secs() + 1
        ),
    };
    if !session.heartbeat(&me, replacing.as_deref())? {
        anyhow::bail!(
            "another process claimed this daemon's identity '{}' at the same moment; start only one daemon on each state directory",
            me.daemon
        );
    }
    Ok(Some(Pulse { session, me }))
}

impl Pulse {
    /// Says this daemon is alive, then records abandoned the runs of every daemon whose
    /// heartbeat lapsed. Blocking.
    pub fn beat(&mut self, engine: &Engine) -> anyhow::Result<()> {
        if !self.session.heartbeat(&self.me, None)? {
            let holder = self.session.heartbeats()?.into_iter().find(|b| b.instance.daemon == self.me.daemon);
            let (pid, host) = holder.map(|b| (b.instance.pid, b.instance.host)).unwrap_or_default();
            return Err(IdentityTaken { daemon: self.me.daemon.clone(), pid, host }.into());
        }
        abandon_lapsed(engine, &mut *self.session)
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

/// Records abandoned the runs of every other daemon whose heartbeat is older than `LEASE` by
/// the store's clock (or that has none). Several survivors may do it at once: the log's head
/// check lets one write it, and the others, deciding again, find nothing left to abandon.
/// Blocking.
pub fn abandon_lapsed(engine: &Engine, session: &mut dyn Store) -> anyhow::Result<()> {
    let me = engine.identity().to_string();
    let owners: std::collections::BTreeSet<String> = engine
        .read(|s, _| s.running.iter().filter_map(|id| s.runs.get(id)).filter_map(|r| r.daemon.clone()).filter(|d| *d != me).collect());
    if owners.is_empty() {
        return Ok(());
    }
    let beats = session.heartbeats()?;
    for owner in owners {
        let lapsed = beats.iter().find(|b| b.instance.daemon == owner).is_none_or(|b| b.age > LEASE);
        if lapsed {
            let ended = engine.execute(SYSTEM_ACTOR, Command::AbandonRuns { daemon: Some(owner.clone()) })?;
            if !ended.is_empty() {
                tracing::warn!(daemon = %owner, runs = ended.len(), "a daemon stopped saying it is alive; its runs are recorded abandoned");
            }
        }
    }
    Ok(())
}

/// Beats every `HEARTBEAT` until the daemon stops. When no beat has got through for `FENCE`,
/// the daemon's runs stop (`Engine::note_lease_lost`): it cannot tell whether the others still
/// take it for alive. If another process took this daemon's identity, it says why in
/// `stopped_because` and stops the daemon.
pub async fn keep_beating(
    engine: Arc<Engine>,
    pulse: Arc<Mutex<Pulse>>,
    stop: watch::Sender<bool>,
    stopped_because: Arc<std::sync::OnceLock<String>>,
) {
    let mut stopping = stop.subscribe();
    // `join` beat just before the daemon started serving.
    let mut last_beat = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let (e, p) = (engine.clone(), pulse.clone());
        match tokio::task::spawn_blocking(move || p.lock().unwrap_or_else(|e| e.into_inner()).beat(&e)).await {
            Ok(Ok(())) => {
                last_beat = std::time::Instant::now();
                engine.note_lease_lost(false);
            }
            Ok(Err(e)) if e.is::<IdentityTaken>() => {
                let why = e.to_string();
                tracing::error!("{why}");
                let _ = stopped_because.set(why);
                stop.send_replace(true);
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "could not say this daemon is alive"),
            Err(e) => tracing::error!(error = %e, "the heartbeat task failed"),
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
