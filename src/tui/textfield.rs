//! A one-line text field with a cursor, for the form, the prompt's comment, the filter and the
//! export path. Editing (Left/Right, Home/End, Ctrl-A/E, Ctrl-U, Ctrl-W, Delete...) is tui-input's;
//! this only adds equality for the app's state and the drawing of the cursor.

use crossterm::event::{Event, KeyEvent};
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

#[derive(Clone, Debug, Default)]
pub struct TextField(Input);

impl TextField {
    pub fn new(value: impl Into<String>) -> Self {
        TextField(Input::new(value.into()))
    }

    pub fn value(&self) -> &str {
        self.0.value()
    }

    pub fn is_empty(&self) -> bool {
        self.0.value().is_empty()
    }

    /// Applies an editing key; false if the key is not an editing key (Enter, Esc, Tab, ...).
    pub fn key(&mut self, key: KeyEvent) -> bool {
        match to_input_request(&Event::Key(key)) {
            Some(request) => {
                self.0.handle(request);
                true
            }
            None => false,
        }
    }

    pub fn clear(&mut self) {
        self.0.reset();
    }

    /// The text before the cursor, and from the cursor on, for drawing a caret between them.
    pub fn split_at_cursor(&self) -> (&str, &str) {
        let at = self.0.value().char_indices().nth(self.0.cursor()).map(|(i, _)| i).unwrap_or(self.0.value().len());
        self.0.value().split_at(at)
    }

    /// The value with a caret (▏) where the cursor is, for a field that has the focus.
    pub fn with_caret(&self) -> String {
        let (before, after) = self.split_at_cursor();
        format!("{before}▏{after}")
    }
}

impl PartialEq for TextField {
    fn eq(&self, other: &Self) -> bool {
        self.0.value() == other.0.value() && self.0.cursor() == other.0.cursor()
    }
}

impl Eq for TextField {}

impl PartialEq<&str> for TextField {
    fn eq(&self, other: &&str) -> bool {
        self.0.value() == *other
    }
}

impl std::fmt::Display for TextField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.value())
    }
}
