//! `zsa admin backup FILE` (asks the running daemon for a consistent copy of its SQLite store,
//! writes it to a new file and verifies it) and `zsa admin restore FILE` (offline: puts a
//! verified backup in place of a stopped daemon's store, keeping the one it replaces).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{CliError, CmdResult};
use crate::client::Client;
use crate::model::wire::VerifyReport;
use crate::store::{EventFilter, Store, StoreError};

/// Opens `file` as a SQLite store and verifies its chain and rows.
fn verify(file: &Path) -> Result<(Box<dyn Store>, VerifyReport), StoreError> {
    let mut store = crate::store::open(&crate::store::Location::Sqlite(file.to_path_buf()))?;
    let report = store.verify()?;
    Ok((store, report))
}

fn head(report: &VerifyReport) -> String {
    report.head.clone().unwrap_or_else(|| "none: the log is empty".into())
}

pub async fn backup(client: &Client, file: &Path, json: bool) -> CmdResult {
    if std::fs::symlink_metadata(file).is_ok() {
        return Err(CliError::Refused(format!("{} is already there; back up into a new file", file.display())));
    }
    // Asked first: a refusal leaves no file behind.
    let mut response = client.backup().await?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| CliError::Refused(format!("cannot create {}: {e}", file.display())))?;
    let mut bytes = 0u64;
    let written: Result<(), String> = async {
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("the daemon stopped sending the copy: {e}"))? {
            out.write_all(&chunk).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            bytes += chunk.len() as u64;
        }
        out.sync_all().map_err(|e| format!("cannot write {}: {e}", file.display()))
    }
    .await;
    if let Err(why) = written {
        let _ = std::fs::remove_file(file);
        return Err(CliError::Refused(format!("{why}; the partial copy was removed")));
    }
    let path = file.to_path_buf();
    let (_, report) = tokio::task::spawn_blocking(move || verify(&path))
        .await
        .map_err(|e| CliError::Other(e.into()))?
        .map_err(|e| CliError::Refused(format!("the copy in {} cannot be read as a store: {e}", file.display())))?;
    if !report.ok {
        return Err(CliError::Refused(format!(
            "the copy in {} does not verify ({}); it is kept for inspection",
            file.display(),
            report.problem.as_deref().unwrap_or("unknown problem")
        )));
    }
    if json {
        super::output::json_line(&serde_json::json!({"file": file, "bytes": bytes, "events": report.events, "head": report.head}));
    } else {
        println!(
            "backed up {} events (chain head {}) to {}, {bytes} bytes; the copy verifies",
            report.events,
            head(&report),
            file.display()
        );
    }
    Ok(())
}

/// Why a PostgreSQL store is not restored here, and what does.
const POSTGRES_RESTORE: &str = "the state in PostgreSQL: restore it with PostgreSQL's own tools (pg_restore), or copy a SQLite backup into an empty database with zsa store copy";

/// What `restore` did.
#[derive(serde::Serialize)]
struct Restored {
    events: u64,
    head: Option<String>,
    replaced: Option<PathBuf>,
    checkpoints_moved: Option<PathBuf>,
}

pub async fn restore(args: RestoreArgs<'_>, json: bool) -> CmdResult {
    // Where the daemon keeps its store and checkpoints: its config file with the flags over it.
    let file_settings = super::daemon::config(args.config).map_err(|problems| CliError::Refused(problems.join("\n")))?;
    let (mut state, mut db, mut checkpoints) = (None, None, None);
    if let Some(f) = file_settings {
        state = f.state;
        checkpoints = f.checkpoint_file;
        match f.store {
            Some(crate::store::Location::Sqlite(path)) => db = Some(path),
            Some(crate::store::Location::Postgres(_)) => {
                return Err(CliError::Refused(format!("{} keeps {POSTGRES_RESTORE}", f.path.display())));
            }
            None => {}
        }
    }
    if let Some(given) = args.store {
        match crate::store::Location::parse(given).map_err(|e| CliError::Usage(format!("--store: {e}")))? {
            crate::store::Location::Sqlite(path) => db = Some(path),
            crate::store::Location::Postgres(_) => {
                return Err(CliError::Refused(format!("--store names a store that keeps {POSTGRES_RESTORE}")));
            }
        }
    }
    let state = args.state.map(Path::to_path_buf).or(state).unwrap_or_else(crate::config::default_state_dir);
    let db = db.unwrap_or_else(|| state.join("zsa.db"));
    let checkpoints = args.checkpoint_file.map(Path::to_path_buf).or(checkpoints).unwrap_or_else(|| state.join("checkpoints"));
    let (file, accept_loss) = (args.file.to_path_buf(), args.accept_loss);
    let restored = tokio::task::spawn_blocking(move || restore_offline(&file, &state, &db, &checkpoints, accept_loss))
        .await
        .map_err(|e| CliError::Other(e.into()))??;
    if json {
        super::output::json_line(&restored);
    } else {
        println!("restored {} events (chain head {}); the backup verifies", restored.events, restored.head.as_deref().unwrap_or("none"));
        if let Some(old) = &restored.replaced {
            println!("the store it replaced is kept at {}", old.display());
        }
        if let Some(moved) = &restored.checkpoints_moved {
            println!(
                "the checkpoints that vouched for the lost events are kept at {}; those the backup holds stay in force",
                moved.display()
            );
        }
    }
    Ok(())
}

/// `zsa admin restore`'s arguments.
pub struct RestoreArgs<'a> {
    pub file: &'a Path,
    pub config: Option<&'a Path>,
    pub state: Option<&'a Path>,
    pub store: Option<&'a str>,
    pub checkpoint_file: Option<&'a Path>,
    pub accept_loss: bool,
}

fn refused(why: String) -> CliError {
    CliError::Refused(why)
}

/// A name for what is kept aside, unique to the nanosecond and never over an existing file.
fn kept_name(of: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ");
    PathBuf::from(format!("{}.before-restore-{stamp}", of.display()))
}

/// Whether `file` is a zsa store with a log: opened read-only (never created), its events table
/// holding at least one event.
fn holds_a_log(file: &Path) -> Result<u64, String> {
    let c = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| e.to_string())?;
    c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(|e| e.to_string())
}

fn restore_offline(file: &Path, state: &Path, db: &Path, checkpoints: &Path, accept_loss: bool) -> Result<Restored, CliError> {
    if !file.is_file() {
        return Err(refused(format!("{} is not a file; give a backup zsa admin backup wrote", file.display())));
    }
    match holds_a_log(file) {
        Ok(0) => return Err(refused(format!("{} holds no events: it is not a backup of a daemon's store", file.display()))),
        Ok(_) => {}
        Err(e) => return Err(refused(format!("{} is not a zsa store ({e}): give a backup zsa admin backup wrote", file.display()))),
    }
    let state = crate::fs_trust::private_dir(state, "the state directory").map_err(|e| refused(e.0))?;
    // The daemon holds this lock while it runs: never restore under it.
    let _lock = crate::daemon::server::lock_state(&state).map_err(|e| {
        refused(format!("{e:#}").replace(
            "stop it first, or give this one its own --state",
            "stop it first (systemctl stop zsa.socket zsa.service: the socket alone would start it again)",
        ))
    })?;
    let incoming = PathBuf::from(format!("{}.restoring", db.display()));
    let remove_incoming = || {
        for leftover in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{leftover}", incoming.display()));
        }
    };
    remove_incoming();
    let copy = || -> std::io::Result<()> {
        let mut from = std::fs::File::open(file)?;
        let mut to = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&incoming)?;
        std::io::copy(&mut from, &mut to)?;
        to.sync_all()
    };
    copy().map_err(|e| refused(format!("cannot copy {} to {}: {e}", file.display(), incoming.display())))?;
    let discard = |why: String| {
        remove_incoming();
        refused(format!("{why}; nothing was changed"))
    };
    let (mut store, report) = verify(&incoming).map_err(|e| discard(format!("{} cannot be read as a store: {e}", file.display())))?;
    if !report.ok {
        return Err(discard(format!(
            "{} does not verify ({}), so it is not restored",
            file.display(),
            report.problem.as_deref().unwrap_or("unknown problem")
        )));
    }
    // The signed checkpoints outside the database vouch for the log: the backup must hold each
    // event they name, with the same hash. Those past its end are events a restore loses.
    let lines = crate::evidence::read(checkpoints).map_err(discard)?;
    let mut lost = Vec::new();
    let mut held = Vec::new();
    for (line, c) in &lines {
        if c.seq > report.events {
            lost.push(c.seq);
            continue;
        }
        let Some(before) = c.seq.checked_sub(1) else {
            return Err(discard(format!(
                "{}:{line} names event 0, which no log has: it is not a checkpoint file of zsa's",
                checkpoints.display()
            )));
        };
        let at = store
            .events(&EventFilter { after_seq: Some(before), limit: Some(1), ..Default::default() })
            .map_err(|e| discard(e.to_string()))?;
        if at.first().is_none_or(|e| e.hash != c.hash) {
            return Err(discard(format!(
                "{}:{line} vouches for event {} with hash {}, which the backup does not hold: it is not this daemon's log, or it was changed",
                checkpoints.display(),
                c.seq,
                c.hash
            )));
        }
        held.push(*line);
    }
    drop(store);
    // Something must tie the backup to this daemon: an event it holds that one of this daemon's
    // own signed checkpoints vouches for. A backup that holds none (another daemon's log, or one
    // older than every checkpoint) is refused even with --accept-loss.
    let key = (std::fs::symlink_metadata(crate::evidence::key_path(&state)).is_ok())
        .then(|| crate::evidence::SigningKey::load_or_create(&state).map(|k| k.public()))
        .transpose()
        .map_err(|e| discard(format!("{e:#}")))?;
    let vouched = lines.iter().any(|(line, c)| held.contains(line) && key.as_ref().is_some_and(|k| c.signed_by(k)));
    if !lines.is_empty() && !vouched {
        return Err(discard(format!(
            "nothing ties {} to this daemon: it holds none of the events this daemon's checkpoints in {} vouch for (another daemon's log, or one older than every checkpoint). If it is this daemon's, move {} aside yourself first (keep it: it is evidence)",
            file.display(),
            checkpoints.display(),
            checkpoints.display()
        )));
    }
    if let Some(last) = lost.iter().max().filter(|_| !accept_loss) {
        return Err(discard(format!(
            "the backup ends at event {}, but {} vouches for events up to {last}: restoring it loses those, and the daemon would refuse to start on a log shorter than its checkpoints. If that is what you mean, add --accept-loss (the checkpoint file is kept aside as evidence)",
            report.events,
            checkpoints.display()
        )));
    }
    // Everything new is written first (the backup beside the store, the checkpoints in force
    // beside theirs); then renames alone, each undone if a later one fails, so a failure never
    // leaves the state directory without a store or with a store its checkpoints refuse.
    let new_checkpoints = PathBuf::from(format!("{}.restoring", checkpoints.display()));
    if !lost.is_empty() {
        let _ = std::fs::remove_file(&new_checkpoints);
        let text = std::fs::read_to_string(checkpoints).map_err(|e| discard(format!("cannot read {}: {e}", checkpoints.display())))?;
        let in_force: String = text.lines().enumerate().filter(|(n, _)| held.contains(&(n + 1))).map(|(_, l)| format!("{l}\n")).collect();
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&new_checkpoints)?;
            f.write_all(in_force.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&new_checkpoints);
            discard(format!("cannot write {}: {e}", new_checkpoints.display()))
        })?;
    }
    let mut moves: Vec<(PathBuf, PathBuf)> = Vec::new();
    if std::fs::symlink_metadata(db).is_ok() {
        let kept = kept_name(db);
        for suffix in ["-wal", "-shm", ""] {
            let from = PathBuf::from(format!("{}{suffix}", db.display()));
            if std::fs::symlink_metadata(&from).is_ok() {
                moves.push((from, PathBuf::from(format!("{}{suffix}", kept.display()))));
            }
        }
    }
    if !lost.is_empty() {
        moves.push((checkpoints.to_path_buf(), kept_name(checkpoints)));
        moves.push((new_checkpoints.clone(), checkpoints.to_path_buf()));
    }
    moves.push((incoming.clone(), db.to_path_buf()));
    for (n, (from, to)) in moves.iter().enumerate() {
        // Never over a file: the names kept aside are unique to the nanosecond, and checked.
        let taken = std::fs::symlink_metadata(to).is_ok();
        if let Err(e) = if taken { Err(std::io::Error::other("a file is already there")) } else { std::fs::rename(from, to) } {
            for (back_from, back_to) in moves[..n].iter().rev() {
                let _ = std::fs::rename(back_to, back_from);
            }
            let _ = std::fs::remove_file(&new_checkpoints);
            return Err(discard(format!("cannot move {} to {}: {e}; what had moved was put back", from.display(), to.display())));
        }
    }
    let dir = db.parent().unwrap_or(&state);
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| refused(format!("cannot sync {}: {e}", dir.display())))?;
    let replaced = moves.iter().find(|(from, _)| from == db).map(|(_, to)| to.clone());
    let checkpoints_moved = moves.iter().find(|(from, _)| from == checkpoints).map(|(_, to)| to.clone());
    Ok(Restored { events: report.events, head: report.head, replaced, checkpoints_moved })
}
