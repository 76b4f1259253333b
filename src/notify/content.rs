//! The words of one notice: a one-line subject, plain text, HTML and the facts as JSON, from the
//! event and the state after it. Everything a person needs to act without opening anything else
//! (who, which task, for how long, why, which ticket, approvals so far and needed, when the request
//! lapses) and the exact commands. Every value a user typed is made inert (`text::inert_line`:
//! one line, no control or hidden characters), and escaped for HTML by `html_escape`. Pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::routing::Planned;
use super::{Notice, Trigger};
use crate::model::text::inert_line;
use crate::model::{Change, Event, duration};
use crate::policy::Policy;
use crate::rules::State;

/// What a notice says, as data: the `facts` of a `Notice`, and what its texts are made of.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub trigger: Option<Trigger>,
    pub seq: u64,
    pub at: Option<DateTime<Utc>>,
    /// Who did it (an approver, the requester, `zsa` for the daemon).
    pub actor: String,
    pub request: Option<String>,
    pub grant: Option<String>,
    pub task: Option<String>,
    pub task_description: Option<String>,
    /// The requester of a request, the holder of a grant.
    pub person: Option<String>,
    pub duration_secs: Option<u64>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub comment: Option<String>,
    pub approved_by: Vec<String>,
    pub approvals_needed: Option<u32>,
    /// How far a staged request got (`stage 1/2 (lead) done by bob; stage 2/2 (security): 0 of 2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<String>,
    pub pending_until: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// A grant approved ahead: when it starts (its `grant_started` notice goes then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    pub break_glass: bool,
    /// What a failed notice was, and why it failed (`notice_failed`).
    pub failed: Option<String>,
    /// The signed checkpoint, whole, so the receiver can check it with the audit key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::evidence::Checkpoint>,
    pub commands: Vec<String>,
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The facts of `event` for `trigger`: the event's own fields, and the request and grant as the
/// state holds them (approvals so far, the reason and ticket of a decided request).
pub fn facts(trigger: Trigger, event: &Event, state: &State, policy: &Policy) -> Facts {
    let mut f = Facts {
        trigger: Some(trigger),
        seq: event.seq,
        at: Some(event.at),
        actor: event.actor.clone(),
        task: event.change.task().map(str::to_string),
        person: event.change.subject().map(str::to_string),
        ..Facts::default()
    };
    let mut request_id = None;
    match &event.change {
        Change::RequestCreated { request, .. }
        | Change::RequestApproved { request, .. }
        | Change::RequestExpired { request, .. }
        | Change::RequestDenied { request, .. } => request_id = Some(*request),
        Change::GrantStarted { grant, request, starts_at, expires_at, approved_by, break_glass, .. } => {
            request_id = Some(*request);
            f.grant = Some(grant.to_string());
            (f.expires_at, f.approved_by, f.break_glass) = (Some(*expires_at), approved_by.clone(), *break_glass);
            f.duration_secs = u64::try_from((*expires_at - starts_at.unwrap_or(event.at)).num_seconds()).ok();
            f.starts_at = starts_at.filter(|at| *at > event.at);
        }
        Change::GrantExtended { grant, expires_at, approved_by, .. } => {
            f.grant = Some(grant.to_string());
            (f.expires_at, f.approved_by) = (Some(*expires_at), approved_by.clone());
            if let Some(g) = state.grants.get(grant) {
                request_id = Some(g.request);
                f.break_glass = g.break_glass;
                f.duration_secs = u64::try_from((*expires_at - g.granted_at).num_seconds()).ok();
            }
        }
        Change::GrantExpired { grant, .. } | Change::GrantRevoked { grant, .. } | Change::GrantRelinquished { grant, .. } => {
            f.grant = Some(grant.to_string());
            if let Some(g) = state.grants.get(grant) {
                request_id = Some(g.request);
                (f.expires_at, f.approved_by, f.break_glass) = (Some(g.expires_at), g.approved_by.clone(), g.break_glass);
            }
            if let Change::GrantRevoked { reason, .. } = &event.change {
                f.comment = Some(reason.clone());
            }
        }
        Change::NoticeFailed { notice, trigger, channel, recipient, error, .. } => {
            f.failed = Some(format!("{} via {channel} to {recipient} ({notice}): {error}", trigger.as_str()));
        }
        Change::Checkpoint { signed_seq, signed_hash, signed_at, key, signature } => {
            let c = crate::evidence::Checkpoint {
                seq: *signed_seq,
                hash: signed_hash.clone(),
                at: *signed_at,
                key: key.clone(),
                signature: signature.clone(),
            };
            f.checkpoint = Some(c);
        }
        _ => {}
    }
    if let Some(id) = request_id {
        f.request = Some(id.to_string());
        if let Some(r) = state.requests.get(&id) {
            (f.duration_secs, f.reason, f.ticket) = (Some(r.duration_secs), r.reason.clone(), r.ticket.clone());
            (f.approvals_needed, f.pending_until, f.break_glass) = (Some(r.approvals_needed), Some(r.pending_until), r.break_glass);
            if f.grant.is_none() {
                f.approved_by = r.approvals.iter().map(|a| a.by.clone()).collect();
                f.stages = policy.tasks.get(&r.task).and_then(|t| crate::rules::stage_progress(t, r));
            }
        }
    }
    if let Change::RequestCreated { duration_secs, reason, ticket, approvals_needed, pending_until, break_glass, .. } = &event.change {
        (f.duration_secs, f.reason, f.ticket) = (Some(*duration_secs), reason.clone(), ticket.clone());
        (f.approvals_needed, f.pending_until, f.break_glass) = (Some(*approvals_needed), Some(*pending_until), *break_glass);
    }
    match &event.change {
        Change::RequestApproved { comment, .. } => f.comment = comment.clone(),
        Change::RequestDenied { comment, .. } => f.comment = Some(comment.clone()),
        _ => {}
    }
    f.task_description = f.task.as_ref().and_then(|t| policy.tasks.get(t)).map(|t| t.description.clone()).filter(|d| !d.is_empty());
    f.commands = commands(trigger, &f);
    inert_facts(f)
}

/// Every text in the facts made inert, so a webhook or program that shows them shows no escape.
fn inert_facts(mut f: Facts) -> Facts {
    for s in [&mut f.actor].into_iter().chain(f.approved_by.iter_mut()) {
        *s = inert_line(s);
    }
    for s in
        [&mut f.task, &mut f.task_description, &mut f.person, &mut f.reason, &mut f.ticket, &mut f.comment, &mut f.failed, &mut f.stages]
            .into_iter()
            .flatten()
    {
        *s = inert_line(s);
    }
    f
}

fn commands(trigger: Trigger, f: &Facts) -> Vec<String> {
    let (r, g) = (f.request.as_deref().unwrap_or("?"), f.grant.as_deref().unwrap_or("?"));
    match trigger {
        Trigger::RequestCreated => vec![format!("zsa approve {r}"), format!("zsa deny {r} --comment \"why\""), format!("zsa show {r}")],
        Trigger::RequestApproved | Trigger::RequestDenied | Trigger::RequestExpired => vec![format!("zsa show {r}")],
        Trigger::BreakGlass => vec![format!("zsa show {g}"), format!("zsa review {g} --comment \"what was done\"")],
        Trigger::GrantStarted | Trigger::GrantExpiring | Trigger::GrantEnded => vec![format!("zsa show {g}")],
        Trigger::NoticeFailed => vec!["zsa notices --failed".to_string()],
        Trigger::Checkpoint => vec!["zsa audit verify".to_string()],
    }
}

/// The one-line subject. Every value is inert and on one line, so no CR or LF can reach a mail
/// header through it.
pub fn subject(f: &Facts) -> String {
    let v = |s: &Option<String>| inert_line(s.as_deref().unwrap_or("?"));
    let (who, task, actor) = (v(&f.person), v(&f.task), inert_line(&f.actor));
    let (r, g) = (v(&f.request), v(&f.grant));
    let dur = f.duration_secs.map(duration::format).unwrap_or_else(|| "?".into());
    let until = f.expires_at.map(when).unwrap_or_else(|| "?".into());
    let line = match f.trigger.unwrap_or(Trigger::NoticeFailed) {
        Trigger::RequestCreated => format!("{r}: {who} asks for {task} ({dur})"),
        Trigger::RequestApproved => {
            format!("{r}: {actor} approved {who}'s request for {task} ({} of {})", f.approved_by.len(), f.approvals_needed.unwrap_or(0))
        }
        Trigger::RequestDenied => format!("{r}: {actor} denied {who}'s request for {task}"),
        Trigger::RequestExpired => format!("{r}: {who}'s request for {task} lapsed unanswered"),
        Trigger::GrantStarted => format!("{g}: {who} holds {task} until {until}"),
        Trigger::GrantExpiring => format!("{g}: {who}'s access to {task} ends at {until}"),
        Trigger::GrantEnded => format!("{g}: {who}'s access to {task} ended"),
        Trigger::BreakGlass => format!("BREAK-GLASS {g}: {who} took {task} without approval ({dur})"),
        Trigger::NoticeFailed => format!("zsa could not deliver a notice: {}", v(&f.failed)),
        Trigger::Checkpoint => match &f.checkpoint {
            Some(c) => format!("zsa audit log checkpoint: event {} is {}", c.seq, inert_line(&c.hash)),
            None => "zsa audit log checkpoint".to_string(),
        },
    };
    line.replace(['\r', '\n'], " ")
}

/// The facts worth a line each, as (label, value); values not yet inert.
fn lines(f: &Facts) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut add = |label, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push((label, v));
        }
    };
    add("Who", f.person.clone());
    add("Task", f.task.clone().map(|t| f.task_description.as_ref().map_or(t.clone(), |d| format!("{t} ({d})"))));
    add("For", f.duration_secs.map(duration::format));
    add("Why", f.reason.clone());
    add("Ticket", f.ticket.clone());
    add("Comment", f.comment.clone());
    if let Some(c) = &f.checkpoint {
        add("Signed", Some(format!("event {} has hash {}, at {}", c.seq, c.hash, c.at.to_rfc3339())));
        add("Key", Some(c.key.clone()));
        add("Signature", Some(c.signature.clone()));
    }
    if let Some(needed) = f.approvals_needed.filter(|n| *n > 0 && f.grant.is_none()) {
        let names = if f.approved_by.is_empty() { "none yet".to_string() } else { f.approved_by.join(", ") };
        add("Approvals", Some(format!("{} of {needed} ({names})", f.approved_by.len())));
        add("Stages", f.stages.clone());
    }
    if f.trigger == Some(Trigger::RequestCreated) || f.trigger == Some(Trigger::RequestApproved) {
        add("Lapses", f.pending_until.map(when));
    }
    if f.grant.is_some() {
        add("Approved by", Some(f.approved_by.join(", ")));
        add("Until", f.expires_at.map(when));
    }
    if f.break_glass {
        add("Break-glass", Some("yes: active at once, to be reviewed by an approver".into()));
    }
    add("Failed", f.failed.clone());
    add("By", Some(f.actor.clone()).filter(|_| f.trigger != Some(Trigger::RequestCreated)));
    out
}

fn plain(f: &Facts, subject: &str) -> String {
    let mut text = format!("{subject}\n\n");
    for (label, value) in lines(f) {
        text.push_str(&format!("{label}: {}\n", inert_line(&value)));
    }
    text.push_str("\nTo act:\n");
    for c in &f.commands {
        text.push_str(&format!("  {c}\n"));
    }
    text
}

fn html(f: &Facts, subject: &str) -> String {
    let esc = |s: &str| html_escape::encode_text(&inert_line(s)).into_owned();
    let mut out = format!("<p><strong>{}</strong></p>\n<table>\n", esc(subject));
    for (label, value) in lines(f) {
        out.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>\n", esc(label), esc(&value)));
    }
    out.push_str("</table>\n<p>To act:</p>\n<pre>");
    out.push_str(&f.commands.iter().map(|c| esc(c)).collect::<Vec<_>>().join("\n"));
    out.push_str("</pre>\n");
    out
}

/// The notice for one planned delivery of `event`.
pub fn render(planned: &Planned, event: &Event, state: &State, policy: &Policy) -> Notice {
    let f = facts(planned.trigger, event, state, policy);
    words(planned.key.clone(), planned.trigger, event.seq, event.at, planned.to.clone(), &f)
}

/// A notice whose words are made from its facts (at commit, or again from the outbox).
fn words(key: String, trigger: Trigger, seq: u64, at: DateTime<Utc>, to: super::Recipient, f: &Facts) -> Notice {
    let subject = subject(f);
    Notice {
        key,
        trigger,
        seq,
        at,
        to,
        text: plain(f, &subject),
        html: html(f, &subject),
        facts: serde_json::to_value(f).unwrap_or_default(),
        subject,
    }
}

/// What the outbox keeps of a notice: all but its words, which are pure functions of the facts
/// and are made again when the delivery is read. Each delivery written in the decision's
/// transaction is then about a third of the bytes (see docs/BENCHMARKS.md, notices).
#[derive(Serialize, Deserialize)]
pub struct Stored {
    key: String,
    trigger: Trigger,
    seq: u64,
    at: DateTime<Utc>,
    to: super::Recipient,
    facts: Facts,
}

impl Stored {
    pub fn of(n: &Notice) -> Stored {
        let facts = serde_json::from_value(n.facts.clone()).unwrap_or_default();
        Stored { key: n.key.clone(), trigger: n.trigger, seq: n.seq, at: n.at, to: n.to.clone(), facts }
    }

    /// The whole notice again. A row written whole (before the outbox kept only facts) reads
    /// the same: its extra fields are ignored and its words made again, identically.
    pub fn notice(self) -> Notice {
        words(self.key, self.trigger, self.seq, self.at, self.to, &self.facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RequestId;
    use crate::notify::fixtures::{History, policy};
    use crate::notify::routing::plan;

    /// The first notice `event` causes for `address`.
    fn notice_for(h: &History, event: &Event, address: &str) -> Notice {
        let p = policy();
        let planned = plan(event, &h.state, &p).into_iter().find(|d| d.to.address == address).expect("a delivery");
        render(&planned, event, &h.state, &p)
    }

    fn shown(n: &Notice) -> String {
        format!(
            "subject: {}\n--- text\n{}--- html\n{}--- facts\n{}",
            n.subject,
            n.text,
            n.html,
            serde_json::to_string_pretty(&n.facts).unwrap()
        )
    }

    #[test]
    fn a_new_request_tells_an_approver_everything_and_how_to_act() {
        let mut h = History::default();
        let created = h.carol_asks("mail flow to the archive is broken");
        let n = notice_for(&h, &created, "bob@example.org");
        assert_eq!(n.subject, "R1: carol asks for exchange.journal-rule (1h)");
        assert_eq!((n.key.as_str(), n.seq), ("1:request_created:mail:bob@example.org", 1));
        insta::assert_snapshot!(shown(&n));
    }

    #[test]
    fn a_denial_tells_the_requester_who_and_why() {
        let mut h = History::default();
        h.carol_asks("mail flow to the archive is broken");
        let request = RequestId(1);
        h.add(
            "alice",
            1,
            Change::RequestApproved {
                request,
                task: "exchange.journal-rule".into(),
                requester: "carol".into(),
                comment: None,
                signature: None,
                stage: None,
            },
        );
        let denied = h.add(
            "bob",
            2,
            Change::RequestDenied {
                request,
                task: "exchange.journal-rule".into(),
                requester: "carol".into(),
                comment: "not during the freeze".into(),
            },
        );
        let n = notice_for(&h, &denied, "carol@example.org");
        assert_eq!(n.subject, "R1: bob denied carol's request for exchange.journal-rule");
        insta::assert_snapshot!(shown(&n));
    }

    /// A reason written to attack each place a notice goes: a mail header (CR/LF), a terminal
    /// (ANSI), an HTML body (<script>) and a chat (@channel).
    #[test]
    fn a_hostile_reason_is_inert_and_escaped_everywhere() {
        let mut h = History::default();
        let created =
            h.carol_asks("urgent\r\nBcc: all@example.org\n\u{1b}[2J\u{1b}]0;pwned\u{7}<script>alert(1)</script> @channel <!here>");
        let n = notice_for(&h, &created, "alice@example.org");
        let hidden = |s: &str| s.chars().any(|c| c != '\n' && crate::model::text::hidden(c).is_some());
        assert!(!n.subject.contains(['\r', '\n']) && !hidden(&n.subject), "{:?}", n.subject);
        assert!(!hidden(&n.text) && !hidden(&n.html), "{n:?}");
        // The reason is one line in the text: no line of the body starts with "Bcc:".
        assert!(n.text.lines().all(|l| !l.starts_with("Bcc:")), "{}", n.text);
        assert!(n.text.contains("Why: urgent\\u{d} Bcc: all@example.org \\u{1b}[2J\\u{1b}]0;pwned\\u{7}<script>"), "{}", n.text);
        assert!(!n.html.contains("<script>") && n.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", n.html);
        assert!(n.html.contains("&lt;!here&gt;"), "{}", n.html);
        let reason = n.facts["reason"].as_str().unwrap();
        assert!(!hidden(reason) && !reason.contains('\n'), "{reason:?}");
        // @channel stays words here; the chat channel neutralises mentions in its own format.
        assert!(n.text.contains("@channel"));
    }

    #[test]
    fn the_outbox_keeps_the_facts_and_makes_the_same_words_again() {
        let mut h = History::default();
        let created = h.carol_asks("mail flow to the archive is <b>broken</b>");
        let notice = notice_for(&h, &created, "bob@example.org");
        let stored = serde_json::to_string(&Stored::of(&notice)).unwrap();
        assert!(!stored.contains("\"html\"") && !stored.contains("\"text\""), "{stored}");
        let whole_len = serde_json::to_string(&notice).unwrap().len();
        assert!(stored.len() * 2 < whole_len, "{} bytes", stored.len());
        assert_eq!(serde_json::from_str::<Stored>(&stored).unwrap().notice(), notice);
        // A row written whole, before the outbox kept only facts, reads the same.
        let whole = serde_json::to_string(&notice).unwrap();
        assert_eq!(serde_json::from_str::<Stored>(&whole).unwrap().notice(), notice);
    }

    #[test]
    fn every_trigger_has_a_one_line_subject_and_a_command() {
        let mut h = History::default();
        let started = h.grant(1, "db.shell", "erin", true);
        let p = policy();
        for d in plan(&started, &h.state, &p) {
            let n = render(&d, &started, &h.state, &p);
            assert!(!n.subject.contains('\n') && n.text.contains("  zsa "), "{n:?}");
        }
        let n = notice_for(&h, &started, "dave@example.org");
        assert_eq!(n.subject, "BREAK-GLASS G1: erin took db.shell without approval (59m)", "its length from its start to its end");
        assert!(n.text.contains("zsa review G1"), "{}", n.text);
    }
}
