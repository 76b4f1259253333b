//! A daemon reaches PostgreSQL over TLS, with the server's certificate checked against the roots
//! its store URL names, on the machine's real server (its own certificate: Debian's, which names
//! localhost). A certificate the roots do not sign, a name the certificate does not carry, and
//! roots anyone could rewrite are each refused before anything is sent.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::postgres::PgDatabase;
use common::{Daemon, stderr};
use zsa::model::wire::NewRequest;

/// The server's own certificate, which the tests trust as its root; the server must speak TLS.
fn server_certificate(db: &PgDatabase) -> String {
    assert_eq!(
        db.text("SHOW ssl"),
        "on",
        "the machine's PostgreSQL does not offer TLS (ssl = off); these tests need it on, as Debian's package sets it up (ssl = on with the snakeoil certificate)"
    );
    db.text("SHOW ssl_cert_file")
}

/// A store URL naming `host` for the certificate's name check and 127.0.0.1 to connect to.
fn tls_url(db: &PgDatabase, host: &str, roots: &str) -> String {
    format!("postgres://root@{host}:5432/{}?hostaddr=127.0.0.1&sslmode=require&sslrootcert={roots}", db.name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_reaches_postgresql_over_tls_checked_against_its_roots() {
    let Some(db) = PgDatabase::create() else { return };
    let cert = server_certificate(&db);
    let mut d = Daemon::start_with_args(common::POLICY, &[], &["--store".to_string(), tls_url(&db, "localhost", &cert)]);
    let dave = d.user("dave").await;
    let made = dave.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    assert!(made.grant.is_some(), "the daemon decides and records over TLS");
    assert!(d.admin().verify().await.unwrap().ok);
    // Every session the daemon holds on the database is encrypted.
    let sessions = db.text(&format!(
        "SELECT count(*) || ' ' || count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = '{}' AND a.application_name = 'zsa'",
        db.name
    ));
    let (all, over_tls) = sessions.split_once(' ').unwrap();
    assert!(all.parse::<u32>().unwrap() >= 2, "the daemon's sessions are there: {sessions}");
    assert_eq!(all, over_tls, "every one of the daemon's sessions is over TLS: {sessions}");
}

#[test]
fn a_certificate_the_roots_do_not_vouch_for_is_refused_and_nothing_is_sent() {
    let Some(db) = PgDatabase::create() else { return };
    let cert = server_certificate(&db);
    let d = Daemon::unstarted(common::POLICY);
    let nothing_written = || db.text("SELECT count(*)::TEXT FROM pg_tables WHERE tablename = 'events'") == "0";

    // Roots of someone else's: a CA that never signed the server's certificate.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_roots = d.dir.path().join("other-ca.pem");
    std::fs::write(&other_roots, other.cert.pem()).unwrap();
    let refused = d.start_refused(&["--store", &tls_url(&db, "localhost", other_roots.to_str().unwrap())]).expect("refused");
    let said = stderr(&refused);
    assert!(said.contains("cannot connect to") && said.contains("not signed by the roots in sslrootcert"), "{said}");
    assert!(nothing_written(), "nothing was written through a connection that was not trusted");

    // The right roots, but a name the certificate does not carry.
    let refused = d.start_refused(&["--store", &tls_url(&db, "127.0.0.1", &cert)]).expect("refused");
    let said = stderr(&refused);
    assert!(said.contains("cannot connect to") && said.to_lowercase().contains("certificate"), "{said}");
    assert!(nothing_written());

    // Roots anyone could rewrite are not roots.
    let open_roots = d.dir.path().join("open-ca.pem");
    std::fs::copy(&cert, &open_roots).unwrap();
    std::fs::set_permissions(&open_roots, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = d.start_refused(&["--store", &tls_url(&db, "localhost", open_roots.to_str().unwrap())]).expect("refused");
    let said = stderr(&refused);
    assert!(said.contains("cannot set up TLS") && said.contains("open-ca.pem"), "{said}");
    assert!(nothing_written());

    // And with the server's own certificate as the roots, it starts.
    assert!(d.start_refused(&["--store", &tls_url(&db, "localhost", &cert)]).is_none(), "the right roots and name start the daemon");
}
