//! The auditor pane: the live event log (newest first, filterable, exportable) with the chain's
//! verification state, and an expiring-soon board of every active grant.

use ratatui::text::{Line, Span};

use super::{text, whole};
use crate::tui::app::{App, Item, VerifyState};
use crate::tui::theme::Theme;
use crate::tui::widgets::table::{Column, cut};

/// The sequence number, time and kind come first; the details give way.
const LOG: &[Column] = &[whole("SEQ", 0), whole("TIME", 1), cut("ACTOR", 3, 8), whole("KIND", 2), whole("ID", 4), cut("DETAILS", 5, 8)];

/// Which notice and who it was for stay; the error gives way first.
const NOTICES: &[Column] =
    &[whole("ID", 0), cut("TRIGGER", 1, 14), cut("VIA", 4, 8), cut("TO", 2, 10), whole("TRIES", 5), cut("ERROR", 3, 12)];

pub fn columns(section: usize) -> &'static [Column] {
    match section {
        0 => LOG,
        1 => super::COUNTDOWN,
        _ => NOTICES,
    }
}

/// Follow mode, the filter and the chain's state, in the log's title.
pub fn log_title_extra(app: &App, theme: &Theme) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    if app.follow {
        out.push(Span::styled("[follow] ", theme.ok()));
    }
    let last = app.log.last().map(|e| e.seq).unwrap_or(0);
    out.push(match &app.verify {
        VerifyState::Unknown => Span::styled("chain: not checked (V) ", theme.dim()),
        VerifyState::Checking => Span::styled("chain: checking… ", theme.dim()),
        VerifyState::Done(r) if r.ok => {
            let newer = last.saturating_sub(r.events);
            let tail = if newer > 0 { format!(", {newer} newer") } else { String::new() };
            Span::styled(format!("chain: verified up to event {}{tail} ", r.events), theme.ok())
        }
        VerifyState::Done(r) => Span::styled(
            format!(
                "chain: BROKEN at event {}: {} ",
                r.first_bad_seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                r.problem.as_deref().unwrap_or("")
            ),
            theme.danger(),
        ),
    });
    out
}

pub fn cells(app: &App, section: usize, item: Item, theme: &Theme) -> Vec<Line<'static>> {
    match (section, item) {
        (0, Item::Event(i)) => {
            let Some(e) = app.log.get(i) else { return vec![] };
            vec![
                Line::from(e.seq.to_string()),
                Line::from(e.at.format("%H:%M:%S").to_string()),
                text(&e.actor),
                Line::from(e.change.kind()),
                Line::from(e.change.target().unwrap_or_default()),
                text(&format!("{} {} {}", e.change.subject().unwrap_or(""), e.change.task().unwrap_or(""), e.change.summary())),
            ]
        }
        (_, Item::Grant(id)) => super::countdown_cells(app, id, theme),
        (_, Item::Notice(i)) => {
            let Some(n) = app.failed_notices.get(i) else { return vec![] };
            vec![
                Line::from(n.id.to_string()),
                Line::from(n.trigger.as_str()),
                text(&n.channel),
                text(&n.recipient),
                Line::from(n.attempts.to_string()),
                Line::styled(crate::model::text::inert_line(n.last_error.as_deref().unwrap_or("")), theme.danger()),
            ]
        }
        _ => vec![],
    }
}
