//! Popups that are never clipped: they are as tall as their text once wrapped, and when that is
//! taller than the screen the body scrolls under a footer that stays put (the keys that close or
//! confirm), with a scrollbar and a line count saying there is more.

use std::cell::Cell;
use std::hash::{Hash, Hasher};

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Scrollbar, ScrollbarOrientation, ScrollbarState, Wrap};

use super::popup;
use crate::tui::theme::Theme;

/// How far a popup is scrolled. Keys move it; drawing clamps it and notes how far it can go and
/// how tall a page is (view state, kept the way ratatui's stateful widgets keep theirs), so keys
/// past the end do nothing and a page is a page. Another popup starts at its top.
#[derive(Clone, Debug, Default)]
pub struct Scroll {
    offset: Cell<u16>,
    limit: Cell<u16>,
    page: Cell<u16>,
    /// Which popup was drawn last (a hash of its title), or 0 for none.
    shown: Cell<u64>,
}

impl Scroll {
    /// The first body line on screen.
    pub fn offset(&self) -> u16 {
        self.offset.get().min(self.limit.get())
    }

    /// Moves by `delta` lines, within the body.
    pub fn by(&self, delta: i32) {
        let to = (i32::from(self.offset()) + delta).clamp(0, i32::from(self.limit.get()));
        self.offset.set(to as u16);
    }

    /// A page down (or up, negative), less a line so the reader keeps their place.
    pub fn pages(&self, pages: i32) {
        self.by(pages * i32::from(self.page.get().saturating_sub(1).max(1)));
    }

    pub fn home(&self) {
        self.offset.set(0);
    }

    pub fn end(&self) {
        self.offset.set(self.limit.get());
    }

    /// No popup is on screen: the next one starts at its top.
    pub fn leave(&self) {
        self.shown.set(0);
        self.offset.set(0);
    }

    /// Notes what is drawn now and how far it can scroll; returns the offset to draw at.
    fn frame(&self, owner: u64, limit: u16, page: u16) -> u16 {
        if self.shown.replace(owner) != owner {
            self.offset.set(0);
        }
        self.limit.set(limit);
        self.page.set(page);
        self.offset()
    }
}

/// What a popup shows.
pub struct Popup<'a> {
    pub title: Line<'a>,
    /// Wraps and scrolls.
    pub body: Vec<Line<'a>>,
    /// Pinned under the body: the keys that close or confirm are never scrolled away.
    pub footer: Vec<Line<'a>>,
    /// The widest it may be; narrower screens get the whole width.
    pub width: u16,
    /// Take the whole screen whatever the text's height (the transcript view).
    pub full: bool,
}

/// How to scroll a popup's body.
pub enum Scrolling<'s> {
    /// By keys, from here.
    Keys(&'s Scroll),
    /// Far enough that this body line (the field being edited) is on screen.
    Follow(usize),
}

fn wrapped_height(lines: &[Line<'_>], width: u16) -> u16 {
    let count = Paragraph::new(lines.to_vec()).wrap(Wrap { trim: false }).line_count(width);
    u16::try_from(count).unwrap_or(u16::MAX)
}

/// Draws `popup` centred, sized by its wrapped lines, scrolling as `scrolling` says.
pub fn render_popup(frame: &mut Frame, popup_text: Popup<'_>, scrolling: Scrolling<'_>, theme: &Theme) {
    let screen = frame.area();
    let width = popup_text.width.min(screen.width);
    let inner_width = width.saturating_sub(2);
    let body_height = wrapped_height(&popup_text.body, inner_width);
    let footer_height = wrapped_height(&popup_text.footer, inner_width);
    let height =
        if popup_text.full { screen.height } else { body_height.saturating_add(footer_height).saturating_add(2).min(screen.height) };
    let area = popup(frame, width, height);
    let block = Block::default().borders(Borders::ALL).title(popup_text.title.clone());
    let inner = block.inner(area);
    let footer_rows = footer_height.min(inner.height);
    let [body_area, footer_area] = Layout::vertical([Constraint::Fill(1), Constraint::Length(footer_rows)]).areas(inner);
    let rows = body_area.height;
    let limit = body_height.saturating_sub(rows);
    let offset = match scrolling {
        Scrolling::Keys(scroll) => {
            let mut owner = std::collections::hash_map::DefaultHasher::new();
            popup_text.title.to_string().hash(&mut owner);
            scroll.frame(owner.finish() | 1, limit, rows)
        }
        Scrolling::Follow(line) => {
            let row = wrapped_height(&popup_text.body[..line.min(popup_text.body.len())], inner_width);
            row.saturating_add(1).saturating_sub(rows).min(limit)
        }
    };
    let block = if limit > 0 {
        let last = offset.saturating_add(rows).min(body_height);
        let more = if offset < limit { " · ↓ more" } else { " · end" };
        block.title_bottom(
            Line::styled(format!(" lines {}-{last} of {body_height}{more} ", offset + 1), theme.warn()).alignment(Alignment::Right),
        )
    } else {
        block
    };
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(popup_text.body).wrap(Wrap { trim: false }).scroll((offset, 0)), body_area);
    frame.render_widget(Paragraph::new(popup_text.footer).wrap(Wrap { trim: false }), footer_area);
    if limit > 0 {
        let mut state =
            ScrollbarState::new(usize::from(limit) + 1).position(usize::from(offset)).viewport_content_length(usize::from(rows));
        let bar_area = Rect { y: body_area.y, height: body_area.height, ..area };
        frame.render_stateful_widget(Scrollbar::new(ScrollbarOrientation::VerticalRight), bar_area, &mut state);
    }
}
