//! The other daemons sharing this daemon's store (PostgreSQL), and this one among them: who it
//! is (an identity kept in its state directory), that it is alive (a heartbeat in the store),
//! what happens to the runs of one whose heartbeats stop (recorded abandoned, once), and how it
//! hears at once what the others wrote (`follow`). With SQLite, one daemon owns the store and
//! none of this runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::Engine;
use crate::model::SYSTEM_ACTOR;
use crate::rules::Command;

/// How often a daemon says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long after a daemon's last heartbeat its runs are taken for abandoned (six beats: a
/// daemon busy or briefly cut off is not declared dead, and clocks a little apart agree).
pub const LEASE: Duration = Duration::from_secs(30);
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

/// Says this daemon is alive, then records abandoned the runs of every daemon whose heartbeat
/// lapsed. Several survivors may do it at once: the log's head check lets one write it, and
/// the others, deciding again, find nothing left to abandon. Blocking.
pub fn beat(engine: &Engine) -> anyhow::Result<()> {
    let now = engine.now();
    engine.heartbeat(now)?;
    let me = engine.identity().to_string();
    let owners: std::collections::BTreeSet<String> = engine
        .read(|s, _| s.running.iter().filter_map(|id| s.runs.get(id)).filter_map(|r| r.daemon.clone()).filter(|d| *d != me).collect());
    if owners.is_empty() {
        return Ok(());
    }
    let beats: std::collections::HashMap<String, _> = engine.heartbeats()?.into_iter().collect();
    let lease = chrono::Duration::from_std(LEASE).expect("a short lease");
    for owner in owners {
        let lapsed = beats.get(&owner).is_none_or(|last| *last + lease < now);
        if lapsed {
            let ended = engine.execute(SYSTEM_ACTOR, Command::AbandonRuns { daemon: Some(owner.clone()) })?;
            if !ended.is_empty() {
                tracing::warn!(daemon = %owner, runs = ended.len(), "a daemon stopped saying it is alive; its runs are recorded abandoned");
            }
        }
    }
    Ok(())
}

/// Beats every `HEARTBEAT` until the daemon stops (the first beat is `follow`'s).
pub async fn keep_beating(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = stop.changed() => return,
        }
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || beat(&e)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "could not say this daemon is alive"),
            Err(e) => tracing::error!(error = %e, "the heartbeat task failed"),
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
    // From here on the daemon is one of several: it says it is alive, and it vouches from
    // memory only while it follows.
    engine.heartbeat(engine.now())?;
    engine.follow()?;
    let thread = std::thread::Builder::new().name("zsa-follow".into()).spawn(move || {
        while !*stop.borrow() {
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
