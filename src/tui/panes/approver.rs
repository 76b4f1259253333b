//! The approver pane: the queue I may act on (oldest first), break-glass grants waiting for my
//! review, and the active grants of the tasks I approve for.

use ratatui::layout::Constraint;
use ratatui::text::Span;
use ratatui::widgets::Cell;

use super::{Columns, text_cell};
use crate::model::duration;
use crate::tui::app::{App, Item};
use crate::tui::theme::Theme;
use crate::tui::widgets::age;

pub fn columns(section: usize) -> Columns {
    use Constraint::*;
    match section {
        0 => Columns {
            header: &["ID", "WHO", "TASK", "FOR", "OK", "AGE", "LEFT", "TICKET", "REASON"],
            widths: vec![Length(5), Length(8), Fill(2), Length(5), Length(3), Length(5), Length(5), Length(9), Fill(3)],
        },
        1 => Columns {
            header: &["ID", "HOLDER", "TASK", "STATE", "STARTED", "REASON"],
            widths: vec![Length(5), Length(8), Fill(2), Length(12), Length(8), Fill(3)],
        },
        _ => super::countdown_columns(),
    }
}

pub fn cells(app: &App, section: usize, item: Item, theme: &Theme) -> Vec<Cell<'static>> {
    let now = app.now;
    match (section, item) {
        (0, Item::Request(id)) => {
            let Some(r) = app.requests.get(&id) else { return vec![] };
            let mine = r.requester == app.user();
            let id_cell = if app.fresh.contains(&id) {
                Cell::from(Span::styled(format!("{}*", r.id), theme.fresh()))
            } else if mine {
                Cell::from(Span::styled(r.id.to_string(), theme.dim()))
            } else {
                Cell::from(r.id.to_string())
            };
            let who = if mine { Cell::from(Span::styled("(you)", theme.dim())) } else { text_cell(&r.requester) };
            vec![
                id_cell,
                who,
                Cell::from(r.task.clone()),
                Cell::from(duration::format(r.duration_secs)),
                Cell::from(format!("{}/{}", r.approvals.len(), r.approvals_needed)),
                Cell::from(age(r.created_at, now)),
                Cell::from(duration::format((r.pending_until - now).num_seconds().max(0) as u64)),
                text_cell(r.ticket.as_deref().unwrap_or("-")),
                text_cell(r.reason.as_deref().unwrap_or("-")),
            ]
        }
        (1, Item::Grant(id)) => {
            let Some(g) = app.grants.get(&id) else { return vec![] };
            let reason = app.requests.get(&g.request).and_then(|r| r.reason.clone()).unwrap_or_default();
            vec![
                Cell::from(Span::styled(g.id.to_string(), theme.danger())),
                text_cell(&g.holder),
                Cell::from(g.task.clone()),
                Cell::from(g.state.as_str()),
                Cell::from(format!("{} ago", age(g.granted_at, now))),
                text_cell(&reason),
            ]
        }
        (_, Item::Grant(id)) => super::countdown_cells(app, id, theme),
        _ => vec![],
    }
}
