//! A daemon in this process on a clock the test moves (`ManualClock`), on a real socket and
//! SQLite file, with the test's account as its admin: for what only a moved clock shows
//! (expiries, schedules, windows). The real client and the real `zsa` binary talk to it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use zsa::client::Client;
use zsa::clock::ManualClock;
use zsa::daemon::{DaemonConfig, DaemonHandle, start};

use super::{BIN, code, current_user, stderr, stdout};

pub struct ManualDaemon {
    pub dir: tempfile::TempDir,
    pub config: DaemonConfig,
    pub clock: Arc<ManualClock>,
    handle: Option<DaemonHandle>,
}

impl ManualDaemon {
    /// On the test policy, its clock at 2026-03-01 09:00 UTC.
    pub async fn start() -> ManualDaemon {
        Self::start_with(super::POLICY).await
    }

    /// On `policy` (`{ADMIN}` the test's account).
    pub async fn start_with(policy: &str) -> ManualDaemon {
        Self::start_configured(policy, |_| {}).await
    }

    /// On `policy` (`{ADMIN}` the test's account, `{DIR}` its directory), with `tweak` applied to
    /// its settings.
    pub async fn start_configured(policy: &str, tweak: impl FnOnce(&mut DaemonConfig)) -> ManualDaemon {
        let dir = tempfile::tempdir().unwrap();
        let text = policy.replace("{ADMIN}", &current_user()).replace("{DIR}", dir.path().to_str().unwrap());
        std::fs::write(dir.path().join("policy.toml"), text).unwrap();
        let mut config = DaemonConfig {
            state_dir: dir.path().join("state"),
            policy: dir.path().join("policy.toml"),
            socket: dir.path().join("zsa.sock"),
            ..Default::default()
        };
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()));
        let handle = start(config.clone(), clock.clone()).await.expect("the daemon starts");
        ManualDaemon { dir, config, clock, handle: Some(handle) }
    }

    pub fn socket(&self) -> &Path {
        &self.config.socket
    }

    /// The daemon's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.handle.as_ref().expect("running").engine.now()
    }

    pub fn handle(&self) -> &DaemonHandle {
        self.handle.as_ref().expect("running")
    }

    pub fn admin(&self) -> Client {
        Client::new(self.socket(), None).unwrap()
    }

    pub fn with(&self, token: &str) -> Client {
        Client::new(self.socket(), Some(token.to_string())).unwrap()
    }

    /// The real CLI, as the admin (None) or with a token.
    pub fn cli(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--socket").arg(self.socket()).args(args).env_remove("ZSA_TOKEN");
        if let Some(t) = token {
            cmd.env("ZSA_TOKEN", t);
        }
        cmd.output().unwrap()
    }

    /// Issues a token with the real CLI: `zsa admin token issue ARGS...`.
    pub fn issue(&self, args: &[&str]) -> String {
        let out = self.cli(None, &[&["admin", "token", "issue"], args].concat());
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    /// A client acting as `user`, through a token the admin issues.
    pub fn user(&self, user: &str) -> Client {
        self.with(&self.issue(&[user]))
    }

    pub async fn stop(&mut self) {
        self.handle.take().expect("running").shutdown().await;
    }

    pub async fn restart(&mut self) {
        self.handle = Some(start(self.config.clone(), self.clock.clone()).await.expect("the daemon starts again"));
    }
}
