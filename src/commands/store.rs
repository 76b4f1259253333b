//! `zsa store copy`: moves a daemon's state to another backend (SQLite to PostgreSQL, or back)
//! with the daemon stopped. The log is copied event by event, unchanged, so the chain and its
//! head are the same; the current-state rows are rebuilt from it in the target (which checks
//! the whole chain first); the outbox and tokens' last use come along; then the copy is
//! verified and its head compared with the source's. The source's log and rows are only read
//! (a SQLite file from an older zsa is first brought to the current schema, as a daemon would).

use super::{CliError, CmdResult};
use crate::cli::StoreCmd;
use crate::store::{Changeset, EventFilter, Head, Location, StoreError};

/// Events appended to the target per transaction.
const BATCH: u32 = 5_000;

pub async fn run(command: &StoreCmd, json: bool) -> CmdResult {
    let StoreCmd::Copy { from, to } = command;
    let parse = |flag: &str, text: &str| crate::store::Location::parse(text).map_err(|e| CliError::Usage(format!("{flag}: {e}")));
    let (from, to) = (parse("--from", from)?, parse("--to", to)?);
    let copied = tokio::task::spawn_blocking(move || copy(&from, &to)).await.map_err(|e| CliError::Other(e.into()))??;
    if json {
        println!("{}", serde_json::to_string(&copied).unwrap_or_default());
    } else {
        println!(
            "copied {} events (chain head {}), {} notices in the outbox, {} tokens' last use, from {} to {}; the copy verifies",
            copied.events,
            copied.head.as_deref().unwrap_or("none: the log is empty"),
            copied.deliveries,
            copied.token_use,
            copied.from,
            copied.to
        );
    }
    Ok(())
}

/// What was copied.
#[derive(serde::Serialize)]
struct Copied {
    from: String,
    to: String,
    events: u64,
    head: Option<String>,
    deliveries: usize,
    token_use: usize,
}

fn refused(e: StoreError, what: &str) -> CliError {
    CliError::Refused(format!("{what}: {e}"))
}

fn copy(from: &Location, to: &Location) -> Result<Copied, CliError> {
    let (shown_from, shown_to) = (from.describe(), to.describe());
    if from == to {
        return Err(CliError::Usage(format!("--from and --to are the same store ({shown_from})")));
    }
    // Opening a SQLite store creates it: a source that is not there is a mistake, not an empty log.
    if let Location::Sqlite(path) = from
        && std::fs::symlink_metadata(path).is_err()
    {
        return Err(CliError::Refused(format!("{shown_from}: there is no database there; give the file the daemon uses (STATE/zsa.db)")));
    }
    let mut source = crate::store::open(from).map_err(|e| refused(e, &format!("cannot open {shown_from}")))?;
    let checked = source.verify().map_err(|e| refused(e, &format!("cannot verify {shown_from}")))?;
    if !checked.ok {
        return Err(CliError::Refused(format!(
            "{shown_from} does not verify ({}), so it is not copied; nothing was written to {shown_to}",
            checked.problem.as_deref().unwrap_or("unknown problem")
        )));
    }
    if let Location::Sqlite(path) = to
        && std::fs::symlink_metadata(path).is_ok()
    {
        return Err(CliError::Refused(format!("{shown_to} is already there; copy only into a new file (or an empty database)")));
    }
    let mut target = crate::store::open(to).map_err(|e| refused(e, &format!("cannot open {shown_to}")))?;
    let there = target.events(&EventFilter { tail: Some(1), ..Default::default() }).map_err(|e| refused(e, &shown_to))?;
    if !there.is_empty() {
        return Err(CliError::Refused(format!(
            "{shown_to} already holds a log; copy only into an empty store, so no log is ever mixed with another"
        )));
    }
    let mut head = Head::default();
    loop {
        let page = source
            .events(&EventFilter { after_seq: Some(head.seq), limit: Some(BATCH), ..Default::default() })
            .map_err(|e| refused(e, &format!("cannot read {shown_from}")))?;
        let Some(last) = page.last() else { break };
        let next = Head { seq: last.seq, hash: last.hash.clone() };
        // The rows are rebuilt from the whole log below; here only the events, unchanged.
        let change = Changeset { head: head.clone(), events: page, ..Changeset::default() };
        target.append(&change).map_err(|e| refused(e, &format!("cannot write {shown_to}")))?;
        head = next;
    }
    target.rebuild_from_log().map_err(|e| refused(e, &format!("cannot build the current state in {shown_to}")))?;
    let deliveries = source.deliveries(None).map_err(|e| refused(e, &shown_from))?;
    target.import_deliveries(&deliveries).map_err(|e| refused(e, &format!("cannot copy the outbox to {shown_to}")))?;
    let used = source.token_use().map_err(|e| refused(e, &shown_from))?;
    target.save_token_use(&used).map_err(|e| refused(e, &shown_to))?;
    let report = target.verify().map_err(|e| refused(e, &format!("cannot verify {shown_to}")))?;
    // The outbox is no part of the chain, so it is compared on its own, row for row.
    let outbox = target.deliveries(None).map_err(|e| refused(e, &shown_to))?;
    if outbox != deliveries {
        return Err(CliError::Refused(format!(
            "the outbox copied to {shown_to} differs from {shown_from}'s ({} rows against {}); do not use the copy",
            outbox.len(),
            deliveries.len()
        )));
    }
    if !report.ok || report.head != checked.head || report.events != checked.events {
        return Err(CliError::Refused(format!(
            "the copy in {shown_to} does not match {shown_from} ({} events, head {:?}; the source has {}, head {:?}: {}); do not use it",
            report.events,
            report.head,
            checked.events,
            checked.head,
            report.problem.as_deref().unwrap_or("the heads differ")
        )));
    }
    Ok(Copied {
        from: shown_from,
        to: shown_to,
        events: report.events,
        head: report.head,
        deliveries: deliveries.len(),
        token_use: used.len(),
    })
}
