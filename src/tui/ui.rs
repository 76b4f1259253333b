//! Draws a frame from the app's state: status bar, pane tabs, the pane, the footer, overlays.
//! Reads only; never changes the state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Connection, Mode, Pane};
use super::overlays;
use super::panes;
use super::theme::Theme;
use crate::model::text::inert_line;

pub fn render(app: &App, frame: &mut Frame, theme: &Theme) {
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
        Mode::Normal | Mode::Filter | Mode::Export(_) => {}
    }
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
    frame.render_widget(Paragraph::new(line), area);
}

fn render_tabs(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let mut spans = Vec::new();
    for (n, pane) in [Pane::Requester, Pane::Approver, Pane::Auditor].into_iter().enumerate() {
        if !app.panes.contains(&pane) {
            continue;
        }
        let label = format!(" {} {} ", n + 1, pane.title());
        let extra = match pane {
            Pane::Approver => match app.sections[pane as usize].first().map(|queue| queue.items.len()) {
                Some(waiting) if waiting > 0 => format!("({waiting}) "),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let style = if pane == app.pane { theme.selected() } else { theme.plain() };
        spans.push(Span::styled(format!("{label}{extra}"), style));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let line = if let Some(t) = &app.toast {
        let style = if t.error { theme.danger() } else { theme.ok() };
        Line::from(vec![Span::styled(format!(" {} ", inert_line(&t.text)), style), Span::styled(" (Esc)", theme.dim())])
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
                let mut spans = Vec::new();
                for b in app.keys.for_pane(app.pane).filter(|b| b.hint) {
                    spans.push(Span::styled(format!(" {}", b.keys), theme.header()));
                    spans.push(Span::raw(format!(" {} ", b.short)));
                }
                Line::from(spans)
            }
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}
