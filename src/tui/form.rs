//! The new-request form: which task, for how long, from when, why, which ticket. It is checked against the
//! chosen task's policy on every keystroke, so the requester sees what the daemon would refuse
//! before sending it. The daemon still decides; this only saves a round trip.

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent};
use regex::Regex;

use super::textfield::TextField;
use crate::model::wire::{MAX_REASON_CHARS, MAX_TICKET_CHARS, NewRequest, TaskView};
use crate::model::{duration, start_time, text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Task,
    Duration,
    /// Empty: now. Else when a grant asked ahead starts (`+3h`, a local time, one with offset).
    Start,
    Reason,
    Ticket,
}

impl Field {
    pub const ALL: [Field; 5] = [Field::Task, Field::Duration, Field::Start, Field::Reason, Field::Ticket];

    pub fn label(self) -> &'static str {
        match self {
            Field::Task => "Task",
            Field::Duration => "Duration",
            Field::Start => "Starts",
            Field::Reason => "Reason",
            Field::Ticket => "Ticket",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestForm {
    /// Index into the tasks that match the search.
    pub task: usize,
    /// Typed on the task field: narrows the tasks offered to those whose name or description
    /// contains it.
    pub search: TextField,
    pub field: Field,
    pub duration: TextField,
    pub start: TextField,
    pub reason: TextField,
    pub ticket: TextField,
    /// Set when the user tried to submit with problems, so they are shown.
    pub tried: bool,
}

/// The tasks a form offers: those the user may ask for.
pub fn requestable(tasks: &[TaskView]) -> Vec<&TaskView> {
    tasks.iter().filter(|t| t.may_request).collect()
}

impl RequestForm {
    pub fn new(tasks: &[TaskView]) -> Self {
        let mut f = RequestForm {
            task: 0,
            search: TextField::default(),
            field: Field::Task,
            duration: TextField::default(),
            start: TextField::default(),
            reason: TextField::default(),
            ticket: TextField::default(),
            tried: false,
        };
        f.reset_duration(tasks);
        f
    }

    /// The tasks offered under the current search.
    pub fn matching<'a>(&self, tasks: &'a [TaskView]) -> Vec<&'a TaskView> {
        let wanted = self.search.value().to_lowercase();
        requestable(tasks)
            .into_iter()
            .filter(|t| wanted.is_empty() || t.name.to_lowercase().contains(&wanted) || t.description.to_lowercase().contains(&wanted))
            .collect()
    }

    pub fn task<'a>(&self, tasks: &'a [TaskView]) -> Option<&'a TaskView> {
        self.matching(tasks).get(self.task).copied()
    }

    fn reset_duration(&mut self, tasks: &[TaskView]) {
        if let Some(t) = self.task(tasks) {
            self.duration = TextField::new(duration::format(t.default_duration_secs));
        }
    }

    pub fn next_field(&mut self, forward: bool) {
        let i = Field::ALL.iter().position(|f| *f == self.field).unwrap_or(0);
        let n = Field::ALL.len();
        self.field = Field::ALL[if forward { (i + 1) % n } else { (i + n - 1) % n }];
    }

    /// Left/right on the task field picks another of the matching tasks.
    pub fn cycle_task(&mut self, tasks: &[TaskView], forward: bool) {
        let n = self.matching(tasks).len();
        if n == 0 {
            return;
        }
        self.task = if forward { (self.task + 1) % n } else { (self.task + n - 1) % n };
        self.reset_duration(tasks);
    }

    /// An editing key on the focused field. On the task field, Left/Right pick a task and the
    /// rest edit the search; the chosen task stays chosen while it still matches.
    pub fn edit(&mut self, tasks: &[TaskView], key: KeyEvent) {
        match self.field {
            Field::Task => match key.code {
                KeyCode::Left => self.cycle_task(tasks, false),
                KeyCode::Right => self.cycle_task(tasks, true),
                _ => {
                    let chosen = self.task(tasks).map(|t| t.name.clone());
                    if !self.search.key(key) {
                        return;
                    }
                    let matching = self.matching(tasks);
                    self.task = chosen.as_ref().and_then(|name| matching.iter().position(|t| &t.name == name)).unwrap_or(0);
                    if self.task(tasks).map(|t| &t.name) != chosen.as_ref() {
                        self.reset_duration(tasks);
                    }
                }
            },
            Field::Duration => drop(self.duration.key(key)),
            Field::Start => drop(self.start.key(key)),
            Field::Reason => drop(self.reason.key(key)),
            Field::Ticket => drop(self.ticket.key(key)),
        }
    }

    /// When the grant would start: None for now (the field left empty).
    pub fn starts_at(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
        let text = self.start.value().trim();
        if text.is_empty() {
            return Ok(None);
        }
        let at = start_time::parse(text, now)?;
        if at <= now {
            return Err(format!("{} is not ahead; leave it empty to start now", at.to_rfc3339()));
        }
        Ok(Some(at))
    }

    /// What the daemon would refuse, field by field, at the daemon's `now`.
    pub fn problems(&self, tasks: &[TaskView], now: DateTime<Utc>) -> Vec<(Field, String)> {
        let mut out = Vec::new();
        let Some(task) = self.task(tasks) else {
            let why = if self.search.is_empty() {
                "you may ask for no task".to_string()
            } else {
                format!("no task you may ask for matches {:?}; Backspace widens the search", text::inert_line(self.search.value()))
            };
            out.push((Field::Task, why));
            return out;
        };
        match duration::parse(self.duration.value()) {
            Err(e) => out.push((Field::Duration, e)),
            Ok(secs) if secs > task.max_duration_secs => {
                out.push((Field::Duration, format!("at most {} for this task", duration::format(task.max_duration_secs))))
            }
            Ok(_) => {}
        }
        if let Err(e) = self.starts_at(now) {
            out.push((Field::Start, e));
        }
        let checks = [
            (Field::Reason, self.reason.value().trim(), task.require_reason, task.reason_pattern.as_deref(), MAX_REASON_CHARS),
            (Field::Ticket, self.ticket.value().trim(), task.require_ticket, task.ticket_pattern.as_deref(), MAX_TICKET_CHARS),
        ];
        for (field, value, required, pattern, max) in checks {
            let name = field.label().to_lowercase();
            if value.is_empty() {
                if required {
                    out.push((field, format!("this task needs a {name}")));
                }
                continue;
            }
            if let Err(e) = text::check(&name, value, max, false) {
                out.push((field, e));
            } else if let Some(p) = pattern {
                let matches = Regex::new(&format!("^(?:{p})$")).map(|r| r.is_match(value)).unwrap_or(true);
                if !matches {
                    out.push((field, format!("must match {p}")));
                }
            }
        }
        out
    }

    pub fn to_request(&self, tasks: &[TaskView], now: DateTime<Utc>) -> Option<NewRequest> {
        let task = self.task(tasks)?;
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Some(NewRequest {
            task: task.name.clone(),
            duration_secs: duration::parse(self.duration.value()).ok(),
            reason: some(self.reason.value()),
            ticket: some(self.ticket.value()),
            params: Default::default(),
            starts_at: self.starts_at(now).ok().flatten(),
        })
    }
}
