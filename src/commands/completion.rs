//! Shell completion and the manual page, both from the one clap tree in `cli`.
//!
//! Completion uses clap_complete's dynamic engine (`CompleteEnv`): the script that
//! `zsa completions SHELL` prints is a few lines that call `zsa` back at each Tab, and `zsa`
//! answers from the same clap tree it parses with. So the commands and flags offered are always
//! those of the installed binary, and values that only the daemon knows (task names, open request
//! and grant ids) are asked of the daemon at that moment. A static script (clap_complete's
//! `generate`) could not know those without a hidden command of ours and per-shell glue code.
//!
//! Asking the daemon must never get in the way of typing: a daemon that is not there, refuses,
//! or does not answer within `PATIENCE` yields no candidates, and nothing is printed.

use std::ffi::OsString;
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use super::CmdResult;
use crate::cli::{Cli, ClientArgs, Shell};
use crate::client::Client;
use crate::model::text;

/// The variable that tells `zsa` it is being asked for completions (clap_complete's default).
const VAR: &str = "COMPLETE";
/// How long a Tab may wait for the daemon.
const PATIENCE: Duration = Duration::from_secs(2);

/// Called first thing in `main`: when the shell is asking for completions, answers and exits.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::command).var(VAR).complete();
}

/// `zsa completions SHELL`: the registration script, as `COMPLETE=SHELL zsa` prints it.
pub fn print_script(shell: Shell) -> CmdResult {
    let bin = std::env::current_exe().ok().and_then(|p| p.to_str().map(str::to_string)).unwrap_or_else(|| "zsa".into());
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut out = Vec::new();
    completer.write_registration(VAR, "zsa", "zsa", &bin, &mut out).map_err(anyhow::Error::from)?;
    std::io::Write::write_all(&mut std::io::stdout(), &out).map_err(anyhow::Error::from)?;
    Ok(())
}

/// `zsa man`: the manual page in roff, with a section per subcommand.
pub fn print_man() -> CmdResult {
    let mut out = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out).map_err(anyhow::Error::from)?;
    man.render_name_section(&mut out).map_err(anyhow::Error::from)?;
    man.render_synopsis_section(&mut out).map_err(anyhow::Error::from)?;
    man.render_description_section(&mut out).map_err(anyhow::Error::from)?;
    man.render_options_section(&mut out).map_err(anyhow::Error::from)?;
    render_commands(&cmd, "", &mut out).map_err(anyhow::Error::from)?;
    let mut extra = Vec::new();
    man.render_extra_section(&mut extra).map_err(anyhow::Error::from)?;
    out.extend(String::from_utf8_lossy(&extra).replace(".SH EXTRA", ".SH \"EXIT CODES AND EXAMPLES\"").bytes());
    man.render_version_section(&mut out).map_err(anyhow::Error::from)?;
    std::io::Write::write_all(&mut std::io::stdout(), &out).map_err(anyhow::Error::from)?;
    Ok(())
}

/// One `.SH` section per command (`ZSA REQUEST`, `ZSA ADMIN TOKEN ISSUE`...) with its synopsis,
/// description and options, so the page holds all of `zsa CMD --help`.
fn render_commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = format!("{prefix}{} {}", if prefix.is_empty() { "zsa" } else { "" }, sub.get_name()).trim().to_string();
        let sub = sub.clone().bin_name(name.clone());
        let man = clap_mangen::Man::new(sub.clone());
        std::io::Write::write_all(out, format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes())?;
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        man.render_options_section(&mut section)?;
        man.render_extra_section(&mut section)?;
        // Each part is a `.SH` of its own in clap_mangen; under a command it reads as a subsection.
        let section = String::from_utf8_lossy(&section).replace(".SH EXTRA", ".SH EXAMPLES").replace(".SH ", ".SS ");
        std::io::Write::write_all(out, section.as_bytes())?;
        render_commands(&sub, &name, out)?;
    }
    Ok(())
}

/// The contexts of the config file, with their endpoints (no daemon is asked).
pub fn contexts() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let contexts = crate::contexts::Contexts::load().unwrap_or_default();
        contexts.all.values().map(|c| CompletionCandidate::new(&c.name).help(help(&c.endpoint.address.to_string()))).collect()
    })
}

/// Task names, with their descriptions.
pub fn tasks() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        ask(|client| async move {
            let tasks = client.tasks().await.ok()?;
            Some(tasks.into_iter().map(|t| CompletionCandidate::new(t.name).help(help(&t.description))).collect())
        })
    })
}

/// Pending request ids (R12), with their task and requester.
pub fn request_ids() -> ArgValueCandidates {
    ArgValueCandidates::new(|| ask(|client| async move { Some(requests(&client).await) }))
}

/// Active grant ids (G12), with their task and holder.
pub fn grant_ids() -> ArgValueCandidates {
    ArgValueCandidates::new(|| ask(|client| async move { Some(grants(&client).await) }))
}

/// Both, for `zsa show`.
pub fn request_and_grant_ids() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        ask(|client| async move {
            let mut all = requests(&client).await;
            all.extend(grants(&client).await);
            Some(all)
        })
    })
}

async fn requests(client: &Client) -> Vec<CompletionCandidate> {
    let requests = client.requests(false).await.unwrap_or_default();
    requests
        .into_iter()
        .map(|r| CompletionCandidate::new(r.id.to_string()).help(help(&format!("{} for {}", r.task, r.requester))))
        .collect()
}

async fn grants(client: &Client) -> Vec<CompletionCandidate> {
    let grants = client.grants(false).await.unwrap_or_default();
    grants.into_iter().map(|g| CompletionCandidate::new(g.id.to_string()).help(help(&format!("{} held by {}", g.task, g.holder)))).collect()
}

/// A candidate's description: text from the daemon, made inert, on one line.
fn help(s: &str) -> Option<clap::builder::StyledStr> {
    let line = text::inert_line(s);
    (!line.is_empty()).then(|| line.into())
}

/// Runs `query` against the daemon the command line being completed points at; nothing on any
/// failure or after `PATIENCE`.
fn ask<F, Fut>(query: F) -> Vec<CompletionCandidate>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<CompletionCandidate>>>,
{
    let Some(client) = completing_client() else { return Vec::new() };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return Vec::new() };
    runtime.block_on(async { tokio::time::timeout(PATIENCE, query(client)).await.ok().flatten().unwrap_or_default() })
}

/// The client for the line being completed: its `--socket` or `--context` if typed, else
/// ZSA_SOCKET, ZSA_CONTEXT, the current context or the default socket, as the command itself
/// would; the token from ZSA_TOKEN or the context (standard input is the terminal's, not a token).
fn completing_client() -> Option<Client> {
    let words: Vec<OsString> = std::env::args_os().collect();
    let socket = typed(&words, "--socket").or_else(|| std::env::var_os("ZSA_SOCKET").filter(|s| !s.is_empty()).map(Into::into));
    let context = typed(&words, "--context").and_then(|c| c.to_str().map(str::to_string));
    let token = std::env::var("ZSA_TOKEN").ok().filter(|t| !t.is_empty());
    let token_from = token.as_ref().map(|_| "ZSA_TOKEN");
    let args = ClientArgs { socket, context, token, token_stdin: false, token_from };
    super::connect::resolve(&args, true).ok()?.client().ok()
}

/// The value of `FLAG VALUE` or `FLAG=VALUE` (the last one) among the words being completed.
fn typed(words: &[OsString], flag: &str) -> Option<std::path::PathBuf> {
    let mut words = words.iter().filter_map(|w| w.to_str());
    let mut found = None;
    let with_value = format!("{flag}=");
    while let Some(w) = words.next() {
        if w == flag {
            found = words.next().map(Into::into);
        } else if let Some(v) = w.strip_prefix(&with_value) {
            found = Some(v.into());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_socket_is_found_in_either_form() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(typed(&words(&["zsa", "--", "zsa", "request", "--socket", "/s", "ta"]), "--socket"), Some("/s".into()));
        assert_eq!(typed(&words(&["zsa", "--", "zsa", "--socket=/t", "approve", ""]), "--socket"), Some("/t".into()));
        assert_eq!(typed(&words(&["zsa", "--", "zsa", "approve", ""]), "--socket"), None);
        assert_eq!(typed(&words(&["zsa", "--", "zsa", "--context", "prod", "approve", ""]), "--context"), Some("prod".into()));
    }
}
