//! The test harness: the real `zsa` binary runs as the daemon on a temporary socket and SQLite
//! file; tests talk to it through the real client and the real CLI. Nothing of ours is mocked.
#![allow(dead_code)]

pub mod console;
pub mod manual;
pub mod postgres;
pub mod smtp;

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use zsa::client::{Client, EventStream};
use zsa::model::Event;

pub const BIN: &str = env!("CARGO_BIN_EXE_zsa");

/// A policy for tests. `{ADMIN}` becomes the account running the tests, which therefore is the
/// admin when it connects over the socket without a token.
pub const POLICY: &str = r#"
[settings]
pending_ttl = "1h"
[groups]
admins = ["{ADMIN}"]
approvers = ["alice", "bob", "carol"]
oncall = ["carol", "dave"]
auditors = ["erin"]
[roles]
admins = ["admins"]
auditors = ["auditors"]
[[tasks]]
name = "journal"
description = "Exchange journal rules"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "4h"
default_duration = "1h"
require_reason = true
ticket_pattern = "INC-[0-9]+"
[[tasks]]
name = "export"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
approvals = 2
max_duration = "2h"
[[tasks]]
name = "restart"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
[[tasks]]
name = "glass"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
break_glass = true
"#;

pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name).unwrap_or_else(|| "root".into())
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub policy: PathBuf,
    child: Option<Child>,
    tokens: HashMap<String, String>,
    /// Extra environment for the daemon process.
    pub env: Vec<(String, String)>,
    /// Extra arguments to `zsa daemon` (a TCP listener, say), kept across restarts.
    pub args: Vec<String>,
    /// Where the daemon's standard error goes (appended) instead of the test's.
    pub log: Option<PathBuf>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(POLICY)
    }

    pub fn start_with(policy: &str) -> Daemon {
        Self::start_with_env(policy, &[])
    }

    /// A daemon with extra environment variables (kept across restarts).
    pub fn start_with_env(policy: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_with_args(policy, env, &[])
    }

    /// A daemon with extra environment variables and arguments (both kept across restarts).
    pub fn start_with_args(policy: &str, env: &[(&str, &str)], args: &[String]) -> Daemon {
        let mut d = Daemon::unstarted(policy);
        d.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        d.args = args.to_vec();
        d.spawn();
        d
    }

    /// A daemon's files (`policy` written, `{ADMIN}` the test's account), not started yet.
    pub fn unstarted(policy: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let policy_path = dir.path().join("policy.toml");
        std::fs::write(&policy_path, policy.replace("{ADMIN}", &current_user())).expect("write policy");
        Daemon {
            socket: dir.path().join("zsa.sock"),
            state: dir.path().join("state"),
            policy: policy_path,
            dir,
            child: None,
            tokens: HashMap::new(),
            env: Vec::new(),
            args: Vec::new(),
            log: None,
        }
    }

    /// The command that starts this daemon on its state, policy and socket.
    pub fn command(&self) -> Command {
        let mut cmd = daemon_command(&self.state, &self.policy, &self.socket);
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts the daemon process and waits until its socket accepts connections.
    pub fn spawn(&mut self) {
        let stderr = match &self.log {
            Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the daemon's log")),
            None => Stdio::inherit(),
        };
        let mut child = self.command().stderr(stderr).spawn().expect("spawn zsa daemon");
        let started = Instant::now();
        wait_for_socket_while(&self.socket, || match child.try_wait() {
            Ok(Some(status)) => Some(format!("the daemon exited ({status}) after {:?} without answering", started.elapsed())),
            _ => None,
        });
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or a power cut would stop it: no clean-up runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the clean stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).expect("signal");
        c.wait().expect("wait")
    }

    /// Waits at most `within` for the daemon to exit by itself; its status if it did.
    pub fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().expect("wait") {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn restart_after_kill(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The account running the tests, known by the socket's peer credentials: the admin.
    pub fn admin(&self) -> Client {
        Client::new(&self.socket, None).expect("client")
    }

    /// A client acting as `user`, with a token the admin issues (once per user).
    pub async fn user(&mut self, user: &str) -> Client {
        let token = self.token(user).await;
        Client::new(&self.socket, Some(token)).expect("client")
    }

    pub async fn token(&mut self, user: &str) -> String {
        if let Some(t) = self.tokens.get(user) {
            return t.clone();
        }
        let issued = self.admin().issue_token(user).await.expect("issue token");
        self.tokens.insert(user.to_string(), issued.token.clone());
        issued.token
    }

    /// Runs the real CLI against this daemon as `user` (None: the test account, the admin).
    pub async fn cli(&mut self, user: Option<&str>, args: &[&str]) -> Output {
        let token = match user {
            Some(u) => Some(self.token(u).await),
            None => None,
        };
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("ZSA_SOCKET", &self.socket).env_remove("ZSA_TOKEN");
        if let Some(t) = token {
            cmd.env("ZSA_TOKEN", t);
        }
        cmd.output().expect("run zsa")
    }

    /// Starts the daemon on this state (with `extra` arguments) and returns its output if it
    /// exits by itself (it refused); `None` if it came up (it is then stopped).
    pub fn start_refused(&self, extra: &[&str]) -> Option<Output> {
        let mut child = self.command().args(extra).stderr(Stdio::piped()).spawn().expect("spawn the daemon");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                return Some(child.wait_with_output().expect("output"));
            }
            if UnixStream::connect(&self.socket).is_ok() {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the daemon neither started nor refused within 20 s");
    }

    pub fn db(&self) -> PathBuf {
        self.state.join("zsa.db")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `zsa daemon` on a state directory, policy and socket, logging warnings, its output discarded.
pub fn daemon_command(state: &Path, policy: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["daemon", "--state"])
        .arg(state)
        .arg("--policy")
        .arg(policy)
        .arg("--socket")
        .arg(socket)
        .env("ZSA_LOG", "warn")
        .stdout(Stdio::null());
    cmd
}

/// Waits until a daemon answers on `path`. A connect alone is not enough: a daemon killed while
/// starting a run leaves its listening socket open in the child until that child execs, so a
/// connect can reach the dead daemon's socket; an HTTP answer comes only from a live one.
pub fn wait_for_socket(path: &Path) {
    wait_for_socket_while(path, || None)
}

/// As `wait_for_socket`, failing at once with what `gone` says when it says something (the
/// daemon exited, say), instead of waiting out the deadline.
pub fn wait_for_socket_while(path: &Path, mut gone: impl FnMut() -> Option<String>) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(why) = gone() {
            panic!("{why} on {}", path.display());
        }
        if let Ok(mut s) = UnixStream::connect(path) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut answer = [0u8; 12];
            if s.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: zsa\r\nConnection: close\r\n\r\n").is_ok()
                && s.read_exact(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 ")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the daemon did not answer on {} within 20s", path.display());
}

/// Reads events until one matches, failing after `within`.
pub async fn wait_for_event(stream: &mut EventStream, within: Duration, mut matches: impl FnMut(&Event) -> bool) -> Event {
    let found = tokio::time::timeout(within, async {
        while let Some(item) = stream.next().await {
            let e = item.expect("stream item");
            if matches(&e) {
                return e;
            }
        }
        panic!("the event stream ended before the event came");
    })
    .await;
    found.expect("the expected event did not arrive in time")
}

/// One raw HTTP/1.1 GET over a Unix socket, with no identity but the socket's: the status line
/// and the body.
pub fn raw_get(stream: &mut UnixStream, path: &str) -> (String, String) {
    use std::io::Write;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: zsa\r\nConnection: close\r\n\r\n").unwrap();
    read_raw_answer(stream)
}

/// The status line and body of the answer on `stream` (its whole answer: it was asked to close).
pub fn read_raw_answer(stream: &mut UnixStream) -> (String, String) {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The real CLI on `socket`, as the test's account (`token` None) or with a token.
pub fn cli_on(socket: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--socket").arg(socket).args(args).env_remove("ZSA_TOKEN");
    if let Some(t) = token {
        cmd.env("ZSA_TOKEN", t);
    }
    cmd.output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

impl Daemon {
    /// Lets other local accounts reach the socket (the temp dir is private by default).
    pub fn open_to_everyone(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the test dir");
    }
}

/// A throwaway Unix account for tests that need a second real person (root only); removed on drop.
pub struct Account {
    pub name: String,
}

impl Account {
    pub fn create(prefix: &str) -> Account {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let out = Command::new("useradd").args(["--no-create-home", "--shell", "/bin/sh", &name]).output().expect("run useradd");
        assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
        Account { name }
    }

    /// Runs the real CLI as this account at its own login (no token), against `d`.
    pub fn run(&self, d: &Daemon, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", &self.name, "--", BIN])
            .args(args)
            .env("ZSA_SOCKET", &d.socket)
            .env_remove("ZSA_TOKEN")
            .output()
            .expect("run zsa as another account")
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
