//! Tokens fit for remote use: they expire by the daemon's clock, may be narrowed to `check`,
//! show when they were last used, and a source that keeps presenting tokens that are not valid
//! is throttled. The daemon is real (in this process where the test must move its clock by
//! hand, else the `zsa` binary), on a real socket and SQLite file; the real `zsa` CLI and client
//! talk to it over HTTP.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use common::{BIN, Daemon, code, current_user, stderr, stdout};
use zsa::client::{AuditParams, Client, ClientError};
use zsa::model::wire::{IssueToken, NewRequest, TokenView};
use zsa::model::{Change, TokenScope};

use common::manual::ManualDaemon as Manual;

impl Manual {
    /// `last_used` of token `id` as the database holds it.
    fn saved_use(&self, id: u64) -> Option<String> {
        let conn = rusqlite::Connection::open(self.config.state_dir.join("zsa.db")).unwrap();
        conn.busy_timeout(StdDuration::from_secs(10)).unwrap();
        conn.query_row("SELECT last_used FROM tokens WHERE id = ?1", [id as i64], |r| r.get(0)).unwrap()
    }
}

fn listed(out: &Output) -> Vec<TokenView> {
    assert_eq!(code(out), 0, "{}", stderr(out));
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The time as the database column keeps it.
fn column(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_expires_by_the_daemons_clock_and_the_refusal_says_when_and_what_to_do() {
    let mut d = Manual::start().await;
    let t0 = d.now();
    let token = d.issue(&["alice", "--ttl", "30d"]);
    let out = d.cli(Some(&token), &["whoami"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("alice (via token)"), "{}", stdout(&out));
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert_eq!(tokens[0].expires_at, Some(t0 + Duration::days(30)), "{tokens:?}");
    assert_eq!(tokens[0].state(), "active");
    // A token issued without --ttl lives the policy's token_ttl: 90 days unless set.
    let default = d.issue(&["bob"]);
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert_eq!(tokens[1].expires_at, Some(t0 + Duration::days(90)), "{tokens:?}");
    // Longer than the policy's maximum, or never, is refused with what to do.
    let out = d.cli(None, &["admin", "token", "issue", "alice", "--ttl", "400d"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("at most 365d under this policy"), "{}", stderr(&out));
    let out = d.cli(None, &["admin", "token", "issue", "alice", "--ttl", "never"]);
    assert!(code(&out) == 1 && stderr(&out).contains("does not allow tokens that never expire"), "{}", stderr(&out));
    let out = d.cli(None, &["admin", "token", "issue", "alice", "--ttl", "soon"]);
    assert!(code(&out) == 2 && stderr(&out).contains("--ttl"), "{}", stderr(&out));

    // An open event stream of the token ends when it expires; until then it is served.
    let mut stream = d.with(&token).events(None).await.expect("a stream while the token is valid");
    d.clock.advance(Duration::days(30) - Duration::seconds(1));
    assert_eq!(code(&d.cli(Some(&token), &["whoami"])), 0, "a second before its expiry it still works");
    d.clock.advance(Duration::seconds(1));
    let ended = tokio::time::timeout(StdDuration::from_secs(10), async {
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of an expired token did not end");
    let out = d.cli(Some(&token), &["whoami"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let said = stderr(&out);
    let at = (t0 + Duration::days(30)).to_rfc3339();
    assert!(said.contains(&format!("token T1 of alice expired at {at}")), "{said}");
    assert!(said.contains("ask an admin for a new one (zsa admin token issue alice --ttl 30d)"), "{said}");
    match d.with(&token).events(None).await.err().expect("no new stream either") {
        ClientError::Refused { status, .. } => assert_eq!(status, 401),
        other => panic!("{other:?}"),
    }
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert!(tokens[0].expired && tokens[0].state() == "expired", "{tokens:?}");
    let table = stdout(&d.cli(None, &["admin", "token", "list"]));
    assert!(table.contains("EXPIRES") && table.lines().any(|l| l.starts_with("T1") && l.contains("expired")), "{table}");
    assert_eq!(code(&d.cli(Some(&default), &["whoami"])), 0, "a token with time left is unaffected");

    // A revoked token is refused, saying so.
    assert_eq!(code(&d.cli(None, &["admin", "token", "revoke", "T2"])), 0);
    let out = d.cli(Some(&default), &["whoami"]);
    assert!(code(&out) == 1 && stderr(&out).contains("token T2 of bob was revoked; ask an admin for a new one"), "{}", stderr(&out));
    // Neither counts as a guess: the source is not throttled by them.
    for _ in 0..12 {
        let _ = d.with(&token).whoami().await;
    }
    let fresh = d.issue(&["alice"]);
    assert_eq!(code(&d.cli(Some(&fresh), &["whoami"])), 0);
    d.stop().await;
}

#[tokio::test]
async fn a_check_token_may_ask_check_and_whoami_and_nothing_else() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let grant = dave.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap().grant.expect("auto").id;
    let out = d.cli(None, &["admin", "token", "issue", "dave", "--scope", "check"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("scope check"), "{}", stderr(&out));
    let check = stdout(&out).trim().to_string();
    let run = |args: &[&str]| Command::new(BIN).args(args).env("ZSA_SOCKET", &d.socket).env("ZSA_TOKEN", &check).output().expect("run zsa");

    let out = run(&["check", "restart"]);
    assert_eq!(code(&out), 0, "check works: {}", stderr(&out));
    let out = run(&["whoami"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("scope check"), "whoami lists the token's scope: {}", stdout(&out));
    for args in [
        &["request", "restart"][..],
        &["approve", "R1", "--comment", "ok"],
        &["audit"],
        &["grants"],
        &["relinquish", &grant.to_string()],
        &["admin", "token", "list"],
    ] {
        let out = run(args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stdout(&out));
        let said = stderr(&out);
        assert!(said.contains("token T2 has scope 'check', which allows only GET /v1/check and GET /v1/whoami"), "{args:?}: {said}");
        assert!(said.contains("needs a token of scope 'all'"), "{said}");
    }
    let client = Client::new(&d.socket, Some(check.clone())).unwrap();
    match client.events(None).await.err().expect("no event stream") {
        ClientError::Refused { status, code, .. } => assert_eq!((status, code.as_str()), (403, "token_scope")),
        other => panic!("{other:?}"),
    }
    assert!(client.check("restart", None).await.unwrap().allowed);
    let listed = d.admin().tokens().await.unwrap();
    assert_eq!(listed.iter().find(|t| t.id.0 == 2).map(|t| t.scope), Some(TokenScope::Check));

    // `zsa gate` with it cannot follow the stream, so it asks each second: a revoke still stops it.
    let mut gate = Command::new(BIN)
        .args(["gate", "restart", "--", "sleep", "600"])
        .env("ZSA_SOCKET", &d.socket)
        .env("ZSA_TOKEN", &check)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert!(gate.try_wait().unwrap().is_none(), "the gate runs its command while the grant is active");
    d.admin().revoke(grant, Some("done".into())).await.unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while gate.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the gate did not stop its command after the revoke");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let mut said = String::new();
    gate.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    assert!(said.contains("stopped sleep"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn last_used_is_shown_at_once_saved_at_most_once_a_minute_and_survives_a_restart() {
    let mut d = Manual::start().await;
    let token = d.issue(&["alice"]);
    let t0 = d.now();
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert_eq!(tokens[0].last_used, None);
    assert!(stdout(&d.cli(None, &["admin", "token", "list"])).lines().any(|l| l.starts_with("T1") && l.contains("never")));

    assert_eq!(code(&d.cli(Some(&token), &["whoami"])), 0);
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert_eq!(tokens[0].last_used, Some(t0), "shown at once");
    // The first use is saved within a second or two (the saver looks each second).
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while d.saved_use(1) != Some(column(t0)) {
        assert!(Instant::now() < deadline, "the first use was not saved: {:?}", d.saved_use(1));
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }

    // Used again ten seconds later: shown at once, but not written until a minute after the last save.
    d.clock.advance(Duration::seconds(10));
    let out = d.cli(Some(&token), &["whoami"]);
    assert!(stdout(&out).contains("last used"), "whoami shows it: {}", stdout(&out));
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert_eq!(tokens[0].last_used, Some(t0 + Duration::seconds(10)));
    tokio::time::sleep(StdDuration::from_millis(2500)).await;
    assert_eq!(d.saved_use(1), Some(column(t0)), "a use within the minute is not written at once");
    d.clock.advance(Duration::seconds(50));
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while d.saved_use(1) != Some(column(t0 + Duration::seconds(10))) {
        assert!(Instant::now() < deadline, "the use was not saved a minute on: {:?}", d.saved_use(1));
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }

    // The last use before a clean stop is saved when the daemon stops, and read back at start.
    d.clock.advance(Duration::seconds(5));
    let last = d.now();
    assert_eq!(code(&d.cli(Some(&token), &["whoami"])), 0);
    d.stop().await;
    assert_eq!(d.saved_use(1), Some(column(last)));
    d.restart().await;
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert_eq!(tokens[0].last_used, Some(last), "it survives the restart");
    // Writing the token's row (revoking it) keeps it.
    assert_eq!(code(&d.cli(None, &["admin", "token", "revoke", "T1"])), 0);
    assert_eq!(d.saved_use(1), Some(column(last)));
    let tokens = listed(&d.cli(None, &["admin", "token", "list", "--json"]));
    assert_eq!((tokens[0].last_used, tokens[0].state()), (Some(last), "revoked"));
    d.stop().await;
}

/// A raw request with a bearer token: (status, the whole answer).
fn raw_whoami(socket: &Path, token: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(StdDuration::from_secs(10))).unwrap();
    write!(s, "GET /v1/whoami HTTP/1.1\r\nHost: zsa\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    (answer[9..12].parse().unwrap(), answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_of_bad_tokens_is_throttled_once_audited_once_and_others_are_not() {
    let mut d = Manual::start().await;
    let good = d.issue(&["alice"]);
    let me = format!("uid {}", nix::unistd::geteuid().as_raw());
    // Nine tokens the daemon never issued: each refused as such.
    for n in 0..9 {
        let (status, answer) = raw_whoami(d.socket(), &format!("zsa_guess{n}"));
        assert_eq!(status, 401, "{answer}");
        assert!(answer.contains("not one the daemon issued"), "{answer}");
    }
    // The tenth within the minute trips it.
    let (status, answer) = raw_whoami(d.socket(), "zsa_guess9");
    assert_eq!(status, 429, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 300"), "{answer}");
    assert!(answer.contains(&format!("too many tokens that were not valid came from {me} (10 within 1m)")), "{answer}");
    // Now even a good token from that source is refused, without being looked at.
    d.clock.advance(Duration::seconds(60));
    let (status, answer) = raw_whoami(d.socket(), &good);
    assert_eq!(status, 429, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 240"), "{answer}");
    let out = d.cli(Some(&good), &["whoami"]);
    assert!(code(&out) == 1 && stderr(&out).contains("its token attempts are refused until"), "{}", stderr(&out));
    for n in 0..20 {
        let _ = raw_whoami(d.socket(), &format!("zsa_more{n}"));
    }
    // The socket's own login is not a token: the admin is served, and reads one auth_throttled.
    let events = d.admin().audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap();
    let throttled: Vec<_> = events.iter().filter(|e| e.change.kind() == "auth_throttled").collect();
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    match &throttled[0].change {
        Change::AuthThrottled { source, failures, window_secs, until } => {
            assert_eq!((source.as_str(), *failures, *window_secs), (me.as_str(), 10, 60));
            assert_eq!(*until, throttled[0].at + Duration::minutes(5));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(throttled[0].actor, zsa::model::SYSTEM_ACTOR);

    // A good token from another source (another Unix account) works during the block.
    if is_root() {
        let other = common::Account::create("zthr");
        use std::os::unix::fs::PermissionsExt;
        let dir = d.socket().parent().unwrap().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("runuser")
            .args(["-u", &other.name, "--", BIN, "--socket"])
            .arg(d.socket())
            .arg("whoami")
            .env("ZSA_TOKEN", &good)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "another source is unaffected: {}", stderr(&out));
        assert!(stdout(&out).contains("alice (via token)"), "{}", stdout(&out));
    } else {
        println!("SKIPPED the other account's part: needs root to run as another account");
    }

    // The block ends after five minutes; the source starts afresh.
    d.clock.advance(Duration::seconds(240));
    let (status, answer) = raw_whoami(d.socket(), &good);
    assert_eq!(status, 200, "{answer}");
    let (status, _) = raw_whoami(d.socket(), "zsa_guess_again");
    assert_eq!(status, 401, "one bad token after the block is one, not the eleventh");
    d.stop().await;
}

/// The daemon's standard error, with `ZSA_LOG=trace`.
fn trace_daemon(dir: &Path) -> (std::process::Child, PathBuf, PathBuf) {
    let (state, policy, socket, log) = (dir.join("state"), dir.join("policy.toml"), dir.join("zsa.sock"), dir.join("daemon.log"));
    std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &current_user())).unwrap();
    let child = common::daemon_command(&state, &policy, &socket)
        .env("ZSA_LOG", "trace")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    common::wait_for_socket(&socket);
    (child, socket, log)
}

#[tokio::test]
async fn a_token_never_appears_in_the_daemons_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, socket, log) = trace_daemon(dir.path());
    let zsa = |token: Option<&str>, args: &[&str]| common::cli_on(&socket, token, args);
    let out = zsa(None, &["admin", "token", "issue", "dave", "--ttl", "1d"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    let asked = IssueToken { user: "dave".into(), scope: TokenScope::Check, ..Default::default() };
    let check = Client::new(&socket, None).unwrap().issue_token_with(&asked).await.unwrap().token;
    // Everything a token goes through: use, a stream, a wrong scope, near misses, revocation.
    assert_eq!(code(&zsa(Some(&token), &["whoami"])), 0);
    assert_eq!(code(&zsa(Some(&token), &["request", "restart"])), 0);
    let client = Client::new(&socket, Some(token.clone())).unwrap();
    let stream = client.events(Some(0)).await.unwrap();
    assert_eq!(code(&zsa(Some(&check), &["request", "restart"])), 1);
    assert_eq!(code(&zsa(Some(&check), &["check", "restart"])), 0);
    // One character off (a token that already ends in '0' is changed to end in '1').
    let last = if token.ends_with('0') { '1' } else { '0' };
    let near = format!("{}{last}", &token[..token.len() - 1]);
    assert_eq!(code(&zsa(Some(&near), &["whoami"])), 1);
    let _ = zsa(Some(&format!("{token} extra")), &["whoami"]);
    for n in 0..10 {
        let _ = zsa(Some(&format!("{token}{n}")), &["whoami"]);
    }
    assert_eq!(code(&zsa(None, &["admin", "token", "revoke", "T1"])), 0);
    assert_eq!(code(&zsa(Some(&token), &["whoami"])), 1);
    drop(stream);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap();

    let logged = std::fs::read_to_string(&log).unwrap();
    // Trace logging was on, and followed the tokens through authentication.
    assert!(logged.contains("TRACE") && logged.contains("authenticated by token") && logged.contains("token=T1"), "{logged}");
    assert!(logged.contains("refused a token that is not valid"), "{logged}");
    assert!(logged.contains("throttled"), "the throttle's log line is there (without the token):\n{logged}");
    for secret in [&token, &check, &token[4..], &check[4..], &near[4..]] {
        assert!(!logged.contains(secret), "a token is in the daemon's log");
    }
    // Nor is it anywhere in the database: only its SHA-256.
    let db = std::fs::read(dir.path().join("state/zsa.db")).unwrap();
    let wal = std::fs::read(dir.path().join("state/zsa.db-wal")).unwrap_or_default();
    for secret in [&token[4..], &check[4..]] {
        let needle = secret.as_bytes();
        assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle));
    }
}
