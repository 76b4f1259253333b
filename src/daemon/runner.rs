//! Runs approved tasks: the person never holds the privilege, the daemon does, and it carries out
//! exactly the argument vector the rules built. No shell, ever; a cleared environment; a fixed
//! working directory; its own process group so the whole command can be stopped; a timeout; and
//! a stop when the grant ends (unless the task says `on_expiry = "finish"`). Output streams back
//! live and is kept, up to a cap, as a transcript whose size and SHA-256 go into the audit log.

use std::convert::Infallible;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Engine;
use super::auth::Caller;
use super::error::ApiError;
use super::routes::execute;
use crate::model::wire::{RunOutput, RunRequest};
use crate::model::{Change, GrantId, RunId, RunOutcome, SYSTEM_ACTOR};
use crate::policy::OnExpiry;
use crate::rules::Command;

/// The most of a run's output kept in its transcript; the cap is recorded with the digest.
pub const TRANSCRIPT_CAP: u64 = 1024 * 1024;
/// The only environment a task's command gets.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Between asking a stopped command to end (SIGTERM) and making it (SIGKILL).
const GRACE: Duration = Duration::from_secs(2);

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
    let policy = engine.policy();
    let spec = policy.tasks.get(&req.task).and_then(|t| t.run.clone());
    let account = match &spec {
        Some(s) => resolve_account(s.run_as.as_deref())?,
        None => resolve_account(None)?, // the rules will refuse: this task runs nothing
    };
    let events =
        execute(&engine, &caller, Command::StartRun { task: req.task.clone(), params: req.params, run_as: account.name.clone() }).await?;
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

async fn send(tx: &Sink, line: &RunOutput) {
    if let Ok(mut s) = serde_json::to_string(line) {
        s.push('\n');
        // The client may have gone; the run goes on and its transcript is still kept.
        let _ = tx.send(Ok(Bytes::from(s))).await;
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

fn signal_group(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), signal);
    }
}

/// Has the grant ended, by the clock or by an event?
fn grant_over(engine: &Engine, grant: GrantId) -> bool {
    let now = engine.now();
    engine.read(|s, _| s.grants.get(&grant).is_none_or(|g| !g.is_active_at(now)))
}

async fn supervise(engine: Arc<Engine>, s: Started, tx: Sink) {
    send(&tx, &RunOutput::Started { run: s.run, argv: s.argv.clone() }).await;
    let mut transcript = Transcript::open(engine.runs_dir().join(format!("{}.log", s.run))).await;
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
    if let Some((uid, gid)) = s.account.switch_to {
        cmd.uid(uid).gid(gid);
    }
    let (outcome, exit_code, message) = match cmd.spawn() {
        Err(e) => {
            let msg = format!("could not start {}: {e}", s.argv[0]);
            transcript.write(format!("zsa: {msg}\n").as_bytes()).await;
            (RunOutcome::FailedToStart, None, msg)
        }
        Ok(child) => watch(&engine, &s, child, &mut transcript, &tx).await,
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
    let e = engine.clone();
    match super::writer::run(move || e.execute(SYSTEM_ACTOR, end)).await {
        Ok(Ok(_)) => {}
        other => tracing::error!(run = %s.run, result = ?other.map(|r| r.map(|_| ())), "could not record the end of a run"),
    }
    send(&tx, &RunOutput::Ended { run: s.run, exit_code, outcome, message }).await;
}

/// Streams a running command's output until it ends, stopping it on timeout or when its grant
/// ends. Returns how it ended.
async fn watch(
    engine: &Arc<Engine>,
    s: &Started,
    mut child: tokio::process::Child,
    transcript: &mut Transcript,
    tx: &Sink,
) -> (RunOutcome, Option<i32>, String) {
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let mut feed = engine.subscribe();
    let timeout = tokio::time::sleep(s.timeout);
    tokio::pin!(timeout);
    let grant_deadline = engine.read(|st, _| st.grants.get(&s.grant).map(|g| g.expires_at));
    let until_deadline = grant_deadline.and_then(|d| (d - engine.now()).to_std().ok()).unwrap_or(Duration::ZERO);
    let deadline = tokio::time::sleep(until_deadline);
    tokio::pin!(deadline);
    let watch_grant = s.on_expiry == OnExpiry::Stop;
    let mut stopped: Option<(RunOutcome, String)> = None;
    // Armed only once a stop was asked for.
    let kill_at = tokio::time::sleep(Duration::from_secs(365 * 86_400));
    tokio::pin!(kill_at);

    let status = loop {
        let stop = tokio::select! {
            n = read_open(&mut stdout, &mut out_buf), if stdout.is_some() => {
                match n {
                    Ok(n) if n > 0 => { transcript.write(&out_buf[..n]).await; send(tx, &RunOutput::Output { stream: "stdout".into(), data: String::from_utf8_lossy(&out_buf[..n]).into_owned() }).await; }
                    _ => stdout = None,
                }
                None
            }
            n = read_open(&mut stderr, &mut err_buf), if stderr.is_some() => {
                match n {
                    Ok(n) if n > 0 => { transcript.write(&err_buf[..n]).await; send(tx, &RunOutput::Output { stream: "stderr".into(), data: String::from_utf8_lossy(&err_buf[..n]).into_owned() }).await; }
                    _ => stderr = None,
                }
                None
            }
            status = child.wait(), if stdout.is_none() && stderr.is_none() => break status,
            _ = &mut timeout, if stopped.is_none() => Some((RunOutcome::TimedOut, format!("stopped after the task's timeout of {}", crate::model::duration::format(s.timeout.as_secs())))),
            _ = &mut deadline, if watch_grant && stopped.is_none() => {
                grant_over(engine, s.grant).then(|| (RunOutcome::GrantEnded, format!("stopped: grant {} ended", s.grant)))
            }
            event = feed.recv(), if watch_grant && stopped.is_none() => {
                let ended = match event {
                    Ok(e) => matches!(&e.change,
                        Change::GrantExpired { grant, .. } | Change::GrantRevoked { grant, .. } | Change::GrantRelinquished { grant, .. } if *grant == s.grant),
                    Err(_) => grant_over(engine, s.grant),
                };
                ended.then(|| (RunOutcome::GrantEnded, format!("stopped: grant {} ended", s.grant)))
            }
            _ = &mut kill_at, if stopped.is_some() => {
                signal_group(pid, Signal::SIGKILL);
                kill_at.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                None
            }
        };
        if let Some((outcome, why)) = stop {
            signal_group(pid, Signal::SIGTERM);
            kill_at.as_mut().reset(tokio::time::Instant::now() + GRACE);
            stopped = Some((outcome, why));
        }
    };
    let code = status.as_ref().ok().and_then(|st| st.code());
    let signal = status.as_ref().ok().and_then(std::os::unix::process::ExitStatusExt::signal);
    match stopped {
        Some((outcome, why)) => (outcome, code.or(signal.map(|s| 128 + s)), why),
        None => {
            let msg = match (code, signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "ended".to_string(),
            };
            (RunOutcome::Exited, code.or(signal.map(|s| 128 + s)), msg)
        }
    }
}
