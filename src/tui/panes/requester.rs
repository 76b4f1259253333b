//! The requester pane: my grants counting down, my pending requests, my history.

use ratatui::text::{Line, Span};

use super::{text, whole};
use crate::model::RequestState;
use crate::tui::app::{App, Item};
use crate::tui::theme::Theme;
use crate::tui::widgets::table::{Column, cut};
use crate::tui::widgets::{age, countdown, gauge, span};

const GRANTS: &[Column] = &[whole("ID", 0), cut("TASK", 1, 12), whole("LEFT", 2), whole("USED", 4), cut("APPROVED BY", 3, 6)];
const PENDING: &[Column] =
    &[whole("ID", 0), cut("TASK", 1, 12), whole("FOR", 4), whole("APPROVALS", 3), whole("AGE", 5), whole("EXPIRES IN", 2)];
const HISTORY: &[Column] = &[whole("ID", 0), cut("TASK", 1, 12), cut("OUTCOME", 2, 9), whole("WHEN", 3), cut("NOTE", 4, 8)];

pub fn columns(section: usize) -> &'static [Column] {
    match section {
        0 => GRANTS,
        1 => PENDING,
        _ => HISTORY,
    }
}

pub fn cells(app: &App, section: usize, item: Item, theme: &Theme) -> Vec<Line<'static>> {
    let now = app.now;
    match (section, item) {
        (0, Item::Grant(id)) => {
            let Some(g) = app.grants.get(&id) else { return vec![] };
            let by = if g.break_glass { "BREAK-GLASS".to_string() } else { g.approved_by.join(",") };
            vec![Line::from(g.id.to_string()), text(&g.task), countdown(theme, g, now), gauge(theme, g, now, 12), text(&by)]
        }
        (1, Item::Request(id)) => {
            let Some(r) = app.requests.get(&id) else { return vec![] };
            vec![
                Line::from(r.id.to_string()),
                text(&r.task),
                Line::from(super::asked_for(r)),
                Line::from(format!("{}/{}", r.approvals.len(), r.approvals_needed)),
                Line::from(age(r.created_at, now)),
                Line::from(span((r.pending_until - now).num_seconds().max(0) as u64)),
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
                Line::from(r.id.to_string()),
                text(&r.task),
                Line::from(Span::styled(outcome, style)),
                Line::from(format!("{} ago", age(when, now))),
                text(&note),
            ]
        }
        _ => vec![],
    }
}
