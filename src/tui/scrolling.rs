//! Keys of the popups that scroll (help, details, a run's transcript, confirm prompts), kept
//! apart from the rest of the key handling: ↑↓ jk a line, PgUp PgDn a page, Home End g G the
//! ends, and `t` between an event's detail and its run's whole transcript.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::Effect;
use super::app::{App, Item, Mode};
use crate::model::Change;

impl App {
    /// Handles `key` if it scrolls the popup on screen or moves between a detail and its
    /// transcript; None leaves it to the usual handling.
    pub fn popup_key(&mut self, key: KeyEvent) -> Option<Vec<Effect>> {
        if key.kind == KeyEventKind::Release || key.modifiers.contains(KeyModifiers::CONTROL) {
            return None;
        }
        let scroll = &self.scroll;
        let editing = matches!(self.mode, Mode::Prompt(_));
        match (&self.mode, key.code) {
            (Mode::Help | Mode::Detail | Mode::Transcript(_) | Mode::Prompt(_), KeyCode::Up) => scroll.by(-1),
            (Mode::Help | Mode::Detail | Mode::Transcript(_) | Mode::Prompt(_), KeyCode::Down) => scroll.by(1),
            (Mode::Help | Mode::Detail | Mode::Transcript(_) | Mode::Prompt(_), KeyCode::PageUp) => scroll.pages(-1),
            (Mode::Help | Mode::Detail | Mode::Transcript(_) | Mode::Prompt(_), KeyCode::PageDown) => scroll.pages(1),
            (_, KeyCode::Char('k')) if !editing && self.reads() => scroll.by(-1),
            (_, KeyCode::Char('j')) if !editing && self.reads() => scroll.by(1),
            (_, KeyCode::Home | KeyCode::Char('g')) if !editing && self.reads() => scroll.home(),
            (_, KeyCode::End | KeyCode::Char('G')) if !editing && self.reads() => scroll.end(),
            (Mode::Detail, KeyCode::Char('t')) => {
                let run = match self.selected() {
                    Some(Item::Event(i)) => self.log.get(i).and_then(|e| match &e.change {
                        Change::RunEnded { run, .. } => Some(*run),
                        _ => None,
                    }),
                    _ => None,
                }?;
                self.mode = Mode::Transcript(run);
                return Some(if self.transcripts.contains_key(&run) { Vec::new() } else { vec![Effect::FetchTranscript(run)] });
            }
            (Mode::Transcript(_), KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace | KeyCode::Char('t' | 'q')) => {
                self.mode = Mode::Detail;
            }
            (Mode::Transcript(_), _) => {}
            _ => return None,
        }
        Some(Vec::new())
    }

    /// A popup that is only read is on screen: the keys of a pager are free.
    fn reads(&self) -> bool {
        matches!(self.mode, Mode::Help | Mode::Detail | Mode::Transcript(_))
    }
}
