//! The CLI counts time by the daemon's clock, not its own: the daemon decides when a grant ends,
//! so a client whose clock is wrong still shows the right time left. The daemon runs in this
//! process on a clock years away from this machine's (the only way to skew one side's clock
//! without the machine's), on a real socket and SQLite file; the real `zsa` binary asks it.

mod common;

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use common::{BIN, code, current_user, stderr, stdout};
use zsa::client::Client;
use zsa::clock::ManualClock;
use zsa::daemon::{DaemonConfig, start};
use zsa::model::wire::NewRequest;

#[tokio::test(flavor = "multi_thread")]
async fn listings_count_time_left_and_age_by_the_daemons_clock() {
    let dir = tempfile::tempdir().unwrap();
    // The test's account may ask for tasks here (it is the admin, and on call).
    let policy = common::POLICY.replace(r#"oncall = ["carol", "dave"]"#, r#"oncall = ["carol", "dave", "{ADMIN}"]"#);
    std::fs::write(dir.path().join("policy.toml"), policy.replace("{ADMIN}", &current_user())).unwrap();
    // Years before this machine's clock: by it, the grant below would have ended long ago.
    let t0 = Utc.with_ymd_and_hms(2020, 3, 1, 9, 0, 0).unwrap();
    assert!(Utc::now() - t0 > Duration::days(365), "this machine's clock is not years after the daemon's");
    let clock = Arc::new(ManualClock::new(t0));
    let config = DaemonConfig {
        state_dir: dir.path().join("state"),
        policy: dir.path().join("policy.toml"),
        socket: dir.path().join("zsa.sock"),
        rebuild_from_log: false,
        ..Default::default()
    };
    let handle = start(config, clock.clone()).await.expect("the daemon starts");
    let me = Client::new(&handle.socket, None).unwrap();
    let grant = me.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    let grant = grant.grant.expect("restart is approved at once").id.to_string();
    let pending = me.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap().request.id.to_string();
    clock.advance(Duration::seconds(90));

    let cli = |args: &[&str]| {
        std::process::Command::new(BIN).arg("--socket").arg(&handle.socket).args(args).env_remove("ZSA_TOKEN").output().unwrap()
    };
    let out = cli(&["grants"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line = stdout(&out).lines().find(|l| l.starts_with(&grant)).map(str::to_string).unwrap_or_default();
    // 10 minutes granted, 90 seconds of the daemon's time passed.
    assert!(line.contains(" 0:08:30 "), "time left by the daemon's clock:\n{}", stdout(&out));

    let out = cli(&["requests"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line = stdout(&out).lines().find(|l| l.starts_with(&pending)).map(str::to_string).unwrap_or_default();
    assert!(line.contains(" 1m30s "), "age by the daemon's clock:\n{}", stdout(&out));
    handle.shutdown().await;
}
