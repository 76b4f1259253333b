//! The README's short tour, command for command through the real CLI, against a daemon whose
//! state is in the machine's real PostgreSQL (a database of the test's own): nothing a person
//! types changes with the backend.

mod common;

use common::postgres::PgDatabase;
use common::{Daemon, code, stderr, stdout};

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_tour_runs_unchanged_on_a_postgresql_backed_daemon() {
    let Some(db) = PgDatabase::create() else { return };
    let mut d = Daemon::start_with_args(common::POLICY, &[], &["--store".into(), db.url.clone()]);
    let ok = async |d: &mut Daemon, user: Option<&str>, args: &[&str]| {
        let out = d.cli(user, args).await;
        assert_eq!(code(&out), 0, "zsa {}: {}", args.join(" "), stderr(&out));
        stdout(&out)
    };
    ok(&mut d, Some("dave"), &["whoami"]).await;
    assert!(ok(&mut d, Some("dave"), &["tasks"]).await.contains("journal"));
    let asked = ok(&mut d, Some("dave"), &["request", "journal", "--for", "30m", "--reason", "legal hold", "--ticket", "INC-1042"]).await;
    assert!(asked.contains("R1"), "{asked}");
    assert!(ok(&mut d, Some("alice"), &["requests", "--pending"]).await.contains("R1"));
    ok(&mut d, Some("alice"), &["approve", "R1", "--comment", "ok"]).await;
    assert!(ok(&mut d, Some("dave"), &["grants"]).await.contains("G1"));
    ok(&mut d, Some("dave"), &["check", "journal"]).await;
    assert!(ok(&mut d, Some("dave"), &["show", "R1"]).await.contains("legal hold"));
    ok(&mut d, Some("dave"), &["relinquish", "G1"]).await;
    let out = d.cli(Some("dave"), &["check", "journal"]).await;
    assert_eq!(code(&out), 1, "no longer held: {}", stdout(&out));
    ok(&mut d, Some("carol"), &["request", "journal", "--reason", "again", "--ticket", "INC-7"]).await;
    ok(&mut d, Some("bob"), &["deny", "R2", "--comment", "not now"]).await;
    assert!(ok(&mut d, None, &["audit", "--since", "7d", "--user", "carol"]).await.contains("request_denied"));
    assert!(ok(&mut d, None, &["audit", "verify"]).await.contains("ok"));
    let issued = ok(&mut d, None, &["admin", "token", "issue", "erin", "--ttl", "30d"]).await;
    assert!(issued.trim().starts_with("zsa_"), "the token alone on standard output: {issued}");
    assert!(ok(&mut d, None, &["admin", "token", "list"]).await.contains("erin"));
    ok(&mut d, None, &["admin", "disable", "dave", "--reason", "left"]).await;
    assert_ne!(code(&d.cli(Some("dave"), &["request", "restart"]).await), 0, "a disabled user is refused");
    ok(&mut d, None, &["admin", "enable", "dave"]).await;
    ok(&mut d, Some("dave"), &["request", "restart", "--for", "10m"]).await;
    ok(&mut d, None, &["admin", "reload"]).await;
    assert!(ok(&mut d, None, &["audit", "verify"]).await.contains("ok"));
}
