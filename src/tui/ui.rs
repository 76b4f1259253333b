//! Draws a frame from the app's state: status bar, pane tabs, the pane, the footer, overlays.
//! Reads only; never changes the state (a popup's scroll notes how far it can go).

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::app::{App, Connection, Mode, Pane};
use super::keymap;
use super::overlays;
use super::panes;
use super::theme::Theme;
use super::widgets::table::ellipsize;
use crate::model::text::inert_line;

/// Below this size the panes cannot show a useful row; the console says so instead.
pub const MIN_WIDTH: u16 = 50;
pub const MIN_HEIGHT: u16 = 12;

pub fn render(app: &App, frame: &mut Frame, theme: &Theme) {
    let size = frame.area();
    if size.width < MIN_WIDTH || size.height < MIN_HEIGHT {
        render_too_small(frame, theme);
        return;
    }
    let [status, tabs, main, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)]).areas(frame.area());
    render_status(app, frame, status, theme);
    render_tabs(app, frame, tabs, theme);
    panes::render(app, frame, main, theme);
    render_footer(app, frame, footer, theme);
    match &app.mode {
        Mode::Help => overlays::help(app, frame, theme),
        Mode::Detail => overlays::detail(app, frame, theme),
        Mode::Form(form) => overlays::form(app, form, frame, theme),
        Mode::Prompt(prompt) => overlays::prompt(app, prompt, frame, theme),
        Mode::Transcript(run) => overlays::transcript(app, *run, frame, theme),
        Mode::Normal | Mode::Filter | Mode::Export(_) => app.scroll.leave(),
    }
}

/// What a terminal below the minimum size shows: why nothing else is drawn, and how to leave.
fn render_too_small(frame: &mut Frame, theme: &Theme) {
    let size = frame.area();
    let lines = vec![
        Line::styled("terminal too small", theme.warn()),
        Line::raw(format!("need at least {MIN_WIDTH}x{MIN_HEIGHT}, now {}x{}", size.width, size.height)),
        Line::styled("enlarge the window, or q to quit", theme.dim()),
    ];
    let text = Paragraph::new(lines).alignment(Alignment::Center).wrap(Wrap { trim: true });
    let height = u16::try_from(text.line_count(size.width)).unwrap_or(u16::MAX).min(size.height);
    let [area] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(size);
    frame.render_widget(text, area);
}

fn render_status(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let who = match &app.me {
        Some(me) => {
            let roles = if me.roles.is_empty() { "no roles".to_string() } else { me.roles.join(", ") };
            let disabled = if me.disabled { " DISABLED" } else { "" };
            format!("{} ({roles}) via {}{disabled}", inert_line(&me.user), me.via)
        }
        None => "connecting…".to_string(),
    };
    let (dot, dot_style) = match &app.connection {
        Connection::Live => ("● live".to_string(), theme.ok()),
        Connection::Connecting => ("○ connecting".to_string(), theme.warn()),
        Connection::Lost(_) => ("○ reconnecting".to_string(), theme.danger()),
    };
    let bell = if app.bell { "" } else { "  bell off" };
    // Most important first: a narrow terminal cuts the daemon's path, not the connection state.
    let line = Line::from(vec![
        Span::styled(" zsa ", theme.bar()),
        Span::raw(" "),
        Span::styled(dot, dot_style),
        Span::styled(bell, theme.dim()),
        Span::raw(format!("  {who} · {}", inert_line(&app.daemon))),
    ]);
    frame.render_widget(Paragraph::new(ellipsize(line, area.width)), area);
}

fn render_tabs(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let mut spans = Vec::new();
    for (n, pane) in [Pane::Requester, Pane::Approver, Pane::Auditor].into_iter().enumerate() {
        if !app.panes.contains(&pane) {
            continue;
        }
        let label = format!(" {} {} ", n + 1, pane.title());
        let extra = match pane {
            Pane::Approver if app.waiting > 0 => format!("({}) ", app.waiting),
            _ => String::new(),
        };
        let style = if pane == app.pane { theme.selected() } else { theme.plain() };
        spans.push(Span::styled(format!("{label}{extra}"), style));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The key hints, or a message. `? help` and `q quit` stay at any width; the other hints give way
/// from the last, and a message is cut before them.
fn render_footer(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let hint = |b: &keymap::Binding| vec![Span::styled(format!(" {}", b.keys), theme.header()), Span::raw(format!(" {} ", b.short))];
    let hints: Vec<&keymap::Binding> = app.keys.for_pane(app.pane).filter(|b| b.hint).collect();
    let essential = |b: &keymap::Binding| matches!(b.action, crate::tui::action::Action::Quit | crate::tui::action::Action::ToggleHelp);
    let kept: Vec<Span> = hints.iter().filter(|b| essential(b)).flat_map(|b| hint(b)).collect();
    let kept_width = Line::from(kept.clone()).width() as u16;
    let line = if let Some(t) = &app.toast {
        let style = if t.error { theme.danger() } else { theme.ok() };
        let message = Line::from(vec![Span::styled(format!(" {} ", inert_line(&t.text)), style), Span::styled(" (Esc)", theme.dim())]);
        let message = ellipsize(message, area.width.saturating_sub(kept_width));
        let gap = area.width.saturating_sub(kept_width).saturating_sub(message.width() as u16);
        let mut spans = message.spans;
        spans.push(Span::raw(" ".repeat(gap as usize)));
        spans.extend(kept);
        Line::from(spans)
    } else {
        match &app.mode {
            Mode::Filter => Line::from(vec![
                Span::styled(" filter: ", theme.warn()),
                Span::raw(inert_line(&app.filters[app.pane as usize].with_caret())),
                Span::styled("  Enter keep · Esc clear", theme.dim()),
            ]),
            Mode::Export(path) => Line::from(vec![
                Span::styled(" export to: ", theme.warn()),
                Span::raw(inert_line(&path.with_caret())),
                Span::styled("  Enter write · Esc cancel (.csv for CSV)", theme.dim()),
            ]),
            _ => {
                // The other hints, in order, while they fit beside the essential ones.
                let mut room = area.width.saturating_sub(kept_width);
                let shown: Vec<&&keymap::Binding> = hints
                    .iter()
                    .filter(|b| {
                        if essential(b) {
                            return true;
                        }
                        let w = Line::from(hint(b)).width() as u16;
                        let fits = w <= room;
                        if fits {
                            room -= w;
                        } else {
                            room = 0;
                        }
                        fits
                    })
                    .collect();
                Line::from(shown.into_iter().flat_map(|b| hint(b)).collect::<Vec<_>>())
            }
        }
    };
    frame.render_widget(Paragraph::new(ellipsize(line, area.width)), area);
}
