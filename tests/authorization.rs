//! One table: every endpoint against every kind of caller. Allowed or refused as the policy
//! says, and a refused call changes nothing (the event log does not move).

mod common;

use common::Daemon;
use reqwest::Method;
use zsa::model::wire::NewRequest;

const POLICY: &str = r#"
[groups]
admins = ["{ADMIN}"]
req = ["rita", "rob", "dina"]
appr = ["alice"]
other_appr = ["oscar"]
auditors = ["erin"]
[roles]
admins = ["admins"]
auditors = ["auditors"]
[[tasks]]
name = "t"
requesters = ["req"]
approval = "manual"
approvers = ["appr"]
max_duration = "1h"
[[tasks]]
name = "u"
requesters = ["req"]
approval = "manual"
approvers = ["other_appr"]
max_duration = "1h"
[[tasks]]
name = "g"
requesters = ["req"]
approval = "manual"
approvers = ["appr"]
max_duration = "1h"
break_glass = true
[[tasks]]
name = "a"
requesters = ["req"]
approval = "auto"
max_duration = "1h"
"#;

/// The kinds of caller, in the order of each row's expectations.
const CALLERS: [&str; 9] = ["nobody", "rita", "rob", "alice", "oscar", "erin", "admin", "dina", "revoked"];

struct World {
    d: Daemon,
    tokens: std::collections::HashMap<&'static str, Option<String>>,
    http: reqwest::Client,
}

impl World {
    async fn status(&self, caller: &str, method: Method, path: &str, body: Option<serde_json::Value>) -> u16 {
        let mut rb = self.http.request(method, format!("http://zsa{path}"));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        match self.tokens.get(caller).cloned().flatten() {
            Some(t) => rb = rb.bearer_auth(t),
            None if caller == "admin" => {}
            None => unreachable!("every caller but the admin has a token"),
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        if status >= 400 {
            let v: serde_json::Value = resp.json().await.unwrap();
            assert!(v["error"]["code"].is_string() && v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {v}");
        }
        status
    }

    fn last_seq(&self) -> i64 {
        let conn = rusqlite::Connection::open(self.d.db()).unwrap();
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)).unwrap()
    }
}

/// One row: an endpoint and what each caller gets. 0 means "skip this caller here".
struct Row {
    method: Method,
    path: &'static str,
    body: Option<serde_json::Value>,
    expect: [u16; 9],
    /// The caller who is allowed last and changes state; refused ones are checked first.
    mutates: bool,
}

fn row(method: Method, path: &'static str, body: Option<serde_json::Value>, expect: [u16; 9]) -> Row {
    let mutates = method == Method::POST;
    Row { method, path, body, expect, mutates }
}

#[tokio::test]
async fn every_endpoint_against_every_caller() {
    let mut d = Daemon::start_with(POLICY);
    let mut tokens = std::collections::HashMap::new();
    for who in ["rita", "rob", "alice", "oscar", "erin", "dina"] {
        tokens.insert(who, Some(d.token(who).await));
    }
    tokens.insert("admin", None);
    let revoked = d.admin().issue_token("rob").await.unwrap();
    d.admin().revoke_token(revoked.id).await.unwrap();
    tokens.insert("revoked", Some(revoked.token));

    let rita = d.user("rita").await;
    let rob = d.user("rob").await;
    let r1 = rita.request(&NewRequest { task: "t".into(), ..Default::default() }).await.unwrap().request.id; // to approve
    let r2 = rob.request(&NewRequest { task: "t".into(), ..Default::default() }).await.unwrap().request.id; // to deny
    let r3 = rita.request(&NewRequest { task: "u".into(), ..Default::default() }).await.unwrap().request.id; // to cancel
    let g4 = rita.request(&NewRequest { task: "g".into(), ..Default::default() }).await.unwrap().grant.unwrap().id; // break-glass
    let g5 = rita.request(&NewRequest { task: "a".into(), ..Default::default() }).await.unwrap().grant.unwrap().id; // auto
    assert_eq!((r1.0, r2.0, r3.0, g4.0, g5.0), (1, 2, 3, 4, 5));
    d.admin().disable("dina", None).await.unwrap();

    // "nobody": someone with no role and no task (tokens are only issued to people the policy
    // knows, so they are put in a group that grants nothing). An account the policy does not
    // know at all is the next test.
    std::fs::write(
        &d.policy,
        std::fs::read_to_string(&d.policy).unwrap().replace("auditors = [\"erin\"]", "auditors = [\"erin\"]\nguests = [\"nobody\"]"),
    )
    .unwrap();
    d.admin().reload().await.unwrap();
    tokens.insert("nobody", Some(d.token("nobody").await));

    let http = reqwest::Client::builder().unix_socket(d.socket.as_path()).build().unwrap();
    let w = World { d, tokens, http };
    use serde_json::json;
    const OK: u16 = 200;
    const NEW: u16 = 201;
    const GONE: u16 = 204;
    const NO: u16 = 403;
    const NF: u16 = 404;
    const BAD: u16 = 401;
    //                       nobody rita rob  alice oscar erin admin dina revoked
    let rows = vec![
        row(Method::GET, "/v1/whoami", None, [OK, OK, OK, OK, OK, OK, OK, OK, BAD]),
        row(Method::GET, "/v1/tasks", None, [OK, OK, OK, OK, OK, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/check?task=t", None, [OK, OK, OK, OK, OK, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/check?task=t&user=rita", None, [NO, OK, NO, OK, NO, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/requests?state=all", None, [OK, OK, OK, OK, OK, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/requests/R1", None, [NF, OK, NF, OK, NF, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/grants/G4", None, [NF, OK, NF, OK, NF, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/grants?all=true", None, [OK, OK, OK, OK, OK, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/audit", None, [OK, OK, OK, OK, OK, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/audit/verify", None, [NO, NO, NO, NO, NO, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/audit/key", None, [NO, NO, NO, NO, NO, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/audit/export", None, [NO, NO, NO, NO, NO, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/runs", None, [OK, OK, OK, OK, OK, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/events", None, [OK, OK, OK, OK, OK, OK, OK, NO, BAD]),
        row(Method::GET, "/v1/admin/tokens", None, [NO, NO, NO, NO, NO, NO, OK, NO, BAD]),
        // Mutations: every refused caller first, then the one allowed caller (marked 2xx). Who may
        // not see the request or grant gets the answer for one that does not exist (404).
        row(Method::POST, "/v1/requests", Some(json!({"task": "u"})), [NO, 409, NEW, NO, NO, NO, NO, NO, BAD]),
        row(Method::POST, "/v1/requests/R1/approve", Some(json!({})), [NF, NO, NF, OK, NF, NO, NO, NO, BAD]),
        row(Method::POST, "/v1/requests/R2/deny", Some(json!({"comment": "no"})), [NF, NF, NO, OK, NF, NO, NO, NO, BAD]),
        row(Method::POST, "/v1/requests/R3/cancel", Some(json!({})), [NF, OK, NF, NF, NO, NO, NO, NO, BAD]),
        row(Method::POST, "/v1/grants/G4/review", Some(json!({})), [NF, NO, NF, OK, NF, NO, NO, NO, BAD]),
        // Approvers of the task and admins may revoke; one of them does (admin: daemon_story).
        row(Method::POST, "/v1/grants/G4/revoke", Some(json!({"reason": "done"})), [NF, NO, NF, OK, NF, NO, 0, NO, BAD]),
        row(Method::POST, "/v1/grants/G5/relinquish", Some(json!({})), [NF, OK, NF, NF, NF, NO, NO, NO, BAD]),
        row(Method::POST, "/v1/admin/tokens", Some(json!({"user": "rob"})), [NO, NO, NO, NO, NO, NO, OK, NO, BAD]),
        // T9: the token the row above issued (T1..T8 belong to the callers).
        row(Method::POST, "/v1/admin/tokens/T9/revoke", Some(json!({})), [NO, NO, NO, NO, NO, NO, GONE, NO, BAD]),
        row(Method::POST, "/v1/admin/users/rob/disable", Some(json!({})), [NO, NO, NO, NO, NO, NO, GONE, NO, BAD]),
        row(Method::POST, "/v1/admin/users/rob/enable", Some(json!({})), [NO, NO, NO, NO, NO, NO, GONE, NO, BAD]),
        row(Method::POST, "/v1/admin/reload", Some(json!({})), [NO, NO, NO, NO, NO, NO, OK, NO, BAD]),
        // Auditors and admins may ask; erin does (the admin asking next would find nothing new to
        // sign and record nothing: tests/checkpoints.rs asks as the admin).
        row(Method::POST, "/v1/audit/checkpoint", Some(json!({})), [NO, NO, NO, NO, NO, OK, 0, NO, BAD]),
    ];
    for r in &rows {
        // Refusals first, each checked to change nothing; then the allowed callers.
        let mut order: Vec<usize> = (0..CALLERS.len()).filter(|i| r.expect[*i] >= 400).collect();
        order.extend((0..CALLERS.len()).filter(|i| r.expect[*i] < 400 && r.expect[*i] != 0));
        for i in order {
            let caller = CALLERS[i];
            let before = w.last_seq();
            let got = w.status(caller, r.method.clone(), r.path, r.body.clone()).await;
            assert_eq!(got, r.expect[i], "{} {} as {caller}", r.method, r.path);
            if got >= 400 {
                assert_eq!(w.last_seq(), before, "{} {} refused for {caller} but the log moved", r.method, r.path);
            } else if r.mutates {
                assert!(w.last_seq() > before, "{} {} allowed for {caller} but nothing was recorded", r.method, r.path);
            }
        }
    }
    let report = w.d.admin().verify().await.unwrap();
    assert!(report.ok, "{report:?}");
}

/// A refusal to someone who may not see a request or grant says only that there is none they may
/// see: not its task, requester or approvers, and the same words as for one that does not exist.
#[tokio::test]
async fn refusals_tell_nothing_about_what_the_caller_may_not_see() {
    let mut d = Daemon::start_with(POLICY);
    let rita = d.user("rita").await;
    let r =
        rita.request(&NewRequest { task: "t".into(), reason: Some("rita's secret reason".into()), ..Default::default() }).await.unwrap();
    let g = rita.request(&NewRequest { task: "a".into(), ..Default::default() }).await.unwrap().grant.unwrap();
    for (who, args) in [
        ("rob", vec!["approve", "R1"]),
        ("oscar", vec!["deny", "R1", "--comment", "no"]),
        ("rob", vec!["cancel", "R1"]),
        ("alice", vec!["relinquish", "G2"]),
        ("oscar", vec!["revoke", "G2", "--reason", "x"]),
    ] {
        let out = d.cli(Some(who), &args).await;
        assert_eq!(common::code(&out), 1, "{who} {args:?}");
        let err = common::stderr(&out);
        let (kind, id) = if args[1].starts_with('R') { ("request", r.request.id.to_string()) } else { ("grant", g.id.to_string()) };
        assert!(err.contains(&format!("there is no {kind} {id} that you may see")), "{who} {args:?}: {err}");
        for secret in ["rita", "alice", "appr", "'t'", "'a'", "secret"] {
            assert!(!err.contains(secret), "{who} {args:?} learns '{secret}': {err}");
        }
        // The same answer as for something that does not exist.
        let mut ghost = args.clone();
        ghost[1] = if kind == "request" { "R99" } else { "G99" };
        let other = common::stderr(&d.cli(Some(who), &ghost).await).replace("99", &id[1..]);
        assert_eq!(other, err, "{who} {args:?}");
    }
    // Someone who may see the request is told why, with its approvers.
    let out = d.cli(Some("erin"), &["approve", "R1"]).await;
    assert!(common::stderr(&out).contains("its approvers are appr (alice)"), "{}", common::stderr(&out));
}

#[tokio::test]
async fn an_account_the_policy_does_not_know_can_do_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to connect as another Unix account (the 'nobody' peer)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = Daemon::start_with(POLICY);
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .env("ZSA_SOCKET", &d.socket)
            .env_remove("ZSA_TOKEN")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let me = as_nobody(&["whoami", "--json"]);
    assert_eq!(common::code(&me), 0, "{}", common::stderr(&me));
    let me: serde_json::Value = serde_json::from_str(common::stdout(&me).trim()).unwrap();
    assert_eq!(me["via"], "socket");
    assert_eq!(me["roles"], serde_json::json!([]), "known by the kernel, unknown to the policy");
    for args in
        [&["request", "t"][..], &["approve", "R1"], &["admin", "token", "issue", "rita"], &["audit", "verify"], &["admin", "reload"]]
    {
        let out = as_nobody(args);
        assert_eq!(common::code(&out), 1, "{args:?}: {}", common::stderr(&out));
    }
}

/// The pages a console loads instead of everything: what is live (`state=live`), a person's own
/// requests a page at a time, newest first (`state=mine`, `before`, `limit`), and break-glass
/// grants nobody has reviewed yet, live or ended (`review=needed`). Each shows only what its
/// caller may see; a malformed page is refused, saying what is allowed.
#[tokio::test]
async fn a_console_loads_what_is_live_and_history_a_page_at_a_time() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    let alice = d.user("alice").await;
    let journal =
        || NewRequest { task: "journal".into(), reason: Some("mail flow".into()), ticket: Some("INC-1".into()), ..Default::default() };
    // 230 of dave's requests end (cancelled); carol has one waiting.
    let mut ended = Vec::new();
    for _ in 0..230 {
        let id = dave.request(&journal()).await.unwrap().request.id;
        dave.cancel(id).await.unwrap();
        ended.push(id);
    }
    let carols = carol.request(&journal()).await.unwrap().request.id;

    // dave's own, newest first, in pages that join without a gap or an overlap.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = dave.my_requests(before, 100).await.unwrap();
        assert!(page.len() <= 100);
        assert!(page.iter().all(|r| r.requester == "dave"), "only dave's own");
        assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        paged.extend(page.iter().map(|r| r.id));
        match page.last() {
            Some(last) if page.len() == 100 => before = Some(last.id),
            _ => break,
        }
    }
    ended.reverse();
    assert_eq!(paged, ended, "every one of dave's requests, once, newest first");
    // An admin's own history is his own, however much he may see.
    assert!(d.admin().my_requests(None, 100).await.unwrap().is_empty());

    // Live: carol's pending request and, once approved, dave's with its active grant.
    let waiting = dave.request(&journal()).await.unwrap().request.id;
    let granted = alice.approve(waiting, None).await.unwrap().grant.unwrap().id;
    let live: Vec<_> = alice.live_requests().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(live, [carols, waiting], "pending, and given an active grant; nothing that ended");
    assert_eq!(carol.live_requests().await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [carols, waiting]);
    // dave approves nothing: he sees his own, never carol's.
    assert_eq!(dave.live_requests().await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [waiting]);
    assert!(dave.my_requests(None, 1000).await.unwrap().iter().all(|r| r.requester == "dave"));
    alice.revoke(granted, Some("done".into())).await.unwrap();
    assert_eq!(alice.live_requests().await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [carols]);

    // A break-glass grant waits for review after it ended, until someone reviews it.
    let glass = dave.request(&NewRequest { task: "glass".into(), reason: Some("outage".into()), ..Default::default() }).await.unwrap();
    let glass = glass.grant.unwrap().id;
    dave.relinquish(glass).await.unwrap();
    let to_review: Vec<_> = alice.grants_to_review().await.unwrap().into_iter().map(|g| g.id).collect();
    assert_eq!(to_review, [glass]);
    alice.review(glass, None).await.unwrap();
    assert!(alice.grants_to_review().await.unwrap().is_empty());

    // Malformed pages: refused, saying what is allowed.
    for (path, says) in [
        ("/v1/requests?state=mine&limit=0", "limit must be from 1 to 1000, not 0"),
        ("/v1/requests?state=mine&limit=1001", "limit must be from 1 to 1000, not 1001"),
        ("/v1/requests?state=mine&before=yesterday", "bad_id"),
        ("/v1/requests?state=pending&before=R5", "before and limit page only state=mine"),
        ("/v1/requests?state=old", "state must be 'pending', 'live', 'mine' or 'all'"),
        ("/v1/grants?review=later", "review must be 'needed'"),
        ("/v1/grants?review=needed&all=true", "review=needed already includes ended grants"),
    ] {
        let mut stream = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        let (status, body) = common::raw_get(&mut stream, path);
        assert!(status.contains("400"), "{path}: {status} {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
}
