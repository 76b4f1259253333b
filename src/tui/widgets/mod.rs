//! Small building blocks shared by the panes: countdowns, a visible-window table, popups.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Row, Table};

use super::theme::Theme;
use crate::model::{Grant, duration};

/// Under these many seconds left a countdown turns yellow, then red.
pub const WARN_SECS: i64 = 600;
pub const DANGER_SECS: i64 = 120;

/// The style of a countdown with `left` seconds to go.
pub fn countdown_style(theme: &Theme, left: i64) -> Style {
    if left <= DANGER_SECS {
        theme.danger()
    } else if left <= WARN_SECS {
        theme.warn()
    } else {
        theme.ok()
    }
}

/// `h:mm:ss` left, or a clear ENDED once the deadline has passed.
pub fn countdown(theme: &Theme, g: &Grant, now: DateTime<Utc>) -> Cell<'static> {
    let left = (g.expires_at - now).num_seconds();
    if left <= 0 {
        return Cell::from(Span::styled("ENDED", theme.danger()));
    }
    Cell::from(Span::styled(duration::clock(left), countdown_style(theme, left)))
}

/// A bar of how much of the grant's time is used.
pub fn gauge(theme: &Theme, g: &Grant, now: DateTime<Utc>, width: usize) -> Cell<'static> {
    let total = (g.expires_at - g.granted_at).num_milliseconds().max(1) as f64;
    let used = ((now - g.granted_at).num_milliseconds() as f64 / total).clamp(0.0, 1.0);
    let filled = (used * width as f64).round() as usize;
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(width - filled));
    Cell::from(Span::styled(bar, countdown_style(theme, (g.expires_at - now).num_seconds())))
}

/// `3m`, `2h5m`: how long ago, for ages.
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    duration::format((now - then).num_seconds().max(0) as u64)
}

/// A bordered table of which only the rows that fit are built: `row(i)` is called for the
/// visible window around `selected`, so the cost does not grow with the number of items.
#[allow(clippy::too_many_arguments)]
pub fn windowed_table<'a>(
    frame: &mut Frame,
    area: Rect,
    title: Line<'a>,
    header: &[&'a str],
    widths: &[Constraint],
    len: usize,
    selected: Option<usize>,
    theme: &Theme,
    mut row: impl FnMut(usize) -> Vec<Cell<'a>>,
) {
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner_rows = area.height.saturating_sub(3) as usize; // borders and the header row
    let sel = selected.unwrap_or(0);
    let offset = if inner_rows == 0 || sel < inner_rows { 0 } else { sel + 1 - inner_rows };
    let end = (offset + inner_rows).min(len);
    let rows: Vec<Row> = (offset..end)
        .map(|i| {
            let r = Row::new(row(i));
            if selected == Some(i) { r.style(theme.selected()) } else { r }
        })
        .collect();
    let mut table = Table::new(rows, widths.to_vec()).block(block).column_spacing(1);
    if !header.is_empty() {
        table = table.header(Row::new(header.iter().map(|h| Cell::from(*h))).style(theme.header()));
    }
    frame.render_widget(table, area);
    if len == 0 && area.height > 3 {
        let hint = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        frame.render_widget(Line::styled("nothing here", theme.dim()), hint);
    }
}

/// A centred area for a popup, cleared.
pub fn popup(frame: &mut Frame, width: u16, height: u16) -> Rect {
    let area = frame.area();
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(v);
    frame.render_widget(Clear, h);
    h
}
