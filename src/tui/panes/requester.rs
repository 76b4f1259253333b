//! The requester pane: my grants counting down, my pending requests, my history.

use ratatui::layout::Constraint;
use ratatui::text::Span;
use ratatui::widgets::Cell;

use super::{Columns, text_cell};
use crate::model::{RequestState, duration};
use crate::tui::app::{App, Item};
use crate::tui::theme::Theme;
use crate::tui::widgets::{age, countdown, gauge};

pub fn columns(section: usize) -> Columns {
    use Constraint::*;
    match section {
        0 => Columns {
            header: &["ID", "TASK", "LEFT", "USED", "APPROVED BY"],
            widths: vec![Length(5), Fill(2), Length(8), Length(12), Fill(1)],
        },
        1 => Columns {
            header: &["ID", "TASK", "FOR", "APPROVALS", "AGE", "EXPIRES IN"],
            widths: vec![Length(5), Fill(2), Length(6), Length(9), Length(7), Length(10)],
        },
        _ => Columns {
            header: &["ID", "TASK", "OUTCOME", "WHEN", "NOTE"],
            widths: vec![Length(5), Fill(2), Length(16), Length(10), Fill(2)],
        },
    }
}

pub fn cells(app: &App, section: usize, item: Item, theme: &Theme) -> Vec<Cell<'static>> {
    let now = app.now;
    match (section, item) {
        (0, Item::Grant(id)) => {
            let Some(g) = app.grants.get(&id) else { return vec![] };
            let by = if g.break_glass { "BREAK-GLASS".to_string() } else { g.approved_by.join(",") };
            vec![
                Cell::from(g.id.to_string()),
                Cell::from(g.task.clone()),
                countdown(theme, g, now),
                gauge(theme, g, now, 12),
                text_cell(&by),
            ]
        }
        (1, Item::Request(id)) => {
            let Some(r) = app.requests.get(&id) else { return vec![] };
            vec![
                Cell::from(r.id.to_string()),
                Cell::from(r.task.clone()),
                Cell::from(duration::format(r.duration_secs)),
                Cell::from(format!("{}/{}", r.approvals.len(), r.approvals_needed)),
                Cell::from(age(r.created_at, now)),
                Cell::from(duration::format((r.pending_until - now).num_seconds().max(0) as u64)),
            ]
        }
        (_, Item::Request(id)) => {
            let Some(r) = app.requests.get(&id) else { return vec![] };
            let grant = r.grant.and_then(|g| app.grants.get(&g));
            let outcome = match (r.state, grant) {
                (RequestState::Approved, Some(g)) => format!("{} {}", g.id, g.state.as_str()),
                (state, _) => state.as_str().to_string(),
            };
            let style = match r.state {
                RequestState::Denied | RequestState::Expired => theme.warn(),
                _ => theme.plain(),
            };
            let when = grant.and_then(|g| g.ended.as_ref().map(|e| e.at)).or(r.decided_at).unwrap_or(r.created_at);
            let note = grant
                .and_then(|g| g.ended.as_ref().and_then(|e| e.reason.clone()))
                .or_else(|| r.comment.clone())
                .or_else(|| r.reason.clone())
                .unwrap_or_default();
            vec![
                Cell::from(r.id.to_string()),
                Cell::from(r.task.clone()),
                Cell::from(Span::styled(outcome, style)),
                Cell::from(format!("{} ago", age(when, now))),
                text_cell(&note),
            ]
        }
        _ => vec![],
    }
}
