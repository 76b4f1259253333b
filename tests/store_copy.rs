//! `zsa store copy`: a SQLite daemon's whole state moved to the machine's real PostgreSQL and
//! back, chain and head intact, and served from there by a real daemon; a copy into a store that
//! holds a log, or from a log that does not verify, is refused and writes nothing.

mod common;

use common::postgres::PgDatabase;
use common::{BIN, Daemon, code, stderr, stdout};
use zsa::model::wire::NewRequest;

fn zsa_store_copy(from: &str, to: &str) -> std::process::Output {
    std::process::Command::new(BIN).args(["store", "copy", "--from", from, "--to", to]).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_state_moves_to_postgresql_and_back_with_its_chain_and_is_served_from_there() {
    let Some(db) = PgDatabase::create() else { return };
    // Approvers hear of every request through a file channel, so the outbox holds sent notices.
    let notes = tempfile::tempdir().unwrap();
    let channel = format!(
        "\n[channels.log]\nkind = \"file\"\npath = \"{}\"\n[[notify]]\non = [\"request_created\"]\nto = [\"approvers\"]\nvia = \"log\"\n",
        notes.path().join("notices.jsonl").display()
    );
    let mut d = Daemon::start_with(&format!("{}{channel}", common::POLICY));
    let (dave, alice) = (d.user("dave").await, d.user("alice").await);
    let journal = NewRequest {
        task: "journal".into(),
        duration_secs: Some(1800),
        reason: Some("mail flow".into()),
        ticket: Some("INC-2".into()),
        ..Default::default()
    };
    let id = dave.request(&journal).await.unwrap().request.id;
    let grant = alice.approve(id, None).await.unwrap().grant.unwrap().id;
    d.admin().disable("carol", None).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let notices = loop {
        let n = d.admin().notices(false).await.unwrap();
        if !n.is_empty() && n.iter().all(|n| n.state.as_str() == "sent") {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "the notices were never sent: {n:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    d.stop();
    // The log as the stop left it (a clean stop signs a last checkpoint).
    let (events, head): (i64, String) = rusqlite::Connection::open(d.db())
        .unwrap()
        .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();

    let from = format!("sqlite:{}", d.db().display());
    let out = zsa_store_copy(&from, &db.url);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("copied {events} events (chain head {head})")), "{}", stdout(&out));
    assert!(stdout(&out).contains("the copy verifies"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("{} notices in the outbox", notices.len())), "{}", stdout(&out));

    // Served from PostgreSQL: the same grant, the same disabled user, the same chain.
    d.args = vec!["--store".into(), db.url.clone()];
    d.spawn();
    let admin = d.admin();
    assert_eq!(admin.show_grant(grant).await.unwrap().holder, "dave");
    assert_eq!(admin.notices(false).await.unwrap(), notices, "the outbox came along as it was: ids, states, attempts, times");
    assert!(dave.check("journal", None).await.unwrap().allowed, "tokens came along");
    assert!(d.user("carol").await.request(&journal).await.is_err(), "carol is still disabled");
    let after = admin.verify().await.unwrap();
    assert!(after.ok, "{after:?}");
    assert!(after.events > events as u64, "the daemon went on writing after the copy (its policy load)");

    // Into a store that already holds a log: refused, nothing written.
    d.stop();
    let out = zsa_store_copy(&from, &db.url);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("already holds a log"), "{}", stderr(&out));

    // And back into a new SQLite file, which a daemon serves too.
    let back = d.dir.path().join("back.db");
    let out = zsa_store_copy(&db.url, &format!("sqlite:{}", back.display()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("the copy verifies"), "{}", stdout(&out));
    d.args = vec!["--store".into(), format!("sqlite:{}", back.display())];
    d.spawn();
    assert_eq!(d.admin().show_grant(grant).await.unwrap().holder, "dave");
    assert!(d.admin().verify().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_does_not_verify_is_not_copied() {
    let Some(db) = PgDatabase::create() else { return };
    let mut d = Daemon::start();
    d.user("dave").await;
    d.stop();
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    conn.execute("UPDATE events SET body = replace(body, 'dave', 'mallory') WHERE body LIKE '%dave%'", []).unwrap();
    drop(conn);
    let out = zsa_store_copy(&format!("sqlite:{}", d.db().display()), &db.url);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("does not verify") && stderr(&out).contains("nothing was written"), "{}", stderr(&out));
    let empty = db.execute("SELECT 1 FROM pg_tables WHERE tablename = 'events'");
    assert_eq!(empty, 0, "nothing was made in the target");
}

/// A store URL that is refused (here: another host, which zsa will not reach without TLS) is
/// refused without repeating its password, whether given to the daemon or to `store copy`.
#[test]
fn a_refused_store_url_never_shows_its_password() {
    let secret = "hunter2-not-for-logs";
    let url = format!("postgres://zsa:{secret}@db.example.com:5432/zsa");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &common::current_user())).unwrap();
    let daemon = std::process::Command::new(BIN)
        .args(["daemon", "--check-config", "--policy"])
        .arg(&policy)
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--store", &url])
        .output()
        .unwrap();
    let copy = zsa_store_copy(&url, &format!("sqlite:{}", dir.path().join("x.db").display()));
    let from_env = std::process::Command::new(BIN)
        .args(["daemon", "--check-config", "--policy"])
        .arg(&policy)
        .env("ZSA_STORE", format!("postgres://zsa@localhost/zsa?password={secret}&host=db.example.com"))
        .output()
        .unwrap();
    for out in [daemon, copy, from_env] {
        assert_ne!(code(&out), 0, "refused");
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("is not this machine"), "{said}");
        assert!(!said.contains(secret), "the password was shown: {said}");
    }
}
