//! Small building blocks shared by the panes: countdowns, times, tables that give way, popups
//! that scroll.

pub mod scroll;
pub mod table;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Clear;

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

/// Time left, never cut and never like a clock: `44m59s`, `23h59m`, or a clear ENDED.
pub fn countdown(theme: &Theme, g: &Grant, now: DateTime<Utc>) -> Line<'static> {
    if g.is_scheduled_at(now) {
        let until = (g.granted_at - now).num_seconds().max(0) as u64;
        return Line::from(Span::styled(format!("starts in {}", crate::model::duration::clock(until as i64)), theme.dim()));
    }
    let left = (g.expires_at - now).num_seconds();
    if left <= 0 {
        return Line::from(Span::styled("ENDED", theme.danger()));
    }
    Line::from(Span::styled(span(left as u64), countdown_style(theme, left)))
}

/// A bar of how much of the grant's time is used.
pub fn gauge(theme: &Theme, g: &Grant, now: DateTime<Utc>, width: usize) -> Line<'static> {
    let total = (g.expires_at - g.granted_at).num_milliseconds().max(1) as f64;
    let used = ((now - g.granted_at).num_milliseconds() as f64 / total).clamp(0.0, 1.0);
    let filled = (used * width as f64).round() as usize;
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(width - filled));
    Line::from(Span::styled(bar, countdown_style(theme, (g.expires_at - now).num_seconds())))
}

/// A duration in its two largest units, as `parse` reads them: `45s`, `4m10s`, `23h59m`, `2d3h`.
/// Short enough for a column, and never mistaken for a clock time.
pub fn span(secs: u64) -> String {
    let unit = match secs {
        0..3600 => 1,
        3600..86_400 => 60,
        _ => 3600,
    };
    duration::format(secs - secs % unit)
}

/// How long ago, for ages: `3m`, `2h5m`.
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    span((now - then).num_seconds().max(0) as u64)
}

/// How long until `then`, for deadlines: `in 4m10s`, or how long ago it passed.
pub fn relative(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (then - now).num_seconds();
    if secs >= 0 { format!("in {}", span(secs as u64)) } else { format!("{} ago", span(secs.unsigned_abs())) }
}

/// A moment for people: the date and time in UTC, the zone the daemon, the log and the CLI all
/// speak, and how long ago or ahead it is: `2026-11-23 08:59:00 UTC (1m ago)`.
pub fn moment(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ({})", at.format("%Y-%m-%d %H:%M:%S UTC"), relative(at, now))
}

/// A centred area for a popup, cleared.
pub fn popup(frame: &mut Frame, width: u16, height: u16) -> Rect {
    let area = frame.area();
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(v);
    frame.render_widget(Clear, h);
    h
}
