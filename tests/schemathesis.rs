//! The API against its own OpenAPI description (issue 17): schemathesis, from PyPI, sends at
//! least 500 requests generated from docs/openapi.json to a real daemon over TLS, as an admin
//! with a token, with some requests and grants already there; no answer may be a 5xx, and every
//! answer must match its documented status, content type and schema.
//!
//! Schemathesis is taken from ZSA_SCHEMATHESIS if set, else installed once (pinned) into a
//! virtual environment under target/ with the machine's python3; CI runs this too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use zsa::model::wire::NewRequest;

const VERSION: &str = "4.32.5";

/// The schemathesis program, installed if need be.
fn schemathesis() -> PathBuf {
    if let Some(given) = std::env::var_os("ZSA_SCHEMATHESIS") {
        return PathBuf::from(given);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{VERSION}"));
    let program = venv.join("bin/schemathesis");
    if program.is_file() {
        return program;
    }
    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
    assert!(
        made.as_ref().is_ok_and(|s| s.success()),
        "cannot make a Python virtual environment for schemathesis ({made:?}): this test needs python3 with venv and pip (Debian: python3-venv)"
    );
    // Every package pinned, so the generated data changes only when zsa does.
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis-requirements.txt");
    let pip = Command::new(venv.join("bin/pip")).args(["install", "-q", "-r"]).arg(&pinned).output().unwrap();
    assert!(pip.status.success(), "cannot install schemathesis from PyPI: {}", String::from_utf8_lossy(&pip.stderr));
    program
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_generated_requests_get_no_5xx_and_every_answer_matches_its_schema() {
    let st = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let made = Command::new(common::BIN).args(["admin", "tls", "init", "--dir"]).arg(&tls).args(["--name", "127.0.0.1"]).output().unwrap();
    assert_eq!(common::code(&made), 0, "{}", common::stderr(&made));
    std::fs::write(dir.path().join("policy.toml"), common::POLICY.replace("{ADMIN}", &common::current_user())).unwrap();
    let config = zsa::daemon::DaemonConfig {
        state_dir: dir.path().join("state"),
        policy: dir.path().join("policy.toml"),
        socket: dir.path().join("zsa.sock"),
        listeners: vec![zsa::daemon::TlsListener {
            address: "127.0.0.1:0".parse().unwrap(),
            cert: tls.join("cert.pem"),
            key: tls.join("key.pem"),
        }],
        ..Default::default()
    };
    let daemon = zsa::daemon::start(config, std::sync::Arc::new(zsa::clock::SystemClock)).await.expect("the daemon starts");
    let admin = zsa::client::Client::new(&daemon.socket, None).unwrap();
    let token = admin.issue_token(&common::current_user()).await.unwrap().token;
    // Something to find: pending requests and grants for the generated ids to reach.
    for who in ["dave", "carol"] {
        let them = zsa::client::Client::new(&daemon.socket, Some(admin.issue_token(who).await.unwrap().token)).unwrap();
        them.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
        let asked = NewRequest { task: "journal".into(), reason: Some("mail".into()), ..Default::default() };
        them.request(&asked).await.unwrap();
    }
    let url = format!("https://{}", daemon.tcp_addrs[0]);
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let reports = dir.path().join("reports");
    let workdir = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        // Bounded as a whole (its --max-time would fuzz until the time is up, not stop by then).
        Command::new("timeout")
            .arg("600")
            .arg(st)
            // Its example databases in the test's own directory, and none kept: the seed decides.
            .current_dir(&workdir)
            .arg("run")
            .arg(spec)
            .args(["--url", &url, "--tls-verify", "false", "--header", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
            .args(["--phases", "examples,fuzzing", "--max-examples", "25", "--seed", "1", "--workers", "1"])
            .args(["--generation-database", "none", "--request-timeout", "10"])
            // Made-up bearer tokens would get 127.0.0.1 throttled (429 for the rest of the run).
            .args(["--generation-with-security-parameters", "false"])
            // A stream that never ends, and the two calls that would shut this caller out
            // (its token revoked, its account disabled) halfway through.
            .args(["--exclude-path", "/v1/events", "--exclude-path", "/v1/admin/tokens/{id}/revoke"])
            .args(["--exclude-path", "/v1/admin/users/{user}/disable"])
            .arg("--report-dir")
            .arg(&reports)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "schemathesis found problems:\n{said}");
    let generated: u64 = said
        .lines()
        .find_map(|l| l.trim().split_once(" generated").and_then(|(n, _)| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no count of generated test cases in:\n{said}"));
    assert!(generated >= 500, "only {generated} requests were generated:\n{said}");
    // Nothing it sent got the caller throttled, or most answers would have been 429s.
    let log = admin.audit(&zsa::client::AuditParams { limit: Some(10_000), ..Default::default() }).await.unwrap();
    assert!(!log.iter().any(|e| matches!(e.change, zsa::model::Change::AuthThrottled { .. })), "the run got throttled");
    daemon.shutdown().await;
}
