//! `zsa gate TASK -- COMMAND [ARG...]` (what `assets/zsa-gate.sh` runs): runs a command of your
//! own only while you hold an active grant for TASK, and stops it when the grant ends.
//!
//! The command gets its own process group (and the terminal, when there is one), so stopping it
//! reaches what it started: SIGTERM to the group, SIGKILL after a grace. The group is stopped the
//! same way when the command exits, so nothing it left in its group (`sleep 600 &`) runs on
//! after the gate has returned, beyond the gate's watch over the grant. The grant is followed on
//! the daemon's event stream: every event the caller sees (a revoke, a relinquish, an expiry, the
//! user disabled, a policy reload) re-asks the daemon, and a timer at the grant's deadline does
//! too, so expiry stops the command on time even if the daemon cannot be reached then. While the
//! daemon is unreachable the command goes on until the deadline it last heard; any answer that is
//! not "allowed" (including a revoked token) stops it. A token of scope `check` may not follow
//! the stream: the gate then asks the daemon each second instead.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::{CliError, CmdResult};
use crate::client::{Client, ClientError, EventStream};
use crate::model::text;
use crate::model::wire::CheckAnswer;

/// Between SIGTERM and SIGKILL, as for the daemon's own runs.
const GRACE: Duration = Duration::from_secs(2);
/// How often to try again when the event stream is lost.
const RECONNECT: Duration = Duration::from_secs(1);

/// When the grant the answer found ends, on this machine's monotonic clock (the daemon's clock
/// may differ from ours: only the time left counts).
fn deadline(answer: &CheckAnswer) -> Option<Instant> {
    let left = (answer.grant.as_ref()?.expires_at - answer.now).to_std().unwrap_or_default();
    Some(Instant::now() + left)
}

/// Why the command may no longer run, if it may not.
async fn recheck(client: &Client, task: &str, until: &mut Option<Instant>) -> Option<String> {
    match client.check(task, None).await {
        Ok(a) if a.allowed => {
            *until = deadline(&a);
            None
        }
        Ok(a) => Some(a.message),
        // A refusal is the daemon's answer (a revoked token, a disabled user): stop.
        Err(e @ ClientError::Refused { .. }) => Some(e.to_string()),
        // No answer (the daemon is down or restarting): the deadline still holds without it.
        Err(_) => until.is_some_and(|d| d <= Instant::now()).then(|| format!("the grant for '{task}' ran out")),
    }
}

/// The event stream, if it can be had; a token whose scope does not open it (`check`) is told
/// so for good, and `followable` turns false.
async fn follow(client: &Client, followable: &mut bool) -> Option<EventStream> {
    if !*followable {
        return None;
    }
    match client.events(None).await {
        Ok(stream) => Some(stream),
        Err(ClientError::Refused { code, .. }) if code == "token_scope" => {
            *followable = false;
            None
        }
        Err(_) => None,
    }
}

async fn next_event(events: &mut Option<EventStream>) -> Option<()> {
    match events {
        Some(s) => s.next().await.and_then(|r| r.ok()).map(|_| ()),
        None => std::future::pending().await,
    }
}

/// Gives the terminal's foreground to the command's group (in the child, before exec), so it
/// can read the terminal; the gate takes it back at the end.
fn take_terminal() -> bool {
    // SAFETY: isatty/tcgetpgrp/getpgrp only read process and terminal state.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

fn give_back_terminal() {
    // SAFETY: changing the foreground group from the background needs SIGTTOU ignored meanwhile.
    unsafe {
        let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::tcsetpgrp(0, libc::getpgrp());
        libc::signal(libc::SIGTTOU, old);
    }
}

pub async fn run(client: &Client, task: &str, argv: &[String]) -> CmdResult {
    let Some((program, args)) = argv.split_first() else {
        return Err(CliError::Usage("usage: zsa gate TASK -- COMMAND [ARG...]".into()));
    };
    // Follow first, then ask: nothing that happens in between is missed.
    let mut followable = true;
    let mut events = follow(client, &mut followable).await;
    let answer = client.check(task, None).await?;
    if !answer.allowed {
        return Err(CliError::Refused(format!("not allowed: {}", answer.message)));
    }
    let mut until = deadline(&answer);
    let terminal = take_terminal();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).process_group(0);
    if terminal {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| CliError::Refused(format!("cannot start {}: {e}", text::inert(program))))?;
    let group = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(0));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(anyhow::Error::from)?;
    let reconnect = tokio::time::sleep(RECONNECT);
    tokio::pin!(reconnect);
    let expiry = tokio::time::sleep_until(until.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)));
    tokio::pin!(expiry);

    let stop_why = loop {
        tokio::select! {
            status = child.wait() => {
                // What it left running in its group ends with it: the gate would no longer watch it.
                let left = stop_group(group, true, Instant::now() + GRACE).await;
                if terminal { give_back_terminal(); }
                if left {
                    eprintln!("zsa: stopped what {} left running in its process group", text::inert(program));
                }
                let status = status.map_err(anyhow::Error::from)?;
                return exit_with(status);
            }
            _ = &mut expiry => {
                if let Some(why) = recheck(client, task, &mut until).await { break why; }
                expiry.as_mut().reset(until.unwrap_or_else(|| Instant::now() + RECONNECT));
            }
            got = next_event(&mut events) => {
                if got.is_none() {
                    events = None;
                    reconnect.as_mut().reset(Instant::now() + RECONNECT);
                }
                if let Some(why) = recheck(client, task, &mut until).await { break why; }
                if let Some(at) = until { expiry.as_mut().reset(at); }
            }
            _ = &mut reconnect, if events.is_none() => {
                events = follow(client, &mut followable).await;
                reconnect.as_mut().reset(Instant::now() + RECONNECT);
                // Something may have happened while nobody was listening (and without a stream
                // for good, this is how the gate hears of it).
                if (events.is_some() || !followable) && let Some(why) = recheck(client, task, &mut until).await { break why; }
                if !followable && let Some(at) = until { expiry.as_mut().reset(at); }
            }
            _ = term.recv() => break "zsa gate was asked to stop".to_string(),
        }
    };
    let _ = killpg(group, Signal::SIGTERM);
    let kill_at = Instant::now() + GRACE;
    let status = match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            child.wait().await
        }
    };
    // What it started in its group and had not ended yet goes too (already asked to end).
    stop_group(group, false, kill_at).await;
    if terminal {
        give_back_terminal();
    }
    eprintln!("zsa: stopped {}: {}", text::inert(program), text::inert(&stop_why));
    exit_with(status.map_err(anyhow::Error::from)?)
}

/// Is any live (not zombie) process in process group `group`? Read from /proc, so a zombie
/// nobody reaps yet does not count as running.
fn group_alive(group: Pid) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).any(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|line| {
            // Fields after the command name (which may hold spaces): state, ppid, pgrp.
            let f: Vec<&str> = line.rfind(')').map(|i| line[i + 1..].split_whitespace().take(3).collect()).unwrap_or_default();
            f.len() == 3 && f[0] != "Z" && f[2].parse() == Ok(group.as_raw())
        })
    })
}

/// Stops what is left in the command's process group once the command itself has ended: SIGTERM
/// (unless `term` is false: it was sent already), SIGKILL to what is still there from `kill_at`,
/// until the group is empty (for a bounded time). Returns whether anything was left. The group
/// id cannot be given to another process while any member lives, and each signal is sent only
/// after seeing a member.
async fn stop_group(group: Pid, term: bool, kill_at: Instant) -> bool {
    if group.as_raw() <= 0 || !group_alive(group) {
        return false;
    }
    if term {
        let _ = killpg(group, Signal::SIGTERM);
    }
    let grace_until = kill_at;
    let give_up = grace_until + Duration::from_secs(5);
    while group_alive(group) {
        let now = Instant::now();
        if now >= give_up {
            eprintln!("zsa: some processes in the command's group {group} did not end after SIGKILL");
            break;
        }
        if now >= grace_until {
            let _ = killpg(group, Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

/// The command's own exit code, or 128+N when a signal N ended it.
fn exit_with(status: std::process::ExitStatus) -> CmdResult {
    use std::os::unix::process::ExitStatusExt;
    match status.code().or(status.signal().map(|s| 128 + s)) {
        Some(0) => Ok(()),
        Some(code) => Err(CliError::Exit(code.clamp(1, 255) as u8)),
        None => Err(CliError::Exit(1)),
    }
}
