//! The real `zsa` console in a pseudo-terminal against a real daemon, read through a terminal
//! emulator (vt100): what a person at the keyboard would see and do.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::console::Console;
use zsa::model::wire::NewRequest;
use zsa::model::{RequestId, RequestState};

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_sees_a_request_arrive_and_approves_it_with_a_key() {
    let mut d = Daemon::start();
    let alice = d.token("alice").await;
    let dave = d.user("dave").await;
    let mut console = Console::open(&d, &alice);
    console.wait_for("Waiting for approval (0)");

    let id = dave
        .request(&NewRequest { task: "journal".into(), reason: Some("mail flow stuck".into()), ..Default::default() })
        .await
        .unwrap()
        .request
        .id;
    let screen = console.wait_for("Waiting for approval (1)");
    assert!(screen.contains("R1") && screen.contains("dave") && screen.contains("mail flow stuck"), "{screen}");

    console.press("a");
    console.wait_for("Approve R1?");
    console.press("fine\r");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = d.admin().show_request(id).await.unwrap().request;
        if r.state == RequestState::Approved {
            assert_eq!(r.approvals[0].by, "alice");
            assert_eq!(r.approvals[0].comment.as_deref(), Some("fine"));
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never recorded the approval");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    console.wait_for("Waiting for approval (0)");

    // The daemon restarts: the console says so, reconnects by itself and keeps following.
    d.restart_after_kill();
    console.wait("the reconnection", |s| s.contains("reconnect"));
    console.wait_for("● live");
    dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap();
    let screen = console.wait_for("Waiting for approval (1)");
    assert!(screen.contains("R2"), "{screen}");

    let raw = console.quit();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("\u{1b}[?1049l"), "the terminal is given back (alternate screen left)");
    assert_eq!(d.admin().show_request(RequestId(2)).await.unwrap().request.state, RequestState::Pending);
}

/// Reads the first countdown on the screen (`4s`, `44m59s`: time left as durations are written),
/// in seconds.
fn countdown(screen: &str) -> Option<i64> {
    screen.split_whitespace().find_map(|w| zsa::model::duration::parse(w).ok()).map(|secs| secs as i64)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requesters_countdown_runs_down_and_the_grant_leaves_when_it_expires() {
    let mut d = Daemon::start();
    let token = d.token("dave").await;
    let dave = d.user("dave").await;
    let console = Console::open(&d, &token);
    console.wait_for("My active grants (0)");

    dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(4), ..Default::default() }).await.unwrap();
    let first = console.wait("a countdown", |s| s.contains("My active grants (1)") && countdown(s).is_some());
    let start = countdown(&first).unwrap();
    assert!((1..=4).contains(&start), "{first}");
    let later = console.wait("the countdown going down", |s| countdown(s).is_some_and(|n| n < start));
    assert!(countdown(&later).unwrap() < start);
    // Waits for the whole frame: a screen read between two writes of one redraw may show the
    // grants emptied before the history below has been drawn.
    console.wait("the grant gone from the active ones and in the history", |s| {
        s.contains("My active grants (0)") && s.contains("G1") && s.contains("expired")
    });
    console.quit();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_filters_the_live_log_exports_it_and_sigterm_gives_the_terminal_back() {
    let mut d = Daemon::start();
    let erin = d.token("erin").await;
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    dave.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    carol.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut console = Console::open_in(&d, &erin, out.path());
    console.wait("the log and its verified chain", |s| s.contains("Event log") && s.contains("chain: verified up to event"));

    console.press("/dave\r");
    console.wait_for("filter: dave");
    console.press("e");
    console.wait_for("export to:");
    console.press("\r");
    let screen = console.wait_for("exported");
    assert!(screen.contains("exported 3 events"), "{screen}");
    let file =
        std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|e| e.to_string().contains("dave")), "{lines:?}");

    // A change made elsewhere shows up live in the log.
    carol.request(&NewRequest { task: "restart".into(), reason: Some("again".into()), ..Default::default() }).await.ok();
    console.press("\u{1b}");
    console.wait_for("request_created");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(console.child.process_id().unwrap() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while console.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the console");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let raw = String::from_utf8_lossy(&console.raw.lock().unwrap()).into_owned();
    assert!(raw.ends_with("\u{1b}[?1049l") || raw.contains("\u{1b}[?1049l"), "the terminal is given back on SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hangup_quits_the_console_cleanly() {
    let mut d = Daemon::start();
    let token = d.token("dave").await;
    let mut console = Console::open(&d, &token);
    console.wait_for("My active grants");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(console.child.process_id().unwrap() as i32), nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = console.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not stop the console");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "it quit, it was not killed");
    std::thread::sleep(Duration::from_millis(100));
    assert!(String::from_utf8_lossy(&console.raw.lock().unwrap()).contains("\u{1b}[?1049l"), "the terminal is given back");
}
