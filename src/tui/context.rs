//! What a key is read against: the pane on screen and what kind of mode has the keyboard. Kept
//! apart from the app's state so the keymap does not need the app (the app uses the keymap).

/// The three panes, in the order of their number keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Requester,
    Approver,
    Auditor,
}

impl Pane {
    pub const ALL: [Pane; 3] = [Pane::Requester, Pane::Approver, Pane::Auditor];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Requester => "Requester",
            Pane::Approver => "Approver",
            Pane::Auditor => "Auditor",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The kind of mode, without its data: how keys are read in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeKind {
    /// The pane's lists have the keys.
    Normal,
    /// Any key closes the help.
    Help,
    /// A detail or a transcript: moving keys scroll it, Enter and Esc close it, the pane's
    /// other keys still work.
    Detail,
    /// A text field has the focus (a form, a prompt, the filter): keys are typed into it.
    Editing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyContext {
    pub mode: ModeKind,
    pub pane: Pane,
}
