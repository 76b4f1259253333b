//! Starting and stopping the daemon: the state directory (0700, locked so a second daemon on
//! the same state refuses to start), the database (0600), the policy, the Unix socket and any
//! TCP listeners (TLS only), signals.
//! Every path is checked by `fs_trust` before it is used: nothing another account planted or can
//! swap is followed, opened, chmod'ed or removed.

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
use crate::clock::{Clock, SteadyClock};
use crate::model::SYSTEM_ACTOR;
use crate::policy::Policy;
use crate::rules::Command;
use crate::store::Location;

/// How long a stopping daemon waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a stopping daemon waits for runs to stop their process trees (SIGTERM, then SIGKILL
/// after the runner's grace) and record their ends.
const RUNS_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub policy: PathBuf,
    pub socket: PathBuf,
    /// Rewrite the current-state tables from the log before serving (and record that it did).
    pub rebuild_from_log: bool,
    /// TCP listeners besides the socket; each speaks only TLS.
    pub listeners: Vec<TlsListener>,
    /// Connection limits an operator set, over the defaults.
    pub limits: super::listen::LimitSettings,
    /// Where the state is kept; `None`: SQLite, `zsa.db` in the state directory.
    pub store: Option<crate::store::Location>,
    /// Where signed checkpoints go outside the database; `None`: `checkpoints` in the state directory.
    pub checkpoint_file: Option<PathBuf>,
    /// Where `/metrics` is served without authentication: a loopback address only.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The listening socket systemd passed (`zsa.socket`), used instead of binding `socket`.
    pub activated: Option<Arc<std::os::unix::net::UnixListener>>,
}

/// A TCP address to listen on, and the certificate and key it serves with. There is no
/// listener without them: plain HTTP over a network would show every token to the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListener {
    pub address: std::net::SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running daemon. Dropping it does not stop it; call `shutdown`.
pub struct DaemonHandle {
    pub socket: PathBuf,
    /// The addresses the TCP listeners are bound to, in the order configured (a port given as 0
    /// is the one the system chose).
    pub tcp_addrs: Vec<std::net::SocketAddr>,
    /// Where `--metrics-listen` is bound (its port chosen by the system if given as 0).
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub engine: Arc<Engine>,
    stop: watch::Sender<bool>,
    /// Why the daemon stopped on its own, if it did (`peers::keep_beating`).
    stopped_because: Arc<std::sync::OnceLock<String>>,
    /// How this daemon says it is alive, where it shares its store.
    pulse: Option<Arc<std::sync::Mutex<super::peers::Pulse>>>,
    tasks: Vec<JoinHandle<()>>,
    _lock: File,
    /// The socket file this daemon bound (device, inode): only that one is removed at the end.
    socket_id: Option<(u64, u64)>,
}

impl DaemonHandle {
    /// Stops accepting, ends the event streams, stops running runs, finishes what is in flight (waiting at most
    /// `SHUTDOWN_GRACE`), removes the socket file.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.engine.close_streams();
        // Runs see the daemon stopping and stop their whole process trees; wait for their ends
        // to be recorded (a run that cannot be stopped in time is found at the next start).
        let until = tokio::time::Instant::now() + RUNS_GRACE;
        while !self.engine.read(|s, _| s.running.is_empty()) && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, t).await.is_err() {
                tracing::warn!("a connection did not finish in time; stopping anyway");
                abort.abort();
            }
        }
        // No request is left to note a token's use: save the rest.
        super::token_use::save(&self.engine, true).await;
        // Its runs ended: the identity is free for a restart at once.
        if let Some(pulse) = self.pulse {
            let e = self.engine.clone();
            // Not behind a heartbeat that hangs: then the identity is left to lapse.
            let retired = tokio::task::spawn_blocking(move || match pulse.try_lock() {
                Ok(mut pulse) => pulse.retire(&e),
                Err(_) => Err(anyhow::anyhow!("a heartbeat is still waiting on the store")),
            })
            .await;
            if let Ok(Err(e)) = retired {
                tracing::warn!(error = %format!("{e:#}"), "could not free this daemon's identity in the store; a restart waits out its lease");
            }
        }
        if self.socket_id.is_some() && crate::fs_trust::file_id(&self.socket) == self.socket_id {
            let _ = fs::remove_file(&self.socket);
        }
    }

    /// Resolves when a shutdown has been asked for (by a signal or `shutdown`), or the daemon
    /// decided to stop (`stopped_because`).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Why the daemon stopped on its own, if it did.
    pub fn stopped_because(&self) -> Option<String> {
        self.stopped_because.get().cloned()
    }
}

/// How the copies `GET /v1/admin/backup` makes in the state directory are named.
pub const BACKUP_PREFIX: &str = "backup-";

/// Removes the copies backups left in the state directory (the daemon stopped while making
/// one): each a whole copy of the store. Only regular files under that name.
fn remove_unfinished_backups(state_dir: &Path) {
    let Ok(entries) = fs::read_dir(state_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with(BACKUP_PREFIX) && name.ends_with(".db") && entry.file_type().is_ok_and(|t| t.is_file());
        if ours && fs::remove_file(entry.path()).is_ok() {
            tracing::info!(file = %entry.path().display(), "removed a backup copy left unfinished");
        }
    }
}

/// Takes the state directory's lock, so two daemons never write the same state.
pub(crate) fn lock_state(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("daemon.lock");
    let file = crate::fs_trust::open_own_file(&path, "the state directory's lock")?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another zsa daemon is already using the state directory {}; stop it first, or give this one its own --state",
            dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Checks where the socket goes (see `fs_trust::socket_place`), creating its directory if absent.
fn check_socket_place(path: &Path) -> anyhow::Result<()> {
    // The per-user fallback in the shared temp dir is private; a system directory is open.
    let fallback = crate::config::fallback_runtime_dir();
    let private = path.parent() == Some(fallback.as_path());
    crate::fs_trust::socket_place(path, if private { 0o700 } else { 0o755 })?;
    if private {
        crate::config::check_fallback_dir(&fallback).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Binds the socket, removing one left by a daemon of ours that crashed, but never one in use,
/// never another account's, and never anything that is not a socket.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    check_socket_place(path)?;
    if fs::symlink_metadata(path).is_ok() {
        // `check_socket_place` made sure it is a socket of ours; only "nobody listens" makes it stale.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!("a daemon is already listening on {}; stop it first, or use another --socket", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
                tracing::info!(socket = %path.display(), "removed a socket left by a daemon that did not stop cleanly");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!(
                "cannot tell whether a daemon is listening on {} ({e}); it was left alone. Remove it yourself if no daemon runs there, or use another --socket",
                path.display()
            ),
        }
    }
    let listener = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Anyone on the machine may connect: the kernel tells us who they are, and the policy decides.
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Starts a daemon and returns once it is listening.
pub async fn start(config: DaemonConfig, clock: Arc<dyn Clock>) -> anyhow::Result<DaemonHandle> {
    let started = std::time::Instant::now();
    // Installed before anything is counted (a counter before the recorder counts nowhere).
    super::metrics::handle();
    // Where the socket goes is checked first, and the TLS files, so a bad --socket or key
    // changes no state. A socket systemd passed is in the place systemd made for it.
    if config.activated.is_none() {
        check_socket_place(&config.socket)?;
    }
    if let Some(addr) = config.metrics_listen.filter(|a| !a.ip().is_loopback()) {
        bail!(
            "--metrics-listen {addr}: metrics are served there without authentication, so only on a loopback address (127.0.0.1:9464, [::1]:9464); to scrape from another host, use a TLS listener (--listen) with the token of a user in [roles] metrics"
        );
    }
    let tls: Vec<_> = config
        .listeners
        .iter()
        .map(|l| super::tls::load(&l.cert, &l.key).with_context(|| format!("cannot listen on {} with TLS", l.address)))
        .collect::<anyhow::Result<_>>()?;
    let state_dir = crate::fs_trust::private_dir(&config.state_dir, "the state directory")?;
    let lock = lock_state(&state_dir)?;
    // Kept whole (`zsa daemon` shows each problem in place); `{:#}` reads "the policy does not load: file:line: ...".
    let policy = Policy::load_trusted(&config.policy).map_err(|e| anyhow::Error::new(e).context("the policy does not load"))?;
    let location = config.store.clone().unwrap_or_else(|| Location::Sqlite(state_dir.join("zsa.db")));
    let identity = super::peers::identity(&state_dir)?;
    let transcripts = crate::fs_trust::private_dir(&state_dir.join("transcripts"), "the run transcripts' directory")?;
    let state_dir_for_engine = state_dir.clone();
    remove_unfinished_backups(&state_dir);
    let checkpoint_file = config.checkpoint_file.clone().unwrap_or_else(|| state_dir.join("checkpoints"));
    let checkpoints = super::checkpoints::Checkpoints::open(&state_dir, checkpoint_file)?;
    // Opening a store blocks (a PostgreSQL one talks to the server), and so does loading from it.
    let rebuild = config.rebuild_from_log;
    let opening = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let shown = location.describe();
        // A SQLite file in a place others can write could be swapped under the daemon.
        let db_files = match &location {
            Location::Sqlite(db) => {
                ["", "-wal", "-shm", "-journal"].map(|suffix| PathBuf::from(format!("{}{suffix}", db.display()))).to_vec()
            }
            Location::Postgres(_) => Vec::new(),
        };
        for file in &db_files {
            crate::fs_trust::own_file_if_present(file, "the daemon's database")?;
        }
        let mut store = crate::store::open(&location).with_context(|| format!("cannot open the database {shown}"))?;
        // A daemon sharing its store claims its identity before it touches the state or a run:
        // a copy of this state directory running elsewhere must not have its runs taken for
        // this one's.
        let pulse = match store.shared() {
            true => Some(super::peers::join(store.reader()?, &identity)?),
            false => None,
        };
        let rebuilt = match rebuild {
            true => Some(store.rebuild_from_log().context("cannot rebuild the current state from the log")?),
            false => None,
        };
        for file in &db_files {
            crate::fs_trust::own_file_if_present(file, "the daemon's database")?;
        }
        let opened = started.elapsed();
        let last_at = store.events(&crate::store::EventFilter { tail: Some(1), ..Default::default() })?.pop().map(|e| e.at);
        // The daemon's time never runs slower than the monotonic clock, nor earlier than the log.
        let clock = Arc::new(SteadyClock::new(clock, last_at));
        let engine = Engine::open(store, policy, clock.clone())
            .context("cannot start from the stored state")?
            .with_runs_dir(transcripts)
            .with_state_dir(state_dir_for_engine)
            .with_identity(identity)
            .with_checkpoints(checkpoints);
        // The log must still hold what was signed outside the database: a database rewritten,
        // or cut short, behind the daemon's back is refused before anything is decided from it.
        if let Some(c) = engine.checkpoints()
            && let Err(mismatch) = c.check_log(&engine, false)
        {
            if mismatch.seq == 0 {
                bail!(
                    "cannot check the audit log against the signed checkpoints: {}. Fix the checkpoint file or its place; do not delete it, it is evidence",
                    mismatch.problem
                );
            }
            bail!(
                "the audit log does not match the signed checkpoints in {}: {}. The database was changed behind the daemon's back: restore it from a backup. (If it is meant to be a new database, move {} aside first; keep it, it is evidence)",
                c.file().display(),
                mismatch.problem,
                c.file().display()
            );
        }
        tracing::info!(store = %shown, "opened the store");
        Ok((Arc::new(engine), clock, rebuilt, opened, pulse))
    });
    let (engine, clock, rebuilt, opened, pulse) = opening.await.context("opening the store")??;
    super::metrics::register(&engine.policy());
    let pulse = pulse.map(|p| Arc::new(std::sync::Mutex::new(p)));
    let loaded = started.elapsed();

    // Every load of the policy is on the record, with the file's SHA-256; runs that were going
    // when the daemon stopped are recorded as abandoned; and anything whose deadline passed
    // while the daemon was down ends now, stamped with its deadline.
    let (e, steady) = (engine.clone(), clock.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        if let Some(problem) = rebuilt {
            tracing::warn!(problem = %problem, "rebuilt the current state from the log");
            e.execute(SYSTEM_ACTOR, Command::NoteRebuilt { problem })?;
        }
        super::deadlines::record_jumps(&e, steady.take_jumps())?;
        e.execute(SYSTEM_ACTOR, Command::LoadPolicy)?;
        // This daemon's own runs (and those from before runs had an owner) that were going when
        // it stopped: what they left running is stopped first, so nothing is called abandoned
        // while it runs. Other daemons' runs are theirs (`peers::beat` watches their heartbeats).
        let me = Some(e.identity().to_string());
        let going: Vec<_> = e.read(|s, _| {
            s.running.iter().filter(|id| s.runs.get(id).is_some_and(|r| r.daemon.is_none() || r.daemon == me)).copied().collect()
        });
        for run in going {
            let said = super::tree::stop_after_crash(e.runs_dir(), &run.to_string(), super::runner::GRACE);
            tracing::warn!(%run, "a run was going when the daemon stopped: {said}");
        }
        e.execute(SYSTEM_ACTOR, Command::AbandonRuns { daemon: me, only: None })?;
        e.execute(SYSTEM_ACTOR, Command::AbandonRuns { daemon: None, only: None })?;
        e.expire_due()?;
        Ok(())
    })
    .await??;

    let mut doors = Vec::with_capacity(1 + tls.len());
    let mut tcp_addrs = Vec::with_capacity(tls.len());
    for (listener, tls) in config.listeners.iter().zip(tls) {
        let tcp = tokio::net::TcpListener::bind(listener.address).await.with_context(|| {
            format!("cannot listen on {}; is another program using that port, or is the address not this host's?", listener.address)
        })?;
        let bound = tcp.local_addr()?;
        tracing::info!(address = %bound, certificate = %tls.fingerprint, "listening with TLS");
        tcp_addrs.push(bound);
        doors.push(super::listen::Door::Tls { listener: tcp, tls: tokio_rustls::TlsAcceptor::from(tls.config) });
    }
    // A socket systemd passed is systemd's: it stays when the daemon stops (socket_id None).
    let (unix, socket, socket_id) = match &config.activated {
        Some(passed) => {
            let listener = UnixListener::from_std(passed.try_clone().context("cannot take the socket systemd passed")?)?;
            let path = passed.local_addr()?.as_pathname().map(Path::to_path_buf).unwrap_or_else(|| config.socket.clone());
            tracing::info!(socket = %path.display(), "serving on the socket systemd passed");
            (listener, path, None)
        }
        None => (bind_socket(&config.socket)?, config.socket.clone(), crate::fs_trust::file_id(&config.socket)),
    };
    doors.insert(0, super::listen::Door::Unix(unix));
    let (stop, stopped) = watch::channel(false);
    // Before serving: a daemon sharing its store has heard the others before it answers.
    let e = engine.clone();
    let following = tokio::task::spawn_blocking({
        let stopped = stopped.clone();
        move || super::peers::follow(e, stopped)
    })
    .await??;
    let limits = config.limits.apply(super::listen::Limits::for_fd_limit(super::listen::raise_fd_limit()));
    let server = tokio::spawn(super::listen::serve(doors, routes::router(engine.clone()), limits, stopped.clone()));
    let deadlines = tokio::spawn(super::deadlines::run(engine.clone(), clock, stopped.clone()));
    let notices = tokio::spawn(super::notices::run(engine.clone(), stopped.clone()));
    let token_use = tokio::spawn(super::token_use::run(engine.clone(), stopped.clone()));
    let signing = engine.checkpoints().cloned().map(|c| tokio::spawn(super::checkpoints::run(engine.clone(), c, stopped.clone())));
    // Only daemons that share their store have others to hear and to tell they are alive.
    let upkeep = tokio::spawn(super::metrics::keep_up(stopped.clone()));
    let mut tasks = vec![server, deadlines, notices, token_use, upkeep];
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?;
        metrics_addr = Some(listener.local_addr()?);
        tracing::info!(address = %listener.local_addr()?, "serving /metrics on loopback");
        tasks.push(tokio::spawn(super::listen::serve_loopback(listener, routes::metrics_router(engine.clone()), stopped.clone())));
    }
    tasks.extend(signing);
    let stopped_because = Arc::new(std::sync::OnceLock::new());
    if let Some(pulse) = &pulse {
        tasks.push(tokio::spawn(super::peers::keep_beating(engine.clone(), pulse.clone(), stop.clone(), stopped_because.clone())));
    }
    if let Some(follower) = following {
        // The follower thread ends within a second of the stop; a task waits for it.
        tasks.push(tokio::task::spawn_blocking(move || {
            let _ = follower.join();
        }));
    }
    let events = engine.read(|s, _| s.last_seq);
    tracing::info!(
        socket = %socket.display(),
        state = %config.state_dir.display(),
        events,
        open_ms = opened.as_millis() as u64,
        load_ms = (loaded - opened).as_millis() as u64,
        ready_ms = started.elapsed().as_millis() as u64,
        "zsa daemon listening"
    );
    Ok(DaemonHandle { socket, tcp_addrs, metrics_addr, engine, stop, stopped_because, pulse, tasks, _lock: lock, socket_id })
}

/// Runs a daemon until SIGTERM or SIGINT; SIGHUP reloads the policy. Tells systemd each step.
pub async fn run_until_signalled(config: DaemonConfig, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a SIGTERM that comes as soon as the socket answers must stop us cleanly.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let handle = start(config, clock).await?; // it logs where it listens
    super::systemd::ready();
    // Pinged only from now on: before READY=1 there is nothing to say is alive.
    tokio::spawn(super::systemd::keep_watchdog(handle.engine.clone(), handle.stopping()));
    let mut stopping = handle.stopping();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                super::systemd::reloading();
                let reloaded = super::service::reload_policy_as_daemon(handle.engine.clone()).await;
                super::systemd::ready();
                match reloaded {
                    Ok(load) => tracing::info!(sha256 = %load.sha256, "policy reloaded on SIGHUP"),
                    Err(super::service::ReloadError::Invalid(e)) => {
                        tracing::error!(error = %e, "SIGHUP: the policy was not reloaded; the old one stays in force");
                        // Each problem in place, as `zsa policy check` shows it.
                        eprintln!("{}", e.render(false));
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the policy was not reloaded; the old one stays in force"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    tracing::info!("stopping");
    super::systemd::stopping();
    let why = handle.stopped_because();
    handle.shutdown().await;
    match why {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}
