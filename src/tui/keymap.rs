//! One table of keys drives dispatch, the footer hints and the `?` help, so the help always
//! matches what the keys do, remapped ones (from the user's config file) included.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

use super::action::Action;
use super::context::{KeyContext, ModeKind, Pane};

#[derive(Clone, Debug)]
pub struct Binding {
    /// How the keys are shown.
    pub keys: String,
    /// One word for the footer.
    pub short: &'static str,
    pub codes: Vec<KeyCode>,
    /// None: in every pane.
    pub pane: Option<Pane>,
    pub action: Action,
    pub help: &'static str,
    /// Shown in the footer (the rest only in `?`).
    pub hint: bool,
    /// The name a config file remaps it by; None: fixed (moving, switching panes, Enter, Esc).
    pub name: Option<&'static str>,
}

/// The keys of the console: the defaults, with the user's remappings applied.
#[derive(Clone, Debug)]
pub struct Keymap {
    bindings: Vec<Binding>,
}

use KeyCode::*;
const R: Option<Pane> = Some(Pane::Requester);
const A: Option<Pane> = Some(Pane::Approver);
const U: Option<Pane> = Some(Pane::Auditor);

/// A remappable binding: its config name, default key, pane, action, help and footer word.
type Remappable = (&'static str, char, Option<Pane>, Action, &'static str, &'static str);

const REMAPPABLE: &[Remappable] = &[
    ("new", 'n', R, Action::NewRequest, "ask for a task (a form checked against its policy)", "new"),
    ("cancel", 'c', R, Action::CancelSelected, "cancel the selected pending request", "cancel"),
    ("relinquish", 'x', R, Action::RelinquishSelected, "give up the selected grant", "relinquish"),
    ("approve", 'a', A, Action::ApproveSelected, "approve the selected request (comment optional)", "approve"),
    ("deny", 'd', A, Action::DenySelected, "deny the selected request (comment required)", "deny"),
    ("revoke", 'r', A, Action::RevokeSelected, "revoke the selected grant (reason required)", "revoke"),
    ("review", 'v', A, Action::ReviewSelected, "review the selected break-glass grant", "review"),
    ("follow", 'f', U, Action::ToggleFollow, "follow new events (stay at the top)", "follow"),
    ("export", 'e', U, Action::ExportLog, "export what the filter shows (JSONL, or CSV if the name ends .csv)", "export"),
    ("verify", 'V', U, Action::VerifyLog, "verify the hash chain now", "verify"),
    ("revoke", 'r', U, Action::RevokeSelected, "revoke the selected grant (admins)", ""),
    ("filter", '/', None, Action::StartFilter, "filter the rows: id, task, user, reason, ticket, state", "filter"),
    ("extend", '+', R, Action::ExtendSelected, "ask for more time on the selected grant (how long, then why)", ""),
    ("sort", 's', None, Action::CycleSort, "sort by the next column: id, task, user, time, none", ""),
    ("sort_reverse", 'S', None, Action::ReverseSort, "reverse the sort", ""),
    ("bell", 'b', None, Action::ToggleBell, "bell for new requests on or off", ""),
    ("help", '?', None, Action::ToggleHelp, "this help", "help"),
    ("quit", 'q', None, Action::Quit, "quit", "quit"),
];

/// The names a config file may remap, for its error messages.
pub fn remappable_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = REMAPPABLE.iter().map(|r| r.0).chain(["switch_person"]).collect();
    names.dedup();
    names
}

fn fixed(keys: &str, codes: &[KeyCode], action: Action, help: &'static str, short: &'static str) -> Binding {
    Binding { keys: keys.into(), short, codes: codes.to_vec(), pane: None, action, help, hint: !short.is_empty(), name: None }
}

/// How a key is written in the help and in a config file: `a`, `V`, `F2`.
pub fn key_name(code: KeyCode) -> String {
    match code {
        Char(c) => c.to_string(),
        F(n) => format!("F{n}"),
        other => format!("{other:?}"),
    }
}

/// A key as a config file names it: one character, or F1 to F12.
pub fn parse_key(text: &str) -> Result<KeyCode, String> {
    let mut chars = text.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && !c.is_control()
        && c != ' '
    {
        return Ok(Char(c));
    }
    if let Some(n) = text.strip_prefix('F').or_else(|| text.strip_prefix('f')).and_then(|n| n.parse::<u8>().ok())
        && (1..=12).contains(&n)
    {
        return Ok(F(n));
    }
    Err(format!("{text:?} is not a key: use one character (\"a\", \"A\", \"/\") or F1 to F12"))
}

impl Keymap {
    /// The default keys. In the demo (`demo`), F2 shows in the footer.
    pub fn new(demo: bool) -> Keymap {
        let mut bindings: Vec<Binding> = REMAPPABLE
            .iter()
            .map(|(name, key, pane, action, help, short)| Binding {
                keys: key.to_string(),
                short,
                codes: vec![Char(*key)],
                pane: *pane,
                action: action.clone(),
                help,
                hint: !short.is_empty(),
                name: Some(name),
            })
            .collect();
        bindings.extend([
            fixed("↑↓ jk", &[Up, Down, Char('k'), Char('j')], Action::Down, "move (the mouse wheel too)", ""),
            fixed("PgUp PgDn", &[PageUp, PageDown], Action::PageDown, "move a page", ""),
            fixed("g G", &[Home, End, Char('g'), Char('G')], Action::Top, "first, last", ""),
            fixed("←→ hl", &[Left, Right, Char('h'), Char('l')], Action::NextSection, "previous, next section", ""),
            fixed("Enter", &[Enter], Action::OpenDetail, "details of the selection", "details"),
            fixed("Esc", &[Esc], Action::Back, "back, close, dismiss, clear the filter", ""),
            fixed("Tab 1 2 3", &[Tab, Char('1'), Char('2'), Char('3')], Action::NextPane, "switch pane", "pane"),
            Binding {
                keys: "F2".into(),
                short: "person",
                codes: vec![F(2)],
                pane: None,
                action: Action::SwitchUser,
                help: "demo: be the next demo person",
                hint: demo,
                name: Some("switch_person"),
            },
            fixed("Shift+drag", &[], Action::Resize, "select text (plain drags go to the console)", ""),
        ]);
        // Quit and help last in the footer, where they are looked for.
        let last = |b: &Binding| matches!(b.action, Action::ToggleHelp | Action::Quit);
        bindings.sort_by_key(last);
        Keymap { bindings }
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// Binds `name` (every binding of that name) to `code` instead. Check the result with
    /// `clash` once every remapping is applied, so two keys can swap.
    pub fn remap(&mut self, name: &str, code: KeyCode) -> Result<(), String> {
        if !self.bindings.iter().any(|b| b.name == Some(name)) {
            return Err(format!("there is no key called {name:?}; the keys are: {}", remappable_names().join(", ")));
        }
        for b in self.bindings.iter_mut().filter(|b| b.name == Some(name)) {
            b.codes = vec![code];
            b.keys = key_name(code);
        }
        Ok(())
    }

    /// Why `name`'s key cannot be used: another binding has it where both work.
    pub fn clash(&self, name: &str) -> Option<String> {
        let overlaps = |a: Option<Pane>, b: Option<Pane>| a.is_none() || b.is_none() || a == b;
        for b in self.bindings.iter().filter(|b| b.name == Some(name)) {
            for code in &b.codes {
                if let Some(other) =
                    self.bindings.iter().find(|o| o.name != Some(name) && overlaps(o.pane, b.pane) && o.codes.contains(code))
                {
                    let what = other.name.map(str::to_string).unwrap_or_else(|| format!("{:?}", other.help));
                    return Some(format!("{} is already the key for {what}; choose another or remap that one too", key_name(*code)));
                }
            }
        }
        None
    }

    /// The bindings that work in a pane, for the footer and the help overlay.
    pub fn for_pane(&self, pane: Pane) -> impl Iterator<Item = &Binding> {
        self.bindings.iter().filter(move |b| b.pane.is_none() || b.pane == Some(pane))
    }

    /// The key shown for an action in a pane (for hints such as "press / to filter").
    pub fn key_for(&self, pane: Pane, action: &Action) -> String {
        let same = |b: &&Binding| std::mem::discriminant(&b.action) == std::mem::discriminant(action);
        self.for_pane(pane).find(same).map(|b| b.keys.clone()).unwrap_or_default()
    }

    /// What a key means here and now. Keys that share a binding row but mean different things
    /// (up and down, first and last) are told apart by the key itself.
    pub fn translate(&self, ctx: KeyContext, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == Char('c') {
            return Some(Action::Quit);
        }
        if ctx.mode != ModeKind::Normal {
            // A popup or a text field has the keyboard: the app reads the key against it.
            return Some(Action::ModeKey(key));
        }
        let code = match key.code {
            Char(c) if key.modifiers.contains(KeyModifiers::SHIFT) => Char(c.to_ascii_uppercase()),
            other => other,
        };
        // Remapped keys first: a config may give a fixed key's letter to an action only where
        // it is free, so this never hides a moving key.
        if let Some(b) = self.for_pane(ctx.pane).find(|b| b.name.is_some() && b.codes.contains(&code)) {
            return Some(b.action.clone());
        }
        let specific = match code {
            Up | Char('k') => Some(Action::Up),
            PageUp => Some(Action::PageUp),
            End | Char('G') => Some(Action::Bottom),
            Left | Char('h') => Some(Action::PrevSection),
            Char(c @ '1'..='3') => Some(Action::SelectPane(c as usize - '1' as usize)),
            _ => None,
        };
        specific.or_else(|| self.for_pane(ctx.pane).find(|b| b.codes.contains(&code)).map(|b| b.action.clone()))
    }

    /// The mouse wheel moves through the current list, or scrolls the popup on screen as ↑↓ do.
    pub fn translate_mouse(&self, ctx: KeyContext, mouse: MouseEvent) -> Option<Action> {
        let (intent, key) = match mouse.kind {
            MouseEventKind::ScrollUp => (Action::Up, Up),
            MouseEventKind::ScrollDown => (Action::Down, Down),
            _ => return None,
        };
        match ctx.mode {
            ModeKind::Normal => Some(intent),
            ModeKind::Help | ModeKind::Detail => Some(Action::ModeKey(KeyEvent::new(key, KeyModifiers::NONE))),
            ModeKind::Editing => None,
        }
    }
}
