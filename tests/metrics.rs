//! `/metrics` (issue 17): the exposition parsed by a real Prometheus text parser, and each series
//! moved by the action it counts, on a daemon in this process on a clock the test moves. Who may
//! read it is the policy's; `--metrics-listen` serves it on loopback only. One test, its parts in
//! turn (the recorder is the process's).

mod common;

use std::time::Duration;

use common::manual::ManualDaemon;
use prometheus_parse::{Scrape, Value};
use zsa::model::wire::NewRequest;

/// The test policy, and a file channel that tells a grant's holder it started.
fn policy() -> String {
    format!(
        "{}[channels.log]\nkind = \"file\"\npath = \"{{DIR}}/notices.jsonl\"\n[[notify]]\non = \"grant_started\"\nto = [\"holder\"]\nvia = \"log\"\n",
        common::POLICY
    )
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the exposition parses")
}

/// The value of `name` with `labels` (a histogram: its count), 0 when absent.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => panic!("{name} is a summary; histograms were asked for"),
        })
        .sum()
}

async fn scrape(d: &ManualDaemon) -> Scrape {
    parse(&d.admin().metrics().await.unwrap())
}

/// Scrapes until `check` holds (what the daemon does by itself takes a moment).
async fn until(d: &ManualDaemon, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(d).await;
        if check(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "{what} never showed in the metrics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One test, its parts in turn: the recorder and its gauges are the process's, so two daemons
/// scraped at once would each set the gauges to their own state.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_each_action_and_only_the_policys_readers_see_them() {
    each_series_moves_with_the_action_it_counts().await;
    who_may_read_metrics_is_the_policys_and_the_loopback_listener_is_loopback_only().await;
}

async fn each_series_moves_with_the_action_it_counts() {
    let d = ManualDaemon::start_configured(&policy(), |c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let dave = d.issue(&["dave"]);
    let alice = d.issue(&["alice"]);
    let s0 = scrape(&d).await;
    for name in [
        "zsa_requests_created_total",
        "zsa_requests_decided_total",
        "zsa_store_errors_total",
        "zsa_event_streams",
        "zsa_commit_seconds",
        "zsa_write_wait_seconds",
    ] {
        assert!(s0.docs.contains_key(name), "{name} is there from the start and says what it is: {:?}", s0.docs);
    }
    assert_eq!(value(&s0, "zsa_requests_decided_total", &[("task", "journal"), ("outcome", "denied")]), 0.0);
    let commits0 = value(&s0, "zsa_commit_seconds", &[]);
    assert!(commits0 >= 3.0, "the policy load and two tokens were committed: {commits0}");
    let waits0 = value(&s0, "zsa_write_wait_seconds", &[]);
    assert!(waits0 >= 2.0, "the two tokens waited for the writer, however briefly: {waits0}");

    // An automatic grant: asked, granted, active, told through the file channel.
    d.with(&dave).request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    let s1 =
        until(&d, "the grant_started notice", |s| value(s, "zsa_notices_total", &[("channel", "log"), ("outcome", "sent")]) >= 1.0).await;
    assert_eq!(value(&s1, "zsa_requests_created_total", &[("task", "restart")]), 1.0);
    assert_eq!(value(&s1, "zsa_requests_decided_total", &[("task", "restart"), ("outcome", "granted")]), 1.0);
    assert_eq!(value(&s1, "zsa_active_grants", &[]), 1.0);
    assert!(value(&s1, "zsa_commit_seconds", &[]) > commits0);
    assert!(value(&s1, "zsa_write_wait_seconds", &[]) > waits0, "the request waited for the writer");
    assert_eq!(value(&s1, "zsa_decision_seconds", &[]), 0.0, "an automatic grant is no one's decision");

    // A manual request waits, then is denied 90 s later by the daemon's clock.
    let asked = NewRequest { task: "journal".into(), reason: Some("mail".into()), ..Default::default() };
    let r = d.with(&dave).request(&asked).await.unwrap().request.id;
    assert_eq!(value(&scrape(&d).await, "zsa_pending_requests", &[]), 1.0);
    d.clock.set(d.now() + chrono::Duration::seconds(90));
    d.with(&alice).deny(r, Some("not now".into())).await.unwrap();
    let s2 = scrape(&d).await;
    assert_eq!(value(&s2, "zsa_pending_requests", &[]), 0.0);
    assert_eq!(value(&s2, "zsa_requests_decided_total", &[("task", "journal"), ("outcome", "denied")]), 1.0);
    assert_eq!(value(&s2, "zsa_decision_seconds", &[("outcome", "denied")]), 1.0);
    let sum = s2.samples.iter().find(|x| x.metric == "zsa_decision_seconds_sum").map(|x| match x.value {
        Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v) => v,
        _ => -1.0,
    });
    assert!(sum.is_some_and(|v| (90.0..91.0).contains(&v)), "the decision took 90 s: {sum:?}");

    // A request for a task that does not exist: refused and counted, its name never a label.
    let typo = NewRequest { task: "restrat\u{1b}[31m".into(), ..Default::default() };
    assert!(d.with(&dave).request(&typo).await.is_err());
    let text = d.admin().metrics().await.unwrap();
    assert!(!text.contains("restrat"), "what a caller typed became a label");
    let s3 = parse(&text);
    assert_eq!(value(&s3, "zsa_requests_refused_total", &[("task", "unknown")]), 1.0);
    assert_eq!(value(&s3, "zsa_refusals_total", &[("code", "unknown_task")]), 1.0);

    // An event stream open, then closed.
    let stream = d.with(&dave).events(None).await.unwrap();
    assert_eq!(value(&scrape(&d).await, "zsa_event_streams", &[]), 1.0);
    drop(stream);
    until(&d, "the stream's close", |s| value(s, "zsa_event_streams", &[]) == 0.0).await;

    // The grant ends by itself when the clock passes its end; how late, by the daemon's clock.
    d.clock.set(d.now() + chrono::Duration::minutes(10));
    let s4 = until(&d, "the expiry", |s| value(s, "zsa_expiry_lateness_seconds", &[("what", "grant")]) == 1.0).await;
    assert_eq!(value(&s4, "zsa_active_grants", &[]), 0.0);

    // The loopback listener serves the same, and nothing else.
    let addr = d.handle().metrics_addr.expect("--metrics-listen is bound");
    let http = reqwest::Client::new();
    let plain = http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    let served = parse(&plain.text().await.unwrap());
    assert_eq!(value(&served, "zsa_requests_decided_total", &[("task", "journal"), ("outcome", "denied")]), 1.0);
    assert_eq!(http.get(format!("http://{addr}/v1/whoami")).send().await.unwrap().status(), 404);
    // Anyone on the host may connect there, but not take the daemon's file descriptors: past a
    // few connections, more are closed at once (found by a review: it held every one).
    let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = open_fds();
    let idle: Vec<_> = (0..40).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = open_fds() - before;
    assert!(grown < 40 + 16, "the daemon kept {} of 40 idle connections", grown - 40);
    drop(idle);
}

async fn who_may_read_metrics_is_the_policys_and_the_loopback_listener_is_loopback_only() {
    let d = ManualDaemon::start().await;
    let carol = d.issue(&["carol"]);
    let refused = d.with(&carol).metrics().await.unwrap_err().to_string();
    assert!(refused.contains("the metrics are for the groups in [roles] metrics (by default admins and auditors)"), "{refused}");
    // Named in [roles] metrics, carol may; the admin, no longer in it, may not.
    let with_role = common::POLICY.replace("auditors = [\"auditors\"]", "auditors = [\"auditors\"]\nmetrics = [\"oncall\"]");
    let m = ManualDaemon::start_with(&with_role).await;
    let carol = m.issue(&["carol"]);
    assert!(m.with(&carol).metrics().await.unwrap().contains("zsa_pending_requests"));
    assert!(m.admin().metrics().await.is_err());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), common::POLICY.replace("{ADMIN}", &common::current_user())).unwrap();
    let config = zsa::daemon::DaemonConfig {
        state_dir: dir.path().join("state"),
        policy: dir.path().join("policy.toml"),
        socket: dir.path().join("zsa.sock"),
        metrics_listen: Some("0.0.0.0:0".parse().unwrap()),
        ..Default::default()
    };
    let clock = std::sync::Arc::new(zsa::clock::SystemClock);
    let err = zsa::daemon::start(config, clock).await.err().expect("refused").to_string();
    assert!(err.contains("only on a loopback address"), "{err}");
    assert!(!dir.path().join("state").exists(), "nothing was created");
}
