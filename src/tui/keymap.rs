//! One table of keys drives dispatch, the footer hints and the `?` help, so the help always
//! matches what the keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::Action;
use super::app::{App, Mode, Pane};

pub struct Binding {
    /// How the keys are shown.
    pub keys: &'static str,
    /// One word for the footer.
    pub short: &'static str,
    pub codes: &'static [KeyCode],
    /// None: in every pane.
    pub pane: Option<Pane>,
    pub action: Action,
    pub help: &'static str,
    /// Shown in the footer (the rest only in `?`).
    pub hint: bool,
}

const fn bind(
    keys: &'static str,
    codes: &'static [KeyCode],
    pane: Option<Pane>,
    action: Action,
    help: &'static str,
    short: &'static str,
) -> Binding {
    Binding { keys, short, codes, pane, action, help, hint: !short.is_empty() }
}

use KeyCode::*;
const R: Option<Pane> = Some(Pane::Requester);
const A: Option<Pane> = Some(Pane::Approver);
const U: Option<Pane> = Some(Pane::Auditor);

pub const BINDINGS: &[Binding] = &[
    bind("n", &[Char('n')], R, Action::NewRequest, "ask for a task (a form checked against its policy)", "new"),
    bind("c", &[Char('c')], R, Action::CancelSelected, "cancel the selected pending request", "cancel"),
    bind("x", &[Char('x')], R, Action::RelinquishSelected, "give up the selected grant", "relinquish"),
    bind("a", &[Char('a')], A, Action::ApproveSelected, "approve the selected request (comment optional)", "approve"),
    bind("d", &[Char('d')], A, Action::DenySelected, "deny the selected request (comment required)", "deny"),
    bind("r", &[Char('r')], A, Action::RevokeSelected, "revoke the selected grant (reason required)", "revoke"),
    bind("v", &[Char('v')], A, Action::ReviewSelected, "review the selected break-glass grant", "review"),
    bind("/", &[Char('/')], U, Action::StartFilter, "filter the log by user, task, kind or text", "filter"),
    bind("f", &[Char('f')], U, Action::ToggleFollow, "follow new events (stay at the top)", "follow"),
    bind("e", &[Char('e')], U, Action::ExportLog, "export what the filter shows (JSONL, or CSV if the name ends .csv)", "export"),
    bind("V", &[Char('V')], U, Action::VerifyLog, "verify the hash chain now", "verify"),
    bind("r", &[Char('r')], U, Action::RevokeSelected, "revoke the selected grant (admins)", ""),
    bind("↑↓ jk", &[KeyCode::Up, KeyCode::Down, Char('k'), Char('j')], None, Action::Down, "move", ""),
    bind("PgUp PgDn", &[KeyCode::PageUp, KeyCode::PageDown], None, Action::PageDown, "move a page", ""),
    bind("g G", &[Home, End, Char('g'), Char('G')], None, Action::Top, "first, last", ""),
    bind("←→ hl", &[Left, Right, Char('h'), Char('l')], None, Action::NextSection, "previous, next section", ""),
    bind("Enter", &[Enter], None, Action::OpenDetail, "details of the selection", "details"),
    bind("Esc", &[Esc], None, Action::Back, "back, close, dismiss", ""),
    bind("Tab 1 2 3", &[Tab, Char('1'), Char('2'), Char('3')], None, Action::NextPane, "switch pane", "pane"),
    bind("b", &[Char('b')], None, Action::ToggleBell, "bell for new requests on or off", ""),
    bind("F2", &[F(2)], None, Action::SwitchUser, "demo: be the next demo person", ""),
    bind("?", &[Char('?')], None, Action::ToggleHelp, "this help", "help"),
    bind("q", &[Char('q')], None, Action::Quit, "quit", "quit"),
];

/// The bindings that work in a pane, for the footer and the help overlay.
pub fn for_pane(pane: Pane) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| b.pane.is_none() || b.pane == Some(pane))
}

/// What a key means here and now. Keys that share a binding row but mean different things
/// (up and down, first and last) are told apart by the key itself.
pub fn translate(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == Char('c') {
        return Some(Action::Quit);
    }
    if app.mode == Mode::Help {
        return Some(Action::ToggleHelp);
    }
    let code = match key.code {
        Char(c) if key.modifiers.contains(KeyModifiers::SHIFT) => Char(c.to_ascii_uppercase()),
        other => other,
    };
    let specific = match code {
        Up | Char('k') => Some(Action::Up),
        PageUp => Some(Action::PageUp),
        End | Char('G') => Some(Action::Bottom),
        Left | Char('h') => Some(Action::PrevSection),
        Char(c @ '1'..='3') => Some(Action::SelectPane(c as usize - '1' as usize)),
        _ => None,
    };
    if specific.is_some() {
        return specific;
    }
    if app.mode == Mode::Detail && code == Enter {
        return Some(Action::Back);
    }
    for_pane(app.pane).find(|b| b.codes.contains(&code)).map(|b| b.action.clone())
}
