//! Popups over the pane: help, the details of a selection, the request form, confirm prompts.

use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::app::{App, Item, Prompt, PromptKind};
use super::form::{Field, RequestForm};
use super::theme::Theme;
use super::widgets::popup;
use crate::model::text::{inert, inert_line};
use crate::model::{Change, RequestId, duration};

fn boxed<'a>(title: &str, theme: &Theme) -> Block<'a> {
    Block::default().borders(Borders::ALL).title(Span::styled(format!(" {title} "), theme.title()))
}

pub fn help(app: &App, frame: &mut Frame, theme: &Theme) {
    let lines: Vec<Line> = app
        .keys
        .for_pane(app.pane)
        .map(|b| Line::from(vec![Span::styled(format!("{:>10}  ", b.keys), theme.header()), Span::raw(b.help)]))
        .collect();
    let area = popup(frame, 76, lines.len() as u16 + 2);
    frame
        .render_widget(Paragraph::new(lines).block(boxed(&format!("Keys of the {} pane (any key closes)", app.pane.title()), theme)), area);
}

fn field<'a>(label: &str, value: String, theme: &Theme) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{label:>12}: "), theme.dim()), Span::raw(value)])
}

fn request_lines(app: &App, id: RequestId, theme: &Theme) -> Vec<Line<'static>> {
    let Some(r) = app.requests.get(&id) else { return vec![] };
    let now = app.now;
    let mut lines = vec![
        field("request", format!("{} ({})", r.id, r.state.as_str()), theme),
        field("requester", inert_line(&r.requester), theme),
        field("task", r.task.clone(), theme),
        field("duration", duration::format(r.duration_secs), theme),
        field("ticket", inert_line(r.ticket.as_deref().unwrap_or("-")), theme),
        field(
            "asked",
            format!(
                "{} ({} ago)",
                r.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                duration::format((now - r.created_at).num_seconds().max(0) as u64)
            ),
            theme,
        ),
        field("approvals", format!("{}/{}", r.approvals.len(), r.approvals_needed), theme),
    ];
    if r.state == crate::model::RequestState::Pending {
        lines.push(field(
            "expires",
            format!("in {} if nobody answers", duration::format((r.pending_until - now).num_seconds().max(0) as u64)),
            theme,
        ));
    }
    for a in &r.approvals {
        let c = a.comment.as_deref().map(|c| format!(": {}", inert_line(c))).unwrap_or_default();
        lines.push(field("approved by", format!("{}{c}", inert_line(&a.by)), theme));
    }
    if let Some(by) = &r.decided_by {
        lines.push(field("decided by", inert_line(by), theme));
    }
    if let Some(c) = &r.comment {
        lines.push(field("comment", inert_line(c), theme));
    }
    lines.push(field("reason", String::new(), theme));
    for l in r.reason.as_deref().unwrap_or("-").lines() {
        lines.push(Line::raw(format!("    {}", inert(l))));
    }
    if r.requester == app.user() && r.state == crate::model::RequestState::Pending {
        lines.push(Line::styled("This is your own request: nobody may approve their own.", theme.warn()));
    }
    lines
}

pub fn detail(app: &App, frame: &mut Frame, theme: &Theme) {
    let (title, lines) = match app.selected() {
        Some(Item::Request(id)) => (format!("Request {id}"), request_lines(app, id, theme)),
        Some(Item::Grant(id)) => {
            let mut lines = Vec::new();
            if let Some(g) = app.grants.get(&id) {
                lines.push(field("grant", format!("{} ({})", g.id, g.state.as_str()), theme));
                lines.push(field("holder", inert_line(&g.holder), theme));
                lines.push(field("expires", g.expires_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(), theme));
                lines.push(field("approved by", inert_line(&g.approved_by.join(", ")), theme));
                if g.break_glass {
                    let review = g
                        .review
                        .as_ref()
                        .map(|r| format!("reviewed by {}", inert_line(&r.by)))
                        .unwrap_or_else(|| "NOT REVIEWED YET".into());
                    lines.push(Line::styled(format!("{:>12}: {review}", "break-glass"), theme.danger()));
                }
                if let Some(e) = &g.ended {
                    lines.push(field("ended", format!("{} by {}", e.at.format("%Y-%m-%d %H:%M:%S UTC"), inert_line(&e.by)), theme));
                    if let Some(reason) = &e.reason {
                        lines.push(field("why", inert_line(reason), theme));
                    }
                }
                lines.push(Line::raw(""));
                lines.extend(request_lines(app, g.request, theme));
            }
            (format!("Grant {id}"), lines)
        }
        Some(Item::Event(i)) => {
            let lines = app
                .log
                .get(i)
                .map(|e| {
                    vec![
                        field("event", format!("{} {}", e.seq, e.change.kind()), theme),
                        field("at", e.at.to_rfc3339(), theme),
                        field("actor", inert_line(&e.actor), theme),
                        field("proved", e.proved(), theme),
                        field(
                            "about",
                            format!("{} {}", inert_line(e.change.subject().unwrap_or("-")), e.change.task().unwrap_or("")),
                            theme,
                        ),
                        field("details", e.change.summary(), theme),
                        field("hash", e.hash.clone(), theme),
                        field("previous", e.prev_hash.clone(), theme),
                    ]
                })
                .unwrap_or_default();
            let mut lines = lines;
            if let Some(Change::RunEnded { run, transcript_sha256, .. }) = app.log.get(i).map(|e| &e.change) {
                lines.extend(transcript_lines(app, *run, transcript_sha256, frame.area().height.saturating_sub(16) as usize, theme));
            }
            ("Event".to_string(), lines)
        }
        None => return,
    };
    let area = popup(frame, 78, lines.len() as u16 + 3);
    let mut block_lines = lines;
    block_lines.push(Line::styled("Esc or Enter: back", theme.dim()));
    frame.render_widget(Paragraph::new(block_lines).wrap(Wrap { trim: false }).block(boxed(&title, theme)), area);
}

/// A run's transcript, inert, cut to fit, with whether it matches the digest in the log.
fn transcript_lines(app: &App, run: crate::model::RunId, recorded: &str, room: usize, theme: &Theme) -> Vec<Line<'static>> {
    let Some((text, sha256)) = app.transcripts.get(&run) else {
        return vec![Line::styled(format!("loading the transcript of {run}…"), theme.dim())];
    };
    let mut lines = vec![if sha256 == recorded {
        Line::styled(format!("transcript of {run} (matches the digest in the log):"), theme.ok())
    } else {
        Line::styled(format!("transcript of {run} DOES NOT MATCH the digest in the log"), theme.danger())
    }];
    let all: Vec<&str> = text.lines().collect();
    for l in all.iter().take(room.max(1)) {
        lines.push(Line::raw(format!("  {}", inert(l))));
    }
    if all.len() > room.max(1) {
        lines.push(Line::styled(format!("  … {} more lines: zsa audit transcript {run}", all.len() - room.max(1)), theme.dim()));
    }
    lines
}

pub fn form(app: &App, form: &RequestForm, frame: &mut Frame, theme: &Theme) {
    let task = form.task(&app.tasks);
    let problems = form.problems(&app.tasks);
    let mut lines = Vec::new();
    let focused = |f: Field| form.field == f;
    for f in Field::ALL {
        let value = match f {
            Field::Task => {
                let search =
                    if form.search.is_empty() && !focused(f) { String::new() } else { format!("  search: {}", form.search.with_caret()) };
                let n = form.matching(&app.tasks).len();
                task.map(|t| format!("◀ {} ▶ ({n}){search}", t.name)).unwrap_or(search)
            }
            Field::Duration if focused(f) => form.duration.with_caret(),
            Field::Reason if focused(f) => form.reason.with_caret(),
            Field::Ticket if focused(f) => form.ticket.with_caret(),
            Field::Duration => form.duration.to_string(),
            Field::Reason => form.reason.to_string(),
            Field::Ticket => form.ticket.to_string(),
        };
        let label_style = if focused(f) { theme.header() } else { theme.dim() };
        lines.push(Line::from(vec![Span::styled(format!("{:>9}: ", f.label()), label_style), Span::raw(inert_line(&value))]));
        if f == Field::Task
            && let Some(t) = task
        {
            let approval = if t.break_glass {
                "break-glass: active at once, reviewed afterwards".to_string()
            } else if t.approval == "auto" {
                "approved automatically".to_string()
            } else {
                format!("{} approval(s) from {}", t.approvals, t.approver_users.join(", "))
            };
            lines.push(Line::styled(format!("{:>11}{approval}; at most {}", "", duration::format(t.max_duration_secs)), theme.dim()));
            lines.push(Line::styled(format!("{:>11}{}", "", inert_line(&t.description)), theme.dim()));
        }
        for (_, p) in problems.iter().filter(|(pf, _)| *pf == f) {
            lines.push(Line::styled(format!("{:>11}✗ {}", "", inert_line(p)), theme.danger()));
        }
    }
    lines.push(Line::raw(""));
    let ready = if problems.is_empty() {
        Span::styled("ready: Enter sends", theme.ok())
    } else {
        Span::styled("fix the marked fields", theme.warn())
    };
    lines.push(Line::from(vec![ready, Span::styled("   Tab/↑↓ field · ←→ or type: task · Esc cancel", theme.dim())]));
    let area = popup(frame, 76, lines.len() as u16 + 2);
    frame.render_widget(Paragraph::new(lines).block(boxed("Ask for a task", theme)), area);
}

pub fn prompt(app: &App, prompt: &Prompt, frame: &mut Frame, theme: &Theme) {
    let mut lines = Vec::new();
    let request = match prompt.kind {
        PromptKind::Approve(id) | PromptKind::Deny(id) | PromptKind::Cancel(id) => app.requests.get(&id),
        PromptKind::Revoke(g) | PromptKind::Relinquish(g) | PromptKind::Review(g) => {
            app.grants.get(&g).and_then(|g| app.requests.get(&g.request))
        }
    };
    if let Some(r) = request {
        lines.push(Line::raw(format!("{} asks for {} for {}", inert_line(&r.requester), r.task, duration::format(r.duration_secs))));
        lines.push(Line::styled(format!("reason: {}", inert_line(r.reason.as_deref().unwrap_or("-"))), theme.dim()));
        if let Some(t) = &r.ticket {
            lines.push(Line::styled(format!("ticket: {}", inert_line(t)), theme.dim()));
        }
    }
    lines.push(Line::raw(""));
    if let Some((label, _)) = prompt.kind.input() {
        lines.push(Line::from(vec![Span::styled(format!("{label}: "), theme.header()), Span::raw(inert_line(&prompt.input.with_caret()))]));
        lines.push(Line::styled("Enter confirms · Esc cancels", theme.dim()));
    } else {
        lines.push(Line::styled("Enter or y confirms · Esc or n cancels", theme.dim()));
    }
    if let Some(e) = &prompt.error {
        lines.push(Line::styled(e.clone(), theme.danger()));
    }
    let area = popup(frame, 70, lines.len() as u16 + 2);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(boxed(&format!("{}?", prompt.kind.title()), theme)), area);
}
