//! Living under systemd: `READY=1` once the store is open and the socket listens, `RELOADING=1`
//! around a SIGHUP reload, `STOPPING=1` on the way out, `WATCHDOG=1` while the daemon is ready
//! (so one whose store hangs is restarted), and the socket `zsa.socket` passes (`LISTEN_FDS`).
//! Outside systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`) each is nothing.

use std::os::fd::{BorrowedFd, FromRawFd};
use std::sync::Arc;

use anyhow::bail;
use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt};
use sd_notify::NotifyState;
use tokio::sync::watch;

use super::Engine;

/// The listening Unix socket systemd passed, if it passed one. Anything else passed (several
/// sockets, a TCP one, a datagram one) is refused: zsa.socket has one `ListenStream=` path, and
/// TCP listeners are the daemon's own (`--listen`), with TLS.
pub fn activated_socket() -> anyhow::Result<Option<std::os::unix::net::UnixListener>> {
    let fds: Vec<_> = sd_notify::listen_fds()?.collect();
    let fd = match fds.as_slice() {
        [] => return Ok(None),
        [fd] => *fd,
        more => bail!(
            "systemd passed {} sockets (LISTEN_FDS); zsa takes one, the Unix socket of zsa.socket (ListenStream=/run/zsa/zsa.sock). TCP listeners are set with --listen",
            more.len()
        ),
    };
    // SAFETY: systemd hands the fd to this process to own; it is checked before it is used.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let unix = getsockname::<SockaddrStorage>(fd).ok().and_then(|a| a.family()) == Some(AddressFamily::Unix);
    let stream = getsockopt(&borrowed, sockopt::SockType).ok() == Some(SockType::Stream);
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false);
    if !(unix && stream && listening) {
        bail!(
            "the socket systemd passed (fd {fd}) is not a listening Unix stream socket; zsa.socket must say ListenStream=/run/zsa/zsa.sock"
        );
    }
    // SAFETY: as above; from here on the listener owns the fd.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

fn say(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot tell systemd (NOTIFY_SOCKET)");
    }
}

/// The store is open and the socket listens: a connection made now is answered.
pub fn ready() {
    say(&[NotifyState::Ready, NotifyState::Status("listening")]);
}

/// A SIGHUP reload begins (with the monotonic time systemd asks for); `ready` ends it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    states.extend(NotifyState::monotonic_usec_now().ok());
    say(&states);
}

pub fn stopping() {
    say(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its interval while every readiness check passes; a daemon that
/// is not ready stops pinging, and systemd restarts it when the interval runs out.
pub async fn keep_watchdog(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let every = interval / 2;
    loop {
        let readiness = super::readiness::check(&engine).await;
        if readiness.ready {
            say(&[NotifyState::Watchdog]);
        } else {
            let failed: Vec<String> = readiness
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.problem.clone().unwrap_or_default()))
                .collect();
            tracing::warn!(checks = %failed.join("; "), "not ready: the watchdog is not pinged");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
