//! `zsa run`: the daemon runs the approved task; its output streams here and `zsa` exits with the
//! task's exit code. And `zsa audit transcript`, which checks a transcript against its digest.

use std::collections::BTreeMap;
use std::io::Write;

use sha2::{Digest, Sha256};

use super::output::json_line;
use super::{CliError, CmdResult, id};
use crate::client::Client;
use crate::model::wire::{RunOutput, RunRequest};
use crate::model::{RunId, RunOutcome, text};

/// `NAME=VALUE` pairs; a malformed or repeated one is a usage error.
pub fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for p in raw {
        let (name, value) =
            p.split_once('=').ok_or_else(|| CliError::Usage(format!("--param takes NAME=VALUE, not '{}'", text::inert(p))))?;
        if out.insert(name.to_string(), value.to_string()).is_some() {
            return Err(CliError::Usage(format!("--param {} is given twice", text::inert(name))));
        }
    }
    Ok(out)
}

pub async fn run(client: &Client, json: bool, task: &str, params: BTreeMap<String, String>) -> CmdResult {
    let mut stream = client.run(&RunRequest { task: task.to_string(), params }).await?;
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    while let Some(line) = stream.next().await {
        let line = line?;
        if json {
            json_line(&line);
        }
        match line {
            RunOutput::Started { run, argv } => {
                if !json {
                    eprintln!("zsa: {run} runs: {}", text::inert_line(&argv.join(" ")));
                }
            }
            // The task's own output goes through as it is: it is what the command printed.
            RunOutput::Output { stream, data } if !json => {
                let out: &mut dyn Write = if stream == "stderr" { &mut stderr } else { &mut stdout };
                let _ = out.write_all(data.as_bytes()).and_then(|_| out.flush());
            }
            RunOutput::Output { .. } => {}
            RunOutput::Ended { run, exit_code, outcome, message } => {
                if !json && (outcome != RunOutcome::Exited || exit_code != Some(0)) {
                    eprintln!("zsa: {run} {}", text::inert(&message));
                }
                return match exit_code {
                    Some(0) => Ok(()),
                    Some(code) => Err(CliError::Exit(code.clamp(1, 255) as u8)),
                    None => Err(CliError::Exit(1)),
                };
            }
        }
    }
    Err(CliError::Refused("the daemon closed the run's stream before it said how the run ended; see zsa audit".into()))
}

/// Prints a transcript (inert: it is another command's output on an auditor's terminal) and
/// checks its SHA-256 against the one recorded when the run ended.
pub async fn transcript(client: &Client, json: bool, raw: &str) -> CmdResult {
    let run_id: RunId = id(raw)?;
    let run = client.show_run(run_id).await?;
    let bytes = client.transcript(run_id).await?;
    let end = run.ended.ok_or_else(|| CliError::Refused(format!("{run_id} is still running")))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let matches = digest == end.transcript_sha256 && bytes.len() as u64 == end.transcript_bytes;
    if json {
        json_line(&serde_json::json!({
            "id": run_id, "task": run.task, "holder": run.holder, "argv": run.argv,
            "transcript": String::from_utf8_lossy(&bytes), "sha256": digest, "matches_audit_log": matches,
        }));
    } else {
        // Line by line, so newlines stay and every other control character is made visible.
        for line in String::from_utf8_lossy(&bytes).lines() {
            println!("{}", text::inert(&line.replace('\t', "    ")));
        }
        let cut = if end.truncated { format!(" (cut at the cap of {} bytes)", end.transcript_cap) } else { String::new() };
        eprintln!("zsa: {run_id}: {} bytes{cut}, sha256 {digest}", bytes.len());
    }
    if matches {
        if !json {
            eprintln!("zsa: the transcript matches the digest in the audit log");
        }
        Ok(())
    } else {
        Err(CliError::Refused(format!(
            "the transcript of {run_id} does NOT match the audit log: recorded {} bytes sha256 {}, found {} bytes sha256 {digest}",
            end.transcript_bytes,
            end.transcript_sha256,
            bytes.len()
        )))
    }
}
