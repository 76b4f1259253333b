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

/// What `restore` did.
#[derive(serde::Serialize)]
struct Restored {
    events: u64,
    head: Option<String>,
    replaced: Option<PathBuf>,
    checkpoints_moved: Option<PathBuf>,
}

pub async fn restore(file: &Path, state: Option<&Path>, checkpoint_file: Option<&Path>, accept_loss: bool, json: bool) -> CmdResult {
    let state = state.map(Path::to_path_buf).unwrap_or_else(crate::config::default_state_dir);
    let checkpoints = checkpoint_file.map(Path::to_path_buf).unwrap_or_else(|| state.join("checkpoints"));
    let file = file.to_path_buf();
    let restored = tokio::task::spawn_blocking(move || restore_offline(&file, &state, &checkpoints, accept_loss))
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
            println!("the checkpoints that vouched for the lost events are kept at {}; a new file begins", moved.display());
        }
    }
    Ok(())
}

fn refused(why: String) -> CliError {
    CliError::Refused(why)
}

fn restore_offline(file: &Path, state: &Path, checkpoints: &Path, accept_loss: bool) -> Result<Restored, CliError> {
    if !file.is_file() {
        return Err(refused(format!("{} is not a file; give a backup zsa admin backup wrote", file.display())));
    }
    let state = crate::fs_trust::private_dir(state, "the state directory").map_err(|e| refused(e.0))?;
    // The daemon holds this lock while it runs: never restore under it.
    let _lock = crate::daemon::server::lock_state(&state).map_err(|e| {
        refused(format!("{e:#}").replace("stop it first, or give this one its own --state", "stop it first (systemctl stop zsa)"))
    })?;
    let db = state.join("zsa.db");
    let incoming = state.join("zsa.db.restoring");
    for leftover in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{leftover}", incoming.display()));
    }
    let copy = || -> std::io::Result<()> {
        let mut from = std::fs::File::open(file)?;
        let mut to = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&incoming)?;
        std::io::copy(&mut from, &mut to)?;
        to.sync_all()
    };
    copy().map_err(|e| refused(format!("cannot copy {} into {}: {e}", file.display(), state.display())))?;
    let discard = |why: String| {
        for leftover in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{leftover}", incoming.display()));
        }
        refused(format!("{why}; nothing was changed in {}", state.display()))
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
    for (line, c) in &lines {
        if c.seq > report.events {
            lost.push(c.seq);
            continue;
        }
        let at = store
            .events(&EventFilter { after_seq: Some(c.seq - 1), limit: Some(1), ..Default::default() })
            .map_err(|e| discard(e.to_string()))?;
        if at.first().is_none_or(|e| e.hash != c.hash) {
            return Err(discard(format!(
                "{}:{line} vouches for event {} with hash {}, which the backup does not hold: it is not this daemon's log, or it was changed",
                checkpoints.display(),
                c.seq,
                c.hash
            )));
        }
    }
    drop(store);
    if let Some(last) = lost.iter().max().filter(|_| !accept_loss) {
        return Err(discard(format!(
            "the backup ends at event {}, but {} vouches for events up to {last}: restoring it loses those, and the daemon would refuse to start on a log shorter than its checkpoints. If that is what you mean, add --accept-loss (the checkpoint file is moved aside and kept as evidence)",
            report.events,
            checkpoints.display()
        )));
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut replaced = None;
    if std::fs::symlink_metadata(&db).is_ok() {
        let kept = state.join(format!("zsa.db.before-restore-{stamp}"));
        for suffix in ["-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", db.display()));
            if std::fs::symlink_metadata(&from).is_ok() {
                std::fs::rename(&from, format!("{}{suffix}", kept.display()))
                    .map_err(|e| refused(format!("cannot move {} aside: {e}", from.display())))?;
            }
        }
        std::fs::rename(&db, &kept).map_err(|e| refused(format!("cannot move {} aside: {e}", db.display())))?;
        replaced = Some(kept);
    }
    let mut checkpoints_moved = None;
    if !lost.is_empty() {
        let kept = PathBuf::from(format!("{}.before-restore-{stamp}", checkpoints.display()));
        std::fs::rename(checkpoints, &kept).map_err(|e| refused(format!("cannot move {} aside: {e}", checkpoints.display())))?;
        checkpoints_moved = Some(kept);
    }
    std::fs::rename(&incoming, &db).map_err(|e| refused(format!("cannot put the backup in place as {}: {e}", db.display())))?;
    std::fs::File::open(&state).and_then(|d| d.sync_all()).map_err(|e| refused(format!("cannot sync {}: {e}", state.display())))?;
    Ok(Restored { events: report.events, head: report.head, replaced, checkpoints_moved })
}
