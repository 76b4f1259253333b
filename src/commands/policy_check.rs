//! `zsa policy check FILE`: validates a policy without a daemon.

use std::io::{IsTerminal, Write};

use super::{CliError, CmdResult, output};
use crate::cli::PolicyCmd;
use crate::policy::Policy;

pub fn run(command: &PolicyCmd, json: bool) -> CmdResult {
    let PolicyCmd::Check { file } = command;
    match Policy::load(file) {
        Ok(p) => {
            // Valid text is not enough for a daemon: say now if it would refuse the file itself.
            if let Err(e) = crate::fs_trust::open_policy(file) {
                eprintln!("zsa: warning: a daemon run as you would not load this file: {}", crate::model::text::inert(&e.0));
            }
            if json {
                output::json_line(&serde_json::json!({"ok": true, "file": p.path, "sha256": p.sha256, "tasks": p.tasks.len()}));
            } else {
                println!("{}: ok, {} tasks, sha256 {}", p.path, p.tasks.len(), p.sha256);
            }
            Ok(())
        }
        Err(e) if json => {
            let problems: Vec<_> = e
                .problems
                .iter()
                .map(|p| serde_json::json!({"line": p.line, "column": p.column, "message": p.message, "help": p.help}))
                .collect();
            output::json_line(&serde_json::json!({"ok": false, "file": e.file, "problems": problems}));
            Err(CliError::Refused(e.to_string()))
        }
        Err(e) => {
            // Each problem in place, with a caret under it and what to do, as compilers show theirs.
            let stderr = std::io::stderr();
            let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let _ = writeln!(stderr.lock(), "{}", e.render(color));
            Err(CliError::Exit(1))
        }
    }
}
