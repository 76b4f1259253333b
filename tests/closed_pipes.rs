//! `zsa audit | head -1` and friends: when whoever reads a listing stops, the command ends quietly
//! (exit 0, nothing on stderr), as gh and kubectl do, instead of panicking with a backtrace.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::{BIN, Daemon};
use zsa::model::wire::NewRequest;

#[tokio::test]
async fn every_listing_ends_quietly_when_its_reader_goes() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    for _ in 0..40 {
        let r = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() }).await.unwrap();
        dave.relinquish(r.grant.unwrap().id).await.unwrap();
    }
    // Something in every list: a pending request and an active grant.
    dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap();
    dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    d.token("alice").await;
    let listings: [&[&str]; 20] = [
        &["audit"],
        &["audit", "--json"],
        &["audit", "--csv"],
        &["audit", "--follow", "--after", "0"],
        &["audit", "--follow", "--after", "0", "--json"],
        &["audit", "--follow", "--after", "0", "--csv"],
        &["admin", "token", "list", "--json"],
        &["admin", "token", "list"],
        &["grants"],
        &["grants", "--all"],
        &["grants", "--all", "--json"],
        &["grants", "--watch"],
        &["requests"],
        &["requests", "--all"],
        &["requests", "--all", "--json"],
        &["tasks"],
        &["tasks", "--json"],
        &["whoami"],
        &["whoami", "--json"],
        &["man"],
    ];
    for args in listings {
        let mut child = Command::new(BIN)
            .args(args)
            .env("ZSA_SOCKET", &d.socket)
            .env_remove("ZSA_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes before the first line is written: every write meets a closed pipe.
        drop(child.stdout.take());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "zsa {}: {status:?}: {err}", args.join(" "));
        assert!(err.is_empty(), "zsa {} said something on a closed pipe: {err}", args.join(" "));
    }
}

/// `zsa` or `zsa tui` from cron, CI or `</dev/null`: a clear word and exit 2, no panic, and no
/// escape sequence left on the output.
#[test]
fn the_console_without_a_terminal_says_so_and_points_at_the_commands() {
    let d = Daemon::start();
    for args in [&[][..], &["tui"][..]] {
        let out = Command::new(BIN).args(args).env("ZSA_SOCKET", &d.socket).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "zsa {args:?}: {err}");
        assert!(err.contains("the console needs a terminal") && err.contains("zsa audit --json"), "{err}");
        assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b), "an escape sequence was left behind");
    }
}
