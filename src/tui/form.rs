//! The new-request form: which task, for how long, why, which ticket. It is checked against the
//! chosen task's policy on every keystroke, so the requester sees what the daemon would refuse
//! before sending it. The daemon still decides; this only saves a round trip.

use regex::Regex;

use crate::model::wire::{MAX_REASON_CHARS, MAX_TICKET_CHARS, NewRequest, TaskView};
use crate::model::{duration, text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Task,
    Duration,
    Reason,
    Ticket,
}

impl Field {
    pub const ALL: [Field; 4] = [Field::Task, Field::Duration, Field::Reason, Field::Ticket];

    pub fn label(self) -> &'static str {
        match self {
            Field::Task => "Task",
            Field::Duration => "Duration",
            Field::Reason => "Reason",
            Field::Ticket => "Ticket",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestForm {
    /// Index into the tasks the user may ask for.
    pub task: usize,
    pub field: Field,
    pub duration: String,
    pub reason: String,
    pub ticket: String,
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
            field: Field::Task,
            duration: String::new(),
            reason: String::new(),
            ticket: String::new(),
            tried: false,
        };
        f.reset_duration(tasks);
        f
    }

    pub fn task<'a>(&self, tasks: &'a [TaskView]) -> Option<&'a TaskView> {
        requestable(tasks).get(self.task).copied()
    }

    fn reset_duration(&mut self, tasks: &[TaskView]) {
        if let Some(t) = self.task(tasks) {
            self.duration = duration::format(t.default_duration_secs);
        }
    }

    pub fn next_field(&mut self, forward: bool) {
        let i = Field::ALL.iter().position(|f| *f == self.field).unwrap_or(0);
        let n = Field::ALL.len();
        self.field = Field::ALL[if forward { (i + 1) % n } else { (i + n - 1) % n }];
    }

    /// Left/right on the task field picks another task.
    pub fn cycle_task(&mut self, tasks: &[TaskView], forward: bool) {
        let n = requestable(tasks).len();
        if n == 0 {
            return;
        }
        self.task = if forward { (self.task + 1) % n } else { (self.task + n - 1) % n };
        self.reset_duration(tasks);
    }

    pub fn type_char(&mut self, c: char) {
        match self.field {
            Field::Task => {}
            Field::Duration => self.duration.push(c),
            Field::Reason => self.reason.push(c),
            Field::Ticket => self.ticket.push(c),
        }
    }

    pub fn backspace(&mut self) {
        match self.field {
            Field::Task => {}
            Field::Duration => drop(self.duration.pop()),
            Field::Reason => drop(self.reason.pop()),
            Field::Ticket => drop(self.ticket.pop()),
        }
    }

    /// What the daemon would refuse, field by field.
    pub fn problems(&self, tasks: &[TaskView]) -> Vec<(Field, String)> {
        let mut out = Vec::new();
        let Some(task) = self.task(tasks) else {
            out.push((Field::Task, "you may ask for no task".to_string()));
            return out;
        };
        match duration::parse(&self.duration) {
            Err(e) => out.push((Field::Duration, e)),
            Ok(secs) if secs > task.max_duration_secs => {
                out.push((Field::Duration, format!("at most {} for this task", duration::format(task.max_duration_secs))))
            }
            Ok(_) => {}
        }
        let checks = [
            (Field::Reason, self.reason.trim(), task.require_reason, task.reason_pattern.as_deref(), MAX_REASON_CHARS),
            (Field::Ticket, self.ticket.trim(), task.require_ticket, task.ticket_pattern.as_deref(), MAX_TICKET_CHARS),
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

    pub fn to_request(&self, tasks: &[TaskView]) -> Option<NewRequest> {
        let task = self.task(tasks)?;
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Some(NewRequest {
            task: task.name.clone(),
            duration_secs: duration::parse(&self.duration).ok(),
            reason: some(&self.reason),
            ticket: some(&self.ticket),
            params: Default::default(),
        })
    }
}
