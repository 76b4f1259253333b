//! Starting and stopping the daemon: the state directory (0700, locked so a second daemon on
//! the same state refuses to start), the database (0600), the policy, the Unix socket, signals.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Engine;
use super::routes;
use crate::clock::Clock;
use crate::model::SYSTEM_ACTOR;
use crate::policy::Policy;
use crate::rules::Command;
use crate::store::sqlite::SqliteStore;

/// How long a stopping daemon waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub policy: PathBuf,
    pub socket: PathBuf,
}

/// A running daemon. Dropping it does not stop it; call `shutdown`.
pub struct DaemonHandle {
    pub socket: PathBuf,
    pub engine: Arc<Engine>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _lock: File,
}

impl DaemonHandle {
    /// Stops accepting, ends the event streams, finishes what is in flight (waiting at most
    /// `SHUTDOWN_GRACE`), removes the socket file.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.engine.close_streams();
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, t).await.is_err() {
                tracing::warn!("a connection did not finish in time; stopping anyway");
                abort.abort();
            }
        }
        let _ = fs::remove_file(&self.socket);
    }

    /// Resolves when a shutdown has been asked for (by a signal or `shutdown`).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).with_context(|| format!("cannot make {} private (0700)", dir.display()))
}

/// Takes the state directory's lock, so two daemons never write the same state.
fn lock_state(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("daemon.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another zsa daemon is already using the state directory {}; stop it first, or give this one its own --state",
            dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Binds the socket, removing a file left by a daemon that crashed, but never one in use.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.exists()) {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        // The per-user fallback in the shared temp dir is private; a system directory is open.
        let private = parent == crate::config::fallback_runtime_dir();
        fs::set_permissions(parent, fs::Permissions::from_mode(if private { 0o700 } else { 0o755 }))?;
    }
    if path.parent() == Some(crate::config::fallback_runtime_dir().as_path()) {
        crate::config::check_fallback_dir(&crate::config::fallback_runtime_dir()).map_err(anyhow::Error::msg)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("a daemon is already listening on {}; stop it first, or use another --socket", path.display());
        }
        fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        tracing::info!(socket = %path.display(), "removed a socket left by a daemon that did not stop cleanly");
    }
    let listener = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Anyone on the machine may connect: the kernel tells us who they are, and the policy decides.
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Starts a daemon and returns once it is listening.
pub async fn start(config: DaemonConfig, clock: Arc<dyn Clock>) -> anyhow::Result<DaemonHandle> {
    let started = std::time::Instant::now();
    private_dir(&config.state_dir)?;
    let lock = lock_state(&config.state_dir)?;
    let policy = Policy::load(&config.policy).map_err(|e| anyhow::anyhow!("the policy does not load:\n{e}"))?;
    let db = config.state_dir.join("zsa.db");
    let store = SqliteStore::open(&db).with_context(|| format!("cannot open the database {}", db.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600))?;
        }
    }
    let transcripts = config.state_dir.join("transcripts");
    private_dir(&transcripts)?;
    let opened = started.elapsed();
    let engine = Arc::new(Engine::open(Box::new(store), policy, clock).context("cannot read the event log")?.with_runs_dir(transcripts));
    let loaded = started.elapsed();

    // Every load of the policy is on the record, with the file's SHA-256; runs that were going
    // when the daemon stopped are recorded as abandoned; and anything whose deadline passed
    // while the daemon was down ends now, stamped with its deadline.
    let e = engine.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        e.execute(SYSTEM_ACTOR, Command::LoadPolicy)?;
        e.execute(SYSTEM_ACTOR, Command::AbandonRuns)?;
        e.expire_due()?;
        Ok(())
    })
    .await??;

    let listener = bind_socket(&config.socket)?;
    let (stop, stopped) = watch::channel(false);
    let limits = super::listen::Limits::for_fd_limit(super::listen::raise_fd_limit());
    let server = tokio::spawn(super::listen::serve(listener, routes::router(engine.clone()), limits, stopped.clone()));
    let deadlines = tokio::spawn(super::deadlines::run(engine.clone(), stopped));
    let events = engine.read(|s, _| s.last_seq);
    tracing::info!(
        socket = %config.socket.display(),
        state = %config.state_dir.display(),
        events,
        open_ms = opened.as_millis() as u64,
        load_ms = (loaded - opened).as_millis() as u64,
        ready_ms = started.elapsed().as_millis() as u64,
        "zsa daemon listening"
    );
    Ok(DaemonHandle { socket: config.socket, engine, stop, tasks: vec![server, deadlines], _lock: lock })
}

/// Runs a daemon until SIGTERM or SIGINT; SIGHUP reloads the policy.
pub async fn run_until_signalled(config: DaemonConfig, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handle = start(config, clock).await?; // it logs where it listens
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                match routes::reload_policy_as_daemon(handle.engine.clone()).await {
                    Ok(load) => tracing::info!(sha256 = %load.sha256, "policy reloaded on SIGHUP"),
                    Err(e) => tracing::error!(error = %e.message, "SIGHUP: the policy was not reloaded; the old one stays in force"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping");
    handle.shutdown().await;
    Ok(())
}
