//! The commands that keep going on the event stream, run as real processes against a real
//! daemon: `audit --follow`, `request --wait`, `grants --watch`, across a daemon restart too.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{BIN, Daemon};
use zsa::model::wire::NewRequest;

/// Generous: these wait for something to appear, never measure how fast it does.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `zsa` process whose output is read line by line as it comes; killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    errors: mpsc::Receiver<String>,
}

impl Running {
    async fn start(d: &mut Daemon, user: Option<&str>, args: &[&str]) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("ZSA_SOCKET", &d.socket).env_remove("ZSA_TOKEN").stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(user) = user {
            cmd.env("ZSA_TOKEN", d.token(user).await);
        }
        let mut child = cmd.spawn().expect("spawn zsa");
        let pipe = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || BufReader::new(r).lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
            rx
        };
        let lines = pipe(Box::new(child.stdout.take().unwrap()));
        let errors = pipe(Box::new(child.stderr.take().unwrap()));
        Running { child, lines, errors }
    }

    /// The next line of output; panics (with what stderr said) if none comes in time.
    fn line(&self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(l) => l,
            Err(e) => panic!("no output ({e}); stderr: {:?}", self.errors.try_iter().collect::<Vec<_>>()),
        }
    }

    fn json(&self) -> serde_json::Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Lines until one satisfies `wanted`, which it returns.
    fn until(&self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line();
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Like `exit`, and every line it printed meanwhile goes to `each`.
    fn exit_after_lines(mut self, each: impl Fn(&str)) -> (i32, String) {
        let (code, errors) = self.wait_for_exit();
        self.lines.try_iter().for_each(|l| each(&l));
        (code, errors)
    }

    /// Waits for the process to end by itself; its exit code and everything it said on stderr.
    fn exit(mut self) -> (i32, String) {
        self.wait_for_exit()
    }

    fn wait_for_exit(&mut self) -> (i32, String) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.errors.try_iter().collect::<Vec<_>>().join("\n"));
            }
            assert!(std::time::Instant::now() < deadline, "zsa did not end; stderr: {:?}", self.errors.try_iter().collect::<Vec<_>>());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn head(d: &Daemon) -> u64 {
    d.admin().audit(&Default::default()).await.unwrap().last().map_or(0, |e| e.seq)
}

#[tokio::test]
async fn audit_follow_prints_new_events_after_the_given_one_with_filters_and_across_a_restart() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap();
    let after = head(&d).await;

    let all = Running::start(&mut d, None, &["audit", "--follow", "--after", &after.to_string(), "--json"]).await;
    let carols = Running::start(&mut d, None, &["audit", "--follow", "--after", &after.to_string(), "--user", "carol", "--json"]).await;
    let text = Running::start(&mut d, None, &["audit", "-f", "--after", &after.to_string(), "--task", "restart"]).await;

    let by_dave = dave.request(&NewRequest { task: "glass".into(), ..Default::default() }).await.unwrap().request.id;
    let by_carol = carol.request(&NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() }).await.unwrap();

    let first = all.json();
    assert_eq!(first["seq"], after + 1, "nothing before --after, nothing skipped: {first}");
    assert_eq!(first["request"], by_dave.to_string(), "{first}");
    let carol_first = carols.json();
    assert_eq!(carol_first["actor"], "carol", "dave's event is filtered out: {carol_first}");
    assert_eq!(carol_first["request"], by_carol.request.id.to_string());
    let line = text.line();
    assert!(line.contains("request_created") && line.contains("carol") && line.contains("restart"), "{line}");

    // The daemon restarts: the followers resume after the last event they saw.
    let seen = head(&d).await;
    let mut last = first["seq"].as_u64().unwrap();
    while last < seen {
        last = all.json()["seq"].as_u64().unwrap();
    }
    d.restart_after_kill();
    let dave = d.user("dave").await;
    let again = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() }).await.unwrap();
    let again = again.request.id;
    // Every event after the last one seen, in order, each once (the restart may log its own first).
    let mut expected = seen + 1;
    loop {
        let next = all.json();
        assert_eq!(next["seq"], expected, "no gap and no repeat across the restart: {next}");
        if next["request"] == again.to_string() {
            break;
        }
        expected += 1;
    }
}

#[tokio::test]
async fn request_wait_exits_0_when_granted_even_across_a_daemon_restart() {
    let mut d = Daemon::start();
    let waiting = Running::start(&mut d, Some("dave"), &["request", "export", "--wait", "--json"]).await;
    let admin = d.admin();
    let id = loop {
        if let Some(r) = admin.requests(false).await.unwrap().first() {
            break r.id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    d.restart_after_kill();
    d.user("alice").await.approve(id, None).await.unwrap();
    d.user("bob").await.approve(id, Some("ok".into())).await.unwrap();
    let outcome = waiting.json();
    assert_eq!(outcome["request"]["state"], "approved", "{outcome}");
    assert_eq!(outcome["grant"]["holder"], "dave", "{outcome}");
    let (code, err) = waiting.exit();
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn request_wait_exits_1_when_denied_saying_so() {
    let mut d = Daemon::start();
    let waiting = Running::start(&mut d, Some("dave"), &["request", "export", "--wait"]).await;
    let pending = waiting.line();
    assert!(pending.contains("pending"), "{pending}");
    let id = pending.split_whitespace().next().unwrap().parse().unwrap();
    d.user("alice").await.deny(id, Some("not during the freeze".into())).await.unwrap();
    let denied = waiting.line();
    assert!(denied.contains("denied"), "{denied}");
    let (code, err) = waiting.exit();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("was denied by alice: not during the freeze"), "{err}");
}

#[tokio::test]
async fn grants_watch_prints_the_list_again_after_a_change() {
    let mut d = Daemon::start();
    let watching = Running::start(&mut d, None, &["grants", "--watch"]).await;
    assert_eq!(watching.line(), "no active grants");
    let dave = d.user("dave").await;
    let grant = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    let grant = grant.grant.unwrap().id.to_string();
    assert_eq!(watching.line(), "---");
    assert!(watching.line().starts_with("ID"));
    let row = watching.line();
    assert!(row.starts_with(&grant) && row.contains("dave") && (row.contains("0:09:") || row.contains("0:10:00")), "{row}");
    dave.relinquish(grant.parse().unwrap()).await.unwrap();
    watching.until(|l| l == "---");
    assert_eq!(watching.line(), "no active grants");
}

/// A revoked token (or a disabled account) ends a follow: nothing written after the revocation
/// reaches its holder, and the command says why instead of reconnecting for ever.
#[tokio::test]
async fn audit_follow_ends_when_its_token_is_revoked() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    d.token("erin").await;
    let after = head(&d).await.to_string();
    let following = Running::start(&mut d, Some("erin"), &["audit", "--follow", "--after", &after, "--json"]).await;
    let before = dave.request(&NewRequest { task: "glass".into(), ..Default::default() }).await.unwrap().request.id;
    assert_eq!(following.json()["request"], before.to_string(), "the auditor follows while the token is good");
    let token = d.admin().tokens().await.unwrap().into_iter().find(|t| t.user == "erin").unwrap().id;
    d.admin().revoke_token(token).await.unwrap();
    let after = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() }).await.unwrap();
    let (code, err) = following.exit_after_lines(|line| {
        assert!(!line.contains(&after.request.id.to_string()), "an event after the revocation reached the revoked token: {line}")
    });
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revoked"), "{err}");
}

/// `zsa grants --watch` on a terminal redraws every second; a redraw while the daemon restarts
/// waits for it to come back instead of ending the watch.
#[tokio::test(flavor = "multi_thread")]
async fn grants_watch_on_a_terminal_outlives_a_daemon_restart() {
    let mut d = Daemon::start();
    let dave = d.token("dave").await;
    let console = common::console::Console::open_sized(&d, &dave, d.dir.path(), 24, 100, &["grants", "--watch"]);
    console.wait_for("no active grants");
    d.kill9();
    // Down for longer than a redraw, so one falls inside the outage.
    std::thread::sleep(std::time::Duration::from_secs(3));
    d.spawn();
    let dave = d.user("dave").await;
    let granted = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    let grant = granted.grant.unwrap().id.to_string();
    console.wait("the new grant, drawn by the same watch", |s| s.lines().any(|l| l.starts_with(&grant) && l.contains("dave")));
}
