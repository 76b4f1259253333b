//! Just enough access: the daemon runs approved tasks itself. Real commands (/bin/echo,
//! /bin/sleep, ...) through tasks of a test policy, over the real client and CLI.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, code, stderr, stdout};
use sha2::{Digest, Sha256};
use zsa::client::Client;
use zsa::model::wire::{NewRequest, RunOutput, RunRequest};
use zsa::model::{Change, RunOutcome};

const RUN_TASKS: &str = r#"
[[tasks]]
name = "echo"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
run = ["/bin/echo", "hello", "{name}"]
timeout = "30s"
[tasks.params.name]
pattern = "[a-z0-9.-]{1,32}"

[[tasks]]
name = "word"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
run = ["/bin/echo", "{word}"]
[tasks.params.word]
pattern = "[A-Za-z0-9._-]+"

[[tasks]]
name = "flag"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
run = ["/bin/echo", "{flag}", "hi"]
[tasks.params.flag]
one_of = ["-n"]
allow_leading_dash = true

[[tasks]]
name = "unit"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
run = ["/bin/echo", "restart", "{unit}"]
[tasks.params.unit]
one_of = ["nginx.service", "nginx-canary.service"]

[[tasks]]
name = "sleep"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/bin/sleep", "{secs}"]
timeout = "1m"
[tasks.params.secs]
range = [1, 60]

[[tasks]]
name = "sleep-finish"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/bin/sleep", "{secs}"]
on_expiry = "finish"
[tasks.params.secs]
range = [1, 60]

[[tasks]]
name = "too-slow"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/bin/sleep", "30"]
timeout = "1s"

[[tasks]]
name = "fails"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/bin/ls", "/nonexistent-zsa-path"]

[[tasks]]
name = "env"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/usr/bin/env"]

[[tasks]]
name = "pwd"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/bin/pwd"]

[[tasks]]
name = "flood"
requesters = ["oncall"]
approval = "auto"
max_duration = "1h"
run = ["/usr/bin/head", "-c", "2000000", "/dev/zero"]
"#;

fn daemon() -> Daemon {
    Daemon::start_with(&format!("{}{RUN_TASKS}", common::POLICY))
}

fn params(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn grant(c: &Client, task: &str, secs: Option<u64>) {
    let o = c.request(&NewRequest { task: task.into(), duration_secs: secs, ..Default::default() }).await.unwrap();
    assert!(o.grant.is_some(), "{task} is granted at once");
}

/// Runs through the client and collects (stdout, stderr, end).
async fn run(c: &Client, task: &str, p: &[(&str, &str)]) -> (String, String, RunOutput) {
    let mut stream = c.run(&RunRequest { task: task.into(), params: params(p) }).await.unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    while let Some(line) = stream.next().await {
        match line.unwrap() {
            RunOutput::Output { stream, data } if stream == "stdout" => out.push_str(&data),
            RunOutput::Output { data, .. } => err.push_str(&data),
            end @ RunOutput::Ended { .. } => return (out, err, end),
            RunOutput::Started { .. } => {}
        }
    }
    panic!("the run never ended");
}

fn run_events(d: &Daemon) -> Vec<zsa::model::Event> {
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    let mut stmt = conn.prepare("SELECT body, prev_hash, hash FROM events WHERE kind LIKE 'run_%' ORDER BY seq").unwrap();
    stmt.query_map([], |r| Ok(zsa::store::chain::parse(&r.get::<_, String>(0)?, r.get(1)?, r.get(2)?).unwrap()))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_run_streams_its_output_passes_its_exit_code_and_is_audited() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "echo", None).await;
    let out = d.cli(Some("dave"), &["run", "echo", "--param", "name=world"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello world\n");
    assert!(stderr(&out).contains("X1 runs: /bin/echo hello world"), "{}", stderr(&out));

    let events = run_events(&d);
    let Change::RunStarted { argv, holder, grant: with, .. } = &events[0].change else { panic!("{events:?}") };
    assert_eq!(argv, &["/bin/echo", "hello", "world"], "the exact argument vector");
    assert_eq!((holder.as_str(), with.to_string().as_str()), ("dave", "G1"));
    let Change::RunEnded { outcome, exit_code, transcript_bytes, transcript_sha256, transcript_cap, truncated, .. } = &events[1].change
    else {
        panic!()
    };
    assert_eq!((*outcome, *exit_code, *transcript_bytes, *truncated), (RunOutcome::Exited, Some(0), 12, false));
    assert_eq!(transcript_sha256, &hex::encode(Sha256::digest(b"hello world\n")), "the digest of what it printed");
    assert!(*transcript_cap >= 1024 * 1024);

    let out = d.cli(Some("erin"), &["audit", "transcript", "X1"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello world\n");
    assert!(stderr(&out).contains("matches the digest in the audit log"));

    // A transcript changed on disk no longer matches its audit event.
    std::fs::write(d.state.join("transcripts/X1.log"), b"hello mallory\n").unwrap();
    let out = d.cli(Some("erin"), &["audit", "transcript", "X1"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("does NOT match the audit log"), "{}", stderr(&out));
    assert!(d.admin().verify().await.unwrap().ok, "the chain itself is intact");

    grant(&dave, "fails", None).await;
    let out = d.cli(Some("dave"), &["run", "fails"]).await;
    assert_eq!(code(&out), 2, "ls's own exit code: {}", stderr(&out));
    assert!(stderr(&out).contains("nonexistent-zsa-path"), "its stderr streams to ours: {}", stderr(&out));
}

#[tokio::test]
async fn without_a_grant_nothing_runs() {
    let mut d = daemon();
    let out = d.cli(Some("dave"), &["run", "echo", "--param", "name=x"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("you hold no active grant for 'echo'; ask for one with: zsa request echo"), "{}", stderr(&out));
    let out = d.cli(Some("dave"), &["run", "journal"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("runs no command"), "{}", stderr(&out));
    assert!(run_events(&d).is_empty());
}

#[tokio::test]
async fn hostile_parameter_values_are_refused_and_nothing_runs() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "echo", None).await;
    grant(&dave, "sleep", None).await;
    grant(&dave, "word", None).await;
    let long = "a".repeat(300);
    /// (task, parameters, what the refusal says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("echo", vec![("name", "; rm -rf /")], "must be matching"),
        ("echo", vec![("name", "$(id)")], "must be matching"),
        ("echo", vec![("name", "`id`")], "must be matching"),
        ("echo", vec![("name", "a\nb")], "control character"),
        ("echo", vec![("name", "../../etc/passwd")], "must be matching"),
        ("echo", vec![("name", &long)], "1 to 256 characters"),
        ("echo", vec![], "needs --param name=VALUE"),
        ("echo", vec![("name", "ok"), ("extra", "1")], "has no parameter 'extra'"),
        ("sleep", vec![("secs", "61")], "an integer from 1 to 60"),
        ("sleep", vec![("secs", "1e3")], "an integer from 1 to 60"),
        ("sleep", vec![("secs", "+5")], "an integer from 1 to 60"),
        // The pattern allows '-', but /bin/echo would take these as options.
        ("word", vec![("word", "-e")], "may not start with '-'"),
        ("word", vec![("word", "--help")], "may not start with '-'"),
        // Hidden characters by category: a separator, a format character, an invisible letter.
        ("echo", vec![("name", "a\u{2028}b")], "line or paragraph separator U+2028"),
        ("echo", vec![("name", "a\u{61c}b")], "format character U+061C"),
        ("echo", vec![("name", "a\u{3164}")], "invisible character U+3164"),
    ];
    for (task, p, expect) in cases {
        let err = dave.run(&RunRequest { task: task.into(), params: params(&p) }).await.err().expect("refused");
        assert_eq!(err.code(), "bad_param", "{p:?}");
        assert!(err.to_string().contains(expect), "{p:?}: {err}");
    }
    // Values fixed in a request are checked the same way, before anyone is asked to approve.
    let carol = d.user("carol").await;
    let err = carol
        .request(&NewRequest { task: "unit".into(), params: params(&[("unit", "nginx.service; reboot")]), ..Default::default() })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("one of nginx.service, nginx-canary.service"), "{err}");
    assert!(run_events(&d).is_empty(), "nothing ran");
}

/// A parameter that says allow_leading_dash = true passes an option on purpose.
#[tokio::test]
async fn a_leading_dash_passes_only_where_the_policy_allows_it() {
    let mut d = daemon();
    grant(&d.user("dave").await, "word", None).await;
    let out = d.cli(Some("dave"), &["run", "word", "--param", "word=-e"]).await;
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stderr(&out).contains("parameter 'word' may not start with '-' ('-e')"), "{}", stderr(&out));
    assert!(stderr(&out).contains("allow_leading_dash = true"), "it says what would allow it: {}", stderr(&out));
    assert!(run_events(&d).is_empty(), "nothing ran");
    let dave = d.user("dave").await;
    grant(&dave, "flag", None).await;
    let (out, _, end) = run(&dave, "flag", &[("flag", "-n")]).await;
    assert!(matches!(end, RunOutput::Ended { exit_code: Some(0), .. }), "{end:?}");
    assert_eq!(out, "hi", "echo got -n as its option: no newline");
}

#[tokio::test]
async fn commands_get_a_cleared_environment_and_a_fixed_directory() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "env", None).await;
    grant(&dave, "pwd", None).await;
    let (out, _, _) = run(&dave, "env", &[]).await;
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    let (out, _, _) = run(&dave, "pwd", &[]).await;
    assert_eq!(out, "/\n");
}

#[tokio::test]
async fn a_run_is_stopped_when_its_grant_expires_or_is_given_up() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "sleep", Some(2)).await;
    let started = Instant::now();
    let (_, _, end) = run(&dave, "sleep", &[("secs", "30")]).await;
    let RunOutput::Ended { outcome, exit_code, message, .. } = end else { unreachable!() };
    assert_eq!(outcome, RunOutcome::GrantEnded, "{message}");
    assert_eq!(exit_code, Some(128 + 15), "stopped with SIGTERM");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped long before the command would have ended");

    // Given up by its holder while it runs: the event stops it, not the clock.
    let carol = d.user("carol").await;
    let g = carol.request(&NewRequest { task: "sleep".into(), ..Default::default() }).await.unwrap().grant.unwrap();
    let c2 = carol.clone();
    let running = tokio::spawn(async move { run(&c2, "sleep", &[("secs", "30")]).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run_events(&d).iter().any(|e| matches!(&e.change, Change::RunStarted { holder, .. } if holder == "carol")) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    carol.relinquish(g.id).await.unwrap();
    let (_, _, end) = tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap();
    assert!(matches!(end, RunOutput::Ended { outcome: RunOutcome::GrantEnded, .. }), "{end:?}");
}

#[tokio::test]
async fn timeouts_stop_and_finish_tasks_may_outlive_their_grant() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "too-slow", None).await;
    let (_, _, end) = run(&dave, "too-slow", &[]).await;
    assert!(matches!(end, RunOutput::Ended { outcome: RunOutcome::TimedOut, .. }), "{end:?}");

    grant(&dave, "sleep-finish", Some(1)).await;
    let (_, _, end) = run(&dave, "sleep-finish", &[("secs", "2")]).await;
    assert!(matches!(end, RunOutput::Ended { outcome: RunOutcome::Exited, exit_code: Some(0), .. }), "{end:?}");
}

#[tokio::test]
async fn parameters_fixed_in_the_request_are_what_runs() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    let alice = d.user("alice").await;
    let id = dave
        .request(&NewRequest { task: "unit".into(), params: params(&[("unit", "nginx-canary.service")]), ..Default::default() })
        .await
        .unwrap()
        .request
        .id;
    let shown = alice.show_request(id).await.unwrap().request;
    assert_eq!(shown.params, params(&[("unit", "nginx-canary.service")]), "the approver sees what will run");
    alice.approve(id, None).await.unwrap();
    let err = dave.run(&RunRequest { task: "unit".into(), params: params(&[("unit", "nginx.service")]) }).await.err().unwrap();
    assert_eq!(err.code(), "params_fixed");
    let (out, _, _) = run(&dave, "unit", &[]).await;
    assert_eq!(out, "restart nginx-canary.service\n");
}

#[tokio::test]
async fn transcripts_are_capped_and_the_cap_is_recorded() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "flood", None).await;
    let (out, _, _) = run(&dave, "flood", &[]).await;
    assert_eq!(out.len(), 2_000_000, "the caller gets everything");
    let events = run_events(&d);
    let Change::RunEnded { transcript_bytes, transcript_cap, truncated, transcript_sha256, .. } = &events[1].change else { panic!() };
    assert!(*truncated);
    assert_eq!(transcript_bytes, transcript_cap);
    let kept = std::fs::read(d.state.join("transcripts/X1.log")).unwrap();
    assert_eq!(kept.len() as u64, *transcript_cap);
    assert_eq!(&hex::encode(Sha256::digest(&kept)), transcript_sha256);
}

#[tokio::test]
async fn a_run_going_when_the_daemon_dies_is_recorded_as_abandoned() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "sleep", None).await;
    let c = dave.clone();
    tokio::spawn(async move {
        let _ = c.run(&RunRequest { task: "sleep".into(), params: params(&[("secs", "30")]) }).await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while run_events(&d).is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.restart_after_kill();
    let run = d.admin().show_run("X1".parse().unwrap()).await.unwrap();
    assert_eq!(run.ended.unwrap().outcome, RunOutcome::Abandoned);
}

#[tokio::test]
async fn the_shipped_wrapper_gates_a_command_on_zsa_check() {
    let mut d = daemon();
    let token = d.token("dave").await;
    let dave = d.user("dave").await;
    let socket = d.socket.clone();
    let bin_dir = std::path::Path::new(common::BIN).parent().unwrap().to_path_buf();
    let gate = |args: &[&str]| {
        std::process::Command::new("/bin/sh")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/zsa-gate.sh"))
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("ZSA_SOCKET", &socket)
            .env("ZSA_TOKEN", &token)
            .output()
            .unwrap()
    };
    let out = gate(&["restart", "--", "/bin/echo", "restarted"]);
    assert_eq!(code(&out), 1, "no grant, no command");
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("holds no active grant for 'restart'"), "{}", stderr(&out));
    grant(&dave, "restart", None).await;
    let out = gate(&["restart", "--", "/bin/echo", "restarted"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "restarted\n"));
    assert_eq!(code(&gate(&["restart"])), 2, "usage");
}

#[tokio::test]
async fn run_as_switches_to_the_named_account() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: run_as needs the daemon to run as root");
        return;
    }
    let policy = format!(
        "{}{RUN_TASKS}\n[[tasks]]\nname = \"whoami\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\nrun = [\"/usr/bin/id\", \"-u\"]\nrun_as = \"nobody\"\n",
        common::POLICY
    );
    let mut d = Daemon::start_with(&policy);
    let dave = d.user("dave").await;
    grant(&dave, "whoami", None).await;
    let (out, _, _) = run(&dave, "whoami", &[]).await;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    assert_eq!(out.trim(), nobody.to_string());
    let events = run_events(&d);
    assert!(matches!(&events[0].change, Change::RunStarted { run_as, .. } if run_as == "nobody"), "the account is on the record");
}

/// A database written before runs had their own table is brought up to date when the daemon
/// opens it: the runs are rebuilt from the log, and new runs carry on from them.
#[tokio::test]
async fn runs_from_before_the_runs_table_are_rebuilt_from_the_log() {
    let mut d = daemon();
    let dave = d.user("dave").await;
    grant(&dave, "echo", None).await;
    run(&dave, "echo", &[("name", "one")]).await;
    run(&dave, "echo", &[("name", "two")]).await;
    assert!(d.stop().success());
    {
        let conn = rusqlite::Connection::open(d.db()).unwrap();
        conn.execute_batch("DROP TABLE runs; PRAGMA user_version = 0;").unwrap();
    }
    d.spawn();
    let dave = d.user("dave").await;
    let first = dave.show_run("X1".parse().unwrap()).await.unwrap();
    assert_eq!(first.argv, ["/bin/echo", "hello", "one"]);
    assert_eq!(first.ended.unwrap().outcome, RunOutcome::Exited);
    assert_eq!(dave.transcript(first.id).await.unwrap(), b"hello one\n");
    let (_, _, end) = run(&dave, "echo", &[("name", "three")]).await;
    assert!(matches!(end, RunOutput::Ended { run, .. } if run.to_string() == "X3"), "{end:?}");
    assert!(d.admin().verify().await.unwrap().ok);
}

/// A run's command gets standard input, output and error and nothing else: not a descriptor the
/// daemon was started with (a shell's, a service manager's) and so not one it could write to.
#[tokio::test]
async fn a_command_inherits_no_descriptor_of_the_daemons() {
    use std::os::unix::process::CommandExt;
    let fds = "\n[[tasks]]\nname = \"fds\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\nrun = [\"/bin/ls\", \"/proc/self/fd\"]\n";
    let mut d = Daemon::start_with(&format!("{}{RUN_TASKS}{fds}", common::POLICY));
    let dave = d.user("dave").await;
    d.kill9();
    // The daemon is started holding a descriptor without close-on-exec, as a careless parent leaves.
    let (_keep, leaked) = std::os::unix::net::UnixStream::pair().unwrap();
    let leaked_fd = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    let mut cmd = d.command();
    // SAFETY: dup2 is async-signal-safe; the new descriptor 57 has no close-on-exec flag.
    unsafe {
        cmd.pre_exec(move || if libc::dup2(leaked_fd, 57) == 57 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
    }
    let mut daemon = cmd.spawn().unwrap();
    common::wait_for_socket(&d.socket);
    assert!(std::fs::read_link(format!("/proc/{}/fd/57", daemon.id())).is_ok(), "the daemon holds the planted descriptor");
    grant(&dave, "fds", None).await;
    let (out, err, end) = run(&dave, "fds", &[]).await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(matches!(end, RunOutput::Ended { exit_code: Some(0), .. }), "{end:?} {err}");
    // ls itself opens the directory it lists (3); nothing else may be there.
    let listed: Vec<&str> = out.split_whitespace().collect();
    assert!(!listed.contains(&"57"), "the command inherited the daemon's descriptor 57: {listed:?}");
    assert!(listed.iter().all(|fd| fd.parse::<u32>().is_ok_and(|n| n <= 3)), "{listed:?}");
}
