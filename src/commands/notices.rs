//! `zsa notices` and `zsa admin notices retry`: what the outbox holds, and a second chance for
//! a notice that failed.

use super::output::{cell, json_line, table, time};
use super::{CliError, CmdResult};
use crate::client::Client;

pub async fn list(client: &Client, json: bool, failed: bool) -> CmdResult {
    let notices = client.notices(failed).await?;
    if json {
        notices.iter().for_each(json_line);
        return Ok(());
    }
    if notices.is_empty() {
        println!("{}", if failed { "no notice has failed" } else { "no notices yet" });
        return Ok(());
    }
    let rows: Vec<Vec<String>> = notices
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.state.as_str().into(),
                n.trigger.as_str().into(),
                cell(&n.channel, 24),
                cell(&n.recipient, 32),
                n.attempts.to_string(),
                time(n.done_at.unwrap_or(n.next_at)),
                cell(n.last_error.as_deref().unwrap_or("-"), 60),
            ]
        })
        .collect();
    table(&["ID", "STATE", "TRIGGER", "CHANNEL", "RECIPIENT", "ATTEMPTS", "DUE/DONE", "LAST ERROR"], &rows);
    Ok(())
}

pub async fn retry(client: &Client, json: bool, raw: &str) -> CmdResult {
    let id: u64 = raw
        .trim()
        .parse()
        .map_err(|_| CliError::Usage(format!("{raw:?} is not a notice id: give the number in the ID column of `zsa notices --failed`")))?;
    client.retry_notice(id).await?;
    if json {
        json_line(&serde_json::json!({"id": id, "state": "pending"}));
    } else {
        println!("notice {id} will be delivered again now (zsa notices shows how it went)");
    }
    Ok(())
}
