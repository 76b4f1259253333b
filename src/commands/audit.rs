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
        Some(AuditCmd::Verify) => return verify(client, json).await,
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
