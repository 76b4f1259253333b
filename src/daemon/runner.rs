//! Runs approved tasks: the person never holds the privilege, the daemon does, and it carries out
//! exactly the argument vector the rules built. No shell, ever; a cleared environment; a fixed
//! working directory; its whole process tree contained (`tree`) so all of it can be stopped; a
//! timeout; a stop when the grant ends (unless the task says `on_expiry = "finish"`) and when the
//! daemon stops; and what the command leaves running when it exits is stopped too. A run's end
//! is recorded only once its tree is gone. Output streams back live, never waiting for a slow
//! client (what it cannot take is dropped), and is kept, up to a cap, as a transcript whose size
//! and SHA-256 go into the audit log.

use std::convert::Infallible;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Engine;
use super::auth::Caller;
use super::error::ApiError;
use super::service::execute;
use super::tree;
use crate::model::wire::{RunOutput, RunRequest};
use crate::model::{Change, GrantId, RunId, RunOutcome, SYSTEM_ACTOR};
use crate::policy::OnExpiry;
use crate::rules::Command;

/// The most of a run's output kept in its transcript; the cap is recorded with the digest.
pub const TRANSCRIPT_CAP: u64 = 1024 * 1024;
/// The only environment a task's command gets.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Between asking a stopped command to end (SIGTERM) and making it (SIGKILL).
pub(crate) const GRACE: Duration = Duration::from_secs(2);
/// How long SIGKILL is repeated before the supervisor stops waiting for a tree that will not
/// empty (a process stuck in the kernel, or one that left every way it could be found): the end
/// is then recorded, saying so, well within the daemon's own wait for its runs when it stops.
const KILL_FOR: Duration = Duration::from_secs(5);

type Sink = mpsc::Sender<Result<Bytes, Infallible>>;

/// The account a task runs as, resolved and checked before anything is recorded.
struct Account {
    name: String,
    /// Set when the daemon must switch to another account.
    switch_to: Option<(u32, u32)>,
}

fn resolve_account(wanted: Option<&str>) -> Result<Account, ApiError> {
    let me = nix::unistd::geteuid();
    let own = nix::unistd::User::from_uid(me).ok().flatten().map(|u| u.name).unwrap_or_else(|| format!("uid-{me}"));
    let Some(name) = wanted.filter(|w| *w != own) else {
        return Ok(Account { name: own, switch_to: None });
    };
    let user = nix::unistd::User::from_name(name).ok().flatten().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_such_account",
            format!("the task runs as '{name}', but this machine has no such account; fix run_as in the policy"),
        )
    })?;
    if !me.is_root() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_switch_account",
            format!(
                "the task runs as '{name}', but the daemon runs as '{own}' and cannot switch accounts; run the daemon as root or change run_as"
            ),
        ));
    }
    Ok(Account { name: name.to_string(), switch_to: Some((user.uid.as_raw(), user.gid.as_raw())) })
}

/// What the supervisor needs to know about a run it was given.
struct Started {
    run: RunId,
    grant: GrantId,
    argv: Vec<String>,
    account: Account,
    timeout: Duration,
    on_expiry: OnExpiry,
}

/// `POST /v1/runs`: decide, record the start, then stream the command's output as NDJSON.
pub async fn start(engine: Arc<Engine>, caller: Caller, req: RunRequest) -> Result<Response, ApiError> {
    if *engine.lease_lost().borrow() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unreachable",
            "this daemon cannot tell the shared store it is alive, so it starts no run now (another daemon would take it for abandoned); try again shortly, or on another daemon",
        ));
    }
    let policy = engine.policy();
    let spec = policy.tasks.get(&req.task).and_then(|t| t.run.clone());
    let account = match &spec {
        Some(s) => resolve_account(s.run_as.as_deref())?,
        None => resolve_account(None)?, // the rules will refuse: this task runs nothing
    };
    let events = execute(
        &engine,
        &caller,
        Command::StartRun {
            task: req.task.clone(),
            params: req.params,
            run_as: account.name.clone(),
            daemon: Some(engine.identity().to_string()),
        },
    )
    .await?;
    let Some((run, grant, argv, timeout_secs)) = events.iter().find_map(|e| match &e.change {
        Change::RunStarted { run, grant, argv, timeout_secs, .. } => Some((*run, *grant, argv.clone(), *timeout_secs)),
        _ => None,
    }) else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the run was not recorded"));
    };
    let on_expiry = spec.map(|s| s.on_expiry).unwrap_or(OnExpiry::Stop);
    let (tx, rx) = mpsc::channel(256);
    let started = Started { run, grant, argv, account, timeout: Duration::from_secs(timeout_secs), on_expiry };
    tokio::spawn(supervise(engine, started, tx));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Lines to the client that asked for the run. The run never waits for the client: what a
/// slow or stalled client cannot take now is dropped (the transcript keeps it, up to its cap),
/// so output can never hold back a stop.
struct Out {
    tx: Sink,
    /// Bytes of output dropped since the client last took a line.
    dropped: u64,
}

impl Out {
    fn line(item: &RunOutput) -> Option<Bytes> {
        let mut s = serde_json::to_string(item).ok()?;
        s.push('\n');
        Some(Bytes::from(s))
    }

    /// Sends if there is room; says whether it went.
    fn offer(&self, item: &RunOutput) -> bool {
        Self::line(item).is_some_and(|l| self.tx.try_send(Ok(l)).is_ok())
    }

    fn output(&mut self, stream: &str, data: &[u8]) {
        if self.dropped > 0 {
            let note = format!(
                "zsa: {} bytes of output were not sent because this client did not keep up; the transcript has them (up to its cap)\n",
                self.dropped
            );
            if !self.offer(&RunOutput::Output { stream: "stderr".into(), data: note }) {
                self.dropped += data.len() as u64;
                return;
            }
            self.dropped = 0;
        }
        let item = RunOutput::Output { stream: stream.into(), data: String::from_utf8_lossy(data).into_owned() };
        if !self.offer(&item) && !self.tx.is_closed() {
            self.dropped += data.len() as u64;
        }
    }

    /// The last line: worth a short wait, never a long one.
    async fn last(&self, item: &RunOutput) {
        if let Some(l) = Self::line(item) {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.tx.send(Ok(l))).await;
        }
    }
}

/// The transcript as it is written: capped, hashed as it goes.
struct Transcript {
    file: Option<tokio::fs::File>,
    hash: Sha256,
    kept: u64,
    truncated: bool,
}

impl Transcript {
    async fn open(path: PathBuf) -> Transcript {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map(tokio::fs::File::from_std);
        if let Err(e) = &file {
            tracing::error!(path = %path.display(), error = %e, "cannot write a run's transcript");
        }
        Transcript { file: file.ok(), hash: Sha256::new(), kept: 0, truncated: false }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let room = TRANSCRIPT_CAP.saturating_sub(self.kept) as usize;
        let part = &bytes[..bytes.len().min(room)];
        if part.len() < bytes.len() {
            self.truncated = true;
        }
        if part.is_empty() {
            return;
        }
        self.hash.update(part);
        self.kept += part.len() as u64;
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_all(part).await
        {
            tracing::error!(error = %e, "writing a transcript failed");
        }
    }

    async fn finish(mut self) -> (u64, String, bool) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.sync_all().await;
        }
        (self.kept, hex::encode(self.hash.finalize()), self.truncated)
    }
}

/// Reads from a pipe while it is open; a closed one never becomes ready.
async fn read_open<R: tokio::io::AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// What one read from one of the command's pipes gave: output goes to the transcript and the
/// client; the end of the pipe (or an error) closes it.
async fn take<R>(read: std::io::Result<usize>, pipe: &mut Option<R>, buf: &[u8], stream: &str, transcript: &mut Transcript, out: &mut Out) {
    match read {
        Ok(n) if n > 0 => {
            transcript.write(&buf[..n]).await;
            out.output(stream, &buf[..n]);
        }
        _ => *pipe = None,
    }
}

/// Why a run stops when its daemon could not say it is alive for `peers::FENCE`.
const LEASE_LOST: &str = "stopped: this daemon could not tell the shared store it is alive, and another daemon would soon take this run for abandoned while it ran";

/// Why a run stops when another daemon recorded it abandoned.
const ABANDONED_ELSEWHERE: &str = "stopped: another daemon recorded this run abandoned, because this daemon's heartbeats did not reach the shared store for the length of its lease";

/// Was the run recorded ended by someone else (another daemon that took this one for dead)?
/// Only this daemon's supervisor ends a run it started, so any end on record is another's.
fn ended_elsewhere(engine: &Engine, run: RunId) -> bool {
    engine.read(|s, _| s.runs.get(&run).is_some_and(|r| r.ended.is_some()))
}

/// Has the grant ended, by the clock or by an event?
fn grant_over(engine: &Engine, grant: GrantId) -> bool {
    let now = engine.now();
    engine.read(|s, _| s.grants.get(&grant).is_none_or(|g| !g.is_active_at(now)))
}

async fn supervise(engine: Arc<Engine>, s: Started, tx: Sink) {
    let mut out = Out { tx, dropped: 0 };
    out.offer(&RunOutput::Started { run: s.run, argv: s.argv.clone() });
    let mut transcript = Transcript::open(engine.runs_dir().join(format!("{}.log", s.run))).await;
    let command = || {
        let mut cmd = tokio::process::Command::new(&s.argv[0]);
        cmd.args(&s.argv[1..])
            .env_clear()
            .env("PATH", SAFE_PATH)
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // The account is switched in `tree::spawn`, after the run's audit session is started.
        cmd
    };
    let name = s.run.to_string();
    let prepared = tree::prepare(engine.runs_dir(), &name);
    let in_cgroup = prepared.in_cgroup();
    let mut spawned = tree::spawn(&mut command(), prepared, s.account.switch_to, engine.runs_dir(), &name);
    if in_cgroup
        && let Err(e) = &spawned
        && e.kind() != std::io::ErrorKind::NotFound
    {
        // A cgroup that cannot be joined (a cgroup manager's rules) must not stop the run.
        tracing::warn!(run = %s.run, error = %e, "could not start a run in its own cgroup; starting it contained by process group");
        spawned = tree::spawn(&mut command(), tree::fallback(), s.account.switch_to, engine.runs_dir(), &name);
    }
    let (outcome, exit_code, message, tree) = match spawned {
        Err(e) => {
            let msg = format!("could not start {}: {e}", s.argv[0]);
            transcript.write(format!("zsa: {msg}\n").as_bytes()).await;
            (RunOutcome::FailedToStart, None, msg, None)
        }
        Ok((child, mut tree)) => {
            let (outcome, code, msg) = watch(&engine, &s, child, &tree, &mut transcript, &mut out).await;
            tree.remove_cgroup();
            (outcome, code, msg, Some(tree))
        }
    };
    let (bytes, sha256, truncated) = transcript.finish().await;
    let end = Command::EndRun {
        run: s.run,
        outcome,
        exit_code,
        transcript_bytes: bytes,
        transcript_sha256: sha256,
        transcript_cap: TRANSCRIPT_CAP,
        truncated,
    };
    if record_end(&engine, s.run, end).await {
        // Only now that the end is on record does the next start stop looking for its processes.
        tree.into_iter().for_each(tree::Tree::finish);
    }
    out.last(&RunOutput::Ended { run: s.run, exit_code, outcome, message }).await;
}

/// Records how a run ended; true once it is on record (by this daemon, or by another daemon that
/// took this one for dead: there is no second end). A store that cannot be reached is tried
/// again every second until the daemon stops (then its next start records the run abandoned).
async fn record_end(engine: &Arc<Engine>, run: RunId, end: Command) -> bool {
    let mut closing = engine.closing();
    loop {
        if ended_elsewhere(engine, run) {
            tracing::warn!(%run, "{ABANDONED_ELSEWHERE}; its processes were stopped");
            return true;
        }
        match super::writer::record(engine.clone(), SYSTEM_ACTOR.into(), end.clone()).await {
            Ok(Ok(_)) => return true,
            Ok(Err(super::engine::EngineError::Store(crate::store::StoreError::Unavailable(why)))) => {
                tracing::warn!(%run, "could not record the end of a run yet, trying again: {why}");
            }
            _ if ended_elsewhere(engine, run) => continue,
            other => {
                tracing::error!(%run, result = ?other.map(|r| r.map(|_| ())), "could not record the end of a run");
                return false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = closing.wait_for(|c| *c) => return false,
        }
    }
}

/// Streams a running command's output until its whole process tree has ended, stopping the tree
/// on timeout, when the grant ends, and when the daemon stops; what the command leaves running
/// when it exits is stopped too (the run is the whole tree). Returns how it ended.
async fn watch(
    engine: &Arc<Engine>,
    s: &Started,
    mut child: tokio::process::Child,
    tree: &tree::Tree,
    transcript: &mut Transcript,
    out: &mut Out,
) -> (RunOutcome, Option<i32>, String) {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let mut feed = engine.subscribe();
    let mut closing = engine.closing();
    let mut lease = engine.lease_lost();
    let timeout = tokio::time::sleep(s.timeout);
    tokio::pin!(timeout);
    let grant_deadline = engine.read(|st, _| st.grants.get(&s.grant).map(|g| g.expires_at));
    let until_deadline = grant_deadline.and_then(|d| (d - engine.now()).to_std().ok()).unwrap_or(Duration::ZERO);
    let deadline = tokio::time::sleep(until_deadline);
    tokio::pin!(deadline);
    let watch_grant = s.on_expiry == OnExpiry::Stop;
    let mut stopped: Option<(RunOutcome, String)> = None;
    let mut status: Option<std::io::Result<std::process::ExitStatus>> = None;
    let mut left_behind = 0;
    // Armed once the tree was asked to end (a stop, or the command exited leaving processes).
    let kill_at = tokio::time::sleep(Duration::from_secs(365 * 86_400));
    tokio::pin!(kill_at);
    let mut kill_armed = false;
    let give_up = tokio::time::sleep(Duration::from_secs(365 * 86_400));
    tokio::pin!(give_up);
    let mut not_stopped = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    // Orphans of runs come to the daemon; those that end while their run goes must not stay zombies.
    let mut reap_tick = tokio::time::interval(Duration::from_secs(1));

    loop {
        let stop = tokio::select! {
            n = read_open(&mut stdout, &mut out_buf), if stdout.is_some() => {
                take(n, &mut stdout, &out_buf, "stdout", transcript, out).await;
                None
            }
            n = read_open(&mut stderr, &mut err_buf), if stderr.is_some() => {
                take(n, &mut stderr, &err_buf, "stderr", transcript, out).await;
                None
            }
            st = child.wait(), if status.is_none() => {
                status = Some(st);
                // What the command leaves running ends with it.
                let left = tree.terminate();
                if stopped.is_none() {
                    left_behind = left;
                }
                if left > 0 && !kill_armed {
                    kill_at.as_mut().reset(tokio::time::Instant::now() + GRACE);
                    give_up.as_mut().reset(tokio::time::Instant::now() + GRACE + KILL_FOR);
                    kill_armed = true;
                }
                None
            }
            _ = tick.tick(), if status.is_some() => {
                if tree.is_empty() {
                    break;
                }
                // Something of the tree showed up after the command's exit was seen: it goes too.
                if !kill_armed {
                    let left = tree.terminate();
                    if stopped.is_none() {
                        left_behind = left_behind.max(left);
                    }
                    kill_at.as_mut().reset(tokio::time::Instant::now() + GRACE);
                    give_up.as_mut().reset(tokio::time::Instant::now() + GRACE + KILL_FOR);
                    kill_armed = true;
                }
                None
            }
            _ = reap_tick.tick(), if status.is_none() => {
                tree::reap_orphans();
                None
            }
            _ = &mut timeout, if stopped.is_none() && status.is_none() => Some((RunOutcome::TimedOut, format!("stopped after the task's timeout of {}", crate::model::duration::format(s.timeout.as_secs())))),
            _ = &mut deadline, if watch_grant && stopped.is_none() && status.is_none() => {
                grant_over(engine, s.grant).then(|| (RunOutcome::GrantEnded, format!("stopped: grant {} ended", s.grant)))
            }
            event = feed.recv(), if stopped.is_none() && status.is_none() => {
                let (abandoned, grant_ended) = match event {
                    Ok(e) => (
                        matches!(&e.change, Change::RunEnded { run, .. } if *run == s.run),
                        matches!(&e.change,
                            Change::GrantExpired { grant, .. } | Change::GrantRevoked { grant, .. } | Change::GrantRelinquished { grant, .. } if *grant == s.grant),
                    ),
                    Err(_) => (ended_elsewhere(engine, s.run), grant_over(engine, s.grant)),
                };
                if abandoned {
                    Some((RunOutcome::Abandoned, ABANDONED_ELSEWHERE.to_string()))
                } else {
                    (watch_grant && grant_ended).then(|| (RunOutcome::GrantEnded, format!("stopped: grant {} ended", s.grant)))
                }
            }
            _ = async { drop(closing.wait_for(|c| *c).await) }, if stopped.is_none() && status.is_none() => Some((RunOutcome::DaemonStopped, "stopped: the daemon is stopping".to_string())),
            _ = async { drop(lease.wait_for(|l| *l).await) }, if stopped.is_none() && status.is_none() => Some((RunOutcome::Abandoned, LEASE_LOST.to_string())),
            _ = &mut kill_at, if kill_armed => {
                tree.kill();
                // Again until it is empty: something may have been forking.
                kill_at.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(100));
                None
            }
            _ = &mut give_up, if kill_armed => {
                // The first process, if it still runs, is the daemon's own child: end it directly.
                if status.is_none() {
                    let _ = child.start_kill();
                    if let Ok(st) = tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                        status = Some(st);
                    }
                }
                not_stopped = tree.terminate();
                tracing::error!(run = %s.run, processes = not_stopped, "a run's processes did not end after SIGKILL; recording its end without them");
                break;
            }
        };
        if let Some((outcome, why)) = stop {
            tree.terminate();
            if !kill_armed {
                kill_at.as_mut().reset(tokio::time::Instant::now() + GRACE);
                give_up.as_mut().reset(tokio::time::Instant::now() + GRACE + KILL_FOR);
                kill_armed = true;
            }
            stopped = Some((outcome, why));
        }
    }
    // The tree is gone, so the pipes close, unless something outside it was handed them.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while stdout.is_some() || stderr.is_some() {
            tokio::select! {
                n = read_open(&mut stdout, &mut out_buf), if stdout.is_some() => take(n, &mut stdout, &out_buf, "stdout", transcript, out).await,
                n = read_open(&mut stderr, &mut err_buf), if stderr.is_some() => take(n, &mut stderr, &err_buf, "stderr", transcript, out).await,
            }
        }
    })
    .await;
    let status = status.and_then(Result::ok);
    let code = status.and_then(|st| st.code());
    let signal = status.and_then(|st| std::os::unix::process::ExitStatusExt::signal(&st));
    let exit_code = code.or(signal.map(|s| 128 + s));
    let unstoppable = if not_stopped > 0 {
        format!("; {not_stopped} of its process(es) could not be stopped (see the daemon's log)")
    } else {
        String::new()
    };
    match stopped {
        Some((outcome, why)) => (outcome, exit_code, why + &unstoppable),
        None => {
            let mut msg = match (code, signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "ended".to_string(),
            };
            if left_behind > 0 {
                msg.push_str(&format!("; the {left_behind} process(es) it left running were stopped"));
            }
            msg.push_str(&unstoppable);
            (RunOutcome::Exited, exit_code, msg)
        }
    }
}
