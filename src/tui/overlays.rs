//! Popups over the pane: help, the details of a selection, a run's transcript, the request form,
//! confirm prompts. Each is sized by its wrapped lines and scrolls when taller than the screen;
//! the lines that say how to close or confirm are pinned at the bottom.

use ratatui::Frame;
use ratatui::text::{Line, Span};

use super::app::{App, Item, Prompt, PromptKind};
use super::form::{Field, RequestForm};
use super::theme::Theme;
use super::widgets::moment;
use super::widgets::scroll::{Popup, Scrolling, render_popup};
use crate::model::text::{inert, inert_line};
use crate::model::wire::RowAction;
use crate::model::{Change, RequestId, RunId, duration};

/// Lines of a transcript shown in the event's detail; `t` shows all of it.
const TRANSCRIPT_PREVIEW: usize = 5;

/// The keys that scroll a tall popup, for its footer.
const SCROLL_KEYS: &str = "↑↓ PgUp PgDn Home End: scroll";

fn title(text: &str, theme: &Theme) -> Line<'static> {
    Line::from(Span::styled(format!(" {text} "), theme.title()))
}

pub fn help(app: &App, frame: &mut Frame, theme: &Theme) {
    let body: Vec<Line> = app
        .keys
        .for_pane(app.pane)
        .map(|b| Line::from(vec![Span::styled(format!("{:>10}  ", b.keys), theme.header()), Span::raw(b.help)]))
        .collect();
    let footer = vec![Line::styled(format!("{SCROLL_KEYS} · any other key closes"), theme.dim())];
    let popup = Popup { title: title(&format!("Keys of the {} pane", app.pane.title()), theme), body, footer, width: 76, full: false };
    render_popup(frame, popup, Scrolling::Keys(&app.scroll), theme);
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
        field("duration", super::panes::asked_for(r), theme),
        field("ticket", inert_line(r.ticket.as_deref().unwrap_or("-")), theme),
        field("asked", moment(r.created_at, now), theme),
        field("approvals", format!("{}/{}", r.approvals.len(), r.approvals_needed), theme),
    ];
    // The daemon's words: names in it are already made inert.
    if let Some(stages) = &r.stages {
        lines.push(field("stages", stages.clone(), theme));
    }
    if r.state == crate::model::RequestState::Pending {
        lines.push(field("lapses", format!("{} if nobody answers", moment(r.pending_until, now)), theme));
    }
    for a in &r.approvals {
        let c = a.comment.as_deref().map(|c| format!(": {}", inert_line(c))).unwrap_or_default();
        lines.push(field("approved by", format!("{} at {}{c}", inert_line(&a.by), moment(a.at, now)), theme));
    }
    if let Some(by) = &r.decided_by {
        let at = r.decided_at.map(|at| format!(" at {}", moment(at, now))).unwrap_or_default();
        lines.push(field("decided by", format!("{}{at}", inert_line(by)), theme));
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
    let now = app.now;
    let mut run = None;
    let (title_text, body) = match app.selected() {
        Some(Item::Request(id)) => (format!("Request {id}"), request_lines(app, id, theme)),
        Some(Item::Grant(id)) => {
            let mut lines = Vec::new();
            if let Some(g) = app.grants.get(&id) {
                lines.push(field("grant", format!("{} ({})", g.id, g.state.as_str()), theme));
                lines.push(field("holder", inert_line(&g.holder), theme));
                lines.push(field("granted", moment(g.granted_at, now), theme));
                lines.push(field("expires", moment(g.expires_at, now), theme));
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
                    lines.push(field("ended", format!("{} by {}", moment(e.at, now), inert_line(&e.by)), theme));
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
            let Some(e) = app.log.get(i) else { return };
            let mut lines = vec![
                field("event", format!("{} {}", e.seq, e.change.kind()), theme),
                field("at", moment(e.at, now), theme),
                field("actor", inert_line(&e.actor), theme),
                field("proved", e.proved(), theme),
                field("about", format!("{} {}", inert_line(e.change.subject().unwrap_or("-")), e.change.task().unwrap_or("")), theme),
                field("details", e.change.summary(), theme),
                field("hash", e.hash.clone(), theme),
                field("previous", e.prev_hash.clone(), theme),
            ];
            if let Change::RunEnded { run: id, transcript_sha256, .. } = &e.change {
                lines.extend(transcript_preview(app, *id, transcript_sha256, theme));
                run = Some(*id);
            }
            (format!("Event {}", e.seq), lines)
        }
        Some(Item::Notice(i)) => {
            let Some(n) = app.failed_notices.get(i) else { return };
            let mut lines = vec![
                field("notice", format!("{} {}", n.id, inert_line(&n.key)), theme),
                field("about", n.trigger.as_str().to_string(), theme),
                field("via", inert_line(&n.channel), theme),
                field("to", inert_line(&n.recipient), theme),
                field("state", format!("{} after {} attempt(s)", n.state.as_str(), n.attempts), theme),
                field("created", moment(n.created_at, now), theme),
            ];
            if let Some(done) = n.done_at {
                lines.push(field("gave up", moment(done, now), theme));
            }
            lines.push(Line::styled(format!("{:>12}: {}", "error", inert_line(n.last_error.as_deref().unwrap_or("-"))), theme.danger()));
            lines.push(Line::raw(""));
            lines.push(Line::styled(format!("An admin sends it again with: zsa admin notices retry {}", n.id), theme.dim()));
            (format!("Notice {}", n.id), lines)
        }
        None => return,
    };
    let mut hint = String::from("Esc or Enter: back");
    if run.is_some() {
        hint.push_str(" · t: whole transcript");
    }
    hint.push_str(" · ↑↓ PgUp PgDn: scroll");
    let popup = Popup { title: title(&title_text, theme), body, footer: vec![Line::styled(hint, theme.dim())], width: 100, full: false };
    render_popup(frame, popup, Scrolling::Keys(&app.scroll), theme);
}

/// Whether a run's transcript, as it arrived, matches the digest the log recorded for it.
fn transcript_check(app: &App, run: RunId, recorded: &str, theme: &Theme) -> (Line<'static>, Option<&'static str>) {
    match app.transcripts.get(&run) {
        None => (Line::styled(format!("loading the transcript of {run}…"), theme.dim()), None),
        Some((_, sha256)) if sha256 == recorded => {
            (Line::styled(format!("transcript of {run} (matches the digest in the log):"), theme.ok()), Some("matches"))
        }
        Some(_) => (Line::styled(format!("transcript of {run} DOES NOT MATCH the digest in the log"), theme.danger()), None),
    }
}

/// The first lines of a run's transcript, inert, checked against the digest in the log.
fn transcript_preview(app: &App, run: RunId, recorded: &str, theme: &Theme) -> Vec<Line<'static>> {
    let (check, _) = transcript_check(app, run, recorded, theme);
    let mut lines = vec![check];
    let Some((text, _)) = app.transcripts.get(&run) else { return lines };
    let all: Vec<&str> = text.lines().collect();
    lines.extend(all.iter().take(TRANSCRIPT_PREVIEW).map(|l| Line::raw(format!("  {}", inert(l)))));
    if all.len() > TRANSCRIPT_PREVIEW {
        lines.push(Line::styled(
            format!("  … {} more lines: press t for the whole transcript", all.len() - TRANSCRIPT_PREVIEW),
            theme.dim(),
        ));
    }
    lines
}

/// A run's whole transcript on the whole screen, scrollable, with its check against the log.
pub fn transcript(app: &App, run: RunId, frame: &mut Frame, theme: &Theme) {
    let recorded = app.log.iter().rev().find_map(|e| match &e.change {
        Change::RunEnded { run: id, transcript_sha256, .. } if *id == run => Some(transcript_sha256.as_str()),
        _ => None,
    });
    let (check, _) = transcript_check(app, run, recorded.unwrap_or(""), theme);
    let mut body = vec![check];
    if let Some((text, _)) = app.transcripts.get(&run) {
        let lines: Vec<&str> = text.lines().collect();
        body.extend(lines.iter().map(|l| Line::raw(inert(l).into_owned())));
        body.push(Line::styled(format!("(end of the transcript: {} lines)", lines.len()), theme.dim()));
    }
    let footer = vec![Line::styled(format!("Esc, Enter or t: back to the event · {SCROLL_KEYS}"), theme.dim())];
    let popup = Popup { title: title(&format!("Transcript of {run}"), theme), body, footer, width: u16::MAX, full: true };
    render_popup(frame, popup, Scrolling::Keys(&app.scroll), theme);
}

pub fn form(app: &App, form: &RequestForm, frame: &mut Frame, theme: &Theme) {
    let task = form.task(&app.tasks);
    let problems = form.problems(&app.tasks, app.now);
    let mut lines = Vec::new();
    let focused = |f: Field| form.field == f;
    let mut focus = 0;
    for f in Field::ALL {
        let value = match f {
            Field::Task => {
                let search =
                    if form.search.is_empty() && !focused(f) { String::new() } else { format!("  search: {}", form.search.with_caret()) };
                let n = form.matching(&app.tasks).len();
                task.map(|t| format!("◀ {} ▶ ({n}){search}", t.name)).unwrap_or(search)
            }
            Field::Duration if focused(f) => form.duration.with_caret(),
            Field::Start if focused(f) => form.start.with_caret(),
            Field::Start if form.start.is_empty() => "now".to_string(),
            Field::Start => form.start.to_string(),
            Field::Reason if focused(f) => form.reason.with_caret(),
            Field::Ticket if focused(f) => form.ticket.with_caret(),
            Field::Duration => form.duration.to_string(),
            Field::Reason => form.reason.to_string(),
            Field::Ticket => form.ticket.to_string(),
        };
        if focused(f) {
            focus = lines.len();
        }
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
                match t.approvers_for_you.as_slice() {
                    [] => "nobody but you approves it now: a request would wait until it lapses".to_string(),
                    others => format!("{} approval(s) from {}", t.approvals, others.join(", ")),
                }
            };
            lines.push(Line::styled(format!("{:>11}{approval}; at most {}", "", duration::format(t.max_duration_secs)), theme.dim()));
            if let (Some(windows), Some(now)) = (&t.windows, &t.window_now) {
                lines.push(Line::styled(format!("{:>11}windows {}: {now}", "", inert_line(windows)), theme.dim()));
            }
            lines.push(Line::styled(format!("{:>11}{}", "", inert_line(&t.description)), theme.dim()));
        }
        if f == Field::Start
            && let Ok(Some(at)) = form.starts_at(app.now)
        {
            let local = at.with_timezone(&chrono::Local).format("%a %Y-%m-%d %H:%M %Z");
            let wait = duration::format(u64::try_from((at - app.now).num_seconds()).unwrap_or(0));
            lines.push(Line::styled(format!("{:>11}starts {local} (in {wait})", ""), theme.dim()));
        } else if f == Field::Start && focused(f) {
            lines.push(Line::styled(format!("{:>11}empty: now; or +3h, 2026-11-24T22:00 (local), ...+01:00", ""), theme.dim()));
        }
        for (_, p) in problems.iter().filter(|(pf, _)| *pf == f) {
            lines.push(Line::styled(format!("{:>11}✗ {}", "", inert_line(p)), theme.danger()));
        }
    }
    let ready = if problems.is_empty() {
        Span::styled("ready: Enter sends", theme.ok())
    } else {
        Span::styled("fix the marked fields", theme.warn())
    };
    let footer = vec![Line::raw(""), Line::from(ready), Line::styled("Tab/↑↓ field · ←→ or type: task · Esc cancel", theme.dim())];
    let popup = Popup { title: title("Ask for a task", theme), body: lines, footer, width: 76, full: false };
    render_popup(frame, popup, Scrolling::Follow(focus), theme);
}

pub fn prompt(app: &App, prompt: &Prompt, frame: &mut Frame, theme: &Theme) {
    let mut lines = Vec::new();
    let request = match prompt.kind {
        PromptKind::Approve(id) | PromptKind::Deny(id) | PromptKind::Cancel(id) => app.requests.get(&id),
        PromptKind::Revoke(g) | PromptKind::Relinquish(g) | PromptKind::Review(g) | PromptKind::Extend(g) => {
            app.grants.get(&g).and_then(|g| app.requests.get(&g.request))
        }
    };
    if let Some(r) = request {
        match (prompt.kind, r.extends) {
            (PromptKind::Approve(_) | PromptKind::Deny(_) | PromptKind::Cancel(_), Some(g)) => lines.push(Line::raw(format!(
                "{} asks to extend {g} ({}) by {}",
                inert_line(&r.requester),
                r.task,
                duration::format(r.duration_secs)
            ))),
            _ => {
                lines.push(Line::raw(format!("{} asks for {} for {}", inert_line(&r.requester), r.task, duration::format(r.duration_secs))))
            }
        }
        lines.push(Line::styled(format!("reason: {}", inert_line(r.reason.as_deref().unwrap_or("-"))), theme.dim()));
        if let Some(t) = &r.ticket {
            lines.push(Line::styled(format!("ticket: {}", inert_line(t)), theme.dim()));
        }
        if let PromptKind::Approve(_) = prompt.kind
            && let Some(keys) = r.actions.signing_keys(RowAction::Approve)
        {
            lines.push(Line::raw(format!("signed through your SSH agent with {}", inert_line(&keys.join(" or ")))));
        }
    }
    if let PromptKind::Extend(g) = prompt.kind
        && let Some(grant) = app.grants.get(&g)
    {
        let lived = (grant.expires_at - grant.granted_at).num_seconds().max(0) as u64;
        let room = app.tasks.iter().find(|t| t.name == grant.task).map(|t| t.max_total_secs.saturating_sub(lived));
        lines.push(Line::raw(format!(
            "ends {}{}",
            moment(grant.expires_at, app.now),
            room.map(|r| format!("; at most {} more", duration::format(r))).unwrap_or_default()
        )));
    }
    let mut footer = vec![Line::raw("")];
    if let Some((label, _)) = prompt.kind.input() {
        footer
            .push(Line::from(vec![Span::styled(format!("{label}: "), theme.header()), Span::raw(inert_line(&prompt.input.with_caret()))]));
        footer.push(Line::styled("Enter confirms · Esc cancels · PgUp PgDn: scroll", theme.dim()));
    } else {
        footer.push(Line::styled("Enter or y confirms · Esc or n cancels · PgUp PgDn: scroll", theme.dim()));
    }
    if let Some(e) = &prompt.error {
        footer.push(Line::styled(inert_line(e), theme.danger()));
    }
    let popup = Popup { title: title(&format!("{}?", prompt.kind.title()), theme), body: lines, footer, width: 70, full: false };
    render_popup(frame, popup, Scrolling::Keys(&app.scroll), theme);
}
