//! How the real console lays itself out in a real terminal (a pseudo-terminal read through
//! vt100) against a real daemon: a run's long transcript read to its last line, and a terminal
//! too small for the panes saying so until it is resized.

mod common;

use common::console::Console;
use common::{Daemon, POLICY};
use zsa::model::wire::{NewRequest, RunOutput, RunRequest};

/// A task whose run prints 300 lines: a transcript far taller than any screen.
const COUNT_TASK: &str = r#"
[[tasks]]
name = "count"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
run = ["/usr/bin/seq", "1", "300"]
"#;

const END: &str = "\u{1b}[F";
const HOME: &str = "\u{1b}[H";
const PAGE_DOWN: &str = "\u{1b}[6~";
const ESC: &str = "\u{1b}";

#[tokio::test(flavor = "multi_thread")]
async fn a_long_transcript_is_read_to_its_last_line() {
    let mut d = Daemon::start_with(&format!("{POLICY}{COUNT_TASK}"));
    let erin = d.token("erin").await;
    let dave = d.user("dave").await;
    let granted = dave.request(&NewRequest { task: "count".into(), ..Default::default() }).await.unwrap();
    assert!(granted.grant.is_some(), "count is granted at once");
    let mut run = dave.run(&RunRequest { task: "count".into(), params: Default::default() }).await.unwrap();
    while let Some(line) = run.next().await {
        if matches!(line.unwrap(), RunOutput::Ended { .. }) {
            break;
        }
    }

    let mut console = Console::open_sized(&d, &erin, d.dir.path(), 24, 80, &["tui"]);
    // The auditor's log opens newest first: the run's end is selected.
    console.wait("the run's end at the top of the log", |s| s.lines().any(|l| l.contains("run_ended") && l.contains("X1")));
    console.press("\r");
    let detail = console.wait_for("matches the digest in the log");
    assert!(detail.contains("t: whole transcript") && detail.contains("Esc or Enter: back"), "{detail}");

    console.press("t");
    let top = console.wait_for("Transcript of X1");
    assert!(top.contains("↓ more") && !top.contains("(end of the transcript"), "{top}");
    console.press(END);
    let end = console.wait_for("(end of the transcript: 300 lines)");
    assert!(end.lines().any(|l| l.trim_start_matches('│').trim_end_matches(['│', '║', '█', '▼', ' ']) == "300"), "the last line:\n{end}");
    assert!(end.contains(" end "), "the scroll says it is at the end:\n{end}");

    // From the top again, a page at a time, to the same last line.
    console.press(HOME);
    console.wait_for("transcript of X1 (matches the digest in the log)");
    for _ in 0..20 {
        console.press(PAGE_DOWN);
    }
    console.wait_for("(end of the transcript: 300 lines)");

    console.press(ESC);
    console.wait_for("t: whole transcript");
    console.press(ESC);
    console.wait("the log again", |s| !s.contains("t: whole transcript") && s.contains("Event log"));
    console.quit();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_too_small_says_so_until_it_is_resized() {
    let mut d = Daemon::start();
    let dave = d.token("dave").await;
    let console = Console::open_sized(&d, &dave, d.dir.path(), 10, 40, &["tui"]);
    let small = console.wait_for("need at least 50x12, now 40x10");
    assert!(small.contains("terminal too small") && !small.contains("My active grants"), "{small}");

    console.resize(24, 80);
    console.wait("the panes and the key hints, whole", |s| {
        !s.contains("too small") && s.contains("My active grants") && s.contains("? help") && s.contains("q quit")
    });

    console.resize(11, 80);
    console.wait_for("need at least 50x12, now 80x11");
    console.quit();
}
