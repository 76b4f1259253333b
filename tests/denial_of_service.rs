//! What a hostile local user cannot do to the daemon through its socket: hold all its
//! connections, hold connections by sending headers (or a body) forever, send huge headers,
//! open streams without end, make a catch-up read the whole log, or make approvals wait behind
//! a flood of reads. Every test talks to a real daemon over its real socket; accounts are real
//! kernel credentials (an unassigned uid taken by one test thread, so nothing is left behind).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, wait_for_event};
use zsa::client::Client;
use zsa::daemon::feed::{MAX_STREAMS_PER_ACCOUNT, MAX_STREAMS_PER_TOKEN};
use zsa::daemon::listen::Limits;
use zsa::model::Change;
use zsa::model::wire::NewRequest;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Uids no account has (as a user namespace's subordinate uids are), in a range of 1,000 per
/// test process.
fn spare_uid(n: u32) -> u32 {
    3_000_000 + (std::process::id() % 100_000) * 1000 + n
}

/// The uid of a throwaway account.
fn uid_of(account: &common::Account) -> u32 {
    nix::unistd::User::from_name(&account.name).unwrap().expect("the account exists").uid.as_raw()
}

/// Opens one connection to `socket` as each of `uids`, from one thread that takes each uid in
/// turn (see `connect_as`).
fn connect_each(uids: Vec<u32>, socket: &Path) -> Vec<UnixStream> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let keep = -1 as libc::c_long;
        uids.into_iter()
            .map(|uid| {
                // SAFETY: plain system calls on this thread's credentials, switched back below.
                assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) }, 0, "setresuid");
                let s = UnixStream::connect(&socket).expect("connect");
                assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, 0 as libc::c_long, keep) }, 0, "back to root");
                s
            })
            .collect()
    })
    .join()
    .expect("connecting thread")
}

/// Runs the real CLI's `zsa whoami` as `uid` against `socket`: (succeeded, what it printed).
fn cli_whoami_as(uid: u32, socket: &Path) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let out = Command::new(common::BIN)
        .arg("whoami")
        .env("ZSA_SOCKET", socket)
        .env_remove("ZSA_TOKEN")
        .uid(uid)
        .output()
        .expect("run zsa whoami");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Opens an event stream on an open connection: its status.
fn open_stream(s: &mut UnixStream) -> (u16, String) {
    if s.write_all(b"GET /v1/events HTTP/1.1\r\nhost: zsa\r\n\r\n").is_err() {
        return read_response(s);
    }
    read_response(s)
}

/// Opens `n` connections to `socket` as `uid`. Only one thread takes the other uid (the raw
/// system call changes the calling thread, unlike glibc's setresuid, which changes them all);
/// the kernel records it at connect, and SO_PEERCRED reports it to the daemon.
fn connect_as(uid: u32, socket: &Path, n: usize) -> Vec<UnixStream> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let keep = -1 as libc::c_long;
        // SAFETY: plain system calls on this thread's credentials, switched back before it ends.
        assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) }, 0, "setresuid");
        let conns: Vec<UnixStream> = (0..n).map(|_| UnixStream::connect(&socket).expect("connect")).collect();
        assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, 0 as libc::c_long, keep) }, 0, "back to root");
        conns
    })
    .join()
    .expect("connecting thread")
}

/// Reads one HTTP response: (status, body). Empty status 0 if the daemon closed first.
fn read_response(s: &mut UnixStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return (0, String::new()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))).unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    (status, String::from_utf8_lossy(&buf[head_end..]).into_owned())
}

/// Asks `whoami` on an open connection.
fn whoami(s: &mut UnixStream) -> (u16, String) {
    if s.write_all(b"GET /v1/whoami HTTP/1.1\r\nhost: zsa\r\n\r\n").is_err() {
        // Refused before we wrote: the answer is already waiting.
        return read_response(s);
    }
    read_response(s)
}

/// Waits until the daemon closes `s` (EOF or reset); Err if it is still open after `within`.
fn wait_closed(s: &mut UnixStream, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut chunk = [0u8; 4096];
    while start.elapsed() < within {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Ok(start.elapsed()),
        }
    }
    Err(format!("still open after {within:?}"))
}

/// A daemon started under a given open-file limit (soft, hard), as systemd would start it.
struct LimitedDaemon {
    child: Child,
    socket: PathBuf,
    /// What the daemon logged (its stderr).
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LimitedDaemon {
    fn start(soft: u64, hard: u64) -> LimitedDaemon {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        // Other accounts must reach the socket inside it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &common::current_user())).unwrap();
        let socket = dir.path().join("zsa.sock");
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(common::BIN);
        cmd.args(["daemon", "--state"])
            .arg(dir.path().join("state"))
            .arg("--policy")
            .arg(&policy)
            .arg("--socket")
            .arg(&socket)
            .env("ZSA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().unwrap();
        common::wait_for_socket(&socket);
        LimitedDaemon { child, socket, log, _dir: dir }
    }
}

impl Drop for LimitedDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
}

#[test]
fn the_daemon_raises_its_open_file_limit_to_the_hard_limit() {
    let d = LimitedDaemon::start(256, 2048);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], &["2048", "2048"], "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_per_account_and_in_all_leave_root_a_way_in() {
    if !is_root() {
        println!("SKIPPED connection_caps_per_account_and_in_all_leave_root_a_way_in: needs root to connect as other accounts");
        return;
    }
    raise_own_fd_limit();
    // systemd's default is 1024; a lower limit keeps the test small and the caps must hold at any.
    let nofile = 256;
    let limits = Limits::for_fd_limit(nofile);
    let d = LimitedDaemon::start(nofile, nofile);
    let socket = d.socket.clone();
    // Real accounts: uids with no account would all share one cap.
    let accounts = [common::Account::create("zdos"), common::Account::create("zdos"), common::Account::create("zdos")];
    let (a, b, c) = (uid_of(&accounts[0]), uid_of(&accounts[1]), uid_of(&accounts[2]));
    let third = limits.shared - 2 * limits.per_uid;
    assert!(third > 0 && third < limits.per_uid, "the test's arithmetic assumes this: {limits:?}");

    let result = tokio::task::spawn_blocking(move || {
        let count = |conns: &mut Vec<UnixStream>| {
            let answers: Vec<(u16, String)> = conns.iter_mut().map(whoami).collect();
            let admitted = answers.iter().filter(|(s, _)| *s == 200).count();
            (admitted, answers)
        };
        // One account takes its share; the rest of its connections are told why they are refused.
        let mut from_a = connect_as(a, &socket, limits.per_uid + 6);
        let (admitted, answers) = count(&mut from_a);
        assert_eq!(admitted, limits.per_uid, "one account holds at most per_uid connections");
        let refused: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200).collect();
        assert_eq!(refused.len(), 6);
        for (status, body) in refused {
            assert_eq!(*status, 429, "{body}");
            assert!(body.contains("too_many_connections") && body.contains("close some"), "{body}");
        }
        // The real client is told so too (it writes its request before it reads the answer).
        for _ in 0..3 {
            let (ok, said) = cli_whoami_as(a, &socket);
            assert!(!ok && said.contains("your account already holds") && said.contains("close some"), "{said}");
        }
        // A second account is not affected by the first one's cap.
        let mut from_b = connect_as(b, &socket, limits.per_uid);
        assert_eq!(count(&mut from_b).0, limits.per_uid, "another account still gets in");
        // A third fills what is left of the shared connections; beyond that, the daemon is full.
        let mut from_c = connect_as(c, &socket, third + 5);
        let (admitted, answers) = count(&mut from_c);
        assert_eq!(admitted, third, "the shared cap holds");
        for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
            assert_eq!(*status, 503, "{body}");
            assert!(body.contains("daemon_busy") && body.contains("root can still connect"), "{body}");
        }
        for _ in 0..3 {
            let (ok, said) = cli_whoami_as(c, &socket);
            assert!(!ok && said.contains("root can still connect"), "{said}");
        }
        (from_a, from_b, from_c)
    })
    .await
    .unwrap();

    // Root (who can stop the attacker) still gets answers, from the reserved slots.
    let admin = Client::new(&d.socket, None).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), admin.check("restart", Some("dave"))).await.expect("check answered");
    assert!(!answer.unwrap().allowed);

    // Slots come back when connections close: the third account gets in once the first leaves.
    let (from_a, _from_b, _from_c) = result;
    drop(from_a);
    let socket = d.socket.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = connect_as(c, &socket, 1).pop().unwrap();
            if whoami(&mut s).0 == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "closed connections did not give their slots back");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    drop(accounts);
}

/// One user with a user namespace's subordinate uids connects from thousands of uids that have
/// no account here. Counted each on its own they would fill the shared connections (and event
/// streams, which are never idle) and lock out every admin but root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uids_without_an_account_share_one_cap_and_cannot_lock_accounts_out() {
    if !is_root() {
        println!("SKIPPED uids_without_an_account_share_one_cap_and_cannot_lock_accounts_out: needs root to connect as other uids");
        return;
    }
    raise_own_fd_limit();
    let nofile = 256;
    let limits = Limits::for_fd_limit(nofile);
    let d = LimitedDaemon::start(nofile, nofile);
    let admin = common::Account::create("zdos");
    let admin_uid = uid_of(&admin);
    let flood = limits.shared + 6;
    assert!(flood < 1000 - 100, "spare uids are 1,000 per process: {limits:?}");
    let (socket, log) = (d.socket.clone(), d.log.clone());
    tokio::task::spawn_blocking(move || {
        // One connection from each of more uids than the shared cap holds.
        let mut conns = connect_each((0..flood as u32).map(spare_uid).collect(), &socket);
        let answers: Vec<(u16, String)> = conns.iter_mut().map(whoami).collect();
        let admitted = answers.iter().filter(|(s, _)| *s == 200).count();
        assert_eq!(admitted, limits.per_uid, "uids with no account together hold one account's share");
        for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
            // 503 only while the accept loop ran ahead of the account lookups.
            assert!(*status == 429 || *status == 503, "{status} {body}");
            if *status == 429 {
                assert!(body.contains("too_many_connections") && body.contains("no account on this machine"), "{body}");
            }
        }
        // An account (an admin who is not root) still gets in and gets a stream.
        let mut mine = connect_as(admin_uid, &socket, 2);
        assert_eq!(whoami(&mut mine[0]).0, 200, "an account gets in beside the flood");
        let (ok, said) = cli_whoami_as(admin_uid, &socket);
        assert!(ok, "{said}");
        // Another uid with no account is turned away, and the real client says why.
        let (ok, said) = cli_whoami_as(spare_uid(flood as u32 + 1), &socket);
        assert!(!ok && said.contains("no account on this machine"), "{said}");

        // Each admitted connection asks for an event stream: they share one user's streams.
        let mut admitted: Vec<UnixStream> = conns.into_iter().zip(&answers).filter(|(_, (s, _))| *s == 200).map(|(c, _)| c).collect();
        let streams: Vec<(u16, String)> = admitted.iter_mut().map(open_stream).collect();
        assert_eq!(streams.iter().filter(|(s, _)| *s == 200).count(), MAX_STREAMS_PER_ACCOUNT, "{:?}", &streams[..3]);
        for (status, body) in streams.iter().filter(|(s, _)| *s != 200) {
            assert_eq!(*status, 429, "{body}");
            assert!(body.contains("too_many_streams") && body.contains("no account on this machine"), "{body}");
        }
        let (status, body) = open_stream(&mut mine[1]);
        assert_eq!(status, 200, "an account still gets a stream: {body}");

        // The log shows the flood came from many uids: each line counts the distinct uids it
        // covers. Refusals (a few a second) go on until a line covering much of the flood is
        // written; the flood's may be split over two lines if it took longer than a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut next = flood as u32 + 2;
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            let most = text
                .lines()
                .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("distinct_uids=")))
                .filter_map(|n| n.parse::<usize>().ok())
                .max()
                .unwrap_or(0);
            if most >= (flood - limits.per_uid) / 2 {
                break;
            }
            assert!(Instant::now() < deadline, "no log line counted the uids refused; the log:\n{text}");
            let mut s = connect_each(vec![spare_uid(next)], &socket).pop().unwrap();
            next += 1;
            assert_ne!(whoami(&mut s).0, 200);
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(admitted);
    })
    .await
    .unwrap();
    drop(d);
    drop(admin);
}

/// A refused connection is answered once its request head is in (so the client reads the answer
/// rather than failing to send), but one that sends nothing costs the daemon its descriptor for
/// at most a second, and only a few such wait at once: the rest are answered and closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_that_say_nothing_do_not_pile_up() {
    if !is_root() {
        println!("SKIPPED refused_connections_that_say_nothing_do_not_pile_up: needs root to connect as another account");
        return;
    }
    raise_own_fd_limit();
    let nofile = 256;
    let limits = Limits::for_fd_limit(nofile);
    let d = LimitedDaemon::start(nofile, nofile);
    let account = common::Account::create("zdos");
    let uid = uid_of(&account);
    let (socket, pid) = (d.socket.clone(), d.child.id());
    tokio::task::spawn_blocking(move || {
        let open_fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
        let mut held = connect_as(uid, &socket, limits.per_uid);
        assert!(held.iter_mut().all(|s| whoami(s).0 == 200));
        let before = open_fds();
        // Many more, silent: each is refused, and none ever sends its request.
        let mut silent = connect_as(uid, &socket, 200);
        // A refusal waiting for its request holds its descriptor for up to a second; one in
        // passing (accepted, not yet refused) for as long as a loaded machine takes to schedule
        // it. So what counts is the fewest held over any quarter second: the waits show in it,
        // the passing do not.
        let mut recent: std::collections::VecDeque<(Instant, usize)> = Default::default();
        let mut most = 0;
        let mut sample = || {
            let now = Instant::now();
            recent.push_back((now, open_fds()));
            while recent.front().is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_millis(250)) {
                recent.pop_front();
            }
            if now.duration_since(recent.front().unwrap().0) >= Duration::from_millis(200) {
                most = most.max(recent.iter().map(|(_, n)| *n).min().unwrap());
            }
        };
        for s in &mut silent {
            // Each is answered though it never sends a thing (after at most a second), and
            // meanwhile the daemon holds few of them.
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut answer = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                sample();
                match s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(e) => panic!("the refusal was not readable: {e}"),
                }
                assert!(Instant::now() < deadline, "a silent refused connection was not answered and closed");
            }
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 429") || answer.starts_with("HTTP/1.1 503"), "{answer}");
        }
        // 16 refusals wait for their request at most, and a few more may be in passing on a
        // loaded machine. Without the limit it held 175 of the 200 for a second.
        assert!(most <= before + 16 + 32, "the daemon held {} descriptors beyond its {before} for refused connections", most - before);
        drop(held);
    })
    .await
    .unwrap();
    drop(d);
    drop(account);
}

#[test]
fn silent_slow_and_oversized_request_heads_are_cut_off() {
    let d = Daemon::start();
    let limits = Limits::for_fd_limit(1024);
    let margin = Duration::from_secs(5);
    let socket = d.socket.clone();

    // A connection that says nothing.
    let silent = std::thread::spawn({
        let socket = socket.clone();
        move || {
            let mut s = UnixStream::connect(&socket).unwrap();
            wait_closed(&mut s, limits.header_timeout + margin)
        }
    });
    // A connection that sends its headers a byte at a time, for ever.
    let dripping = std::thread::spawn({
        let socket = socket.clone();
        move || {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(b"GET /v1/whoami HTTP/1.1\r\nhost: zsa\r\nx-slow: ").unwrap();
            let start = Instant::now();
            while start.elapsed() < limits.header_timeout + margin {
                if s.write_all(b"a").is_err() {
                    return Ok(start.elapsed());
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            Err("the daemon still read a header sent a byte at a time".to_string())
        }
    });
    // A connection that goes quiet after one answer (kept alive, then idle).
    let kept = std::thread::spawn({
        let socket = socket.clone();
        move || {
            let mut s = UnixStream::connect(&socket).unwrap();
            assert_eq!(whoami(&mut s).0, 200);
            wait_closed(&mut s, limits.header_timeout + margin)
        }
    });

    // A head far larger than the limit is refused at once, with 431.
    let mut s = UnixStream::connect(&socket).unwrap();
    let mut big = b"GET /v1/whoami HTTP/1.1\r\nhost: zsa\r\nx-big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 380 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&big); // the daemon stops reading once it has seen too much
        })
    };
    let (status, _) = read_response(&mut s);
    assert_eq!(status, 431, "an oversized head is refused");
    assert!(wait_closed(&mut s, margin).is_ok());
    writer.join().unwrap();

    // A body declared far larger than the API takes is refused at once, not waited for.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(b"POST /v1/requests HTTP/1.1\r\nhost: zsa\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n{")
        .unwrap();
    let asked = Instant::now();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than") && asked.elapsed() < Duration::from_secs(5), "{body}");

    silent.join().unwrap().expect("a silent connection is closed");
    dripping.join().unwrap().expect("a dripping header is cut off");
    kept.join().unwrap().expect("an idle kept-alive connection is closed");
    // Meanwhile the daemon answered everyone else.
    let mut s = UnixStream::connect(&socket).unwrap();
    assert_eq!(whoami(&mut s).0, 200);
}

/// A task that prints nothing for a while, to show a quiet answer is not an idle connection.
const QUIET_TASK: &str = r#"
[[tasks]]
name = "quiet"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/bin/sleep", "{secs}"]
timeout = "2m"
[tasks.params.secs]
range = [1, 60]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_is_cut_off_but_quiet_answers_stay() {
    use zsa::model::wire::{RunOutput, RunRequest};
    let mut d = Daemon::start_with(&format!("{}{QUIET_TASK}", common::POLICY));
    let limits = Limits::for_fd_limit(1024);
    let dave = d.user("dave").await;
    let mut stream = d.admin().events(None).await.unwrap();
    // A run whose command says nothing for longer than the idle timeout.
    dave.request(&NewRequest { task: "quiet".into(), ..Default::default() }).await.unwrap();
    let secs = (limits.idle_timeout + Duration::from_secs(5)).as_secs().to_string();
    let params = [("secs".to_string(), secs)].into_iter().collect();
    let mut run = dave.run(&RunRequest { task: "quiet".into(), params }).await.unwrap();
    let quiet_run = tokio::spawn(async move {
        while let Some(line) = run.next().await {
            if let RunOutput::Ended { exit_code, .. } = line.expect("the run's answer is not cut") {
                return exit_code;
            }
        }
        panic!("the run's answer ended without its end");
    });
    let socket = d.socket.clone();
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(b"POST /v1/requests HTTP/1.1\r\nhost: zsa\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"ta")
            .unwrap();
        wait_closed(&mut s, limits.idle_timeout + Duration::from_secs(10))
    });
    let cut_after = slow.await.unwrap().expect("a body that stopped coming is cut off");
    assert!(cut_after >= limits.idle_timeout - Duration::from_secs(1), "cut by the idle timeout, after {cut_after:?}");
    // The stream, quiet all that time but for its keep-alives, still delivers.
    let made = dave.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    let id = made.request.id;
    wait_for_event(&mut stream, Duration::from_secs(10), |e| matches!(&e.change, Change::RequestCreated { request, .. } if *request == id))
        .await;
    let exit = tokio::time::timeout(Duration::from_secs(30), quiet_run).await.expect("the quiet run ended").unwrap();
    assert_eq!(exit, Some(0));
}

#[tokio::test]
async fn event_streams_are_capped_per_token_and_per_account() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let mut open = Vec::new();
    for _ in 0..MAX_STREAMS_PER_TOKEN {
        open.push(dave.events(None).await.expect("within the cap"));
    }
    let err = dave.events(None).await.err().expect("one stream too many is refused");
    assert_eq!(err.code(), "too_many_streams", "{err}");
    assert!(err.to_string().contains("already has 8 event streams open, the most one token may"), "{err}");
    assert!(err.to_string().contains("close a console"), "{err}");
    // Another client of the same user, with a token of its own, is not starved by the first.
    let second = d.admin().issue_token("dave").await.unwrap();
    let dave_again = Client::new(&d.socket, Some(second.token)).unwrap();
    let _second_stream = dave_again.events(None).await.expect("dave's other token still gets a stream");
    // Nor is another user.
    let erin = d.user("erin").await;
    let _erin_stream = erin.events(None).await.expect("another user still gets a stream");
    // A Unix account at its own login has its own cap.
    let admin = d.admin();
    let mut mine = Vec::new();
    for _ in 0..MAX_STREAMS_PER_ACCOUNT {
        mine.push(admin.events(None).await.expect("an account's streams within its cap"));
    }
    let err = admin.events(None).await.err().expect("one stream too many for the account");
    assert!(err.to_string().contains("your account") && err.to_string().contains("the most one account may"), "{err}");
    // A closed stream gives its slot back.
    open.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match dave.events(None).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), "too_many_streams");
                assert!(Instant::now() < deadline, "a closed stream did not give its slot back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_catch_up_reads_only_what_may_concern_the_caller() {
    // zed is in a group that no role or task names: he may see almost nothing.
    let mut d = Daemon::start_with(&common::POLICY.replace("auditors = [\"erin\"]\n", "auditors = [\"erin\"]\nvisitors = [\"zed\"]\n"));
    let dave = d.user("dave").await;
    let zed = d.user("zed").await;
    for _ in 0..20 {
        dave.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    }
    // Make every event that does not concern zed unreadable, behind the daemon's back: a
    // catch-up that so much as reads one of them fails. (Proves what is read, not how fast.)
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let spoiled = conn
        .execute(
            "UPDATE events SET body = '{\"unreadable\":true}' WHERE NOT (actor = 'zed' OR subject = 'zed' OR kind = 'policy_loaded')",
            [],
        )
        .unwrap();
    assert!(spoiled > 40, "{spoiled}");
    drop(conn);

    // zed catches up from the start of the log and then follows live.
    let mut zeds = zed.events(Some(0)).await.unwrap();
    let first = wait_for_event(&mut zeds, Duration::from_secs(10), |_| true).await;
    assert!(matches!(first.change, Change::PolicyLoaded { .. }), "{first:?}");
    d.admin().reload().await.unwrap();
    wait_for_event(&mut zeds, Duration::from_secs(10), |e| matches!(e.change, Change::PolicyLoaded { .. }) && e.seq > first.seq).await;
    // Paging the audit log reads no more than that either.
    let page = zed.audit(&Default::default()).await.expect("zed's audit page reads only what concerns zed");
    assert!(page.iter().all(|e| !matches!(e.change, Change::RequestCreated { .. })), "{page:?}");

    // The spoiling is real: someone who sees everything does read those events, and fails.
    let mut admins = d.admin().events(Some(0)).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match admins.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(e)) if matches!(e.change, Change::RequestCreated { .. }) => return false,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the admin's stream ended");
    assert!(ended, "the admin's catch-up read the spoiled events and stopped");
}

#[test]
fn approvals_do_not_wait_for_the_shared_blocking_pool() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const POOL: usize = 4;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(POOL).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &common::current_user())).unwrap();
        let config = zsa::daemon::DaemonConfig {
            state_dir: dir.path().join("state"),
            policy,
            socket: dir.path().join("zsa.sock"),
            rebuild_from_log: false,
            ..Default::default()
        };
        let h = zsa::daemon::start(config, Arc::new(zsa::clock::SystemClock)).await.unwrap();
        let admin = Client::new(&h.socket, None).unwrap();
        let dave = Client::new(&h.socket, Some(admin.issue_token("dave").await.unwrap().token)).unwrap();
        let alice = Client::new(&h.socket, Some(admin.issue_token("alice").await.unwrap().token)).unwrap();
        let new =
            NewRequest { task: "journal".into(), reason: Some("mail loop".into()), ticket: Some("INC-7".into()), ..Default::default() };
        let id = dave.request(&new).await.unwrap().request.id;

        // Every thread of the shared blocking pool is taken (as a flood of reads would take it).
        // Each waits until its sender is dropped.
        let mut held = Vec::new();
        let busy = Arc::new(AtomicUsize::new(0));
        for _ in 0..POOL + 8 {
            let (release, wait) = std::sync::mpsc::channel::<()>();
            held.push(release);
            let busy = busy.clone();
            tokio::task::spawn_blocking(move || {
                busy.fetch_add(1, Ordering::SeqCst);
                let _ = wait.recv();
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while busy.load(Ordering::SeqCst) < POOL {
            assert!(Instant::now() < deadline, "the pool did not fill");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let approved = tokio::time::timeout(Duration::from_secs(10), alice.approve(id, None)).await;
        drop(held);
        let outcome = approved.expect("the approval did not wait for the blocking pool").unwrap();
        assert!(outcome.grant.is_some_and(|g| g.holder == "dave"));
        h.shutdown().await;
    });
}

/// The store's narrowing (indexed SQL by actor, subject and task) must never hide an event the
/// rule would show, nor change paging, filters or tails: every caller's pages are exactly the
/// whole log as an admin reads it, filtered by `rules::event_visible`.
#[tokio::test]
async fn narrowed_reads_return_exactly_what_the_rule_shows() {
    use zsa::client::AuditParams;
    let mut d = Daemon::start_with(&common::POLICY.replace("auditors = [\"erin\"]\n", "auditors = [\"erin\"]\nvisitors = [\"zed\"]\n"));
    let users = ["dave", "carol", "alice", "bob", "erin", "zed"];
    let mut clients = Vec::new();
    for u in users {
        clients.push(d.user(u).await);
    }
    let (dave, carol, alice, bob) = (&clients[0], &clients[1], &clients[2], &clients[3]);
    let journal = |ticket: &str| NewRequest {
        task: "journal".into(),
        reason: Some("mail loop".into()),
        ticket: Some(ticket.into()),
        ..Default::default()
    };
    let r1 = dave.request(&journal("INC-1")).await.unwrap().request.id;
    alice.approve(r1, None).await.unwrap();
    let r2 = carol.request(&journal("INC-2")).await.unwrap().request.id;
    bob.deny(r2, Some("not now".into())).await.unwrap();
    carol.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap();
    assert_eq!(zsa_code(d.cli(None, &["admin", "disable", "carol", "--reason", "leaving"]).await), 0);
    assert_eq!(zsa_code(d.cli(None, &["admin", "enable", "carol"]).await), 0);
    d.admin().reload().await.unwrap();

    let policy = zsa::policy::Policy::load(&d.policy).unwrap();
    let everything = d.admin().audit(&AuditParams { limit: Some(10_000), ..Default::default() }).await.unwrap();
    let seqs = |events: &[zsa::model::Event]| events.iter().map(|e| e.seq).collect::<Vec<u64>>();
    let sees = |user: &str| everything.iter().filter(|e| zsa::rules::event_visible(&policy, user, e)).count();
    // The callers see different slices, through every branch of the rule: their own, their
    // tasks' (alice approves journal and export), everything (erin audits), nearly nothing (zed).
    assert!(sees("zed") < sees("dave") && sees("dave") < sees("alice") && sees("alice") < sees("erin"));
    assert_eq!(sees("erin"), everything.len());
    for (user, client) in users.iter().zip(&clients) {
        type Keep = fn(&zsa::model::Event) -> bool;
        let filters: Vec<(AuditParams, Keep)> = vec![
            (AuditParams::default(), |_| true),
            (AuditParams { task: Some("journal".into()), ..Default::default() }, |e| e.change.task() == Some("journal")),
            (AuditParams { user: Some("dave".into()), ..Default::default() }, |e| e.actor == "dave" || e.change.subject() == Some("dave")),
        ];
        for (params, keep) in filters {
            let expected: Vec<u64> = seqs(&everything)
                .into_iter()
                .zip(&everything)
                .filter(|(_, e)| keep(e) && zsa::rules::event_visible(&policy, user, e))
                .map(|(s, _)| s)
                .collect();
            // Paged two at a time, as a client pages with `after`.
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let page = client.audit(&AuditParams { after, limit: Some(2), ..params.clone() }).await.unwrap();
                if page.is_empty() {
                    break;
                }
                after = page.last().map(|e| e.seq);
                got.extend(seqs(&page));
            }
            assert_eq!(got, expected, "{user}, {params:?}");
            let tail = client.audit(&AuditParams { tail: Some(3), ..params.clone() }).await.unwrap();
            assert_eq!(seqs(&tail), expected[expected.len().saturating_sub(3)..].to_vec(), "{user}, tail 3, {params:?}");
        }
        // A catch-up stream from the start gives the same events as the unfiltered pages.
        let expected: Vec<u64> = everything.iter().filter(|e| zsa::rules::event_visible(&policy, user, e)).map(|e| e.seq).collect();
        let mut stream = client.events(Some(0)).await.unwrap();
        let mut streamed = Vec::new();
        while streamed.last() != expected.last() {
            streamed.push(wait_for_event(&mut stream, Duration::from_secs(10), |_| true).await.seq);
        }
        assert_eq!(streamed, expected, "{user}'s catch-up");
    }
}

fn zsa_code(o: std::process::Output) -> i32 {
    common::code(&o)
}
