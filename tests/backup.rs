//! `zsa admin backup` and `zsa admin restore` (issue 17): a backup taken while clients write is a
//! consistent copy that verifies; restored into the stopped daemon's state directory it serves
//! again, every request acknowledged before the backup there; a backup that does not verify, or
//! that the signed checkpoints do not vouch for, is refused and changes nothing; a restore under a
//! running daemon is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Daemon, code, stderr, stdout};
use zsa::model::wire::NewRequest;

fn zsa(args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::BIN).args(args).env_remove("ZSA_TOKEN").output().unwrap()
}

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_clients_write_restores_and_verifies() {
    // A checkpoint each 10 events: a backup holds several, as a real one does.
    let mut d = Daemon::start_with(&common::POLICY.replace("pending_ttl = \"1h\"\n", "pending_ttl = \"1h\"\ncheckpoint_events = 10\n"));
    let socket = d.socket.to_str().unwrap().to_string();
    let state = d.state.to_str().unwrap().to_string();
    let backup = d.dir.path().join("backup.db");
    let dave = d.user("dave").await;

    // Writers ask for the automatic task and give it back, over and over, while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..3 {
        let (dave, stop) = (dave.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let new = NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() };
                if let Ok(out) = dave.request(&new).await {
                    acked.push(out.request.id);
                    if let Some(g) = out.grant {
                        let _ = dave.relinquish(g.id).await;
                    }
                }
            }
            acked
        }));
    }
    // Long enough for checkpoints to be signed (each 10 events, looked for each second).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let backup_path = backup.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || zsa(&["--socket", &socket, "--json", "admin", "backup", &backup_path])).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let said: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let events = said["events"].as_u64().unwrap();
    assert!(events > 10, "writers were writing: {said}");
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    // Never over an existing file.
    let again = zsa(&["--socket", d.socket.to_str().unwrap(), "admin", "backup", backup.to_str().unwrap()]);
    assert_eq!(code(&again), 1);
    assert!(stderr(&again).contains("is already there; back up into a new file"), "{}", stderr(&again));
    // Not for anyone but admins.
    let refused = d.cli(Some("carol"), &["admin", "backup", d.dir.path().join("carol.db").to_str().unwrap()]).await;
    assert_eq!(code(&refused), 1, "{}", stderr(&refused));
    assert!(!d.dir.path().join("carol.db").exists());

    // Not under a running daemon.
    let running = zsa(&["admin", "restore", backup.to_str().unwrap(), "--state", &state]);
    assert_eq!(code(&running), 1);
    assert!(stderr(&running).contains("another zsa daemon is already using the state directory"), "{}", stderr(&running));

    assert!(d.stop().success());
    let db_before = sha256(&d.db());
    // The clean stop signed a checkpoint past the backup's end: restoring loses events, said first.
    let lossy = zsa(&["admin", "restore", backup.to_str().unwrap(), "--state", &state]);
    assert_eq!(code(&lossy), 1);
    assert!(
        stderr(&lossy).contains(&format!("the backup ends at event {events}")) && stderr(&lossy).contains("--accept-loss"),
        "{}",
        stderr(&lossy)
    );
    assert_eq!(sha256(&d.db()), db_before, "a refused restore changed the store");

    // A backup changed afterwards does not verify, and is refused.
    let forged = d.dir.path().join("forged.db");
    std::fs::copy(&backup, &forged).unwrap();
    {
        let c = rusqlite::Connection::open(&forged).unwrap();
        let body: String = c.query_row("SELECT body FROM events WHERE seq = 3", [], |r| r.get(0)).unwrap();
        let changed = body.replacen("dave", "eve", 1);
        assert_ne!(body, changed, "event 3 names dave: {body}");
        c.execute("UPDATE events SET body = ?1 WHERE seq = 3", [changed]).unwrap();
    }
    let bad = zsa(&["admin", "restore", forged.to_str().unwrap(), "--state", &state, "--accept-loss"]);
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("does not verify") && stderr(&bad).contains("nothing was changed"), "{}", stderr(&bad));
    assert_eq!(sha256(&d.db()), db_before);

    // Not a store, or another daemon's log: refused, nothing changed.
    let garbage = d.dir.path().join("garbage.db");
    std::fs::write(&garbage, "not a database").unwrap();
    let out = zsa(&["admin", "restore", garbage.to_str().unwrap(), "--state", &state]);
    assert!(code(&out) == 1 && stderr(&out).contains("is not a zsa store"), "{}", stderr(&out));
    let foreign = foreign_backup(d.dir.path()).await;
    let out = zsa(&["admin", "restore", foreign.to_str().unwrap(), "--state", &state, "--accept-loss"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("nothing ties") && stderr(&out).contains("nothing was changed"), "{}", stderr(&out));
    assert_eq!(sha256(&d.db()), db_before);

    let ok = zsa(&["admin", "restore", backup.to_str().unwrap(), "--state", &state, "--accept-loss"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(stdout(&ok).contains(&format!("restored {events} events")), "{}", stdout(&ok));
    let kept: Vec<String> = std::fs::read_dir(&d.state).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(kept.iter().any(|n| n.starts_with("zsa.db.before-restore-")), "{kept:?}");
    assert!(kept.iter().any(|n| n.starts_with("checkpoints.before-restore-")), "{kept:?}");

    // A copy a backup left unfinished (the daemon stopped while making one) goes at the start.
    let unfinished = d.state.join("backup-1-2.db");
    std::fs::write(&unfinished, "a whole copy of the store").unwrap();
    // It serves again, the chain verifies, and every request acknowledged up to the backup is there.
    d.spawn();
    assert!(!unfinished.exists(), "a backup copy was left in the state directory");
    let verified = d.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
    let log = d.admin().audit(&zsa::client::AuditParams { limit: Some(10_000), ..Default::default() }).await.unwrap();
    let in_log: std::collections::BTreeSet<_> = log
        .iter()
        .filter_map(|e| match &e.change {
            zsa::model::Change::RequestCreated { request, .. } => Some(*request),
            _ => None,
        })
        .collect();
    let backed: u64 = log.iter().filter(|e| e.seq <= events).count() as u64;
    assert_eq!(backed, events, "the restored log holds the backup's events");
    // The backup is the log up to one moment: every request numbered up to the newest it holds
    // is there (requests are numbered in the order they were committed).
    let newest = in_log.iter().max().copied().expect("requests were backed up");
    for r in acked.iter().filter(|r| **r <= newest) {
        assert!(in_log.contains(r), "{r} was acknowledged before {newest}, which the backup holds, but is not there");
    }
    assert!(acked.iter().filter(|r| **r <= newest).count() > 10, "writers were acknowledged before the backup");
    d.stop();
}

/// A backup of another daemon's store with more than the first checkpoint's events: the same
/// kinds of events, other hashes.
async fn foreign_backup(dir: &std::path::Path) -> std::path::PathBuf {
    let mut other = Daemon::start();
    let dave = other.user("dave").await;
    for _ in 0..15 {
        let out = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() }).await.unwrap();
        dave.relinquish(out.grant.expect("automatic").id).await.unwrap();
    }
    let file = dir.join("foreign.db");
    let out = zsa(&["--socket", other.socket.to_str().unwrap(), "admin", "backup", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    other.stop();
    file
}
