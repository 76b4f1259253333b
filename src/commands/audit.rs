//! `zsa audit` (query, as text, JSON lines or CSV) and `zsa audit verify`.

use chrono::{DateTime, NaiveDate, Utc};

use super::output::{cell, json_line, table, time};
use super::watch::Follower;
use super::{CliError, CmdResult};
use crate::cli::{AuditArgs, AuditCmd};
use crate::client::{AuditParams, Client};
use crate::export;
use crate::model::{Event, duration, text};

const PAGE: u32 = 1000;

/// RFC 3339, a date (midnight UTC), or a duration ago such as `7d`.
pub fn parse_time(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(t) = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)) {
        return Ok(t.and_utc());
    }
    match duration::parse(raw) {
        Ok(secs) => Ok(now - chrono::Duration::seconds(secs as i64)),
        Err(_) => Err(format!(
            "'{}' is not a time: use RFC 3339 (2026-11-23T09:00:00Z), a date (2026-11-23) or a duration ago (7d)",
            text::inert(raw)
        )),
    }
}

pub async fn run(client: &Client, json: bool, args: &AuditArgs) -> CmdResult {
    match &args.command {
        Some(AuditCmd::Verify { .. }) => return verify(client, json).await,
        Some(AuditCmd::Export { signed }) => return export(client, json, signed).await,
        Some(AuditCmd::Key) => {
            let key = client.audit_key().await?;
            match json {
                true => json_line(&key),
                false => println!("{}\ncheckpoints are appended to {}", key.key, crate::model::text::inert(&key.checkpoint_file)),
            }
            return Ok(());
        }
        Some(AuditCmd::Checkpoint) => {
            let c = client.checkpoint().await?;
            match json {
                true => json_line(&c),
                false => println!("signed event {} ({}) at {} with {}", c.seq, c.hash, c.at.to_rfc3339(), c.key),
            }
            return Ok(());
        }
        Some(AuditCmd::Transcript { run }) => return super::runs::transcript(client, json, run).await,
        None => {}
    }
    if args.follow {
        return follow(client, json, args).await;
    }
    let now = Utc::now();
    let mut params = AuditParams {
        since: args.since.as_deref().map(|s| parse_time(s, now)).transpose().map_err(CliError::Usage)?.map(|t| t.to_rfc3339()),
        until: args.until.as_deref().map(|s| parse_time(s, now)).transpose().map_err(CliError::Usage)?.map(|t| t.to_rfc3339()),
        user: args.user.clone(),
        task: args.task.clone(),
        after: args.after,
        limit: Some(PAGE),
        tail: None,
    };
    let mut csv = args.csv.then(|| csv::Writer::from_writer(std::io::stdout()));
    if let Some(w) = csv.as_mut() {
        w.write_record(export::CSV_HEADER).map_err(anyhow::Error::from)?;
    }
    let mut rows = Vec::new();
    loop {
        let page = client.audit(&params).await?;
        for e in &page {
            if json {
                json_line(e);
            } else if let Some(w) = csv.as_mut() {
                w.write_record(export::csv_record(e)).map_err(anyhow::Error::from)?;
            } else {
                rows.push(text_row(e));
            }
        }
        match page.last() {
            Some(last) if page.len() as u32 == PAGE => params.after = Some(last.seq),
            _ => break,
        }
    }
    if let Some(mut w) = csv {
        w.flush().map_err(anyhow::Error::from)?;
    } else if !json {
        if rows.is_empty() {
            println!("no events match");
        } else {
            table(&["SEQ", "TIME", "ACTOR", "PROVED", "KIND", "TARGET", "USER", "TASK", "DETAILS"], &rows);
        }
    }
    Ok(())
}

/// `zsa audit --follow`: the matching log from `--since` (or after `--after`), then each new
/// event as it is written, one line (text, CSV or JSON) at a time, until interrupted. It resumes
/// after the last event seen when the daemon restarts, so nothing is missed or printed twice.
async fn follow(client: &Client, json: bool, args: &AuditArgs) -> CmdResult {
    let since = args.since.as_deref().map(|s| parse_time(s, Utc::now())).transpose().map_err(CliError::Usage)?;
    let mut follower = Follower::open(client, args.after).await?;
    let mut csv = args.csv.then(|| csv::Writer::from_writer(std::io::stdout()));
    if let Some(w) = csv.as_mut() {
        w.write_record(export::CSV_HEADER).and_then(|()| Ok(w.flush()?)).map_err(anyhow::Error::from)?;
    }
    let mut print = |e: &Event| -> CmdResult {
        let wanted = since.is_none_or(|t| e.at >= t)
            && args.user.as_deref().is_none_or(|u| e.actor == u || e.change.subject() == Some(u))
            && args.task.as_deref().is_none_or(|t| e.change.task() == Some(t));
        if !wanted {
            return Ok(());
        }
        if json {
            json_line(e);
        } else if let Some(w) = csv.as_mut() {
            w.write_record(export::csv_record(e)).and_then(|()| Ok(w.flush()?)).map_err(anyhow::Error::from)?;
        } else {
            println!("{}", text_row(e).join("  "));
        }
        Ok(())
    };
    // With --since and no --after, what was written before following began comes from the log,
    // up to where the stream starts.
    if let (Some(since), None) = (since, args.after) {
        let head = follower.start();
        let mut params = AuditParams {
            since: Some(since.to_rfc3339()),
            user: args.user.clone(),
            task: args.task.clone(),
            limit: Some(PAGE),
            ..Default::default()
        };
        'pages: loop {
            let page = client.audit(&params).await?;
            for e in page.iter() {
                if e.seq > head {
                    break 'pages;
                }
                print(e)?;
            }
            match page.last() {
                Some(last) if page.len() as u32 == PAGE => params.after = Some(last.seq),
                _ => break,
            }
        }
    }
    loop {
        let e = follower.next().await?;
        print(&e)?;
    }
}

fn text_row(e: &Event) -> Vec<String> {
    vec![
        e.seq.to_string(),
        time(e.at),
        cell(&e.actor, 16),
        cell(&e.proved(), 32),
        e.change.kind().to_string(),
        e.change.target().unwrap_or_default(),
        cell(e.change.subject().unwrap_or("-"), 16),
        cell(e.change.task().unwrap_or("-"), 24),
        cell(&e.change.summary(), 80),
    ]
}

async fn verify(client: &Client, json: bool) -> CmdResult {
    let report = client.verify().await?;
    if json {
        json_line(&report);
    }
    if report.ok {
        if !json {
            println!("ok: {} events verified; chain head {}", report.events, report.head.as_deref().unwrap_or("(empty log)"));
            if let (Some(n), Some(key)) = (report.checkpoints, &report.audit_key) {
                println!("ok: the log holds all {n} checkpoints signed by {key}");
            }
            if let Some(n) = report.signed_approvals.filter(|n| *n > 0) {
                println!("ok: {n} approvals signed with the approvers' SSH keys checked again");
            }
        }
        Ok(())
    } else {
        let at = report.first_bad_seq.map(|s| format!(" at event {s}")).unwrap_or_default();
        Err(CliError::Refused(format!(
            "the audit log does NOT verify{at}: {} ({} events before it verified)",
            report.problem.as_deref().unwrap_or("unknown problem"),
            report.events
        )))
    }
}

/// `zsa audit export --signed FILE`: the header, then every event as stored, page by page;
/// written to a new file only (never over one), flushed and synced.
async fn export(client: &Client, json: bool, file: &std::path::Path) -> CmdResult {
    use std::io::Write;
    let key = client.audit_key().await?;
    let out = std::fs::OpenOptions::new().write(true).create_new(true).open(file).map_err(|e| {
        CliError::Refused(format!("cannot write the export to {}: {e} (zsa never writes over a file; give a new name)", file.display()))
    })?;
    // The export ends at a checkpoint signed for it, so every event in it is covered.
    let signed = client.checkpoint().await?;
    let mut out = std::io::BufWriter::new(out);
    let failed = |e: std::io::Error| CliError::Refused(format!("cannot write the export to {}: {e}", file.display()));
    crate::evidence::bundle::write_header(&mut out, &key.key, Utc::now()).map_err(failed)?;
    let (mut after, mut count, mut head) = (0, 0u64, None);
    // Through the checkpoint's own event: the first one after the event it signed that is a
    // checkpoint with its signature.
    let mut done = false;
    while !done {
        let page = client.raw_events(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            crate::evidence::bundle::write_event(&mut out, event).map_err(failed)?;
            count += 1;
            (after, head) = (event.seq, Some(event.hash.clone()));
            if event.seq > signed.seq && event.body.contains(&signed.signature) {
                done = true;
                break;
            }
        }
    }
    out.flush().map_err(failed)?;
    out.get_ref().sync_all().map_err(failed)?;
    let head = head.unwrap_or_default();
    match json {
        true => json_line(&serde_json::json!({"file": file.display().to_string(), "events": count, "head": head, "key": key.key})),
        false => println!(
            "wrote {count} events (chain head {head}) to {}; check it anywhere with:\n  zsa audit verify --offline {} --key {}",
            file.display(),
            file.display(),
            key.key
        ),
    }
    Ok(())
}

/// `zsa audit verify --offline FILE --key KEY [--checkpoints FILE]`: no daemon, no database.
pub fn verify_offline(
    json: bool,
    file: &std::path::Path,
    keys: &[String],
    checkpoints: Option<&std::path::Path>,
    allow_unsigned_tail: bool,
    allowed_signers: Option<&std::path::Path>,
) -> CmdResult {
    let keys: Vec<_> = keys.iter().map(|k| crate::evidence::PublicKey::parse(k)).collect::<Result<_, _>>().map_err(CliError::Usage)?;
    let key = keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let input = std::fs::File::open(file).map_err(|e| CliError::Refused(format!("cannot read {}: {e}", file.display())))?;
    let lines = match checkpoints {
        Some(path) => Some((path.display().to_string(), crate::evidence::read(path).map_err(CliError::Refused)?)),
        None => None,
    };
    let against = lines.as_ref().map(|(source, lines)| (source.as_str(), lines.as_slice()));
    let signers = match allowed_signers {
        None => None,
        Some(path) => {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| CliError::Refused(format!("cannot read {source}: {e}")))?;
            Some((crate::evidence::approval::AllowedSigners::parse(&text, &source).map_err(CliError::Usage)?, source))
        }
    };
    let signers_shown = signers.as_ref().map(|(_, source)| source.clone());
    match crate::evidence::bundle::verify(std::io::BufReader::new(input), &keys, against, signers) {
        Ok(v) if (v.signed_through < v.events || v.events == 0) && !allow_unsigned_tail => Err(CliError::Refused(format!(
            "the export {} does NOT verify: {}; its chain is intact, but anyone could have made those events: export again (an export ends at a checkpoint), or pass --allow-unsigned-tail to accept them unsigned",
            file.display(),
            match v.signed_through {
                0 => format!("none of its {} events is covered by a checkpoint signed by {key}", v.events),
                through => format!("events {}..{} come after the last checkpoint signed by {key} (event {through})", through + 1, v.events),
            }
        ))),
        Ok(v) => {
            let head = v.head.as_deref().unwrap_or("(empty log)");
            match json {
                true => json_line(
                    &serde_json::json!({"ok": true, "events": v.events, "head": head, "checkpoints_in_log": v.in_log, "checkpoints_in_file": v.in_file, "signed_approvals": v.signed_approvals, "keys": key}),
                ),
                false => {
                    println!("ok: {} events verified from {}; chain head {head}", v.events, file.display());
                    println!("ok: {} checkpoints in the log signed by {key}", v.in_log);
                    if v.signed_approvals > 0 {
                        println!("ok: {} approvals signed with the approvers' SSH keys checked again", v.signed_approvals);
                    }
                    if let Some(source) = signers_shown.as_ref().filter(|_| v.signed_approvals > 0) {
                        println!("ok: each signed with a key {source} lists for its approver");
                    }
                    if v.signed_through < v.events {
                        println!(
                            "NOT signed: events {}..{} come after the last checkpoint (accepted: --allow-unsigned-tail)",
                            v.signed_through + 1,
                            v.events
                        );
                    }
                    if let Some((source, _)) = &lines {
                        println!("ok: the export holds all {} checkpoints in {source}", v.in_file);
                    }
                }
            }
            Ok(())
        }
        Err(problem) => Err(CliError::Refused(format!("the export {} does NOT verify: {problem}", file.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_three_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("2026-11-23T09:00:00Z", now).unwrap().to_rfc3339(), "2026-11-23T09:00:00+00:00");
        assert_eq!(parse_time("2026-11-01", now).unwrap().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(parse_time("2h", now).unwrap().to_rfc3339(), "2026-11-23T10:00:00+00:00");
        assert!(parse_time("yesterday", now).unwrap_err().contains("not a time"));
    }
}
