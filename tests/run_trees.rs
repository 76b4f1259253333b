//! A run is its whole process tree: background children, children that left the process group
//! (setsid) and orphans that left their parent too are stopped on grant end, timeout, the
//! command's own exit, daemon stop and, after a crash, at the next start (before the run is
//! recorded as abandoned), also when a process wrote itself out of the run's cgroup; one run's
//! stop never takes another run's orphans (each run has its own audit session); `zsa gate` stops
//! what the command left in its group when it exits. A client that stops reading never holds back
//! a stop. Each tree test runs under both containments: cgroup v2 (where the daemon can use it)
//! and the process group + subreaper fallback (`ZSA_RUN_CONTAINMENT=group`). Real daemon, real
//! processes, real /proc.

mod common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::Daemon;
use zsa::client::Client;
use zsa::model::wire::{NewRequest, RunOutput, RunRequest};
use zsa::model::{RunId, RunOutcome};

/// `{n}` makes each test's sleeps unique on the machine, so parallel tests never see each
/// other's processes: sleep 1{n}1 in the background, 1{n}2 in its own session, 1{n}3 in its own
/// session and orphaned (its parent subshell exits), 1{n}4 in the foreground.
const TREE: &str = "sleep 1{n}1 & setsid sleep 1{n}2 & (setsid sleep 1{n}3 &); sleep 1{n}4";

fn policy() -> String {
    let task = |name: &str, script: &str, extra: &str| {
        format!(
            "\n[[tasks]]\nname = \"{name}\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\nrun = [\"/bin/sh\", \"-c\", \"{script}\"]\n{extra}\n[tasks.params.n]\npattern = \"[0-9]{{6}}\"\n"
        )
    };
    // A command that moves itself out of its run's cgroup into the cgroup2 root (where the root
    // is this daemon's own cgroup, as here, the write is allowed); in group mode the write moves
    // nothing or fails, and the rest is the same.
    let escape = format!("echo $$ > {}/cgroup.procs; setsid sleep 1{{n}}1 & sleep 1{{n}}2", cgroup2_root());
    // carol's run: the first process stops being a subreaper, so the orphan its double fork
    // leaves (sleep 1{n}7, in its own session) comes to the daemon; then it becomes sleep 1{n}8.
    let orphan = "\n[[tasks]]\nname = \"orphan\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\nrun = [\"/usr/bin/python3\", \"-c\", \"import ctypes, os; ctypes.CDLL(None).prctl(36, 0, 0, 0, 0); pid = os.fork(); pid or (os.setsid(), os.fork() or os.execv('/bin/sleep', ['sleep', '1{n}7']), os._exit(0)); os.waitpid(pid, 0); os.execv('/bin/sleep', ['sleep', '1{n}8'])\"]\n[tasks.params.n]\npattern = \"[0-9]{6}\"\n";
    // The same, but the orphan ends at once: it becomes a zombie child of the daemon.
    let brief = orphan
        .replace("\"orphan\"", "\"orphan-brief\"")
        .replace("os.execv('/bin/sleep', ['sleep', '1{n}7'])", "os.execv('/bin/true', ['true'])");
    format!(
        "{}{}{}{}{}{}{}{}{}{}{}",
        common::POLICY,
        task("tree", TREE, ""),
        task("stubborn", &format!("trap '' TERM; {TREE}"), ""),
        task("tree-slow", TREE, "timeout = \"2s\""),
        task("leaves", "setsid sleep 1{n}2 & (setsid sleep 1{n}3 &); echo started", ""),
        task("yes", "exec /usr/bin/yes 1{n}5", "timeout = \"2s\""),
        task("twice", "sleep 1{n}6", "max_concurrent_runs = 2"),
        task("escape", &escape, ""),
        orphan,
        brief,
        task("short", "sleep 1{n}9", "timeout = \"2s\""),
    )
}

/// Where this machine mounts the cgroup2 hierarchy ("/nonexistent" where it has none).
fn cgroup2_root() -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next() == Some("cgroup2")).then(|| left.split(' ').nth(4).map(str::to_string))?
        })
        .unwrap_or_else(|| "/nonexistent".into())
}

#[derive(Clone, Copy, Debug)]
enum Containment {
    Cgroup,
    Group,
    /// The fallback where runs cannot be given audit sessions of their own
    /// (`ZSA_RUN_SESSIONS=off`, as on a kernel without audit support).
    GroupWithoutSessions,
}

fn daemon(mode: Containment) -> Daemon {
    match mode {
        Containment::Cgroup => Daemon::start_with(&policy()),
        Containment::Group => Daemon::start_with_env(&policy(), &[("ZSA_RUN_CONTAINMENT", "group")]),
        Containment::GroupWithoutSessions => {
            Daemon::start_with_env(&policy(), &[("ZSA_RUN_CONTAINMENT", "group"), ("ZSA_RUN_SESSIONS", "off")])
        }
    }
}

/// A number no other test (or test run) on this machine uses at the same time.
fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:06}", (std::process::id().wrapping_mul(7919) ^ nanos) % 1_000_000)
}

/// Live (not zombie) processes whose argument vector contains `arg`.
fn with_arg(arg: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
            .unwrap_or(true);
        if !zombie && cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

fn markers(n: &str, which: &[u8]) -> Vec<String> {
    which.iter().map(|k| format!("1{n}{k}")).collect()
}

fn alive(markers: &[String]) -> Vec<String> {
    markers.iter().filter(|m| !with_arg(m).is_empty()).cloned().collect()
}

async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kills what a failed test left, so it does not run for days.
struct Cleanup(Vec<String>);

fn cleanup(n: &str) -> Cleanup {
    Cleanup(markers(n, &[1, 2, 3, 4, 5, 6, 7, 8, 9]))
}
impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in &self.0 {
            for pid in with_arg(m) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Which containment the daemon really used for a run's process: cgroup v2 puts it in a
/// `zsa-…` cgroup.
fn in_run_cgroup(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.lines().any(|l| l.starts_with("0::") && l.contains("/zsa-")))
}

fn say_containment(mode: Containment, marker: &str) {
    let used = with_arg(marker).first().map(|p| in_run_cgroup(*p)).unwrap_or(false);
    match (mode, used) {
        (Containment::Cgroup, false) => {
            eprintln!("NOTE: cgroup v2 is not usable here; the daemon used its fallback for this 'cgroup' case")
        }
        (Containment::Group | Containment::GroupWithoutSessions, true) => panic!("ZSA_RUN_CONTAINMENT=group must not use a cgroup"),
        _ => eprintln!("containment tested: {mode:?}"),
    }
}

fn params(n: &str) -> std::collections::BTreeMap<String, String> {
    [("n".to_string(), n.to_string())].into()
}

/// Starts a run and reads its stream in the background; the handle yields its end.
fn start(c: &Client, task: &str, n: &str) -> tokio::task::JoinHandle<Result<RunOutput, String>> {
    let (c, req) = (c.clone(), RunRequest { task: task.into(), params: params(n) });
    tokio::spawn(async move {
        let mut stream = c.run(&req).await.map_err(|e| e.to_string())?;
        while let Some(line) = stream.next().await {
            // A daemon killed on purpose breaks the stream; only tests that await the end care.
            if let end @ RunOutput::Ended { .. } = line.map_err(|e| e.to_string())? {
                return Ok(end);
            }
        }
        Err("the run's stream ended without its end".to_string())
    })
}

async fn ended(run: tokio::task::JoinHandle<Result<RunOutput, String>>) -> (RunOutcome, Option<i32>, String) {
    match tokio::time::timeout(Duration::from_secs(30), run).await.expect("the run ended within 30 s").unwrap().expect("the run's stream") {
        RunOutput::Ended { outcome, exit_code, message, .. } => (outcome, exit_code, message),
        other => panic!("{other:?}"),
    }
}

/// One scenario: a daemon in `mode`, dave's client, and the markers of the four sleeps its runs
/// start (whatever is left of them is killed when the scenario ends).
struct Scene {
    d: Daemon,
    dave: Client,
    n: String,
    all: Vec<String>,
    _cleanup: Cleanup,
}

async fn scene(mode: Containment) -> Scene {
    let mut d = daemon(mode);
    let dave = d.user("dave").await;
    let n = unique();
    Scene { all: markers(&n, &[1, 2, 3, 4]), _cleanup: cleanup(&n), d, dave, n }
}

async fn grant(c: &Client, task: &str, secs: Option<u64>) -> zsa::model::Grant {
    c.request(&NewRequest { task: task.into(), duration_secs: secs, ..Default::default() })
        .await
        .unwrap()
        .grant
        .expect("granted at once")
        .grant
}

#[tokio::test]
async fn when_the_grant_ends_the_whole_tree_is_stopped() {
    for mode in [Containment::Cgroup, Containment::Group] {
        let Scene { d: _daemon, dave, n, all, _cleanup } = scene(mode).await;
        let g = grant(&dave, "tree", Some(3)).await;
        let run = start(&dave, "tree", &n);
        wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all).len() == 4).await;
        say_containment(mode, &all[1]);
        let (outcome, _, message) = ended(run).await;
        assert_eq!(outcome, RunOutcome::GrantEnded, "{message}");
        // The end is recorded only once the tree is gone.
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: nothing of the run is left when its end is reported");
        let late = (chrono::Utc::now() - g.expires_at).to_std().unwrap_or_default();
        eprintln!("measured ({mode:?}): the whole tree was gone {} ms after the grant's end", late.as_millis());
        assert!(late < Duration::from_secs(10), "gone within a generous bound: {late:?}");

        // A tree that ignores SIGTERM (the ignoring is inherited) is killed after the grace.
        let g = grant(&dave, "stubborn", Some(3)).await;
        let run = start(&dave, "stubborn", &n);
        wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all).len() == 4).await;
        let (outcome, code, message) = ended(run).await;
        assert_eq!((outcome, code), (RunOutcome::GrantEnded, Some(128 + 9)), "{message}");
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: SIGKILL ended what ignored SIGTERM");
        let late = (chrono::Utc::now() - g.expires_at).to_std().unwrap_or_default();
        eprintln!("measured ({mode:?}): a tree ignoring SIGTERM was gone {} ms after the grant's end", late.as_millis());
        assert!(late < Duration::from_secs(10), "gone within a generous bound: {late:?}");
    }
}

#[tokio::test]
async fn a_timeout_and_the_command_s_own_exit_stop_the_whole_tree() {
    for mode in [Containment::Cgroup, Containment::Group] {
        let Scene { d: _daemon, dave, n, all, _cleanup } = scene(mode).await;
        grant(&dave, "tree-slow", None).await;
        let run = start(&dave, "tree-slow", &n);
        wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all).len() == 4).await;
        let (outcome, _, message) = ended(run).await;
        assert_eq!(outcome, RunOutcome::TimedOut, "{message}");
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: nothing left after the timeout");

        // A command that exits at once but leaves processes behind: they go with it.
        grant(&dave, "leaves", None).await;
        let (outcome, code, message) = ended(start(&dave, "leaves", &n)).await;
        assert_eq!((outcome, code), (RunOutcome::Exited, Some(0)), "{message}");
        assert!(message.contains("it left running were stopped"), "{message}");
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: nothing left after the command exited");
    }
}

#[tokio::test]
async fn a_daemon_stopped_with_sigterm_stops_its_runs_trees_and_records_it() {
    for mode in [Containment::Cgroup, Containment::Group] {
        let Scene { mut d, dave, n, all, _cleanup } = scene(mode).await;
        grant(&dave, "tree", None).await;
        let run = start(&dave, "tree", &n);
        wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all).len() == 4).await;
        let asked = Instant::now();
        assert!(d.stop().success(), "a clean stop");
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: nothing of the run outlives the daemon");
        eprintln!(
            "measured ({mode:?}): SIGTERM to the daemon until it exited with the run's tree gone: {} ms",
            asked.elapsed().as_millis()
        );
        let (outcome, _, _) = ended(run).await;
        assert_eq!(outcome, RunOutcome::DaemonStopped);
        d.spawn();
        let shown = d.admin().show_run("X1".parse().unwrap()).await.unwrap();
        assert_eq!(shown.ended.unwrap().outcome, RunOutcome::DaemonStopped, "on the record");
    }
}

#[tokio::test]
async fn after_a_crash_the_next_start_stops_what_a_run_left_before_calling_it_abandoned() {
    for mode in [Containment::Cgroup, Containment::Group] {
        let Scene { mut d, dave, n, all, _cleanup } = scene(mode).await;
        grant(&dave, "tree", None).await;
        let _run = start(&dave, "tree", &n);
        wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all).len() == 4).await;
        d.kill9();
        assert!(!alive(&all).is_empty(), "SIGKILL gives the daemon no chance to clean up: the run's processes still run");
        // The daemon listens only after its start-up stopped them and recorded the run.
        let restarted = Instant::now();
        d.spawn();
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: stopped before the daemon answers");
        eprintln!(
            "measured ({mode:?}): restart after SIGKILL until listening, the run's tree stopped: {} ms",
            restarted.elapsed().as_millis()
        );
        let shown = d.admin().show_run("X1".parse().unwrap()).await.unwrap();
        assert_eq!(shown.ended.unwrap().outcome, RunOutcome::Abandoned);
        assert!(!d.state.join("transcripts/X1.process.json").exists(), "the record goes once it served");
    }
}

/// The record names a process by pid and start time: a pid that now belongs to another process
/// (here: a process of the test with the recorded pid but another start time) is never hit.
#[tokio::test]
async fn after_a_crash_a_reused_pid_is_never_signalled() {
    let mut d = daemon(Containment::Group);
    let dave = d.user("dave").await;
    let n = unique();
    let all = markers(&n, &[1, 2, 3, 4, 9]);
    let _cleanup = cleanup(&n);
    grant(&dave, "tree", None).await;
    let _run = start(&dave, "tree", &n);
    wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all[..4]).len() == 4).await;
    d.kill9();
    // Its own process group, as a reused pid would lead one: group id = the recorded pid.
    let mut decoy = std::process::Command::new("/bin/sleep").arg(&all[4]).process_group(0).spawn().unwrap();
    let record_path = d.state.join("transcripts/X1.process.json");
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    // As if the run's first process had died and the kernel had given its pid to the decoy.
    record["pid"] = serde_json::json!(decoy.id());
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    d.spawn();
    let status = decoy.try_wait().unwrap();
    assert!(status.is_none(), "the process now holding the recorded pid was not touched: {status:?}");
    let shown = d.admin().show_run("X1".parse().unwrap()).await.unwrap();
    assert_eq!(shown.ended.unwrap().outcome, RunOutcome::Abandoned);
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}

/// The probe's finding: a client that stops reading kept a command running 40 s past its
/// timeout. Now what the client cannot take is dropped, and the stop happens on time.
#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_back_a_stop() {
    let mut d = daemon(Containment::Cgroup);
    let dave = d.user("dave").await;
    let n = unique();
    let all = markers(&n, &[5]);
    let _cleanup = cleanup(&n);
    grant(&dave, "yes", None).await;
    let started = Instant::now();
    // The stream is opened and never read.
    let stalled = dave.run(&RunRequest { task: "yes".into(), params: params(&n) }).await.unwrap();
    let id: RunId = "X1".parse().unwrap();
    let admin = d.admin();
    let end = loop {
        if let Some(end) = admin.show_run(id).await.unwrap().ended {
            break end;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the run was not stopped within 30 s of its 2 s timeout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("measured: a run whose client stopped reading ended {} ms after it started (timeout 2 s)", started.elapsed().as_millis());
    assert_eq!(end.outcome, RunOutcome::TimedOut);
    assert!(end.truncated, "the transcript kept the first MiB");
    assert_eq!(alive(&all), Vec::<String>::new());
    drop(stalled);
}

#[tokio::test]
async fn a_task_runs_at_most_max_concurrent_runs_at_once() {
    let mut d = daemon(Containment::Cgroup);
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    let n = unique();
    let all = markers(&n, &[4, 6]);
    let _cleanup = cleanup(&n);
    // Default: one at a time, whoever asks.
    grant(&dave, "tree", None).await;
    grant(&carol, "tree", None).await;
    let first = start(&dave, "tree", &n);
    wait_until("the first run started", Duration::from_secs(10), || alive(&all[..1]).len() == 1).await;
    let err = dave.run(&RunRequest { task: "tree".into(), params: params(&n) }).await.err().expect("refused");
    assert_eq!(err.code(), "too_many_runs");
    assert!(err.to_string().contains("'tree' allows 1 run(s) at a time and this one is still running: X1 (dave)"), "{err}");
    // carol may not see dave's run: she learns how many are going, not which or whose.
    let err = carol.run(&RunRequest { task: "tree".into(), params: params(&n) }).await.err().expect("refused");
    assert_eq!(err.code(), "too_many_runs");
    assert!(err.to_string().contains("'tree' allows 1 run(s) at a time and 1 run is still running;"), "{err}");
    assert!(!err.to_string().contains("X1") && !err.to_string().contains("dave"), "{err}");
    // max_concurrent_runs = 2 (shown to those who may ask): two go, the third is refused.
    let tasks = common::stdout(&d.cli(Some("dave"), &["tasks"]).await);
    assert!(tasks.contains("on expiry stop, at most 2 at once"), "{tasks}");
    grant(&dave, "twice", None).await;
    let a = start(&dave, "twice", &n);
    let b = start(&dave, "twice", &n);
    wait_until("two runs of 'twice' started", Duration::from_secs(10), || with_arg(&all[1]).len() == 2).await;
    let err = dave.run(&RunRequest { task: "twice".into(), params: params(&n) }).await.err().expect("refused");
    assert!(err.to_string().contains("allows 2 run(s) at a time and these are still running"), "{err}");
    // Once the first 'tree' run has ended, the next may start.
    d.admin().revoke(zsa::model::GrantId(1), Some("done".into())).await.unwrap();
    assert_eq!(ended(first).await.0, RunOutcome::GrantEnded);
    let again = carol.run(&RunRequest { task: "tree".into(), params: params(&n) }).await;
    assert!(again.is_ok(), "{:?}", again.err());
    // A clean stop ends the three runs still going, and their trees.
    assert!(d.stop().success());
    let (a, b) = (ended(a).await.0, ended(b).await.0);
    assert_eq!((a, b), (RunOutcome::DaemonStopped, RunOutcome::DaemonStopped));
    assert_eq!(alive(&markers(&n, &[1, 2, 3, 4, 6])), Vec::<String>::new());
}

/// The shipped wrapper (assets/zsa-gate.sh, the real script and binary) stops the command, and
/// what it started in its process group, when the grant expires and when it is revoked.
#[tokio::test]
async fn the_shipped_wrapper_stops_the_command_when_the_grant_ends() {
    let mut d = daemon(Containment::Cgroup);
    let token = d.token("dave").await;
    let dave = d.user("dave").await;
    let n = unique();
    let all = markers(&n, &[7, 8]);
    let _cleanup = cleanup(&n);
    let bin_dir = std::path::Path::new(common::BIN).parent().unwrap().to_path_buf();
    let gate = || {
        tokio::process::Command::new("/bin/sh")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/zsa-gate.sh"))
            .args(["restart", "--", "/bin/sh", "-c", &format!("sleep {} & sleep {}", all[0], all[1])])
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("ZSA_SOCKET", &d.socket)
            .env("ZSA_TOKEN", &token)
            .stdin(std::process::Stdio::null())
            .output()
    };
    for how in ["expiry", "revoke"] {
        let g = grant(&dave, "restart", Some(if how == "expiry" { 2 } else { 600 })).await;
        let running = tokio::spawn(gate());
        wait_until("the gated command started", Duration::from_secs(10), || alive(&all).len() == 2).await;
        if how == "revoke" {
            d.admin().revoke(g.id, Some("enough".into())).await.unwrap();
        }
        let out = tokio::time::timeout(Duration::from_secs(20), running).await.expect("the gate ended within 20 s").unwrap().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(128 + 15), "{how}: the command's own end (SIGTERM): {err}");
        assert!(err.contains("zsa: stopped /bin/sh:"), "{how}: {err}");
        assert_eq!(alive(&all), Vec::<String>::new(), "{how}: its process group went with it");
    }

    // The daemon gone: the deadline the gate last heard still ends the command.
    grant(&dave, "restart", Some(3)).await;
    let running = tokio::spawn(gate());
    wait_until("the gated command started", Duration::from_secs(10), || alive(&all).len() == 2).await;
    d.kill9();
    let out = tokio::time::timeout(Duration::from_secs(20), running).await.expect("the gate ended within 20 s").unwrap().unwrap();
    assert_eq!(out.status.code(), Some(128 + 15), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the grant for 'restart' ran out"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(alive(&all), Vec::<String>::new());
}

/// The review's finding: a command that wrote itself into the cgroup2 root's `cgroup.procs` left
/// its run's cgroup, and as the daemon then only looked at the cgroup, the run was never stopped
/// (not on revoke, not on daemon stop, not after a crash). Now the first process, its group and
/// descendants and the run's audit session are followed too, in both containments.
#[tokio::test]
async fn a_run_that_leaves_its_cgroup_is_still_stopped_on_grant_end_daemon_stop_and_after_a_crash() {
    for mode in [Containment::Cgroup, Containment::Group] {
        let mut d = daemon(mode);
        let dave = d.user("dave").await;
        let n = unique();
        let all = markers(&n, &[1, 2]);
        let _cleanup = cleanup(&n);
        let g = grant(&dave, "escape", None).await;

        // The grant is revoked.
        let run = start(&dave, "escape", &n);
        wait_until("both sleeps started", Duration::from_secs(10), || alive(&all).len() == 2).await;
        let left = with_arg(&all[1]).first().is_some_and(|p| !in_run_cgroup(*p));
        assert!(left, "{mode:?}: the setup: the run's processes left the run's cgroup");
        d.admin().revoke(g.id, Some("enough".into())).await.unwrap();
        let (outcome, _, message) = ended(run).await;
        assert_eq!(outcome, RunOutcome::GrantEnded, "{message}");
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: stopped though it left its cgroup");

        // The daemon is stopped.
        grant(&dave, "escape", None).await;
        let run = start(&dave, "escape", &n);
        wait_until("both sleeps started", Duration::from_secs(10), || alive(&all).len() == 2).await;
        let asked = Instant::now();
        assert!(d.stop().success(), "a clean stop");
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: nothing of it outlives the daemon");
        eprintln!(
            "measured ({mode:?}): SIGTERM to the daemon until it exited with an escaped run gone: {} ms",
            asked.elapsed().as_millis()
        );
        assert_eq!(ended(run).await.0, RunOutcome::DaemonStopped);

        // The daemon dies: the next start finds them before recording the run as abandoned.
        d.spawn();
        let dave = d.user("dave").await;
        grant(&dave, "escape", None).await;
        let _run = start(&dave, "escape", &n);
        wait_until("both sleeps started", Duration::from_secs(10), || alive(&all).len() == 2).await;
        d.kill9();
        d.spawn();
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: stopped at the next start");
        let shown = d.admin().show_run("X3".parse().unwrap()).await.unwrap();
        let end = shown.ended.unwrap();
        assert_eq!(end.outcome, RunOutcome::Abandoned);
    }
}

/// The review's finding: in group mode every orphan the daemon adopted counted as a member of
/// every run, so dave's run timing out killed the orphan of carol's run while her run went on.
/// An orphan now belongs to the run whose audit session it carries; another run never stops it.
/// Without sessions, an orphan the daemon adopted cannot be attributed while two runs go: it is
/// left alone then, and stopped by the run that is the only one left.
#[tokio::test]
async fn one_run_s_stop_never_stops_another_run_s_orphans() {
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: this test needs /usr/bin/python3 (to clear the subreaper flag and double fork)");
        return;
    }
    for mode in [Containment::Cgroup, Containment::Group, Containment::GroupWithoutSessions] {
        let mut d = daemon(mode);
        let dave = d.user("dave").await;
        let carol = d.user("carol").await;
        let n = unique();
        let (hers, his) = (markers(&n, &[7, 8]), markers(&n, &[9]));
        let _cleanup = cleanup(&n);
        let g = grant(&carol, "orphan", None).await;
        grant(&dave, "short", None).await;
        let carols = start(&carol, "orphan", &n);
        wait_until("carol's orphan and her run's process started", Duration::from_secs(10), || alive(&hers).len() == 2).await;
        if matches!(mode, Containment::Group | Containment::GroupWithoutSessions) {
            let orphan = with_arg(&hers[0])[0];
            let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap();
            let ppid: u32 = stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(1).unwrap().parse().unwrap();
            assert_eq!(ppid, d.pid(), "the setup: carol's orphan was adopted by the daemon");
        }
        let (outcome, _, message) = ended(start(&dave, "short", &n)).await;
        assert_eq!(outcome, RunOutcome::TimedOut, "{message}");
        assert_eq!(alive(&his), Vec::<String>::new(), "dave's run was stopped");
        assert_eq!(alive(&hers), hers, "{mode:?}: dave's timeout left carol's processes alone");
        assert!(d.admin().show_run("X1".parse().unwrap()).await.unwrap().ended.is_none(), "carol's run goes on");
        // Her own run's stop takes her orphan too.
        d.admin().revoke(g.id, Some("enough".into())).await.unwrap();
        let (outcome, _, message) = ended(carols).await;
        assert_eq!(outcome, RunOutcome::GrantEnded, "{message}");
        assert_eq!(alive(&hers), Vec::<String>::new(), "{mode:?}: carol's orphan went with her run");
    }
}

/// The review's finding: `zsa gate` returned when the command exited and left what the command
/// had started in its process group running, unwatched. Now the group is stopped on the
/// command's exit (SIGTERM, then SIGKILL for what ignores it).
#[tokio::test]
async fn the_gate_stops_what_the_command_left_in_its_group_when_it_exits() {
    let mut d = daemon(Containment::Cgroup);
    let token = d.token("dave").await;
    let dave = d.user("dave").await;
    let n = unique();
    let _cleanup = cleanup(&n);
    grant(&dave, "restart", Some(600)).await;
    // The sleeps do not hold the gate's output open: the gate returns as soon as the command exits.
    for (script, marker) in
        [("sleep 1{n}7 >/dev/null 2>&1 & echo started", 7), ("trap '' TERM; sleep 1{n}8 >/dev/null 2>&1 & echo started", 8)]
    {
        let script = script.replace("{n}", &n);
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new(common::BIN)
                .args(["gate", "restart", "--", "/bin/sh", "-c", &script])
                .env("ZSA_SOCKET", &d.socket)
                .env("ZSA_TOKEN", &token)
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .expect("the gate ended within 20 s")
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "the command's own exit code: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
        assert_eq!(alive(&markers(&n, &[marker])), Vec::<String>::new(), "{script}: nothing of it outlives the gate");
        assert!(err.contains("zsa: stopped what /bin/sh left running in its process group"), "{err}");
    }
}

/// After a crash, processes of a run that left its process group and whose parents all died
/// (reparented to init, out of every tree) are still found, by the run's audit session, before
/// the run is recorded as abandoned.
#[tokio::test]
async fn after_a_crash_what_lost_its_group_and_its_parents_is_found_by_the_run_s_session() {
    for mode in [Containment::Cgroup, Containment::Group] {
        let Scene { mut d, dave, n, all, _cleanup } = scene(mode).await;
        grant(&dave, "tree", None).await;
        let _run = start(&dave, "tree", &n);
        wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all).len() == 4).await;
        d.kill9();
        // The run's first process dies too: what it started goes to init. sleep 1{n}2 and 1{n}3
        // are in sessions (and groups) of their own, below nothing of the run.
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.state.join("transcripts/X1.process.json")).unwrap()).unwrap();
        let first = nix::unistd::Pid::from_raw(record["pid"].as_i64().unwrap() as i32);
        nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
        for orphan in &all[1..3] {
            wait_until("the orphan is init's", Duration::from_secs(10), || {
                with_arg(orphan).iter().all(|p| {
                    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                    stat.rfind(')').is_some_and(|i| stat[i + 2..].split(' ').nth(1) == Some("1"))
                })
            })
            .await;
        }
        d.spawn();
        assert_eq!(alive(&all), Vec::<String>::new(), "{mode:?}: stopped before the daemon answers");
        assert_eq!(d.admin().show_run("X1".parse().unwrap()).await.unwrap().ended.unwrap().outcome, RunOutcome::Abandoned);
    }
}

/// Orphans of a run come to the daemon (their subreaper); one that ends while its run goes is
/// reaped then, not left a zombie (holding its pid) until the run stops.
#[tokio::test]
async fn an_orphan_that_ends_while_its_run_goes_is_reaped() {
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: this test needs /usr/bin/python3 (to clear the subreaper flag and double fork)");
        return;
    }
    for mode in [Containment::Cgroup, Containment::Group] {
        let mut d = daemon(mode);
        let carol = d.user("carol").await;
        let n = unique();
        let hers = markers(&n, &[8]);
        let _cleanup = cleanup(&n);
        let g = grant(&carol, "orphan-brief", None).await;
        let run = start(&carol, "orphan-brief", &n);
        wait_until("her run's process started", Duration::from_secs(10), || alive(&hers).len() == 1).await;
        let daemon_pid = d.pid().to_string();
        let zombie_children = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    stat.rfind(')').is_some_and(|i| stat[i + 2..].starts_with('Z') && stat[i + 2..].split(' ').nth(1) == Some(&daemon_pid))
                })
                .count()
        };
        wait_until("no zombie is left below the daemon", Duration::from_secs(10), || zombie_children() == 0).await;
        d.admin().revoke(g.id, Some("enough".into())).await.unwrap();
        assert_eq!(ended(run).await.0, RunOutcome::GrantEnded);
    }
}

/// Thaws and removes a cgroup v1 freezer group, even when the test fails, and then the run's
/// cgroup v2 group (if any), which could not be removed while the frozen process was in it.
struct Frozen(std::path::PathBuf, Option<std::path::PathBuf>);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(self.0.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&self.0);
        if let Some(run_cgroup) = &self.1 {
            let _ = std::fs::remove_dir(run_cgroup);
        }
    }
}

/// The review's finding: the supervisor could wait forever for a tree that never empties. A
/// process that cannot die (here: frozen by the cgroup v1 freezer, where even SIGKILL waits for
/// a thaw) no longer holds the run open: after SIGTERM, the grace and 5 s of SIGKILL, the end is
/// recorded and says so.
#[tokio::test]
async fn a_process_that_cannot_be_killed_does_not_keep_a_run_open_forever() {
    let freezer = std::path::Path::new("/sys/fs/cgroup/freezer");
    if !freezer.join("cgroup.procs").exists() || !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: this test needs root and the cgroup v1 freezer at /sys/fs/cgroup/freezer");
        return;
    }
    for mode in [Containment::Cgroup, Containment::Group] {
        let Scene { d, dave, n, all, _cleanup } = scene(mode).await;
        let g = grant(&dave, "tree", None).await;
        let run = start(&dave, "tree", &n);
        wait_until("all four sleeps started", Duration::from_secs(10), || alive(&all).len() == 4).await;
        let victim = with_arg(&all[3])[0];
        let run_cgroup = std::fs::read_to_string(format!("/proc/{victim}/cgroup"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("0::").filter(|p| p.contains("/zsa-")).map(|p| format!("{}{p}", cgroup2_root()).into()));
        let frozen = Frozen(freezer.join(format!("zsa-test-{n}")), run_cgroup);
        std::fs::create_dir(&frozen.0).unwrap();
        std::fs::write(frozen.0.join("cgroup.procs"), victim.to_string()).unwrap();
        std::fs::write(frozen.0.join("freezer.state"), "FROZEN").unwrap();
        wait_until("frozen", Duration::from_secs(10), || {
            std::fs::read_to_string(frozen.0.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
        })
        .await;
        let asked = Instant::now();
        d.admin().revoke(g.id, Some("enough".into())).await.unwrap();
        let (outcome, _, message) = ended(run).await;
        eprintln!("measured ({mode:?}): a run with an unkillable process ended {} ms after the revoke", asked.elapsed().as_millis());
        assert_eq!(outcome, RunOutcome::GrantEnded, "{message}");
        assert!(message.contains("1 of its process(es) could not be stopped"), "{message}");
        assert_eq!(alive(&all[..3]), Vec::<String>::new(), "{mode:?}: the rest of the tree was stopped");
        drop(frozen);
        wait_until("the thawed process died of its pending SIGKILL", Duration::from_secs(10), || alive(&all).is_empty()).await;
    }
}
