//! The daemon's front doors: accepts connections on the Unix socket and on any TCP listeners
//! (TLS only), caps how many are open (in all, per Unix account, per network address), and serves
//! each one with hyper under a header size limit, a header timeout and an idle timeout, so nobody
//! can hold the daemon's file descriptors or memory by connecting and saying nothing, or by
//! sending headers forever. Every door runs the same accept loop, counts in the same count and
//! serves the same way; the doors differ in who a peer is.
//!
//! On the Unix socket the caps are counted from the peer's uid (SO_PEERCRED), before a byte is
//! read: the shared cap at accept, the per-account cap once the uid's account is known (looked up
//! in the connection's own task, so NSS never holds up the accept loop). Uids with no account on
//! this machine (a user namespace's subordinate uids: one user may hold thousands) are not
//! accounts anyone gave a share to, so they all share one per-account cap. Root and the daemon's
//! own account may use a few reserved slots beyond the shared cap, so an attacker who fills the
//! daemon (over the socket or the network) cannot lock out the people who can stop them (admins
//! connect as themselves and share the cap; `sudo zsa ...` gets in).
//!
//! On a TCP listener a peer is only its address (an IPv6 peer its /64, which one host usually
//! holds whole): the per-address cap is counted at accept, before the TLS handshake, and a
//! connection has no account: the only identity there is a bearer token (`auth`). The handshake
//! must end within the header timeout (or the idle timeout, if shorter). A connection over a cap
//! gets an HTTP answer with our JSON error once it has sent its request head (briefly and
//! boundedly; over TCP after the handshake), then is closed.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::accounts::Accounts;
use super::auth::{Network, Peer};

/// File descriptors kept back from connections: the database, run transcripts and pipes, the
/// log, and those refused connections need for as long as it takes to answer them.
const FD_RESERVE: u64 = 64 + REFUSING as u64;
/// Refused connections answered at a time after reading their request head; beyond these, a
/// refused connection gets its answer written at once and is closed.
const REFUSING: usize = 16;
/// How much of a refused connection's request is read, and for how long, before answering.
const REFUSAL_HEAD_BYTES: usize = 8 * 1024;
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// Never more connections than this, however high the descriptor limit.
const MAX_CONNECTIONS: usize = 4096;

/// How many connections may be open, and how long one may take.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections everyone but root and the daemon's account may hold, together.
    pub shared: usize,
    /// Further slots only root and the daemon's own account may use.
    pub reserved: usize,
    /// Connections one Unix account (other than root and the daemon's) may hold at once; also
    /// what all uids with no account on this machine may hold together.
    pub per_uid: usize,
    /// Connections one network address (an IPv6 one's /64) may hold at once on the TCP listeners.
    pub per_peer: usize,
    /// The whole request head must arrive within this; it also ends a kept-alive connection
    /// that sends no next request.
    pub header_timeout: Duration,
    /// A connection with no request being answered and no byte moving either way for this long
    /// is closed (a body sent a byte at a time, an event stream whose reader stopped reading).
    pub idle_timeout: Duration,
    /// The largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
}

impl Limits {
    /// The limits for a process allowed `nofile` open descriptors: the caps hold at any limit,
    /// even systemd's default of 1024.
    pub fn for_fd_limit(nofile: u64) -> Limits {
        let reserved = 32;
        let total = (nofile.saturating_sub(FD_RESERVE) as usize).clamp(reserved + 16, MAX_CONNECTIONS);
        Limits {
            shared: total - reserved,
            reserved,
            per_uid: 64,
            per_peer: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 8 * 1024,
        }
    }
}

/// The limits an operator set (the daemon's config file or flags), each over the default sized
/// from the open-file limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// At most this many connections for everyone but root and the daemon's account (who keep
    /// their reserved slots); the open-file limit may make it fewer.
    pub max_connections: Option<usize>,
    pub per_account: Option<usize>,
    pub per_peer: Option<usize>,
    pub header_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

impl LimitSettings {
    /// `limits` with these settings in force.
    pub fn apply(&self, mut limits: Limits) -> Limits {
        if let Some(n) = self.max_connections {
            limits.shared = limits.shared.min(n.max(1));
        }
        limits.per_uid = self.per_account.unwrap_or(limits.per_uid).max(1);
        limits.per_peer = self.per_peer.unwrap_or(limits.per_peer).max(1);
        limits.header_timeout = self.header_timeout.unwrap_or(limits.header_timeout);
        limits.idle_timeout = self.idle_timeout.unwrap_or(limits.idle_timeout);
        limits
    }
}

/// Raises this process's soft limit on open files to its hard limit (what well-behaved servers
/// do; systemd starts services at 1024) and returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit; connection caps follow the lower one");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the open-file limit; assuming 1024");
            1024
        }
    }
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    PerUid,
    /// The one cap all uids with no account share is full.
    NoAccount,
    /// This network address (or IPv6 /64) holds as many as one may.
    PerPeer(Network),
    Full,
}

/// Whose connections a connection counts against: its account's, the one count all uids
/// without an account (and peers whose uid the kernel did not tell) share, or its network
/// address's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    Account(u32),
    NoAccount,
    Network(Network),
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_bucket: HashMap<Bucket, usize>,
}

/// Counts open connections; a `Slot` is one of them and gives itself back when dropped.
struct Gate {
    limits: Limits,
    counts: Mutex<Counts>,
    own_uid: u32,
}

struct Slot {
    gate: Arc<Gate>,
    bucket: Option<Bucket>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Root and the daemon's own account, on the Unix socket: they may use the reserved slots and
    /// have no per-account cap.
    fn trusted(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| u == 0 || u == self.own_uid)
    }

    /// Takes one of the shared (or, for the `trusted`, reserved) slots: at accept, before
    /// anything is looked up.
    fn admit(self: &Arc<Self>, trusted: bool) -> Result<Slot, Refused> {
        let mut c = self.lock();
        let room = if trusted { self.limits.shared + self.limits.reserved } else { self.limits.shared };
        if c.total >= room {
            return Err(Refused::Full);
        }
        c.total += 1;
        Ok(Slot { gate: self.clone(), bucket: None })
    }
}

impl Slot {
    /// Counts the connection against `bucket` too, if there is room in it.
    fn charge(&mut self, bucket: Bucket) -> Result<(), Refused> {
        let mut c = self.gate.lock();
        let cap = match bucket {
            Bucket::Account(_) | Bucket::NoAccount => self.gate.limits.per_uid,
            Bucket::Network(_) => self.gate.limits.per_peer,
        };
        let mine = c.by_bucket.entry(bucket).or_default();
        if *mine >= cap {
            return Err(match bucket {
                Bucket::Account(_) => Refused::PerUid,
                Bucket::NoAccount => Refused::NoAccount,
                Bucket::Network(network) => Refused::PerPeer(network),
            });
        }
        *mine += 1;
        self.bucket = Some(bucket);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.gate.lock();
        c.total -= 1;
        if let Some(b) = self.bucket
            && let Some(n) = c.by_bucket.get_mut(&b)
        {
            *n -= 1;
            if *n == 0 {
                c.by_bucket.remove(&b);
            }
        }
    }
}

/// Counts refusals so they are logged at most once a second, with how many were not logged and
/// from how many distinct peers (uids, or network addresses): a flood of refused connections must
/// not become a flood of log lines, and a flood from many uids (a user namespace's) or addresses
/// must show as one.
struct RefusalLog<K> {
    state: Mutex<RefusalCount<K>>,
}

struct RefusalCount<K> {
    last: Option<Instant>,
    /// Refusals since the last line, and their distinct peers.
    refused: u64,
    peers: HashSet<K>,
}

impl<K> Default for RefusalLog<K> {
    fn default() -> Self {
        RefusalLog { state: Mutex::new(RefusalCount { last: None, refused: 0, peers: HashSet::new() }) }
    }
}

/// The most distinct peers counted between two lines; a line says "at least" this many.
const MAX_COUNTED_PEERS: usize = 65_536;

impl<K: Hash + Eq> RefusalLog<K> {
    /// Counts a refusal from `peer`; when a line is due, how many refusals it reports and from
    /// how many distinct peers.
    fn count(&self, peer: K) -> Option<(u64, usize)> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.refused += 1;
        if s.peers.len() < MAX_COUNTED_PEERS {
            s.peers.insert(peer);
        }
        if s.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return None;
        }
        s.last = Some(Instant::now());
        let line = (std::mem::take(&mut s.refused), s.peers.len());
        s.peers.clear();
        Some(line)
    }
}

fn reason(why: Refused) -> &'static str {
    match why {
        Refused::PerUid => "this account holds too many",
        Refused::NoAccount => "uids with no account on this machine together hold too many",
        Refused::PerPeer(_) => "this network address holds too many",
        Refused::Full => "the daemon holds as many as it may",
    }
}

/// The whole answer to a refused connection: written at once, then the connection is closed.
fn refusal_response(why: Refused, limits: &Limits) -> Vec<u8> {
    let (status, code, message) = match why {
        Refused::PerUid => (
            "429 Too Many Requests",
            "too_many_connections",
            format!(
                "your account already holds {} connections to the zsa daemon, the most one account may; close some (each open console `zsa` or `zsa tui`, each `zsa run` and `zsa gate`, and each script following /v1/events holds one) and try again",
                limits.per_uid
            ),
        ),
        Refused::NoAccount => (
            "429 Too Many Requests",
            "too_many_connections",
            format!(
                "your uid has no account on this machine, and such uids (a user namespace's, say) share {} connections to the zsa daemon, all in use; connect from your own account",
                limits.per_uid
            ),
        ),
        Refused::PerPeer(network) => (
            "429 Too Many Requests",
            "too_many_connections",
            format!(
                "your {network} already holds {} connections to the zsa daemon, the most one address may (everyone behind the same NAT shares it); close some (each open console, each `zsa run` and `zsa gate`, and each script following /v1/events holds one) and try again",
                limits.per_peer
            ),
        ),
        Refused::Full => (
            "503 Service Unavailable",
            "daemon_busy",
            format!(
                "the zsa daemon already holds {} connections, the most it may; try again shortly, or ask an admin to look at its log (root can still connect on the daemon's host)",
                limits.shared
            ),
        ),
    };
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a refused connection and closes it. A client writes its request before it reads the
/// answer, and a socket closed before that write makes the client report a failed send rather
/// than our answer; so the request head is read first (at most 8 KiB, for at most a second).
/// `_turn` is one of only `REFUSING` such waits at once, so refusals cannot pile up.
async fn refuse(mut stream: UnixStream, why: Refused, limits: Limits, _turn: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSAL_WAIT, read_head(&mut stream)).await;
    drain(&stream);
    let _ = tokio::time::timeout(REFUSAL_WAIT, stream.write_all(&refusal_response(why, &limits))).await;
    let _ = stream.shutdown().await;
}

/// Answers a refused connection without waiting, when too many refusals wait already: whatever
/// it already sent is dropped, the answer written, and the socket closed. A fresh socket's
/// buffer always has room for the few hundred bytes.
fn refuse_now(stream: UnixStream, why: Refused, limits: &Limits) {
    drain(&stream);
    let _ = stream.try_write(&refusal_response(why, limits));
}

/// Reads and drops what has arrived (so closing does not reset the client before it reads).
fn drain(stream: &UnixStream) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// Reads until the end of a request head, at most `REFUSAL_HEAD_BYTES`, and drops it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < REFUSAL_HEAD_BYTES {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                // Search only where the new bytes could complete the end of the head.
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&chunk[..n]);
                if head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                    return;
                }
            }
        }
    }
}

/// Logs a refusal on the Unix socket and answers it: after reading the head if fewer than
/// `REFUSING` refusals are waiting, else at once.
fn refuse_in_turn(stream: UnixStream, uid: Option<u32>, why: Refused, shared: &Shared) {
    if let Some((refused, distinct_uids)) = shared.refused_uids.count(uid) {
        let reason = reason(why);
        tracing::warn!(uid, refused, distinct_uids, "refused connections (counted since the last such line); the latest because {reason}");
    }
    match shared.turns.clone().try_acquire_owned() {
        Ok(turn) => {
            tokio::spawn(refuse(stream, why, shared.limits.clone(), turn));
        }
        Err(_) => refuse_now(stream, why, &shared.limits),
    }
}

/// Logs a refusal on a TCP listener and answers it inside TLS, as `refuse` does on the socket,
/// if fewer than `REFUSING` refusals are waiting; else the connection is closed at once (there
/// is no answer to write before a handshake).
fn refuse_tls_in_turn(stream: TcpStream, ip: IpAddr, tls: TlsAcceptor, why: Refused, shared: &Shared) {
    if let Some((refused, distinct_addresses)) = shared.refused_addresses.count(Network::of(ip)) {
        let reason = reason(why);
        tracing::warn!(peer = %ip, refused, distinct_addresses, "refused network connections (counted since the last such line); the latest because {reason}");
    }
    let Ok(turn) = shared.turns.clone().try_acquire_owned() else { return };
    let limits = shared.limits.clone();
    tokio::spawn(async move {
        let _turn = turn;
        let Ok(Ok(mut stream)) = tokio::time::timeout(2 * REFUSAL_WAIT, tls.accept(stream)).await else { return };
        let _ = tokio::time::timeout(REFUSAL_WAIT, read_head(&mut stream)).await;
        let _ = tokio::time::timeout(REFUSAL_WAIT, stream.write_all(&refusal_response(why, &limits))).await;
        let _ = tokio::time::timeout(REFUSAL_WAIT, stream.shutdown()).await;
    });
}

/// When a connection last moved a byte, how many of its answers are being made or sent, and
/// whether one is waiting on the client: for more of its body, or to read what was written.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
    awaiting_body: AtomicBool,
    write_blocked: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Resolves once the connection has been idle for `limit`: nothing read or written, and
    /// nothing being answered, or the answer waits on the client. (A run's output or an event
    /// stream may be quiet for long; that is the daemon's doing, not the client's.)
    async fn idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            // A request being answered is not idle, unless what it waits for is the client.
            let waits_on_client = self.awaiting_body.load(Ordering::Relaxed) || self.write_blocked.load(Ordering::Relaxed);
            let answering = self.busy.load(Ordering::Relaxed) > 0 && !waits_on_client;
            if idle >= limit && !answering {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(idle).max(Duration::from_millis(100))).await;
        }
    }
}

/// Counts a request as being answered until its response has been sent (or dropped).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Busy {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A request body that notes when the answer is waiting for the client to send more.
struct WatchedBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl http_body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        self.activity.awaiting_body.store(r.is_pending(), Ordering::Relaxed);
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as being answered until it is sent.
struct AnsweringBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for AnsweringBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.activity.awaiting_body.store(false, Ordering::Relaxed);
    }
}

/// The connection (a Unix socket, or a TLS stream's plain side), noting every byte that moves.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// A write that cannot proceed waits on the client, who is not reading.
    fn wrote(&self, r: &Poll<std::io::Result<usize>>) {
        self.activity.write_blocked.store(r.is_pending(), Ordering::Relaxed);
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where connections come in.
pub enum Door {
    /// The Unix socket: the kernel names each peer's account.
    Unix(UnixListener),
    /// A TCP port that speaks only TLS: a peer is its address, and known only by a token.
    Tls { listener: TcpListener, tls: TlsAcceptor },
}

/// What all doors share: the connection count, the refusal logs and turns, the account cache.
struct Shared {
    app: Router,
    limits: Limits,
    gate: Arc<Gate>,
    refused_uids: RefusalLog<Option<u32>>,
    refused_addresses: RefusalLog<Network>,
    turns: Arc<Semaphore>,
    accounts: Accounts,
}

/// A connection just accepted, before anything is read from it.
enum Arrival {
    Unix(UnixStream),
    Tcp(TcpStream, SocketAddr, TlsAcceptor),
}

impl Door {
    async fn accept(&self) -> std::io::Result<Arrival> {
        match self {
            Door::Unix(listener) => listener.accept().await.map(|(stream, _)| Arrival::Unix(stream)),
            Door::Tls { listener, tls } => listener.accept().await.map(|(stream, addr)| Arrival::Tcp(stream, addr, tls.clone())),
        }
    }
}

/// Accepts and serves connections on every door until `stop` turns true, then lets each
/// connection finish the request it is answering and returns once all are closed. The doors
/// share one count: the open-file limit is the process's.
pub fn serve(doors: Vec<Door>, app: Router, limits: Limits, stop: watch::Receiver<bool>) -> impl Future<Output = ()> + Send {
    let gate = Arc::new(Gate { limits: limits.clone(), counts: Mutex::default(), own_uid: nix::unistd::geteuid().as_raw() });
    tracing::debug!(?limits, "connection limits");
    let shared = Arc::new(Shared {
        app,
        limits,
        gate,
        refused_uids: RefusalLog::default(),
        refused_addresses: RefusalLog::default(),
        turns: Arc::new(Semaphore::new(REFUSING)),
        accounts: Accounts::default(),
    });
    let loops: Vec<_> = doors.into_iter().map(|door| accept_loop(door, shared.clone(), stop.clone())).collect();
    async move {
        futures_util::future::join_all(loops).await;
    }
}

/// One door's accept loop; returns once it stopped and all its connections are closed.
async fn accept_loop(door: Door, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Every connection task holds a clone; when all are gone, `recv` returns None.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = door.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok(Arrival::Unix(stream)) => admit_unix(stream, &shared, &stop, &open_tx),
            Ok(Arrival::Tcp(stream, addr, tls)) => admit_tcp(stream, addr, tls, &shared, &stop, &open_tx),
            Err(e) => {
                // Out of descriptors (or memory): back off instead of spinning; the caps
                // should make this rare.
                tracing::error!(error = %e, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// Counts a connection on the Unix socket against the shared cap at once, and against its
/// account once that is looked up, then serves it.
fn admit_unix(stream: UnixStream, shared: &Arc<Shared>, stop: &watch::Receiver<bool>, open: &mpsc::Sender<()>) {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let trusted = shared.gate.trusted(uid);
    let mut slot = match shared.gate.admit(trusted) {
        Ok(slot) => slot,
        Err(why) => return refuse_in_turn(stream, uid, why, shared),
    };
    let (shared, stop, open) = (shared.clone(), stop.clone(), open.clone());
    tokio::spawn(async move {
        // The account's name is looked up here, not in the accept loop, and not on the
        // shared blocking pool, which a flood of reads may fill.
        let peer = Peer::new(uid, uid.and_then(|u| shared.accounts.name_of(u)));
        if !trusted {
            let bucket = match uid {
                Some(u) if peer.has_account => Bucket::Account(u),
                _ => Bucket::NoAccount,
            };
            if let Err(why) = slot.charge(bucket) {
                drop(slot);
                return refuse_in_turn(stream, uid, why, &shared);
            }
        }
        connection(stream, peer, shared.app.clone(), &shared.limits, stop).await;
        drop(slot);
        drop(open);
    });
}

/// Counts a TCP connection against the shared cap and its address's at once, then makes the
/// TLS handshake (within the header or idle timeout, whichever is shorter) and serves it.
fn admit_tcp(
    stream: TcpStream,
    addr: SocketAddr,
    tls: TlsAcceptor,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    open: &mpsc::Sender<()>,
) {
    let slot = shared.gate.admit(false).and_then(|mut slot| slot.charge(Bucket::Network(Network::of(addr.ip()))).map(|()| slot));
    let slot = match slot {
        Ok(slot) => slot,
        Err(why) => return refuse_tls_in_turn(stream, addr.ip(), tls, why, shared),
    };
    // Answers are small and often streamed line by line (runs, events): send each at once.
    let _ = stream.set_nodelay(true);
    let (shared, stop, open) = (shared.clone(), stop.clone(), open.clone());
    tokio::spawn(async move {
        let within = shared.limits.header_timeout.min(shared.limits.idle_timeout);
        match tokio::time::timeout(within, tls.accept(stream)).await {
            Ok(Ok(stream)) => connection(stream, Peer::remote(addr.ip()), shared.app.clone(), &shared.limits, stop).await,
            // Plain HTTP, a port scanner, a client that does not trust the certificate.
            Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "a TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %addr, "a TLS handshake did not finish in time"),
        }
        drop(slot);
        drop(open);
    });
}

/// Serves one connection under the limits.
async fn connection<S>(stream: S, peer: Peer, app: Router, limits: &Limits, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let uid = peer.uid;
    let source = peer.source.clone();
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        busy: AtomicUsize::new(0),
        awaiting_body: AtomicBool::new(false),
        write_blocked: AtomicBool::new(false),
    });
    let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(|inner| axum::body::Body::new(WatchedBody { inner, activity: activity.clone() }));
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            let busy = Busy::new(&activity);
            let answer = app.clone().oneshot(req);
            async move {
                let response = answer.await?;
                Ok::<_, std::convert::Infallible>(response.map(|inner| axum::body::Body::new(AnsweringBody { inner, _busy: busy })))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        // The read buffer holds a head or a slice of a body; small, so a connection that sends a
        // head and stops costs little (hyper's default lets each grow to ~400 KiB).
        .max_buf_size((limits.max_header_bytes * 2).max(8192));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, uid, %source, "a connection ended with an error");
            }
        }
        _ = activity.idle(limits.idle_timeout) => {
            tracing::debug!(uid, %source, "closed an idle connection");
        }
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The most connections `--metrics-listen` holds at once (a scraper needs one), and how long
/// one may take: it serves a small page on loopback, to anyone there.
const METRICS_CONNECTIONS: usize = 8;
const METRICS_CONNECTION_TIME: Duration = Duration::from_secs(10);

/// Serves `app` (the metrics page) in plain HTTP on a loopback listener: a few connections at
/// once (more are closed at once), each given a short time, so a local user opening connections
/// cannot take the daemon's file descriptors from the socket, the store and runs.
pub async fn serve_loopback(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    // Its connections end with it: none keeps the engine (and its store) after the stop.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                connections.abort_all();
                return;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let app = app.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |req: hyper::Request<Incoming>| app.clone().oneshot(req.map(axum::body::Body::new)));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(5)).keep_alive(false);
            let _ = tokio::time::timeout(METRICS_CONNECTION_TIME, builder.serve_connection(TokioIo::new(stream), service)).await;
        });
    }
}
