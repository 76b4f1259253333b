//! The console's keys, mouse and config file, in a pseudo-terminal against a real daemon: the
//! filter, the mouse wheel, and keys remapped (or refused) by `$XDG_CONFIG_HOME/zsa/config.toml`.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::console::Console;
use zsa::client::Client;
use zsa::model::wire::NewRequest;

async fn ask(dave: &Client, task: &str, reason: &str) {
    dave.request(&NewRequest { task: task.into(), reason: Some(reason.into()), ..Default::default() }).await.unwrap();
}

/// The text of the table row drawn in reverse video (the selection), if any.
fn selected_row(console: &Console) -> Option<String> {
    let parser = console.screen.lock().unwrap();
    let screen = parser.screen();
    let (rows, cols) = screen.size();
    let (rows, cols) = (rows.get(), cols.get());
    (0..rows)
        .find(|&r| screen.cell(r, 0).is_some_and(|c| c.contents() == "│") && screen.cell(r, 1).is_some_and(|c| c.inverse()))
        .map(|r| screen.contents_between(r, 0, r, cols))
}

fn wait_selected(console: &Console, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = selected_row(console).unwrap_or_default();
        if ok(&row) {
            return row;
        }
        assert!(Instant::now() < deadline, "the selection never reached {what}; it is on {row:?}:\n{}", console.contents());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slash_filters_the_approvers_queue_and_esc_clears_it() {
    let mut d = Daemon::start();
    let alice = d.token("alice").await;
    let dave = d.user("dave").await;
    ask(&dave, "journal", "mail flow stuck").await;
    ask(&dave, "export", "quarterly numbers").await;
    let mut console = Console::open(&d, &alice);
    console.wait_for("Waiting for approval (2)");

    console.press("/quarterly");
    let screen = console.wait_for("Waiting for approval (1)");
    assert!(screen.contains("filter: quarterly") && screen.contains("R2") && !screen.contains("mail flow stuck"), "{screen}");
    console.press("\r");
    console.wait("the filter kept after Enter", |s| s.contains("filter: quarterly") && s.contains("a approve"));
    console.press("\x1b");
    let screen = console.wait_for("Waiting for approval (2)");
    assert!(!screen.contains("filter:"), "{screen}");
    console.quit();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mouse_wheel_moves_the_selection_and_the_mouse_is_given_back() {
    let mut d = Daemon::start();
    let alice = d.token("alice").await;
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    ask(&dave, "journal", "first one").await;
    ask(&dave, "export", "second one").await;
    ask(&carol, "journal", "third one").await;
    let mut console = Console::open(&d, &alice);
    console.wait_for("Waiting for approval (3)");
    wait_selected(&console, "R1", |row| row.contains("R1"));

    // SGR mouse reports: button 65 is the wheel down, 64 up.
    console.press("\x1b[<65;10;10M");
    console.press("\x1b[<65;10;10M");
    wait_selected(&console, "R3", |row| row.contains("R3"));
    console.press("\x1b[<64;10;10M");
    wait_selected(&console, "R2", |row| row.contains("R2"));

    let raw = String::from_utf8_lossy(&console.quit()).into_owned();
    assert!(raw.contains("\x1b[?1000h"), "the console asks for mouse reports");
    assert!(raw.contains("\x1b[?1000l"), "and gives the mouse back on quit");
}

fn config_home(d: &Daemon, text: &str) -> String {
    let home = d.dir.path().join("my-config");
    std::fs::create_dir_all(home.join("zsa")).unwrap();
    std::fs::write(home.join("zsa").join("config.toml"), text).unwrap();
    home.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_remaps_approve_and_the_footer_shows_it() {
    let mut d = Daemon::start();
    let alice = d.token("alice").await;
    let dave = d.user("dave").await;
    ask(&dave, "journal", "mail flow stuck").await;
    let home = config_home(&d, "[keys]\napprove = \"A\"\n\n[colors]\naccent = \"#ff8800\"\n");
    let mut console = Console::open_with_env(&d, &alice, d.dir.path(), 30, 110, &["tui"], &[("XDG_CONFIG_HOME", &home)]);
    console.wait("the remapped key in the footer", |s| s.contains("Waiting for approval (1)") && s.contains(" A approve"));

    // `a` does nothing now (had it opened the prompt, the A after it would be its comment).
    console.press("aA");
    let screen = console.wait_for("Approve R1?");
    assert!(screen.contains("comment (optional): ▏"), "the comment is empty: {screen}");
    console.press("\r");
    console.wait_for("Waiting for approval (0)");
    console.quit();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_colour_in_the_config_file_is_refused_naming_the_file_and_line() {
    let mut d = Daemon::start();
    let alice = d.token("alice").await;
    let home = config_home(&d, "[keys]\napprove = \"A\"\n[colors]\naccent = \"mauve\"\n");
    let mut console = Console::open_with_env(&d, &alice, d.dir.path(), 30, 160, &["tui"], &[("XDG_CONFIG_HOME", &home)]);
    let file = format!("{home}/zsa/config.toml:4: [colors] accent: \"mauve\" is not a colour");
    // Both lines of the refusal: where the mistake is, and how to start anyway.
    console.wait("the config error", |s| s.replace('\n', "").contains(&file) && s.contains("move the file away"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = console.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the console did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "a broken config file stops the console");
    let raw = String::from_utf8_lossy(&console.raw.lock().unwrap()).into_owned();
    assert!(!raw.contains("\x1b[?1049h"), "it is refused before the terminal is taken over");
}
