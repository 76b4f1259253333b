//! The approver pane: the queue I may act on (oldest first), break-glass grants waiting for my
//! review, and the active grants of the tasks I approve for.

use ratatui::text::{Line, Span};

use super::{text, whole};
use crate::tui::app::{App, Item};
use crate::tui::theme::Theme;
use crate::tui::widgets::table::{Column, cut};
use crate::tui::widgets::{age, span};

/// Who asks for what and how long is left come first; the ticket and the reason give way.
const QUEUE: &[Column] = &[
    whole("ID", 0),
    cut("WHO", 3, 6),
    cut("TASK", 1, 12),
    whole("FOR", 5),
    whole("OK", 4),
    whole("AGE", 6),
    whole("LEFT", 2),
    cut("TICKET", 7, 8),
    cut("REASON", 8, 8),
];
const REVIEW: &[Column] =
    &[whole("ID", 0), cut("HOLDER", 3, 6), cut("TASK", 1, 12), whole("STATE", 2), whole("STARTED", 4), cut("REASON", 5, 8)];

pub fn columns(section: usize) -> &'static [Column] {
    match section {
        0 => QUEUE,
        1 => REVIEW,
        _ => super::COUNTDOWN,
    }
}

pub fn cells(app: &App, section: usize, item: Item, theme: &Theme) -> Vec<Line<'static>> {
    let now = app.now;
    match (section, item) {
        (0, Item::Request(id)) => {
            let Some(r) = app.requests.get(&id) else { return vec![] };
            let mine = r.requester == app.user();
            let id_cell = if app.fresh.contains(&id) {
                Line::from(Span::styled(format!("{}*", r.id), theme.fresh()))
            } else if mine {
                Line::from(Span::styled(r.id.to_string(), theme.dim()))
            } else {
                Line::from(r.id.to_string())
            };
            let who = if mine { Line::from(Span::styled("(you)", theme.dim())) } else { text(&r.requester) };
            vec![
                id_cell,
                who,
                text(&r.task),
                Line::from(super::asked_for(r)),
                Line::from(format!("{}/{}", r.approvals.len(), r.approvals_needed)),
                Line::from(age(r.created_at, now)),
                Line::from(span((r.pending_until - now).num_seconds().max(0) as u64)),
                text(r.ticket.as_deref().unwrap_or("-")),
                text(r.reason.as_deref().unwrap_or("-")),
            ]
        }
        (1, Item::Grant(id)) => {
            let Some(g) = app.grants.get(&id) else { return vec![] };
            let reason = app.requests.get(&g.request).and_then(|r| r.reason.clone()).unwrap_or_default();
            vec![
                Line::from(Span::styled(g.id.to_string(), theme.danger())),
                text(&g.holder),
                text(&g.task),
                Line::from(g.state.as_str()),
                Line::from(format!("{} ago", age(g.granted_at, now))),
                text(&reason),
            ]
        }
        (_, Item::Grant(id)) => super::countdown_cells(app, id, theme),
        _ => vec![],
    }
}
