//! The policy file: who is in which group, which tasks exist, who may ask for them, who approves.
//! Parsing refuses unknown keys, unknown groups, duplicates and impossible values, and every
//! error names its place in the file (`diagnostics` shows it with a caret). A loaded `Policy` is
//! immutable; a reload builds a new one.

mod diagnostics;
mod notify;
mod people;
pub mod windows;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::model::duration;
use crate::model::text;
use crate::model::wire::TaskView;

pub use diagnostics::Problem;
pub use notify::{Audience, NotifyRule, check_email};
pub use people::{Person, fingerprint};

/// Why a policy could not be loaded: every problem found, each with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    /// The text that was checked, so `render` can show each problem in place (None: unread).
    pub source: Option<String>,
    pub problems: Vec<Problem>,
}

impl PolicyError {
    fn whole(file: &str, message: String) -> PolicyError {
        PolicyError { file: file.to_string(), source: None, problems: vec![Problem::whole(&message)] }
    }
}

/// One problem a line, `file:line: message`, for logs and answers that cannot show a snippet.
impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = text::inert(&self.file);
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.line {
                0 => write!(f, "{file}: {}", problem.message)?,
                line => write!(f, "{file}:{line}: {}", problem.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalMode {
    Manual,
    Auto,
}

/// Whether a live grant of a task may be made longer, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtendMode {
    Never,
    /// At once, within `max_total`.
    Auto,
    /// As a request of its own, approved like the task's requests.
    Approval,
}

impl ExtendMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Auto => "auto",
            Self::Approval => "approval",
        }
    }
}

/// One task as the rules see it.
#[derive(Clone, Debug)]
pub struct Task {
    pub name: String,
    pub description: String,
    pub requesters: Vec<String>,
    pub approval: ApprovalMode,
    pub approvers: Vec<String>,
    pub approvals: u32,
    pub max_duration: u64,
    pub default_duration: u64,
    /// Whether and how a live grant may be extended.
    pub extend: ExtendMode,
    /// The longest a grant may live, extensions included (at least `max_duration`).
    pub max_total: u64,
    /// When in the week it may be used, if not always.
    pub windows: Option<windows::Windows>,
    /// Approved in order, each by its own approvers (empty: one stage, the task's approvers).
    pub stages: Vec<Stage>,
    pub require_reason: bool,
    pub require_ticket: bool,
    pub ticket_pattern: Option<Pattern>,
    pub reason_pattern: Option<Pattern>,
    pub break_glass: bool,
    /// How approvers must have authenticated for their approval to count: `peer` (their own Unix
    /// login) and/or `token`. `None` (the default) accepts any authenticated approver.
    pub approve_via: Option<Vec<String>>,
    /// Approvals count only signed with a key the policy lists for the approver (`[people.NAME]
    /// ssh_keys`): a stolen token alone cannot approve.
    pub signed_approvals: bool,
    /// What the daemon runs for the grant's holder, if anything.
    pub run: Option<RunSpec>,
}

/// A group membership bounded in time: it starts at `from` (None: it holds already) and ends
/// at `until` (None: it does not end by itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub group: String,
    pub user: String,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Membership {
    pub fn holds_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.from.is_none_or(|f| f <= now) && self.until.is_none_or(|u| now < u)
    }

    pub fn ended_by(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.until.is_some_and(|u| u <= now)
    }
}

/// `name@DATE` or `name@RFC3339`: the name and when the membership ends; None for a plain name
/// (which may itself hold an '@').
fn membership_end(member: &str) -> Option<(&str, chrono::DateTime<chrono::Utc>)> {
    let (user, when) = member.rsplit_once('@')?;
    end_of(when).map(|t| (user, t))
}

/// An end written as a date (to the end of that day, UTC) or an RFC 3339 time.
fn end_of(when: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    day_or_time(when, |day| day.succ_opt())
}

/// A start written as a date (from the start of that day, UTC) or an RFC 3339 time.
fn start_of(when: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    day_or_time(when, Some)
}

/// A date, taken as midnight UTC of the day `pick` chooses for it, or an RFC 3339 time.
fn day_or_time(when: &str, pick: fn(chrono::NaiveDate) -> Option<chrono::NaiveDate>) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(when, "%Y-%m-%d") {
        return Some(pick(day)?.and_hms_opt(0, 0, 0)?.and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(when).ok().map(|t| t.with_timezone(&chrono::Utc))
}

const WHEN_HELP: &str = "write a date (2026-12-31) or a time with its offset (2026-12-31T18:00:00Z)";

/// One member of a group as written: `"carol"`, `"carol@2026-12-31"`, or the table form
/// `{ user = "carol", from = "2026-12-01", until = "2026-12-31" }`. Each problem is reported at
/// the member with what to write instead; None when the member cannot be read.
type DatedMember = (String, Option<chrono::DateTime<chrono::Utc>>, Option<chrono::DateTime<chrono::Utc>>);

fn group_member(m: &Spanned<toml::Value>, group: &str, p: &mut Problems) -> Option<DatedMember> {
    let here = format!("a member of group '{group}'");
    match m.get_ref() {
        // `carol@2026-12-31`: a member until the end of that day (UTC), or until an instant
        // given whole (`carol@2026-12-31T18:00:00+01:00`).
        toml::Value::String(s) => Some(match membership_end(s) {
            Some((user, until)) => (user.to_string(), None, Some(until)),
            None => (s.clone(), None, None),
        }),
        toml::Value::Table(t) => {
            let mut fine = true;
            for key in t.keys().filter(|k| !["user", "from", "until"].contains(&k.as_str())) {
                p.at_with_help(
                    m.span(),
                    format!("{here}: unknown key '{}'", text::inert(key)),
                    "a dated member is { user = \"carol\", from = \"2026-12-01\", until = \"2026-12-31\" }",
                );
                fine = false;
            }
            let Some(user) = t.get("user").and_then(toml::Value::as_str) else {
                p.at_with_help(m.span(), format!("{here} is a table without its user"), "add user = \"NAME\"");
                return None;
            };
            // Quoted or not (`from = 2026-12-01` is a TOML date): a date, or a time with its offset.
            let mut when = |key: &str, read: fn(&str) -> Option<chrono::DateTime<chrono::Utc>>| {
                let v = t.get(key)?;
                let written = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Datetime(d) => d.to_string(),
                    _ => String::new(),
                };
                let read = read(&written);
                if read.is_none() {
                    let what = match v {
                        toml::Value::String(s) => format!("'{}' is not a date or a time with its offset", text::inert(s)),
                        toml::Value::Datetime(_) => format!("{written} has no offset; say which zone it is in"),
                        other => {
                            let kind = other.type_str();
                            let a = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
                            format!("is {a} {kind}, not a date or a time")
                        }
                    };
                    p.at_with_help(m.span(), format!("{here}: {key} {what}"), WHEN_HELP);
                    fine = false;
                }
                read
            };
            let (from, until) = (when("from", start_of), when("until", end_of));
            if let (Some(f), Some(u)) = (from, until)
                && f >= u
            {
                p.at(m.span(), format!("{here}: '{}' would be a member from {f} until {u}, which is no time at all", text::inert(user)));
                fine = false;
            }
            fine.then(|| (user.to_string(), from, until))
        }
        _ => {
            p.at_with_help(
                m.span(),
                format!("{here} is neither a name nor a table"),
                "write \"carol\", \"carol@2026-12-31\" or { user = \"carol\", until = \"2026-12-31\" }",
            );
            None
        }
    }
}

/// One stage of approval: who approves at it, and how many must.
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: String,
    pub approvers: Vec<String>,
    pub approvals: u32,
}

/// The longest parameter value accepted.
pub const MAX_PARAM_CHARS: usize = 256;

/// What a parameter accepts.
#[derive(Clone, Debug)]
pub enum ParamRule {
    OneOf(Vec<String>),
    Pattern(Pattern),
    Range(i64, i64),
}

/// One parameter of a task's command: what it accepts, and whether a value may start with '-'.
#[derive(Clone, Debug)]
pub struct Param {
    pub rule: ParamRule,
    /// Without it a value starting with '-' is refused: the program would read it as an option
    /// (`/bin/echo -e`, `rm -rf`), which no pattern author means to allow by accident.
    pub allow_leading_dash: bool,
}

impl Param {
    pub fn describe(&self) -> String {
        if self.allow_leading_dash { format!("{} (may start with '-')", self.rule.describe()) } else { self.rule.describe() }
    }
}

impl ParamRule {
    pub fn describe(&self) -> String {
        match self {
            Self::OneOf(v) => format!("one of {}", v.join(", ")),
            Self::Pattern(p) => format!("matching {}", p.source),
            Self::Range(a, b) => format!("an integer from {a} to {b}"),
        }
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            Self::OneOf(v) => v.iter().any(|x| x == value),
            Self::Pattern(p) => p.matches(value),
            Self::Range(a, b) => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                !digits.is_empty()
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && value.parse::<i64>().is_ok_and(|n| (*a..=*b).contains(&n))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExpiry {
    /// Stop the command when the grant ends (the default).
    Stop,
    /// Let a started command finish.
    Finish,
}

/// A task's command: an argument vector with `{param}` placeholders, never a shell line.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub run_as: Option<String>,
    pub timeout: u64,
    pub on_expiry: OnExpiry,
    pub params: BTreeMap<String, Param>,
    /// How many runs of the task may go at once, whoever started them (default 1).
    pub max_concurrent_runs: u32,
}

/// The `{name}` placeholders in one argument, in order.
fn placeholders(arg: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("'{arg}' has a '}}' without a '{{'"));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("'{arg}' has a '{{' without a '}}'"))?;
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    Ok(out)
}

impl RunSpec {
    /// Checks every parameter and builds the argument vector. Unknown, missing and extra
    /// parameters are refused, and so is any value the parameter's rule does not accept.
    pub fn build(&self, task: &str, params: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
        if let Some(extra) = params.keys().find(|k| !self.params.contains_key(*k)) {
            let known: Vec<&str> = self.params.keys().map(String::as_str).collect();
            return Err(format!(
                "'{task}' has no parameter '{}'; its parameters are: {}",
                text::inert(extra),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ));
        }
        for (name, param) in &self.params {
            let Some(value) = params.get(name) else {
                return Err(format!("'{task}' needs --param {name}=VALUE ({})", param.describe()));
            };
            let rule = &param.rule;
            let count = value.chars().count();
            if count == 0 || count > MAX_PARAM_CHARS {
                return Err(format!("parameter '{name}' must be 1 to {MAX_PARAM_CHARS} characters long, not {count}"));
            }
            if let Some((c, kind)) = value.chars().find_map(|c| text::hidden(c).map(|k| (c, k))) {
                return Err(format!("parameter '{name}' contains the {kind} U+{:04X}; it is refused", c as u32));
            }
            if value.starts_with('-') && !param.allow_leading_dash {
                return Err(format!(
                    "parameter '{name}' may not start with '-' ('{}'): the program would take it as an option; \
                     a policy allows that only with allow_leading_dash = true on the parameter",
                    text::inert(value)
                ));
            }
            if !rule.accepts(value) {
                return Err(format!("parameter '{name}' may not be '{}': it must be {}", text::inert(value), rule.describe()));
            }
        }
        Ok(self
            .argv
            .iter()
            .map(|arg| {
                let mut out = arg.clone();
                for (name, value) in params {
                    out = out.replace(&format!("{{{name}}}"), value);
                }
                out
            })
            .collect())
    }
}

/// A regex that must match a whole value, kept with the text the policy wrote.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub source: String,
    regex: Regex,
}

impl Pattern {
    fn new(source: &str) -> Result<Self, String> {
        Regex::new(&format!("^(?:{source})$"))
            .map(|regex| Pattern { source: source.to_string(), regex })
            .map_err(|e| format!("'{source}' is not a valid regular expression: {e}"))
    }

    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub pending_ttl: u64,
    /// How long (seconds) a notice is retried before it ends as `notice_failed`
    /// (`[settings] notice_give_up`, one hour unless set).
    pub notice_give_up: u64,
    /// How long (seconds) a token lives when its issuer names no `--ttl` (`[settings] token_ttl`,
    /// 90 days unless set); None: tokens never expire unless asked.
    pub token_ttl: Option<u64>,
    /// The longest (seconds) any token may live (`[settings] token_max_ttl`, a year unless set);
    /// None (`"never"`): no limit, and `--ttl never` is allowed.
    pub token_max_ttl: Option<u64>,
    /// A checkpoint is signed once this many events were written since the last
    /// (`[settings] checkpoint_events`, 1000 unless set) ...
    pub checkpoint_events: u64,
    /// ... or once this long (seconds) has passed since it, if anything was written
    /// (`[settings] checkpoint_interval`, 5 minutes unless set).
    pub checkpoint_interval: u64,
    /// How far ahead a request may ask its grant to start (`--at`).
    pub schedule_ahead: u64,
    /// Group memberships that start or end at a date (`carol@2026-12-31`, `{ user, from,
    /// until }`, `[people.NAME] eligible_from/eligible_until`); `as_of` applies them.
    pub memberships: Vec<Membership>,
    /// When the next of them starts or ends (the policy in force changes then): kept, since the
    /// engine asks on every read.
    next_membership_change: Option<chrono::DateTime<chrono::Utc>>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
    pub admin_groups: Vec<String>,
    /// `[roles] metrics`: who may read `/metrics` (None: admins and auditors).
    pub metrics_groups: Option<Vec<String>>,
    pub auditor_groups: Vec<String>,
    pub tasks: BTreeMap<String, Task>,
    /// How notices leave (`[channels.NAME]`), where people are reached (`[people.NAME]`), and
    /// which events go to whom (`[[notify]]`): see `notify`.
    pub channels: BTreeMap<String, crate::notify::channels::ChannelConfig>,
    pub people: BTreeMap<String, Person>,
    pub notify: Vec<NotifyRule>,
    /// SHA-256 of the file's bytes, recorded in the audit log at every load.
    pub sha256: String,
    pub path: String,
}

// ---- raw, as written in the file ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    roles: Option<Spanned<RawRoles>>,
    #[serde(default)]
    tasks: Vec<Spanned<RawTask>>,
    #[serde(default)]
    channels: BTreeMap<String, Spanned<crate::notify::channels::ChannelConfig>>,
    #[serde(default)]
    people: BTreeMap<String, Spanned<people::RawPerson>>,
    #[serde(default)]
    notify: Vec<Spanned<notify::RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    pending_ttl: Option<Spanned<String>>,
    notice_give_up: Option<Spanned<String>>,
    token_ttl: Option<Spanned<String>>,
    token_max_ttl: Option<Spanned<String>>,
    checkpoint_events: Option<Spanned<i64>>,
    checkpoint_interval: Option<Spanned<String>>,
    schedule_ahead: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    #[serde(default)]
    admins: Vec<Spanned<String>>,
    #[serde(default)]
    auditors: Vec<Spanned<String>>,
    /// Who may read `/metrics`; left out: admins and auditors.
    #[serde(default)]
    metrics: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    requesters: Spanned<Vec<Spanned<String>>>,
    approval: Spanned<String>,
    #[serde(default)]
    approvers: Vec<Spanned<String>>,
    approvals: Option<Spanned<i64>>,
    max_duration: Spanned<String>,
    default_duration: Option<Spanned<String>>,
    extend: Option<Spanned<String>>,
    max_total: Option<Spanned<String>>,
    windows: Option<Spanned<Vec<String>>>,
    stages: Option<Spanned<Vec<RawStage>>>,
    timezone: Option<Spanned<String>>,
    outside_window: Option<Spanned<String>>,
    cut_at_window_end: Option<Spanned<bool>>,
    #[serde(default)]
    require_reason: bool,
    #[serde(default)]
    require_ticket: bool,
    ticket_pattern: Option<Spanned<String>>,
    reason_pattern: Option<Spanned<String>>,
    #[serde(default)]
    break_glass: bool,
    approve_via: Option<Spanned<Vec<Spanned<String>>>>,
    signed_approvals: Option<Spanned<bool>>,
    run: Option<Spanned<Vec<String>>>,
    run_as: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    on_expiry: Option<Spanned<String>>,
    max_concurrent_runs: Option<Spanned<i64>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<RawParam>>,
}

/// One `[[tasks.stages]]`: its own approvers and how many of them must say yes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Option<String>,
    approvers: Vec<Spanned<String>>,
    approvals: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    one_of: Option<Vec<String>>,
    pattern: Option<String>,
    range: Option<[i64; 2]>,
    #[serde(default)]
    allow_leading_dash: bool,
}

/// Collects problems with their places while validating.
struct Problems<'a> {
    source: &'a str,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.list.push(Problem::at(self.source, span, &message.into(), None));
    }

    /// A problem whose message does not say what to do: `help` does.
    fn at_with_help(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.list.push(Problem::at(self.source, span, &message.into(), Some(&help.into())));
    }
}

/// How many events pass between signed checkpoints unless `checkpoint_events` says otherwise.
pub const DEFAULT_CHECKPOINT_EVENTS: u64 = 1000;
/// The longest a written event goes without a signed checkpoint unless `checkpoint_interval`
/// says otherwise: five minutes.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 300;
/// How far ahead a grant may be asked to start, unless `schedule_ahead` says otherwise.
const DEFAULT_SCHEDULE_AHEAD: u64 = 30 * 24 * 3600;

/// A token's lifetime unless `token_ttl` says otherwise: long enough that a gate script is not
/// re-keyed every month, short enough that a forgotten token ends by itself within a quarter.
pub const DEFAULT_TOKEN_TTL: u64 = 90 * 86_400;
/// The longest a token may live unless `token_max_ttl` says otherwise: a year.
pub const DEFAULT_TOKEN_MAX_TTL: u64 = 365 * 86_400;

/// What to do about a token lifetime the policy got wrong.
const TOKEN_TTL_HELP: &str = "write a duration (90d, 30d, 12h) or \"never\"";

/// What to do about a duration the policy got wrong.
const DURATION_HELP: &str = "write a number and a unit (s, m, h or d), or a sum of them: 90s, 15m, 4h, 1h30m, 2d";

/// A user, group, task or parameter name: letters, digits, '.', '-', '_', '@', at most 64.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= crate::model::wire::MAX_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| PolicyError::whole(&file, format!("cannot read the policy file: {e}")))?;
        Policy::from_bytes(bytes, &file)
    }

    /// Reads and validates the policy a daemon runs on (at start and on every reload), but only if
    /// nobody besides root and the daemon's account can write it or a directory on its way: whoever
    /// can write the policy decides who gets access (see `fs_trust::open_policy`).
    pub fn load_trusted(path: &Path) -> Result<Policy, PolicyError> {
        use std::io::Read;
        let file = path.display().to_string();
        let problem = |message: String| PolicyError::whole(&file, message);
        let mut opened = crate::fs_trust::open_policy(path).map_err(|e| problem(e.0))?;
        let mut bytes = Vec::new();
        opened.read_to_end(&mut bytes).map_err(|e| problem(format!("cannot read the policy file: {e}")))?;
        Policy::from_bytes(bytes, &file)
    }

    fn from_bytes(bytes: Vec<u8>, file: &str) -> Result<Policy, PolicyError> {
        let file = file.to_string();
        let source = String::from_utf8(bytes)
            .map_err(|e| PolicyError::whole(&file, format!("the policy file is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
        Policy::parse(&source, &file)
    }

    /// Validates policy text; `file` is the name used in messages.
    pub fn parse(source: &str, file: &str) -> Result<Policy, PolicyError> {
        let failed = |list| PolicyError { file: file.to_string(), source: Some(source.to_string()), problems: list };
        let raw: RawPolicy = toml::from_str(source).map_err(|e| {
            let mut p = Problems { source, list: Vec::new() };
            let message = e.message().trim().to_string();
            let help = if message.starts_with("unknown field") {
                "remove this key or correct its spelling: the keys allowed here are listed above"
            } else {
                "this is not valid TOML here: check the quotes, brackets and `key = value` of this line"
            };
            match e.span() {
                Some(span) => p.at_with_help(span, message, help),
                None => p.list.push(Problem::whole(&message)),
            }
            failed(p.list)
        })?;
        let mut p = Problems { source, list: Vec::new() };
        let policy = Self::validate(raw, &mut p, source, file);
        if p.list.is_empty() { Ok(policy) } else { Err(failed(p.list)) }
    }

    fn validate(raw: RawPolicy, p: &mut Problems, source: &str, file: &str) -> Policy {
        let pending_ttl = match raw.settings.as_ref().and_then(|s| s.get_ref().pending_ttl.as_ref()) {
            Some(ttl) => duration::parse(ttl.get_ref()).unwrap_or_else(|e| {
                p.at_with_help(ttl.span(), format!("settings.pending_ttl: {e}"), DURATION_HELP);
                0
            }),
            None => 24 * 3600,
        };
        let notice_give_up = match raw.settings.as_ref().and_then(|s| s.get_ref().notice_give_up.as_ref()) {
            Some(give_up) => duration::parse(give_up.get_ref()).unwrap_or_else(|e| {
                p.at_with_help(give_up.span(), format!("settings.notice_give_up: {e}"), DURATION_HELP);
                0
            }),
            None => 3600,
        };
        let (token_ttl, token_max_ttl) = Self::token_ttls(raw.settings.as_ref().map(|s| s.get_ref()), p);
        let checkpoint_events = match raw.settings.as_ref().and_then(|s| s.get_ref().checkpoint_events.as_ref()) {
            Some(n) if *n.get_ref() >= 1 => *n.get_ref() as u64,
            Some(n) => {
                p.at(n.span(), "settings.checkpoint_events is how many events pass between signed checkpoints: 1 or more");
                DEFAULT_CHECKPOINT_EVENTS
            }
            None => DEFAULT_CHECKPOINT_EVENTS,
        };
        let checkpoint_interval = match raw.settings.as_ref().and_then(|s| s.get_ref().checkpoint_interval.as_ref()) {
            Some(every) => match duration::parse(every.get_ref()) {
                Ok(secs) if secs >= 1 => secs,
                Ok(_) => {
                    p.at(every.span(), "settings.checkpoint_interval is at least 1s");
                    DEFAULT_CHECKPOINT_INTERVAL
                }
                Err(e) => {
                    p.at_with_help(every.span(), format!("settings.checkpoint_interval: {e}"), DURATION_HELP);
                    DEFAULT_CHECKPOINT_INTERVAL
                }
            },
            None => DEFAULT_CHECKPOINT_INTERVAL,
        };
        let schedule_ahead = match raw.settings.as_ref().and_then(|s| s.get_ref().schedule_ahead.as_ref()) {
            Some(ahead) => duration::parse(ahead.get_ref()).unwrap_or_else(|e| {
                p.at_with_help(ahead.span(), format!("settings.schedule_ahead: {e}"), DURATION_HELP);
                DEFAULT_SCHEDULE_AHEAD
            }),
            None => DEFAULT_SCHEDULE_AHEAD,
        };

        let mut groups = BTreeMap::new();
        let mut memberships = Vec::new();
        for (name, members) in raw.groups {
            if !valid_name(&name) {
                p.at(members.span(), format!("group name '{}' may hold only letters, digits, '.', '-', '_' and '@'", text::inert(&name)));
            }
            let mut set = BTreeSet::new();
            for m in members.get_ref() {
                let Some((user, from, until)) = group_member(m, &name, p) else { continue };
                if !valid_name(&user) {
                    p.at(m.span(), format!("'{}' in group '{name}' is not a valid user name", text::inert(&user)));
                } else if !set.insert(user.clone()) {
                    p.at(
                        m.span(),
                        format!("'{}' is listed twice in group '{name}' (one entry per person, with one from/until)", text::inert(&user)),
                    );
                } else if from.is_some() || until.is_some() {
                    memberships.push(Membership { group: name.clone(), user, from, until });
                }
            }
            groups.insert(name, set);
        }

        let defined: Vec<&str> = groups.keys().map(String::as_str).collect();
        let define_help = |name: &str| match defined.as_slice() {
            [] => format!("define the group under [groups]: {name} = [\"user\", ...]"),
            some => format!("define the group under [groups], or name one that is defined: {}", some.join(", ")),
        };
        let group_refs = |list: &[Spanned<String>], what: &str, p: &mut Problems| -> Vec<String> {
            let mut seen = BTreeSet::new();
            for g in list {
                if !groups.contains_key(g.get_ref()) {
                    p.at_with_help(
                        g.span(),
                        format!("{what} names the group '{}', which [groups] does not define", text::inert(g.get_ref())),
                        define_help(g.get_ref()),
                    );
                } else if !seen.insert(g.get_ref().clone()) {
                    p.at(g.span(), format!("{what} lists the group '{}' twice", g.get_ref()));
                }
            }
            list.iter().map(|g| g.get_ref().clone()).collect()
        };

        let roles = raw.roles.map(|r| r.into_inner()).unwrap_or_default();
        let admin_groups = group_refs(&roles.admins, "roles.admins", p);
        let auditor_groups = group_refs(&roles.auditors, "roles.auditors", p);
        let metrics_groups = roles.metrics.as_ref().map(|m| group_refs(m, "roles.metrics", p));

        let mut tasks = BTreeMap::new();
        // Tasks with signed approvals, and where the policy says so: checked once people are read.
        let mut signed_spans = Vec::new();
        for spanned in raw.tasks {
            let span = spanned.span();
            let t = spanned.into_inner();
            let name = t.name.get_ref().clone();
            let here = format!("task '{}'", text::inert(&name));
            if !valid_name(&name) {
                p.at(t.name.span(), format!("{here}: a task name may hold only letters, digits, '.', '-', '_' and '@'"));
            }
            if tasks.contains_key(&name) {
                p.at(t.name.span(), format!("{here} is defined twice"));
            }
            if t.requesters.get_ref().is_empty() {
                p.at(t.requesters.span(), format!("{here}: requesters is empty, so nobody could ask for it"));
            }
            let requesters = group_refs(t.requesters.get_ref(), &format!("{here}: requesters"), p);
            let problems_before = p.list.len();
            let mut approvers = group_refs(&t.approvers, &format!("{here}: approvers"), p);
            // Stages name their own approvers: the task's are all of theirs, its approvals their sum.
            let mut stages = Vec::new();
            if let Some(raw) = &t.stages {
                if !t.approvers.is_empty() || t.approvals.is_some() {
                    p.at(
                        raw.span(),
                        format!("{here}: with [[tasks.stages]], approvers and approvals are given per stage; remove them from the task"),
                    );
                }
                if raw.get_ref().is_empty() {
                    p.at(raw.span(), format!("{here}: stages is empty"));
                }
                for (i, s) in raw.get_ref().iter().enumerate() {
                    let label = s.name.clone().unwrap_or_else(|| format!("stage {}", i + 1));
                    let groups_of = group_refs(&s.approvers, &format!("{here}: {}", text::inert(&label)), p);
                    if groups_of.is_empty() {
                        p.at(raw.span(), format!("{here}: {} names no approvers", text::inert(&label)));
                    }
                    let needed = match &s.approvals {
                        Some(n) if !(1..=100).contains(n.get_ref()) => {
                            p.at(n.span(), format!("{here}: {}: approvals is {}; it must be 1 to 100", text::inert(&label), n.get_ref()));
                            1
                        }
                        Some(n) => *n.get_ref() as u32,
                        None => 1,
                    };
                    for g in &groups_of {
                        if !approvers.contains(g) {
                            approvers.push(g.clone());
                        }
                    }
                    stages.push(Stage { name: label, approvers: groups_of, approvals: needed });
                }
            }
            let approvers_ok = p.list.len() == problems_before;
            let approval = match t.approval.get_ref().as_str() {
                "manual" => ApprovalMode::Manual,
                "auto" => ApprovalMode::Auto,
                other => {
                    p.at(t.approval.span(), format!("{here}: approval is '{}'; it must be \"manual\" or \"auto\"", text::inert(other)));
                    ApprovalMode::Manual
                }
            };
            let approver_people: BTreeSet<&String> = approvers.iter().filter_map(|g| groups.get(g)).flatten().collect();
            let approvals = match &t.approvals {
                Some(n) if *n.get_ref() < 1 => {
                    p.at(n.span(), format!("{here}: approvals is {}; it must be at least 1", n.get_ref()));
                    1
                }
                Some(n) if *n.get_ref() > 100 => {
                    p.at(n.span(), format!("{here}: approvals is {}; at most 100 are supported", n.get_ref()));
                    1
                }
                Some(n) => *n.get_ref() as u32,
                None if !stages.is_empty() => stages.iter().map(|s| s.approvals).sum(),
                None => 1,
            };
            if !stages.is_empty() && (t.approval.get_ref() != "manual" || t.break_glass) {
                let at = t.stages.as_ref().map(|s| s.span()).unwrap_or_default();
                p.at(at, format!("{here}: approval stages need approval = \"manual\" (and no break_glass)"));
            }
            let needs_approvers = approval == ApprovalMode::Manual || t.break_glass;
            if needs_approvers && approvers.is_empty() {
                let why = if t.break_glass { "break-glass grants must be reviewed" } else { "approval is manual" };
                p.at(span.clone(), format!("{here}: {why}, so approvers must name at least one group"));
            } else if approvers_ok && approval == ApprovalMode::Manual && (approver_people.len() as u32) < approvals {
                let at = t.approvals.as_ref().map(|a| a.span()).unwrap_or(span.clone());
                p.at(
                    at,
                    format!(
                        "{here}: needs {approvals} distinct approvals but its approver groups hold only {} people",
                        approver_people.len()
                    ),
                );
            } else if approvers_ok && approval == ApprovalMode::Manual {
                // Nobody approves their own request, so what counts is, for each requester, the
                // approvers other than them: a requester who is also an approver has one fewer.
                let requester_people: BTreeSet<&String> = requesters.iter().filter_map(|g| groups.get(g)).flatten().collect();
                let short =
                    requester_people.into_iter().find(|r| approver_people.contains(r) && (approver_people.len() as u32 - 1) < approvals);
                if let Some(who) = short {
                    let others: Vec<&str> = approver_people.iter().filter(|a| **a != who).map(|a| a.as_str()).collect();
                    let at = t.approvals.as_ref().map(|a| a.span()).unwrap_or(span.clone());
                    p.at(
                        at,
                        format!(
                            "{here}: needs {approvals} distinct approvals, but a request by '{who}' could never be approved: \
                             nobody approves their own request, and the approver groups hold only {} other {} ({}); \
                             lower approvals or add approvers",
                            others.len(),
                            if others.len() == 1 { "person" } else { "people" },
                            if others.is_empty() { "none".to_string() } else { others.join(", ") }
                        ),
                    );
                }
            }
            if approval == ApprovalMode::Auto && t.break_glass {
                p.at(t.approval.span(), format!("{here}: break_glass and approval = \"auto\" contradict each other; break-glass tasks are manual and reviewed afterwards"));
            }
            let max_duration = duration::parse(t.max_duration.get_ref()).unwrap_or_else(|e| {
                p.at_with_help(t.max_duration.span(), format!("{here}: max_duration: {e}"), DURATION_HELP);
                1
            });
            let default_duration = match &t.default_duration {
                Some(d) => match duration::parse(d.get_ref()) {
                    Ok(v) if v > max_duration => {
                        p.at(
                            d.span(),
                            format!("{here}: default_duration {} is longer than max_duration {}", d.get_ref(), t.max_duration.get_ref()),
                        );
                        v
                    }
                    Ok(v) => v,
                    Err(e) => {
                        p.at_with_help(d.span(), format!("{here}: default_duration: {e}"), DURATION_HELP);
                        1
                    }
                },
                None => max_duration.min(3600),
            };
            let (extend, max_total) = Self::validate_extend(&t, &here, max_duration, p);
            let windows = Self::validate_windows(&t, &here, p);
            let mut pattern = |field: &Option<Spanned<String>>, label: &str| {
                field.as_ref().and_then(|s| match Pattern::new(s.get_ref()) {
                    Ok(pat) => Some(pat),
                    Err(e) => {
                        p.at(s.span(), format!("{here}: {label}: {e}"));
                        None
                    }
                })
            };
            let ticket_pattern = pattern(&t.ticket_pattern, "ticket_pattern");
            let reason_pattern = pattern(&t.reason_pattern, "reason_pattern");
            let approve_via = Self::validate_approve_via(&t, &here, p);
            let signed_approvals = t.signed_approvals.as_ref().is_some_and(|s| *s.get_ref());
            if let Some(signed) = t.signed_approvals.as_ref().filter(|s| *s.get_ref()) {
                if approval == ApprovalMode::Auto {
                    p.at(
                        signed.span(),
                        format!(
                            "{here}: signed_approvals and approval = \"auto\" contradict each other: nobody approves an automatic task"
                        ),
                    );
                } else if t.break_glass {
                    p.at(
                        signed.span(),
                        format!("{here}: signed_approvals would change nothing on a break-glass task: it is active at once, with no approval to sign"),
                    );
                } else {
                    signed_spans.push((name.clone(), signed.span()));
                }
            }
            let run = Self::validate_run(&t, &here, span.clone(), p);
            tasks.insert(
                name.clone(),
                Task {
                    name,
                    description: t.description,
                    requesters,
                    approval,
                    approvers,
                    approvals,
                    max_duration,
                    default_duration,
                    extend,
                    max_total,
                    windows,
                    stages,
                    require_reason: t.require_reason,
                    require_ticket: t.require_ticket,
                    ticket_pattern,
                    reason_pattern,
                    break_glass: t.break_glass,
                    approve_via,
                    signed_approvals,
                    run,
                },
            );
        }
        if tasks.is_empty() && p.list.is_empty() {
            p.list.push(Problem::whole("the policy defines no [[tasks]]; nobody could ask for anything"));
        }
        let channels = notify::channels(raw.channels, p);
        let people = people::people(raw.people, p);
        // A person's eligibility window bounds each of their memberships: none starts before
        // `eligible_from` or lasts past `eligible_until`.
        for (user, person) in &people {
            let (from, until) = (person.eligible_from, person.eligible_until);
            if from.is_none() && until.is_none() {
                continue;
            }
            for (group, members) in &groups {
                if !members.contains(user) {
                    continue;
                }
                match memberships.iter_mut().find(|m: &&mut Membership| m.group == *group && m.user == *user) {
                    Some(m) => {
                        m.from = m.from.max(from);
                        m.until = match (m.until, until) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    None => memberships.push(Membership { group: group.clone(), user: user.clone(), from, until }),
                }
            }
        }
        for m in memberships.iter().filter(|m| matches!((m.from, m.until), (Some(f), Some(u)) if f >= u)) {
            p.list.push(Problem::whole(&format!(
                "'{}' would never be a member of '{}': [people.{}] eligible_from/eligible_until and the group's own dates leave no time between {} and {}",
                text::inert(&m.user),
                m.group,
                text::inert(&m.user),
                m.from.map(|t| t.to_rfc3339()).unwrap_or_default(),
                m.until.map(|t| t.to_rfc3339()).unwrap_or_default()
            )));
        }
        Self::check_signed_approvals(&tasks, &groups, &people, &signed_spans, p);
        let known = notify::Known { groups: &groups, tasks: &tasks, channels: &channels, people: &people };
        let notify = notify::rules(raw.notify, &known, p);
        // A membership that starts later is not one yet: `as_of` adds it when it starts. (The
        // first read applies `as_of`, since the first change is then already due or still ahead.)
        for m in memberships.iter().filter(|m| m.from.is_some()) {
            if let Some(members) = groups.get_mut(&m.group) {
                members.remove(&m.user);
            }
        }

        Policy {
            pending_ttl,
            notice_give_up,
            token_ttl,
            token_max_ttl,
            checkpoint_events,
            checkpoint_interval,
            schedule_ahead,
            next_membership_change: Self::next_change(&memberships, None),
            memberships,
            groups,
            admin_groups,
            auditor_groups,
            metrics_groups,
            tasks,
            channels,
            people,
            notify,
            sha256: hex::encode(Sha256::digest(source.as_bytes())),
            path: file.to_string(),
        }
    }

    /// `windows`, `timezone`, `outside_window` and `cut_at_window_end`.
    fn validate_windows(t: &RawTask, here: &str, p: &mut Problems) -> Option<windows::Windows> {
        let Some(list) = &t.windows else {
            for (set, name) in [
                (t.timezone.as_ref().map(|s| s.span()), "timezone"),
                (t.outside_window.as_ref().map(|s| s.span()), "outside_window"),
                (t.cut_at_window_end.as_ref().map(|s| s.span()), "cut_at_window_end"),
            ] {
                if let Some(at) = set {
                    p.at(at, format!("{here}: {name} is about windows, and the task has none; add windows = [\"Mon-Fri 08:00-18:00\"] or remove {name}"));
                }
            }
            return None;
        };
        let Some(timezone) = &t.timezone else {
            p.at_with_help(
                list.span(),
                format!("{here}: windows need a timezone"),
                "add timezone = \"Europe/Berlin\" (an IANA name; \"UTC\" for none)",
            );
            return None;
        };
        let outside = match t.outside_window.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
            None | Some(("refuse", _)) => windows::OutsideWindow::Refuse,
            Some(("approval", at)) => {
                if t.approvers.is_empty() {
                    p.at(at, format!("{here}: outside_window = \"approval\" needs approvers to ask; name approvers"));
                }
                windows::OutsideWindow::Approval
            }
            Some((other, at)) => {
                p.at(at, format!("{here}: outside_window is '{}'; it must be \"refuse\" or \"approval\"", text::inert(other)));
                windows::OutsideWindow::Refuse
            }
        };
        let cut = t.cut_at_window_end.as_ref().is_none_or(|c| *c.get_ref());
        match windows::Windows::parse(list.get_ref(), timezone.get_ref(), outside, cut) {
            Ok(w) => Some(w),
            Err(e) if e.contains("IANA") => {
                p.at(timezone.span(), format!("{here}: timezone: {e}"));
                None
            }
            Err(e) => {
                p.at(list.span(), format!("{here}: windows: {e}"));
                None
            }
        }
    }

    /// `extend` and `max_total`: how a live grant may be made longer, and the most it may live.
    fn validate_extend(t: &RawTask, here: &str, max_duration: u64, p: &mut Problems) -> (ExtendMode, u64) {
        let extend = match &t.extend {
            None => ExtendMode::Never,
            Some(e) => match e.get_ref().as_str() {
                "never" => ExtendMode::Never,
                "auto" => ExtendMode::Auto,
                "approval" => ExtendMode::Approval,
                other => {
                    p.at(e.span(), format!("{here}: extend is '{}'; it must be \"never\", \"auto\" or \"approval\"", text::inert(other)));
                    ExtendMode::Never
                }
            },
        };
        if extend == ExtendMode::Approval && t.approval.get_ref() == "auto" {
            let at = t.extend.as_ref().map(|e| e.span()).unwrap_or_default();
            p.at(at, format!("{here}: extend = \"approval\" needs approvers, and approval is \"auto\"; say extend = \"auto\""));
        }
        if extend != ExtendMode::Never && t.break_glass {
            let at = t.extend.as_ref().map(|e| e.span()).unwrap_or_default();
            p.at(at, format!("{here}: a break-glass grant cannot be extended; the holder asks again, and that is reviewed too"));
        }
        let max_total = match &t.max_total {
            None => max_duration,
            Some(m) => match duration::parse(m.get_ref()) {
                Ok(v) if v < max_duration => {
                    p.at(m.span(), format!("{here}: max_total {} is shorter than max_duration {}", m.get_ref(), t.max_duration.get_ref()));
                    max_duration
                }
                Ok(v) => {
                    if extend == ExtendMode::Never {
                        p.at(m.span(), format!("{here}: max_total limits extensions, and extend is \"never\"; set extend = \"auto\" or \"approval\", or remove max_total"));
                    }
                    v
                }
                Err(e) => {
                    p.at_with_help(m.span(), format!("{here}: max_total: {e}"), DURATION_HELP);
                    max_duration
                }
            },
        };
        (extend, max_total)
    }

    /// A task with signed approvals must have enough approvers with SSH keys to ever be approved.
    fn check_signed_approvals(
        tasks: &BTreeMap<String, Task>,
        groups: &BTreeMap<String, BTreeSet<String>>,
        people: &BTreeMap<String, Person>,
        signed: &[(String, Range<usize>)],
        p: &mut Problems,
    ) {
        for (name, span) in signed {
            let Some(task) = tasks.get(name) else { continue };
            let approvers: BTreeSet<&String> = task.approvers.iter().filter_map(|g| groups.get(g)).flatten().collect();
            let (keyed, bare): (Vec<&String>, Vec<&String>) =
                approvers.into_iter().partition(|who| people.get(*who).is_some_and(|x| !x.ssh_keys.is_empty()));
            // Nobody approves their own request: a requester who is a keyed approver has one fewer.
            let requesters: BTreeSet<&String> = task.requesters.iter().filter_map(|g| groups.get(g)).flatten().collect();
            if let Some(short) = keyed.iter().find(|k| requesters.contains(*k) && (keyed.len() as u32 - 1) < task.approvals)
                && (keyed.len() as u32) >= task.approvals
            {
                p.at(
                    span.clone(),
                    format!(
                        "task '{}': signed_approvals needs {} approver(s) with SSH keys besides the requester, and a request by '{}' would have only {}; list more approvers' keys under [people]",
                        text::inert(name),
                        task.approvals,
                        text::inert(short),
                        keyed.len() - 1
                    ),
                );
                continue;
            }
            if (keyed.len() as u32) < task.approvals {
                let bare: Vec<&str> = bare.iter().map(|s| s.as_str()).collect();
                p.at_with_help(
                    span.clone(),
                    format!(
                        "task '{}': signed_approvals needs {} approver(s) with SSH keys, but only {} of its approvers {} ssh_keys under [people]; without: {}",
                        text::inert(name),
                        task.approvals,
                        keyed.len(),
                        if keyed.len() == 1 { "has" } else { "have" },
                        if bare.is_empty() { "nobody".to_string() } else { bare.join(", ") }
                    ),
                    format!(
                        "list each approver's public key: [people.{}] ssh_keys = [\"ssh-ed25519 AAAA...\"]",
                        bare.first().copied().unwrap_or("NAME")
                    ),
                );
            }
        }
    }

    /// `token_ttl` and `token_max_ttl`: each a duration or `"never"` (None); the default lifetime
    /// no longer than the longest, so every token issued without `--ttl` is one the policy allows.
    fn token_ttls(settings: Option<&RawSettings>, p: &mut Problems) -> (Option<u64>, Option<u64>) {
        let read = |raw: Option<&Spanned<String>>, name: &str, default: u64, p: &mut Problems| match raw {
            None => Some(default),
            Some(v) if v.get_ref().trim() == "never" => None,
            Some(v) => Some(duration::parse(v.get_ref()).unwrap_or_else(|e| {
                p.at_with_help(v.span(), format!("settings.{name} is a duration or \"never\": {e}"), TOKEN_TTL_HELP);
                default
            })),
        };
        let ttl_raw = settings.and_then(|s| s.token_ttl.as_ref());
        let ttl = read(ttl_raw, "token_ttl", DEFAULT_TOKEN_TTL, p);
        let max = read(settings.and_then(|s| s.token_max_ttl.as_ref()), "token_max_ttl", DEFAULT_TOKEN_MAX_TTL, p);
        if let Some(max) = max {
            let too_long = match ttl {
                None => Some("\"never\"".to_string()),
                Some(ttl) if ttl > max => Some(duration::format(ttl)),
                Some(_) => None,
            };
            if let Some(said) = too_long {
                let message = format!(
                    "settings.token_ttl is {said}, longer than settings.token_max_ttl ({}), so no token could be issued without --ttl",
                    duration::format(max)
                );
                let help = "make token_ttl no longer than token_max_ttl (token_max_ttl = \"never\" allows tokens that never expire)";
                match ttl_raw {
                    Some(v) => p.at_with_help(v.span(), message, help),
                    None => p.list.push(Problem::whole(&message)),
                }
            }
        }
        (ttl, max)
    }

    /// `approve_via`: a non-empty list of the kinds in `APPROVE_VIA_KINDS`; any when absent.
    fn validate_approve_via(t: &RawTask, here: &str, p: &mut Problems) -> Option<Vec<String>> {
        use crate::model::auth::APPROVE_VIA_KINDS;
        let list = t.approve_via.as_ref()?;
        if list.get_ref().is_empty() {
            p.at(list.span(), format!("{here}: approve_via is empty, so no approval could ever count; name \"peer\", \"token\" or both"));
        }
        let mut kinds = Vec::new();
        for k in list.get_ref() {
            if !APPROVE_VIA_KINDS.contains(&k.get_ref().as_str()) {
                p.at(
                    k.span(),
                    format!(
                        "{here}: approve_via has '{}'; it may hold \"peer\" (the approver's own Unix login) and \"token\"",
                        text::inert(k.get_ref())
                    ),
                );
            } else if !kinds.contains(k.get_ref()) {
                kinds.push(k.get_ref().clone());
            }
        }
        Some(kinds)
    }

    /// Checks a task's `run`, `run_as`, `timeout`, `on_expiry`, `max_concurrent_runs` and `params`.
    fn validate_run(t: &RawTask, here: &str, span: Range<usize>, p: &mut Problems) -> Option<RunSpec> {
        let Some(argv) = &t.run else {
            for (field, present) in [
                ("run_as", t.run_as.is_some()),
                ("timeout", t.timeout.is_some()),
                ("on_expiry", t.on_expiry.is_some()),
                ("max_concurrent_runs", t.max_concurrent_runs.is_some()),
                ("params", !t.params.is_empty()),
            ] {
                if present {
                    p.at(span.clone(), format!("{here}: {field} is set but the task has no run = [...] command"));
                }
            }
            return None;
        };
        let mut params = BTreeMap::new();
        for (name, raw) in &t.params {
            let r = raw.get_ref();
            let given = [r.one_of.is_some(), r.pattern.is_some(), r.range.is_some()].iter().filter(|x| **x).count();
            if !valid_name(name) {
                p.at(raw.span(), format!("{here}: parameter name '{}' may hold only letters, digits, '.', '-', '_'", text::inert(name)));
            }
            if given != 1 {
                p.at(raw.span(), format!("{here}: parameter '{name}' needs exactly one of one_of, pattern or range"));
                continue;
            }
            let rule = if let Some(list) = &r.one_of {
                if list.is_empty() {
                    p.at(raw.span(), format!("{here}: parameter '{name}': one_of is empty, so nothing could be passed"));
                }
                ParamRule::OneOf(list.clone())
            } else if let Some(src) = &r.pattern {
                match Pattern::new(src) {
                    Ok(pat) => ParamRule::Pattern(pat),
                    Err(e) => {
                        p.at(raw.span(), format!("{here}: parameter '{name}': {e}"));
                        continue;
                    }
                }
            } else {
                let [lo, hi] = r.range.unwrap_or([0, 0]);
                if lo > hi {
                    p.at(raw.span(), format!("{here}: parameter '{name}': range [{lo}, {hi}] is empty"));
                }
                ParamRule::Range(lo, hi)
            };
            // A value the rule names that the dash check would refuse is a mistake in the policy:
            // say so now rather than refuse it at run time.
            let dashed = match &rule {
                ParamRule::OneOf(list) => list.iter().find(|v| v.starts_with('-')).map(|v| format!("one_of lists '{}'", text::inert(v))),
                ParamRule::Range(lo, _) if *lo < 0 => Some(format!("range allows negative numbers such as {lo}")),
                _ => None,
            };
            if let Some(what) = dashed.filter(|_| !r.allow_leading_dash) {
                p.at(
                    raw.span(),
                    format!(
                        "{here}: parameter '{name}': {what}, which starts with '-' and would be refused; \
                         add allow_leading_dash = true if the program should get it"
                    ),
                );
            }
            params.insert(name.clone(), Param { rule, allow_leading_dash: r.allow_leading_dash });
        }
        let list = argv.get_ref();
        match list.first() {
            None => p.at(argv.span(), format!("{here}: run is empty; it must name a program")),
            Some(prog) if !prog.starts_with('/') => p.at(
                argv.span(),
                format!("{here}: run must start with an absolute path (not '{}'): the daemon never searches PATH", text::inert(prog)),
            ),
            _ => {}
        }
        let mut used = BTreeSet::new();
        for arg in list {
            match placeholders(arg) {
                Err(e) => p.at(argv.span(), format!("{here}: run: {e}")),
                Ok(names) => {
                    for n in names {
                        if !t.params.contains_key(n) {
                            p.at(argv.span(), format!("{here}: run uses {{{n}}} but [tasks.params.{n}] is not defined"));
                        }
                        used.insert(n.to_string());
                    }
                }
            }
        }
        if list.first().is_some_and(|prog| prog.contains('{')) {
            p.at(argv.span(), format!("{here}: the program itself may not be a parameter"));
        }
        for name in t.params.keys().filter(|n| !used.contains(*n)) {
            p.at(t.params[name].span(), format!("{here}: parameter '{name}' is defined but run never uses {{{name}}}"));
        }
        if let Some(user) = t.run_as.as_ref().filter(|u| !valid_name(u.get_ref())) {
            p.at(user.span(), format!("{here}: run_as '{}' is not a valid account name", text::inert(user.get_ref())));
        }
        let timeout = match &t.timeout {
            Some(d) => duration::parse(d.get_ref()).unwrap_or_else(|e| {
                p.at_with_help(d.span(), format!("{here}: timeout: {e}"), DURATION_HELP);
                1
            }),
            None => 3600,
        };
        let on_expiry = match t.on_expiry.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("stop") => OnExpiry::Stop,
            Some("finish") => OnExpiry::Finish,
            Some(other) => {
                let at = t.on_expiry.as_ref().map(|s| s.span()).unwrap_or(span);
                p.at(at, format!("{here}: on_expiry is '{}'; it must be \"stop\" or \"finish\"", text::inert(other)));
                OnExpiry::Stop
            }
        };
        let max_concurrent_runs = match &t.max_concurrent_runs {
            None => 1,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(n @ 1..=1000) => n,
                _ => {
                    p.at(n.span(), format!("{here}: max_concurrent_runs is {}; it must be from 1 to 1000", n.get_ref()));
                    1
                }
            },
        };
        Some(RunSpec {
            argv: list.clone(),
            run_as: t.run_as.as_ref().map(|u| u.get_ref().clone()),
            timeout,
            on_expiry,
            params,
            max_concurrent_runs,
        })
    }

    pub fn groups_of(&self, user: &str) -> Vec<String> {
        self.groups.iter().filter(|(_, m)| m.contains(user)).map(|(g, _)| g.clone()).collect()
    }

    fn in_any(&self, user: &str, groups: &[String]) -> bool {
        groups.iter().any(|g| self.groups.get(g).is_some_and(|m| m.contains(user)))
    }

    /// A user the policy knows at `now`: in at least one group, or to be by a membership that
    /// starts later (a new hire may get their token before their first day), not one that ended.
    pub fn knows(&self, user: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.groups.values().any(|m| m.contains(user))
            || self.memberships.iter().any(|m| m.user == user && m.from.is_some_and(|f| f > now) && m.until.is_none_or(|u| u > now))
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.in_any(user, &self.admin_groups)
    }

    pub fn is_auditor(&self, user: &str) -> bool {
        self.in_any(user, &self.auditor_groups)
    }

    /// Admins and auditors see every request, grant and event.
    pub fn sees_everything(&self, user: &str) -> bool {
        self.is_admin(user) || self.is_auditor(user)
    }

    /// May read `/metrics`: members of `[roles] metrics`, else admins and auditors.
    pub fn may_read_metrics(&self, user: &str) -> bool {
        match &self.metrics_groups {
            Some(groups) => self.in_any(user, groups),
            None => self.sees_everything(user),
        }
    }

    pub fn may_request(&self, user: &str, task: &Task) -> bool {
        self.in_any(user, &task.requesters)
    }

    /// The policy as it stands at `now`: each dated member is in their group exactly while their
    /// membership holds. The same answer whichever policy of one file it is applied to, so it is
    /// applied again as time passes.
    pub fn as_of(&self, now: chrono::DateTime<chrono::Utc>) -> Policy {
        let mut p = self.clone();
        for m in &self.memberships {
            if let Some(members) = p.groups.get_mut(&m.group) {
                if m.holds_at(now) {
                    members.insert(m.user.clone());
                } else {
                    members.remove(&m.user);
                }
            }
        }
        p.next_membership_change = Self::next_change(&self.memberships, Some(now));
        p
    }

    /// When a dated membership next starts or ends: the policy in force changes then.
    pub fn next_membership_change(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.next_membership_change
    }

    fn next_change(memberships: &[Membership], after: Option<chrono::DateTime<chrono::Utc>>) -> Option<chrono::DateTime<chrono::Utc>> {
        memberships.iter().flat_map(|m| [m.from, m.until]).flatten().filter(|t| after.is_none_or(|a| *t > a)).min()
    }

    /// Until when `user` may ask for `task` by dated memberships only (None: no end, or no
    /// eligibility at all).
    pub fn eligible_until(&self, user: &str, task: &Task) -> Option<chrono::DateTime<chrono::Utc>> {
        let mut latest = None;
        for group in &task.requesters {
            if !self.groups.get(group).is_some_and(|g| g.contains(user)) {
                continue;
            }
            match self.memberships.iter().find(|m| m.group == *group && m.user == user).and_then(|m| m.until) {
                None => return None,
                Some(until) => latest = latest.max(Some(until)),
            }
        }
        latest
    }

    /// When `user`, not eligible for `task` at `now`, becomes so by a membership that starts
    /// later (None: not by any).
    pub fn eligible_from(&self, user: &str, task: &Task, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        if self.may_request(user, task) {
            return None;
        }
        self.memberships
            .iter()
            .filter(|m| m.user == user && task.requesters.contains(&m.group))
            .filter_map(|m| m.from.filter(|f| *f > now && m.until.is_none_or(|u| u > *f)))
            .min()
    }

    /// May approve at `stage` of a task.
    pub fn approves_at(&self, user: &str, stage: &Stage) -> bool {
        self.in_any(user, &stage.approvers)
    }

    pub fn may_approve(&self, user: &str, task: &Task) -> bool {
        self.in_any(user, &task.approvers)
    }

    /// May approve (or review, or revoke) for the named task, if it still exists.
    pub fn approves_task(&self, user: &str, task: &str) -> bool {
        self.tasks.get(task).is_some_and(|t| self.may_approve(user, t))
    }

    pub fn approver_users(&self, task: &Task) -> Vec<String> {
        let set: BTreeSet<&String> = task.approvers.iter().filter_map(|g| self.groups.get(g)).flatten().collect();
        set.into_iter().cloned().collect()
    }

    pub fn roles_of(&self, user: &str) -> Vec<String> {
        let mut roles = Vec::new();
        if self.is_admin(user) {
            roles.push("admin".to_string());
        }
        if self.is_auditor(user) {
            roles.push("auditor".to_string());
        }
        if self.tasks.values().any(|t| self.may_approve(user, t)) {
            roles.push("approver".to_string());
        }
        if self.tasks.values().any(|t| self.may_request(user, t)) {
            roles.push("requester".to_string());
        }
        roles
    }

    pub fn task_view(&self, task: &Task, user: &str) -> TaskView {
        TaskView {
            name: task.name.clone(),
            description: task.description.clone(),
            approval: match task.approval {
                ApprovalMode::Manual => "manual".into(),
                ApprovalMode::Auto => "auto".into(),
            },
            requesters: task.requesters.clone(),
            approvers: task.approvers.clone(),
            approver_users: self.approver_users(task),
            approvals: if task.approval == ApprovalMode::Auto { 0 } else { task.approvals },
            max_duration_secs: task.max_duration,
            default_duration_secs: task.default_duration,
            require_reason: task.require_reason,
            require_ticket: task.require_ticket,
            ticket_pattern: task.ticket_pattern.as_ref().map(|p| p.source.clone()),
            reason_pattern: task.reason_pattern.as_ref().map(|p| p.source.clone()),
            break_glass: task.break_glass,
            approve_via: task
                .approve_via
                .clone()
                .unwrap_or_else(|| crate::model::auth::APPROVE_VIA_KINDS.iter().map(|k| k.to_string()).collect()),
            signed_approvals: task.signed_approvals,
            extend: task.extend.as_str().to_string(),
            max_total_secs: task.max_total,
            windows: task.windows.as_ref().map(|w| w.describe()),
            window_now: None,
            eligible_until: self.eligible_until(user, task),
            // Needs the time: the daemon fills it.
            eligible_from: None,
            may_request: self.may_request(user, task),
            may_approve: self.may_approve(user, task),
            // Who else approves depends on the live state too (disabled accounts): the daemon fills it.
            approvers_for_you: Vec::new(),
            run: task.run.as_ref().map(|r| crate::model::wire::RunView {
                argv: r.argv.clone(),
                run_as: r.run_as.clone(),
                timeout_secs: r.timeout,
                on_expiry: if r.on_expiry == OnExpiry::Stop { "stop".into() } else { "finish".into() },
                max_concurrent_runs: r.max_concurrent_runs,
                params: r.params.iter().map(|(k, v)| (k.clone(), v.describe())).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const EXAMPLE: &str = include_str!("../assets/policy.toml");
    const DEMO: &str = include_str!("../assets/demo-policy.toml");

    fn errors(src: &str) -> String {
        Policy::parse(src, "p.toml").unwrap_err().to_string()
    }

    #[test]
    fn shipped_policies_load() {
        let p = Policy::parse(EXAMPLE, "policy.toml").unwrap();
        assert!(p.tasks.contains_key("exchange.journal-rule"));
        assert_eq!(p.pending_ttl, 86_400);
        assert!(p.is_admin("root"));
        let d = Policy::parse(DEMO, "demo-policy.toml").unwrap();
        assert!(d.tasks.len() >= 4);
    }

    const BASE: &str = r#"
[groups]
ops = ["carol"]
approvers = ["alice", "bob"]
[[tasks]]
name = "t"
requesters = ["ops"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
"#;

    #[test]
    fn a_minimal_policy_has_sensible_defaults() {
        let p = Policy::parse(BASE, "p.toml").unwrap();
        let t = &p.tasks["t"];
        assert_eq!((t.approvals, t.max_duration, t.default_duration), (1, 3600, 3600));
        assert_eq!(p.pending_ttl, 86_400);
        assert_eq!(p.notice_give_up, 3600, "notices are retried for an hour unless the policy says otherwise");
        let set = Policy::parse(&format!("[settings]\nnotice_give_up = \"15m\"\n{BASE}"), "p.toml").unwrap();
        assert_eq!(set.notice_give_up, 900);
        let bad = Policy::parse(&format!("[settings]\nnotice_give_up = \"soon\"\n{BASE}"), "p.toml").unwrap_err().to_string();
        assert!(bad.contains("p.toml:2") && bad.contains("settings.notice_give_up"), "{bad}");
        assert_eq!(p.roles_of("alice"), vec!["approver"]);
        assert_eq!(p.roles_of("carol"), vec!["requester"]);
    }

    #[test]
    fn checkpoints_come_every_1000_events_or_5_minutes_unless_set() {
        let p = Policy::parse(BASE, "p.toml").unwrap();
        assert_eq!((p.checkpoint_events, p.checkpoint_interval), (1000, 300));
        let set = |settings: &str| Policy::parse(&format!("[settings]\n{settings}\n{BASE}"), "p.toml");
        let p = set("checkpoint_events = 50\ncheckpoint_interval = \"30s\"").unwrap();
        assert_eq!((p.checkpoint_events, p.checkpoint_interval), (50, 30));
        let e = set("checkpoint_events = 0").unwrap_err().to_string();
        assert!(e.contains("p.toml:2") && e.contains("checkpoint_events") && e.contains("1 or more"), "{e}");
        let e = set("checkpoint_interval = \"often\"").unwrap_err().to_string();
        assert!(e.contains("settings.checkpoint_interval"), "{e}");
    }

    #[test]
    fn token_lifetimes_default_to_90_days_at_most_a_year_and_never_only_when_allowed() {
        let p = Policy::parse(BASE, "p.toml").unwrap();
        assert_eq!((p.token_ttl, p.token_max_ttl), (Some(90 * 86_400), Some(365 * 86_400)));
        let set = |settings: &str| Policy::parse(&format!("[settings]\n{settings}\n{BASE}"), "p.toml");
        let p = set("token_ttl = \"30d\"\ntoken_max_ttl = \"never\"").unwrap();
        assert_eq!((p.token_ttl, p.token_max_ttl), (Some(30 * 86_400), None));
        let p = set("token_ttl = \"never\"\ntoken_max_ttl = \"never\"").unwrap();
        assert_eq!((p.token_ttl, p.token_max_ttl), (None, None));
        let e = set("token_ttl = \"never\"").unwrap_err().to_string();
        assert!(e.contains("p.toml:2") && e.contains("longer than settings.token_max_ttl (365d)"), "{e}");
        let e = set("token_ttl = \"400d\"").unwrap_err().to_string();
        assert!(e.contains("token_ttl is 400d"), "{e}");
        let e = set("token_max_ttl = \"30d\"").unwrap_err().to_string();
        assert!(e.contains("token_ttl is 90d, longer than settings.token_max_ttl (30d)"), "{e}");
        let e = set("token_max_ttl = \"forever\"").unwrap_err().to_string();
        assert!(e.contains("settings.token_max_ttl") && e.contains("never"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let src = BASE.replace("max_duration = \"1h\"", "max_duration = \"1h\"\nmax_duraton = \"2h\"");
        let e = errors(&src);
        assert!(e.starts_with("p.toml:11:") || e.starts_with("p.toml:10:"), "{e}");
        assert!(e.contains("max_duraton"), "{e}");
        let e = errors(&format!("[settingz]\n{BASE}"));
        assert!(e.contains("p.toml:1:") && e.contains("settingz"), "{e}");
    }

    #[test]
    fn unknown_groups_name_the_line() {
        let e = errors(&BASE.replace("approvers = [\"approvers\"]", "approvers = [\"aprovers\"]"));
        assert_eq!(e, "p.toml:9: task 't': approvers names the group 'aprovers', which [groups] does not define");
        let e = errors(&format!("{BASE}[roles]\nadmins = [\"root\"]\n"));
        assert!(e.contains("p.toml:12: roles.admins names the group 'root'"), "{e}");
    }

    #[test]
    fn duplicates_are_refused() {
        let e = errors(&format!("{BASE}[[tasks]]\nname = \"t\"\nrequesters = [\"ops\"]\napproval = \"auto\"\nmax_duration = \"1h\"\n"));
        assert!(e.contains("p.toml:12: task 't' is defined twice"), "{e}");
        let e = errors(&BASE.replace("[\"alice\", \"bob\"]", "[\"alice\", \"alice\"]"));
        assert!(e.contains("p.toml:4: 'alice' is listed twice in group 'approvers'"), "{e}");
        let e = errors(&BASE.replace("ops = [\"carol\"]", "ops = [\"carol\"]\nops = [\"dave\"]"));
        assert!(e.contains("p.toml:4:") && e.to_lowercase().contains("duplicate"), "{e}");
    }

    #[test]
    fn impossible_values_are_refused() {
        let cases = [
            ("max_duration = \"1h\"", "max_duration = \"0s\"", "longer than zero"),
            ("max_duration = \"1h\"", "max_duration = \"1h\"\ndefault_duration = \"2h\"", "longer than max_duration"),
            (
                "max_duration = \"1h\"",
                "max_duration = \"1h\"\napprovals = 3",
                "needs 3 distinct approvals but its approver groups hold only 2 people",
            ),
            ("max_duration = \"1h\"", "max_duration = \"1h\"\napprovals = 0", "at least 1"),
            ("approval = \"manual\"", "approval = \"sometimes\"", "must be \"manual\" or \"auto\""),
            ("approvers = [\"approvers\"]", "approvers = []", "approvers must name at least one group"),
            ("requesters = [\"ops\"]", "requesters = []", "nobody could ask"),
            ("max_duration = \"1h\"", "max_duration = \"1h\"\nticket_pattern = \"INC-[\"", "not a valid regular expression"),
            ("max_duration = \"1h\"", "max_duration = \"99999999999d\"", "ten years"),
            ("name = \"t\"", "name = \"bad name\"", "may hold only"),
        ];
        for (from, to, expect) in cases {
            let e = errors(&BASE.replace(from, to));
            assert!(e.contains(expect), "{to}: {e}");
            assert!(e.starts_with("p.toml:"), "{e}");
        }
        assert!(errors("[groups]\n").contains("defines no [[tasks]]"));
    }

    const RUN: &str = r#"
[[tasks]]
name = "r"
requesters = ["ops"]
approval = "auto"
max_duration = "15m"
run = ["/usr/bin/systemctl", "restart", "{unit}"]
timeout = "5m"
[tasks.params.unit]
one_of = ["nginx.service"]
"#;

    #[test]
    fn a_run_task_loads_and_builds_its_argv() {
        let p = Policy::parse(&format!("{BASE}{RUN}"), "p").unwrap();
        let run = p.tasks["r"].run.as_ref().unwrap();
        assert_eq!((run.timeout, run.on_expiry, run.max_concurrent_runs), (300, OnExpiry::Stop, 1));
        let p = Policy::parse(&format!("{BASE}{}", RUN.replace("timeout = \"5m\"", "max_concurrent_runs = 3")), "p").unwrap();
        assert_eq!(p.tasks["r"].run.as_ref().unwrap().max_concurrent_runs, 3);
        let params = BTreeMap::from([("unit".to_string(), "nginx.service".to_string())]);
        assert_eq!(run.build("r", &params).unwrap(), vec!["/usr/bin/systemctl", "restart", "nginx.service"]);
        assert!(run.build("r", &BTreeMap::new()).unwrap_err().contains("needs --param unit=VALUE (one of nginx.service)"));
    }

    #[test]
    fn run_mistakes_are_refused_with_their_line() {
        let cases = [
            ("\"/usr/bin/systemctl\"", "\"systemctl\"", "absolute path"),
            ("\"{unit}\"]", "\"{unti}\"]", "run uses {unti} but [tasks.params.unti] is not defined"),
            ("\"{unit}\"]", "\"x\"]", "parameter 'unit' is defined but run never uses {unit}"),
            ("one_of = [\"nginx.service\"]", "one_of = [\"a\"]\npattern = \"b\"", "exactly one of one_of, pattern or range"),
            ("one_of = [\"nginx.service\"]", "range = [5, 1]", "range [5, 1] is empty"),
            ("one_of = [\"nginx.service\"]", "pattern = \"(\"", "not a valid regular expression"),
            ("timeout = \"5m\"", "timeout = \"5m\"\non_expiry = \"never\"", "must be \"stop\" or \"finish\""),
            ("one_of = [\"nginx.service\"]", "one_of = [\"x\"]\nsudo = true", "unknown field"),
            ("timeout = \"5m\"", "max_concurrent_runs = 0", "max_concurrent_runs is 0; it must be from 1 to 1000"),
            ("timeout = \"5m\"", "max_concurrent_runs = 5000", "max_concurrent_runs is 5000; it must be from 1 to 1000"),
        ];
        for (from, to, expect) in cases {
            let e = errors(&format!("{BASE}{}", RUN.replace(from, to)));
            assert!(e.contains(expect), "{to}: {e}");
            assert!(e.starts_with("p.toml:"), "{e}");
        }
        let e = errors(&BASE.replace("max_duration = \"1h\"", "max_duration = \"1h\"\ntimeout = \"1m\""));
        assert!(e.contains("timeout is set but the task has no run"), "{e}");
    }

    /// Every requester must be able to collect `approvals` approvals from people other than
    /// themselves; approvers who also ask are one short for their own requests.
    #[test]
    fn a_task_that_can_never_be_approved_is_refused_with_its_line() {
        let both = BASE.replace("requesters = [\"ops\"]", "requesters = [\"ops\", \"approvers\"]");
        let e = errors(&both.replace("max_duration = \"1h\"", "max_duration = \"1h\"\napprovals = 2"));
        assert_eq!(
            e,
            "p.toml:11: task 't': needs 2 distinct approvals, but a request by 'alice' could never be approved: nobody approves \
             their own request, and the approver groups hold only 1 other person (bob); lower approvals or add approvers"
        );
        // One approval works: alice and bob approve each other's requests.
        assert!(Policy::parse(&both, "p.toml").is_ok());
        // Approvers who are all requesters and exactly as many as the approvals needed: nobody's request can pass.
        let all = BASE.replace("requesters = [\"ops\"]", "requesters = [\"approvers\"]");
        let e = errors(&all.replace("max_duration = \"1h\"", "max_duration = \"1h\"\napprovals = 2"));
        assert!(e.contains("a request by 'alice' could never be approved"), "{e}");
        // Enough others for everyone: three approvers, two approvals, all of them requesters.
        let three = all.replace("[\"alice\", \"bob\"]", "[\"alice\", \"bob\", \"carol\"]");
        assert!(Policy::parse(&three.replace("max_duration = \"1h\"", "max_duration = \"1h\"\napprovals = 2"), "p").is_ok());
        // The daemon's `policy check` says the same (it reads the file through `Policy::load`).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, all.replace("max_duration = \"1h\"", "max_duration = \"1h\"\napprovals = 2")).unwrap();
        assert!(Policy::load(&path).unwrap_err().to_string().contains("could never be approved"));
    }

    #[test]
    fn a_parameter_starting_with_a_dash_is_refused_unless_the_policy_allows_it() {
        let word = RUN.replace("one_of = [\"nginx.service\"]", "pattern = \"[A-Za-z0-9._-]+\"");
        let p = Policy::parse(&format!("{BASE}{word}"), "p").unwrap();
        let run = p.tasks["r"].run.as_ref().unwrap();
        let with = |v: &str| BTreeMap::from([("unit".to_string(), v.to_string())]);
        let e = run.build("r", &with("-e")).unwrap_err();
        assert!(e.contains("may not start with '-'") && e.contains("allow_leading_dash = true"), "{e}");
        assert!(run.build("r", &with("--help")).is_err());
        assert!(run.build("r", &with("a-b")).is_ok(), "a dash inside a value is fine");
        let allowed = word.replace("pattern =", "allow_leading_dash = true\npattern =");
        let p = Policy::parse(&format!("{BASE}{allowed}"), "p").unwrap();
        let run = p.tasks["r"].run.as_ref().unwrap();
        assert_eq!(run.build("r", &with("-e")).unwrap(), vec!["/usr/bin/systemctl", "restart", "-e"]);
        assert!(p.task_view(&p.tasks["r"], "carol").run.unwrap().params["unit"].contains("may start with '-'"));
        // Values the policy itself names with a dash must be allowed explicitly.
        for (rule, expect) in [("one_of = [\"-v\"]", "one_of lists '-v'"), ("range = [-5, 5]", "range allows negative numbers such as -5")]
        {
            let e = errors(&format!("{BASE}{}", RUN.replace("one_of = [\"nginx.service\"]", rule)));
            assert!(e.starts_with("p.toml:") && e.contains(expect) && e.contains("allow_leading_dash"), "{e}");
            let ok = RUN.replace("one_of = [\"nginx.service\"]", &format!("{rule}\nallow_leading_dash = true"));
            assert!(Policy::parse(&format!("{BASE}{ok}"), "p").is_ok(), "{rule}");
        }
        // Hidden characters are refused by category, like every other typed text.
        for v in ["a\u{200b}b", "a\u{2028}b", "\u{3164}"] {
            let e = run.build("r", &with(v)).unwrap_err();
            assert!(e.contains("U+"), "{v:?}: {e}");
        }
    }

    #[test]
    fn patterns_match_the_whole_value() {
        let p =
            Policy::parse(&BASE.replace("max_duration = \"1h\"", "max_duration = \"1h\"\nticket_pattern = \"INC-[0-9]+\""), "p").unwrap();
        let pat = p.tasks["t"].ticket_pattern.as_ref().unwrap();
        assert!(pat.matches("INC-42"));
        assert!(!pat.matches("xINC-42"));
        assert!(!pat.matches("INC-42x"));
        assert!(!pat.matches("INC-1|anything"));
    }

    #[test]
    fn the_hash_is_of_the_exact_bytes() {
        let a = Policy::parse(BASE, "p").unwrap();
        let b = Policy::parse(&format!("{BASE}\n"), "p").unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(a.sha256.len(), 64);
    }

    /// Two real public keys (ssh-keygen made them; only their public halves are here).
    const ALICE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJk7Co4E0Tq8oYtM1gPzvQyfY0YV1QvGQxB8mTMG0d8r alice@laptop";
    const BOB_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqQ3u+qXv6gKZ2s5oUu0yX4r0Q0G6pQ2m3C4vJm0kYz bob@desk";

    #[test]
    fn signed_approvals_need_enough_approvers_with_keys_and_keys_are_checked() {
        let signed = BASE.replace("max_duration = \"1h\"", "max_duration = \"1h\"\nsigned_approvals = true");
        let e = errors(&signed);
        assert!(e.contains("p.toml:11") && e.contains("signed_approvals needs 1 approver(s) with SSH keys, but only 0"), "{e}");
        assert!(e.contains("without: alice, bob"), "{e}");
        let p = Policy::parse(&format!("{signed}[people.alice]\nssh_keys = [\"{ALICE_KEY}\"]\n"), "p.toml").unwrap();
        assert!(p.tasks["t"].signed_approvals);
        assert_eq!(p.people["alice"].key_fingerprints().len(), 1);
        assert!(p.people["alice"].key_fingerprints()[0].starts_with("SHA256:"));

        let both = format!("{signed}[people.alice]\nssh_keys = [\"{ALICE_KEY}\"]\n[people.bob]\nssh_keys = [\"{ALICE_KEY}\"]\n");
        let e = errors(&both);
        assert!(e.contains("people.bob.ssh_keys[0]") && e.contains("is also listed for 'alice'"), "one key, one person: {e}");
        let e = errors(&format!("{BASE}[people.bob]\nssh_keys = [\"{BOB_KEY}\", \"ssh-ed25519 AAAA\"]\n"));
        assert!(e.contains("people.bob.ssh_keys[1]: not an SSH public key"), "{e}");
        let e = errors(&format!("{BASE}[people.bob]\nssh_keys = [\"{BOB_KEY}\", \"{BOB_KEY}\"]\n"));
        assert!(e.contains("is listed twice"), "{e}");
        let auto = BASE.replace("approval = \"manual\"", "approval = \"auto\"\nsigned_approvals = true");
        assert!(errors(&auto).contains("signed_approvals and approval = \"auto\" contradict"), "{}", errors(&auto));
        // approvals = 1, alice the only approver with a key, and alice may ask too: her own
        // requests could never be approved.
        let own =
            format!("{signed}[people.alice]\nssh_keys = [\"{ALICE_KEY}\"]\n").replace("ops = [\"carol\"]", "ops = [\"carol\", \"alice\"]");
        assert!(errors(&own).contains("a request by 'alice' would have only 0"), "{}", errors(&own));
        let glass = BASE.replace("approval = \"manual\"", "approval = \"manual\"\nbreak_glass = true\nsigned_approvals = true");
        assert!(errors(&glass).contains("would change nothing on a break-glass task"), "{}", errors(&glass));
    }
}
