//! The console's runtime: one channel merges keys, the daemon's event stream, effect results and
//! (only while something counts down) a once-a-second tick. It redraws only when the state says
//! something visible changed, so an idle console sleeps. It owns the terminal and always gives it
//! back: on quit, on SIGTERM, and on panic (ratatui's hook, and ours for the mouse).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::Utc;
use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use super::TuiOptions;
use super::action::{Action, Effect, Submission, daemon_now};
use super::app::App;
use super::config;
use super::theme::Theme;
use super::ui;
use crate::client::{AuditParams, Client, ClientError};
use crate::model::RequestId;
use crate::model::wire::RequestView;

/// How many recent events the auditor pane loads at start; older ones stay in the daemon's log.
const LOG_TAIL: u32 = 10_000;

/// A flood of events still lets a frame through this often.
const MAX_ACTIONS_PER_FRAME: usize = 1024;

type Tx = UnboundedSender<Action>;

/// Who the console is talking as: a client, and its event-stream follower.
struct Session {
    client: Client,
    follower: JoinHandle<()>,
}

impl Session {
    fn start(client: Client, tx: Tx) -> Session {
        let follower = tokio::spawn(follow(client.clone(), tx));
        Session { client, follower }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

pub async fn run(opts: TuiOptions) -> anyhow::Result<()> {
    // A broken config file is reported before the terminal is taken over, where it can be read.
    let settings = config::load(!opts.people.is_empty()).map_err(anyhow::Error::msg)?;
    let theme = Theme { palette: settings.palette, ..Theme::from_env() };
    // Log lines (the demo's daemon runs in this process) wait until the screen is given back.
    crate::logging::hold();
    let mut terminal = ratatui::init();
    capture_mouse();
    let result = event_loop(&mut terminal, opts, theme, settings.keys).await;
    release_mouse();
    // Quietly: where the terminal is gone, there is nothing to restore and no one to tell.
    let _ = ratatui::try_restore();
    if terminal.show_cursor().is_err() {
        // Gone (a closed SSH session): ratatui's own goodbye would write to it on drop, fail,
        // and panic in the attempt to say so on a standard error that is gone too.
        std::mem::forget(terminal);
    }
    crate::logging::release();
    result
}

/// The wheel scrolls the lists. The terminal's own selection still works with Shift held (the
/// help says so), and the mouse is given back on quit and on panic (as are the log lines held
/// meanwhile, after the terminal is restored).
fn capture_mouse() {
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture);
    let after = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        release_mouse();
        after(info);
        crate::logging::release();
    }));
}

fn release_mouse() {
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
}

/// Keys and mouse events as what they mean here and now, read against the mode and pane of the
/// moment (so a key typed right after `n` goes to the form `n` opened). None: nothing to do.
fn translate(app: &App, action: Action) -> Option<Action> {
    match action {
        Action::Key(key) => app.keys.translate(app.key_context(), key),
        Action::Mouse(mouse) => app.keys.translate_mouse(app.key_context(), mouse),
        other => Some(other),
    }
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    opts: TuiOptions,
    theme: Theme,
    keymap: super::keymap::Keymap,
) -> anyhow::Result<()> {
    let (tx, mut rx) = unbounded_channel();
    let offset = Arc::new(AtomicI64::new(0));
    let names = opts.people.iter().map(|(n, _)| n.clone()).collect();
    let first_token = opts.people.first().map(|(_, t)| t.clone()).or(opts.token.clone());
    let mut session = Session::start(Client::connect(&opts.endpoint, first_token)?, tx.clone());
    let mut app = App::new(opts.endpoint.describe(), Utc::now(), opts.bell, names);
    app.keys = keymap;

    tokio::spawn(keys(tx.clone()));
    if let Some(path) = opts.notices.clone() {
        tokio::spawn(watch_notices(path, tx.clone()));
    }
    // SIGTERM, and SIGHUP (the SSH session or terminal went away): quit cleanly, so the terminal
    // is restored and whoever started the console (the demo) can clean up after it.
    for kind in [tokio::signal::unix::SignalKind::terminate(), tokio::signal::unix::SignalKind::hangup()] {
        let quit_tx = tx.clone();
        if let Ok(mut signal) = tokio::signal::unix::signal(kind) {
            tokio::spawn(async move {
                signal.recv().await;
                let _ = quit_tx.send(Action::Quit);
            });
        }
    }

    loop {
        if app.dirty {
            if let Err(e) = terminal.draw(|f| ui::render(&app, f, &theme)) {
                // The terminal went away (a closed SSH session): there is no one left to show
                // anything to, so the console ends as if they had quit.
                tracing::info!(error = %e, "the console's terminal is gone; the console ends");
                break;
            }
            app.dirty = false;
        }
        let action = if app.needs_ticks() {
            let ms = 1000 - daemon_now(offset.load(Ordering::Relaxed)).timestamp_subsec_millis().min(999) as u64;
            tokio::select! {
                a = rx.recv() => a,
                _ = tokio::time::sleep(Duration::from_millis(ms)) => Some(Action::Tick),
            }
        } else {
            rx.recv().await
        };
        let Some(first) = action else { break };
        // What is already queued (up to a frame's worth) is absorbed before the next frame, so a
        // burst of events rebuilds the sections once, not once per event.
        let mut effects = Vec::new();
        if let Some(first) = translate(&app, first) {
            effects = app.absorb(first, daemon_now(offset.load(Ordering::Relaxed)));
        }
        let mut absorbed = 1;
        while !app.quit
            && absorbed < MAX_ACTIONS_PER_FRAME
            && let Ok(more) = rx.try_recv()
        {
            absorbed += 1;
            if let Some(more) = translate(&app, more) {
                effects.extend(app.absorb(more, daemon_now(offset.load(Ordering::Relaxed))));
            }
        }
        app.refresh();
        for effect in effects {
            match effect {
                Effect::SwitchUser(i) => {
                    let token = opts.people.get(i).map(|(_, t)| t.clone());
                    session = Session::start(Client::connect(&opts.endpoint, token)?, tx.clone());
                }
                Effect::Bell => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(b"\x07").and_then(|_| out.flush());
                }
                other => {
                    tokio::spawn(perform(other, session.client.clone(), tx.clone(), offset.clone()));
                }
            }
        }
        if app.quit {
            break;
        }
    }
    Ok(())
}

/// Terminal input as actions.
async fn keys(tx: Tx) {
    let mut events = EventStream::new();
    while let Some(Ok(event)) = events.next().await {
        let action = match event {
            TermEvent::Key(k) => Action::Key(k),
            TermEvent::Mouse(m) => Action::Mouse(m),
            TermEvent::Resize(..) => Action::Resize,
            _ => continue,
        };
        if tx.send(action).is_err() {
            return;
        }
    }
}

/// Follows the daemon's event stream for as long as the console runs, reconnecting with growing
/// pauses and resuming after the last event it saw, so nothing is missed across a restart.
async fn follow(client: Client, tx: Tx) {
    let mut last: Option<u64> = None;
    let mut pause = Duration::from_millis(100);
    loop {
        match client.events(last).await {
            Ok(mut stream) => {
                pause = Duration::from_millis(100);
                if tx.send(Action::StreamConnected).is_err() {
                    return;
                }
                while let Some(item) = stream.next().await {
                    let Ok(event) = item else { break };
                    last = Some(event.seq);
                    if tx.send(Action::EventReceived(event)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Action::StreamLost("the daemon closed the stream".into()));
            }
            Err(e) => {
                let why = match e {
                    ClientError::Unreachable { .. } => "the daemon is not answering".to_string(),
                    other => other.to_string(),
                };
                let _ = tx.send(Action::StreamLost(why));
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// How often the demo's notices file is looked at.
const NOTICES_POLL: Duration = Duration::from_millis(250);

/// Follows the demo's notices file (a file channel's JSON lines) and hands each new notice to
/// the app. A line cut short by a write in progress waits for the rest.
async fn watch_notices(path: std::path::PathBuf, tx: Tx) {
    let mut read = 0u64;
    let mut partial = Vec::new();
    loop {
        if let Ok(more) = read_from(&path, read).await
            && !more.is_empty()
        {
            read += more.len() as u64;
            partial.extend_from_slice(&more);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                if let Ok(notice) = serde_json::from_slice::<crate::notify::Notice>(&line)
                    && tx.send(Action::NoticeWritten(Box::new(notice))).is_err()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(NOTICES_POLL).await;
    }
}

/// What `path` holds from byte `offset` on.
async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut more = Vec::new();
    file.read_to_end(&mut more).await?;
    Ok(more)
}

fn message(e: ClientError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Carries out one effect against the daemon and reports back as actions.
async fn perform(effect: Effect, client: Client, tx: Tx, offset: Arc<AtomicI64>) {
    let send = |a: Action| {
        let _ = tx.send(a);
    };
    match effect {
        Effect::LoadAll => match load(&client, &offset).await {
            Ok(a) => send(a),
            Err(e) => send(Action::LoadFailed(message(e))),
        },
        Effect::LoadHistory(before) => match client.my_requests(Some(before), HISTORY_PAGE).await {
            Ok(requests) => {
                let older = next_page(&requests);
                send(Action::HistoryLoaded { before, requests, older });
            }
            Err(e) => send(Action::HistoryFailed(message(e))),
        },
        Effect::FetchRequest(id) => {
            if let Ok(o) = client.show_request(id).await {
                send(Action::RequestLoaded(Box::new(o)));
            }
        }
        Effect::FetchGrant(id) => {
            if let Ok(g) = client.show_grant(id).await {
                send(Action::GrantLoaded(Box::new(g)));
            }
        }
        Effect::FetchFailedNotices => match client.notices(true).await {
            Ok(notices) => send(Action::FailedNoticesLoaded(notices)),
            Err(e) => send(Action::Failed(format!("could not list the failed notices: {}", message(e)))),
        },
        Effect::Verify => match client.verify().await {
            Ok(r) => send(Action::Verified(r)),
            Err(e) => send(Action::VerifyFailed(message(e))),
        },
        Effect::Export { path, events } => {
            let target = path.clone();
            let written = tokio::task::spawn_blocking(move || crate::export::write_new_file(std::path::Path::new(&target), &events)).await;
            match written {
                Ok(Ok(count)) => send(Action::Exported { path, count }),
                Ok(Err(e)) => send(Action::Failed(format!("could not export to {path}: {e}"))),
                Err(e) => send(Action::Failed(format!("export failed: {e}"))),
            }
        }
        Effect::Submit(s) => submit(s, &client, send).await,
        Effect::FetchTranscript(run) => match client.transcript(run).await {
            Ok(bytes) => {
                use sha2::Digest;
                let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
                send(Action::TranscriptLoaded { run, text: String::from_utf8_lossy(&bytes).into_owned(), sha256 });
            }
            Err(e) => send(Action::Failed(format!("could not load the transcript of {run}: {}", message(e)))),
        },
        Effect::Bell | Effect::SwitchUser(_) => {}
    }
}

async fn submit(s: Submission, client: &Client, send: impl Fn(Action)) {
    let result = match s {
        Submission::Request(new) => client.request(&new).await.map(|o| {
            let msg = match &o.grant {
                Some(g) => format!("{} granted at once as {}", o.request.id, g.id),
                None => format!("{} sent: waiting for {} approval(s)", o.request.id, o.request.approvals_needed),
            };
            (Action::RequestLoaded(Box::new(o)), msg)
        }),
        Submission::Approve(id, comment) => client.approve(id, comment).await.map(|o| {
            let msg = match &o.grant {
                Some(g) => format!("approved {id}: {} is active", g.id),
                None => format!("approved {id}: {}/{} approvals", o.request.approvals.len(), o.request.approvals_needed),
            };
            (Action::RequestLoaded(Box::new(o)), msg)
        }),
        Submission::Deny(id, comment) => {
            client.deny(id, Some(comment)).await.map(|o| (Action::RequestLoaded(Box::new(o)), format!("denied {id}")))
        }
        Submission::Cancel(id) => client.cancel(id).await.map(|o| (Action::RequestLoaded(Box::new(o)), format!("cancelled {id}"))),
        Submission::Revoke(id, reason) => {
            client.revoke(id, Some(reason)).await.map(|g| (Action::GrantLoaded(Box::new(g)), format!("revoked {id}")))
        }
        Submission::Relinquish(id) => client.relinquish(id).await.map(|g| (Action::GrantLoaded(Box::new(g)), format!("gave up {id}"))),
        Submission::Review(id, comment) => {
            client.review(id, comment).await.map(|g| (Action::GrantLoaded(Box::new(g)), format!("reviewed {id}")))
        }
        Submission::Extend(id, by, reason) => client.extend(id, by, reason).await.map(|o| {
            let by = crate::model::duration::format(by);
            let msg = match &o.request {
                Some(r) => format!("{} asks to extend {id} by {by}: waiting for {} approval(s)", r.id, r.approvals_needed),
                None => format!("extended {id} by {by}"),
            };
            (Action::GrantLoaded(Box::new(o.grant)), msg)
        }),
    };
    match result {
        Ok((loaded, msg)) => {
            send(loaded);
            send(Action::Done(msg));
        }
        Err(e) => send(Action::Failed(message(e))),
    }
}

/// How many of the viewer's own requests a page of history holds: history is loaded a page at a
/// time as the cursor nears its end, so the console never holds a long past whole.
pub const HISTORY_PAGE: u32 = 100;

/// Where the next page of history starts, if this page was full (there may be more).
fn next_page(page: &[RequestView]) -> Option<RequestId> {
    (page.len() as u32 == HISTORY_PAGE).then(|| page.iter().map(|r| r.id).min()).flatten()
}

/// Loads what the panes show (what is live, and the newest page of the viewer's own history),
/// and measures the daemon's clock against ours.
async fn load(client: &Client, offset: &AtomicI64) -> Result<Action, ClientError> {
    let sent = Utc::now();
    let me = client.whoami().await?;
    let received = Utc::now();
    let midpoint = sent + (received - sent) / 2;
    offset.store((me.now - midpoint).num_milliseconds(), Ordering::Relaxed);
    let (tasks, mut requests, mine, mut grants, to_review) = tokio::try_join!(
        client.tasks(),
        client.live_requests(),
        client.my_requests(None, HISTORY_PAGE),
        client.grants(false),
        client.grants_to_review()
    )?;
    let older = next_page(&mine);
    requests.extend(mine);
    grants.extend(to_review);
    let sees_log = me.roles.iter().any(|r| r == "admin" || r == "auditor");
    let (log, notices) = if sees_log {
        let params = AuditParams { tail: Some(LOG_TAIL), limit: Some(LOG_TAIL), ..Default::default() };
        tokio::try_join!(client.audit(&params), client.notices(true))?
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Action::Loaded { me, tasks, requests, grants, older, log, notices })
}

#[cfg(test)]
mod tests {
    /// Set for the child process that panics with the mouse captured.
    const CHILD: &str = "ZSA_TEST_PANIC_WITH_THE_MOUSE_CAPTURED";

    /// Nothing in the console panics on purpose, so the hook is tested in a child process of this
    /// test binary (no switch in the real binary): it captures the mouse as the console does and
    /// panics. The terminal must get the mouse back: the release comes after the capture.
    #[test]
    fn a_panic_gives_the_mouse_back() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tui::runtime::tests::panic_with_the_mouse_captured", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && stderr.contains("on purpose"), "the child panicked: {stdout}\n{stderr}");
        let captured = stdout.find("\x1b[?1000h").unwrap_or_else(|| panic!("the child captured the mouse: {stdout:?}"));
        let released = stdout.rfind("\x1b[?1000l").unwrap_or_else(|| panic!("the mouse was not given back: {stdout:?}"));
        assert!(released > captured, "{stdout:?}");
    }

    /// Run only by `a_panic_gives_the_mouse_back`, in its own process.
    #[test]
    #[ignore = "run in a child process by a_panic_gives_the_mouse_back"]
    fn panic_with_the_mouse_captured() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        super::capture_mouse();
        panic!("on purpose, with the mouse captured");
    }
}
