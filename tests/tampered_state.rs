//! The daemon does not serve from current-state rows that were changed behind its back: before
//! serving it checks every live row against the events that wrote it, refuses to start naming
//! the row, and rebuilds from the log only when told to (and records that it did).

mod common;

use common::{Daemon, stderr};
use zsa::client::AuditParams;
use zsa::model::Change;
use zsa::model::wire::NewRequest;

fn sql(d: &Daemon, statement: &str) {
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    assert!(conn.execute(statement, []).unwrap() >= 1, "{statement} changed nothing");
}

/// dave holds G1 (journal, 30 minutes) and T1..; alice's approval is on pending R2.
async fn a_daemon_with_live_state() -> Daemon {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let r = NewRequest { task: "journal".into(), duration_secs: Some(1800), reason: Some("mail flow".into()), ..Default::default() };
    let id = dave.request(&r).await.unwrap().request.id;
    d.user("alice").await.approve(id, None).await.unwrap();
    let export = NewRequest { task: "export".into(), duration_secs: Some(600), ..Default::default() };
    let id = dave.request(&export).await.unwrap().request.id;
    d.user("bob").await.approve(id, None).await.unwrap();
    d.stop();
    d
}

#[tokio::test]
async fn an_edited_grant_row_stops_the_start_until_the_state_is_rebuilt_from_the_log() {
    let mut d = a_daemon_with_live_state().await;
    sql(
        &d,
        "UPDATE grants SET expires_at = '2099-01-01T00:00:00.000000Z', body = json_set(body, '$.expires_at', '2099-01-01T00:00:00Z') WHERE id = 1",
    );
    let out = d.start_refused(&[]).expect("the daemon must refuse to serve an edited grant");
    assert_ne!(out.status.code(), Some(0));
    let msg = stderr(&out);
    assert!(msg.contains("the grants row of G1 does not match the log"), "{msg}");
    assert!(msg.contains("--rebuild-from-log"), "the refusal says what to do: {msg}");

    // Told to, it rebuilds from the log: the grant ends when it always did, and it is recorded.
    assert!(d.start_refused(&["--rebuild-from-log"]).is_none(), "the rebuild did not start the daemon");
    d.spawn();
    let g = d.admin().show_grant(zsa::model::GrantId(1)).await.unwrap();
    assert!(g.expires_at.timestamp() < 4_000_000_000, "the 2099 expiry survived the rebuild: {}", g.expires_at);
    let events = d.admin().audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap();
    let problem = events.iter().find_map(|e| match &e.change {
        Change::StateRebuilt { problem } => Some(problem.clone()),
        _ => None,
    });
    assert!(problem.expect("the rebuild is on the record").contains("grants row of G1"));
    assert!(d.admin().verify().await.unwrap().ok);
}

#[tokio::test]
async fn every_kind_of_live_row_is_checked_before_serving() {
    let edits = [
        // A revoked token made valid again, and a valid one's owner changed.
        ("tokens", "UPDATE tokens SET user = 'carol', body = json_set(body, '$.user', 'carol') WHERE id = 1"),
        // An approval added by hand to a pending request.
        (
            "requests",
            "UPDATE requests SET body = json_insert(body, '$.approvals[#]', json('{\"by\":\"carol\",\"at\":\"2026-01-01T00:00:00Z\"}')) WHERE id = 2",
        ),
        // A grant planted with no event behind it.
        (
            "grants",
            "INSERT INTO grants (id, holder, task, state, expires_at, body, seq, hash) SELECT 77, holder, task, state, expires_at, json_set(body, '$.id', 'G77', '$.request', 'R77'), seq, hash FROM grants WHERE id = 1",
        ),
        // A row that names an older event as its last writer (an approval's row rolled back).
        ("requests", "UPDATE requests SET seq = seq - 1 WHERE id = 2"),
    ];
    for (table, edit) in edits {
        let d = a_daemon_with_live_state().await;
        sql(&d, edit);
        let out = d.start_refused(&[]).unwrap_or_else(|| panic!("the daemon served after: {edit}"));
        let msg = stderr(&out);
        assert!(msg.contains(&format!("the {table} row of")) && msg.contains("does not match the log"), "{edit}: {msg}");
    }
}

#[tokio::test]
async fn a_tokens_expiry_and_scope_are_checked_against_the_log_and_a_rebuild_keeps_its_last_use() {
    use zsa::model::TokenScope;
    use zsa::model::wire::IssueToken;
    let edits = [
        // Its expiry pushed out, or taken away; its scope widened.
        "UPDATE tokens SET body = json_set(body, '$.expires_at', '2099-01-01T00:00:00Z') WHERE id = 1",
        "UPDATE tokens SET body = json_remove(body, '$.expires_at') WHERE id = 1",
        "UPDATE tokens SET body = json_remove(body, '$.scope') WHERE id = 1",
    ];
    for edit in edits {
        let mut d = Daemon::start();
        let asked = IssueToken { user: "dave".into(), ttl_secs: Some(3600), scope: TokenScope::Check, ..Default::default() };
        let issued = d.admin().issue_token_with(&asked).await.unwrap();
        zsa::client::Client::new(&d.socket, Some(issued.token)).unwrap().whoami().await.unwrap();
        d.stop();
        let used = || -> Option<String> {
            let conn = rusqlite::Connection::open(d.db()).unwrap();
            conn.query_row("SELECT last_used FROM tokens WHERE id = 1", [], |r| r.get(0)).unwrap()
        };
        let last_used = used().expect("a clean stop saves when the token was last used");
        sql(&d, edit);
        let out = d.start_refused(&[]).unwrap_or_else(|| panic!("the daemon served after: {edit}"));
        assert!(stderr(&out).contains("the tokens row of T1 does not match the log"), "{edit}: {}", stderr(&out));

        assert!(d.start_refused(&["--rebuild-from-log"]).is_none(), "the rebuild did not start the daemon");
        assert_eq!(used(), Some(last_used.clone()), "the rebuild keeps when the token was last used");
        d.spawn();
        let t = d.admin().tokens().await.unwrap().into_iter().find(|t| t.id.0 == 1).unwrap();
        assert_eq!((t.expires_at, t.scope), (issued.expires_at, TokenScope::Check), "{edit}");
        assert!(t.last_used.is_some());
    }
}

#[tokio::test]
async fn a_broken_log_is_not_rebuilt_from() {
    let d = a_daemon_with_live_state().await;
    sql(&d, "UPDATE events SET body = replace(body, 'mail flow', 'other') WHERE kind = 'request_created'");
    let out = d.start_refused(&[]).expect("an edited event of a live grant stops the start");
    assert!(stderr(&out).contains("was changed after it was written"), "{}", stderr(&out));
    let out = d.start_refused(&["--rebuild-from-log"]).expect("a broken log cannot be rebuilt from");
    let msg = stderr(&out);
    assert!(msg.contains("the log itself does not verify at event"), "{msg}");
}

/// Makes the database look as version 1 wrote it: no event records, no row stamps.
fn downgrade_to_version_1(d: &Daemon) {
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    conn.execute_batch("DROP INDEX events_record; ALTER TABLE events DROP COLUMN record;").unwrap();
    for table in ["requests", "grants", "tokens", "disabled_users", "runs"] {
        conn.execute_batch(&format!("ALTER TABLE {table} DROP COLUMN seq; ALTER TABLE {table} DROP COLUMN hash;")).unwrap();
    }
    conn.execute_batch("PRAGMA user_version = 1;").unwrap();
}

#[tokio::test]
async fn a_database_from_before_the_row_stamps_is_upgraded_without_laundering_an_edited_row() {
    let mut d = a_daemon_with_live_state().await;
    downgrade_to_version_1(&d);
    d.spawn();
    assert!(d.admin().check("journal", Some("dave")).await.unwrap().allowed);
    assert!(d.admin().verify().await.unwrap().ok, "the upgrade stamps every row with its newest event");
    d.stop();

    // An edit made before the upgrade is still caught after it: the upgrade never rewrites rows.
    downgrade_to_version_1(&d);
    sql(&d, "UPDATE grants SET body = json_set(body, '$.expires_at', '2099-01-01T00:00:00Z') WHERE id = 1");
    let out = d.start_refused(&[]).expect("an edited row survives no upgrade");
    assert!(stderr(&out).contains("the grants row of G1 does not match the log"), "{}", stderr(&out));
}

/// Ways around the check found in review: resurrecting ended things by rolling rows back and
/// hiding the events that ended them, and deleting rows outright.
#[tokio::test]
async fn rolled_back_or_deleted_rows_and_relabelled_events_are_caught() {
    let setup = || async {
        let mut d = Daemon::start();
        let dave = d.user("dave").await;
        let r = NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() };
        let g = dave.request(&r).await.unwrap().grant.unwrap();
        d.admin().revoke(g.id, Some("done".into())).await.unwrap();
        d.admin().disable("carol", None).await.unwrap();
        let t = d.admin().issue_token("erin").await.unwrap();
        d.admin().revoke_token(t.id).await.unwrap();
        d.stop();
        d
    };
    // An event's record is computed from its hashed body: it cannot be relabelled on its own.
    let d = setup().await;
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    let e = conn.execute("UPDATE events SET record = NULL WHERE kind = 'grant_revoked'", []).expect_err("record is generated");
    assert!(e.to_string().contains("generated column"), "{e}");
    // The revoked grant rolled back to active, stamped with the event that started it.
    conn.execute_batch(
        "UPDATE grants SET state = 'active', body = json_remove(json_set(body, '$.state', 'active'), '$.ended'),
             seq = (SELECT seq FROM events WHERE kind = 'grant_started'), hash = (SELECT hash FROM events WHERE kind = 'grant_started')
         WHERE id = 1;",
    )
    .unwrap();
    drop(conn);
    let out = d.start_refused(&[]).expect("a resurrected grant must stop the start");
    assert!(stderr(&out).contains("the grants row of G1 does not match the log"), "{}", stderr(&out));

    // The revoked token made valid again.
    let d = setup().await;
    sql(
        &d,
        "UPDATE tokens SET revoked = 0, body = json_set(body, '$.revoked', json('false')),
             seq = (SELECT seq FROM events WHERE kind = 'token_issued' AND record = 'T' || tokens.id),
             hash = (SELECT hash FROM events WHERE kind = 'token_issued' AND record = 'T' || tokens.id)
         WHERE json_extract(body, '$.user') = 'erin'",
    );
    let out = d.start_refused(&[]).expect("an un-revoked token must stop the start");
    assert!(stderr(&out).contains("the tokens row of T") && stderr(&out).contains("does not match the log"), "{}", stderr(&out));

    // A disabled user's row deleted: she would be let back in.
    let d = setup().await;
    sql(&d, "DELETE FROM disabled_users WHERE user = 'carol'");
    let out = d.start_refused(&[]).expect("a deleted disabled_users row must stop the start");
    assert!(stderr(&out).contains("the disabled_users row of user carol is missing"), "{}", stderr(&out));

    // A token's row deleted.
    let d = setup().await;
    sql(&d, "DELETE FROM tokens WHERE json_extract(body, '$.user') = 'erin'");
    let out = d.start_refused(&[]).expect("a deleted token row must stop the start");
    assert!(stderr(&out).contains("is missing, though the log issued it"), "{}", stderr(&out));
}

#[tokio::test]
async fn ids_are_never_given_twice_though_ended_rows_were_deleted() {
    let mut d = a_daemon_with_live_state().await;
    // R1/G1 are live; delete nothing live, but every ended row and the pending R2's approvals stay.
    d.spawn();
    let dave = d.user("dave").await;
    let r = NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() };
    let g = dave.request(&r).await.unwrap().grant.unwrap();
    dave.relinquish(g.id).await.unwrap();
    d.stop();
    sql(&d, &format!("DELETE FROM requests WHERE id = {0}; ", g.id.0));
    sql(&d, &format!("DELETE FROM grants WHERE id = {0}", g.id.0));
    d.spawn();
    let next = d.user("dave").await.request(&r).await.unwrap().request.id;
    assert!(next.0 > g.id.0, "an id was given twice: {next} after {}", g.id);
}
