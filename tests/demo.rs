//! `zsa demo`, as a visitor runs it: it starts, seeds its story, prints how to use it, and
//! removes everything when stopped.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use zsa::client::Client;
use zsa::model::{GrantState, RequestState};

#[tokio::test]
async fn the_demo_seeds_a_story_and_cleans_up() {
    let mut child = Command::new(common::BIN).arg("demo").env("ZSA_LOG", "warn").stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut socket = None;
    let mut notices = None;
    let mut tokens = std::collections::HashMap::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if let Some(s) = line.trim().strip_prefix("export ZSA_SOCKET=") {
            socket = Some(std::path::PathBuf::from(s));
        }
        if let Some(path) = line.trim().strip_prefix("tail -f ") {
            notices = Some(std::path::PathBuf::from(path));
        }
        if let Some((who, token)) = line.split_once("export ZSA_TOKEN=") {
            tokens.insert(who.split_whitespace().next().unwrap().to_string(), token.to_string());
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let socket = socket.expect("the demo prints its socket");
    assert_eq!(tokens.len(), 5, "{tokens:?}");

    let alice = Client::new(&socket, Some(tokens["alice"].clone())).unwrap();
    assert_eq!(alice.whoami().await.unwrap().user, "alice");
    let pending = alice.requests(false).await.unwrap();
    assert!(pending.iter().any(|r| r.task == "exchange.journal-rule" && r.requester == "carol"));
    assert!(pending.iter().any(|r| r.task == "mailbox.export" && r.approvals.len() == 1), "one of two approvals");
    let all = alice.requests(true).await.unwrap();
    assert!(all.iter().any(|r| r.state == RequestState::Denied));
    let grants = alice.grants(false).await.unwrap();
    assert!(grants.iter().any(|g| g.break_glass && g.needs_review() && g.state == GrantState::Active));
    let erin = Client::new(&socket, Some(tokens["erin"].clone())).unwrap();
    assert!(erin.verify().await.unwrap().ok);

    // The printed suggestion works: alice approves R1.
    let o = alice.approve("R1".parse().unwrap(), Some("ok".into())).await.unwrap();
    assert_eq!(o.request.state, RequestState::Approved);

    // Notices, with no outside service: the approvers heard of R1, and carol hears it was approved.
    let notices = notices.expect("the demo names its notices file");
    let lines = |trigger: &str, to: &str| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&notices).unwrap_or_default();
        let all = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("one JSON notice a line"));
        all.filter(|n| n["trigger"] == trigger && n["to"]["name"] == to && n["facts"]["request"] == "R1").collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines("request_approved", "carol").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no request_approved notice for carol in {}", notices.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = lines("request_created", "alice");
    assert_eq!(asked.len(), 1, "alice heard of R1 once");
    assert!(asked[0]["text"].as_str().unwrap().contains("zsa approve R1"), "{}", asked[0]);
    assert_eq!(lines("request_created", "bob").len(), 1, "bob too");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!socket.parent().unwrap().exists(), "the demo's state is removed");
}

/// A newcomer at a terminal: the demo opens the console, and the notices meant for the person
/// being played show up in it as they are written.
#[test]
fn the_demo_console_shows_the_notices_meant_for_its_person() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let console = common::console::Console::spawn(home.path(), 30, 120, &["demo"], &[("XDG_CONFIG_HOME", config.to_str().unwrap())]);
    // alice approves: the seeded requests were announced to her.
    console.wait("a notice for alice", |s| s.lines().any(|l| l.contains(" for you") && (l.contains(" asks for ") || l.contains(" took "))));
    let raw = console.quit();
    assert!(String::from_utf8_lossy(&raw).contains(" for you"));
}

/// The SSH session or terminal closes under the demo: the console quits, the demo removes its
/// state and exits 0, though saying goodbye to a terminal that is gone fails.
#[test]
fn the_demo_cleans_up_when_its_terminal_goes_away() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize { ws_row: 30, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two new descriptors, which are owned right away.
    assert_eq!(unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) }, 0);
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // The child must not inherit the master, or the terminal never goes away.
    for fd in [&master, &slave] {
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }, 0);
    }
    let tty = slave.as_raw_fd();
    let mut cmd = Command::new(common::BIN);
    cmd.arg("demo").env("TMPDIR", tmp.path()).env("ZSA_LOG", "off").env("TERM", "xterm-256color");
    cmd.stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave.try_clone().unwrap());
    // SAFETY: between fork and exec only async-signal-safe calls: a new session whose
    // controlling terminal is the pty, as a terminal or sshd gives a login shell.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(tty, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    // Read until the console has drawn its panes.
    let mut file = std::fs::File::from(master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains("Requester") {
        assert!(std::time::Instant::now() < deadline, "the console never drew");
        let n = std::io::Read::read(&mut file, &mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    let state = tmp.path().join(format!("zsa-demo-{}", child.id()));
    assert!(state.exists(), "the demo keeps its state in {}", state.display());
    drop(file); // the terminal goes away: SIGHUP, and writes to it fail
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the demo ends cleanly: {status:?}");
    assert!(!state.exists(), "the demo's state is removed");
}
