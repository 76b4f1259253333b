//! The console's state and its `update`: pure, it never awaits. Each action changes the state
//! and returns effects for the runtime to carry out; results come back as actions.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::action::{Action, Effect, Submission};
pub use super::context::Pane;
use super::context::{KeyContext, ModeKind};
use super::form::RequestForm;
use super::keymap::Keymap;
use super::textfield::TextField;
use crate::model::wire::{GrantView, NoticeView, RequestView, RowAction, TaskView, VerifyReport, WhoAmI};
use crate::model::{Change, Event, GrantId, GrantState, RequestId, RequestState, RunId, text};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    /// The stream broke; the runtime is reconnecting.
    Lost(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyState {
    Unknown,
    Checking,
    Done(VerifyReport),
}

/// What a confirm prompt will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    Approve(RequestId),
    Deny(RequestId),
    Cancel(RequestId),
    Revoke(GrantId),
    Relinquish(GrantId),
    Review(GrantId),
    Extend(GrantId),
}

impl PromptKind {
    pub fn title(self) -> String {
        match self {
            Self::Approve(id) => format!("Approve {id}"),
            Self::Deny(id) => format!("Deny {id}"),
            Self::Cancel(id) => format!("Cancel your request {id}"),
            Self::Revoke(id) => format!("Revoke {id}"),
            Self::Relinquish(id) => format!("Give up your grant {id}"),
            Self::Review(id) => format!("Review break-glass grant {id}"),
            Self::Extend(id) => format!("Extend your grant {id}"),
        }
    }

    /// The label of the text field, and whether it must be filled; None: no text.
    pub fn input(self) -> Option<(&'static str, bool)> {
        match self {
            Self::Approve(_) | Self::Review(_) => Some(("comment (optional)", false)),
            Self::Deny(_) => Some(("comment (required: tell them why)", true)),
            Self::Revoke(_) => Some(("reason (required)", true)),
            Self::Extend(_) => Some(("how much longer, then why (30m still migrating)", true)),
            Self::Cancel(_) | Self::Relinquish(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: TextField,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    Detail,
    Form(Box<RequestForm>),
    Prompt(Prompt),
    /// Editing the current pane's filter.
    Filter,
    /// Editing the export path.
    Export(TextField),
    /// A run's whole transcript, over the detail of its event (keys in `scrolling.rs`).
    Transcript(RunId),
}

impl Mode {
    /// How keys are read in this mode.
    pub fn kind(&self) -> ModeKind {
        match self {
            Mode::Normal => ModeKind::Normal,
            Mode::Help => ModeKind::Help,
            Mode::Detail | Mode::Transcript(_) => ModeKind::Detail,
            Mode::Form(_) | Mode::Prompt(_) | Mode::Filter | Mode::Export(_) => ModeKind::Editing,
        }
    }
}

/// What a pane's rows can be sorted by: columns every kind of row has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortColumn {
    Id,
    Task,
    /// The requester, holder or actor.
    User,
    /// When it was asked for, when it ends, when it happened.
    Time,
}

impl SortColumn {
    pub fn label(self) -> &'static str {
        match self {
            SortColumn::Id => "id",
            SortColumn::Task => "task",
            SortColumn::User => "user",
            SortColumn::Time => "time",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub column: SortColumn,
    pub reversed: bool,
}

/// One selectable row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Request(RequestId),
    Grant(GrantId),
    /// An index into `App::log`.
    Event(usize),
    /// An index into `App::failed_notices`.
    Notice(usize),
}

#[derive(Clone)]
pub struct Section {
    pub title: &'static str,
    pub items: Vec<Item>,
    /// Drawn to stand out (break-glass grants waiting for review).
    pub urgent: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub section: usize,
    pub row: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toast {
    pub text: String,
    pub error: bool,
    pub until: DateTime<Utc>,
}

/// How long a toast stays unless dismissed: long enough to read, errors longer.
pub const TOAST_SECS: i64 = 4;
pub const TOAST_ERROR_SECS: i64 = 10;
/// Events kept for the auditor pane; older ones are in the daemon's log.
pub const LOG_KEEP: usize = 200_000;
/// The log is trimmed back to `LOG_KEEP` only once it is this much over, so a full log does not
/// move every kept event for each new one.
const LOG_SLACK: usize = LOG_KEEP / 8;

#[derive(Clone)]
pub struct App {
    /// The daemon's time, as of the last action.
    pub now: DateTime<Utc>,
    pub daemon: String,
    pub me: Option<WhoAmI>,
    pub connection: Connection,
    pub tasks: Vec<TaskView>,
    pub requests: BTreeMap<RequestId, RequestView>,
    pub grants: BTreeMap<GrantId, GrantView>,
    pub log: Vec<Event>,
    /// Each pane's filter (`/`): only rows containing it are shown.
    pub filters: [TextField; 3],
    /// Each pane's sort (`s`, `S`); None: the pane's own order.
    pub sorts: [Option<Sort>; 3],
    pub follow: bool,
    pub verify: VerifyState,
    /// Verifications asked for and not yet answered: a late answer to one from before a
    /// reconnect does not end the state of the one running now.
    verifying: u32,
    /// The keys, with the user's remappings; also drawn in the footer and the help.
    pub keys: Keymap,
    pub panes: Vec<Pane>,
    pub pane: Pane,
    pub mode: Mode,
    pub cursors: [Cursor; 3],
    /// Sections per pane, rebuilt when data changes, never per frame.
    pub sections: [Vec<Section>; 3],
    /// Pending requests that arrived while the console was open and not yet looked at.
    pub fresh: BTreeSet<RequestId>,
    /// Requests created while the console was open, not yet fetched: once the daemon's row says
    /// the viewer may decide one, it is marked fresh (and the bell rings).
    announcing: BTreeSet<RequestId>,
    /// How many requests wait for the viewer's decision (the approver tab's badge), counted from
    /// the data, so a filter on the pane does not change it.
    pub waiting: usize,
    pub bell: bool,
    pub toast: Option<Toast>,
    /// Demo people to switch between with F2 (names only; the runtime holds the tokens).
    pub people: Vec<String>,
    pub person: usize,
    /// Transcripts loaded for the detail view: text, and the SHA-256 of what arrived.
    pub transcripts: BTreeMap<RunId, (String, String)>,
    /// Notices the daemon gave up on (auditors and admins see them), oldest first.
    pub failed_notices: Vec<NoticeView>,
    /// Notices from the demo's file that arrived before the console knew who it is.
    unshown_notices: Vec<crate::notify::Notice>,
    /// How far the popup on screen is scrolled (keys in `scrolling.rs`).
    pub scroll: super::widgets::scroll::Scroll,
    pub quit: bool,
    /// Something visible changed since the last frame.
    pub dirty: bool,
    /// Data changed since the sections were built. A burst of events marks them once and they
    /// are rebuilt once, before the next key or frame, not once per event.
    stale: bool,
    /// While a full load is under way: the rows fetched meanwhile, to fetch again after it.
    fetched_during_load: Option<Vec<Effect>>,
    /// Where the next (older) page of the viewer's own history starts, if there may be one:
    /// history is loaded a page at a time as the cursor nears its end.
    history_older: Option<RequestId>,
    /// A page of history is being loaded (one at a time).
    history_loading: bool,
}

const HISTORY_TITLE: &str = "My history";

/// How near the end of "My history" the cursor gets before the next page is asked for.
const HISTORY_AHEAD: usize = 10;

impl App {
    pub fn new(daemon: String, now: DateTime<Utc>, bell: bool, people: Vec<String>) -> Self {
        let mut app = App {
            now,
            daemon,
            me: None,
            connection: Connection::Connecting,
            tasks: Vec::new(),
            requests: BTreeMap::new(),
            grants: BTreeMap::new(),
            log: Vec::new(),
            filters: Default::default(),
            sorts: [None; 3],
            follow: true,
            verify: VerifyState::Unknown,
            verifying: 0,
            keys: Keymap::new(!people.is_empty()),
            panes: vec![Pane::Requester],
            pane: Pane::Requester,
            mode: Mode::Normal,
            cursors: [Cursor::default(); 3],
            sections: [Vec::new(), Vec::new(), Vec::new()],
            fresh: BTreeSet::new(),
            announcing: BTreeSet::new(),
            waiting: 0,
            bell,
            toast: None,
            people,
            person: 0,
            transcripts: BTreeMap::new(),
            failed_notices: Vec::new(),
            unshown_notices: Vec::new(),
            scroll: Default::default(),
            quit: false,
            dirty: true,
            stale: false,
            fetched_during_load: None,
            history_older: None,
            history_loading: false,
        };
        app.rebuild();
        app
    }

    pub fn user(&self) -> &str {
        self.me.as_ref().map(|m| m.user.as_str()).unwrap_or("?")
    }

    fn has_role(&self, role: &str) -> bool {
        self.me.as_ref().is_some_and(|m| m.roles.iter().any(|r| r == role))
    }

    /// The demo's notices for the viewer, as a toast: the newest, and how many came at once.
    fn show_notices(&mut self) {
        let mine: Vec<_> =
            std::mem::take(&mut self.unshown_notices).into_iter().filter(|n| n.to.name.as_deref() == Some(self.user())).collect();
        let Some(newest) = mine.last() else { return };
        let subject = text::inert_line(&newest.subject);
        match mine.len() {
            1 => self.toast(format!("notice for you: {subject}"), false),
            n => self.toast(format!("{n} notices for you; the newest: {subject}"), false),
        }
    }

    /// Auditors and admins: they see the whole log and the outbox.
    fn sees_everything(&self) -> bool {
        self.has_role("auditor") || self.has_role("admin")
    }

    /// Whether `r` is for the viewer to decide: the daemon lets them approve or deny it, and its
    /// deadline has not passed (its expiry event brings fresh actions soon).
    fn for_me_to_decide(r: &RequestView, now: DateTime<Utc>) -> bool {
        r.pending_until > now && (r.actions.allows(RowAction::Approve) || r.actions.allows(RowAction::Deny))
    }

    /// Ticks are needed only while something on screen counts down or a toast is shown.
    pub fn needs_ticks(&self) -> bool {
        self.toast.is_some() || self.grants.values().any(|g| g.state == GrantState::Active)
    }

    pub fn current_sections(&self) -> &[Section] {
        &self.sections[self.pane.index()]
    }

    pub fn cursor(&self) -> Cursor {
        self.cursors[self.pane.index()]
    }

    pub fn selected(&self) -> Option<Item> {
        let c = self.cursor();
        self.current_sections().get(c.section).and_then(|s| s.items.get(c.row)).copied()
    }

    /// The keys are read against this.
    pub fn key_context(&self) -> KeyContext {
        KeyContext { mode: self.mode.kind(), pane: self.pane }
    }

    /// A pane's filter text.
    pub fn filter(&self, pane: Pane) -> &str {
        self.filters[pane.index()].value()
    }

    /// Does an event match the auditor's filter (user, task, kind or any text)?
    pub fn matches_filter(&self, e: &Event) -> bool {
        let filter = self.filter(Pane::Auditor);
        if filter.is_empty() {
            return true;
        }
        let f = filter.to_lowercase();
        let hay = [
            e.actor.as_str(),
            e.change.kind(),
            e.change.subject().unwrap_or(""),
            e.change.task().unwrap_or(""),
            &e.change.target().unwrap_or_default(),
            &e.change.summary(),
        ];
        hay.iter().any(|h| h.to_lowercase().contains(&f))
    }

    /// Rebuilds every pane's sections from the data. O(items), on data changes only.
    pub fn rebuild(&mut self) {
        let me = self.user().to_string();
        let now = self.now;
        // What each pane has selected now: the selection follows the request or grant, not the
        // row, so a row that ends above it cannot slide another one under the cursor.
        let selected: [Option<(usize, Item)>; 3] = std::array::from_fn(|pane| {
            let c = self.cursors[pane];
            self.sections[pane].get(c.section).and_then(|s| s.items.get(c.row)).map(|item| (c.section, *item))
        });

        let mut my_grants: Vec<&GrantView> = self.grants.values().filter(|g| g.holder == me && g.state == GrantState::Active).collect();
        my_grants.sort_by_key(|g| g.expires_at);
        let mut my_pending: Vec<&RequestView> =
            self.requests.values().filter(|r| r.requester == me && r.state == RequestState::Pending).collect();
        my_pending.sort_by_key(|r| r.created_at);
        let mut history: Vec<&RequestView> = self
            .requests
            .values()
            .filter(|r| {
                r.requester == me
                    && (r.state != RequestState::Pending)
                    && !r.grant.is_some_and(|g| self.grants.get(&g).is_some_and(|g| g.state == GrantState::Active))
            })
            .collect();
        history.sort_by_key(|r| std::cmp::Reverse(r.decided_at.unwrap_or(r.created_at)));
        self.sections[0] = vec![
            Section { title: "My active grants", items: my_grants.iter().map(|g| Item::Grant(g.id)).collect(), urgent: false },
            Section { title: "My pending requests", items: my_pending.iter().map(|r| Item::Request(r.id)).collect(), urgent: false },
            Section { title: HISTORY_TITLE, items: history.iter().map(|r| Item::Request(r.id)).collect(), urgent: false },
        ];

        // The approver's rows are those the daemon says the viewer may act on (so never their own).
        let mut queue: Vec<&RequestView> = self.requests.values().filter(|r| Self::for_me_to_decide(r, now)).collect();
        queue.sort_by_key(|r| r.created_at);
        self.waiting = queue.len();
        let review: Vec<&GrantView> = self.grants.values().filter(|g| g.actions.allows(RowAction::Review)).collect();
        let mut watched: Vec<&GrantView> =
            self.grants.values().filter(|g| g.state == GrantState::Active && g.actions.allows(RowAction::Revoke)).collect();
        watched.sort_by_key(|g| g.expires_at);
        self.sections[1] = vec![
            Section { title: "Waiting for approval", items: queue.iter().map(|r| Item::Request(r.id)).collect(), urgent: false },
            Section {
                title: "Break-glass: review needed",
                items: review.iter().map(|g| Item::Grant(g.id)).collect(),
                urgent: !review.is_empty(),
            },
            Section { title: "Active grants you approve for", items: watched.iter().map(|g| Item::Grant(g.id)).collect(), urgent: false },
        ];

        let log: Vec<Item> =
            self.log.iter().enumerate().rev().filter(|(_, e)| self.matches_filter(e)).map(|(i, _)| Item::Event(i)).collect();
        let mut expiring: Vec<&GrantView> = self.grants.values().filter(|g| g.state == GrantState::Active).collect();
        expiring.sort_by_key(|g| g.expires_at);
        self.sections[2] = vec![
            Section { title: "Event log (newest first)", items: log, urgent: false },
            Section { title: "Expiring soon", items: expiring.iter().map(|g| Item::Grant(g.id)).collect(), urgent: false },
        ];
        if !self.failed_notices.is_empty() {
            // An alarm, newest first, shown only while there is something to act on.
            let items = (0..self.failed_notices.len()).rev().map(Item::Notice).collect();
            self.sections[2].push(Section { title: "Failed notices", items, urgent: true });
        }

        self.filter_and_sort();
        for pane in [Pane::Requester, Pane::Approver, Pane::Auditor] {
            if !self.select_again(pane, selected[pane.index()]) {
                self.clamp_cursor(pane);
            }
        }
        self.stale = false;
        self.dirty = true;
    }

    /// Puts the cursor back on the request or grant that was selected, in the section it was in
    /// if it is still there, else wherever it is now. False if it is gone (or was an event, whose
    /// place the auditor pane keeps by itself): the cursor then stays on the nearest row.
    fn select_again(&mut self, pane: Pane, selected: Option<(usize, Item)>) -> bool {
        let Some((section, item @ (Item::Request(_) | Item::Grant(_)))) = selected else { return false };
        let sections = &self.sections[pane.index()];
        let row_in = |i: usize| sections.get(i).and_then(|s| s.items.iter().position(|x| *x == item)).map(|row| Cursor { section: i, row });
        let found = row_in(section).or_else(|| (0..sections.len()).find_map(row_in));
        match found {
            Some(cursor) => {
                self.cursors[pane.index()] = cursor;
                true
            }
            None => false,
        }
    }

    fn clamp_cursor(&mut self, pane: Pane) {
        let sections = &self.sections[pane.index()];
        let c = &mut self.cursors[pane.index()];
        if sections.is_empty() {
            *c = Cursor::default();
            return;
        }
        c.section = c.section.min(sections.len() - 1);
        let len = sections[c.section].items.len();
        c.row = if len == 0 { 0 } else { c.row.min(len - 1) };
    }

    fn set_panes(&mut self) {
        let mut panes = Vec::new();
        if self.has_role("requester") || !(self.has_role("approver") || self.has_role("admin") || self.has_role("auditor")) {
            panes.push(Pane::Requester);
        }
        if self.has_role("approver") {
            panes.push(Pane::Approver);
        }
        if self.has_role("admin") || self.has_role("auditor") {
            panes.push(Pane::Auditor);
        }
        if !panes.contains(&self.pane) {
            self.pane = panes[0];
        }
        self.panes = panes;
    }

    /// A message in the footer until daemon time passes `until` (errors stay longer), or the
    /// pane or person changes.
    fn toast(&mut self, text: impl Into<String>, error: bool) {
        let secs = if error { TOAST_ERROR_SECS } else { TOAST_SECS };
        self.toast = Some(Toast { text: text.into(), error, until: self.now + chrono::Duration::seconds(secs) });
    }

    /// Handles one action at daemon time `now` and brings the sections up to date; returns what
    /// the runtime must do.
    pub fn update(&mut self, action: Action, now: DateTime<Utc>) -> Vec<Effect> {
        let effects = self.absorb(action, now);
        self.refresh();
        effects
    }

    /// Rebuilds the sections if data changed since they were built.
    pub fn refresh(&mut self) {
        if self.stale {
            self.rebuild();
        }
    }

    /// Handles one action, leaving the sections stale if only data arrived: the runtime absorbs
    /// everything queued, then refreshes once and draws.
    pub fn absorb(&mut self, action: Action, now: DateTime<Utc>) -> Vec<Effect> {
        if !matches!(action, Action::EventReceived(_) | Action::RequestLoaded(_) | Action::GrantLoaded(_) | Action::Tick) {
            // Keys and the rest act on what is on screen.
            self.refresh();
        }
        self.now = now;
        if !matches!(action, Action::Tick) {
            self.dirty = true;
        }
        // Only what the viewer does moves the cursor toward older history: a page that failed
        // is not asked for again until they move.
        let moved = !matches!(action, Action::Tick | Action::EventReceived(_)) && !action.is_result();
        let mut effects = match action {
            Action::Key(key) => self.dispatch(self.keys.translate(self.key_context(), key)),
            Action::Mouse(mouse) => self.dispatch(self.keys.translate_mouse(self.key_context(), mouse)),
            Action::ModeKey(key) => self.mode_key(key),
            Action::Tick => self.on_tick(),
            Action::EventReceived(event) => self.on_event(event),
            action if action.is_result() => self.on_result(action),
            intent => self.on_intent(intent),
        };
        self.note_fetches_during_load(&effects);
        if moved {
            effects.extend(self.more_history());
        }
        effects
    }

    /// The next page of the viewer's own history, when the requester pane's cursor is within
    /// `HISTORY_AHEAD` rows of the end of "My history" and there may be more.
    fn more_history(&mut self) -> Option<Effect> {
        let older = self.history_older?;
        if self.history_loading || self.pane != Pane::Requester || self.stale {
            return None;
        }
        let c = self.cursors[Pane::Requester.index()];
        let section = self.sections[Pane::Requester.index()].get(c.section)?;
        if section.title != HISTORY_TITLE || c.row + HISTORY_AHEAD < section.items.len() {
            return None;
        }
        self.history_loading = true;
        Some(Effect::LoadHistory(older))
    }

    /// A full load answers from the moment it was asked; a row fetched for an event while it was
    /// under way may come back before it and be overwritten by its older copy. So the rows
    /// fetched meanwhile are noted and fetched again once the load has landed.
    fn note_fetches_during_load(&mut self, effects: &[Effect]) {
        if effects.iter().any(|e| matches!(e, Effect::LoadAll)) {
            self.fetched_during_load = Some(Vec::new());
        }
        if let Some(noted) = &mut self.fetched_during_load {
            let refetch = |e: &&Effect| matches!(e, Effect::FetchRequest(_) | Effect::FetchGrant(_) | Effect::FetchFailedNotices);
            noted.extend(effects.iter().filter(refetch).cloned());
        }
    }

    /// A translated key or mouse event. The runtime translates before actions get here; raw
    /// keys (from the tests) take the same translation.
    fn dispatch(&mut self, translated: Option<Action>) -> Vec<Effect> {
        match translated {
            Some(Action::ModeKey(key)) => self.mode_key(key),
            Some(intent) => self.on_intent(intent),
            None => Vec::new(),
        }
    }

    /// A key while a popup or a text field has the keyboard: scrolling first (`scrolling.rs`),
    /// then the field's editing, the help's "any key closes", or the pane's keys under a detail.
    fn mode_key(&mut self, key: crossterm::event::KeyEvent) -> Vec<Effect> {
        if let Some(effects) = self.popup_key(key) {
            return effects;
        }
        match self.mode.kind() {
            ModeKind::Editing => self.edit(key),
            ModeKind::Help => self.on_intent(Action::ToggleHelp),
            ModeKind::Detail if key.code == crossterm::event::KeyCode::Enter => self.on_intent(Action::Back),
            ModeKind::Detail | ModeKind::Normal => {
                let under = KeyContext { mode: ModeKind::Normal, pane: self.pane };
                self.dispatch(self.keys.translate(under, key))
            }
        }
    }

    /// A second of daemon time passed: toasts fade.
    fn on_tick(&mut self) -> Vec<Effect> {
        if self.toast.as_ref().is_some_and(|t| t.until <= self.now) {
            self.toast = None;
        }
        self.dirty = true;
        Vec::new()
    }

    /// What the user asked for, through the keymap.
    fn on_intent(&mut self, action: Action) -> Vec<Effect> {
        let now = self.now;
        match action {
            Action::Resize => Vec::new(),
            Action::Quit => {
                self.quit = true;
                Vec::new()
            }
            Action::NextPane => {
                let i = self.panes.iter().position(|p| *p == self.pane).unwrap_or(0);
                self.show_pane(self.panes[(i + 1) % self.panes.len()]);
                Vec::new()
            }
            Action::SelectPane(n) => {
                let wanted = [Pane::Requester, Pane::Approver, Pane::Auditor].get(n).copied();
                match wanted {
                    Some(p) if self.panes.contains(&p) => self.show_pane(p),
                    Some(p) => self.toast(format!("the {} pane is not for you: it needs the {} role", p.title(), pane_role(p)), true),
                    None => {}
                }
                Vec::new()
            }
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-10),
            Action::PageDown => self.move_by(10),
            Action::Top => {
                self.cursors[self.pane.index()] = Cursor::default();
                self.follow = self.pane == Pane::Auditor;
                Vec::new()
            }
            Action::Bottom => {
                let sections = &self.sections[self.pane.index()];
                if let Some((i, s)) = sections.iter().enumerate().rev().find(|(_, s)| !s.items.is_empty()) {
                    self.cursors[self.pane.index()] = Cursor { section: i, row: s.items.len() - 1 };
                }
                self.follow = false;
                Vec::new()
            }
            Action::NextSection | Action::PrevSection => {
                let n = self.current_sections().len();
                if n > 0 {
                    let c = &mut self.cursors[self.pane.index()];
                    c.section = if matches!(action, Action::NextSection) { (c.section + 1) % n } else { (c.section + n - 1) % n };
                    c.row = 0;
                }
                Vec::new()
            }
            Action::OpenDetail => {
                let mut effects = Vec::new();
                match self.selected() {
                    Some(Item::Request(id)) => {
                        self.fresh.remove(&id);
                    }
                    Some(Item::Event(i)) => {
                        if let Some(Change::RunEnded { run, .. }) = self.log.get(i).map(|e| &e.change) {
                            effects.push(Effect::FetchTranscript(*run));
                        }
                    }
                    _ => {}
                }
                if self.selected().is_some() {
                    self.mode = Mode::Detail;
                }
                effects
            }
            Action::Back => {
                if self.mode == Mode::Normal && self.toast.is_none() && !self.filters[self.pane.index()].is_empty() {
                    // Esc on a filtered pane clears its filter.
                    self.mode = Mode::Filter;
                }
                if matches!(self.mode, Mode::Filter) {
                    self.filters[self.pane.index()].clear();
                    self.rebuild();
                }
                if self.mode == Mode::Normal {
                    self.toast = None;
                }
                self.mode = Mode::Normal;
                Vec::new()
            }
            Action::ToggleHelp => {
                self.mode = if self.mode == Mode::Help { Mode::Normal } else { Mode::Help };
                Vec::new()
            }
            Action::DismissToast => {
                self.toast = None;
                Vec::new()
            }
            Action::ToggleBell => {
                self.bell = !self.bell;
                self.toast(if self.bell { "bell on for new requests" } else { "bell off" }, false);
                Vec::new()
            }
            Action::ToggleFollow => {
                self.follow = !self.follow;
                if self.follow {
                    self.cursors[Pane::Auditor.index()] = Cursor::default();
                }
                Vec::new()
            }
            Action::StartFilter => {
                self.mode = Mode::Filter;
                Vec::new()
            }
            Action::CycleSort => {
                use SortColumn::*;
                let sort = &mut self.sorts[self.pane.index()];
                *sort = match sort.map(|s| s.column) {
                    None => Some(Sort { column: Id, reversed: false }),
                    Some(Id) => Some(Sort { column: Task, reversed: false }),
                    Some(Task) => Some(Sort { column: User, reversed: false }),
                    Some(User) => Some(Sort { column: Time, reversed: false }),
                    Some(Time) => None,
                };
                self.rebuild();
                Vec::new()
            }
            Action::ReverseSort => {
                let sort = &mut self.sorts[self.pane.index()];
                *sort = Some(match *sort {
                    Some(s) => Sort { reversed: !s.reversed, ..s },
                    None => Sort { column: SortColumn::Id, reversed: true },
                });
                self.rebuild();
                Vec::new()
            }
            Action::ExportLog => {
                let ext = "jsonl";
                self.mode = Mode::Export(TextField::new(format!("zsa-audit-{}.{ext}", now.format("%Y%m%d-%H%M%S"))));
                Vec::new()
            }
            Action::VerifyLog => self.start_verify(),
            Action::SwitchUser => {
                if self.people.is_empty() {
                    self.toast("switching people is for the demo; set ZSA_TOKEN to be someone else", true);
                    return Vec::new();
                }
                self.person = (self.person + 1) % self.people.len();
                self.reset_data();
                vec![Effect::SwitchUser(self.person)]
            }
            Action::NewRequest => {
                if super::form::requestable(&self.tasks).is_empty() {
                    self.toast("you may ask for no task under the current policy", true);
                } else {
                    self.mode = Mode::Form(Box::new(RequestForm::new(&self.tasks)));
                }
                Vec::new()
            }
            Action::ApproveSelected | Action::DenySelected => self.start_decision(matches!(action, Action::ApproveSelected)),
            Action::CancelSelected => self.start_on_request(RowAction::Cancel, PromptKind::Cancel),
            Action::RelinquishSelected => self.start_on_grant(RowAction::Relinquish, PromptKind::Relinquish),
            Action::ExtendSelected => self.start_on_grant(RowAction::Extend, PromptKind::Extend),
            Action::RevokeSelected => self.start_on_grant(RowAction::Revoke, PromptKind::Revoke),
            Action::ReviewSelected => self.start_on_grant(RowAction::Review, PromptKind::Review),
            _ => Vec::new(),
        }
    }

    /// What the daemon answered or reported.
    fn on_result(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Loaded { me, tasks, requests, grants, older, log, notices } => {
                let first = self.me.is_none();
                self.me = Some(me);
                self.tasks = tasks;
                self.requests = requests.into_iter().map(|r| (r.id, r)).collect();
                self.grants = grants.into_iter().map(|g| (g.id, g)).collect();
                self.history_older = older;
                self.history_loading = false;
                self.log = log;
                self.failed_notices = notices;
                self.show_notices();
                self.set_panes();
                if first {
                    self.pane = self.first_pane();
                }
                self.rebuild();
                let mut effects = self.fetched_during_load.take().unwrap_or_default();
                if self.panes.contains(&Pane::Auditor) && self.verify == VerifyState::Unknown {
                    effects.extend(self.start_verify());
                }
                effects
            }
            // A page asked for before a full load landed (which starts history again from the
            // newest) is not the next page any more.
            Action::HistoryLoaded { before, .. } if self.history_older != Some(before) => Vec::new(),
            Action::HistoryLoaded { requests, older, .. } => {
                self.history_loading = false;
                self.history_older = older;
                for r in requests {
                    // A row already here came from an event or a load since: it is as new or newer.
                    self.requests.entry(r.id).or_insert(r);
                }
                self.stale = true;
                Vec::new()
            }
            Action::HistoryFailed(why) => {
                self.history_loading = false;
                self.toast(format!("could not load older history: {why}"), true);
                Vec::new()
            }
            Action::LoadFailed(why) => {
                // No older copy will land over what was fetched meanwhile.
                self.fetched_during_load = None;
                self.toast(format!("could not load: {why}"), true);
                Vec::new()
            }
            Action::RequestLoaded(outcome) => {
                let outcome = *outcome;
                if let Some(g) = outcome.grant {
                    self.grants.insert(g.id, g);
                }
                let id = outcome.request.id;
                // A request created while the console is open announces itself if the daemon's
                // row says it is the viewer's to decide.
                let announce = self.announcing.remove(&id) && Self::for_me_to_decide(&outcome.request, self.now);
                self.requests.insert(id, outcome.request);
                self.stale = true;
                if !announce {
                    return Vec::new();
                }
                self.fresh.insert(id);
                if self.bell { vec![Effect::Bell] } else { Vec::new() }
            }
            Action::GrantLoaded(g) => {
                self.grants.insert(g.id, *g);
                self.stale = true;
                Vec::new()
            }
            Action::NoticeWritten(notice) => {
                self.unshown_notices.push(*notice);
                if self.me.is_some() {
                    self.show_notices();
                }
                Vec::new()
            }
            Action::FailedNoticesLoaded(notices) => {
                self.failed_notices = notices;
                self.stale = true;
                Vec::new()
            }
            Action::StreamConnected => {
                // The stream is followed before anything is loaded, so nothing falls between
                // the load and the first event; after a loss, everything is loaded again.
                let before = std::mem::replace(&mut self.connection, Connection::Live);
                match before {
                    Connection::Live => Vec::new(),
                    Connection::Connecting => vec![Effect::LoadAll],
                    Connection::Lost(_) => {
                        self.toast("reconnected to the daemon; caught up on what was missed", false);
                        vec![Effect::LoadAll]
                    }
                }
            }
            Action::StreamLost(why) => {
                // A check running when the daemon went may never answer: it is no longer known.
                if self.verify == VerifyState::Checking {
                    self.verify = VerifyState::Unknown;
                }
                if !matches!(self.connection, Connection::Lost(_)) {
                    self.toast(format!("lost the daemon ({why}); reconnecting…"), true);
                }
                self.connection = Connection::Lost(why);
                Vec::new()
            }
            Action::Done(message) => {
                self.toast(message, false);
                Vec::new()
            }
            Action::Failed(message) => {
                self.toast(message, true);
                Vec::new()
            }
            Action::Verified(report) => {
                self.verifying = self.verifying.saturating_sub(1);
                self.verify = VerifyState::Done(report);
                Vec::new()
            }
            Action::VerifyFailed(why) => {
                self.verifying = self.verifying.saturating_sub(1);
                if self.verifying == 0 && self.verify == VerifyState::Checking {
                    self.verify = VerifyState::Unknown;
                }
                self.toast(format!("could not verify the chain: {why}; V tries again"), true);
                Vec::new()
            }
            Action::TranscriptLoaded { run, text, sha256 } => {
                self.transcripts.insert(run, (text, sha256));
                Vec::new()
            }
            Action::Exported { path, count } => {
                self.toast(format!("exported {count} events to {}", text::inert_line(&path)), false);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Asks the daemon to verify the chain.
    fn start_verify(&mut self) -> Vec<Effect> {
        self.verify = VerifyState::Checking;
        self.verifying += 1;
        vec![Effect::Verify]
    }

    /// Shows another pane; what was said about the last one goes with it.
    fn show_pane(&mut self, pane: Pane) {
        self.pane = pane;
        self.mode = Mode::Normal;
        self.toast = None;
    }

    /// Where the console opens: where the work is. An auditor (auditor only, or auditor first
    /// among their roles) opens on the log, an approver on the queue.
    fn first_pane(&self) -> Pane {
        let roles = self.me.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        let auditor_first = roles.first().is_some_and(|r| r == "auditor");
        if auditor_first && self.panes.contains(&Pane::Auditor) {
            Pane::Auditor
        } else if self.panes.contains(&Pane::Approver) {
            Pane::Approver
        } else {
            self.panes[0]
        }
    }

    /// Keys typed while a text field has focus. Editing within the field (cursor movement,
    /// Ctrl-U, Ctrl-W...) is the text field's; here are only the keys that leave or confirm it.
    pub fn edit(&mut self, key: crossterm::event::KeyEvent) -> Vec<Effect> {
        use crossterm::event::KeyCode;
        self.dirty = true;
        let tasks = self.tasks.clone();
        match &mut self.mode {
            Mode::Form(form) => match key.code {
                KeyCode::Esc => self.mode = Mode::Normal,
                KeyCode::Tab | KeyCode::Down => form.next_field(true),
                KeyCode::BackTab | KeyCode::Up => form.next_field(false),
                KeyCode::Enter => {
                    if form.problems(&tasks, self.now).is_empty()
                        && let Some(new) = form.to_request(&tasks, self.now)
                    {
                        self.mode = Mode::Normal;
                        return vec![Effect::Submit(Submission::Request(new))];
                    }
                    form.tried = true;
                }
                _ => form.edit(&tasks, key),
            },
            Mode::Prompt(prompt) => match key.code {
                KeyCode::Esc => self.mode = Mode::Normal,
                KeyCode::Enter => return self.confirm_prompt(),
                _ if prompt.kind.input().is_some() => drop(prompt.input.key(key)),
                KeyCode::Char('y') => return self.confirm_prompt(),
                KeyCode::Char('n') => self.mode = Mode::Normal,
                _ => {}
            },
            Mode::Filter => match key.code {
                KeyCode::Esc => return self.update(Action::Back, self.now),
                KeyCode::Enter => self.mode = Mode::Normal,
                _ => {
                    let field = &mut self.filters[self.pane.index()];
                    let before = field.value().to_string();
                    field.key(key);
                    if field.value() != before {
                        // A new filter starts at its first row.
                        self.cursors[self.pane.index()] = Cursor::default();
                        self.rebuild();
                    }
                }
            },
            Mode::Export(path) => match key.code {
                KeyCode::Esc => self.mode = Mode::Normal,
                KeyCode::Enter => {
                    let path = path.value().to_string();
                    self.mode = Mode::Normal;
                    let events = self.sections[Pane::Auditor.index()][0]
                        .items
                        .iter()
                        .rev()
                        .filter_map(|i| match i {
                            Item::Event(n) => self.log.get(*n).cloned(),
                            _ => None,
                        })
                        .collect();
                    return vec![Effect::Export { path, events }];
                }
                _ => drop(path.key(key)),
            },
            _ => {}
        }
        Vec::new()
    }

    /// Applies each pane's filter and sort to the sections just built. The auditor's log is
    /// filtered as it is built (it can be long); its sort applies here like the others'.
    fn filter_and_sort(&mut self) {
        for pane in Pane::ALL {
            let needle = self.filter(pane).to_lowercase();
            let sort = self.sorts[pane.index()];
            if needle.is_empty() && sort.is_none() {
                continue;
            }
            let mut sections = std::mem::take(&mut self.sections[pane.index()]);
            for section in &mut sections {
                if !needle.is_empty() {
                    section.items.retain(|item| matches!(item, Item::Event(_)) || self.item_text(*item).contains(&needle));
                }
                if let Some(sort) = sort {
                    section.items.sort_by_cached_key(|item| self.sort_key(*item, sort.column));
                    if sort.reversed {
                        section.items.reverse();
                    }
                }
            }
            self.sections[pane.index()] = sections;
        }
    }

    /// Everything a filter looks in for a row, lower case: id, task, user, reason, ticket, state.
    fn item_text(&self, item: Item) -> String {
        let request_text = |r: &RequestView| {
            format!(
                "{} {} {} {} {} {}",
                r.id,
                r.task,
                r.requester,
                r.reason.as_deref().unwrap_or(""),
                r.ticket.as_deref().unwrap_or(""),
                r.state.as_str()
            )
        };
        let text = match item {
            Item::Request(id) => self.requests.get(&id).map(request_text).unwrap_or_default(),
            Item::Grant(id) => match self.grants.get(&id) {
                Some(g) => {
                    let request = self.requests.get(&g.request).map(request_text).unwrap_or_default();
                    format!("{} {} {} {} {request}", g.id, g.task, g.holder, g.state.as_str())
                }
                None => String::new(),
            },
            Item::Event(i) => {
                self.log.get(i).map(|e| format!("{} {} {}", e.actor, e.change.kind(), e.change.summary())).unwrap_or_default()
            }
            Item::Notice(i) => self
                .failed_notices
                .get(i)
                .map(|n| format!("{} {} {} {} {}", n.id, n.trigger.as_str(), n.channel, n.recipient, n.last_error.as_deref().unwrap_or("")))
                .unwrap_or_default(),
        };
        text.to_lowercase()
    }

    /// What a row sorts by in a column: numbers as numbers, times as times.
    fn sort_key(&self, item: Item, column: SortColumn) -> (String, i64) {
        let (id, task, user, time) = match item {
            Item::Request(id) => match self.requests.get(&id) {
                Some(r) => (id.0 as i64, r.task.clone(), r.requester.clone(), r.created_at),
                None => return Default::default(),
            },
            Item::Grant(id) => match self.grants.get(&id) {
                Some(g) => (id.0 as i64, g.task.clone(), g.holder.clone(), g.expires_at),
                None => return Default::default(),
            },
            Item::Event(i) => match self.log.get(i) {
                Some(e) => (e.seq as i64, e.change.task().unwrap_or("").to_string(), e.actor.clone(), e.at),
                None => return Default::default(),
            },
            Item::Notice(i) => match self.failed_notices.get(i) {
                Some(n) => (n.id as i64, n.trigger.as_str().to_string(), n.recipient.clone(), n.done_at.unwrap_or(n.created_at)),
                None => return Default::default(),
            },
        };
        match column {
            SortColumn::Id => (String::new(), id),
            SortColumn::Task => (task, id),
            SortColumn::User => (user, id),
            SortColumn::Time => (String::new(), time.timestamp_millis()),
        }
    }

    fn confirm_prompt(&mut self) -> Vec<Effect> {
        let Mode::Prompt(prompt) = &mut self.mode else { return Vec::new() };
        let text = prompt.input.value().trim().to_string();
        if let Some((label, true)) = prompt.kind.input()
            && text.is_empty()
        {
            prompt.error = Some(format!("a {} is needed", label.split(' ').next().unwrap_or("comment")));
            return Vec::new();
        }
        let opt = Some(text.clone()).filter(|t| !t.is_empty());
        let submission = match prompt.kind {
            PromptKind::Approve(id) => Submission::Approve(id, opt),
            PromptKind::Deny(id) => Submission::Deny(id, text),
            PromptKind::Cancel(id) => Submission::Cancel(id),
            PromptKind::Revoke(id) => Submission::Revoke(id, text),
            PromptKind::Relinquish(id) => Submission::Relinquish(id),
            PromptKind::Review(id) => Submission::Review(id, opt),
            PromptKind::Extend(id) => {
                // One line: the duration first (as `--by` takes it), then the reason.
                let (by, why) = text.split_once(char::is_whitespace).unwrap_or((text.as_str(), ""));
                match crate::model::duration::parse(by) {
                    Ok(secs) => Submission::Extend(id, secs, Some(why.trim().to_string()).filter(|w| !w.is_empty())),
                    Err(e) => {
                        prompt.error = Some(format!("start with how much longer, e.g. 30m: {e}"));
                        return Vec::new();
                    }
                }
            }
        };
        self.mode = Mode::Normal;
        vec![Effect::Submit(submission)]
    }

    fn move_by(&mut self, delta: i64) -> Vec<Effect> {
        let idx = self.pane.index();
        let sections = &self.sections[idx];
        if sections.is_empty() {
            return Vec::new();
        }
        // Moving walks through the sections' rows as if they were one list.
        let flat: Vec<(usize, usize)> = sections.iter().enumerate().map(|(i, s)| (i, s.items.len())).collect();
        let total: usize = flat.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Vec::new();
        }
        let c = self.cursors[idx];
        let before: usize = flat.iter().take(c.section).map(|(_, n)| n).sum();
        let pos = (before + c.row) as i64;
        let target = (pos + delta).clamp(0, total as i64 - 1) as usize;
        let mut acc = 0;
        for (i, n) in flat {
            if target < acc + n {
                self.cursors[idx] = Cursor { section: i, row: target - acc };
                break;
            }
            acc += n;
        }
        if self.pane == Pane::Auditor {
            self.follow = self.cursors[idx] == Cursor::default();
        }
        if let Some(Item::Request(id)) = self.selected() {
            self.fresh.remove(&id);
        }
        Vec::new()
    }

    fn start_decision(&mut self, approve: bool) -> Vec<Effect> {
        if approve {
            self.start_on_request(RowAction::Approve, PromptKind::Approve)
        } else {
            self.start_on_request(RowAction::Deny, PromptKind::Deny)
        }
    }

    /// Opens the prompt for `action` on the selected request if the daemon said the viewer may
    /// take it; else shows the daemon's reason. The console keeps no rules of its own.
    fn start_on_request(&mut self, action: RowAction, prompt: fn(RequestId) -> PromptKind) -> Vec<Effect> {
        let result = match self.selected().and_then(|item| match item {
            Item::Request(id) => self.requests.get(&id),
            _ => None,
        }) {
            Some(r) => r.actions.check(action).map(|()| prompt(r.id)),
            None => Err(format!("select a request to {} first", action.as_str())),
        };
        self.open_prompt(result)
    }

    /// Like `start_on_request`, for the selected grant (or the grant of the selected request).
    fn start_on_grant(&mut self, action: RowAction, prompt: fn(GrantId) -> PromptKind) -> Vec<Effect> {
        let id = match self.selected() {
            Some(Item::Grant(id)) => Some(id),
            Some(Item::Request(id)) => self.requests.get(&id).and_then(|r| r.grant),
            _ => None,
        };
        let result = match id.and_then(|id| self.grants.get(&id)) {
            Some(g) => g.actions.check(action).map(|()| prompt(g.id)),
            None => Err(format!("select a grant to {} first", action.as_str())),
        };
        self.open_prompt(result)
    }

    fn open_prompt(&mut self, result: Result<PromptKind, String>) -> Vec<Effect> {
        match result {
            Ok(kind) => self.mode = Mode::Prompt(Prompt { kind, input: TextField::default(), error: None }),
            Err(why) => self.toast(why, true),
        }
        Vec::new()
    }

    fn reset_data(&mut self) {
        self.me = None;
        self.tasks.clear();
        self.requests.clear();
        self.grants.clear();
        self.log.clear();
        self.failed_notices.clear();
        self.unshown_notices.clear();
        self.fresh.clear();
        self.announcing.clear();
        self.verify = VerifyState::Unknown;
        self.mode = Mode::Normal;
        // Nothing said to or set by the last person stays.
        self.toast = None;
        self.filters = Default::default();
        self.sorts = [None; 3];
        self.cursors = [Cursor::default(); 3];
        self.connection = Connection::Connecting;
        self.rebuild();
    }

    fn on_event(&mut self, event: Event) -> Vec<Effect> {
        let mut effects = Vec::new();
        match &event.change {
            Change::RequestCreated { request, .. } => {
                // Whether it is for me to decide, the fetched row's actions say.
                effects.push(Effect::FetchRequest(*request));
                self.announcing.insert(*request);
            }
            Change::RequestApproved { request, .. }
            | Change::ApprovalDropped { request, .. }
            | Change::RequestDenied { request, .. }
            | Change::RequestCancelled { request, .. }
            | Change::RequestExpired { request, .. }
            | Change::GrantStarted { request, .. } => effects.push(Effect::FetchRequest(*request)),
            Change::GrantExtended { grant, .. } => effects.push(Effect::FetchGrant(*grant)),
            Change::ExtensionApproved { request, .. } => effects.push(Effect::FetchRequest(*request)),
            Change::GrantExpired { grant, .. }
            | Change::GrantRevoked { grant, .. }
            | Change::GrantRelinquished { grant, .. }
            | Change::GrantReviewed { grant, .. } => effects.push(Effect::FetchGrant(*grant)),
            Change::PolicyLoaded { .. } => effects.push(Effect::LoadAll),
            Change::NoticeFailed { .. } | Change::NoticeRetried { .. } if self.sees_everything() => {
                effects.push(Effect::FetchFailedNotices);
                if let Change::NoticeFailed { trigger, channel, recipient, .. } = &event.change {
                    let (channel, recipient) = (text::inert_line(channel), text::inert_line(recipient));
                    self.toast(format!("a {} notice to {recipient} via {channel} failed; see Failed notices", trigger.as_str()), true);
                }
            }
            Change::UserDisabled { user, .. } | Change::UserEnabled { user } if user == self.user() => effects.push(Effect::LoadAll),
            _ => {}
        }
        if let Change::TokenIssued { token, user, .. } = &event.change
            && user == self.user()
            && event.actor != *user
        {
            // Someone else can now act as you: you hear of it at once (zsa whoami lists your tokens).
            self.toast(format!("{} issued token {token} in your name; zsa whoami lists your tokens", text::inert_line(&event.actor)), true);
        }
        if matches!(event.change, Change::GrantExpired { .. }) && event.change.subject() == Some(self.user()) {
            let target = event.change.target().unwrap_or_default();
            self.toast(format!("{target} for {} has ended", event.change.task().unwrap_or("?")), false);
        }
        if !self.follow && self.matches_filter(&event) {
            // Keep the selected event under the cursor as new ones arrive on top.
            let c = &mut self.cursors[Pane::Auditor.index()];
            if c.section == 0 {
                c.row += 1;
            }
        }
        self.log.push(event);
        if self.log.len() > LOG_KEEP + LOG_SLACK {
            self.log.drain(..self.log.len() - LOG_KEEP);
        }
        self.stale = true;
        effects
    }
}

fn pane_role(p: Pane) -> &'static str {
    match p {
        Pane::Requester => "requester",
        Pane::Approver => "approver",
        Pane::Auditor => "auditor or admin",
    }
}
