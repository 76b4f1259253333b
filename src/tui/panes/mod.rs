//! The three panes. Each is a stack of sections; a section is a table whose rows are built only
//! for the visible window. The panes only read the app's state.

mod approver;
mod auditor;
mod requester;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};

use super::app::{App, Item, Pane};
use super::theme::Theme;
use super::widgets::table::{Column, cut, whole, windowed_table};

pub fn render(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let sections = app.current_sections();
    if sections.is_empty() {
        return;
    }
    let third = (area.height / 3).max(3);
    let last = sections.len() - 1;
    let constraints: Vec<Constraint> = sections
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let want = (s.items.len() as u16 + 3).clamp(3, third);
            match (app.pane, i) {
                (Pane::Auditor, 0) => Constraint::Fill(1),
                (Pane::Auditor, _) => Constraint::Length(want),
                (_, i) if i == last => Constraint::Fill(1),
                _ => Constraint::Length(want),
            }
        })
        .collect();
    let areas = Layout::vertical(constraints).split(area);
    let cursor = app.cursor();
    for (i, (section, rect)) in sections.iter().zip(areas.iter()).enumerate() {
        let columns = match app.pane {
            Pane::Requester => requester::columns(i),
            Pane::Approver => approver::columns(i),
            Pane::Auditor => auditor::columns(i),
        };
        let title_style = if section.urgent { theme.danger() } else { theme.title() };
        let mut title = vec![Span::styled(format!(" {} ({}) ", section.title, section.items.len()), title_style)];
        if app.pane == Pane::Auditor && i == 0 {
            title.extend(auditor::log_title_extra(app, theme));
        }
        if i == 0 {
            title.extend(filter_and_sort_title(app, theme));
        }
        let selected = (cursor.section == i && !section.items.is_empty()).then_some(cursor.row);
        windowed_table(frame, *rect, Line::from(title), columns, section.items.len(), selected, theme, |row| {
            cells(app, i, section.items[row], theme)
        });
    }
}

/// The pane's filter and sort, in its first section's title.
fn filter_and_sort_title(app: &App, theme: &Theme) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    let filter = &app.filters[app.pane.index()];
    if !filter.is_empty() || app.mode == super::app::Mode::Filter {
        let shown = if app.mode == super::app::Mode::Filter { filter.with_caret() } else { filter.to_string() };
        out.push(Span::styled(format!("filter: {} ", crate::model::text::inert_line(&shown)), theme.warn()));
    }
    if let Some(sort) = app.sorts[app.pane.index()] {
        out.push(Span::styled(format!("sort: {} {} ", sort.column.label(), if sort.reversed { "↓" } else { "↑" }), theme.warn()));
    }
    out
}

fn cells(app: &App, section: usize, item: Item, theme: &Theme) -> Vec<Line<'static>> {
    match app.pane {
        Pane::Requester => requester::cells(app, section, item, theme),
        Pane::Approver => approver::cells(app, section, item, theme),
        Pane::Auditor => auditor::cells(app, section, item, theme),
    }
}

/// The columns of a grant counting down, shared by the approver's and the auditor's boards.
pub const COUNTDOWN: &[Column] = &[whole("ID", 0), cut("HOLDER", 3, 6), cut("TASK", 1, 12), whole("LEFT", 2), whole("USED", 4)];

pub fn countdown_cells(app: &App, id: crate::model::GrantId, theme: &Theme) -> Vec<Line<'static>> {
    let Some(g) = app.grants.get(&id) else { return vec![] };
    vec![
        Line::from(g.id.to_string()),
        text(&g.holder),
        text(&g.task),
        super::widgets::countdown(theme, g, app.now),
        super::widgets::gauge(theme, g, app.now, 12),
    ]
}

/// User text for a table cell: one line, inert.
pub fn text(s: &str) -> Line<'static> {
    Line::from(crate::model::text::inert_line(s))
}

/// How long a request asks for; an extension says by how much and of which grant (`+30m G12`).
pub fn asked_for(r: &crate::model::Request) -> String {
    match r.extends {
        Some(g) => format!("+{} {g}", crate::model::duration::format(r.duration_secs)),
        None => crate::model::duration::format(r.duration_secs),
    }
}
