//! The channels against real receivers on loopback: an SMTP server written with tokio
//! (`common::smtp`), an axum webhook receiver, real programs and real files. Nothing of zsa is
//! mocked.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{TimeZone, Utc};
use common::smtp::smtp_server;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use zsa::clock::ManualClock;
use zsa::notify::channels::{Channel, ChannelConfig, ChannelOptions, SecretSource, SmtpTls, WebhookFormat};
use zsa::notify::{DeliveryError, Notice, Recipient, Trigger};

/// Generous, for waiting on something that must happen; never a bound on how fast.
const PATIENCE: Duration = Duration::from_secs(20);

fn notice(subject: &str, text: &str) -> Notice {
    Notice {
        key: "41:mail:alice".into(),
        trigger: Trigger::RequestCreated,
        seq: 41,
        at: Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap(),
        to: Recipient { name: Some("Alice Approver".into()), address: "alice@example.com".into() },
        subject: subject.into(),
        text: text.into(),
        html: "<p>carol asks for <b>exchange.journal-rule</b></p>".into(),
        facts: serde_json::json!({"request": "R12", "task": "exchange.journal-rule"}),
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 9, 31, 7).unwrap()))
}

fn options() -> ChannelOptions {
    ChannelOptions::new(clock())
}

fn build(config: ChannelConfig) -> Channel {
    Channel::build("test", &config, &options()).unwrap_or_else(|e| panic!("{e}"))
}

fn secret_file(dir: &Path, name: &str, content: &str, mode: u32) -> SecretSource {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    SecretSource::File(path)
}

// ---------- SMTP ----------

fn smtp(port: u16) -> ChannelConfig {
    ChannelConfig::Smtp {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        from: "zsa <zsa@example.com>".into(),
        username: None,
        password: None,
    }
}

#[tokio::test]
async fn smtp_delivers_a_multipart_mail_to_a_loopback_relay() {
    let (port, mut mails) = smtp_server("250 ok\r\n").await;
    let channel = build(smtp(port));
    let n = notice("R12: carol asks for exchange.journal-rule (1h)", "carol asks for exchange.journal-rule.\nApprove: zsa approve R12\n");
    channel.deliver(&n).await.unwrap();
    let mail = tokio::time::timeout(PATIENCE, mails.recv()).await.unwrap().unwrap();
    assert_eq!(mail.from, "MAIL FROM:<zsa@example.com>");
    assert_eq!(mail.rcpt, ["RCPT TO:<alice@example.com>"]);
    let data = &mail.data;
    for expected in [
        "Subject: R12: carol asks for exchange.journal-rule (1h)\r\n",
        "From: zsa <zsa@example.com>\r\n",
        "To: \"Alice Approver\" <alice@example.com>\r\n",
        "Date: Mon, 23 Nov 2026 09:30:00 +0000\r\n",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
        "Approve: zsa approve R12",
        "<b>exchange.journal-rule</b>",
    ] {
        assert!(data.contains(expected), "{expected:?} missing from:\n{data}");
    }
    // The Message-ID comes from the delivery key: the same on every retry.
    let id = data.lines().find(|l| l.starts_with("Message-ID: <")).unwrap().to_string();
    channel.deliver(&n).await.unwrap();
    let again = tokio::time::timeout(PATIENCE, mails.recv()).await.unwrap().unwrap();
    assert!(again.data.contains(&id), "{id} not in the retried mail:\n{}", again.data);
}

#[tokio::test]
async fn a_line_break_in_the_subject_or_name_cannot_add_a_header() {
    let (port, mut mails) = smtp_server("250 ok\r\n").await;
    let channel = build(smtp(port));
    for (subject, name) in
        [("hi\r\nBcc: mallory@example.com", "Alice"), ("hi", "Alice\nBcc: mallory@example.com"), ("hi\rX-Evil: 1", "Alice")]
    {
        let mut n = notice(subject, "body");
        n.to.name = Some(name.into());
        match channel.deliver(&n).await {
            Err(DeliveryError::Permanent(why)) => assert!(why.contains("could add a mail header"), "{why}"),
            other => panic!("{subject:?} / {name:?} gave {other:?}"),
        }
    }
    // Text that merely looks like a header stays in the (encoded) subject of a mail that goes.
    channel.deliver(&notice("Bcc: mallory@example.com =?utf-8?q?x?= ünïcode", "body")).await.unwrap();
    let mail = tokio::time::timeout(PATIENCE, mails.recv()).await.unwrap().unwrap();
    let headers = mail.headers();
    assert!(!headers.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{headers}");
    assert!(mails.try_recv().is_err(), "only the last notice was sent");
}

#[tokio::test]
async fn smtp_4xx_is_retried_and_5xx_is_permanent() {
    let (port, _mails) = smtp_server("451 4.3.0 try again later\r\n").await;
    match build(smtp(port)).deliver(&notice("s", "t")).await {
        Err(DeliveryError::Retry(why)) => assert!(why.contains("try again later") && why.contains("127.0.0.1"), "{why}"),
        other => panic!("451 gave {other:?}"),
    }
    let (port, _mails) = smtp_server("550 5.1.1 no such user\r\n").await;
    match build(smtp(port)).deliver(&notice("s", "t")).await {
        Err(DeliveryError::Permanent(why)) => assert!(why.contains("no such user"), "{why}"),
        other => panic!("550 gave {other:?}"),
    }
    // Nobody listening: a connection error, retried.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    assert!(matches!(build(smtp(port)).deliver(&notice("s", "t")).await, Err(DeliveryError::Retry(_))));
}

#[test]
fn smtp_without_tls_is_refused_to_anything_but_loopback() {
    let mut config = smtp(25);
    if let ChannelConfig::Smtp { host, .. } = &mut config {
        *host = "mail.example.com".into();
    }
    let err = Channel::build("mail", &config, &options()).err().unwrap().to_string();
    assert!(err.starts_with("channel mail: ") && err.contains("in the clear") && err.contains("starttls"), "{err}");
}

// ---------- webhooks ----------

#[derive(Debug)]
struct Hook {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// An axum receiver that records every POST and answers `status`.
async fn receiver(status: StatusCode) -> (String, mpsc::UnboundedReceiver<Hook>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|State((tx, status)): State<(mpsc::UnboundedSender<Hook>, StatusCode)>, headers: HeaderMap, body: axum::body::Bytes| async move {
                let _ = tx.send(Hook { headers, body: body.to_vec() });
                (status, "the receiver says no\nsecond line")
            }),
        )
        .with_state((tx, status));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

#[tokio::test]
async fn a_json_webhook_is_signed_over_timestamp_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hooks) = receiver(StatusCode::NO_CONTENT).await;
    let config = ChannelConfig::Webhook {
        url: secret_file(dir.path(), "url", &format!("{url}\n"), 0o600),
        format: WebhookFormat::Json,
        secret: Some(secret_file(dir.path(), "key", "s3cret\n", 0o400)),
    };
    let n = notice("R12: carol asks", "zsa approve R12");
    build(config).deliver(&n).await.unwrap();
    let hook = tokio::time::timeout(PATIENCE, hooks.recv()).await.unwrap().unwrap();
    let header = |name: &str| hook.headers.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap().to_string();
    // The receiver's side, as docs/NOTICES.md tells it: HMAC-SHA256 with the key (without its
    // trailing newline) over "<timestamp>.<body>".
    let timestamp = header("x-zsa-timestamp");
    assert_eq!(timestamp, clock().now_timestamp().to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&hook.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header("x-zsa-signature"), expected);
    assert_eq!(header("x-zsa-delivery"), "41:mail:alice");
    assert_eq!(header("content-type"), "application/json");
    let sent: Notice = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(sent, n);
}

trait Timestamp {
    fn now_timestamp(&self) -> i64;
}

impl Timestamp for ManualClock {
    fn now_timestamp(&self) -> i64 {
        zsa::clock::Clock::now(self).timestamp()
    }
}

#[tokio::test]
async fn a_slack_webhook_pings_nobody_and_links_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hooks) = receiver(StatusCode::OK).await;
    let config = ChannelConfig::Webhook { url: secret_file(dir.path(), "url", &url, 0o600), format: WebhookFormat::Slack, secret: None };
    let hostile = "because @channel @here @everyone <!here> <!channel> <@U024BE7LH> <https://evil.example|click> a&b";
    build(config).deliver(&notice("R12: carol <@U1> asks", hostile)).await.unwrap();
    let hook = tokio::time::timeout(PATIENCE, hooks.recv()).await.unwrap().unwrap();
    assert!(hook.headers.get("x-zsa-signature").is_none(), "no key, no signature");
    let body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    let mut texts = vec![body["text"].as_str().unwrap().to_string()];
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() >= 2, "{body}");
    for block in blocks {
        assert_eq!(block["type"], "section");
        assert_eq!(block["text"]["type"], "mrkdwn");
        texts.push(block["text"]["text"].as_str().unwrap().to_string());
    }
    for text in &texts {
        for bad in ['@', '<', '>'] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }
    let all = texts.join("\n");
    assert!(all.contains("＠channel") && all.contains("&lt;!here&gt;") && all.contains("a&amp;b") && all.contains("R12: carol"), "{all}");
}

#[tokio::test]
async fn webhook_answers_decide_retry_or_give_up() {
    let dir = tempfile::tempdir().unwrap();
    for (status, retry) in [
        (StatusCode::SERVICE_UNAVAILABLE, true),
        (StatusCode::TOO_MANY_REQUESTS, true),
        (StatusCode::INTERNAL_SERVER_ERROR, true),
        (StatusCode::BAD_REQUEST, false),
        (StatusCode::NOT_FOUND, false),
    ] {
        let (url, _hooks) = receiver(status).await;
        let config = ChannelConfig::Webhook { url: secret_file(dir.path(), "url", &url, 0o600), format: WebhookFormat::Json, secret: None };
        let got = build(config).deliver(&notice("s", "t")).await;
        let why = match (&got, retry) {
            (Err(DeliveryError::Retry(why)), true) | (Err(DeliveryError::Permanent(why)), false) => why,
            _ => panic!("{status} gave {got:?}"),
        };
        assert!(why.contains(status.as_str()) && why.contains("the receiver says no") && !why.contains("second line"), "{why}");
        assert!(!why.contains("/hook"), "the URL is a secret: {why}");
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    // Accepts, reads nothing, answers nothing, and keeps every connection open.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = ChannelConfig::Webhook { url: secret_file(dir.path(), "url", &url, 0o600), format: WebhookFormat::Json, secret: None };
    let channel = Channel::build("hook", &config, &options().with_timeout(Duration::from_millis(300))).unwrap();
    match tokio::time::timeout(PATIENCE, channel.deliver(&notice("s", "t"))).await.expect("the channel's own timeout ends it") {
        Err(DeliveryError::Retry(why)) => assert!(why.contains("did not answer within 300ms"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn secrets_others_may_read_or_that_are_missing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = |url: SecretSource| ChannelConfig::Webhook { url, format: WebhookFormat::Json, secret: None };
    let err = |c: ChannelConfig| Channel::build("hook", &c, &options()).err().unwrap().to_string();

    let readable = secret_file(dir.path(), "url", "https://hooks.example/T1", 0o644);
    let why = err(config(readable));
    assert!(why.contains("the webhook URL of channel hook") && why.contains("mode 644") && why.contains("chmod 600"), "{why}");
    assert!(!why.contains("hooks.example"), "the secret itself is never shown: {why}");

    let missing = SecretSource::Env("ZSA_TEST_NO_SUCH_VARIABLE".into());
    let why = err(config(missing));
    assert!(why.contains("ZSA_TEST_NO_SUCH_VARIABLE") && why.contains("does not have"), "{why}");

    let plain = secret_file(dir.path(), "plain", "http://hooks.example/T1", 0o600);
    let why = err(config(plain));
    assert!(why.contains("plain http") && !why.contains("T1"), "{why}");

    let empty = secret_file(dir.path(), "empty", "\n", 0o600);
    assert!(err(config(empty)).contains("is empty"));
}

// ---------- exec ----------

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

#[tokio::test]
async fn exec_gives_the_notice_on_stdin_in_a_clean_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got.json");
    let env = dir.path().join("env");
    let program = script(dir.path(), "page", r#"cat > "$1"; env > "$2""#);
    let config = ChannelConfig::Exec { program, args: Some(vec![out.display().to_string(), env.display().to_string()]) };
    let n = notice("R12: carol asks", "zsa approve R12");
    build(config).deliver(&n).await.unwrap();
    let got: Notice = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got, n);
    let env = std::fs::read_to_string(&env).unwrap();
    assert!(env.contains("ZSA_DELIVERY=41:mail:alice") && env.contains("PATH=/usr/local/bin:/usr/bin:/bin"), "{env}");
    // This test runs with cargo's variables set; none reach the program.
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
    assert!(!env.contains("CARGO") && !env.contains("HOME="), "{env}");
}

#[tokio::test]
async fn exec_failures_say_why_inertly_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "fail", "cat >/dev/null; printf 'gateway down \\033[31mred\\n second line\\n' >&2; exit 3");
    match build(ChannelConfig::Exec { program, args: None }).deliver(&notice("s", "t")).await {
        Err(DeliveryError::Retry(why)) => {
            assert!(why.contains("exited with status 3: gateway down \\u{1b}[31mred"), "{why}");
            assert!(!why.contains('\u{1b}') && !why.contains("second line"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let missing = ChannelConfig::Exec { program: dir.path().join("no-such-program"), args: None };
    assert!(
        matches!(build(missing).deliver(&notice("s", "t")).await, Err(DeliveryError::Permanent(why)) if why.contains("no-such-program"))
    );
    let relative = ChannelConfig::Exec { program: "page".into(), args: None };
    let why = Channel::build("pager", &relative, &options()).err().unwrap().to_string();
    assert!(why.contains("not an absolute path"), "{why}");
}

#[tokio::test]
async fn exec_that_hangs_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let program = script(dir.path(), "hang", &format!("sleep 600 & echo $! > {}; wait", pid_file.display()));
    let channel =
        Channel::build("pager", &ChannelConfig::Exec { program, args: None }, &options().with_timeout(Duration::from_millis(500))).unwrap();
    match tokio::time::timeout(PATIENCE, channel.deliver(&notice("s", "t"))).await.expect("the channel's own timeout ends it") {
        Err(DeliveryError::Retry(why)) => assert!(why.contains("did not finish within 500ms and was killed"), "{why}"),
        other => panic!("{other:?}"),
    }
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let gone = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() || is_zombie(pid);
    let deadline = std::time::Instant::now() + PATIENCE;
    while !gone() {
        assert!(std::time::Instant::now() < deadline, "the program's child {pid} outlived it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A killed grandchild is reparented and reaped by init; until then it is a zombie.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

// ---------- file ----------

#[tokio::test]
async fn the_file_channel_appends_private_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notices.jsonl");
    let channel = build(ChannelConfig::File { path: path.clone() });
    channel.deliver(&notice("first", "t")).await.unwrap();
    channel.deliver(&notice("second\nline", "t")).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let subjects: Vec<String> = text.lines().map(|l| serde_json::from_str::<Notice>(l).unwrap().subject).collect();
    assert_eq!(subjects, ["first", "second\nline"]);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn the_file_channel_refuses_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    let path = dir.path().join("notices.jsonl");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    match build(ChannelConfig::File { path }).deliver(&notice("s", "t")).await {
        Err(DeliveryError::Permanent(why)) => assert!(why.contains("symlink"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "", "nothing written through the link");
}
