//! `zsa completions` and `zsa man`, from the one clap tree: the bash script loads in a real bash,
//! and completing there asks the real daemon for task names and open ids, or offers nothing,
//! silently, when there is no daemon.

mod common;

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use common::{BIN, Daemon, stderr, stdout};
use zsa::model::wire::NewRequest;

/// Completes `line` (the words typed so far, the last one being completed) in a real bash that
/// has sourced `zsa completions bash`, against the daemon at `socket`.
fn complete_in_bash(socket: &Path, words: &[&str]) -> std::process::Output {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        r#"source <("{BIN}" completions bash) || exit 9
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
_clap_complete_zsa zsa "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    Command::new("bash").arg("-c").arg(script).env("ZSA_SOCKET", socket).env_remove("ZSA_TOKEN").output().expect("bash")
}

/// What bash offered, less the flags (offered beside values when the word is empty).
fn candidates(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty() && !l.starts_with('-')).collect()
}

#[test]
fn the_bash_script_loads_and_registers_zsa() {
    let out = Command::new("bash").arg("-c").arg(format!(r#"source <("{BIN}" completions bash) && complete -p zsa"#)).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("-F _clap_complete_zsa zsa"), "{}", stdout(&out));
    for shell in ["zsh", "fish"] {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && stdout(&out).contains("COMPLETE=") && stdout(&out).contains(BIN), "{shell}: {}", stdout(&out));
    }
}

#[tokio::test]
async fn completing_in_bash_offers_the_policys_tasks_and_the_open_ids() {
    let mut d = Daemon::start();
    let commands = candidates(&complete_in_bash(&d.socket, &["zsa", "req"]));
    assert!(commands.contains(&"request".to_string()) && commands.contains(&"requests".to_string()), "{commands:?}");

    let out = complete_in_bash(&d.socket, &["zsa", "request", ""]);
    let mut tasks = candidates(&out);
    tasks.sort();
    assert_eq!(tasks, ["export", "glass", "journal", "restart"], "{}", stderr(&out));
    assert_eq!(candidates(&complete_in_bash(&d.socket, &["zsa", "request", "jo"])), ["journal"]);

    let dave = d.user("dave").await;
    let pending = dave.request(&NewRequest { task: "export".into(), ..Default::default() }).await.unwrap();
    let granted = dave.request(&NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap();
    let grant = granted.grant.unwrap().id.to_string();
    assert_eq!(candidates(&complete_in_bash(&d.socket, &["zsa", "approve", ""])), [pending.request.id.to_string()]);
    assert_eq!(candidates(&complete_in_bash(&d.socket, &["zsa", "revoke", ""])), std::slice::from_ref(&grant));
    let mut both = candidates(&complete_in_bash(&d.socket, &["zsa", "show", ""]));
    both.sort();
    assert_eq!(both, [grant, pending.request.id.to_string()]);
}

#[test]
fn without_a_daemon_completion_offers_nothing_and_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = complete_in_bash(&dir.path().join("nobody.sock"), &["zsa", "request", ""]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(candidates(&out), Vec::<String>::new());
    assert!(stderr(&out).is_empty(), "completion printed: {}", stderr(&out));
    // Commands still complete: they need no daemon.
    assert!(candidates(&complete_in_bash(&dir.path().join("nobody.sock"), &["zsa", "aud"])).contains(&"audit".to_string()));
}

#[test]
fn the_man_page_holds_every_command() {
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains("\n.TH zsa 1"), "{}", &page[..page.len().min(200)]);
    let mut names = Vec::new();
    fn walk(cmd: &clap::Command, prefix: &str, names: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix} {}", sub.get_name());
            names.push(name.to_uppercase());
            walk(sub, &name, names);
        }
    }
    walk(&zsa::cli::Cli::command(), "zsa", &mut names);
    assert!(names.len() > 25, "{names:?}");
    for name in names {
        assert!(page.contains(&format!(".SH \"{name}\"")), "no section for {name}");
    }
    assert!(page.contains("EXIT CODES") && page.contains("daemon is unreachable"));
    // And man itself reads it, when it is installed.
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), page.as_bytes()).unwrap();
        let shown = Command::new("man").arg("-l").arg(file.path()).env("MANWIDTH", "100").env("MANPAGER", "cat").output().unwrap();
        assert!(stdout(&shown).contains("ZSA ADMIN TOKEN ISSUE") && stdout(&shown).contains("Ask for a task"), "{}", stderr(&shown));
    } else {
        eprintln!("SKIPPED part: `man` is not installed here, so the page was checked as roff text only (apt-get install man-db)");
    }
}
