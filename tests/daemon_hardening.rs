//! What the daemon does with bad input, bad tokens, a second daemon and a stale socket.

mod common;

use common::{Daemon, code, stderr, stdout};
use zsa::client::Client;

/// Raw HTTP over the daemon's socket, for requests the typed client would never send.
async fn raw(d: &Daemon, method: reqwest::Method, path: &str, body: Option<&[u8]>, token: Option<&str>) -> (u16, serde_json::Value) {
    let http = reqwest::Client::builder().unix_socket(d.socket.as_path()).build().unwrap();
    let mut rb = http.request(method, format!("http://zsa{path}")).header("content-type", "application/json");
    if let Some(b) = body {
        rb = rb.body(b.to_vec());
    }
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_and_changes_nothing() {
    let mut d = Daemon::start();
    let token = d.token("dave").await;
    let before = d.admin().audit(&Default::default()).await.unwrap().len();
    let cases: Vec<(&[u8], u16)> = vec![
        (b"{not json", 400),
        (b"{\"task\": \"restart\", \"sudo\": true}", 422),
        (b"{\"task\": \"restart\", \"duration_secs\": -5}", 422),
        (b"{\"task\": \"restart\", \"duration_secs\": 18446744073709551615}", 422),
        (b"{\"task\": \"restart\", \"reason\": \"\xff\xfe\"}", 400),
        (b"{\"task\": \"restart\", \"reason\": \"\\u001b[2J\"}", 422),
    ];
    for (body, status) in cases {
        let (got, v) = raw(&d, reqwest::Method::POST, "/v1/requests", Some(body), Some(&token)).await;
        assert_eq!(got, status, "{} -> {v}", String::from_utf8_lossy(body));
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let huge = format!("{{\"task\": \"restart\", \"reason\": \"{}\"}}", "x".repeat(100_000));
    let (status, v) = raw(&d, reqwest::Method::POST, "/v1/requests", Some(huge.as_bytes()), Some(&token)).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("larger than"));
    let long_reason = format!("{{\"task\": \"restart\", \"reason\": \"{}\"}}", "x".repeat(2000));
    let (status, v) = raw(&d, reqwest::Method::POST, "/v1/requests", Some(long_reason.as_bytes()), Some(&token)).await;
    assert_eq!((status, error_code(&v)), (422, "bad_text"));

    let after = d.admin().audit(&Default::default()).await.unwrap().len();
    assert_eq!(before, after, "no refused call wrote anything");

    let (status, v) = raw(&d, reqwest::Method::GET, "/v1/nothing", None, Some(&token)).await;
    assert_eq!((status, error_code(&v)), (404, "no_such_endpoint"));
    let (status, v) = raw(&d, reqwest::Method::DELETE, "/v1/requests", None, Some(&token)).await;
    assert_eq!((status, error_code(&v)), (405, "method_not_allowed"));
    let (status, v) = raw(&d, reqwest::Method::GET, "/v1/requests/X9", None, Some(&token)).await;
    assert_eq!((status, error_code(&v)), (400, "bad_id"));
    let (status, v) = raw(&d, reqwest::Method::GET, "/v1/requests?state=weird", None, Some(&token)).await;
    assert_eq!((status, error_code(&v)), (400, "bad_query"));
}

#[tokio::test]
async fn tokens_are_shown_once_stored_as_hashes_and_revocable() {
    let mut d = Daemon::start();
    let out = d.cli(None, &["admin", "token", "issue", "dave"]).await;
    assert_eq!(code(&out), 0);
    let token = stdout(&out).trim().to_string();
    assert!(stderr(&out).contains("shown once"), "{}", stderr(&out));
    assert!(token.starts_with("zsa_") && token.len() > 60);
    let dave = Client::new(&d.socket, Some(token.clone())).unwrap();
    assert_eq!(dave.whoami().await.unwrap().user, "dave");

    // The secret is nowhere in the database, only its hash.
    let db = std::fs::read(d.db()).unwrap();
    let wal = std::fs::read(d.state.join("zsa.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle));

    let out = d.cli(Some("dave"), &["admin", "token", "issue", "carol"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("only admins may issue tokens"), "{}", stderr(&out));

    let out = d.cli(None, &["admin", "token", "list", "--json"]).await;
    assert!(!stdout(&out).contains(&token));
    let listed: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(listed.iter().all(|t| t["user"] == "dave" && t.get("token").is_none() && t.get("sha256").is_none()), "{listed:?}");
    // The first token of dave is the one issued above; the harness issued him another since.
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(code(&d.cli(None, &["admin", "token", "revoke", &id]).await), 0);
    let err = dave.whoami().await.unwrap_err();
    assert_eq!(err.code(), "unauthenticated");
    assert!(err.to_string().contains("was revoked; ask an admin for a new one"), "{err}");
    let bogus = Client::new(&d.socket, Some("zsa_guess".into())).unwrap();
    assert_eq!(bogus.whoami().await.unwrap_err().code(), "unauthenticated");
}

#[tokio::test]
async fn files_are_private_and_a_second_daemon_on_the_same_state_refuses() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.state), 0o700);
    assert_eq!(mode(&d.db()), 0o600);

    let out = std::process::Command::new(common::BIN)
        .args(["daemon", "--state"])
        .arg(&d.state)
        .arg("--policy")
        .arg(&d.policy)
        .arg("--socket")
        .arg(d.dir.path().join("other.sock"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("another zsa daemon is already using the state directory"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_socket_left_by_a_crashed_daemon_is_replaced_but_a_live_one_is_not() {
    let mut d = Daemon::start();
    d.kill9();
    assert!(d.socket.exists(), "SIGKILL leaves the socket file behind");
    d.spawn();
    assert!(d.admin().whoami().await.is_ok());

    let other_state = d.dir.path().join("state2");
    let out = std::process::Command::new(common::BIN)
        .args(["daemon", "--state"])
        .arg(&other_state)
        .arg("--policy")
        .arg(&d.policy)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("a daemon is already listening on"), "{}", stderr(&out));
    assert!(d.admin().whoami().await.is_ok(), "the running daemon is untouched");

    assert!(d.stop().success(), "SIGTERM stops it cleanly");
    assert!(!d.socket.exists(), "a clean stop removes its socket");
}

#[tokio::test]
async fn the_cli_says_where_it_looked_when_no_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let out = std::process::Command::new(common::BIN).args(["whoami"]).env("ZSA_SOCKET", &socket).output().unwrap();
    assert_eq!(code(&out), 3);
    let msg = stderr(&out);
    assert!(msg.contains(&socket.display().to_string()) && msg.contains("zsa daemon --policy"), "{msg}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let mut d = Daemon::start();
    for args in [&["approve", "G7"][..], &["request", "restart", "--for", "5x"], &["request"], &["frobnicate"]] {
        let out = d.cli(Some("dave"), args).await;
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn policy_check_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new(common::BIN).args(["policy", "check", "assets/policy.toml"]).output().unwrap();
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[groups]\nops = [\"a\"]\n[[tasks]]\nname = \"t\"\nrequesters = [\"opz\"]\napproval = \"auto\"\nmax_duration = \"1h\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN).args(["policy", "check"]).arg(&bad).output().unwrap();
    assert_eq!(code(&out), 1);
    // The problem, its place, the line with a caret under the name, and what to do.
    let shown = stderr(&out);
    assert!(shown.contains("error: task 't': requesters names the group 'opz', which [groups] does not define"), "{shown}");
    assert!(shown.contains("bad.toml:5:15\n  |\n5 | requesters = [\"opz\"]\n  |               ^^^^^"), "{shown}");
    assert!(shown.contains("help: define the group under [groups], or name one that is defined: ops"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "no colour when stderr is not a terminal: {shown}");
    // Scripts get the same, structured.
    let out = std::process::Command::new(common::BIN).args(["--json", "policy", "check"]).arg(&bad).output().unwrap();
    assert_eq!(code(&out), 1);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (report["ok"].as_bool(), report["problems"][0]["line"].as_u64(), report["problems"][0]["column"].as_u64()),
        (Some(false), Some(5), Some(15))
    );
    assert!(report["problems"][0]["help"].as_str().unwrap().contains("define the group"), "{report}");
}

/// A task that some requester could never get approved (each approver counts once and nobody
/// approves their own request) is a file:line problem, like every other policy mistake.
#[tokio::test]
async fn policy_check_refuses_a_task_that_can_never_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[groups]\nleads = [\"ann\", \"bo\"]\n[[tasks]]\nname = \"t\"\nrequesters = [\"leads\"]\napproval = \"manual\"\n\
         approvers = [\"leads\"]\napprovals = 2\nmax_duration = \"1h\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN).args(["policy", "check"]).arg(&bad).output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("error: task 't': needs 2 distinct approvals, but a request by 'ann' could never be approved"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("bad.toml:8:13\n  |\n8 | approvals = 2\n  |             ^"), "{}", stderr(&out));
}

/// A daemon refusing its policy shows each problem as `zsa policy check` does: the line, a caret
/// under the fault, what to do. At start it does not start; on SIGHUP the old policy stays, and
/// the log says so with the same report.
#[tokio::test]
async fn the_daemon_shows_a_bad_policy_in_place_at_start_and_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let good = common::POLICY.replace("{ADMIN}", &common::current_user());
    let bad = good.replacen(r#"approvers = ["approvers"]"#, r#"approvers = ["aprovers"]"#, 1);
    let line = bad.lines().position(|l| l.contains("aprovers")).unwrap() + 1;
    let caret = format!("policy.toml:{line}:14\n   |\n{line} | approvers = [\"aprovers\"]\n   |              ^^^^^^^^^^");
    std::fs::write(&policy, &bad).unwrap();
    let socket = dir.path().join("zsa.sock");
    let out = common::daemon_command(&dir.path().join("state"), &policy, &socket).output().unwrap();
    assert_eq!(code(&out), 1);
    let shown = stderr(&out);
    assert!(shown.contains("the policy does not load, so the daemon did not start"), "{shown}");
    assert!(shown.contains("error: task 'journal': approvers names the group 'aprovers'"), "{shown}");
    assert!(shown.contains(&caret), "{shown}");
    assert!(shown.contains("help: define the group under [groups]"), "{shown}");
    assert!(!socket.exists(), "nothing listens");

    // Started on the good file; SIGHUP after the same mistake keeps the old policy and shows it in place.
    std::fs::write(&policy, &good).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child =
        common::daemon_command(&dir.path().join("state"), &policy, &socket).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    common::wait_for_socket(&socket);
    std::fs::write(&policy, &bad).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap().contains("nothing was loaded") {
        assert!(std::time::Instant::now() < deadline, "no report of the refused reload: {}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(logged.contains("SIGHUP: the policy was not reloaded; the old one stays in force"), "{logged}");
    assert!(logged.contains(&caret), "{logged}");
}

#[tokio::test]
async fn no_token_ever_reaches_the_daemons_log() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &common::current_user())).unwrap();
    let socket = dir.path().join("zsa.sock");
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .args(["daemon", "--state"])
        .arg(dir.path().join("state"))
        .arg("--policy")
        .arg(&policy)
        .arg("--socket")
        .arg(&socket)
        .env("ZSA_LOG", "trace")
        .stderr(log)
        .spawn()
        .unwrap();
    common::wait_for_socket(&socket);
    let admin = Client::new(&socket, None).unwrap();
    let issued = admin.issue_token("dave").await.unwrap();
    let dave = Client::new(&socket, Some(issued.token.clone())).unwrap();
    dave.request(&zsa::model::wire::NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    let _ = Client::new(&socket, Some("zsa_wrong_token".into())).unwrap().whoami().await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(text.contains("TRACE") || text.contains("DEBUG") || text.contains("INFO"), "the log was written at trace level");
    assert!(!text.contains(&issued.token) && !text.contains("zsa_wrong_token"), "a token reached the log");
    assert!(!text.contains(&issued.token[4..20]), "not even part of one");
}

#[tokio::test]
async fn sigterm_stops_the_daemon_promptly_even_with_streams_open() {
    let mut d = Daemon::start();
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(d.admin().events(None).await.unwrap());
    }
    let stopped = tokio::task::spawn_blocking(move || {
        let status = d.stop();
        (status, d)
    });
    let (status, _d) =
        tokio::time::timeout(std::time::Duration::from_secs(10), stopped).await.expect("the daemon stopped within 10 s").unwrap();
    assert!(status.success());
    // The streams were closed, not left hanging: each ends, and a client would reconnect (after
    // the checkpoint a clean stop signs, at most).
    for mut s in streams {
        let end = loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), s.next()).await.expect("the stream ended");
            match next {
                Some(Ok(e)) if e.change.kind() == "checkpoint" => continue,
                other => break other,
            }
        };
        assert!(end.as_ref().is_none_or(|e| e.is_err()), "{end:?}");
    }
}

#[test]
fn a_planted_fallback_socket_directory_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    assert!(zsa::config::check_fallback_dir(&dir.path().join("absent")).is_ok(), "nothing there yet: fine");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(zsa::config::check_fallback_dir(dir.path()).is_ok(), "mine and private");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = zsa::config::check_fallback_dir(dir.path()).unwrap_err();
    assert!(err.contains("not a private directory of yours") && err.contains("XDG_RUNTIME_DIR"), "{err}");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    assert!(zsa::config::check_fallback_dir(&file).is_err(), "not a directory");
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(zsa::config::check_fallback_dir(dir.path()).unwrap_err().contains("owner uid 65534"), "someone else's");
    }
}
