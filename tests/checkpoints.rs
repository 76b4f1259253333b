//! Signed checkpoints outside the database: an untouched log verifies against them; a log cut
//! short, or a database rewritten whole with hashes that chain, is caught by `verify` and
//! refused at start; a checkpoint signed by another key is caught. Real daemons on real SQLite
//! files, the database edited behind the daemon's back with SQL, as someone with write access
//! to it would.

mod common;

use common::{Daemon, code, stderr, stdout};
use zsa::evidence::{self, PublicKey, SigningKey};
use zsa::model::wire::NewRequest;

/// Some history: a request granted at once, and a token issued and revoked.
async fn some_history(d: &mut Daemon) {
    let dave = d.user("dave").await;
    dave.request(&NewRequest { task: "restart".into(), ..Default::default() }).await.unwrap();
    let erin = d.admin().issue_token("erin").await.unwrap();
    d.admin().revoke_token(erin.id).await.unwrap();
}

fn last_seq(d: &Daemon) -> u64 {
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// With `checkpoint_events = 3`, the daemon signs by itself once three events were written,
/// and not again while nothing more is.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_signs_a_checkpoint_by_itself_every_n_events() {
    let mut d = Daemon::start_with(&common::POLICY.replace("[settings]", "[settings]\ncheckpoint_events = 3"));
    let file = d.state.join("checkpoints");
    some_history(&mut d).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while evidence::read(&file).unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no checkpoint was signed after {} events", last_seq(&d));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, first) = evidence::read(&file).unwrap().remove(0);
    assert!(first.seq >= 3, "{first:?}");
    // Its own event is not something new to sign.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(evidence::read(&file).unwrap().len(), 1, "nothing new was written, so nothing more was signed");
    assert_eq!(code(&d.cli(None, &["audit", "verify"]).await), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untouched_log_verifies_against_its_signed_checkpoints() {
    let mut d = Daemon::start();
    some_history(&mut d).await;
    let out = d.cli(None, &["audit", "checkpoint"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("signed event "), "{}", stdout(&out));
    // Asked again with nothing written since: the same checkpoint, nothing added to the log.
    let events = last_seq(&d);
    let again = d.cli(None, &["audit", "checkpoint"]).await;
    assert_eq!(stdout(&again), stdout(&out));
    assert_eq!(last_seq(&d), events, "asking again and again adds nothing to the log");
    some_history(&mut d).await;
    let out = d.cli(None, &["audit", "checkpoint"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let out = d.cli(None, &["audit", "key"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let key = PublicKey::parse(stdout(&out).lines().next().unwrap()).expect("`zsa audit key` prints the key");
    // The file outside the database holds both, each signed by that key.
    let file = d.state.join("checkpoints");
    let lines = evidence::read(&file).unwrap();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|(_, c)| c.signed_by(&key)));
    let out = d.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(&format!("the log holds all 2 checkpoints signed by {key}")), "{}", stdout(&out));
    // Someone who sees only their own may neither sign nor read the key.
    let out = d.cli(Some("dave"), &["audit", "checkpoint"]).await;
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("only auditors and admins"), "{}", stderr(&out));
    // A restart checks the log against the file, and it holds.
    d.stop();
    d.spawn();
    assert_eq!(code(&d.cli(None, &["audit", "verify"]).await), 0);
}

/// The newest events cut off (five policy loads, rows untouched, so the chain and the rows still
/// agree and the store's own check passes): `verify` names the newest checkpoint past the end,
/// and a restart is refused, saying what happened and what to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_cut_short_is_caught_by_verify_and_refused_at_start() {
    let mut d = Daemon::start();
    some_history(&mut d).await;
    for _ in 0..5 {
        d.admin().reload().await.unwrap();
    }
    let out = d.cli(None, &["audit", "checkpoint"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let signed = last_seq(&d) - 1; // the checkpoint event follows the event it signed
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    conn.execute("DELETE FROM events WHERE seq > ?1", [(signed - 5) as i64]).unwrap();
    drop(conn);
    let end = signed - 5;

    let out = d.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!("the log ends at {end} but checkpoint 1 in")) && said.contains(&format!("signed seq {signed}")),
        "{said}"
    );

    d.kill9();
    let refused = d.start_refused(&[]).expect("a daemon does not start from a log cut short");
    let said = stderr(&refused);
    assert!(said.contains("does not match the signed checkpoints") && said.contains(&format!("the log ends at {end}")), "{said}");
    assert!(said.contains("restore it from a backup"), "it says what to do: {said}");
}

/// A whole database swapped for another daemon's (its own chain, every hash recomputed, longer
/// than this one's): the checkpointed event no longer has the signed hash; the start is refused.
/// And a checkpoint line signed by another key is caught as forged.
#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_database_and_a_forged_checkpoint_are_caught() {
    let mut d = Daemon::start();
    some_history(&mut d).await;
    assert_eq!(code(&d.cli(None, &["audit", "checkpoint"]).await), 0);
    let mut other = Daemon::start();
    for _ in 0..3 {
        some_history(&mut other).await;
    }
    d.stop();
    other.stop();
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", other.db().display());
        let to = format!("{}{suffix}", d.db().display());
        let _ = std::fs::remove_file(&to);
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let refused = d.start_refused(&[]).expect("a daemon does not start from a rewritten database");
    let said = stderr(&refused);
    assert!(said.contains("but checkpoint 1 in") && said.contains("the log was rewritten"), "{said}");

    // A forged line: the right event and hash, another key's signature.
    let mut fresh = Daemon::start();
    some_history(&mut fresh).await;
    let conn = rusqlite::Connection::open(fresh.db()).unwrap();
    let hash: String = conn.query_row("SELECT hash FROM events WHERE seq = 2", [], |r| r.get(0)).unwrap();
    drop(conn);
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::set_permissions(elsewhere.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let forger = SigningKey::load_or_create(elsewhere.path()).unwrap();
    evidence::append(&fresh.state.join("checkpoints"), &forger.sign(2, &hash, chrono::Utc::now())).unwrap();
    let out = fresh.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is not signed by this daemon's key") && stderr(&out).contains("forged"), "{}", stderr(&out));
}

/// `zsa audit verify --offline` in a fresh directory, with no daemon and no database, only the
/// export, the public key and the checkpoint file: the untouched export verifies; one cut short,
/// one with an event changed, and the right export under another key are each refused, naming
/// what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn a_signed_export_verifies_offline_with_only_the_key_and_catches_tampering() {
    let mut d = Daemon::start();
    some_history(&mut d).await;
    assert_eq!(code(&d.cli(None, &["audit", "checkpoint"]).await), 0);
    some_history(&mut d).await;
    assert_eq!(code(&d.cli(None, &["audit", "checkpoint"]).await), 0);
    let key = stdout(&d.cli(None, &["audit", "key"]).await).lines().next().unwrap().to_string();
    let exported = d.dir.path().join("log.zsa");
    let out = d.cli(None, &["audit", "export", "--signed", exported.to_str().unwrap()]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("zsa audit verify --offline"), "it says how to check it: {}", stdout(&out));
    let out = d.cli(None, &["audit", "export", "--signed", exported.to_str().unwrap()]).await;
    assert_ne!(code(&out), 0, "an export never writes over a file");

    // Elsewhere: the export, the checkpoint file and the key; no daemon to ask.
    let away = tempfile::tempdir().unwrap();
    let (bundle, checkpoints) = (away.path().join("log.zsa"), away.path().join("checkpoints"));
    std::fs::copy(&exported, &bundle).unwrap();
    std::fs::copy(d.state.join("checkpoints"), &checkpoints).unwrap();
    d.kill9();
    let offline = |file: &std::path::Path, key: &str| {
        std::process::Command::new(common::BIN)
            .args(["audit", "verify", "--offline"])
            .arg(file)
            .args(["--key", key, "--checkpoints"])
            .arg(&checkpoints)
            .env("ZSA_SOCKET", away.path().join("no-daemon.sock"))
            .current_dir(away.path())
            .output()
            .unwrap()
    };
    let out = offline(&bundle, &key);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    // Two asked for; the export ends at the second, which still covered the whole log.
    assert!(stdout(&out).contains("ok: 2 checkpoints in the log signed by"), "{}", stdout(&out));
    assert!(stdout(&out).contains("ok: the export holds all 2 checkpoints in"), "{}", stdout(&out));

    let text = std::fs::read_to_string(&bundle).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = away.path().join("cut.zsa");
    std::fs::write(&cut, lines[..lines.len() - 5].join("\n")).unwrap();
    let out = offline(&cut, &key);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("the log ends at") && stderr(&out).contains("signed seq"), "{}", stderr(&out));

    let changed = away.path().join("changed.zsa");
    std::fs::write(&changed, text.replacen("restart", "rEstart", 1)).unwrap();
    let out = offline(&changed, &key);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("was changed after it was written"), "{}", stderr(&out));

    // Events made up after the last checkpoint, chained as they should be: signed by nobody.
    let last: zsa::store::RawEvent = serde_json::from_str(lines.last().unwrap()).unwrap();
    let body = format!("{{\"seq\":{},\"made\":\"up\"}}", last.seq + 1);
    let forged =
        zsa::store::RawEvent { seq: last.seq + 1, hash: zsa::store::chain::hash(&last.hash, &body), prev_hash: last.hash.clone(), body };
    let tail = away.path().join("tail.zsa");
    std::fs::write(&tail, format!("{text}{}\n", serde_json::to_string(&forged).unwrap())).unwrap();
    let plain = |file: &std::path::Path, extra: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(["audit", "verify", "--offline"])
            .arg(file)
            .args(["--key", &key])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = plain(&tail, &[]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains(&format!("events {}..{} come after the last checkpoint", last.seq + 1, last.seq + 1)),
        "{}",
        stderr(&out)
    );
    let out = plain(&tail, &["--allow-unsigned-tail"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("NOT signed"), "{}", stdout(&out));
    let empty = away.path().join("empty.zsa");
    std::fs::write(&empty, format!("{}\n", lines[0])).unwrap();
    assert_eq!(code(&plain(&empty, &[])), 1, "an export with no events proves nothing");

    let other = tempfile::tempdir().unwrap();
    std::fs::set_permissions(other.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let other_key = SigningKey::load_or_create(other.path()).unwrap().public().to_string();
    let out = offline(&bundle, &other_key);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is not signed by the key"), "{}", stderr(&out));
    // Several daemons' keys (several daemons sharing one store each sign with their own).
    let out = std::process::Command::new(common::BIN)
        .args(["audit", "verify", "--offline"])
        .arg(&bundle)
        .args(["--key", &key, "--key", &other_key])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// A checkpoint can go to another system through the notices: a rule `on = ["checkpoint"]` sends
/// every one, whole (seq, hash, time, key, signature), which checks with the audit key there.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_sent_elsewhere_through_the_notices() {
    let elsewhere = tempfile::tempdir().unwrap();
    let sink = elsewhere.path().join("checkpoints.jsonl");
    let channel = format!(
        "\n[channels.offsite]\nkind = \"file\"\npath = \"{}\"\n[[notify]]\non = [\"checkpoint\"]\nvia = \"offsite\"\n",
        sink.display()
    );
    let mut d = Daemon::start_with(&format!("{}{channel}", common::POLICY));
    some_history(&mut d).await;
    let out = d.cli(None, &["audit", "checkpoint"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let key = PublicKey::parse(stdout(&d.cli(None, &["audit", "key"]).await).lines().next().unwrap()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let sent = loop {
        let text = std::fs::read_to_string(&sink).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "the checkpoint was never sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let checkpoint: evidence::Checkpoint =
        serde_json::from_value(sent["facts"]["checkpoint"].clone()).unwrap_or_else(|e| panic!("{e}: {sent}"));
    assert!(checkpoint.signed_by(&key), "what was sent checks with the audit key: {sent}");
    assert_eq!(evidence::read(&d.state.join("checkpoints")).unwrap()[0].1, checkpoint, "the same checkpoint as the file's");
}

/// An event deleted from the middle of the log (the first policy load: no live row rests on it,
/// so only the chain can tell) stops the next start, though the tail and every checkpointed
/// event are intact.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_deleted_before_the_newest_checkpoint_is_refused_at_start() {
    let mut d = Daemon::start();
    some_history(&mut d).await;
    assert_eq!(code(&d.cli(None, &["audit", "checkpoint"]).await), 0);
    d.stop();
    rusqlite::Connection::open(d.db()).unwrap().execute("DELETE FROM events WHERE seq = 1", []).unwrap();
    let refused = d.start_refused(&[]).expect("a daemon does not start from a log with a hole");
    let said = stderr(&refused);
    assert!(said.contains("event 1 is missing"), "{said}");
}

/// The checkpoint file is evidence too: one that lost lines the log says were written (cut, or
/// replaced by an empty one) stops the start; an append a crash cut short does not, and the next
/// line starts on a line of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_file_cut_short_is_refused_but_a_torn_last_line_is_not() {
    let mut d = Daemon::start();
    let file = d.state.join("checkpoints");
    for _ in 0..2 {
        some_history(&mut d).await;
        assert_eq!(code(&d.cli(None, &["audit", "checkpoint"]).await), 0);
    }
    d.stop();
    let kept = std::fs::read_to_string(&file).unwrap();
    // Torn: half a line more, as a crash mid-append leaves it.
    std::fs::write(&file, format!("{kept}{{\"seq\":9")).unwrap();
    d.spawn();
    assert_eq!(code(&d.cli(None, &["audit", "checkpoint"]).await), 0);
    let out = d.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(evidence::read(&file).unwrap().len(), 3, "the torn line skipped, the new one whole");
    d.stop();
    // Emptied: the log names checkpoints of this key the file no longer has.
    std::fs::write(&file, "").unwrap();
    let refused = d.start_refused(&[]).expect("a daemon does not start when its checkpoint file lost lines");
    let said = stderr(&refused);
    assert!(said.contains("records a checkpoint of event") && said.contains("does not hold it"), "{said}");
}

/// A checkpoint file someone else could rewrite is no evidence: the daemon refuses to start,
/// naming it.
#[test]
fn a_checkpoint_file_others_can_write_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::unstarted(common::POLICY);
    let file = d.dir.path().join("checkpoints");
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = d.start_refused(&["--checkpoint-file", file.to_str().unwrap()]).expect("refused");
    let said = stderr(&refused);
    assert!(said.contains("the checkpoint file") && said.contains(file.to_str().unwrap()), "{said}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(d.start_refused(&["--checkpoint-file", file.to_str().unwrap()]).is_none(), "its own, private: it starts");
}

/// A lost audit key is said to be lost, not taken for a forgery: the start is refused, saying
/// the key is new and what to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_audit_key_is_named_as_such() {
    let mut d = Daemon::start();
    some_history(&mut d).await;
    assert_eq!(code(&d.cli(None, &["audit", "checkpoint"]).await), 0);
    d.stop();
    std::fs::remove_file(d.state.join("audit-key")).unwrap();
    let refused = d.start_refused(&[]).expect("refused");
    let said = stderr(&refused);
    assert!(said.contains("was made at this start") && said.contains("Put the old key back"), "{said}");
}
