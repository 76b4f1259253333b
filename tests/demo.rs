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
    let mut tokens = std::collections::HashMap::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if let Some(s) = line.trim().strip_prefix("export ZSA_SOCKET=") {
            socket = Some(std::path::PathBuf::from(s));
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

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!socket.parent().unwrap().exists(), "the demo's state is removed");
}
